//! `tierd`'s command line, in the library so `tierctl man` and `tierctl completions`
//! can render the daemon's page from the same clap definition main parses.

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
