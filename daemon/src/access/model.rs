//! The kernel's rule, restated in user space: the fallback when tierd cannot run the
//! probe ([`super::probe`], which needs CAP_SETUID and CAP_SETGID), and the explanation
//! tierd gives with a refusal. Pure logic over [`Creds`]; tested with fakes.
//!
//! `__ptrace_may_access()` (kernel/ptrace.c) with `PTRACE_MODE_READ_REALCREDS`, then
//! `cap_ptrace_access_check()` (security/commoncap.c):
//! 1. the same thread group may always;
//! 2. the caller's *real* uid must equal the target's real, effective and saved uid,
//!    and its real gid the target's three gids, unless the caller has CAP_SYS_PTRACE
//!    (effective) in the target's user namespace;
//! 3. a target that is not dumpable (set-uid programs, `prctl(PR_SET_DUMPABLE, 0)`,
//!    unreadable executables) needs CAP_SYS_PTRACE;
//! 4. the target's permitted capabilities must be a subset of the caller's permitted
//!    ones (same user namespace), unless the caller has CAP_SYS_PTRACE.
//!
//! What user space cannot see exactly: dumpability is read from the owner of
//! `/proc/PID` (`task_dump_owner()` makes it root's when the process is not
//! dumpable), so for a target running as root it is unknown and taken as "not
//! dumpable"; user namespaces are compared for equality only (a caller outside
//! tierd's namespace is judged without capabilities); security modules are not
//! modelled. Each of these can only refuse more than the kernel would.

use super::process::{Creds, CAP_SYS_PTRACE};

/// Why the rule says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Rule 2: ids differ.
    Ids,
    /// Rule 3: the target is not dumpable.
    NotDumpable,
    /// Rule 4: the target holds capabilities the caller does not.
    Capabilities,
}

impl Denial {
    pub fn explain(self) -> &'static str {
        match self {
            Denial::Ids => {
                "its real, effective and saved uid and gid are not all the caller's real uid \
                 and gid, and the caller lacks CAP_SYS_PTRACE"
            }
            Denial::NotDumpable => {
                "it is not dumpable (set-uid, PR_SET_DUMPABLE 0 or an unreadable program) \
                 and the caller lacks CAP_SYS_PTRACE"
            }
            Denial::Capabilities => {
                "it holds capabilities outside the caller's permitted set and the caller \
                 lacks CAP_SYS_PTRACE"
            }
        }
    }
}

/// What is known about the target besides its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFacts {
    /// Owner uid of `/proc/PID`.
    pub proc_owner: u32,
    /// Same thread group as the caller.
    pub same_process: bool,
}

