//! The managed processes: who is under which policy and priority, with their counters.
//!
//! Written by the control socket (manage/unmanage) and the client protocol (a
//! registering client's process becomes managed); read by the tiering loop each tick,
//! which also reaps processes that exited (their pidfd says so). Who may manage what is
//! decided before the registry is called: by the kernel's access rule
//! ([`crate::access`]) on the control socket, by identity on the client socket (a
//! client only ever manages its own process).

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
    /// The scope that manages it ([`crate::scope`]); `None`: managed by pid (tierctl)
    /// or by a protocol client.
    pub scope: Option<Arc<str>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("no process {0}")]
    NoSuchProcess(i32),
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
    /// Manages `pid` (or updates its policy/priority if already managed). The caller
    /// has checked that whoever asks may touch the process.
    pub fn manage(
        &self,
        pid: i32,
        policy: PolicyName,
        priority: i32,
    ) -> Result<Arc<ManagedProcess>, RegistryError> {
        self.manage_in(pid, policy, priority, None)
    }

    /// [`Registry::manage`] on behalf of a scope (`Some(name)`), or by pid (`None`).
    pub fn manage_in(
        &self,
        pid: i32,
        policy: PolicyName,
        priority: i32,
        scope: Option<Arc<str>>,
    ) -> Result<Arc<ManagedProcess>, RegistryError> {
        let (uid, comm) = process_identity(pid)?;
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
            scope,
        };
        if let (Some(old), Some(_)) = (map.get(&pid), since) {
            copy_stats(&old.stats, &entry.stats);
        }
        let entry = Arc::new(entry);
        map.insert(pid, entry.clone());
        Ok(entry)
    }

    /// Stops managing `pid` (the caller has checked who asks).
    pub fn unmanage(&self, pid: i32) -> Result<Arc<ManagedProcess>, RegistryError> {
        let mut map = self.procs.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&pid).ok_or(RegistryError::NotManaged(pid))
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

    /// Stops managing `pid` if `scope` manages it (not if it was managed by pid since).
    pub fn unmanage_from(&self, pid: i32, scope: &str) -> bool {
        let mut map = self.procs.write().unwrap_or_else(|p| p.into_inner());
        if map.get(&pid).and_then(|p| p.scope.as_deref()) == Some(scope) {
            map.remove(&pid);
            return true;
        }
        false
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
        let p = r.manage(me, PolicyName::Tpp, 0).unwrap();
        assert_eq!(p.uid, my_uid);
        p.stats.promoted_pages.store(7, Ordering::Relaxed);
        let p = r.manage(me, PolicyName::Off, 3).unwrap();
        assert_eq!((p.policy, p.priority), (PolicyName::Off, 3));
        assert_eq!(
            p.stats.promoted_pages.load(Ordering::Relaxed),
            7,
            "counters survive a policy change"
        );
        assert_eq!(
            r.manage(i32::MAX, PolicyName::Tpp, 0).unwrap_err(),
            RegistryError::NoSuchProcess(i32::MAX)
        );
        r.unmanage(me).unwrap();
        assert_eq!(r.unmanage(me).unwrap_err(), RegistryError::NotManaged(me));

        let mut child = std::process::Command::new("sleep")
            .arg("0")
            .spawn()
            .unwrap();
        let cpid = child.id() as i32;
        r.manage(cpid, PolicyName::Tpp, 0).unwrap();
        child.wait().unwrap();
        assert_eq!(r.reap(), vec![cpid]);
        assert!(r.all().is_empty());
    }
}
