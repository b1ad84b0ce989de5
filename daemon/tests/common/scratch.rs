//! Scratch processes with chosen credentials for the permission tests, and the
//! kernel's own verdict on them: shared by the access rule's unit tests
//! (`daemon/src/access/tests.rs`) and the control-socket matrix against the real tierd
//! (`daemon/tests/permissions.rs`), which include this file with `#[path]` and each set
//! `SCRATCH_UID_BASE` (their own uids, so the two test binaries never share a user).
//! Everything that runs in a fork child makes raw syscalls only: the tests have threads.

#![allow(dead_code)] // each includer uses a different part

/// Credentials to give a scratch process.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub uid: (u32, u32, u32),
    pub gid: (u32, u32, u32),
    pub dumpable: bool,
    /// Keep the permitted capabilities across the uid change (`PR_SET_KEEPCAPS`).
    pub keep_caps: bool,
}

pub const fn plain(name: &'static str, id: u32) -> Spec {
    Spec {
        name,
        uid: (id, id, id),
        gid: (id, id, id),
        dumpable: true,
        keep_caps: false,
    }
}

pub const ROOT: Spec = plain("root", 0);
pub const A: Spec = plain("user-a", super::SCRATCH_UID_BASE + 1);
pub const B: Spec = plain("user-b", super::SCRATCH_UID_BASE + 2);
pub const A_NODUMP: Spec = Spec {
    name: "user-a-nondumpable",
    dumpable: false,
    ..A
};
/// What a set-uid-root program run by A looks like: real uid A, effective and saved 0
/// (it keeps every capability); the kernel makes it non-dumpable.
pub const A_SETUID: Spec = Spec {
    name: "user-a-setuid-root",
    uid: (A.uid.0, 0, 0),
    dumpable: false,
    ..A
};
/// Saved uid 0 only: all permitted capabilities kept, none effective; dumpable.
pub const A_SAVED_ROOT: Spec = Spec {
    name: "user-a-saved-uid-0",
    uid: (A.uid.0, A.uid.0, 0),
    ..A
};

/// Plain user A's ids, but every capability still permitted (none effective): only
/// the capability-subset part of the rule refuses A.
pub const A_CAPABLE: Spec = Spec {
    name: "user-a-capable",
    keep_caps: true,
    ..A
};

/// Takes on `s` with raw syscalls (the caller is a fork child of a threaded process).
///
/// # Safety
/// Only in a fork child.
pub unsafe fn become_spec(s: &Spec) {
    type L = libc::c_long;
    // SAFETY: raw syscalls on no memory but a null group list.
    unsafe {
        libc::syscall(libc::SYS_setgroups, 0 as L, std::ptr::null::<libc::gid_t>());
        if s.keep_caps {
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_KEEPCAPS as L,
                1 as L,
                0 as L,
                0 as L,
                0 as L,
            );
        }
        libc::syscall(
            libc::SYS_setresgid,
            s.gid.0 as L,
            s.gid.1 as L,
            s.gid.2 as L,
        );
        libc::syscall(
            libc::SYS_setresuid,
            s.uid.0 as L,
            s.uid.1 as L,
            s.uid.2 as L,
        );
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_DUMPABLE as L,
            s.dumpable as L,
            0 as L,
            0 as L,
            0 as L,
        );
    }
}

/// A sleeping process with `spec`'s credentials, killed on drop.
pub struct Scratch {
    pub spec: Spec,
    pub pid: i32,
}

impl Scratch {
    pub fn spawn(spec: Spec) -> Scratch {
        // SAFETY: the child makes raw syscalls only and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: fork child.
            unsafe {
                become_spec(&spec);
                loop {
                    libc::pause();
                }
            }
        }
        // Wait until the credentials show.
        let t0 = std::time::Instant::now();
        while !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|s| s.contains(&format!("Uid:\t{}\t", spec.uid.0)))
        {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(5),
                "scratch {pid}"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Scratch { spec, pid }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Runs `f` in a fork child with `spec`'s credentials; returns its exit code.
/// `f` must make raw syscalls only.
pub fn in_child(spec: &Spec, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child takes on the spec, runs `f` (raw syscalls) and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: fork child.
        unsafe {
            become_spec(spec);
            libc::_exit(f())
        }
    }
    let mut ws = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, &mut ws, 0) };
    assert!(libc::WIFEXITED(ws), "child {ws:#x}");
    libc::WEXITSTATUS(ws)
}

/// The kernel's verdict: may `caller` move_pages(target)?
pub fn kernel_says(caller: &Spec, target: i32) -> bool {
    let page = [0usize];
    let mut status = [0 as libc::c_int];
    let code = in_child(caller, || {
        // SAFETY: move_pages in query mode on our own arrays.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                target as libc::c_long,
                1 as libc::c_long,
                page.as_ptr(),
                std::ptr::null::<libc::c_int>(),
                status.as_mut_ptr(),
                0 as libc::c_long,
            )
        };
        // SAFETY: reads this thread's errno.
        if rc == 0 {
            0
        } else {
            unsafe { *libc::__errno_location() }
        }
    });
    assert!(code == 0 || code == libc::EPERM, "{}: {code}", caller.name);
    code == 0
}
