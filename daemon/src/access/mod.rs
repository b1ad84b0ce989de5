//! Who may do what: the kernel's rule for touching another process's memory, applied
//! to every control request that names a pid, and the per-user ceilings on what a
//! user may ask of tierd for their own processes ([`ceilings`]).
//!
//! tierd moves pages as root; a caller must not get more from it than the kernel
//! would give the caller itself. `move_pages(2)` of another process is allowed when
//! `ptrace_may_access(task, PTRACE_MODE_READ_REALCREDS)` (kernel/ptrace.c) allows it,
//! so [`Access::check`] answers exactly that question for (caller, target):
//! - the kernel decides ([`probe`]): a short-lived child takes on the caller's real
//!   uid, gid, groups and capabilities and asks move_pages(2) in query-only mode. Root
//!   is asked too: CAP_SYS_PTRACE is not always the last word (a security module, or a
//!   target in a user namespace root does not own, can still refuse). Chosen over restating the rule because the kernel then also
//!   judges what user space sees only indirectly (dumpability, the capability subset
//!   test, namespaces) and keeps judging it as the kernel changes. Cost: a fork per
//!   uncached question (about a millisecond) and CAP_SETUID + CAP_SETGID in the unit's
//!   bounding set, which add no power a holder of CAP_SYS_PTRACE lacks;
//! - when tierd lacks those capabilities, the user-space statement of the rule
//!   ([`model`]) answers; it errs only towards refusing.
//!
//! Both processes are pinned by pidfds ([`process::Process`]) and their credentials
//! re-read at every check; a verdict is cached for [`CACHE_TTL`] keyed by both
//! processes' pids, start times and credentials, so the only change a cached verdict can
//! miss for that long is a `prctl(PR_SET_DUMPABLE)`. Called on the control socket's
//! connection threads.

pub mod ceilings;
pub mod model;
pub mod probe;
pub mod process;

use process::{Creds, Process, ProcessError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verdict is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Cached verdicts kept at most (the cache is emptied when full).
const CACHE_MAX: usize = 4096;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AccessError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(
        "uid {uid} (pid {caller}) may not touch process {target}: the kernel's rule for \
         move_pages(2) (ptrace_may_access, PTRACE_MODE_READ_REALCREDS) refuses it{why}"
    )]
    Denied {
        caller: i32,
        uid: u32,
        target: i32,
        /// ": " and the likely reason, or empty.
        why: String,
    },
    #[error("cannot check access to process {target}: {msg}")]
    Check { target: i32, msg: String },
}

/// How verdicts are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The kernel answers in a child with the caller's credentials ([`probe`]).
    Probe,
    /// The user-space statement of the rule ([`model`]).
    Model,
}

type Key = (i32, u64, Creds, i32, u64, Creds);
/// A verdict and when it was reached.
type Cached = (Instant, Result<(), AccessError>);

/// The access checker: one per daemon.
pub struct Access {
    method: Method,
    own_user_ns: u64,
    cache: Mutex<HashMap<Key, Cached>>,
    /// Uncached questions asked (probes run or model evaluations), for tests and metrics.
    pub asked: std::sync::atomic::AtomicU64,
    /// Refusals (cached or not), for the metrics endpoint.
    pub denied: std::sync::atomic::AtomicU64,
}

impl Default for Access {
    /// The probe when tierd can run it, else the model; logged once.
    fn default() -> Self {
        let a = Access::new(if probe::available() {
            Method::Probe
        } else {
            Method::Model
        });
        match a.method {
            Method::Probe => tracing::info!("access checks: kernel probe"),
            Method::Model => tracing::info!(
                "access checks: user-space model (no CAP_SETUID/CAP_SETGID for the probe)"
            ),
        }
        a
    }
}

impl Access {
    pub fn new(method: Method) -> Access {
        Access {
            method,
            own_user_ns: process::user_ns_of("/proc/self/ns/user").unwrap_or(0),
            cache: Mutex::new(HashMap::new()),
            asked: Default::default(),
            denied: Default::default(),
        }
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// tierd's user namespace (inode).
    pub fn own_user_ns(&self) -> u64 {
        self.own_user_ns
    }

    /// Whether `caller` may touch `target`'s memory by the kernel's rule.
    pub fn check(&self, caller: &Process, target: &Process) -> Result<(), AccessError> {
        let v = self.check_uncounted(caller, target);
        if let Err(AccessError::Denied { .. }) = v {
            self.denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        v
    }

    fn check_uncounted(&self, caller: &Process, target: &Process) -> Result<(), AccessError> {
        let c = caller.creds()?;
        let t = target.creds()?;
        let key = (
            caller.pid(),
            caller.start_ticks()?,
            c.clone(),
            target.pid(),
            target.start_ticks()?,
            t.clone(),
        );
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, v)) = cache.get(&key) {
                if now.duration_since(*at) < CACHE_TTL {
                    return v.clone();
                }
            }
        }
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let v = self.decide(caller, &c, target, &t);
        // A verdict about a process that exited meanwhile may be about its successor.
        target.verify()?;
        caller.verify()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (now, v.clone()));
        v
    }

    fn decide(
        &self,
        caller: &Process,
        c: &Creds,
        target: &Process,
        t: &Creds,
    ) -> Result<(), AccessError> {
        let facts = model::TargetFacts {
            proc_owner: proc_owner(target.pid()).unwrap_or(0),
            same_process: same_thread_group(caller.pid(), target.pid()),
        };
        let modelled = model::may_access(c, t, facts, self.own_user_ns);
        let allowed = match self.method {
            Method::Model => modelled.is_ok(),
            Method::Probe if facts.same_process => true,
            Method::Probe => match probe::ask(c, target.pid(), self.own_user_ns) {
                Ok(probe::Answer::Allowed) => true,
                Ok(probe::Answer::Denied) => false,
                Ok(probe::Answer::Gone) => {
                    return Err(ProcessError::Exited(target.pid()).into());
                }
                Err(e) => {
                    return Err(AccessError::Check {
                        target: target.pid(),
                        msg: e.to_string(),
                    })
                }
            },
        };
        if allowed {
            return Ok(());
        }
        Err(AccessError::Denied {
            caller: caller.pid(),
            uid: c.uid.real,
            target: target.pid(),
            why: modelled
                .err()
                .map(|d| format!(": {}", d.explain()))
                .unwrap_or_default(),
        })
    }
}

/// Owner uid of `/proc/PID/status`: the effective uid, or root's when the process is not
/// dumpable (`task_dump_owner()`; the directory itself always shows the euid).
fn proc_owner(pid: i32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}/status"))
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
}

/// Both pids in one thread group (pids from the socket are thread-group ids).
fn same_thread_group(a: i32, b: i32) -> bool {
    a == b
}

#[cfg(test)]
mod tests;
