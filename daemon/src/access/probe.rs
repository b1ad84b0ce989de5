//! The kernel decides: a short-lived child of tierd takes on the caller's credentials
//! and asks the kernel the question `move_pages(2)` itself asks.
//!
//! The child drops to the caller's real uid and gid and supplementary groups, keeps of
//! its capabilities only the caller's permitted and effective sets (intersected with
//! tierd's own: a caller holding a capability tierd lacks is judged without it, which
//! can only refuse more), and calls `move_pages(target, 1, [0], NULL, status, 0)`: with
//! `nodes == NULL` the kernel only queries, and before it looks at any page
//! `find_mm_struct()` (mm/migrate.c) runs `ptrace_may_access(task,
//! PTRACE_MODE_READ_REALCREDS)` and `security_task_movememory()`: `EPERM` is "no", `0`
//! is "yes" (the status of address 0 is irrelevant). The child reports the errno as its
//! exit code. A caller in another user namespace is judged with no capabilities.
//!
//! tierd is multi-threaded: between `fork` and `_exit` the child makes raw system
//! calls only (no allocation, no locks, no libc wrappers that broadcast set*id to
//! threads); everything it needs is prepared before the fork. Needs CAP_SETUID and
//! CAP_SETGID (the unit's bounding set has them for this alone); without them
//! [`super::model`] answers instead.

use super::process::Creds;

/// `_LINUX_CAPABILITY_VERSION_3` and its two 32-bit words per set.
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Exit codes of the child's setup steps (errnos stay below 100).
const FAILED_KEEPCAPS: i32 = 101;
const FAILED_SETGROUPS: i32 = 102;
const FAILED_SETGID: i32 = 103;
const FAILED_SETUID: i32 = 104;
const FAILED_CAPSET: i32 = 105;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProbeError {
    #[error("fork: {0}")]
    Fork(nix::errno::Errno),
    #[error("the access probe child could not take on the caller's credentials (step {0})")]
    Setup(i32),
    #[error("the access probe child died: {0}")]
    Died(String),
}

/// What the kernel answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    /// `EPERM` (or `EACCES` from a security module).
    Denied,
    /// `ESRCH`: no such process; `EINVAL`: it has no memory (a zombie, a kernel thread).
    Gone,
}

/// tierd's own permitted capability set (to intersect the caller's with).
pub fn own_permitted() -> u64 {
    let (prm, _) = own_caps();
    prm
}

/// Whether this process can run the probe (CAP_SETUID and CAP_SETGID effective).
pub fn available() -> bool {
    let (_, eff) = own_caps();
    let need = (1u64 << super::process::CAP_SETUID) | (1u64 << super::process::CAP_SETGID);
    eff & need == need
}

fn own_caps() -> (u64, u64) {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a v3 header writes two CapData structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return (0, 0);
    }
    let join = |lo: u32, hi: u32| lo as u64 | (hi as u64) << 32;
    (
        join(data[0].permitted, data[1].permitted),
        join(data[0].effective, data[1].effective),
    )
}

/// The child: take on the caller's credentials, ask, exit with the errno.
///
/// # Safety
/// Only in the child of a fork, which it ends.
#[allow(clippy::too_many_arguments)]
unsafe fn child_main(
    groups: &[libc::gid_t],
    uid: u32,
    gid: u32,
    hdr: &mut CapHeader,
    caps: &[CapData; 2],
    target: i32,
    page: &[usize; 1],
    status: &mut [libc::c_int; 1],
) -> ! {
    type L = libc::c_long;
    // SAFETY (all calls below): raw syscalls on the child's own memory; `_exit` never
    // returns, so no destructor or atexit handler runs in the child.
    unsafe {
        if libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_KEEPCAPS as L,
            1 as L,
            0 as L,
            0 as L,
            0 as L,
        ) != 0
        {
            libc::_exit(FAILED_KEEPCAPS);
        }
        if libc::syscall(libc::SYS_setgroups, groups.len() as L, groups.as_ptr()) != 0 {
            libc::_exit(FAILED_SETGROUPS);
        }
        if libc::syscall(libc::SYS_setresgid, gid as L, gid as L, gid as L) != 0 {
            libc::_exit(FAILED_SETGID);
        }
        if libc::syscall(libc::SYS_setresuid, uid as L, uid as L, uid as L) != 0 {
            libc::_exit(FAILED_SETUID);
        }
        if libc::syscall(libc::SYS_capset, hdr as *mut CapHeader, caps.as_ptr()) != 0 {
            libc::_exit(FAILED_CAPSET);
        }
        let rc = libc::syscall(
            libc::SYS_move_pages,
            target as L,
            1 as L,
            page.as_ptr(),
            std::ptr::null::<libc::c_int>(),
            status.as_mut_ptr(),
            0 as L,
        );
        let errno = if rc < 0 { *libc::__errno_location() } else { 0 };
        libc::_exit(errno.clamp(0, 99))
    }
}

/// Asks the kernel whether a process with `caller`'s credentials may read `target`'s
/// memory the way move_pages(2) does. `own_user_ns`: tierd's user namespace.
pub fn ask(caller: &Creds, target: i32, own_user_ns: u64) -> Result<Answer, ProbeError> {
    let groups: Vec<libc::gid_t> = caller.groups.clone();
    let (uid, gid) = (caller.uid.real, caller.gid.real);
    let (prm, eff) = if caller.user_ns == own_user_ns {
        let prm = caller.cap_permitted & own_permitted();
        (prm, caller.cap_effective & prm)
    } else {
        (0, 0)
    };
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let caps = [
        CapData {
            effective: eff as u32,
            permitted: prm as u32,
            inheritable: 0,
        },
        CapData {
            effective: (eff >> 32) as u32,
            permitted: (prm >> 32) as u32,
            inheritable: 0,
        },
    ];
    let page: [usize; 1] = [0];
    let mut status: [libc::c_int; 1] = [0];
    // SAFETY: after fork the child runs only raw syscalls on memory prepared above
    // (its copy), then _exit; no allocation, lock or unwinding happens in it.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(ProbeError::Fork(nix::errno::Errno::last()));
    }
    if child == 0 {
        // SAFETY: raw syscalls with pointers to the child's copies of the arrays above.
        unsafe {
            child_main(
                &groups,
                uid,
                gid,
                &mut hdr,
                &caps,
                target,
                &page,
                &mut status,
            )
        }
    }
    let mut wstatus = 0;
    loop {
        // SAFETY: waits for our own child; writes one int.
        let rc = unsafe { libc::waitpid(child, &mut wstatus, 0) };
        if rc == child {
            break;
        }
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::EINTR {
            return Err(ProbeError::Died(format!("waitpid: {e}")));
        }
    }
    if !libc::WIFEXITED(wstatus) {
        return Err(ProbeError::Died(format!("wait status {wstatus:#x}")));
    }
    match libc::WEXITSTATUS(wstatus) {
        0 => Ok(Answer::Allowed),
        libc::EPERM | libc::EACCES => Ok(Answer::Denied),
        libc::ESRCH | libc::EINVAL => Ok(Answer::Gone),
        code if code > 100 => Err(ProbeError::Setup(code)),
        code => Err(ProbeError::Died(format!(
            "move_pages: {}",
            nix::errno::Errno::from_raw(code)
        ))),
    }
}
