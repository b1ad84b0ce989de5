//! What tierd's two Unix sockets share: binding with a mode and a group, connection
//! limits per uid and in total, and an accept loop that refuses politely and backs off
//! when the process runs out of descriptors, threads or memory.
//!
//! Used by [`crate::control`] (`daemon.socket`, JSON lines) and [`crate::protocol`]
//! (`client.socket`, seqpacket). Each server runs [`accept::run`] on its own accept
//! thread and keeps one thread per admitted connection; why that model, and not a
//! poll loop, is in [`accept`].

pub mod accept;
pub mod limits;

pub use accept::{Admission, Refusal};
pub use limits::{Gate, Limits, Permit};

use anyhow::Context;
use nix::sys::socket::{
    bind as sys_bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Pending connections the kernel queues before `accept`: enough for a burst of
/// clients starting together; beyond it `connect` waits (net.core.somaxconn caps it).
const BACKLOG: i32 = 256;

/// Who may connect to a socket: its permission bits and, when set, its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub mode: u32,
    pub gid: Option<u32>,
}

fn new_socket(kind: SockType) -> nix::Result<OwnedFd> {
    socket(AddressFamily::Unix, kind, SockFlag::SOCK_CLOEXEC, None)
}

/// Binds a Unix socket of `kind` at `path` (removing a stale one, refusing a live
/// one), gives it `access` (chmod, then chgrp) and only then listens, so
/// no one connects through laxer permissions. Called once per socket at every start.
pub fn bind(path: &Path, kind: SockType, access: Access) -> anyhow::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let addr = UnixAddr::new(path).with_context(|| format!("socket path {}", path.display()))?;
    if path.exists() {
        let probe = new_socket(kind).context("creating a probe socket")?;
        if connect(probe.as_raw_fd(), &addr).is_ok() {
            anyhow::bail!("{} is in use: is another tierd running?", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let fd = new_socket(kind).with_context(|| format!("creating {}", path.display()))?;
    sys_bind(fd.as_raw_fd(), &addr).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
        .with_context(|| format!("chmod {:o} {}", access.mode, path.display()))?;
    if let Some(gid) = access.gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("chgrp {gid} {}", path.display()))?;
    }
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))
        .with_context(|| format!("listening on {}", path.display()))?;
    Ok(fd)
}

/// Starts a connection's thread running `f(conn)`. When the thread cannot start
/// (EAGAIN at `TasksMax`), the connection comes back so it can be refused with a reason.
pub fn spawn(
    name: &str,
    conn: OwnedFd,
    f: impl FnOnce(OwnedFd) + Send + 'static,
) -> Result<(), (OwnedFd, std::io::Error)> {
    let slot = Arc::new(Mutex::new(Some(conn)));
    let theirs = slot.clone();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let conn = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = conn {
                f(conn);
            }
        });
    match started {
        Ok(_) => Ok(()),
        Err(e) => match slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(conn) => Err((conn, e)),
            None => Ok(()),
        },
    }
}

/// Descriptors tierd needs besides its connections: BPF maps and programs, perf events
/// per CPU, pidfds of managed processes, region and pool memfds (a generous bound).
const FDS_BESIDES_CONNECTIONS: u64 = 1024;

/// At start: raises the soft `RLIMIT_NOFILE` to what the connection limits can use
/// (every connection holds two descriptors: its socket and the peer's pidfd), as far as
/// the hard limit allows, and warns when that is not
/// enough. systemd's default soft limit is 1024 (for select(2), which tierd does not
/// use) with a much higher hard limit; the unit sets `LimitNOFILE` anyway. Past the
/// limit connections are still refused cleanly ("out of file descriptors"), but the
/// limits would not be the ones in the config.
pub fn check_fd_budget(cfg: &tierd_config::Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let need = 2 * u64::from(cfg.daemon.max_connections)
        + 2 * u64::from(cfg.client.max_connections)
        + FDS_BESIDES_CONNECTIONS;
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read RLIMIT_NOFILE");
            return;
        }
    };
    if soft >= need {
        return;
    }
    let raised = need.min(hard);
    match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
        Ok(()) => tracing::info!(from = soft, to = raised, "raised the open-file limit"),
        Err(e) => tracing::debug!(error = %e, "cannot raise RLIMIT_NOFILE"),
    }
    if raised < need {
        tracing::warn!(
            rlimit_nofile = raised,
            wanted = need,
            "the open-file limit is below what the connection limits allow; raise \
             LimitNOFILE (docs/operations.md) or lower *.max_connections"
        );
    }
}

/// `[daemon]`/`[client]` validation errors as anyhow errors naming the key.
pub fn invalid(e: tierd_config::Invalid) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", e.key, e.reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn bind_sets_mode_and_group_and_refuses_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Root may give the socket any group: use one it is not in. Others can only
        // use their own.
        let gid = if nix::unistd::geteuid().is_root() {
            4242
        } else {
            nix::unistd::getegid().as_raw()
        };
        let access = Access {
            mode: 0o640,
            gid: Some(gid),
        };
        let fd = bind(&path, SockType::SeqPacket, access).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!(meta.gid(), gid);
        let again = bind(&path, SockType::SeqPacket, access).unwrap_err();
        assert!(format!("{again:#}").contains("in use"), "{again:#}");
        drop(fd);
        // A stale socket file (no listener) is replaced.
        bind(&path, SockType::Stream, access).unwrap();
    }
}
