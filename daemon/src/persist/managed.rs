//! Processes managed with `tierctl manage`, kept in `<state_dir>/persist/managed.json`
//! so a restarted tierd manages them again ([`adopt`]).
//!
//! A process is named by its pid *and* its start time (`/proc/PID/stat` field 22, in
//! clock ticks since boot): a pid reused by another process after the old one exited
//! has a different start time and is not adopted. Processes a protocol client made
//! managed are not recorded: the client reconnects and registers again.
//!
//! Writers: the control handlers on `manage`/`unmanage` (the file is rewritten
//! atomically on every change), the `tierd-ops` thread once a second through
//! [`Journal::retain`] (drops processes that exited or were unmanaged some other way),
//! main at start ([`adopt`]).

use super::{write_atomic, PersistError};
use crate::state::Daemon;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use tierd_config::PolicyName;

/// Format of the file; bumped on an incompatible change (an unknown one is ignored).
const VERSION: u32 = 1;

/// One managed process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pid: i32,
    /// `/proc/PID/stat` field 22 (`starttime`, clock ticks after boot).
    pub start_time: u64,
    /// For the log only.
    #[serde(default)]
    pub comm: String,
    pub policy: PolicyName,
    pub priority: i32,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    processes: Vec<Record>,
}

/// Start time of process `pid` (`/proc/PID/stat` field 22), `None` if it is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.starttime)
}

/// The managed processes tierd writes down (empty and silent until [`Journal::enable`]).
#[derive(Debug, Default)]
pub struct Journal {
    path: OnceLock<PathBuf>,
    records: Mutex<BTreeMap<i32, Record>>,
}

