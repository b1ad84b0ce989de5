//! What the scope watcher reads from the kernel, behind [`ScopeSource`] so the watcher
//! and the budget planning are tested without root: the processes of a cgroup subtree,
//! a systemd unit's cgroup, the processes whose command name matches, and a cgroup's
//! memory limits, per-node usage and memory pressure. [`SysSource`] reads a cgroup2 root and a proc
//! root (both injectable; tests use tempdirs); [`fake::FakeSource`] is a map.

use crate::migrate::pressure::{PressureError, PressureSource, PsiFile};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("no cgroup {path} (looked in {dir})")]
    NoCgroup { path: String, dir: PathBuf },
    #[error("{path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("no cgroup found for unit {unit}")]
    NoUnit { unit: String },
}

/// A cgroup's memory limits and usage (`memory.max`, `memory.high`, `memory.current`,
/// `memory.numa_stat`); `None` where the file says `max` or is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMemory {
    pub max_bytes: Option<u64>,
    pub high_bytes: Option<u64>,
    pub current_bytes: Option<u64>,
    /// anon + file bytes per node, from `memory.numa_stat`.
    pub node_bytes: BTreeMap<u32, u64>,
}

impl CgroupMemory {
    /// The lower of `memory.high` and `memory.max`: above it the kernel reclaims.
    pub fn limit_bytes(&self) -> Option<u64> {
        match (self.max_bytes, self.high_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Usage within `margin` of the limit: a migration's transient page could push
    /// the cgroup into reclaim (or memory.high throttling).
    pub fn near_limit(&self, margin_bytes: u64) -> bool {
        match (self.limit_bytes(), self.current_bytes) {
            (Some(limit), Some(cur)) => cur.saturating_add(margin_bytes) >= limit,
            _ => false,
        }
    }
}

pub trait ScopeSource: Send + Sync {
    /// Processes of cgroup `path` (relative to the cgroup2 root) and its descendants.
    fn cgroup_pids(&self, path: &str) -> Result<Vec<i32>, SourceError>;
    /// The cgroup of systemd unit `unit`, relative to the cgroup2 root.
    fn unit_cgroup(&self, unit: &str) -> Result<String, SourceError>;
    /// User processes (not kernel threads) whose command name matches `re`.
    fn comm_pids(&self, re: &regex::Regex) -> Vec<i32>;
    /// The memory files of cgroup `path`.
    fn memory(&self, path: &str) -> CgroupMemory;
    /// Cgroup `path`'s `memory.pressure` "some avg10", percent.
    fn memory_pressure(&self, path: &str) -> Result<f64, PressureError>;
}

/// The real cgroup2 hierarchy and `/proc`.
#[derive(Debug, Clone)]
pub struct SysSource {
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
}

impl Default for SysSource {
    fn default() -> Self {
        SysSource {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Where systemd puts units' cgroups; searched first, then the whole tree.
const UNIT_SLICES: [&str; 3] = ["system.slice", "user.slice", "machine.slice"];
/// How deep the tree is searched for a unit's directory.
const UNIT_SEARCH_DEPTH: usize = 6;
/// `PF_KTHREAD` in `/proc/PID/stat` flags.
const PF_KTHREAD: u64 = 0x0020_0000;

impl SysSource {
    fn dir(&self, path: &str) -> PathBuf {
        self.cgroup_root.join(path.trim_start_matches('/'))
    }

    fn read_procs(dir: &Path, out: &mut Vec<i32>) -> Result<(), SourceError> {
        let file = dir.join("cgroup.procs");
        let text = fs::read_to_string(&file).map_err(|e| SourceError::Read {
            path: file.clone(),
            msg: e.to_string(),
        })?;
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        let Ok(children) = fs::read_dir(dir) else {
            return Ok(());
        };
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                // A child removed meanwhile is no error.
                let _ = Self::read_procs(&c.path(), out);
            }
        }
        Ok(())
    }

    fn find_dir(&self, dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
        let entries = fs::read_dir(dir).ok()?;
        let mut subdirs = Vec::new();
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_str() == Some(name) {
                return Some(e.path());
            }
            subdirs.push(e.path());
        }
        if depth == 0 {
            return None;
        }
        subdirs
            .iter()
            .find_map(|d| self.find_dir(d, name, depth - 1))
    }

    fn relative(&self, p: &Path) -> String {
        let rel = p.strip_prefix(&self.cgroup_root).unwrap_or(p);
        format!("/{}", rel.display())
    }
}

fn read_limit(path: &Path) -> Option<u64> {
    let t = fs::read_to_string(path).ok()?;
    t.trim().parse().ok()
}

/// anon + file bytes per node from `memory.numa_stat` text.
pub fn parse_numa_stat(text: &str) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if !matches!(f.next(), Some("anon" | "file")) {
            continue;
        }
        for kv in f {
            let Some((n, v)) = kv.strip_prefix('N').and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            if let (Ok(n), Ok(v)) = (n.parse::<u32>(), v.parse::<u64>()) {
                *out.entry(n).or_insert(0) += v;
            }
        }
    }
    out
}

