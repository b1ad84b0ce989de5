//! The kernel's own tiering knobs: NUMA balancing (`/proc/sys/kernel/numa_balancing`)
//! and reclaim-based demotion (`/sys/kernel/mm/numa/demotion_enabled`).
//!
//! tierd leaves them as it found them unless `policy.kernel_numa_balancing` (and the
//! scanner's `policy.kernel_numa_*` knobs, [`policy_knobs`]) say otherwise; whatever it
//! changes it restores on exit ([`KnobGuard`], [`KnobGuards`]). So that a tierd
//! killed before it could restore (SIGKILL, a panic) does not make the next one take
//! tierd's own value for the original, the original is recorded under
//! `<state_dir>/persist/knobs/<path>` before the knob is written, and removed once it is
//! restored. At start main calls [`recover`] first: every record left behind is written
//! back to its knob, so the knobs end where they were before the *first* tierd started.

use crate::persist::{self, PersistError};
use std::path::{Component, Path, PathBuf};
use tierd_api::KernelTiering;

pub const NUMA_BALANCING: &str = "proc/sys/kernel/numa_balancing";
pub const DEMOTION_ENABLED: &str = "sys/kernel/mm/numa/demotion_enabled";
/// The NUMA scanner's knobs (debugfs, mounted at /sys/kernel/debug) and the promotion
/// rate limit of the memory-tiering mode.
pub const NUMA_SCAN_PERIOD_MIN_MS: &str =
    "sys/kernel/debug/sched/numa_balancing/scan_period_min_ms";
pub const NUMA_SCAN_SIZE_MB: &str = "sys/kernel/debug/sched/numa_balancing/scan_size_mb";
pub const NUMA_HOT_THRESHOLD_MS: &str = "sys/kernel/debug/sched/numa_balancing/hot_threshold_ms";
pub const NUMA_PROMOTE_RATE_LIMIT_MBPS: &str =
    "proc/sys/kernel/numa_balancing_promote_rate_limit_MBps";

/// One knob the config sets: its path under the root, the value, the config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnobSetting {
    pub rel: &'static str,
    pub value: String,
    pub key: &'static str,
}

/// The knobs `[policy]` asks tierd to set, in the order they are written: the
/// scanner's first and `numa_balancing` last, because a task takes its scan period
/// from the scanner's knobs when balancing first scans it (a process that ran with
/// balancing off would otherwise keep the old period).
pub fn policy_knobs(p: &tierd_config::PolicyConfig) -> Vec<KnobSetting> {
    let knobs = [
        (
            NUMA_PROMOTE_RATE_LIMIT_MBPS,
            p.kernel_numa_promote_rate_limit_mbps,
            "policy.kernel_numa_promote_rate_limit_mbps",
        ),
        (
            NUMA_SCAN_SIZE_MB,
            p.kernel_numa_scan_size_mb,
            "policy.kernel_numa_scan_size_mb",
        ),
        (
            NUMA_SCAN_PERIOD_MIN_MS,
            p.kernel_numa_scan_period_min_ms,
            "policy.kernel_numa_scan_period_min_ms",
        ),
        (
            NUMA_HOT_THRESHOLD_MS,
            p.kernel_numa_hot_threshold_ms,
            "policy.kernel_numa_hot_threshold_ms",
        ),
        (
            NUMA_BALANCING,
            p.kernel_numa_balancing.map(u64::from),
            "policy.kernel_numa_balancing",
        ),
    ];
    knobs
        .into_iter()
        .filter_map(|(rel, v, key)| {
            v.map(|v| KnobSetting {
                rel,
                value: v.to_string(),
                key,
            })
        })
        .collect()
}

/// Knobs tierd set, restored in the reverse order when dropped (`numa_balancing`
/// first, so the kernel stops scanning before its scanner's knobs go back).
#[derive(Debug, Default)]
pub struct KnobGuards(Vec<KnobGuard>);

