//! The shutdown deadline: once main starts stopping (SIGTERM, SIGINT), the clean-up
//! steps (STOPPING=1, the state tree, tierd's kdamonds, the sockets) get
//! [`DEADLINE`] in all. A step that hangs (a sysfs write the kernel does not answer, a
//! lock a stuck thread holds) would otherwise keep a dead daemon around until systemd's
//! `TimeoutStopSec` and its SIGKILL, holding the control socket and the instance lock;
//! past the deadline the `tierd-shutdown` thread logs the step it was stuck in and ends
//! the process with exit code 1.
//!
//! main calls [`Deadline::arm`] when the stop signal arrives and [`Deadline::step`]
//! before each clean-up step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the clean-up may take in all.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The clean-up steps, in order (index = [`Deadline::step`]'s argument).
pub const STEPS: &[&str] = &[
    "signal received",
    "telling systemd (STOPPING=1)",
    "removing the state tree",
    "stopping tierd's kdamonds",
    "closing the control socket",
    "exiting",
];

/// The armed deadline; dropping it does not disarm it (the process is exiting).
pub struct Deadline {
    step: Arc<AtomicUsize>,
}

impl Deadline {
    /// Starts the `tierd-shutdown` thread, which ends the process if it is still
    /// running `after` from now. Without the thread (spawn failed) the clean-up runs
    /// unguarded, as before.
    pub fn arm(after: Duration) -> Self {
        let step = Arc::new(AtomicUsize::new(0));
        let s = step.clone();
        let spawned = std::thread::Builder::new()
            .name("tierd-shutdown".into())
            .spawn(move || {
                std::thread::sleep(after);
                let at = s.load(Ordering::SeqCst);
                tracing::error!(
                    step = STEPS.get(at).copied().unwrap_or("?"),
                    after_ms = after.as_millis() as u64,
                    "shutdown did not finish in time; exiting without the rest of the clean-up"
                );
                // SAFETY: _exit ends the process at once; nothing here needs unwinding
                // or flushing (tracing writes stderr unbuffered).
                unsafe { libc::_exit(1) }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no shutdown deadline");
        }
        Deadline { step }
    }

    /// Records that clean-up step `i` of [`STEPS`] begins.
    pub fn step(&self, i: usize) {
        self.step.store(i, Ordering::SeqCst);
    }
}
