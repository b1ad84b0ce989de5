//! The managed processes: who is under which policy and priority, with their counters.
//!
//! Written by the control socket (manage/unmanage) and the client protocol (a
//! registering client's process becomes managed); read by the tiering loop each tick,
//! which also reaps processes that exited (their pidfd says so).

use crate::proc::pidfd::PidFd;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tierd_config::PolicyName;

/// Counters the tiering loop updates and status/metrics read.
#[derive(Debug, Default)]
pub struct ProcStats {
    pub promoted_pages: AtomicU64,
    pub demoted_pages: AtomicU64,
    pub pingpong_pages: AtomicU64,
    pub fast_bytes: AtomicU64,
    pub slow_bytes: AtomicU64,
    /// Promotions / demotions per second over the last tick, as f64 bits.
    pub promote_rate_bits: AtomicU64,
    pub demote_rate_bits: AtomicU64,
    /// When the process's last client hint was applied, ms since the daemon started
    /// plus one (0: never).
    pub last_hint_ms: AtomicU64,
}

impl ProcStats {
    pub fn set_rates(&self, promote_per_s: f64, demote_per_s: f64) {
        self.promote_rate_bits
            .store(promote_per_s.to_bits(), Ordering::Relaxed);
        self.demote_rate_bits
            .store(demote_per_s.to_bits(), Ordering::Relaxed);
    }

    pub fn rates(&self) -> (f64, f64) {
        (
            f64::from_bits(self.promote_rate_bits.load(Ordering::Relaxed)),
            f64::from_bits(self.demote_rate_bits.load(Ordering::Relaxed)),
        )
    }
}

#[derive(Debug)]
pub struct ManagedProcess {
    pub pid: i32,
    pub pidfd: PidFd,
    pub comm: String,
    pub uid: u32,
    pub policy: PolicyName,
    pub priority: i32,
    pub since: Instant,
    pub stats: ProcStats,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("no process {0}")]
    NoSuchProcess(i32),
    #[error("process {pid} belongs to uid {owner}; uid {caller} may not manage it")]
    NotOwner { pid: i32, owner: u32, caller: u32 },
    #[error("process {0} is not managed")]
    NotManaged(i32),
}

#[derive(Debug, Default)]
pub struct Registry {
    procs: RwLock<BTreeMap<i32, Arc<ManagedProcess>>>,
}

/// Owner uid and command name of a live process.
pub fn process_identity(pid: i32) -> Result<(u32, String), RegistryError> {
    let p = procfs::process::Process::new(pid).map_err(|_| RegistryError::NoSuchProcess(pid))?;
    let uid = p.uid().map_err(|_| RegistryError::NoSuchProcess(pid))?;
    let comm = p.stat().map(|s| s.comm).unwrap_or_default();
    Ok((uid, comm))
}

impl Registry {
    /// Manages `pid` (or updates its policy/priority if already managed). `caller_uid`
    /// must be root or the process owner.
    pub fn manage(
        &self,
        pid: i32,
        policy: PolicyName,
        priority: i32,
        caller_uid: u32,
    ) -> Result<Arc<ManagedProcess>, RegistryError> {
        let (uid, comm) = process_identity(pid)?;
        if caller_uid != 0 && caller_uid != uid {
            return Err(RegistryError::NotOwner {
                pid,
                owner: uid,
                caller: caller_uid,
            });
        }
        let pidfd = PidFd::open(pid).map_err(|_| RegistryError::NoSuchProcess(pid))?;
        let mut map = self.procs.write().unwrap_or_else(|p| p.into_inner());
        // Keep the start time and counters when only the policy or priority changes.
        let since = map.get(&pid).filter(|o| !o.pidfd.exited()).map(|o| o.since);
        let entry = ManagedProcess {
            pid,
            pidfd,
            comm,
            uid,
            policy,
            priority,
            since: since.unwrap_or_else(Instant::now),
            stats: ProcStats::default(),
        };
        if let (Some(old), Some(_)) = (map.get(&pid), since) {
            copy_stats(&old.stats, &entry.stats);
        }
        let entry = Arc::new(entry);
        map.insert(pid, entry.clone());
        Ok(entry)
    }

    pub fn unmanage(
        &self,
        pid: i32,
        caller_uid: u32,
    ) -> Result<Arc<ManagedProcess>, RegistryError> {
        let mut map = self.procs.write().unwrap_or_else(|p| p.into_inner());
        let p = map.get(&pid).ok_or(RegistryError::NotManaged(pid))?;
        if caller_uid != 0 && caller_uid != p.uid {
            return Err(RegistryError::NotOwner {
                pid,
                owner: p.uid,
                caller: caller_uid,
            });
        }
        Ok(map.remove(&pid).expect("checked above"))
    }

    pub fn get(&self, pid: i32) -> Option<Arc<ManagedProcess>> {
        self.procs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pid)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<ManagedProcess>> {
        self.procs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Removes processes that exited; returns their pids.
    pub fn reap(&self) -> Vec<i32> {
        let mut map = self.procs.write().unwrap_or_else(|p| p.into_inner());
        let dead: Vec<i32> = map
            .values()
            .filter(|p| p.pidfd.exited())
            .map(|p| p.pid)
            .collect();
        for pid in &dead {
            map.remove(pid);
        }
        dead
    }
}

fn copy_stats(from: &ProcStats, to: &ProcStats) {
    let c = |a: &AtomicU64, b: &AtomicU64| b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
    c(&from.promoted_pages, &to.promoted_pages);
    c(&from.demoted_pages, &to.demoted_pages);
    c(&from.pingpong_pages, &to.pingpong_pages);
    c(&from.fast_bytes, &to.fast_bytes);
    c(&from.slow_bytes, &to.slow_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manage_update_unmanage_and_reap() {
        let r = Registry::default();
        let me = std::process::id() as i32;
        let my_uid = nix::unistd::getuid().as_raw();
        let p = r.manage(me, PolicyName::Tpp, 0, my_uid).unwrap();
        p.stats.promoted_pages.store(7, Ordering::Relaxed);
        let p = r.manage(me, PolicyName::Off, 3, my_uid).unwrap();
        assert_eq!((p.policy, p.priority), (PolicyName::Off, 3));
        assert_eq!(
            p.stats.promoted_pages.load(Ordering::Relaxed),
            7,
            "counters survive a policy change"
        );
        assert_eq!(
            r.manage(i32::MAX, PolicyName::Tpp, 0, 0).unwrap_err(),
            RegistryError::NoSuchProcess(i32::MAX)
        );
        if my_uid == 0 {
            // Root may manage; a non-owner may not.
            assert!(matches!(
                r.manage(me, PolicyName::Tpp, 0, 4242),
                Err(RegistryError::NotOwner { .. })
            ));
        }
        assert!(
            matches!(r.unmanage(me, 4243), Err(RegistryError::NotOwner { .. })) || my_uid == 4243
        );
        r.unmanage(me, my_uid).unwrap();
        assert_eq!(
            r.unmanage(me, my_uid).unwrap_err(),
            RegistryError::NotManaged(me)
        );

        let mut child = std::process::Command::new("sleep")
            .arg("0")
            .spawn()
            .unwrap();
        let cpid = child.id() as i32;
        r.manage(cpid, PolicyName::Tpp, 0, my_uid).unwrap();
        child.wait().unwrap();
        assert_eq!(r.reap(), vec![cpid]);
        assert!(r.all().is_empty());
    }
}
