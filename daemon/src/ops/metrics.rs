//! Prometheus text exposition of the daemon's state.

use crate::state::Daemon;

/// Renders the metrics text (served on `metrics.listen` and by `tierctl metrics`).
pub fn render(d: &Daemon) -> String {
    let _ = d;
    String::new()
}