/// Whether the rule lets `caller` read `target`'s memory; `own_user_ns` is tierd's.
pub fn may_access(
    caller: &Creds,
    target: &Creds,
    facts: TargetFacts,
    own_user_ns: u64,
) -> Result<(), Denial> {
    if facts.same_process {
        return Ok(());
    }
    let same_ns = caller.user_ns == own_user_ns && target.user_ns == caller.user_ns;
    // tierd's namespace is an ancestor of every namespace it can see processes in.
    let ptrace_cap = caller.user_ns == own_user_ns && caller.has_effective(CAP_SYS_PTRACE);
    let (u, g) = (caller.uid.real, caller.gid.real);
    let ids_match = [target.uid.real, target.uid.effective, target.uid.saved]
        .iter()
        .all(|&x| x == u)
        && [target.gid.real, target.gid.effective, target.gid.saved]
            .iter()
            .all(|&x| x == g);
    if !ids_match && !ptrace_cap {
        return Err(Denial::Ids);
    }
    let dumpable = facts.proc_owner == target.uid.effective && target.uid.effective != 0;
    if !dumpable && !ptrace_cap {
        return Err(Denial::NotDumpable);
    }
    let subset = target.cap_permitted & !caller.cap_permitted == 0;
    if !(ptrace_cap || same_ns && subset) {
        return Err(Denial::Capabilities);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::process::Ids;
    use super::*;

    const NS: u64 = 4026531837;
    const ALL_CAPS: u64 = 0x1ff_ffff_ffff;

    fn ids(r: u32, e: u32, s: u32) -> Ids {
        Ids {
            real: r,
            effective: e,
            saved: s,
            fs: e,
        }
    }

    fn user(uid: u32) -> Creds {
        Creds {
            uid: ids(uid, uid, uid),
            gid: ids(uid, uid, uid),
            groups: vec![],
            cap_permitted: 0,
            cap_effective: 0,
            user_ns: NS,
        }
    }

    fn root() -> Creds {
        Creds {
            cap_permitted: ALL_CAPS,
            cap_effective: ALL_CAPS,
            ..user(0)
        }
    }

    fn dumpable(t: &Creds) -> TargetFacts {
        TargetFacts {
            proc_owner: t.uid.effective,
            same_process: false,
        }
    }

    #[test]
    fn same_user_may_other_users_may_not() {
        let (a, b) = (user(1000), user(1001));
        assert_eq!(may_access(&a, &a, dumpable(&a), NS), Ok(()));
        assert_eq!(may_access(&a, &b, dumpable(&b), NS), Err(Denial::Ids));
        let other_group = Creds {
            gid: ids(5, 5, 5),
            ..user(1000)
        };
        assert_eq!(
            may_access(&a, &other_group, dumpable(&other_group), NS),
            Err(Denial::Ids),
            "the gids must match too"
        );
    }

    #[test]
    fn roots_processes_need_cap_sys_ptrace() {
        let r = root();
        let a = user(1000);
        assert_eq!(may_access(&a, &r, dumpable(&r), NS), Err(Denial::Ids));
        assert_eq!(may_access(&r, &a, dumpable(&a), NS), Ok(()));
        let r_no_ptrace = Creds {
            cap_effective: ALL_CAPS & !(1 << CAP_SYS_PTRACE),
            ..root()
        };
        assert_eq!(
            may_access(&r_no_ptrace, &a, dumpable(&a), NS),
            Err(Denial::Ids),
            "uid 0 alone does not match another uid"
        );
        let foreign_root = Creds {
            user_ns: NS + 1,
            ..root()
        };
        assert_eq!(
            may_access(&foreign_root, &a, dumpable(&a), NS),
            Err(Denial::Ids),
            "capabilities in a child user namespace do not count here"
        );
    }

    #[test]
    fn set_uid_processes_are_refused_to_their_real_user() {
        let a = user(1000);
        // ruid 1000, euid = suid = 0: what a set-uid-root program run by 1000 has.
        let setuid = Creds {
            uid: ids(1000, 0, 0),
            ..user(1000)
        };
        let facts = TargetFacts {
            proc_owner: 0,
            same_process: false,
        };
        assert_eq!(may_access(&a, &setuid, facts, NS), Err(Denial::Ids));
        let saved_only = Creds {
            uid: ids(1000, 1000, 0),
            ..user(1000)
        };
        assert_eq!(
            may_access(&a, &saved_only, dumpable(&saved_only), NS),
            Err(Denial::Ids),
            "a saved uid of 0 is enough to refuse"
        );
        assert_eq!(
            may_access(
                &setuid,
                &setuid,
                TargetFacts {
                    same_process: true,
                    ..facts
                },
                NS
            ),
            Ok(()),
            "a process may always touch itself"
        );
    }

    #[test]
    fn non_dumpable_and_capable_targets() {
        let a = user(1000);
        let nodump = TargetFacts {
            proc_owner: 0,
            same_process: false,
        };
        assert_eq!(may_access(&a, &a, nodump, NS), Err(Denial::NotDumpable));
        assert_eq!(may_access(&root(), &a, nodump, NS), Ok(()));
        let capable = Creds {
            cap_permitted: 1 << 12,
            ..user(1000)
        };
        assert_eq!(
            may_access(&a, &capable, dumpable(&capable), NS),
            Err(Denial::Capabilities)
        );
        let same_caps = Creds {
            cap_permitted: (1 << 12) | (1 << 13),
            ..user(1000)
        };
        assert_eq!(
            may_access(&same_caps, &capable, dumpable(&capable), NS),
            Ok(())
        );
    }
}
