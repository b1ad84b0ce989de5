//! `tierd`: wires config, topology, the control socket, the tiering loop and signals.
//!
//! Start-up order matters for crash recovery: the instance lock on the state dir comes
//! first, then what a previous tierd left is undone (kernel knobs, kdamonds) before
//! anything reads the kernel's state, and managed processes are adopted again before
//! the tiering loop and the client socket start (`docs/operations.md`, "Crash and
//! restart").

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tierd::migrate::syscall::MovePages;
use tierd::state::{Daemon, Mode};
use tierd::topology::{SysfsTopology, TopologySource};
use tierd_cli::Args;
use tierd_config::Config;

fn main() {
    tierd::ops::panic::install_hook();
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        match Config::load(path) {
            Ok(_) => {
                println!("{}: valid", path.display());
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    if let Err(e) = run(args) {
        eprintln!("tierd: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(args: Args) -> anyhow::Result<()> {
    let (mut cfg, path) =
        Config::load_default_or(args.config.as_deref()).context("loading config")?;
    if let Some(s) = args.socket {
        cfg.daemon.socket = s;
    }
    init_logging(&cfg.daemon.log_level);
    let persist = tierd::persist::Paths::new(&cfg.daemon.state_dir);
    let _instance = recover(&persist)?;
    let topo_src: Arc<dyn TopologySource> = Arc::new(SysfsTopology::default());
    let daemon = Daemon::new(cfg.clone(), path.clone(), topo_src, Arc::new(MovePages))
        .context("reading topology")?;
    let topo = daemon.topology();
    for n in &topo.nodes {
        tracing::info!(
            node = n.id,
            tier = n.tier,
            memory_tier = ?n.kernel_tier,
            tier_source = n.tier_source.as_str(),
            cpus = n.cpus.len(),
            total_mib = n.total_bytes >> 20,
            free_mib = n.free_bytes >> 20,
            read_latency_ns = ?n.perf.read_latency_ns,
            "node"
        );
    }
    #[cfg(feature = "hwloc")]
    match tierd::topology::hwloc::cross_check(&topo) {
        Ok(d) if d.is_empty() => tracing::info!("hwloc agrees with sysfs"),
        Ok(d) => tracing::warn!(differences = ?d, "hwloc disagrees with sysfs; using sysfs"),
        Err(e) => tracing::warn!(error = %e, "hwloc cross-check unavailable"),
    }
    #[cfg(feature = "hwloc")]
    match tierd::topology::hwloc::discover_devices() {
        Ok(devs) => {
            for d in &devs {
                tracing::info!(kind = d.kind.as_str(), pci = %d.pci, nodes = ?d.nodes, "PCI device");
            }
            daemon.set_devices(devs);
        }
        Err(e) => tracing::warn!(error = %e, "PCI locality unavailable: no GPUs or NICs listed"),
    }
    daemon
        .check_scope_gpus(&cfg)
        .map_err(anyhow::Error::msg)
        .context("loading config: [[scope]] gpu")?;
    match daemon.mode() {
        Mode::Tiering => tracing::info!(
            tiers = topo.tier_count(),
            reason = Mode::tiering_reason(&topo),
            "tiering mode"
        ),
        Mode::MonitorOnly(why) => {
            tracing::warn!(reason = %why, "monitor-only mode: no pages will be moved")
        }
    }
    tracing::info!(config = ?path.as_ref().map(|p| p.display().to_string()), "config loaded");

    let socket = cfg.daemon.socket.clone();
    let listener = tierd::control::bind(&cfg.daemon)?;
    let d = daemon.clone();
    std::thread::Builder::new()
        .name("tierd-control".into())
        .spawn(move || tierd::control::serve(listener, d))
        .context("spawning control thread")?;
    tracing::info!(socket = %socket.display(), "control socket ready");

    // The kernel's NUMA balancing (and its scanner) stays as found unless the config says
    // otherwise; the guards restore the old values when tierd exits (they live until the
    // end of run()).
    let _kernel_knobs = tierd::kernel::KnobGuards::set_all(
        std::path::Path::new("/"),
        &persist.knobs(),
        &tierd::kernel::policy_knobs(&cfg.policy),
    )
    .map_err(|(key, e)| anyhow::Error::new(e).context(format!("setting {key}")))?;
    adopt(&daemon, &persist);
    load_scopes(&daemon);
    tierd::scope::watch::start(&daemon).context("starting the scope watcher")?;
    tierd::tiering::start(&daemon).context("starting the tiering loop")?;
    tierd::protocol::start(&daemon).context("starting the client protocol")?;
    tierd::ops::start(&daemon).context("starting operations endpoints")?;

    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                tierd::ops::notify::reloading();
                match daemon.reload() {
                    Ok(r) => tracing::info!(changes = r.changes.len(), "SIGHUP: config reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: bad config refused; the old one stays")
                    }
                }
                tierd::ops::notify::ready(&tierd::ops::notify::summary(&daemon));
            }
            _ => {
                tracing::info!(signal = sig, "stopping");
                break;
            }
        }
    }
    let deadline = tierd::ops::shutdown::Deadline::arm(tierd::ops::shutdown::DEADLINE);
    daemon.shutdown.store(true, Ordering::SeqCst);
    deadline.step(1);
    tierd::ops::notify::stopping();
    deadline.step(2);
    tierd::ops::stop(&daemon);
    deadline.step(3);
    tierd::sampling::release_kernel_resources();
    deadline.step(4);
    // Wake the accept loop so its thread sees the flag.
    let _ = std::os::unix::net::UnixStream::connect(&socket);
    let _ = std::fs::remove_file(&socket);
    deadline.step(5);
    tracing::info!("stopped");
    Ok(())
}

