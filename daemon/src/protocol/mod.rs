//! The shared-memory protocol for inference processes (client socket, hint rings,
//! placement tables, shared prefix pools). See `docs/protocol.md`.

use crate::state::Daemon;
use std::sync::Arc;

/// Starts the client socket server when `client.enabled`.
pub fn start(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let _ = daemon;
    Ok(())
}
