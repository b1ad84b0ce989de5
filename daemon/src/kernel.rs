//! The kernel's own tiering knobs: NUMA balancing (`/proc/sys/kernel/numa_balancing`)
//! and reclaim-based demotion (`/sys/kernel/mm/numa/demotion_enabled`).
//!
//! tierd leaves them as it found them unless `policy.kernel_numa_balancing` says
//! otherwise; whatever it changes it restores on exit ([`KnobGuard`]).

use std::path::{Path, PathBuf};
use tierd_api::KernelTiering;

pub const NUMA_BALANCING: &str = "proc/sys/kernel/numa_balancing";
pub const DEMOTION_ENABLED: &str = "sys/kernel/mm/numa/demotion_enabled";

/// Reads the knobs under `root` (`/` in production).
pub fn read(root: &Path) -> KernelTiering {
    let text = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    KernelTiering {
        numa_balancing: text(NUMA_BALANCING).and_then(|s| s.trim().parse().ok()),
        demotion_enabled: text(DEMOTION_ENABLED).map(|s| matches!(s.trim(), "true" | "1" | "Y")),
    }
}

/// True when the kernel may be moving a process's pages between tiers by itself:
/// NUMA balancing scans every process, and reclaim demotes.
pub fn moves_pages(k: &KernelTiering) -> bool {
    k.numa_balancing.unwrap_or(0) != 0 || k.demotion_enabled.unwrap_or(false)
}

/// Restores a knob's original value when dropped.
pub struct KnobGuard {
    path: PathBuf,
    original: String,
}

impl KnobGuard {
    /// Writes `value` to the knob at `root/rel`, remembering what was there.
    pub fn set(root: &Path, rel: &str, value: &str) -> std::io::Result<KnobGuard> {
        let path = root.join(rel);
        let original = std::fs::read_to_string(&path)?;
        std::fs::write(&path, value)?;
        tracing::info!(knob = %path.display(), from = original.trim(), to = value, "kernel knob set");
        Ok(KnobGuard { path, original })
    }
}

impl Drop for KnobGuard {
    fn drop(&mut self) {
        match std::fs::write(&self.path, self.original.trim()) {
            Ok(()) => {
                tracing::info!(knob = %self.path.display(), to = self.original.trim(), "kernel knob restored")
            }
            Err(e) => {
                tracing::error!(knob = %self.path.display(), error = %e, "cannot restore kernel knob")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_set_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(r.join("sys/kernel/mm/numa")).unwrap();
        std::fs::write(r.join(NUMA_BALANCING), "1\n").unwrap();
        std::fs::write(r.join(DEMOTION_ENABLED), "false\n").unwrap();
        let k = read(r);
        assert_eq!(
            (k.numa_balancing, k.demotion_enabled),
            (Some(1), Some(false))
        );
        assert!(moves_pages(&k));
        {
            let _g = KnobGuard::set(r, NUMA_BALANCING, "0").unwrap();
            assert_eq!(read(r).numa_balancing, Some(0));
            assert!(!moves_pages(&read(r)));
        }
        assert_eq!(read(r).numa_balancing, Some(1));
    }
}