/// Takes the instance lock on the state dir and undoes what a previous tierd that died
/// left behind: kernel knobs it changed, kdamonds it started. Returns the lock (held
/// until exit). Another tierd on the same state dir is an error; a state dir that
/// cannot be written only costs crash recovery.
fn recover(
    persist: &tierd::persist::Paths,
) -> anyhow::Result<Option<tierd::persist::InstanceLock>> {
    use tierd::persist::{InstanceLock, PersistError};
    let lock = match InstanceLock::take(persist) {
        Ok(l) => l,
        Err(e @ PersistError::Locked { .. }) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "no instance lock: what a previous tierd left is not undone");
            return Ok(None);
        }
    };
    let knobs = tierd::kernel::recover(std::path::Path::new("/"), &persist.knobs());
    let kdamonds = tierd::sampling::recover_kernel_resources(&persist.kdamonds());
    if !knobs.is_empty() || !kdamonds.stopped.is_empty() {
        tracing::warn!(
            knobs_restored = knobs.len(),
            kdamonds_stopped = kdamonds.stopped.len(),
            "a previous tierd exited without cleaning up; undone"
        );
    }
    Ok(Some(lock))
}

/// Manages again the processes a previous tierd managed (`tierctl manage`) that are
/// still the same processes, and records from now on.
fn adopt(daemon: &tierd::state::Daemon, persist: &tierd::persist::Paths) {
    use tierd::persist::managed;
    let path = persist.managed();
    match managed::load(&path) {
        Ok(records) if !records.is_empty() => {
            let a = managed::adopt(daemon, records);
            tracing::info!(
                adopted = a.adopted.len(),
                skipped = a.skipped.len(),
                "managed processes of the previous tierd"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "managed processes of the previous tierd not adopted"),
    }
    daemon.journal.enable(path);
}

/// Loads the runtime scopes a previous tierd kept (`daemon.scopes_file`); the scope
/// watcher's first pass manages their processes again, with the config's scopes.
fn load_scopes(daemon: &tierd::state::Daemon) {
    let path = daemon.config().daemon.scopes_file.clone();
    let kept = match tierd::persist::scopes::load(&path) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "runtime scopes of the previous tierd not adopted");
            Vec::new()
        }
    };
    if !kept.is_empty() {
        tracing::info!(scopes = kept.len(), path = %path.display(), "runtime scopes of the previous tierd");
    }
    daemon.scopes.enable_file(path, kept);
}
