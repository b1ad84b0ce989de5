//! Operations endpoints: Prometheus metrics, the `/run/tierd` state tree, systemd
//! notification.

pub mod metrics;

use crate::state::Daemon;
use std::sync::Arc;

/// Starts the operations endpoints (metrics listener, state tree, systemd notify).
/// Called once from main after the control socket is up.
pub fn start(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let _ = daemon;
    Ok(())
}
