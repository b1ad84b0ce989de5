//! Which DAMON kdamonds this tierd started, in memory and in
//! `<state_dir>/persist/kdamonds.json`, so that a tierd that died without stopping its
//! kdamond (SIGKILL, a panic) does not leave it running forever, nor make the next start
//! fail: `nr_kdamonds` cannot be written (EBUSY) while any kdamond runs.
//!
//! [`super::sysfs::SysfsKdamond`] records its directory before it turns the kdamond on
//! and the kthread pid right after; it forgets it when it drops the directory. At start
//! main calls [`Ledger::recover`] (under the instance lock): a recorded kdamond that
//! still runs as tierd left it (same directory, same kthread pid, or no pid yet: tierd
//! died while turning it on) is stopped, and its directory is reused by the next
//! [`super::sysfs::SysfsKdamond`] instead of appending another one. Kdamonds that are
//! not recorded, or whose kthread differs (another tool's since), are never touched.
//! One process-wide ledger ([`global`]), like the kdamonds themselves.

use crate::persist::{self, PersistError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One kdamond tierd started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `/sys/kernel/mm/damon/admin/kdamonds/N`.
    pub dir: PathBuf,
    /// Its kthread pid (`N/pid`) once on; `None` while being turned on.
    pub kthread: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    kdamonds: Vec<Entry>,
}

const VERSION: u32 = 1;

#[derive(Debug, Default)]
struct Inner {
    /// Where entries are written (none until [`Ledger::recover`]: unit tests, or a
    /// tierd whose state dir is unusable).
    file: Option<PathBuf>,
    entries: Vec<Entry>,
    /// Stopped directories of a previous tierd, free for reuse.
    adoptable: Vec<PathBuf>,
}

/// What [`Ledger::recover`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Kdamonds a previous tierd left running, now stopped.
    pub stopped: Vec<PathBuf>,
    /// Recorded kdamonds left alone: gone, already off, or another tool's now.
    pub left: Vec<PathBuf>,
}

/// A shared handle on one ledger.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<Inner>>);

/// The process-wide ledger the real kdamond uses.
pub fn global() -> Ledger {
    static GLOBAL: OnceLock<Ledger> = OnceLock::new();
    GLOBAL.get_or_init(Ledger::default).clone()
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the kdamonds `file` says a previous tierd left running, keeps their
    /// directories for reuse, and writes this tierd's entries to `file` from now on.
    pub fn recover(&self, file: &Path) -> Recovery {
        let previous = match load(file) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "DAMON: kdamond ledger unreadable; no orphan check");
                Vec::new()
            }
        };
        let mut out = Recovery::default();
        let mut inner = self.lock();
        for e in previous {
            let state = read(&e.dir.join("state"));
            let kthread = read(&e.dir.join("pid")).and_then(|p| p.parse::<u32>().ok());
            let ours =
                state.as_deref() == Some("on") && (e.kthread.is_none() || e.kthread == kthread);
            if !ours {
                out.left.push(e.dir);
                continue;
            }
            match std::fs::write(e.dir.join("state"), "off") {
                Ok(()) => {
                    tracing::warn!(
                        kdamond = %e.dir.display(),
                        kthread = ?kthread,
                        "DAMON: stopped the kdamond a previous tierd left running"
                    );
                    inner.adoptable.push(e.dir.clone());
                    out.stopped.push(e.dir);
                }
                Err(err) => {
                    tracing::error!(
                        kdamond = %e.dir.display(),
                        error = %err,
                        "DAMON: cannot stop the kdamond a previous tierd left running"
                    );
                    // Still ours: keep it recorded for the next start.
                    inner.entries.push(e);
                }
            }
        }
        inner.file = Some(file.to_path_buf());
        save(&inner);
        out
    }

    /// `dir` is about to be turned on (recorded before, so a crash in between is
    /// recognised too).
    pub fn starting(&self, dir: &Path) {
        self.set(dir, None);
    }

    /// `dir` runs as kthread `kthread`.
    pub fn started(&self, dir: &Path, kthread: u32) {
        self.set(dir, Some(kthread));
    }

    fn set(&self, dir: &Path, kthread: Option<u32>) {
        let mut inner = self.lock();
        let e = Entry {
            dir: dir.to_path_buf(),
            kthread,
        };
        match inner.entries.iter_mut().find(|x| x.dir == dir) {
            Some(x) if *x == e => return,
            Some(x) => *x = e,
            None => inner.entries.push(e),
        }
        save(&inner);
    }

    /// tierd no longer uses `dir` (stopped, and dropped or removed).
    pub fn released(&self, dir: &Path) {
        let mut inner = self.lock();
        let before = inner.entries.len();
        inner.entries.retain(|e| e.dir != dir);
        if inner.entries.len() != before {
            save(&inner);
        }
    }

    /// A stopped directory of a previous tierd to reuse, if any is still off.
    pub fn take_adoptable(&self) -> Option<PathBuf> {
        let mut inner = self.lock();
        while let Some(d) = inner.adoptable.pop() {
            if read(&d.join("state")).as_deref() == Some("off") {
                return Some(d);
            }
        }
        None
    }

    /// Directories of the kdamonds this tierd started.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.lock().entries.iter().map(|e| e.dir.clone()).collect()
    }
}

fn load(file: &Path) -> Result<Vec<Entry>, PersistError> {
    Ok(
        persist::read_versioned(file, VERSION, |f: &FileV1| f.version)?
            .map_or_else(Vec::new, |f| f.kdamonds),
    )
}

/// Writes the entries (the file goes when there are none). A failure is logged: the
/// kdamond still runs, only a crash would leave it unrecorded.
fn save(inner: &Inner) {
    let Some(file) = &inner.file else { return };
    let res = if inner.entries.is_empty() {
        persist::remove(file)
    } else {
        let f = FileV1 {
            version: VERSION,
            kdamonds: inner.entries.clone(),
        };
        match serde_json::to_vec_pretty(&f) {
            Ok(bytes) => persist::write_atomic(file, &bytes),
            Err(e) => Err(PersistError::Parse {
                path: file.clone(),
                msg: e.to_string(),
            }),
        }
    };
    if let Err(e) = res {
        tracing::warn!(error = %e, "DAMON: kdamond ledger not written");
    }
}