impl ScopeSource for SysSource {
    fn cgroup_pids(&self, path: &str) -> Result<Vec<i32>, SourceError> {
        let dir = self.dir(path);
        if !dir.is_dir() {
            return Err(SourceError::NoCgroup {
                path: path.to_string(),
                dir: self.cgroup_root.clone(),
            });
        }
        let mut out = Vec::new();
        Self::read_procs(&dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn unit_cgroup(&self, unit: &str) -> Result<String, SourceError> {
        let name = if unit.contains('.') {
            unit.to_string()
        } else {
            format!("{unit}.service")
        };
        for slice in UNIT_SLICES {
            let d = self.cgroup_root.join(slice).join(&name);
            if d.is_dir() {
                return Ok(self.relative(&d));
            }
        }
        self.find_dir(&self.cgroup_root, &name, UNIT_SEARCH_DEPTH)
            .map(|d| self.relative(&d))
            .ok_or(SourceError::NoUnit { unit: name })
    }

    fn comm_pids(&self, re: &regex::Regex) -> Vec<i32> {
        let Ok(entries) = fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        let mut out: Vec<i32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(stat) = fs::read_to_string(self.proc_root.join(format!("{pid}/stat")))
                else {
                    return false;
                };
                matches!(parse_stat(&stat), Some((comm, flags))
                    if flags & PF_KTHREAD == 0 && re.is_match(comm))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn memory(&self, path: &str) -> CgroupMemory {
        let dir = self.dir(path);
        CgroupMemory {
            max_bytes: read_limit(&dir.join("memory.max")),
            high_bytes: read_limit(&dir.join("memory.high")),
            current_bytes: read_limit(&dir.join("memory.current")),
            node_bytes: fs::read_to_string(dir.join("memory.numa_stat"))
                .map(|t| parse_numa_stat(&t))
                .unwrap_or_default(),
        }
    }

    fn memory_pressure(&self, path: &str) -> Result<f64, PressureError> {
        PsiFile::cgroup(&self.dir(path)).memory_some_avg10_pct()
    }
}

/// Command name and flags from `/proc/PID/stat` text (the name may hold spaces and
/// parentheses: it ends at the last `)`).
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After ") ": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    let flags = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(6)?
        .parse()
        .ok()?;
    Some((comm, flags))
}

#[cfg(test)]
pub mod fake {
    //! A [`ScopeSource`] over maps, for the watcher's and the planner's tests.
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct FakeSource {
        pub cgroups: Mutex<BTreeMap<String, Vec<i32>>>,
        pub units: Mutex<BTreeMap<String, String>>,
        pub comms: Mutex<BTreeMap<i32, String>>,
        pub memory: Mutex<BTreeMap<String, CgroupMemory>>,
        /// `memory.pressure` "some avg10" per cgroup (absent: unreadable).
        pub pressure: Mutex<BTreeMap<String, f64>>,
    }

    impl ScopeSource for FakeSource {
        fn cgroup_pids(&self, path: &str) -> Result<Vec<i32>, SourceError> {
            self.cgroups
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .ok_or(SourceError::NoCgroup {
                    path: path.into(),
                    dir: "/fake".into(),
                })
        }
        fn unit_cgroup(&self, unit: &str) -> Result<String, SourceError> {
            self.units
                .lock()
                .unwrap()
                .get(unit)
                .cloned()
                .ok_or(SourceError::NoUnit { unit: unit.into() })
        }
        fn comm_pids(&self, re: &regex::Regex) -> Vec<i32> {
            let c = self.comms.lock().unwrap();
            c.iter()
                .filter(|(_, n)| re.is_match(n))
                .map(|(p, _)| *p)
                .collect()
        }
        fn memory(&self, path: &str) -> CgroupMemory {
            self.memory
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .unwrap_or_default()
        }
        fn memory_pressure(&self, path: &str) -> Result<f64, PressureError> {
            self.pressure
                .lock()
                .unwrap()
                .get(path)
                .copied()
                .ok_or_else(|| PressureError::Parse {
                    path: path.into(),
                    text: String::new(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_tree_units_memory_and_comm_from_files() {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path().join("cg");
        let svc = cg.join("system.slice/vllm.service");
        fs::create_dir_all(svc.join("worker")).unwrap();
        fs::write(svc.join("cgroup.procs"), "10\n11\n").unwrap();
        fs::write(svc.join("worker/cgroup.procs"), "12\n").unwrap();
        fs::write(svc.join("memory.max"), "1073741824\n").unwrap();
        fs::write(svc.join("memory.high"), "max\n").unwrap();
        fs::write(svc.join("memory.current"), "1063741824\n").unwrap();
        fs::write(
            svc.join("memory.numa_stat"),
            "anon N0=4096 N1=8192\nfile N0=4096 N1=0\nkernel_stack N0=99\n",
        )
        .unwrap();
        let deep = cg.join("user.slice/user-1000.slice/user@1000.service/app.slice/x.service");
        fs::create_dir_all(&deep).unwrap();
        let proc_ = t.path().join("proc");
        for (pid, stat) in [
            (1, "1 (python3) S 0 1 1 0 -1 4194560 0"),
            (2, "2 (kthreadd) S 0 0 0 0 -1 2129984 0"),
            (3, "3 (py (x) y) S 0 1 1 0 -1 4194560 0"),
        ] {
            fs::create_dir_all(proc_.join(pid.to_string())).unwrap();
            fs::write(proc_.join(format!("{pid}/stat")), stat).unwrap();
        }
        let s = SysSource {
            cgroup_root: cg.clone(),
            proc_root: proc_,
        };
        assert_eq!(
            s.cgroup_pids("/system.slice/vllm.service").unwrap(),
            vec![10, 11, 12]
        );
        assert!(matches!(
            s.cgroup_pids("/system.slice/none.service"),
            Err(SourceError::NoCgroup { .. })
        ));
        assert_eq!(s.unit_cgroup("vllm").unwrap(), "/system.slice/vllm.service");
        assert_eq!(
            s.unit_cgroup("x.service").unwrap(),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service"
        );
        assert!(s.unit_cgroup("nope.service").is_err());
        let m = s.memory("/system.slice/vllm.service");
        assert_eq!(m.limit_bytes(), Some(1 << 30));
        assert_eq!(m.node_bytes, BTreeMap::from([(0, 8192), (1, 8192)]));
        assert!(m.near_limit(16 << 20));
        assert!(!m.near_limit(1 << 20));
        // memory.pressure through the PSI file reader; none yet is an error.
        assert!(s.memory_pressure("/system.slice/vllm.service").is_err());
        fs::write(
            svc.join("memory.pressure"),
            "some avg10=31.50 avg60=8.00 avg300=1.00 total=99\nfull avg10=2.00 avg60=0 avg300=0 total=1\n",
        )
        .unwrap();
        assert_eq!(
            s.memory_pressure("/system.slice/vllm.service").unwrap(),
            31.5
        );
        let re = regex::Regex::new("^py").unwrap();
        assert_eq!(s.comm_pids(&re), vec![1, 3]);
        let all = regex::Regex::new(".").unwrap();
        assert_eq!(s.comm_pids(&all), vec![1, 3], "kernel threads are left out");
    }
}
