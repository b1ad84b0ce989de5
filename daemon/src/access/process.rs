//! A process pinned by a pidfd, and its credentials as `/proc/PID/status` shows them.
//!
//! A pid alone names whichever process holds it now; a pidfd names one process for
//! good. Everything tierd reads about a process by pid (`/proc/PID/status`, `maps`) is
//! read *then verified*: if the pidfd still says "not exited" after the read, the pid
//! was not reused in between (a pid is only reused after its process is reaped), so the
//! read described the pinned process. Peers of a socket are pinned with `SO_PEERPIDFD`
//! (Linux 6.5+), the kernel's own record of who connected; on older kernels with a
//! pidfd of the `SO_PEERCRED` pid, refused if that process started after the
//! connection was accepted (then it cannot be the peer: the peer died and its pid was
//! reused). Called by the control socket (its caller and every pid a request names) and
//! the client protocol (its peer), on their connection threads.

use crate::proc::pidfd::PidFd;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// `SO_PEERPIDFD` (include/uapi/asm-generic/socket.h; Linux 6.5).
const SO_PEERPIDFD: libc::c_int = 77;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProcessError {
    #[error("no process {0}")]
    NoSuchProcess(i32),
    #[error("process {0} exited")]
    Exited(i32),
    #[error("process {pid} started after its connection was accepted: its pid was reused")]
    Reused { pid: i32 },
    #[error("{path}: {msg}")]
    Proc { path: PathBuf, msg: String },
    /// tierd itself is out of descriptors or memory for the pidfd.
    #[error("cannot pin process {pid}: {errno}")]
    Resources { pid: i32, errno: nix::errno::Errno },
}

impl ProcessError {
    /// The failure is tierd's (out of descriptors or memory), not the process's.
    pub fn out_of_resources(&self) -> bool {
        matches!(self, ProcessError::Resources { .. })
    }
}

/// Real, effective, saved and filesystem ids (the order of `/proc/PID/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
    pub fs: u32,
}

/// What the kernel's ptrace access check looks at, as `/proc/PID/status` shows it
/// (ids translated into tierd's user namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Creds {
    pub uid: Ids,
    pub gid: Ids,
    pub groups: Vec<u32>,
    /// Permitted and effective capability sets (bit N = capability N).
    pub cap_permitted: u64,
    pub cap_effective: u64,
    /// Inode of `/proc/PID/ns/user`: capabilities only count in their own namespace.
    pub user_ns: u64,
}

pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SYS_PTRACE: u32 = 19;

impl Creds {
    /// Parses the `Uid:`, `Gid:`, `Groups:`, `CapPrm:` and `CapEff:` lines of a
    /// `/proc/PID/status` text; `user_ns` is left 0 for the caller to fill.
    pub fn parse_status(text: &str) -> Result<Creds, String> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .ok_or_else(|| format!("no {name} line"))
        };
        let ids = |name: &str| -> Result<Ids, String> {
            let v: Vec<u32> = field(name)?
                .split_whitespace()
                .map(|x| x.parse().map_err(|_| format!("bad {name} {x:?}")))
                .collect::<Result<_, _>>()?;
            match v[..] {
                [real, effective, saved, fs] => Ok(Ids {
                    real,
                    effective,
                    saved,
                    fs,
                }),
                _ => Err(format!("{name} has {} ids, not 4", v.len())),
            }
        };
        let caps = |name: &str| -> Result<u64, String> {
            let v = field(name)?.trim();
            u64::from_str_radix(v, 16).map_err(|_| format!("bad {name} {v:?}"))
        };
        Ok(Creds {
            uid: ids("Uid:")?,
            gid: ids("Gid:")?,
            groups: field("Groups:")?
                .split_whitespace()
                .map(|x| x.parse().map_err(|_| format!("bad group {x:?}")))
                .collect::<Result<_, _>>()?,
            cap_permitted: caps("CapPrm:")?,
            cap_effective: caps("CapEff:")?,
            user_ns: 0,
        })
    }

    pub fn has_effective(&self, cap: u32) -> bool {
        self.cap_effective & (1 << cap) != 0
    }

    /// Effective uid 0 in tierd's user namespace: "root" for the ceilings and `reload`.
    pub fn is_root(&self, own_user_ns: u64) -> bool {
        self.uid.effective == 0 && self.user_ns == own_user_ns
    }
}

/// One process, pinned.
#[derive(Debug)]
pub struct Process {
    pidfd: PidFd,
}

impl Process {
    /// Pins the process that holds `pid` now.
    pub fn open(pid: i32) -> Result<Process, ProcessError> {
        use nix::errno::Errno;
        let pidfd = PidFd::open(pid).map_err(|errno| match errno {
            Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM => ProcessError::Resources { pid, errno },
            _ => ProcessError::NoSuchProcess(pid),
        })?;
        Ok(Process { pidfd })
    }

