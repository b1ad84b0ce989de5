//! The accept loop of both sockets, with back-off and polite refusals.
//!
//! **Thread model.** One accept thread per socket (`tierd-control`, `tierd-client`)
//! runs [`run`]; each admitted connection gets its own thread, and the number of those
//! is bounded by the socket's [`super::Gate`] (`*.max_connections`, per uid and in
//! total). We kept threads rather than one poll loop for everything because the
//! handlers block by nature (move_pages, /proc reads, the migration engine's locks) and
//! were written as plain sequential code; a poll loop would need a worker pool behind
//! it, which brings the threads back with a queue in front. With the caps the cost is
//! bounded and known: an idle connection is one blocked thread (a 2 MiB stack
//! reservation of which a few pages are resident) and one or two descriptors, and the
//! systemd unit's `TasksMax`/`LimitNOFILE` are sized from the caps. Slow peers are cut
//! by per-connection timeouts in each server, so a thread is never held forever.
//!
//! **Refusals.** A refused connection is not simply closed: the peer would see a reset
//! or EPIPE and no reason. The accept thread keeps it (at most [`MAX_LINGER`] at once,
//! each at most [`LINGER`]), waits for its first request, answers it with the server's
//! error reply (a JSON error line, or the wire protocol's Error with the request's
//! seq) and closes. One log line per [`LOG_EVERY`] says how many were refused.
//!
//! **Exhaustion.** `accept` failing with EMFILE leaves the connection queued, so a
//! plain loop would spin at 100% CPU. Here EMFILE closes a reserve descriptor, accepts
//! the connection in its slot, answers its first request with "out of descriptors",
//! shuts it down and keeps it as the new reserve (the classic reserve-fd trick, one
//! connection at a time, without a close/re-open window in which another thread could
//! take the slot); EMFILE, ENFILE, ENOMEM and ENOBUFS
//! then sleep, doubling from 10 ms to 250 ms while the failures last, with one log line
//! when a burst starts and one when it ends.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, recv, send, MsgFlags, Shutdown, SockFlag};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Refused connections waiting for their first request, at most.
pub const MAX_LINGER: usize = 64;
/// How long a refused connection may wait for its first request before it is
/// answered anyway (with seq 0 / no request) and closed.
pub const LINGER: Duration = Duration::from_millis(1000);
/// At most one refusal log line per this period per socket.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often the loop looks at the shutdown flag when nothing happens.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Connections accepted per wake-up before refused ones get a turn.
const ACCEPT_BATCH: usize = 32;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// Builds the reply bytes from the first bytes the refused peer sent.
pub type ReplyFn = Box<dyn FnOnce(&[u8]) -> Vec<u8> + Send>;

/// How to answer a refused connection.
pub struct Refusal {
    /// Why, for the log.
    pub why: String,
    /// The bytes to send, given the first bytes the peer sent (empty when it sent
    /// nothing in time).
    pub reply: ReplyFn,
}

/// What a server did with a new connection.
pub enum Admission {
    /// Its thread runs it now.
    Taken,
    /// Refused: the loop answers it and closes it.
    Refused(OwnedFd, Refusal),
    /// tierd ran out of descriptors (or memory) after the accept, e.g. for the peer's
    /// pidfd: answered with [`Server::out_of_fds`] and counted as an accept failure
    /// (back-off, one log line per burst), as if the accept itself had failed.
    OutOfResources(OwnedFd),
}

/// The socket-specific half of the loop.
pub trait Server {
    /// Admits `conn` (starts its thread) or hands it back with a refusal.
    fn admit(&mut self, conn: OwnedFd) -> Admission;
    /// The answer for a connection taken with the reserve descriptor.
    fn out_of_fds(&self) -> Refusal;
}

struct Lingering {
    fd: OwnedFd,
    until: Instant,
    refusal: Refusal,
    /// Accepted in the reserve descriptor's slot: kept as the new reserve once answered.
    reserve: bool,
}

