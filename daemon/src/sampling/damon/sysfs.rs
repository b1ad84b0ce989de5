//! tierd's own kdamond, driven through DAMON's sysfs interface
//! (`/sys/kernel/mm/damon/admin/kdamonds/`).
//!
//! DAMON peers (benchmarks, other tools) may use kdamonds too, so tierd appends one
//! kdamond directory for itself and only ever stops or removes that one. Two kernel
//! rules shape this: writing `nr_kdamonds` fails with EBUSY while any kdamond runs,
//! and it recreates every kdamond directory (a peer's *unstarted* configuration is
//! lost). So tierd adds its directory once, at its first target, and on exit stops
//! its kdamond and removes the directory only when it is the sole one.
//! Called from [`super::DamonSampler`] when the target set or the rate changes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const ADMIN: &str = "/sys/kernel/mm/damon/admin/kdamonds";

/// How often DAMON re-reads the targets' mappings.
const UPDATE_US: u64 = 1_000_000;

/// `state` files of the kdamonds this process started, for [`release_all`].
static OWNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

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
}

impl SysfsKdamond {
    pub fn new(admin: &Path) -> SysfsKdamond {
        SysfsKdamond {
            admin: admin.to_path_buf(),
            dir: None,
        }
    }

    /// Appends one kdamond directory and returns it.
    fn allocate(&mut self) -> Result<PathBuf, DamonError> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
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
        if let Ok(mut owned) = OWNED.lock() {
            owned.push(dir.join("state"));
        }
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
        write(&dir.join("state"), "on")?;
        let pid = read_num(&dir.join("pid"))?;
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
        if let Err(e) = self.stop_dir(&dir) {
            tracing::warn!(error = %e, "DAMON: cannot stop tierd's kdamond");
        }
        if let Ok(mut owned) = OWNED.lock() {
            owned.retain(|p| !p.starts_with(&dir));
        }
        // Shrinking nr_kdamonds recreates every directory: only do it when ours is
        // the sole one, so no peer configuration is lost.
        let nr_path = self.admin.join("nr_kdamonds");
        if dir.file_name().and_then(|n| n.to_str()) == Some("0")
            && read_num(&nr_path).is_ok_and(|n| n == 1)
        {
            match write(&nr_path, 0) {
                Ok(()) => tracing::info!("DAMON: removed tierd's kdamond"),
                Err(e) => tracing::warn!(error = %e, "DAMON: cannot remove tierd's kdamond"),
            }
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

/// Stops every kdamond this process started. Called by `main` at shutdown, since
/// the sampling thread may not get to drop its [`SysfsKdamond`] before exit.
pub fn release_all() {
    let owned = match OWNED.lock() {
        Ok(o) => o.clone(),
        Err(e) => e.into_inner().clone(),
    };
    for state in owned {
        if read(&state).is_ok_and(|s| s == "on") {
            match write(&state, "off") {
                Ok(()) => {
                    tracing::info!(kdamond = %state.display(), "DAMON: stopped tierd's kdamond")
                }
                Err(e) => tracing::warn!(error = %e, "DAMON: cannot stop tierd's kdamond"),
            }
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

    #[test]
    fn appends_its_own_kdamond_and_writes_targets() {
        let t = admin(1);
        let mut k = SysfsKdamond::new(t.path());
        let a = Attrs {
            sample_us: 5000,
            aggr_us: 100_000,
            min_regions: 10,
            max_regions: 1000,
        };
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
}