impl Journal {
    /// Starts writing to `path`: writes the current records (those [`adopt`] added),
    /// replacing what the previous tierd wrote, and from then on every change. Call it
    /// after [`load`] and [`adopt`].
    pub fn enable(&self, path: PathBuf) {
        let _ = self.path.set(path);
        let records = self.lock();
        self.save(&records);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites the file from `records` (called with the lock held, so writes are in
    /// the order of the changes). A failed write is logged: the daemon goes on.
    fn save(&self, records: &BTreeMap<i32, Record>) {
        let Some(path) = self.path.get() else { return };
        let file = FileV1 {
            version: VERSION,
            processes: records.values().cloned().collect(),
        };
        let res = serde_json::to_vec_pretty(&file)
            .map_err(|e| PersistError::Parse {
                path: path.clone(),
                msg: e.to_string(),
            })
            .and_then(|bytes| write_atomic(path, &bytes));
        if let Err(e) = res {
            tracing::warn!(error = %e, "managed processes not saved: a restart will not adopt them");
        }
    }

    /// `pid` is managed under `policy` / `priority` (new, or changed). A process that
    /// is already gone is not recorded.
    pub fn managed(&self, pid: i32, policy: PolicyName, priority: i32) {
        let Some(start_time) = start_time(pid) else {
            return;
        };
        let comm = procfs::process::Process::new(pid)
            .and_then(|p| p.stat())
            .map(|s| s.comm)
            .unwrap_or_default();
        self.insert(Record {
            pid,
            start_time,
            comm,
            policy,
            priority,
        });
    }

    fn insert(&self, r: Record) {
        let mut records = self.lock();
        if records.get(&r.pid) != Some(&r) {
            records.insert(r.pid, r);
            self.save(&records);
        }
    }

    /// `pid` is no longer managed.
    pub fn unmanaged(&self, pid: i32) {
        let mut records = self.lock();
        if records.remove(&pid).is_some() {
            self.save(&records);
        }
    }

    /// Keeps the processes for which `keep(pid)` holds; rewrites the file if any went.
    pub fn retain(&self, keep: impl Fn(i32) -> bool) {
        let mut records = self.lock();
        let before = records.len();
        records.retain(|pid, _| keep(*pid));
        if records.len() != before {
            self.save(&records);
        }
    }

    /// The recorded processes, by pid.
    pub fn records(&self) -> Vec<Record> {
        self.lock().values().cloned().collect()
    }
}

/// Reads the file a previous tierd wrote; no file is an empty list, a file of another
/// version or a corrupt one an error (the caller logs it and adopts nothing).
pub fn load(path: &Path) -> Result<Vec<Record>, PersistError> {
    Ok(
        super::read_versioned(path, VERSION, |f: &FileV1| f.version)?
            .map_or_else(Vec::new, |f| f.processes),
    )
}

/// What [`adopt`] did with each record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    pub adopted: Vec<i32>,
    /// Pid and why it was not adopted.
    pub skipped: Vec<(i32, String)>,
}

/// Manages again each recorded process that is still the same process (same pid and
/// start time), under its recorded policy and priority, and records it in `d.journal`.
/// Called by main at start, before the tiering loop and the sockets start.
pub fn adopt(d: &Daemon, records: Vec<Record>) -> Adoption {
    let mut out = Adoption::default();
    for r in records {
        match start_time(r.pid) {
            None => {
                out.skipped.push((r.pid, "exited".into()));
                continue;
            }
            Some(t) if t != r.start_time => {
                out.skipped
                    .push((r.pid, "pid reused by another process".into()));
                continue;
            }
            Some(_) => {}
        }
        // The original caller was allowed to manage it; tierd re-adopts as itself.
        match d.registry.manage(r.pid, r.policy, r.priority) {
            // Same process still? (it may have exited and the pid been reused between
            // the start-time check and the registry's pidfd.)
            Ok(_) if start_time(r.pid) == Some(r.start_time) => {
                tracing::info!(
                    pid = r.pid,
                    comm = %r.comm,
                    policy = r.policy.as_str(),
                    priority = r.priority,
                    "managed again after a restart"
                );
                d.journal.insert(r.clone());
                out.adopted.push(r.pid);
            }
            Ok(_) => {
                let _ = d.registry.unmanage(r.pid);
                out.skipped
                    .push((r.pid, "exited while being adopted".into()));
            }
            Err(e) => out.skipped.push((r.pid, e.to_string())),
        }
    }
    for (pid, why) in &out.skipped {
        tracing::info!(pid, reason = %why, "not managed again after a restart");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fake::FakeTopology;
    use std::sync::Arc;
    use tierd_config::Config;

    fn daemon() -> Arc<Daemon> {
        let topo = Arc::new(FakeTopology::new(&[
            (0, &[0], 1 << 30, 0),
            (1, &[], 4 << 30, 1),
        ]));
        Daemon::new(
            Config::default(),
            None,
            topo,
            Arc::new(crate::migrate::syscall::MovePages),
        )
        .unwrap()
    }

    #[test]
    fn every_change_is_written_and_a_restart_adopts_the_same_processes() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("persist/managed.json");
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let cpid = child.id() as i32;

        // The first tierd: two processes managed, one policy change, one unmanaged.
        let j = Journal::default();
        j.enable(path.clone());
        j.managed(me, PolicyName::LruTiered, 3);
        j.managed(cpid, PolicyName::Tpp, 0);
        j.managed(cpid, PolicyName::Static, 1);
        assert_eq!(load(&path).unwrap().len(), 2, "written on every change");
        j.managed(i32::MAX, PolicyName::Tpp, 0);
        assert_eq!(
            load(&path).unwrap().len(),
            2,
            "a gone process is not recorded"
        );
        let written = load(&path).unwrap();
        assert_eq!(written[0].pid, me);
        assert_eq!(
            (written[0].policy, written[0].priority),
            (PolicyName::LruTiered, 3)
        );
        assert_eq!(written[0].start_time, start_time(me).unwrap());
        assert_eq!(
            (written[1].policy, written[1].priority),
            (PolicyName::Static, 1)
        );

        // It dies (nothing else is written); the child exits meanwhile.
        child.kill().unwrap();
        child.wait().unwrap();
        let d = daemon();
        let a = adopt(&d, load(&path).unwrap());
        d.journal.enable(path.clone());
        assert_eq!(a.adopted, vec![me], "{a:?}");
        assert_eq!(a.skipped, vec![(cpid, "exited".to_string())]);
        let p = d.registry.get(me).unwrap();
        assert_eq!((p.policy, p.priority), (PolicyName::LruTiered, 3));
        assert!(d.registry.get(cpid).is_none());
        let kept: Vec<i32> = load(&path).unwrap().iter().map(|r| r.pid).collect();
        assert_eq!(kept, vec![me], "the file now lists what this tierd manages");

        j.unmanaged(me);
        assert!(j.records().iter().all(|r| r.pid != me));
    }

    #[test]
    fn a_reused_pid_is_not_adopted() {
        let me = std::process::id() as i32;
        let d = daemon();
        let stale = Record {
            pid: me,
            start_time: start_time(me).unwrap() + 1,
            comm: "old".into(),
            policy: PolicyName::Tpp,
            priority: 0,
        };
        let a = adopt(&d, vec![stale]);
        assert!(a.adopted.is_empty());
        assert_eq!(a.skipped[0].1, "pid reused by another process");
        assert!(d.registry.get(me).is_none());
    }

    #[test]
    fn retain_drops_what_is_no_longer_managed_and_bad_files_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("managed.json");
        let j = Journal::default();
        j.enable(path.clone());
        j.managed(std::process::id() as i32, PolicyName::Tpp, 0);
        j.retain(|_| false);
        assert!(load(&path).unwrap().is_empty());
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(load(&path), Err(PersistError::Parse { .. })));
        std::fs::write(&path, r#"{"version":99,"processes":[]}"#).unwrap();
        assert!(matches!(load(&path), Err(PersistError::Parse { .. })));
        assert!(load(&t.path().join("none.json")).unwrap().is_empty());
    }
}
