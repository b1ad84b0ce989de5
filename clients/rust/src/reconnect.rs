//! Reconnection after tierd restarts: the `tierd-client` thread of each [`Client`].
//!
//! The thread sleeps in `poll(2)` on the client's socket. When tierd's end closes (a
//! restart, a crash, `kill -9`) it marks the client disconnected and every region not
//! live at once (a killed tierd cannot mark their shared headers, so the client never
//! trusts a header alone), then reconnects with exponential backoff ([`Reconnect`]):
//! on the new connection it registers each region's memory again (same base, length
//! and block size), maps the new shared memory, replays the region's PIN_FAST blocks
//! ([`PinSet`]), and swaps the new regions in under the ids the application holds. A
//! region tierd now refuses (the memory was unmapped, a quota) stays not live. A client
//! tierd dropped on purpose (it marked a ring CORRUPT first) is not reconnected. The
//! whole reconnection holds the connection's mutex, so control calls wait for it and
//! never interleave with it; hints never wait (they go to the old, dead ring until the
//! swap, and count nothing there). Dropping the [`Client`] stops and joins the thread.
//!
//! [`Client`]: crate::client::Client

use crate::client::{dial, ClientError, Conn, Inner, Region};
use crate::layout::{state, HintEntry, HintKind};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a [`Client`](crate::Client) does when tierd's socket goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Stay disconnected (regions are marked not live, nothing else happens).
    Never,
    /// Retry after `first`, doubling each failed attempt up to `max`, for as long as
    /// the client lives.
    Backoff { first: Duration, max: Duration },
}

impl Default for Reconnect {
    /// Backoff from 50 ms to 5 s: a restarted tierd is found within a few seconds of
    /// its socket coming back, and a tierd that stays away costs one attempt per 5 s.
    fn default() -> Self {
        Reconnect::Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

/// How long one reply may take while re-registering (a hung tierd must not hold the
/// connection's mutex, and with it every control call, forever).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The watcher thread and the pipe that stops it.
pub(crate) struct Watcher {
    /// Write end; closing it wakes the thread, which returns.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    /// The process that started the thread: a forked child has no such thread and must
    /// not join it.
    pid: u32,
}

impl Watcher {
    pub(crate) fn spawn(inner: Arc<Inner>, policy: Reconnect) -> Result<Watcher, ClientError> {
        let (rx, tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| ClientError::Os {
                what: "pipe2",
                errno,
            })?;
        let thread = std::thread::Builder::new()
            .name("tierd-client".into())
            .spawn(move || run(&inner, &rx, policy))
            .map_err(|e| ClientError::Os {
                what: "spawning the tierd-client thread",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
            })?;
        Ok(Watcher {
            stop: Some(tx),
            thread: Some(thread),
            pid: std::process::id(),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if std::process::id() == self.pid {
                let _ = t.join();
            } else {
                // Forked: the thread stayed in the parent. Its handle is not ours to join.
                std::mem::forget(t);
            }
        }
    }
}

/// Why [`wait`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    Stop,
    HangUp,
    Timeout,
}

/// Waits up to `timeout` (forever: `None`) for the stop pipe, or for `sock` to hang up.
///
/// `libc::poll` rather than nix's: nix 0.29 knows no `POLLRDHUP` and reports a revents
/// holding it as unknown, so the hang-up could not be read back.
fn wait(stop: &OwnedFd, sock: Option<&OwnedFd>, timeout: Option<Duration>) -> Woke {
    // POLLRDHUP: the peer closed. Not POLLIN: a reply to a control call in progress
    // must not wake this thread.
    let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    loop {
        let mut fds = [
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sock.map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLRDHUP,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfds for the duration of the call;
        // a negative fd is ignored by the kernel.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            // poll itself failing leaves nothing to wait on: stop rather than spin.
            return Woke::Stop;
        }
        if rc == 0 {
            return Woke::Timeout;
        }
        if fds[0].revents != 0 {
            return Woke::Stop;
        }
        if fds[1].revents & gone != 0 {
            return Woke::HangUp;
        }
    }
}

fn run(inner: &Inner, stop: &OwnedFd, policy: Reconnect) {
    loop {
        // A duplicate of the current socket: the original stays the connection's.
        let sock = match inner.conn().fd.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        };
        match wait(stop, Some(&sock), None) {
            Woke::Stop => return,
            Woke::HangUp | Woke::Timeout => {}
        }
        drop(sock);
        inner.connected.store(false, Ordering::Release);
        let mut dropped = false;
        for r in inner
            .regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            r.mark_dead();
            dropped |= r.header().state.load(Ordering::Acquire) == state::CORRUPT;
        }
        // tierd marks a ring CORRUPT before it drops a client on purpose (a dead tierd
        // marks nothing): such a client stays dropped.
        let Reconnect::Backoff { first, max } = policy else {
            return;
        };
        if dropped {
            return;
        }
        let mut delay = first;
        loop {
            if wait(stop, None, Some(delay)) == Woke::Stop {
                return;
            }
            if reconnect(inner).is_ok() {
                break;
            }
            delay = (delay * 2).min(max);
        }
    }
}

