//! tierd's own kdamond, driven through DAMON's sysfs interface
//! (`/sys/kernel/mm/damon/admin/kdamonds/`).
//!
//! DAMON peers (benchmarks, other tools) may use kdamonds too, so tierd appends one
//! kdamond directory for itself and only ever stops or removes that one. Two kernel
//! rules shape this: writing `nr_kdamonds` fails with EBUSY while any kdamond runs,
//! and it recreates every kdamond directory (a peer's *unstarted* configuration is
//! lost). So tierd adds its directory once, at its first target, and on exit stops
//! its kdamond and removes the directory only when it is the sole one. Every directory
//! it starts is written in the [`Ledger`] first, so a tierd that dies with its kdamond
//! running leaves a record the next start stops it by; that start reuses the stopped
//! directory rather than appending one (which EBUSY would refuse while a peer runs).
//! Called from [`super::DamonSampler`] when the target set or the rate changes.

use super::ledger::{self, Ledger};
use std::path::{Path, PathBuf};

pub const ADMIN: &str = "/sys/kernel/mm/damon/admin/kdamonds";

/// How often DAMON re-reads the targets' mappings.
const UPDATE_US: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DamonError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: busy: another DAMON user runs a kdamond, and a kdamond can only be \
         added while none runs (tierd retries)"
    )]
    Busy { path: PathBuf },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
}

/// Monitoring attributes written to the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub min_regions: u32,
    pub max_regions: u32,
}

/// What [`super::DamonSampler`] needs from a kdamond (a fake in unit tests).
pub trait KdamondCtl: Send {
    /// (Re)starts monitoring exactly `pids` (target id = index); returns the
    /// kdamond's kthread pid.
    fn apply(&mut self, pids: &[i32], attrs: &Attrs) -> Result<u32, DamonError>;
    /// Stops monitoring (keeps the directory).
    fn stop(&mut self) -> Result<(), DamonError>;
    /// Applies a new sampling interval to the running kdamond.
    fn set_sample_us(&mut self, attrs: &Attrs) -> Result<(), DamonError>;
    /// Whether the kdamond still runs (it stops by itself when every target exited).
    fn running(&self) -> bool;
    /// Where it lives, for status.
    fn describe(&self) -> String;
}

/// Gives our kdamond kthread tierd's own CPU affinity, so confining tierd to
/// housekeeping CPUs (systemd `CPUAffinity=`, taskset) confines its monitoring too; the
/// kernel starts a kdamond on every CPU. Best effort: a failure only costs placement.
fn follow_affinity(kthread: i32) {
    use nix::sched::{sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;
    let comm = std::fs::read_to_string(format!("/proc/{kthread}/comm")).unwrap_or_default();
    if !comm.starts_with("kdamond") {
        return; // not a kdamond (gone already, or a test's fake sysfs)
    }
    match sched_getaffinity(Pid::from_raw(0))
        .and_then(|set| sched_setaffinity(Pid::from_raw(kthread), &set))
    {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(kthread, error = %e, "DAMON: cannot give the kdamond tierd's CPU affinity")
        }
    }
}

