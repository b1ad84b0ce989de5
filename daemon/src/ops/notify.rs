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
use crossbeam_channel::{bounded, Sender, TrySendError};
use sd_notify::NotifyState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Messages waiting for the sender thread, at most.
const QUEUE: usize = 32;
/// How long [`stopping`] waits for its message to be handed to the socket.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// One message: its lines, and whom to tell once it is sent.
type Message = (Vec<String>, Option<Sender<()>>);

/// Messages dropped because the queue was full (the service manager is not reading).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The `tierd-notify` thread's queue. The crate's send blocks while the notify
/// socket's queue is full (`net.unix.max_dgram_qlen`, 10 by default), i.e. while the
/// service manager does not read: that must never stall the `tierd-ops` thread (state
/// tree, watchdog, STATUS), so every message goes through this thread, and messages are
/// dropped (counted, logged once) when even this queue is full.
fn queue() -> Option<&'static Sender<Message>> {
    static TX: OnceLock<Option<Sender<Message>>> = OnceLock::new();
    TX.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let (tx, rx) = bounded::<Message>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("tierd-notify".into())
            .spawn(move || {
                for (lines, done) in rx {
                    let states: Vec<NotifyState> =
                        lines.iter().map(|l| NotifyState::Custom(l)).collect();
                    if let Err(e) = sd_notify::notify(&states) {
                        tracing::warn!(error = %e, "sd_notify failed");
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the sd_notify thread; no notifications");
                None
            }
        }
    })
    .as_ref()
}

fn enqueue(states: &[NotifyState], done: Option<Sender<()>>) {
    let Some(tx) = queue() else { return };
    let lines = states.iter().map(|s| s.to_string()).collect();
    match tx.try_send((lines, done)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            if DROPPED.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    "sd_notify: the service manager is not reading its notify socket; \
                     dropping notifications until it does (logged once)"
                );
            }
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn send(states: &[NotifyState]) {
    enqueue(states, None);
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

/// `STOPPING=1`, waiting (at most [`STOP_WAIT`]) until it is sent: tierd exits next.
pub fn stopping() {
    let (tx, rx) = bounded(1);
    enqueue(&[NotifyState::Stopping], Some(tx));
    let _ = rx.recv_timeout(STOP_WAIT);
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