fn set_reply_timeout(fd: &OwnedFd, t: Option<Duration>) {
    let tv = t.map_or(TimeVal::new(0, 0), |d| {
        TimeVal::new(d.as_secs() as i64, d.subsec_micros() as i64)
    });
    // Best effort: without it a hung tierd only delays the reconnection.
    let _ = setsockopt(fd, ReceiveTimeout, &tv);
}

/// One attempt: connect, register every region again, swap them in.
fn reconnect(inner: &Inner) -> Result<(), ClientError> {
    let fd = dial(&inner.path)?;
    set_reply_timeout(&fd, Some(REPLY_TIMEOUT));
    let mut fresh = Conn::new(fd);
    let mut conn = inner.conn();
    let mut old: Vec<Arc<Region>> = inner
        .regions
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    old.sort_by_key(|r| r.id());
    let mut renewed = Vec::with_capacity(old.len());
    for r in &old {
        let layout = r.pinned.as_deref();
        let (wire, fd) = match fresh.register_layout(r.base(), r.len(), r.block_size(), layout) {
            Ok(x) => x,
            // tierd refuses this memory now: that region stays not live.
            Err(ClientError::Refused { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mut n = Region::open(r.id(), wire, fd)?;
        n.pinned = r.pinned.clone();
        n.pins.copy_from(&r.pins);
        let pins: Vec<HintEntry> = n
            .pins
            .runs()
            .into_iter()
            .map(|(first, len)| HintEntry {
                kind: HintKind::PinFast as u16,
                _reserved: 0,
                region: wire,
                first_block: first,
                nblocks: len,
                deadline_ms: 0,
            })
            .collect();
        n.push(&pins);
        renewed.push(Arc::new(n));
    }
    set_reply_timeout(&fresh.fd, None);
    *conn = fresh;
    {
        let mut regions = inner.regions.write().unwrap_or_else(|p| p.into_inner());
        for n in renewed {
            regions.insert(n.id(), n);
        }
    }
    inner.connected.store(true, Ordering::Release);
    inner.reconnects.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// The blocks of a region pinned with PIN_FAST (and not unpinned since), as a bitmap
/// allocated at the first pin: the state a reconnection restores, since tierd forgot
/// it. Other hints are events, not state, and are not replayed.
#[derive(Debug, Default)]
pub(crate) struct PinSet(Mutex<Vec<u64>>);

impl PinSet {
    fn bits(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the PIN_FAST / UNPIN entries among `entries` (already range-checked
    /// against `nblocks`); other kinds cost one comparison.
    pub(crate) fn note(&self, kind: HintKind, entries: &[HintEntry], nblocks: u64) {
        let pin = match kind {
            HintKind::PinFast => true,
            HintKind::Unpin => false,
            _ => return,
        };
        let mut bits = self.bits();
        if bits.is_empty() {
            if !pin {
                return;
            }
            bits.resize(nblocks.div_ceil(64) as usize, 0);
        }
        for e in entries {
            for b in e.first_block..e.first_block.saturating_add(e.nblocks as u64) {
                let Some(w) = bits.get_mut((b / 64) as usize) else {
                    break;
                };
                if pin {
                    *w |= 1 << (b % 64);
                } else {
                    *w &= !(1 << (b % 64));
                }
            }
        }
    }

    pub(crate) fn copy_from(&self, other: &PinSet) {
        let src = other.bits().clone();
        *self.bits() = src;
    }

    /// Runs of pinned blocks: (first block, count).
    pub(crate) fn runs(&self) -> Vec<(u64, u32)> {
        let bits = self.bits();
        let mut out: Vec<(u64, u32)> = Vec::new();
        for (i, &w) in bits.iter().enumerate() {
            if w == 0 {
                continue;
            }
            for j in 0..64 {
                if w & (1 << j) == 0 {
                    continue;
                }
                let b = i as u64 * 64 + j;
                match out.last_mut() {
                    Some((first, n)) if *first + *n as u64 == b && *n < u32::MAX => *n += 1,
                    _ => out.push((b, 1)),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
