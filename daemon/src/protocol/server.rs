//! The client socket: a `SOCK_SEQPACKET` Unix socket, one packet per message.
//!
//! The accept thread polls every 200 ms for daemon shutdown (then removes the socket
//! file); each connection gets a thread that identifies the peer (`SO_PEERCRED`, then a
//! pidfd that pins the process), answers its messages one by one through [`Session`],
//! and cleans up when the peer closes, dies, or is dropped by the poller.

use super::session::Session;
use super::Hub;
use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    accept4, bind as sys_bind, getsockopt, listen, socket, sockopt::PeerCredentials, AddressFamily,
    Backlog, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tierd_client::sock;
use tierd_client::wire::{self, Reply, Request};

fn seqpacket() -> nix::Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
}

/// Binds the client socket at `path` (removing a stale one) with `mode` permissions.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let addr = UnixAddr::new(path).with_context(|| format!("socket path {}", path.display()))?;
    if path.exists() {
        let probe = seqpacket().context("creating a probe socket")?;
        if nix::sys::socket::connect(probe.as_raw_fd(), &addr).is_ok() {
            anyhow::bail!("{} is in use: is another tierd running?", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let fd = seqpacket().context("creating the client socket")?;
    sys_bind(fd.as_raw_fd(), &addr).with_context(|| format!("binding {}", path.display()))?;
    listen(&fd, Backlog::new(64).unwrap_or(Backlog::MAXCONN))
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))?;
    Ok(fd)
}

/// Accepts connections until the daemon shuts down.
pub fn serve(listener: OwnedFd, hub: Arc<Hub>, path: PathBuf) {
    while !hub.daemon.shutdown.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(error = %e, "client socket poll failed; protocol stopped");
                return;
            }
        }
        let fd = match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(e) => {
                tracing::warn!(error = %e, "client socket accept failed");
                continue;
            }
        };
        let h = hub.clone();
        let spawned = std::thread::Builder::new()
            .name("tierd-client-conn".into())
            .spawn(move || connection(fd, h));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot spawn client connection thread");
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// The sequence number of a packet that failed to decode, if its header got that far.
fn seq_of(buf: &[u8]) -> u32 {
    buf.get(8..12)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn connection(fd: OwnedFd, hub: Arc<Hub>) {
    let creds = match getsockopt(&fd, PeerCredentials) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no peer credentials; dropping client connection");
            return;
        }
    };
    let fd = Arc::new(fd);
    let mut session = match Session::open(hub.clone(), &creds, fd.clone()) {
        Ok(s) => s,
        Err(e) => {
            let reply = Reply::Error {
                errno: libc::ESRCH,
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
        if sock::send(&*fd, &reply.encode(seq), raw).is_err() {
            break;
        }
    }
    session.close();
    hub.daemon.clients.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(pid = creds.pid(), "protocol client gone");
}