fn write(path: &Path, value: impl std::fmt::Display) -> Result<(), DamonError> {
    std::fs::write(path, value.to_string()).map_err(|source| DamonError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, DamonError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| DamonError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn read_num(path: &Path) -> Result<u64, DamonError> {
    let s = read(path)?;
    s.parse().map_err(|_| DamonError::Parse {
        path: path.to_path_buf(),
        content: s,
    })
}

/// The kdamond directory tierd appended (allocated at the first [`KdamondCtl::apply`]).
pub struct SysfsKdamond {
    admin: PathBuf,
    dir: Option<PathBuf>,
    ledger: Ledger,
}

impl SysfsKdamond {
    pub fn new(admin: &Path) -> SysfsKdamond {
        SysfsKdamond::with_ledger(admin, ledger::global())
    }

    /// A kdamond recorded in `ledger` (tests use their own).
    pub fn with_ledger(admin: &Path, ledger: Ledger) -> SysfsKdamond {
        SysfsKdamond {
            admin: admin.to_path_buf(),
            dir: None,
            ledger,
        }
    }

    /// Reuses the directory a previous tierd left (stopped by [`Ledger::recover`]), or
    /// appends one kdamond directory, and returns it.
    fn allocate(&mut self) -> Result<PathBuf, DamonError> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        if let Some(dir) = self.ledger.take_adoptable() {
            tracing::info!(kdamond = %dir.display(), "DAMON: reusing the kdamond a previous tierd left");
            self.dir = Some(dir.clone());
            return Ok(dir);
        }
        let nr_path = self.admin.join("nr_kdamonds");
        let nr = read_num(&nr_path)?;
        match std::fs::write(&nr_path, (nr + 1).to_string()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(DamonError::Busy { path: nr_path })
            }
            Err(source) => {
                return Err(DamonError::Io {
                    path: nr_path,
                    source,
                })
            }
        }
        let dir = self.admin.join(nr.to_string());
        tracing::info!(kdamond = %dir.display(), "DAMON: added tierd's kdamond");
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    fn configure(dir: &Path, pids: &[i32], a: &Attrs) -> Result<(), DamonError> {
        write(&dir.join("contexts/nr_contexts"), 1)?;
        let ctx = dir.join("contexts/0");
        write(&ctx.join("operations"), "vaddr")?;
        let iv = ctx.join("monitoring_attrs/intervals");
        write(&iv.join("sample_us"), a.sample_us)?;
        write(&iv.join("aggr_us"), a.aggr_us)?;
        write(&iv.join("update_us"), UPDATE_US.max(a.aggr_us))?;
        let nr = ctx.join("monitoring_attrs/nr_regions");
        // Lower the minimum first so the pair is never inverted in between.
        write(&nr.join("min"), 3)?;
        write(&nr.join("max"), a.max_regions)?;
        write(&nr.join("min"), a.min_regions)?;
        let targets = ctx.join("targets");
        write(&targets.join("nr_targets"), pids.len())?;
        for (i, pid) in pids.iter().enumerate() {
            write(&targets.join(format!("{i}/pid_target")), pid)?;
        }
        Ok(())
    }
}

impl KdamondCtl for SysfsKdamond {
    fn apply(&mut self, pids: &[i32], attrs: &Attrs) -> Result<u32, DamonError> {
        let dir = self.allocate()?;
        if self.running() {
            self.stop()?;
        }
        Self::configure(&dir, pids, attrs)?;
        self.ledger.starting(&dir);
        write(&dir.join("state"), "on")?;
        let pid = read_num(&dir.join("pid"))?;
        self.ledger.started(&dir, pid as u32);
        follow_affinity(pid as i32);
        Ok(pid as u32)
    }

    fn stop(&mut self) -> Result<(), DamonError> {
        match &self.dir {
            Some(d) if self.running() => write(&d.join("state"), "off"),
            _ => Ok(()),
        }
    }

    fn set_sample_us(&mut self, a: &Attrs) -> Result<(), DamonError> {
        let Some(d) = &self.dir else { return Ok(()) };
        let iv = d.join("contexts/0/monitoring_attrs/intervals");
        write(&iv.join("sample_us"), a.sample_us)?;
        if self.running() {
            write(&d.join("state"), "commit")?;
        }
        Ok(())
    }

    fn running(&self) -> bool {
        self.dir
            .as_ref()
            .is_some_and(|d| read(&d.join("state")).is_ok_and(|s| s == "on"))
    }

    fn describe(&self) -> String {
        match &self.dir {
            Some(d) => d.display().to_string(),
            None => format!("{} (no kdamond yet)", self.admin.display()),
        }
    }
}

impl Drop for SysfsKdamond {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        match self.stop_dir(&dir) {
            Ok(()) => self.ledger.released(&dir),
            Err(e) => tracing::warn!(error = %e, "DAMON: cannot stop tierd's kdamond"),
        }
        remove_if_sole(&dir);
    }
}

