//! The access rule against the kernel itself: scratch processes with chosen
//! credentials (forked from this test, which must run as root), and for every (caller,
//! target) pair the kernel's own verdict, from a child with the caller's exact
//! credentials calling move_pages(2) on the target, compared with [`Access::check`]
//! by probe and by model. Skipped (with a note) when not root.

use super::*;

/// Credentials to give a scratch process.
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    uid: (u32, u32, u32),
    gid: (u32, u32, u32),
    dumpable: bool,
    /// Keep the permitted capabilities across the uid change (`PR_SET_KEEPCAPS`).
    keep_caps: bool,
}

const fn plain(name: &'static str, id: u32) -> Spec {
    Spec {
        name,
        uid: (id, id, id),
        gid: (id, id, id),
        dumpable: true,
        keep_caps: false,
    }
}

const ROOT: Spec = plain("root", 0);
const A: Spec = plain("user-a", 64_101);
const B: Spec = plain("user-b", 64_102);
const A_NODUMP: Spec = Spec {
    name: "user-a-nondumpable",
    dumpable: false,
    ..A
};
/// What a set-uid-root program run by A looks like: real uid A, effective and saved 0
/// (it keeps every capability); the kernel makes it non-dumpable.
const A_SETUID: Spec = Spec {
    name: "user-a-setuid-root",
    uid: (64_101, 0, 0),
    dumpable: false,
    ..A
};
/// Saved uid 0 only: all permitted capabilities kept, none effective; dumpable.
const A_SAVED_ROOT: Spec = Spec {
    name: "user-a-saved-uid-0",
    uid: (64_101, 64_101, 0),
    ..A
};

/// Plain user A's ids, but every capability still permitted (none effective): only
/// the capability-subset part of the rule refuses A.
const A_CAPABLE: Spec = Spec {
    name: "user-a-capable",
    keep_caps: true,
    ..A
};

/// Takes on `s` with raw syscalls (the caller is a fork child of a threaded process).
///
/// # Safety
/// Only in a fork child.
unsafe fn become_spec(s: &Spec) {
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

/// A process with `s`'s credentials that sleeps until killed.
struct Scratch {
    spec: Spec,
    pid: i32,
}

impl Scratch {
    fn spawn(spec: Spec) -> Scratch {
        // SAFETY: the child makes raw syscalls only and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: we are the fork child.
            unsafe {
                become_spec(&spec);
                loop {
                    libc::pause();
                }
            }
        }
        // Wait until the credentials show.
        let t0 = Instant::now();
        while std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| !s.contains(&format!("Uid:\t{}\t", spec.uid.0)))
            .unwrap_or(true)
        {
            assert!(t0.elapsed() < Duration::from_secs(5), "scratch {pid}");
            std::thread::sleep(Duration::from_millis(1));
        }
        Scratch { spec, pid }
    }

    fn process(&self) -> Process {
        Process::open(self.pid).unwrap()
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

/// The kernel's verdict: may a process with `caller`'s credentials move_pages(target)?
fn kernel_says(caller: &Spec, target: i32) -> bool {
    let page: [usize; 1] = [0];
    let mut status: [libc::c_int; 1] = [0];
    // SAFETY: the child makes raw syscalls on its copies of the arrays, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: we are the fork child.
        unsafe {
            become_spec(caller);
            let rc = libc::syscall(
                libc::SYS_move_pages,
                target as libc::c_long,
                1 as libc::c_long,
                page.as_ptr(),
                std::ptr::null::<libc::c_int>(),
                status.as_mut_ptr(),
                0 as libc::c_long,
            );
            libc::_exit(if rc == 0 {
                0
            } else {
                *libc::__errno_location()
            })
        }
    }
    let mut ws = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, &mut ws, 0) };
    let code = libc::WEXITSTATUS(ws);
    assert!(
        code == 0 || code == libc::EPERM,
        "{}: move_pages -> {code}",
        caller.name
    );
    code == 0
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root() && probe::available()
}

#[test]
fn every_pair_gets_the_kernels_verdict_by_probe_and_by_model() {
    if !is_root() {
        eprintln!("skipped: needs root with CAP_SETUID/CAP_SETGID");
        return;
    }
    let targets: Vec<Scratch> = [ROOT, A, B, A_NODUMP, A_SETUID, A_SAVED_ROOT, A_CAPABLE]
        .into_iter()
        .map(Scratch::spawn)
        .collect();
    let callers: Vec<Scratch> = [A, B, ROOT, A_SETUID, A_SAVED_ROOT, A_CAPABLE]
        .into_iter()
        .map(Scratch::spawn)
        .collect();
    let (probe, model) = (Access::new(Method::Probe), Access::new(Method::Model));
    let mut table = Vec::new();
    let (mut allowed, mut mismatches) = (0, Vec::new());
    for c in &callers {
        let cp = c.process();
        for t in &targets {
            let want = kernel_says(&c.spec, t.pid);
            let tp = t.process();
            let by_probe = probe.check(&cp, &tp);
            let by_model = model.check(&cp, &tp);
            allowed += want as u32;
            table.push(format!(
                "{:>20} -> {:<20} kernel {:5} probe {:5} model {:5}",
                c.spec.name,
                t.spec.name,
                want,
                by_probe.is_ok(),
                by_model.is_ok()
            ));
            for (how, got) in [("probe", &by_probe), ("model", &by_model)] {
                match got {
                    Ok(()) if want => {}
                    Err(AccessError::Denied { .. }) if !want => {}
                    other => mismatches.push(format!(
                        "{how}: {} -> {}: kernel {want}, got {other:?}",
                        c.spec.name, t.spec.name
                    )),
                }
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(
        allowed > 5 && allowed < 42,
        "the matrix has both answers ({allowed} of 42 allowed)"
    );
}

#[test]
fn refusals_name_the_rule_and_verdicts_are_cached() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (root, a) = (Scratch::spawn(ROOT), Scratch::spawn(A));
    let access = Access::new(Method::Probe);
    let e = access.check(&a.process(), &root.process()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("ptrace_may_access") && msg.contains("PTRACE_MODE_READ_REALCREDS"),
        "{msg}"
    );
    assert!(msg.contains(&format!("process {}", root.pid)), "{msg}");
    let asked = access.asked.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        assert!(access.check(&a.process(), &root.process()).is_err());
    }
    assert_eq!(
        access.asked.load(std::sync::atomic::Ordering::Relaxed),
        asked,
        "answered from the cache"
    );
    // Root (this test) is asked too, and allowed.
    let me = Process::open(std::process::id() as i32).unwrap();
    assert!(access.check(&me, &a.process()).is_ok());
    // A target that exits is no verdict about its pid's next owner.
    let gone = Scratch::spawn(A);
    let gp = gone.process();
    drop(gone);
    assert!(matches!(
        access.check(&a.process(), &gp),
        Err(AccessError::Process(ProcessError::Exited(_)))
    ));
}