impl KnobGuards {
    /// Sets every knob of `settings` in order ([`KnobGuard::set`]); on the first
    /// failure the knobs already set are restored and the error names the config key.
    pub fn set_all(
        root: &Path,
        records: &Path,
        settings: &[KnobSetting],
    ) -> Result<KnobGuards, (&'static str, KnobError)> {
        let mut guards = KnobGuards::default();
        for s in settings {
            let g = KnobGuard::set(root, records, s.rel, &s.value).map_err(|e| (s.key, e))?;
            guards.0.push(g);
        }
        Ok(guards)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for KnobGuards {
    fn drop(&mut self) {
        while let Some(g) = self.0.pop() {
            drop(g);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KnobError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recording the original of {knob}: {source}")]
    Record { knob: PathBuf, source: PersistError },
}

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

fn write_knob(path: &Path, value: &str) -> Result<(), KnobError> {
    std::fs::write(path, value).map_err(|source| KnobError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Restores a knob's original value when dropped.
#[derive(Debug)]
pub struct KnobGuard {
    path: PathBuf,
    /// The record of the original (`<records>/<rel>`).
    record: PathBuf,
    original: String,
}

impl KnobGuard {
    /// Writes `value` to the knob at `root/rel`, remembering what was there in memory
    /// and in `records/rel` (`<state_dir>/persist/knobs`). If such a record exists
    /// already, a previous tierd died without restoring the knob (and [`recover`]
    /// could not either): its recorded original is kept, not the current value.
    pub fn set(
        root: &Path,
        records: &Path,
        rel: &str,
        value: &str,
    ) -> Result<KnobGuard, KnobError> {
        let path = root.join(rel);
        let record = records.join(rel);
        let recorded = persist::read(&record).map_err(|source| KnobError::Record {
            knob: path.clone(),
            source,
        })?;
        let original = match recorded {
            Some(o) => {
                tracing::warn!(
                    knob = %path.display(),
                    original = o.trim(),
                    "kernel knob: a previous tierd did not restore it; keeping its recorded original"
                );
                o
            }
            None => {
                let o = std::fs::read_to_string(&path).map_err(|source| KnobError::Io {
                    path: path.clone(),
                    source,
                })?;
                persist::write_atomic(&record, o.trim().as_bytes()).map_err(|source| {
                    KnobError::Record {
                        knob: path.clone(),
                        source,
                    }
                })?;
                o
            }
        };
        write_knob(&path, value)?;
        tracing::info!(knob = %path.display(), from = original.trim(), to = value, "kernel knob set");
        Ok(KnobGuard {
            path,
            record,
            original,
        })
    }
}

impl Drop for KnobGuard {
    fn drop(&mut self) {
        match write_knob(&self.path, self.original.trim()) {
            Ok(()) => {
                tracing::info!(knob = %self.path.display(), to = self.original.trim(), "kernel knob restored");
                if let Err(e) = persist::remove(&self.record) {
                    tracing::warn!(error = %e, "kernel knob restored but its record stays");
                }
            }
            // The record stays: the next start restores the knob.
            Err(e) => tracing::error!(error = %e, "cannot restore kernel knob"),
        }
    }
}

/// A knob [`recover`] wrote back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Path relative to the root, e.g. [`NUMA_BALANCING`].
    pub knob: String,
    pub original: String,
}

/// Writes every original recorded under `records` back to its knob under `root` and
/// removes the records that were restored; a knob that cannot be written keeps its
/// record (and a warning). Called by main at start, under the instance lock, before
/// anything reads or sets a knob.
pub fn recover(root: &Path, records: &Path) -> Vec<Restored> {
    let mut files = Vec::new();
    collect(records, &mut files);
    let mut restored = Vec::new();
    for record in files {
        let Ok(rel) = record.strip_prefix(records) else {
            continue;
        };
        // Only plain names: a record never points outside the root.
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            continue;
        }
        let original = match persist::read(&record) {
            Ok(Some(o)) => o.trim().to_string(),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "kernel knob record unreadable");
                continue;
            }
        };
        let knob = root.join(rel);
        match write_knob(&knob, &original) {
            Ok(()) => {
                tracing::warn!(
                    knob = %knob.display(),
                    to = %original,
                    "kernel knob restored: a previous tierd exited without restoring it"
                );
                if let Err(e) = persist::remove(&record) {
                    tracing::warn!(error = %e, "kernel knob restored but its record stays");
                }
                restored.push(Restored {
                    knob: rel.to_string_lossy().into_owned(),
                    original,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot restore kernel knob left by a previous tierd")
            }
        }
    }
    restored
}

/// Regular files under `dir`, recursively (temporary files of an interrupted write,
/// `.name.tmp`, excluded).
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect(&p, out),
            Ok(t) if t.is_file() && !e.file_name().to_string_lossy().starts_with('.') => {
                out.push(p)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root with both knobs, and a records directory next to it.
    fn root() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("root");
        std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
        std::fs::create_dir_all(r.join("sys/kernel/mm/numa")).unwrap();
        std::fs::write(r.join(NUMA_BALANCING), "1\n").unwrap();
        std::fs::write(r.join(DEMOTION_ENABLED), "false\n").unwrap();
        let records = dir.path().join("state/persist/knobs");
        (dir, r, records)
    }

    #[test]
    fn read_set_and_restore() {
        let (_d, r, records) = root();
        let r = r.as_path();
        let k = read(r);
        assert_eq!(
            (k.numa_balancing, k.demotion_enabled),
            (Some(1), Some(false))
        );
        assert!(moves_pages(&k));
        {
            let _g = KnobGuard::set(r, &records, NUMA_BALANCING, "0").unwrap();
            assert_eq!(read(r).numa_balancing, Some(0));
            assert!(!moves_pages(&read(r)));
            assert_eq!(
                std::fs::read_to_string(records.join(NUMA_BALANCING)).unwrap(),
                "1",
                "the original is recorded while the knob is changed"
            );
        }
        assert_eq!(read(r).numa_balancing, Some(1));
        assert!(
            !records.join(NUMA_BALANCING).exists(),
            "the record goes once the knob is restored"
        );
    }

    #[test]
    fn a_killed_tierd_is_undone_by_the_next_start() {
        let (_d, r, records) = root();
        // The first tierd sets the knob and is killed: no Drop runs.
        std::mem::forget(KnobGuard::set(&r, &records, NUMA_BALANCING, "0").unwrap());
        assert_eq!(read(&r).numa_balancing, Some(0));
        // The next start restores it before anything else.
        assert_eq!(
            recover(&r, &records),
            vec![Restored {
                knob: NUMA_BALANCING.into(),
                original: "1".into()
            }]
        );
        assert_eq!(read(&r).numa_balancing, Some(1));
        assert!(recover(&r, &records).is_empty(), "nothing left to restore");
        // It sets the knob again, and restores the first start's original on exit.
        drop(KnobGuard::set(&r, &records, NUMA_BALANCING, "0").unwrap());
        assert_eq!(read(&r).numa_balancing, Some(1));
    }

    #[test]
    fn a_record_recover_could_not_restore_wins_over_the_current_value() {
        let (_d, r, records) = root();
        // A previous tierd changed 1 -> 0 and died; say recovery failed.
        persist::write_atomic(&records.join(NUMA_BALANCING), b"1").unwrap();
        std::fs::write(r.join(NUMA_BALANCING), "0\n").unwrap();
        drop(KnobGuard::set(&r, &records, NUMA_BALANCING, "2").unwrap());
        assert_eq!(
            read(&r).numa_balancing,
            Some(1),
            "restored to the first original, not to the 0 the dead tierd left"
        );
    }

    /// The scanner's knobs under a fake root, with their kernel defaults.
    fn scanner(r: &Path) {
        std::fs::create_dir_all(r.join("sys/kernel/debug/sched/numa_balancing")).unwrap();
        std::fs::write(r.join(NUMA_SCAN_PERIOD_MIN_MS), "1000\n").unwrap();
        std::fs::write(r.join(NUMA_SCAN_SIZE_MB), "256\n").unwrap();
        std::fs::write(r.join(NUMA_HOT_THRESHOLD_MS), "1000\n").unwrap();
        std::fs::write(r.join(NUMA_PROMOTE_RATE_LIMIT_MBPS), "65536\n").unwrap();
    }

    fn text(r: &Path, rel: &str) -> String {
        std::fs::read_to_string(r.join(rel))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn policy_knobs_set_the_scanner_before_balancing() {
        let mut p = tierd_config::PolicyConfig::default();
        assert!(
            policy_knobs(&p).is_empty(),
            "defaults leave every knob as found"
        );
        p.kernel_numa_balancing = Some(2);
        p.kernel_numa_scan_period_min_ms = Some(100);
        p.kernel_numa_promote_rate_limit_mbps = Some(0);
        let k = policy_knobs(&p);
        let rels: Vec<&str> = k.iter().map(|s| s.rel).collect();
        assert_eq!(
            rels,
            vec![
                NUMA_PROMOTE_RATE_LIMIT_MBPS,
                NUMA_SCAN_PERIOD_MIN_MS,
                NUMA_BALANCING
            ]
        );
        assert_eq!(k[0].value, "0");
        assert_eq!(k[1].value, "100");
        assert_eq!(k[2].key, "policy.kernel_numa_balancing");
    }

    #[test]
    fn knob_guards_set_all_and_restore_all() {
        let (_d, r, records) = root();
        scanner(&r);
        let p = tierd_config::PolicyConfig {
            kernel_numa_balancing: Some(2),
            kernel_numa_scan_period_min_ms: Some(100),
            kernel_numa_scan_size_mb: Some(512),
            kernel_numa_hot_threshold_ms: Some(500),
            kernel_numa_promote_rate_limit_mbps: Some(0),
            ..Default::default()
        };
        {
            let g = KnobGuards::set_all(&r, &records, &policy_knobs(&p)).unwrap();
            assert_eq!(g.len(), 5);
            assert_eq!(read(&r).numa_balancing, Some(2));
            assert_eq!(text(&r, NUMA_SCAN_PERIOD_MIN_MS), "100");
            assert_eq!(text(&r, NUMA_SCAN_SIZE_MB), "512");
            assert_eq!(text(&r, NUMA_HOT_THRESHOLD_MS), "500");
            assert_eq!(text(&r, NUMA_PROMOTE_RATE_LIMIT_MBPS), "0");
        }
        assert_eq!(read(&r).numa_balancing, Some(1));
        assert_eq!(text(&r, NUMA_SCAN_PERIOD_MIN_MS), "1000");
        assert_eq!(text(&r, NUMA_SCAN_SIZE_MB), "256");
        assert_eq!(text(&r, NUMA_HOT_THRESHOLD_MS), "1000");
        assert_eq!(text(&r, NUMA_PROMOTE_RATE_LIMIT_MBPS), "65536");
        assert!(recover(&r, &records).is_empty(), "no record left behind");
    }

    #[test]
    fn a_killed_tierd_leaves_the_scanner_knobs_to_the_next_start() {
        let (_d, r, records) = root();
        scanner(&r);
        let p = tierd_config::PolicyConfig {
            kernel_numa_balancing: Some(2),
            kernel_numa_scan_period_min_ms: Some(100),
            kernel_numa_hot_threshold_ms: Some(60000),
            ..Default::default()
        };
        std::mem::forget(KnobGuards::set_all(&r, &records, &policy_knobs(&p)).unwrap());
        assert_eq!(text(&r, NUMA_HOT_THRESHOLD_MS), "60000");
        let mut restored: Vec<String> = recover(&r, &records).into_iter().map(|x| x.knob).collect();
        restored.sort();
        assert_eq!(
            restored,
            vec![
                NUMA_BALANCING,
                NUMA_HOT_THRESHOLD_MS,
                NUMA_SCAN_PERIOD_MIN_MS
            ]
        );
        assert_eq!(read(&r).numa_balancing, Some(1));
        assert_eq!(text(&r, NUMA_SCAN_PERIOD_MIN_MS), "1000");
        assert_eq!(text(&r, NUMA_HOT_THRESHOLD_MS), "1000");
    }

    #[test]
    fn a_missing_knob_undoes_the_ones_set_and_names_its_key() {
        // No debugfs: the rate limit (procfs) is set first, the hot threshold is not
        // there; the rate limit goes back.
        let (_d, r, records) = root();
        std::fs::write(r.join(NUMA_PROMOTE_RATE_LIMIT_MBPS), "65536\n").unwrap();
        let p = tierd_config::PolicyConfig {
            kernel_numa_promote_rate_limit_mbps: Some(0),
            kernel_numa_hot_threshold_ms: Some(500),
            kernel_numa_balancing: Some(2),
            ..Default::default()
        };
        let (key, _) = KnobGuards::set_all(&r, &records, &policy_knobs(&p)).unwrap_err();
        assert_eq!(key, "policy.kernel_numa_hot_threshold_ms");
        assert_eq!(text(&r, NUMA_PROMOTE_RATE_LIMIT_MBPS), "65536");
        assert_eq!(
            read(&r).numa_balancing,
            Some(1),
            "balancing never turned on"
        );
        assert!(recover(&r, &records).is_empty());
    }

    #[test]
    fn temporaries_and_symlinks_are_not_records() {
        let (d, r, records) = root();
        std::fs::create_dir_all(records.join("proc/sys/kernel")).unwrap();
        // An interrupted write's temporary, and a link to a file outside the records.
        std::fs::write(records.join("proc/sys/kernel/.numa_balancing.tmp"), "0").unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, "3").unwrap();
        std::os::unix::fs::symlink(&outside, records.join(NUMA_BALANCING)).unwrap();
        assert!(recover(&r, &records).is_empty());
        assert_eq!(read(&r).numa_balancing, Some(1));
    }
}
