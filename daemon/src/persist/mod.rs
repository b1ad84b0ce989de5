//! What a tierd leaves under `daemon.state_dir` (`/run/tierd`) for the next one, so a
//! tierd that died without cleaning up (SIGKILL, a panic, the OOM killer) can be
//! undone and resumed by the next start:
//!
//! ```text
//! tierd.lock                  flock held while a tierd runs (one tierd per state dir)
//! persist/knobs/<path>        original value of each kernel knob tierd changed
//!                             (<path> relative to /, e.g. proc/sys/kernel/numa_balancing)
//! persist/kdamonds.json       DAMON kdamond directories tierd started, with their kthread
//! persist/managed.json        processes managed with `tierctl manage`: pid, start time,
//!                             policy, priority
//! ```
//!
//! Runtime scopes (`tierctl manage --cgroup/--unit/--comm`) are kept apart, in
//! `daemon.scopes_file` (`/var/lib/tierd/scopes.json`), as they outlive a reboot
//! ([`scopes`]).
//!
//! Every record is written before the change it allows to undo, to a temporary name
//! renamed over the old one ([`write_atomic`]), so a reader sees the old or the new
//! record, never half of one. Writers: [`crate::kernel::KnobGuard`] (knobs), the DAMON
//! sampler's ledger (kdamonds), [`managed::Journal`] (managed processes). main takes the
//! [`InstanceLock`] first and only then reads the records: a second tierd started by
//! mistake must not undo the first one's work.

pub mod managed;
pub mod scopes;

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Directory of the records, under the state dir.
pub const DIR: &str = "persist";
/// Kernel knob originals, under [`DIR`].
pub const KNOBS: &str = "knobs";
/// The kdamond ledger, under [`DIR`].
pub const KDAMONDS: &str = "kdamonds.json";
/// Managed processes, under [`DIR`].
pub const MANAGED: &str = "managed.json";
/// The instance lock, under the state dir.
pub const LOCK: &str = "tierd.lock";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a valid record ({msg}); ignored")]
    Parse { path: PathBuf, msg: String },
    #[error("{path} is locked: another tierd runs with this daemon.state_dir")]
    Locked { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the records of one state dir live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    state_dir: PathBuf,
}

impl Paths {
    pub fn new(state_dir: impl Into<PathBuf>) -> Paths {
        Paths {
            state_dir: state_dir.into(),
        }
    }

    /// `<state_dir>/persist/knobs`.
    pub fn knobs(&self) -> PathBuf {
        self.state_dir.join(DIR).join(KNOBS)
    }

    /// `<state_dir>/persist/kdamonds.json`.
    pub fn kdamonds(&self) -> PathBuf {
        self.state_dir.join(DIR).join(KDAMONDS)
    }

    /// `<state_dir>/persist/managed.json`.
    pub fn managed(&self) -> PathBuf {
        self.state_dir.join(DIR).join(MANAGED)
    }

    /// `<state_dir>/tierd.lock`.
    pub fn lock(&self) -> PathBuf {
        self.state_dir.join(LOCK)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created if
/// missing), synced and renamed over `path`: after a crash at any point `path` holds
/// the old or the new content. The directory is synced too, so the rename itself
/// survives (on tmpfs, `/run`, both syncs are free).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a record; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<String>, PersistError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Reads a versioned JSON record: `Ok(None)` when there is none; a corrupt file, or one
/// whose `version(&file)` is not `want` (another tierd's format), is a `Parse` error the
/// caller logs before starting without it.
pub fn read_versioned<F: serde::de::DeserializeOwned>(
    path: &Path,
    want: u32,
    version: impl Fn(&F) -> u32,
) -> Result<Option<F>, PersistError> {
    let Some(text) = read(path)? else {
        return Ok(None);
    };
    let parse = |msg: String| PersistError::Parse {
        path: path.to_path_buf(),
        msg,
    };
    let file: F = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
    let found = version(&file);
    if found != want {
        return Err(parse(format!("version {found} (this tierd writes {want})")));
    }
    Ok(Some(file))
}

/// Removes a record (none is fine).
pub fn remove(path: &Path) -> Result<(), PersistError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// An exclusive `flock(2)` on `<state_dir>/tierd.lock`, held for the life of the
/// process (the kernel drops it when the process dies, however it dies).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock, or fails with [`PersistError::Locked`] at once if another
    /// process holds it.
    pub fn take(paths: &Paths) -> Result<InstanceLock, PersistError> {
        let path = paths.lock();
        let dir = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                PersistError::Locked { path }
            } else {
                PersistError::Io { path, source: e }
            });
        }
        Ok(InstanceLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = Paths::new(t.path()).managed();
        assert_eq!(read(&p).unwrap(), None);
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some("two"));
        let names: Vec<String> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![MANAGED.to_string()]);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
    }

    #[test]
    fn a_second_instance_is_refused_until_the_first_is_gone() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::new(t.path());
        let first = InstanceLock::take(&paths).unwrap();
        // flock locks belong to the open file description: a second open conflicts
        // even in the same process.
        assert!(matches!(
            InstanceLock::take(&paths),
            Err(PersistError::Locked { .. })
        ));
        drop(first);
        // A child another test forked meanwhile (protocol::permission_tests) holds a copy
        // of the description, and the lock with it, until it exits: retry a while.
        let t0 = std::time::Instant::now();
        while let Err(e) = InstanceLock::take(&paths) {
            assert!(t0.elapsed().as_secs() < 30, "{e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
