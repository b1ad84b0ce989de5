//! The access rule against the kernel itself: scratch processes with chosen
//! credentials (forked from this test, which must run as root), and for every (caller,
//! target) pair the kernel's own verdict, from a child with the caller's exact
//! credentials calling move_pages(2) on the target, compared with [`Access::check`]
//! by probe and by model. Skipped (with a note) when not root.

use super::*;

/// This test's scratch uids ([`scratch`]).
const SCRATCH_UID_BASE: u32 = 64_100;

#[path = "../../tests/common/scratch.rs"]
mod scratch;
use scratch::*;

impl Scratch {
    fn process(&self) -> Process {
        Process::open(self.pid).unwrap()
    }
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