/// Answers a refused connection with what it sent so far (if `read`); the caller
/// closes it (or keeps it as the reserve).
fn answer(fd: &OwnedFd, refusal: Refusal, read: bool) {
    let mut buf = [0u8; 4096];
    let n = if read {
        recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap_or(0)
    } else {
        0
    };
    let out = (refusal.reply)(&buf[..n]);
    let _ = send(
        fd.as_raw_fd(),
        &out,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    );
}

/// Keeps a refused connection until its first request comes (or [`LINGER`] ends), or
/// answers it now when [`MAX_LINGER`] are already waiting.
fn linger(lingering: &mut Vec<Lingering>, fd: OwnedFd, refusal: Refusal) {
    if lingering.len() < MAX_LINGER {
        lingering.push(Lingering {
            fd,
            until: Instant::now() + LINGER,
            refusal,
            reserve: false,
        });
    } else {
        answer(&fd, refusal, true);
    }
}

/// One warning when a run of accept failures starts, one line when it ends, and the
/// sleep in between.
struct Backoff {
    socket: &'static str,
    delay: Duration,
    burst: Option<(Instant, u64)>,
}

impl Backoff {
    fn fail(&mut self, e: Errno) -> Duration {
        let (_, n) = self.burst.get_or_insert_with(|| {
            tracing::warn!(
                socket = self.socket,
                error = %e,
                "accept failed: out of resources; refusing and backing off \
                 (one line per burst)"
            );
            (Instant::now(), 0)
        });
        *n += 1;
        self.delay = (self.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.delay
    }

    fn ok(&mut self) {
        if let Some((t, n)) = self.burst.take() {
            tracing::info!(
                socket = self.socket,
                failures = n,
                lasted_ms = t.elapsed().as_millis() as u64,
                "accept recovered"
            );
        }
        self.delay = Duration::ZERO;
    }
}

/// Lets through one event per period and counts the ones it held back.
pub struct LogLimit {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimit {
    pub fn new(every: Duration) -> LogLimit {
        LogLimit {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(events held back since the last one let through)`, or `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

fn reserve_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

fn accept(listener: &OwnedFd) -> nix::Result<OwnedFd> {
    let fd = accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC)?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Accepts on `listener` until `shutdown` is set, handing connections to `server`.
/// `socket` names it in log lines (`control`, `client`).
pub fn run(
    listener: &OwnedFd,
    socket: &'static str,
    shutdown: &AtomicBool,
    server: &mut dyn Server,
) {
    if let Err(e) = fcntl(listener.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)) {
        tracing::error!(socket, error = %e, "cannot make the listener non-blocking");
        return;
    }
    let mut reserve = reserve_fd();
    let mut backoff = Backoff {
        socket,
        delay: Duration::ZERO,
        burst: None,
    };
    let mut refusals = LogLimit::new(LOG_EVERY);
    let mut lingering: Vec<Lingering> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        // Taken back as soon as a descriptor is free again.
        if reserve.is_none() {
            reserve = reserve_fd();
        }
        let now = Instant::now();
        let wait = lingering
            .iter()
            .map(|l| l.until.saturating_duration_since(now))
            .fold(SHUTDOWN_POLL, Duration::min);
        let mut fds: Vec<PollFd> = std::iter::once(listener.as_fd())
            .chain(lingering.iter().map(|l| l.fd.as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                // poll itself failing (ENOMEM) must not spin either.
                let d = backoff.fail(e);
                std::thread::sleep(d);
                continue;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // Refused connections whose request came, or whose time is up.
        let now = Instant::now();
        let mut waiting = Vec::with_capacity(lingering.len());
        for (l, &readable) in lingering.drain(..).zip(&ready[1..]) {
            if readable || now >= l.until {
                answer(&l.fd, l.refusal, readable);
                if l.reserve {
                    // Shut down (the peer sees the end after our answer) but keep the
                    // descriptor: it is the reserve now, so no other thread can take
                    // the slot between a close and a re-open.
                    let _ = nix::sys::socket::shutdown(l.fd.as_raw_fd(), Shutdown::Both);
                    reserve = Some(l.fd);
                }
            } else {
                waiting.push(l);
            }
        }
        lingering = waiting;
        if !ready[0] {
            continue;
        }
        for _ in 0..ACCEPT_BATCH {
            match accept(listener) {
                Ok(fd) => {
                    let (fd, refusal) = match server.admit(fd) {
                        Admission::Taken => {
                            backoff.ok();
                            continue;
                        }
                        Admission::Refused(fd, refusal) => {
                            backoff.ok();
                            (fd, refusal)
                        }
                        Admission::OutOfResources(fd) => {
                            let d = backoff.fail(Errno::EMFILE);
                            linger(&mut lingering, fd, server.out_of_fds());
                            std::thread::sleep(d);
                            break;
                        }
                    };
                    if let Some(held_back) = refusals.allow(Instant::now()) {
                        tracing::warn!(
                            socket,
                            reason = %refusal.why,
                            refused_since_last_line = held_back,
                            "connection refused (one line per 10 s)"
                        );
                    }
                    linger(&mut lingering, fd, refusal);
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                Err(e @ Errno::EMFILE) => {
                    let d = backoff.fail(e);
                    // The reserve's slot takes the connection; it is answered like
                    // any refused one and then becomes the reserve.
                    if reserve.take().is_some() {
                        if let Ok(fd) = accept(listener) {
                            lingering.push(Lingering {
                                fd,
                                until: Instant::now() + LINGER,
                                refusal: server.out_of_fds(),
                                reserve: true,
                            });
                        }
                    }
                    std::thread::sleep(d);
                    break;
                }
                Err(e) => {
                    // ENFILE, ENOMEM, ENOBUFS, or anything unexpected: wait for it to pass.
                    let d = backoff.fail(e);
                    std::thread::sleep(d);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::SockType;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

    /// Takes every other connection (and closes it), refuses the rest with a reply
    /// that quotes what the peer sent.
    struct Alternate {
        n: usize,
    }

    impl Server for Alternate {
        fn admit(&mut self, conn: OwnedFd) -> Admission {
            self.n += 1;
            if self.n % 2 == 1 {
                drop(conn);
                return Admission::Taken;
            }
            Admission::Refused(
                conn,
                Refusal {
                    why: "test".into(),
                    reply: Box::new(|first| {
                        let mut r = b"refused after ".to_vec();
                        r.extend_from_slice(first);
                        r
                    }),
                },
            )
        }

        fn out_of_fds(&self) -> Refusal {
            unreachable!("no fd exhaustion in this test")
        }
    }

    fn read_all(mut s: UnixStream) -> String {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn refused_connections_are_answered_after_their_first_request_or_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let access = super::super::Access {
            mode: 0o600,
            gid: None,
        };
        let listener = super::super::bind(&path, SockType::Stream, access).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            let mut server = Alternate { n: 0 };
            run(&listener, "test", &s, &mut server);
            server.n
        });
        // 1st taken, 2nd refused: it writes, then reads the refusal that quotes it.
        let _taken = UnixStream::connect(&path).unwrap();
        let mut talker = UnixStream::connect(&path).unwrap();
        talker.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        assert_eq!(read_all(talker), "refused after {\"cmd\":\"status\"}\n");
        // 3rd taken, 4th refused and silent: answered when the linger ends.
        let _taken2 = UnixStream::connect(&path).unwrap();
        let silent = UnixStream::connect(&path).unwrap();
        let t0 = Instant::now();
        assert_eq!(read_all(silent), "refused after ");
        let waited = t0.elapsed();
        assert!(
            waited >= LINGER - Duration::from_millis(100) && waited < LINGER * 3,
            "{waited:?}"
        );
        // More refused connections at once than the loop keeps: all are answered.
        let many: Vec<UnixStream> = (0..2 * (MAX_LINGER + 8))
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let refused = many
            .into_iter()
            .map(read_all)
            .filter(|r| r.starts_with("refused after"))
            .count();
        assert_eq!(refused, MAX_LINGER + 8);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(t.join().unwrap(), 4 + 2 * (MAX_LINGER + 8));
    }

    #[test]
    fn log_limit_lets_one_through_per_period() {
        let mut l = LogLimit::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        assert_eq!(l.allow(t + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t + Duration::from_secs(2)), None);
        assert_eq!(l.allow(t + Duration::from_secs(11)), Some(2));
    }
}