/// Removes tierd's stopped kdamond directory when it is the only one, so clean stops
/// leave `nr_kdamonds` as they found it. Shrinking `nr_kdamonds` recreates every
/// directory: never when a peer has one, so no peer configuration is lost.
fn remove_if_sole(dir: &Path) {
    let Some(admin) = dir.parent() else { return };
    let nr_path = admin.join("nr_kdamonds");
    if dir.file_name().and_then(|n| n.to_str()) == Some("0")
        && read_num(&nr_path).is_ok_and(|n| n == 1)
    {
        match write(&nr_path, 0) {
            Ok(()) => tracing::info!("DAMON: removed tierd's kdamond"),
            Err(e) => tracing::warn!(error = %e, "DAMON: cannot remove tierd's kdamond"),
        }
    }
}

impl SysfsKdamond {
    fn stop_dir(&self, dir: &Path) -> Result<(), DamonError> {
        if read(&dir.join("state")).is_ok_and(|s| s == "on") {
            write(&dir.join("state"), "off")?;
        }
        Ok(())
    }
}

/// Stops every kdamond this process started and forgets the ones that stopped.
/// Called by `main` at shutdown, since the sampling thread may not get to drop its
/// [`SysfsKdamond`] before exit.
pub fn release_all() {
    let ledger = ledger::global();
    for dir in ledger.dirs() {
        let state = dir.join("state");
        let res = if read(&state).is_ok_and(|s| s == "on") {
            write(&state, "off").map(
                |()| tracing::info!(kdamond = %dir.display(), "DAMON: stopped tierd's kdamond"),
            )
        } else {
            Ok(())
        };
        match res {
            Ok(()) => {
                ledger.released(&dir);
                remove_if_sole(&dir);
            }
            Err(e) => tracing::warn!(error = %e, "DAMON: cannot stop tierd's kdamond"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake admin tree; `nr_kdamonds` writes are not acted on by a fake kernel,
    /// so the test creates the directory the kernel would.
    fn admin(nr: u32) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("nr_kdamonds"), nr.to_string()).unwrap();
        let d = t.path().join(nr.to_string());
        for sub in [
            "contexts/0/monitoring_attrs/intervals",
            "contexts/0/monitoring_attrs/nr_regions",
            "contexts/0/targets/0",
            "contexts/0/targets/1",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("state"), "off\n").unwrap();
        std::fs::write(d.join("pid"), "4242\n").unwrap();
        t
    }

    const ATTRS: Attrs = Attrs {
        sample_us: 5000,
        aggr_us: 100_000,
        min_regions: 10,
        max_regions: 1000,
    };

    #[test]
    fn appends_its_own_kdamond_and_writes_targets() {
        let t = admin(1);
        let mut k = SysfsKdamond::with_ledger(t.path(), Ledger::default());
        let a = ATTRS;
        assert_eq!(k.apply(&[100, 200], &a).unwrap(), 4242);
        let d = t.path().join("1");
        let r = |p: &str| std::fs::read_to_string(d.join(p)).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("nr_kdamonds")).unwrap(),
            "2"
        );
        assert_eq!(r("contexts/0/operations"), "vaddr");
        assert_eq!(r("contexts/0/monitoring_attrs/intervals/sample_us"), "5000");
        assert_eq!(r("contexts/0/monitoring_attrs/nr_regions/min"), "10");
        assert_eq!(r("contexts/0/targets/nr_targets"), "2");
        assert_eq!(r("contexts/0/targets/1/pid_target"), "200");
        assert_eq!(r("state"), "on");
        // The peer's directory 0 was never touched.
        assert!(!t.path().join("0").exists());
        drop(k);
        assert_eq!(r("state"), "off", "stopped on drop");
        assert_eq!(
            std::fs::read_to_string(t.path().join("nr_kdamonds")).unwrap(),
            "2"
        );
    }

    fn nr_kdamonds(t: &tempfile::TempDir) -> String {
        std::fs::read_to_string(t.path().join("nr_kdamonds")).unwrap()
    }

    #[test]
    fn a_killed_tierds_kdamond_is_stopped_and_reused_by_the_next() {
        let t = admin(1);
        // A peer's kdamond 0 runs (not tierd's: never recorded).
        std::fs::create_dir_all(t.path().join("0")).unwrap();
        std::fs::write(t.path().join("0/state"), "on\n").unwrap();
        std::fs::write(t.path().join("0/pid"), "777\n").unwrap();
        let file = t.path().join("state/persist/kdamonds.json");

        // The first tierd starts its kdamond (1) and is killed: nothing is dropped.
        let first = Ledger::default();
        assert_eq!(first.recover(&file), ledger::Recovery::default());
        let mut k = SysfsKdamond::with_ledger(t.path(), first);
        assert_eq!(k.apply(&[100], &ATTRS).unwrap(), 4242);
        assert!(file.exists(), "recorded while it runs");
        std::mem::forget(k);
        let d = t.path().join("1");
        assert_eq!(std::fs::read_to_string(d.join("state")).unwrap(), "on");
        assert_eq!(nr_kdamonds(&t), "2");

        // The next start stops it, and only it.
        let next = Ledger::default();
        let r = next.recover(&file);
        assert_eq!(r.stopped, vec![d.clone()]);
        assert_eq!(std::fs::read_to_string(d.join("state")).unwrap(), "off");
        assert_eq!(
            std::fs::read_to_string(t.path().join("0/state")).unwrap(),
            "on\n"
        );
        // Its own kdamond reuses the stopped directory: nr_kdamonds is not written (the
        // kernel would refuse with EBUSY while the peer's kdamond runs).
        let mut k = SysfsKdamond::with_ledger(t.path(), next.clone());
        k.apply(&[200], &ATTRS).unwrap();
        assert_eq!(nr_kdamonds(&t), "2");
        assert_eq!(std::fs::read_to_string(d.join("state")).unwrap(), "on");
        assert_eq!(
            std::fs::read_to_string(d.join("contexts/0/targets/0/pid_target")).unwrap(),
            "200"
        );
        assert_eq!(next.dirs(), vec![d.clone()]);
        // A clean exit stops it and leaves no record.
        drop(k);
        assert_eq!(std::fs::read_to_string(d.join("state")).unwrap(), "off");
        assert!(!file.exists());
    }

    #[test]
    fn a_recorded_kdamond_with_another_kthread_is_left_alone() {
        let t = admin(1);
        let file = t.path().join("kdamonds.json");
        let d = t.path().join("1");
        std::fs::write(d.join("state"), "on\n").unwrap();
        // Recorded with kthread 1111, but the running one is 4242: another tool's now.
        let entry = r#"{"version":1,"kdamonds":[{"dir":"DIR","kthread":1111}]}"#
            .replace("DIR", &d.display().to_string());
        std::fs::write(&file, entry).unwrap();
        let l = Ledger::default();
        let r = l.recover(&file);
        assert!(r.stopped.is_empty());
        assert_eq!(r.left, vec![d.clone()]);
        assert_eq!(std::fs::read_to_string(d.join("state")).unwrap(), "on\n");
        assert_eq!(l.take_adoptable(), None);
        // Recorded without a kthread (tierd died while turning it on): ours.
        let entry = r#"{"version":1,"kdamonds":[{"dir":"DIR","kthread":null}]}"#
            .replace("DIR", &d.display().to_string());
        std::fs::write(&file, entry).unwrap();
        assert_eq!(Ledger::default().recover(&file).stopped, vec![d]);
    }
}
