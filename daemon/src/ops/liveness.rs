//! Heartbeats of the threads that do tierd's work, so the systemd watchdog is fed only
//! while they make progress and `status` can name a stalled one.
//!
//! Each long-lived worker thread [`Liveness::register`]s once and then
//! [`Heartbeat::beat`]s at least once per unit of work: the tiering loop (`tierd-tiering`)
//! at every wake-up (every `sampling.drain_interval_ms`), the migration worker
//! (`tierd-migrate`) at every step of a plan and, while it waits for a plan, every
//! [`IDLE_BEAT`] ([`Heartbeat::recv`]): a worker idle for want of work is alive. The
//! `tierd-ops` thread calls [`Liveness::health`] before each `WATCHDOG=1`: when a
//! thread has not beaten for [`STALL_AFTER`] (or ended), the ping is withheld and
//! systemd restarts tierd after `WatchdogSec`. A beat is one relaxed atomic store.
//!
//! Time is milliseconds since the [`Liveness`] was made; the `_at` variants take it
//! explicitly, so the logic is tested with a fake clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tierd_api::{Health, ThreadHealth};

/// A thread silent for longer than this is stalled. Generous: a tiering-loop pass or a
/// migration step normally takes milliseconds, seconds under emulation; a minute of
/// silence is a deadlock or a livelock, not load.
pub const STALL_AFTER: Duration = Duration::from_secs(60);
/// How often a thread waiting for work beats while it waits.
pub const IDLE_BEAT: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Slot {
    name: String,
    /// Milliseconds since the epoch at the last beat.
    last_ms: AtomicU64,
    /// The thread's [`Heartbeat`] was dropped: it returned or unwound.
    ended: AtomicBool,
}

/// The heartbeats of one daemon (`Daemon::liveness`).
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            epoch: Instant::now(),
            slots: Mutex::new(Vec::new()),
        }
    }
}

/// One thread's handle; beats through it. Dropping it marks the thread ended.
#[derive(Debug)]
pub struct Heartbeat {
    slot: Arc<Slot>,
    epoch: Instant,
}

impl Liveness {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Starts watching the calling thread under `name` (it counts as having just beaten).
    pub fn register(&self, name: &str) -> Heartbeat {
        self.register_at(name, self.now_ms())
    }

    pub fn register_at(&self, name: &str, now_ms: u64) -> Heartbeat {
        let slot = Arc::new(Slot {
            name: name.to_string(),
            last_ms: AtomicU64::new(now_ms),
            ended: AtomicBool::new(false),
        });
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // A thread registered again (restarted) replaces its old slot.
        slots.retain(|s| s.name != name);
        slots.push(slot.clone());
        Heartbeat {
            slot,
            epoch: self.epoch,
        }
    }

    /// Every watched thread's age, and whether all are fresher than [`STALL_AFTER`].
    pub fn health(&self) -> Health {
        self.health_at(self.now_ms(), STALL_AFTER)
    }

    pub fn health_at(&self, now_ms: u64, stall_after: Duration) -> Health {
        let bound = stall_after.as_millis() as u64;
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let threads: Vec<ThreadHealth> = slots
            .iter()
            .map(|s| {
                let silent_ms = now_ms.saturating_sub(s.last_ms.load(Ordering::Relaxed));
                let ended = s.ended.load(Ordering::Relaxed);
                ThreadHealth {
                    name: s.name.clone(),
                    silent_ms,
                    ended,
                    stalled: ended || silent_ms > bound,
                }
            })
            .collect();
        Health {
            ok: threads.iter().all(|t| !t.stalled),
            stall_after_ms: bound,
            threads,
        }
    }
}

impl Heartbeat {
    /// The thread made progress.
    pub fn beat(&self) {
        self.beat_at(self.epoch.elapsed().as_millis() as u64);
    }

    pub fn beat_at(&self, now_ms: u64) {
        self.slot.last_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Waits for the next message on `rx`, beating every [`IDLE_BEAT`] while none comes
    /// (and once when one does); `None` once the channel is closed.
    pub fn recv<T>(&self, rx: &crossbeam_channel::Receiver<T>) -> Option<T> {
        self.recv_every(rx, IDLE_BEAT)
    }

    fn recv_every<T>(&self, rx: &crossbeam_channel::Receiver<T>, every: Duration) -> Option<T> {
        loop {
            self.beat();
            match rx.recv_timeout(every) {
                Ok(m) => {
                    self.beat();
                    return Some(m);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.slot.ended.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn stalled(l: &Liveness, now_ms: u64) -> Vec<String> {
        l.health_at(now_ms, BOUND)
            .threads
            .into_iter()
            .filter(|t| t.stalled)
            .map(|t| t.name)
            .collect()
    }

    #[test]
    fn a_thread_is_stalled_once_silent_past_the_bound() {
        let l = Liveness::default();
        let tiering = l.register_at("tierd-tiering", 0);
        let migrate = l.register_at("tierd-migrate", 0);
        assert!(
            l.health_at(60_000, BOUND).ok,
            "silent for exactly the bound: fine"
        );
        tiering.beat_at(50_000);
        let h = l.health_at(60_001, BOUND);
        assert!(!h.ok);
        assert_eq!(stalled(&l, 60_001), vec!["tierd-migrate"]);
        assert_eq!(h.threads[0].silent_ms, 10_001);
        assert_eq!(h.threads[1].silent_ms, 60_001);
        assert_eq!(h.stall_after_ms, 60_000);
        // Progress again: healthy again.
        migrate.beat_at(60_002);
        assert!(l.health_at(60_003, BOUND).ok);
    }

    #[test]
    fn an_ended_thread_is_stalled_at_once() {
        let l = Liveness::default();
        let t = l.register_at("tierd-tiering", 0);
        drop(t);
        let h = l.health_at(1, BOUND);
        assert!(!h.ok);
        assert!(h.threads[0].ended);
        // Registering the name again (a new thread) replaces the ended slot.
        let _t = l.register_at("tierd-tiering", 2);
        assert!(l.health_at(3, BOUND).ok);
        assert_eq!(l.health_at(3, BOUND).threads.len(), 1);
    }

    #[test]
    fn no_threads_is_healthy() {
        assert!(Liveness::default().health_at(u64::MAX, BOUND).ok);
    }

    #[test]
    fn a_thread_idle_waiting_for_work_keeps_beating() {
        let l = Liveness::default();
        let hb = l.register_at("tierd-migrate", 0);
        let (tx, rx) = crossbeam_channel::bounded::<u32>(1);
        let waiter = std::thread::spawn(move || {
            let got = hb.recv_every(&rx, Duration::from_millis(5));
            (got, hb.recv_every(&rx, Duration::from_millis(5)))
        });
        std::thread::sleep(Duration::from_millis(400));
        // It beat (every 5 ms) while nothing came: without those beats it would have been
        // silent for the whole 400 ms.
        let h = l.health();
        assert!(
            h.threads[0].silent_ms < 300,
            "silent {} ms",
            h.threads[0].silent_ms
        );
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(waiter.join().unwrap(), (Some(7), None));
        assert!(!l.health().ok, "the thread returned: its heartbeat ended");
    }
}
