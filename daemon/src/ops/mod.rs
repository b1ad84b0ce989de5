//! Operations endpoints: Prometheus metrics ([`metrics`] over [`http`]), the
//! `/run/tierd` state tree ([`tree`]), systemd notification ([`notify`]), the worker
//! threads' heartbeats ([`liveness`]), the panic hook ([`panic`]) and the shutdown
//! deadline ([`shutdown`]).
//!
//! main calls [`start`] once the control socket, the tiering loop and the client
//! protocol are up, and [`stop`] on the way out. [`start`] binds the metrics endpoint,
//! starts the `tierd-ops` thread and sends `READY=1`. That thread ticks every second
//! (faster if the systemd watchdog wants it): it rewrites the state tree, updates
//! `STATUS=` when the summary changed, reads memory pressure for the migration engine's
//! PSI backoff, prunes the managed-process journal and pings
//! the watchdog, but only while every worker thread beats ([`liveness`]): a stalled
//! tiering loop or migration worker stops the pings and systemd restarts tierd. The
//! same thread takes the registry, heat and topology locks to build the tree, so a
//! deadlock on those stops the pings too.

pub mod http;
pub mod liveness;
pub mod metrics;
pub mod notify;
pub mod panic;
pub mod shutdown;
pub mod tree;

use crate::state::Daemon;
use anyhow::Context;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the state tree is rewritten.
pub const TREE_PERIOD: Duration = Duration::from_secs(1);

/// Starts the operations endpoints (metrics listener, state tree, systemd notify).
/// Called once from main after the control socket is up.
pub fn start(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let cfg = daemon.config();
    let metrics_addr = if cfg.metrics.enabled {
        let a = http::spawn(daemon.clone(), &cfg.metrics.listen)?;
        tracing::info!(address = %a, "metrics endpoint ready: GET /metrics");
        Some(a.to_string())
    } else {
        tracing::info!("metrics endpoint disabled (metrics.enabled = false)");
        None
    };
    let first = tree::StateTree::new(&cfg.daemon.state_dir);
    if let Err(e) = first.write(&snapshot(daemon, metrics_addr.clone())) {
        tracing::warn!(error = %e, "state tree not written");
    }
    let d = daemon.clone();
    std::thread::Builder::new()
        .name("tierd-ops".into())
        .spawn(move || run(&d, metrics_addr))
        .context("spawning the tierd-ops thread")?;
    notify::ready(&notify::summary(daemon));
    Ok(())
}

/// Removes the state tree (main sends STOPPING=1 first, [`notify::stopping`]).
pub fn stop(daemon: &Daemon) {
    let t = tree::StateTree::new(&daemon.config().daemon.state_dir);
    if let Err(e) = t.clear() {
        tracing::warn!(error = %e, "state tree not removed");
    }
}

/// The state tree's view of the daemon: the same data `status` and `tiers` reply.
pub fn snapshot(d: &Daemon, metrics_address: Option<String>) -> tree::Snapshot {
    let s = crate::status::status(d);
    // The one refresh of the daemon's topology copy, once a second.
    let nodes = match d.refresh_topology() {
        Ok(t) => crate::state::tiers_reply(&t, &d.devices()).nodes,
        Err(e) => {
            tracing::warn!(error = %e, "state tree: cannot read the topology");
            Vec::new()
        }
    };
    tree::Snapshot {
        version: s.version,
        mode: s.mode,
        mode_reason: s.mode_reason,
        config_generation: d.generation.load(Ordering::Relaxed),
        metrics_address,
        nodes,
        procs: s.managed,
        clients: s.clients,
        moves: s.moves,
        kernel_vmstat: s.kernel_vmstat,
        scopes: s.scopes,
    }
}

fn run(d: &Daemon, metrics_addr: Option<String>) {
    let watchdog = notify::watchdog_period();
    let tick = watchdog.map_or(TREE_PERIOD, |w| w.min(TREE_PERIOD));
    let mut last_tree = Instant::now();
    let mut last_status = String::new();
    let mut was_ok = true;
    let mut root = d.config().daemon.state_dir.clone();
    let mut psi_failed = false;
    while !d.shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        if d.shutdown.load(Ordering::Relaxed) {
            break; // the worker threads are ending: not a stall
        }
        if last_tree.elapsed() >= TREE_PERIOD {
            last_tree = Instant::now();
            // The PSI backoff's one reader, once a second (migrate/pressure.rs).
            match d.engine.sample_pressure(d.pressure.as_ref()) {
                Ok(()) => psi_failed = false,
                Err(e) if !psi_failed => {
                    psi_failed = true;
                    tracing::warn!(error = %e, "memory pressure unreadable: no PSI backoff");
                }
                Err(_) => {}
            }
            let now_root = d.config().daemon.state_dir.clone();
            if now_root != root {
                // daemon.state_dir changed on reload: move the tree.
                if let Err(e) = tree::StateTree::new(&root).clear() {
                    tracing::warn!(error = %e, "old state tree not removed");
                }
                root = now_root;
            }
            if let Err(e) = tree::StateTree::new(&root).write(&snapshot(d, metrics_addr.clone())) {
                tracing::warn!(error = %e, "state tree not written");
            }
            let line = notify::summary(d);
            if line != last_status {
                notify::status(&line);
                last_status = line;
            }
            // Processes that exited or a client unmanaged leave the journal.
            d.journal.retain(|pid| d.registry.get(pid).is_some());
        }
        let health = d.liveness.health();
        if health.ok != was_ok {
            was_ok = health.ok;
            log_health(&health);
        }
        if watchdog.is_some() && health.ok {
            notify::watchdog();
        }
    }
}

/// Logs a change of [`liveness`] health: which thread stalled (the watchdog is no longer
/// fed), or that all beat again.
fn log_health(h: &tierd_api::Health) {
    if h.ok {
        tracing::info!("every worker thread beats again; watchdog fed");
        return;
    }
    for t in h.threads.iter().filter(|t| t.stalled) {
        tracing::error!(
            thread = %t.name,
            silent_ms = t.silent_ms,
            ended = t.ended,
            "worker thread stalled: WATCHDOG=1 withheld (systemd restarts tierd after WatchdogSec)"
        );
    }
}
