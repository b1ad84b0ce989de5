//! The control socket's plumbing: bind with `daemon.socket_mode`/`socket_group`, accept
//! under the connection limits (`daemon.max_connections*`), and one thread per
//! admitted connection that reads request lines within `daemon.idle_timeout_ms` /
//! `request_timeout_ms` and writes each reply within `daemon.write_timeout_ms`.
//!
//! Runs on the `tierd-control` thread (started by `main`); the accept loop, refusals
//! and back-off are [`crate::sockets::accept`], which also says why connections get
//! threads rather than a poll loop.

use super::caller::{Caller, CallerError};
use super::handlers::handle;
use super::lines::{End, Limits as LineLimits, LineReader};
use crate::sockets::limits::Evict;
use crate::sockets::{self, accept, Access, Admission, Gate, Limits, Permit, Refusal};
use crate::state::Daemon;
use nix::sys::socket::SockType;
use std::io::Write;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;
use tierd_api::{ErrorKind, Request, Response, MAX_REQUEST_BYTES};
use tierd_config::DaemonConfig;

/// Root finding the socket full closes a connection idle at least this long (a
/// connection just opened by tierctl is not idle yet: it sends at once).
const EVICT_IDLE_FOR_ROOT: Duration = Duration::from_secs(1);

/// Binds `daemon.socket` with the section's mode and group (at every start).
pub fn bind(cfg: &DaemonConfig) -> anyhow::Result<OwnedFd> {
    let access = Access {
        mode: cfg.socket_mode_bits().map_err(sockets::invalid)?,
        gid: cfg.socket_gid().map_err(sockets::invalid)?,
    };
    sockets::bind(&cfg.socket, SockType::Stream, access)
}

/// Accepts connections until the daemon shuts down.
pub fn serve(listener: OwnedFd, daemon: Arc<Daemon>) {
    sockets::check_fd_budget(&daemon.config());
    let d = daemon.clone();
    let mut server = Control {
        daemon,
        gate: Gate::default(),
    };
    accept::run(&listener, "control", &d.shutdown, &mut server);
}

/// A JSON error line, whatever the refused caller sent.
fn busy(message: String) -> Refusal {
    let mut line = serde_json::to_vec(&Response::error(ErrorKind::Busy, message.clone()))
        .unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    Refusal {
        why: message,
        reply: Box::new(move |_| line),
    }
}

struct Control {
    daemon: Arc<Daemon>,
    gate: Gate,
}

impl accept::Server for Control {
    fn admit(&mut self, conn: OwnedFd) -> Admission {
        let caller = match Caller::from_socket(&conn) {
            Ok(c) => c,
            // Answered, not dropped: the peer sees why (most often tierd is out of
            // descriptors for the peer's pidfd, or the peer is exiting).
            Err(CallerError::Process(e)) if e.out_of_resources() => {
                return Admission::OutOfResources(conn)
            }
            Err(e) => {
                return Admission::Refused(
                    conn,
                    busy(format!(
                        "tierd cannot identify the peer of this connection ({e}); retry later"
                    )),
                )
            }
        };
        let cfg = self.daemon.config();
        let c = &cfg.daemon;
        let limits = Limits {
            section: "daemon",
            max_total: c.max_connections,
            max_per_uid: c.max_connections_per_uid,
            root_reserve: c.root_reserved_connections,
            evict_idle_for_root: Some(EVICT_IDLE_FOR_ROOT),
        };
        let permit = match self.gate.admit(caller.uid, &limits) {
            Ok(p) => p,
            Err(why) => return Admission::Refused(conn, busy(why.to_string())),
        };
        let timeouts = Timeouts {
            lines: LineLimits {
                idle: Duration::from_millis(c.idle_timeout_ms),
                request: Duration::from_millis(c.request_timeout_ms),
                max_bytes: MAX_REQUEST_BYTES,
            },
            write: Duration::from_millis(c.write_timeout_ms),
        };
        let d = self.daemon.clone();
        match sockets::spawn("tierd-ctl-conn", conn, move |fd| {
            connection(UnixStream::from(fd), caller, d, timeouts, permit)
        }) {
            Ok(()) => Admission::Taken,
            Err((conn, e)) => Admission::Refused(
                conn,
                busy(format!(
                    "tierd cannot start a thread for this connection: {e}"
                )),
            ),
        }
    }

    fn out_of_fds(&self) -> Refusal {
        busy("tierd is out of file descriptors (LimitNOFILE); retry later".into())
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    lines: LineLimits,
    write: Duration,
}

/// Closes an idle connection to make room for root, telling it why.
struct Evictor {
    stream: Arc<UnixStream>,
}

impl Evict for Evictor {
    fn evict(&self) {
        let mut line = serde_json::to_vec(&Response::error(
            ErrorKind::Busy,
            "tierd closed this idle connection to make room for root \
             (daemon.max_connections reached)",
        ))
        .unwrap_or_default();
        line.push(b'\n');
        let _ = nix::sys::socket::send(
            self.stream.as_raw_fd(),
            &line,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        );
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// One connection: request lines in, one reply line each, until the peer closes, goes
/// idle, stalls mid-request, stops reading or is evicted for root. `permit` holds its
/// slot until then and knows whether it waits for a request.
fn connection(
    stream: UnixStream,
    caller: Caller,
    daemon: Arc<Daemon>,
    t: Timeouts,
    permit: Permit,
) {
    if stream.set_write_timeout(Some(t.write)).is_err() {
        return;
    }
    let stream = Arc::new(stream);
    permit.set_evictor(Arc::new(Evictor {
        stream: stream.clone(),
    }));
    let mut reader = LineReader::default();
    loop {
        permit.idle();
        let next = reader.next(&stream, &t.lines);
        permit.busy();
        let (resp, last) = match next {
            Ok(line) => match serde_json::from_slice::<Request>(&line) {
                Ok(req) => (handle(&daemon, &caller, req), false),
                Err(e) => (
                    Response::error(ErrorKind::BadRequest, format!("malformed request: {e}")),
                    false,
                ),
            },
            Err(End::Closed | End::Idle) => return,
            Err(End::TooLong) => (
                Response::error(
                    ErrorKind::BadRequest,
                    format!("request longer than {MAX_REQUEST_BYTES} bytes"),
                ),
                true,
            ),
            Err(End::Slow) => {
                tracing::debug!(
                    uid = caller.uid,
                    pid = caller.pid,
                    "control request incomplete at the timeout; connection closed"
                );
                (
                    Response::error(
                        ErrorKind::BadRequest,
                        format!(
                            "request not complete within {} ms (daemon.request_timeout_ms)",
                            t.lines.request.as_millis()
                        ),
                    ),
                    true,
                )
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        if (&*stream).write_all(&out).is_err() || last {
            return;
        }
    }
}
