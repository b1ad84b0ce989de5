//! systemd notification (`sd_notify(3)` via the `sd-notify` crate): `READY=1` once the
//! control socket and the other endpoints are up, `STATUS=` with a one-line summary,
//! `RELOADING=1`/`READY=1` around a config reload, `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` while the worker threads beat ([`super::liveness`]) and
//! `STOPPING=1` on the way out.
//!
//! Every function is a no-op without `NOTIFY_SOCKET`, so the daemon behaves the same
//! when run by hand. The environment is left set: later messages need it. Callers:
//! [`super::start`] (READY), the `tierd-ops` thread (STATUS, WATCHDOG), main's SIGHUP
//! handler (RELOADING) and shutdown (STOPPING).

use crate::state::Daemon;
use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=<line>`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// `RELOADING=1` (with `MONOTONIC_USEC`, which systemd >= 253 requires), before a
/// reload; follow with [`ready`].
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if systemd set it.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// The one-line `STATUS=`: mode, tiers, managed processes, clients, and the stalled
/// worker threads if any.
pub fn summary(d: &Daemon) -> String {
    let topo = d.topology();
    let stalled: Vec<String> = d
        .liveness
        .health()
        .threads
        .into_iter()
        .filter(|t| t.stalled)
        .map(|t| t.name)
        .collect();
    let mut line = format!(
        "{}: {} tier(s), {} node(s), {} managed, {} client(s)",
        d.mode().name(),
        topo.tier_count(),
        topo.nodes.len(),
        d.registry.all().len(),
        d.clients.load(std::sync::atomic::Ordering::Relaxed)
    );
    if !stalled.is_empty() {
        line.push_str(&format!("; STALLED: {}", stalled.join(", ")));
    }
    line
}
