//! The `tierd-scopes` thread: runs [`super::Scopes::reconcile`] every [`PERIOD`] (and at
//! once when a scope is added or removed), so a process that enters a scope is managed
//! within about half a second, and beats its heartbeat every pass. Started by main after
//! the runtime scopes of the previous tierd are loaded; a first pass runs before
//! [`start`] returns, so the scopes' processes are managed before the tiering loop's
//! first plan.

use crate::state::Daemon;
use anyhow::Context;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Between two passes.
pub const PERIOD: Duration = Duration::from_millis(500);

pub fn start(d: &Arc<Daemon>) -> anyhow::Result<()> {
    let own = std::process::id() as i32;
    let gpus = |g: &_| d.fast_nodes_near_gpu(g);
    let first = d.scopes.reconcile(&d.registry, &d.config(), own, &gpus);
    for s in first.iter() {
        tracing::info!(
            scope = %s.def.name,
            origin = s.def.origin.as_str(),
            kind = s.def.selector.kind(),
            selector = s.def.selector.value(),
            processes = s.pids.len(),
            problem = ?s.problem,
            gpu_nodes = ?s.gpu_nodes,
            "scope"
        );
    }
    let d = d.clone();
    std::thread::Builder::new()
        .name("tierd-scopes".into())
        .spawn(move || {
            let heartbeat = d.liveness.register("tierd-scopes");
            while !d.shutdown.load(Ordering::Relaxed) {
                heartbeat.beat();
                d.scopes.wait(PERIOD);
                let gpus = |g: &_| d.fast_nodes_near_gpu(g);
                d.scopes.reconcile(&d.registry, &d.config(), own, &gpus);
            }
        })
        .context("spawning the scope watcher")?;
    Ok(())
}
