//! Who is asking on a control connection: the peer process, pinned when the connection
//! is accepted (`SO_PEERPIDFD`, see [`crate::access::process`]), its credentials
//! re-read at every request (a process may drop or gain privileges while connected).

use crate::access::process::{boot_ticks, Creds, Process, ProcessError};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::os::fd::AsFd;

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("no peer credentials: {0}")]
    NoCredentials(nix::errno::Errno),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// The peer of a control connection.
#[derive(Debug)]
pub struct Caller {
    /// Effective uid and pid when it connected (`SO_PEERCRED`).
    pub uid: u32,
    pub pid: i32,
    process: Process,
}

impl Caller {
    /// Identifies the peer of a just-accepted connection.
    pub fn from_socket(sock: &impl AsFd) -> Result<Caller, CallerError> {
        let accepted = boot_ticks();
        let c = getsockopt(sock, PeerCredentials).map_err(CallerError::NoCredentials)?;
        let process = Process::of_peer(sock.as_fd(), c.pid(), accepted)?;
        Ok(Caller {
            uid: c.uid(),
            pid: c.pid(),
            process,
        })
    }

    /// A caller for an in-process test: this process.
    pub fn this_process() -> Result<Caller, CallerError> {
        let pid = std::process::id() as i32;
        Ok(Caller {
            uid: nix::unistd::geteuid().as_raw(),
            pid,
            process: Process::open(pid)?,
        })
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Its credentials now.
    pub fn creds(&self) -> Result<Creds, ProcessError> {
        self.process.creds()
    }
}
