//! `tierd`'s command line: the one clap definition that the daemon's `main` parses and
//! that `tierctl man` and `tierctl completions --for tierd` render.
//!
//! It is a crate of its own, not a module of the daemon, so that tierctl builds without
//! the daemon (whose build script compiles the BPF programs with clang) and cannot reach
//! into the daemon's internals. It depends on clap alone.

use clap::Parser;
use std::path::PathBuf;

/// Tiered-memory daemon: hot pages on fast memory, cold pages on CXL.
#[derive(Parser, Debug)]
#[command(name = "tierd", version)]
pub struct Args {
    /// Config file [default: /etc/tierd/tierd.toml; built-in defaults if absent].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Control socket path (overrides daemon.socket).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Validate a config file and exit (0 valid, 1 invalid).
    #[arg(long, value_name = "PATH")]
    pub check_config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::{CommandFactory, Parser};

    #[test]
    fn definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn parses_every_option() {
        let a = Args::try_parse_from([
            "tierd",
            "--config",
            "/etc/t.toml",
            "--socket",
            "/run/t.sock",
            "--check-config",
            "/tmp/c.toml",
        ])
        .unwrap();
        assert_eq!(a.config.unwrap().to_str(), Some("/etc/t.toml"));
        assert_eq!(a.socket.unwrap().to_str(), Some("/run/t.sock"));
        assert_eq!(a.check_config.unwrap().to_str(), Some("/tmp/c.toml"));
        assert!(Args::try_parse_from(["tierd", "--no-such-flag"]).is_err());
    }
}
