//! A pidfd pins the identity of a process: once it exits, its pid may be reused, but
//! the pidfd keeps reporting the old process as gone.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug)]
pub struct PidFd {
    pid: i32,
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd; `ESRCH` means no such process.
    pub fn open(pid: i32) -> Result<PidFd, nix::errno::Errno> {
        if pid <= 0 {
            return Err(nix::errno::Errno::ESRCH);
        }
        // SAFETY: pidfd_open takes (pid_t, unsigned int flags) and returns a new fd or -1.
        let rc =
            unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
        if rc < 0 {
            return Err(nix::errno::Errno::last());
        }
        // SAFETY: rc is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as i32) };
        Ok(PidFd { pid, fd })
    }

    /// Takes a pidfd the kernel handed over another way (`SO_PEERPIDFD`).
    pub fn from_owned(pid: i32, fd: OwnedFd) -> PidFd {
        PidFd { pid, fd }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// True once the process has exited (the pidfd polls readable).
    pub fn exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc > 0 && (pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_child_exit_is_seen() {
        let me = PidFd::open(std::process::id() as i32).unwrap();
        assert!(!me.exited());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let fd = PidFd::open(child.id() as i32).unwrap();
        child.wait().unwrap();
        assert!(fd.exited());
        assert_eq!(PidFd::open(-5).unwrap_err(), nix::errno::Errno::ESRCH);
    }
}
