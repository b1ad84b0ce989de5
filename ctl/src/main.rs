//! `tierctl`: the control CLI of tierd. One file per subcommand under `cmd/`.
//!
//! Exit codes: 0 success; 1 internal error; 2 usage error, malformed request or bad
//! config; 3 tierd not reachable; 4 request refused (no such process, permission,
//! range not mapped, bad node, not managed, unsupported in this mode).

mod client;
mod cmd;
mod output;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Control tierd, the tiered-memory daemon.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
pub struct Cli {
    /// tierd's control socket.
    #[arg(long, global = true, default_value = tierd_api::DEFAULT_SOCKET, env = "TIERD_SOCKET")]
    socket: PathBuf,
    /// Print the daemon's JSON reply instead of a table (stable; see docs/control-api.md).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Daemon mode, sampling backends and managed processes.
    Status,
    /// NUMA nodes and their memory tiers.
    Tiers,
    /// Resident memory of a process per node.
    Placement(cmd::placement::Args),
    /// Move a process's pages (or a range of them) to a node now.
    Migrate(cmd::migrate::Args),
    /// Put a process, or every process of a cgroup, unit or command name, under a policy.
    Manage(cmd::manage::ManageArgs),
    /// Stop managing a process (its pages stay where they are).
    Unmanage(cmd::manage::UnmanageArgs),
    /// Hottest regions of a managed process.
    Heat(cmd::heat::Args),
    /// Draw address x time heat of a managed process into a PNG.
    Heatmap(cmd::heatmap::Args),
    /// Show the config in force.
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    /// Re-read the config file (a bad one is refused; the old one stays).
    Reload,
    /// Prometheus metrics text.
    Metrics,
    /// Live view: tiers, migration rates, managed processes (q to quit).
    Top(cmd::top::Args),
    /// Print a shell completion script (for tierctl, or tierd with --for tierd).
    Completions(cmd::completions::Args),
    /// Write the man pages of tierd and tierctl into a directory.
    Man(cmd::man::Args),
}

fn main() {
    // Like other command-line tools, end quietly when the reader of our output goes
    // away (`tierctl tiers | head -1`) instead of panicking on EPIPE: Rust ignores
    // SIGPIPE by default.
    // SAFETY: restoring a signal's default disposition at start, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let s = &cli.socket;
    let j = cli.json;
    let r = match cli.cmd {
        Cmd::Status => cmd::status::run(s, j),
        Cmd::Tiers => cmd::tiers::run(s, j),
        Cmd::Placement(a) => cmd::placement::run(s, j, a),
        Cmd::Migrate(a) => cmd::migrate::run(s, j, a),
        Cmd::Manage(a) => cmd::manage::manage(s, j, a),
        Cmd::Unmanage(a) => cmd::manage::unmanage(s, j, a),
        Cmd::Heat(a) => cmd::heat::run(s, j, a),
        Cmd::Heatmap(a) => cmd::heatmap::run(s, j, a),
        Cmd::Config(c) => cmd::config::run(s, j, c),
        Cmd::Reload => cmd::config::reload(s, j),
        Cmd::Metrics => cmd::config::metrics(s, j),
        Cmd::Top(a) => cmd::top::run(s, j, a),
        Cmd::Completions(a) => cmd::completions::run(a),
        Cmd::Man(a) => cmd::man::run(a),
    };
    if let Err(f) = r {
        eprintln!("tierctl: {f}");
        std::process::exit(f.exit_code());
    }
}
