//! The client socket: a `SOCK_SEQPACKET` Unix socket, one packet per message.
//!
//! The accept thread (`tierd-client`, [`crate::sockets::accept`]) polls every 200 ms
//! for daemon shutdown (then removes the socket file) and admits connections under
//! `client.max_connections` and `client.max_connections_per_uid`; a refused one gets
//! the wire protocol's Error reply (errno EAGAIN, or EMFILE when tierd is out of
//! descriptors) to its first request. Each admitted connection gets a thread that
//! identifies the peer (`SO_PEERCRED`, then a pidfd that pins the process), answers its
//! messages one by one through [`Session`], and cleans up when the peer closes, dies,
//! or is dropped by the poller. Client connections live as long as the client's
//! regions, so there is no idle timeout; a message is one packet, so there is no
//! half-sent request to wait for; a client that does not read its replies is dropped
//! after `client.write_timeout_ms`.

use super::session::{Session, SessionError};
use super::Hub;
use crate::sockets::{self, accept, Access, Admission, Gate, Limits, Permit, Refusal};
use nix::sys::socket::{getsockopt, setsockopt, sockopt, SockType, UnixCredentials};
use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tierd_client::sock;
use tierd_client::wire::{self, Reply, Request};

/// Binds the client socket at `path` with `mode` and, when given, group `gid`.
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> anyhow::Result<OwnedFd> {
    sockets::bind(path, SockType::SeqPacket, Access { mode, gid })
}

/// Accepts connections until the daemon shuts down.
pub fn serve(listener: OwnedFd, hub: Arc<Hub>, path: PathBuf) {
    let mut server = Clients {
        hub: hub.clone(),
        gate: Gate::default(),
    };
    accept::run(&listener, "client", &hub.daemon.shutdown, &mut server);
    let _ = std::fs::remove_file(&path);
}

/// The sequence number of a packet that failed to decode, if its header got that far.
fn seq_of(buf: &[u8]) -> u32 {
    buf.get(8..12)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// An Error reply to the refused client's first request (seq 0 if it sent none).
fn refuse(errno: i32, message: String) -> Refusal {
    let why = message.clone();
    Refusal {
        why,
        reply: Box::new(move |first| Reply::Error { errno, message }.encode(seq_of(first))),
    }
}

struct Clients {
    hub: Arc<Hub>,
    gate: Gate,
}

impl accept::Server for Clients {
    fn admit(&mut self, conn: OwnedFd) -> Admission {
        let creds = match getsockopt(&conn, sockopt::PeerCredentials) {
            Ok(c) => c,
            Err(e) => {
                return Admission::Refused(
                    conn,
                    refuse(
                        e as i32,
                        format!("tierd cannot read the peer's credentials ({e}); retry later"),
                    ),
                )
            }
        };
        let cfg = self.hub.daemon.config();
        let limits = Limits {
            section: "client",
            max_total: cfg.client.max_connections,
            max_per_uid: cfg.client.max_connections_per_uid,
            root_reserve: 0,
            // Client connections are idle by design (hints go through shared memory).
            evict_idle_for_root: None,
        };
        let permit = match self.gate.admit(creds.uid(), &limits) {
            Ok(p) => p,
            Err(why) => return Admission::Refused(conn, refuse(libc::EAGAIN, why.to_string())),
        };
        let write_timeout = Duration::from_millis(cfg.client.write_timeout_ms);
        let hub = self.hub.clone();
        match sockets::spawn("tierd-client-conn", conn, move |fd| {
            connection(fd, hub, creds, write_timeout, permit)
        }) {
            Ok(()) => Admission::Taken,
            Err((conn, e)) => Admission::Refused(
                conn,
                refuse(
                    libc::EAGAIN,
                    format!("tierd cannot start a thread for this connection: {e}"),
                ),
            ),
        }
    }

    fn out_of_fds(&self) -> Refusal {
        refuse(
            libc::EMFILE,
            "tierd is out of file descriptors (LimitNOFILE); retry later".into(),
        )
    }
}

fn connection(
    fd: OwnedFd,
    hub: Arc<Hub>,
    creds: UnixCredentials,
    write_timeout: Duration,
    _permit: Permit,
) {
    let timeout = TimeVal::new(
        write_timeout.as_secs() as i64,
        write_timeout.subsec_micros() as i64,
    );
    if let Err(e) = setsockopt(&fd, sockopt::SendTimeout, &timeout) {
        tracing::warn!(error = %e, "cannot set the client socket's send timeout; dropped");
        return;
    }
    let fd = Arc::new(fd);
    let mut session = match Session::open(hub.clone(), &creds, fd.clone()) {
        Ok(s) => s,
        Err(e) => {
            let SessionError::Peer { source, .. } = &e;
            let errno = if source.out_of_resources() {
                libc::EMFILE
            } else {
                libc::ESRCH
            };
            let reply = Reply::Error {
                errno,
                message: e.to_string(),
            };
            let _ = sock::send(&*fd, &reply.encode(0), None);
            return;
        }
    };
    hub.daemon.clients.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        pid = creds.pid(),
        uid = creds.uid(),
        "protocol client connected"
    );
    // One byte more than the limit, so an oversized packet shows as truncated.
    let mut buf = vec![0u8; wire::MAX_MESSAGE + 1];
    loop {
        let packet = match sock::recv(&*fd, &mut buf) {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let (seq, reply, out_fd) = if packet.truncated || packet.len > wire::MAX_MESSAGE {
            let message = format!("message longer than {} bytes", wire::MAX_MESSAGE);
            (
                seq_of(&buf),
                Reply::Error {
                    errno: libc::EMSGSIZE,
                    message,
                },
                None,
            )
        } else {
            match Request::decode(&buf[..packet.len]) {
                Ok((seq, req)) => {
                    let (reply, out_fd) = session.handle(req);
                    (seq, reply, out_fd)
                }
                Err(e) => (
                    seq_of(&buf[..packet.len]),
                    Reply::Error {
                        errno: libc::EPROTO,
                        message: format!("malformed message: {e}"),
                    },
                    None,
                ),
            }
        };
        let raw = out_fd.as_ref().map(|f| f.as_raw_fd());
        if let Err(e) = sock::send(&*fd, &reply.encode(seq), raw) {
            if e == nix::errno::Errno::EAGAIN {
                tracing::debug!(
                    pid = creds.pid(),
                    "protocol client does not read its replies; dropped at client.write_timeout_ms"
                );
            }
            break;
        }
    }
    session.close();
    hub.daemon.clients.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(pid = creds.pid(), "protocol client gone");
}
