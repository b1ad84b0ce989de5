//! The kernel's own page-migration counters (`/proc/vmstat`), as growth since tierd
//! started: what every mover did (tierd, NUMA balancing, reclaim's demotion,
//! compaction), beside what tierd counted itself (`migrate::accounting`), so an
//! operator can tell tierd's moves from the kernel's.
//!
//! Read on demand by `tierctl status`, the metrics endpoint and the state tree (each
//! read is one small procfs file); the baseline is taken once, when the daemon starts.
//! [`VmstatSource`] is the narrow kernel interface: [`ProcVmstat`] reads a vmstat file
//! (under an injectable path, so tests use a tempdir) with the `procfs` crate's parser;
//! tests also use a fake.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// The counters exported: page migration by any cause, tiering promotion and
/// demotion, NUMA balancing's hint faults and migrations, THP migration and
/// compaction (which also migrates pages and counts in `pgmigrate_success`).
pub const PREFIXES: [&str; 6] = [
    "pgmigrate_",
    "pgpromote_",
    "pgdemote_",
    "numa_",
    "thp_migration_",
    "compact_",
];

/// `numa_*` counters of page allocation, not of migration: left out.
const ALLOCATION: [&str; 6] = [
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "numa_interleave",
    "numa_local",
    "numa_other",
];

/// Whether counter `name` is exported.
fn exported(name: &str) -> bool {
    PREFIXES.iter().any(|p| name.starts_with(p)) && !ALLOCATION.contains(&name)
}

#[derive(Debug, thiserror::Error)]
pub enum VmstatError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: procfs::ProcError,
    },
}

/// Reads every counter of `/proc/vmstat` (name → value).
pub trait VmstatSource: Send + Sync {
    fn read(&self) -> Result<BTreeMap<String, u64>, VmstatError>;
}

/// `/proc/vmstat`, or a file of the same format.
#[derive(Debug, Clone)]
pub struct ProcVmstat {
    pub path: PathBuf,
}

impl Default for ProcVmstat {
    fn default() -> Self {
        ProcVmstat {
            path: PathBuf::from("/proc/vmstat"),
        }
    }
}

impl VmstatSource for ProcVmstat {
    fn read(&self) -> Result<BTreeMap<String, u64>, VmstatError> {
        use procfs::FromRead;
        let v = procfs::VmStat::from_file(&self.path).map_err(|source| VmstatError::Read {
            path: self.path.clone(),
            source,
        })?;
        // Event counters are never negative; a gauge that is (none of PREFIXES) reads 0.
        Ok(v.0
            .into_iter()
            .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}

/// The exported counters' growth since the baseline.
pub struct KernelCounters {
    source: Box<dyn VmstatSource>,
    /// The counters at start; `None` if they could not be read then (no deltas).
    baseline: Mutex<Option<BTreeMap<String, u64>>>,
}

impl KernelCounters {
    /// Takes the baseline now.
    pub fn new(source: Box<dyn VmstatSource>) -> KernelCounters {
        let baseline = match source.read() {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "no kernel migration counters");
                None
            }
        };
        KernelCounters {
            source,
            baseline: Mutex::new(baseline),
        }
    }

    /// Growth of each exported counter since the baseline (counters the kernel does
    /// not have are absent); empty if vmstat cannot be read.
    pub fn deltas(&self) -> BTreeMap<String, u64> {
        let base = self.baseline.lock().unwrap_or_else(|p| p.into_inner());
        let Some(base) = base.as_ref() else {
            return BTreeMap::new();
        };
        let now = match self.source.read() {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the kernel's migration counters");
                return BTreeMap::new();
            }
        };
        now.into_iter()
            .filter(|(k, _)| exported(k))
            .filter_map(|(k, v)| base.get(&k).map(|b| (k, v.saturating_sub(*b))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A vmstat whose counters the test sets.
    #[derive(Default, Clone)]
    struct Fake(Arc<Mutex<Option<BTreeMap<String, u64>>>>);

    impl Fake {
        fn set(&self, pairs: &[(&str, u64)]) {
            *self.0.lock().unwrap() =
                Some(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        }
    }

    impl VmstatSource for Fake {
        fn read(&self) -> Result<BTreeMap<String, u64>, VmstatError> {
            self.0.lock().unwrap().clone().ok_or(VmstatError::Read {
                path: "fake".into(),
                source: procfs::ProcError::NotFound(None),
            })
        }
    }

    #[test]
    fn deltas_since_start_of_the_migration_counters_only() {
        let f = Fake::default();
        f.set(&[
            ("pgmigrate_success", 100),
            ("pgdemote_kswapd", 5),
            ("numa_hint_faults", 7),
            ("numa_hit", 70),
            ("nr_free_pages", 1000),
        ]);
        let k = KernelCounters::new(Box::new(f.clone()));
        f.set(&[
            ("pgmigrate_success", 612),
            ("pgdemote_kswapd", 5),
            ("numa_hint_faults", 9),
            ("numa_hit", 90),
            ("nr_free_pages", 400),
            ("thp_migration_success", 1),
        ]);
        let d = k.deltas();
        assert_eq!(
            d,
            BTreeMap::from([
                ("numa_hint_faults".to_string(), 2),
                ("pgdemote_kswapd".to_string(), 0),
                ("pgmigrate_success".to_string(), 512),
            ]),
            "gauges and allocation counters are left out, and a counter without a baseline too"
        );
    }

    #[test]
    fn unreadable_vmstat_gives_no_deltas() {
        let f = Fake::default();
        let k = KernelCounters::new(Box::new(f.clone()));
        f.set(&[("pgmigrate_success", 3)]);
        assert!(k.deltas().is_empty(), "no baseline, no deltas");
        let f = Fake::default();
        f.set(&[("pgmigrate_success", 3)]);
        let k = KernelCounters::new(Box::new(f.clone()));
        *f.0.lock().unwrap() = None;
        assert!(k.deltas().is_empty());
    }

    #[test]
    fn parses_a_vmstat_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmstat");
        std::fs::write(
            &path,
            "nr_free_pages 12345\npgmigrate_success 42\npgmigrate_fail 3\npgpromote_success 0\n",
        )
        .unwrap();
        let v = ProcVmstat { path: path.clone() }.read().unwrap();
        assert_eq!(v.get("pgmigrate_success"), Some(&42));
        assert_eq!(v.get("pgmigrate_fail"), Some(&3));
        let missing = ProcVmstat {
            path: dir.path().join("nope"),
        };
        let e = missing.read().unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