    /// Pins the peer of a connected Unix socket. `pid` is its `SO_PEERCRED` pid and
    /// `accepted_ticks` the boot time, in clock ticks, at which the connection was
    /// accepted ([`boot_ticks`]), for kernels without `SO_PEERPIDFD`.
    pub fn of_peer(
        sock: BorrowedFd<'_>,
        pid: i32,
        accepted_ticks: u64,
    ) -> Result<Process, ProcessError> {
        let mut pidfd: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `pidfd`, an int.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERPIDFD,
                (&mut pidfd as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 && pidfd >= 0 {
            // SAFETY: the kernel installed a new pidfd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            let p = Process {
                pidfd: PidFd::from_owned(pid, fd),
            };
            return if p.alive() {
                Ok(p)
            } else {
                Err(ProcessError::Exited(pid))
            };
        }
        let p = Process::open(pid)?;
        let started = p.start_ticks()?;
        if started > accepted_ticks {
            return Err(ProcessError::Reused { pid });
        }
        Ok(p)
    }

    pub fn pid(&self) -> i32 {
        self.pidfd.pid()
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// False once the process has exited (its pidfd polls readable).
    pub fn alive(&self) -> bool {
        !self.pidfd.exited()
    }

    /// `Err(Exited)` once the process has exited: call after reading anything by pid.
    pub fn verify(&self) -> Result<(), ProcessError> {
        if self.alive() {
            Ok(())
        } else {
            Err(ProcessError::Exited(self.pid()))
        }
    }

    fn read(&self, rel: &str) -> Result<String, ProcessError> {
        let path = PathBuf::from(format!("/proc/{}/{rel}", self.pid()));
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ProcessError::Exited(self.pid()),
            _ => ProcessError::Proc {
                path: path.clone(),
                msg: e.to_string(),
            },
        })?;
        self.verify()?;
        Ok(text)
    }

    /// Start time, clock ticks after boot (`/proc/PID/stat` field 22).
    pub fn start_ticks(&self) -> Result<u64, ProcessError> {
        let stat = self.read("stat")?;
        parse_start_ticks(&stat).ok_or_else(|| ProcessError::Proc {
            path: format!("/proc/{}/stat", self.pid()).into(),
            msg: "no start time".into(),
        })
    }

    /// The process's credentials now (read, then verified to be this process's).
    pub fn creds(&self) -> Result<Creds, ProcessError> {
        let text = self.read("status")?;
        let mut c = Creds::parse_status(&text).map_err(|msg| ProcessError::Proc {
            path: format!("/proc/{}/status", self.pid()).into(),
            msg,
        })?;
        c.user_ns = user_ns_of(&format!("/proc/{}/ns/user", self.pid())).unwrap_or(0);
        self.verify()?;
        Ok(c)
    }
}

/// The field after the `(comm)` of a stat line may be counted from the last `)`.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; starttime is field 22, i.e. the 20th after the comm.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Inode of a user-namespace link (`/proc/self/ns/user`, ...).
pub fn user_ns_of(path: &str) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Time since boot (CLOCK_BOOTTIME, which `/proc/PID/stat` start times count in), in
/// clock ticks, rounded up.
pub fn boot_ticks() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    (ns * hz).div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    const STATUS: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\nFDSize:\t64\n\
        Groups:\t27 100 \nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
        CapEff:\t0000000000080000\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn status_lines_are_parsed() {
        let c = Creds::parse_status(STATUS).unwrap();
        assert_eq!(
            c.uid,
            Ids {
                real: 1000,
                effective: 0,
                saved: 0,
                fs: 0
            }
        );
        assert_eq!(c.gid.real, 100);
        assert_eq!(c.groups, vec![27, 100]);
        assert_eq!(c.cap_permitted, 0x1ff_ffff_ffff);
        assert!(c.has_effective(CAP_SYS_PTRACE));
        assert!(!c.has_effective(CAP_SETUID));
        assert!(Creds::parse_status("Uid:\t1\t2\n").is_err());
        let no_groups = STATUS.replace("Groups:\t27 100 ", "Groups:\t");
        assert!(Creds::parse_status(&no_groups).unwrap().groups.is_empty());
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "42 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 123456 19";
        assert_eq!(parse_start_ticks(stat), Some(123456));
    }

    #[test]
    fn own_process_is_pinned_and_a_child_exit_is_seen() {
        let me = Process::open(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let c = me.creds().unwrap();
        assert_eq!(c.uid.real, nix::unistd::getuid().as_raw());
        assert_eq!(Some(c.user_ns), user_ns_of("/proc/self/ns/user"));
        assert!(me.start_ticks().unwrap() <= boot_ticks());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let p = Process::open(child.id() as i32).unwrap();
        child.wait().unwrap();
        assert!(!p.alive());
        assert_eq!(p.creds().unwrap_err(), ProcessError::Exited(p.pid()));
        assert_eq!(
            Process::open(-1).unwrap_err(),
            ProcessError::NoSuchProcess(-1)
        );
    }

    #[test]
    fn socket_peer_is_pinned_and_a_late_start_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = std::process::id() as i32;
        let p = Process::of_peer(a.as_fd(), me, boot_ticks()).unwrap();
        assert!(p.alive());
        // Without SO_PEERPIDFD the start time decides; a socketpair has one on 6.5+, so
        // exercise the fallback rule through a plain pipe (no peer at all).
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(
            Process::of_peer(r.as_fd(), me, 0).unwrap_err(),
            ProcessError::Reused { pid: me },
            "a process that started after the accept cannot be the peer"
        );
        assert!(Process::of_peer(r.as_fd(), me, boot_ticks()).is_ok());
    }
}
