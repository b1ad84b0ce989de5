//! The sysfs-style state tree under `daemon.state_dir` (`/run/tierd`): one value per
//! file, so shell scripts and node exporters read tierd with `cat`.
//!
//! ```text
//! version  mode  mode_reason  config_generation  metrics_address
//! tiers/N/{nodes,total_bytes,free_bytes}
//! nodes/N/{tier,cpus,total_bytes,free_bytes}
//! procs/PID/{comm,policy,priority,fast_bytes,slow_bytes,promoted,demoted,pingpong}
//! procs/PID/scope                         (only for processes a scope manages)
//! scopes/NAME/{kind,selector,origin,policy,priority,pids,fast_bytes}
//! scopes/NAME/psi_rate_factor
//! scopes/NAME/{fast_budget_bytes,fast_min_bytes,cgroup,gpu,gpu_nodes}   (when set)
//! clients/count
//! moves/FROM-TO/CAUSE/{pages,bytes}      (tier ranks; what tierd moved since start)
//! kernel_vmstat/COUNTER                  (/proc/vmstat growth since start)
//! ```
//!
//! Cadence: rewritten about once a second by the `tierd-ops` thread ([`super::start`])
//! from the same [`Snapshot`] types `tierctl status`/`tiers` return. Every file is
//! written to a temporary name and renamed, so a reader never sees half a value; a
//! file whose value did not change is left alone; directories of processes, nodes and
//! tiers that are gone are removed. The root is injectable, so tests use a tempdir.
//! Lists (`nodes`, `cpus`) use the kernel's cpulist format (`0-3,8`); `pids` is one pid
//! per line. A scope's NAME has `%` and `/` escaped as `%25` and `%2F`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tierd_api::{ManagedProc, MoveCount, NodeInfo, ScopeStatus};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the tree shows at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: String,
    pub mode: String,
    pub mode_reason: String,
    pub config_generation: u64,
    /// The metrics endpoint's bound address, when it runs.
    pub metrics_address: Option<String>,
    pub nodes: Vec<NodeInfo>,
    pub procs: Vec<ManagedProc>,
    pub clients: u64,
    pub moves: Vec<MoveCount>,
    pub kernel_vmstat: BTreeMap<String, u64>,
    pub scopes: Vec<ScopeStatus>,
}

/// The tree rooted at one directory.
#[derive(Debug, Clone)]
pub struct StateTree {
    root: PathBuf,
}

impl StateTree {
    pub fn new(root: impl Into<PathBuf>) -> StateTree {
        StateTree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Brings the tree in line with `s`.
    pub fn write(&self, s: &Snapshot) -> Result<(), TreeError> {
        let r = &self.root;
        put(&r.join("version"), &s.version)?;
        put(&r.join("mode"), &s.mode)?;
        put(&r.join("mode_reason"), &s.mode_reason)?;
        put(
            &r.join("config_generation"),
            &s.config_generation.to_string(),
        )?;
        match &s.metrics_address {
            Some(a) => put(&r.join("metrics_address"), a)?,
            None => remove_file(&r.join("metrics_address"))?,
        }
        put(&r.join("clients/count"), &s.clients.to_string())?;

        let mut tiers: std::collections::BTreeMap<u32, (Vec<u32>, u64, u64)> = Default::default();
        for n in &s.nodes {
            let d = r.join("nodes").join(n.node.to_string());
            put(&d.join("tier"), &n.tier.to_string())?;
            put(&d.join("cpus"), &list(&n.cpus))?;
            put(&d.join("total_bytes"), &n.total_bytes.to_string())?;
            put(&d.join("free_bytes"), &n.free_bytes.to_string())?;
            let t = tiers.entry(n.tier).or_default();
            t.0.push(n.node);
            t.1 += n.total_bytes;
            t.2 += n.free_bytes;
        }
        for (tier, (nodes, total, free)) in &tiers {
            let d = r.join("tiers").join(tier.to_string());
            put(&d.join("nodes"), &list(nodes))?;
            put(&d.join("total_bytes"), &total.to_string())?;
            put(&d.join("free_bytes"), &free.to_string())?;
        }
        for p in &s.procs {
            let d = r.join("procs").join(p.pid.to_string());
            put(&d.join("comm"), &p.comm)?;
            put(&d.join("policy"), &p.policy)?;
            put(&d.join("priority"), &p.priority.to_string())?;
            put(&d.join("fast_bytes"), &p.fast_bytes.to_string())?;
            put(&d.join("slow_bytes"), &p.slow_bytes.to_string())?;
            put(&d.join("promoted"), &p.promoted_pages.to_string())?;
            put(&d.join("demoted"), &p.demoted_pages.to_string())?;
            put(&d.join("pingpong"), &p.pingpong_pages.to_string())?;
            opt_put(&d.join("scope"), p.scope.as_deref())?;
        }
        for c in &s.scopes {
            let d = r.join("scopes").join(scope_dir(&c.name));
            put(&d.join("kind"), &c.kind)?;
            put(&d.join("selector"), &c.selector)?;
            put(&d.join("origin"), &c.origin)?;
            put(&d.join("policy"), &c.policy)?;
            put(&d.join("priority"), &c.priority.to_string())?;
            let pids: Vec<String> = c.pids.iter().map(i32::to_string).collect();
            put(&d.join("pids"), &pids.join("\n"))?;
            put(&d.join("fast_bytes"), &c.fast_bytes.to_string())?;
            let budget = c.fast_budget_bytes.map(|b| b.to_string());
            opt_put(&d.join("fast_budget_bytes"), budget.as_deref())?;
            let min = c.fast_min_bytes.map(|b| b.to_string());
            opt_put(&d.join("fast_min_bytes"), min.as_deref())?;
            opt_put(&d.join("cgroup"), c.cgroup.as_deref())?;
            opt_put(&d.join("gpu"), c.gpu.as_deref())?;
            let near: Vec<String> = c.gpu_nodes.iter().map(u32::to_string).collect();
            opt_put(
                &d.join("gpu_nodes"),
                (!near.is_empty()).then(|| near.join("\n")).as_deref(),
            )?;
            put(&d.join("psi_rate_factor"), &c.psi_rate_factor.to_string())?;
            let cg_fast = c.cgroup_fast_bytes.map(|b| b.to_string());
            opt_put(&d.join("cgroup_fast_bytes"), cg_fast.as_deref())?;
            let per_node: Vec<String> = c
                .cgroup_node_bytes
                .iter()
                .map(|(n, b)| format!("{n} {b}"))
                .collect();
            opt_put(
                &d.join("cgroup_node_bytes"),
                (!per_node.is_empty())
                    .then(|| per_node.join("\n"))
                    .as_deref(),
            )?;
        }
        prune(
            &r.join("scopes"),
            s.scopes.iter().map(|c| scope_dir(&c.name)),
        )?;
        prune(&r.join("nodes"), s.nodes.iter().map(|n| n.node.to_string()))?;
        prune(&r.join("tiers"), tiers.keys().map(|t| t.to_string()))?;
        prune(&r.join("procs"), s.procs.iter().map(|p| p.pid.to_string()))?;
        for m in &s.moves {
            let d = r
                .join("moves")
                .join(format!("{}-{}", m.from_tier, m.to_tier))
                .join(m.cause.as_str());
            put(&d.join("pages"), &m.pages.to_string())?;
            put(&d.join("bytes"), &m.bytes.to_string())?;
        }
        for (k, v) in &s.kernel_vmstat {
            put(&r.join("kernel_vmstat").join(k), &v.to_string())?;
        }
        Ok(())
    }

    /// Removes everything [`write`](Self::write) creates (on shutdown), leaving the
    /// sockets that share the directory alone.
    pub fn clear(&self) -> Result<(), TreeError> {
        for d in [
            "tiers",
            "nodes",
            "procs",
            "clients",
            "moves",
            "kernel_vmstat",
            "scopes",
        ] {
            let p = self.root.join(d);
            match fs::remove_dir_all(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
                _ => {}
            }
        }
        for f in [
            "version",
            "mode",
            "mode_reason",
            "config_generation",
            "metrics_address",
        ] {
            remove_file(&self.root.join(f))?;
        }
        Ok(())
    }
}

/// Writes `value` + newline to `path` atomically ([`crate::persist::write_atomic`]),
/// unless the file already holds exactly that.
fn put(path: &Path, value: &str) -> Result<(), TreeError> {
    let text = format!("{value}\n");
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    crate::persist::write_atomic(path, text.as_bytes()).map_err(|e| match e {
        crate::persist::PersistError::Io { path, source } => TreeError::Io { path, source },
        other => TreeError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    })
}

/// Writes `value`, or removes the file when there is none.
fn opt_put(path: &Path, value: Option<&str>) -> Result<(), TreeError> {
    match value {
        Some(v) => put(path, v),
        None => remove_file(path),
    }
}

/// A scope's directory name: its name with `%` and `/` escaped.
pub fn scope_dir(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn remove_file(path: &Path) -> Result<(), TreeError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Removes the entries of `dir` whose names are not in `keep`.
fn prune(dir: &Path, keep: impl Iterator<Item = String>) -> Result<(), TreeError> {
    let keep: BTreeSet<String> = keep.collect();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(dir))?;
        if !keep.contains(&*e.file_name().to_string_lossy()) {
            let p = e.path();
            fs::remove_dir_all(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

/// The kernel's list format: sorted, runs collapsed (`0-3,8`); empty for no items.
pub fn list(items: &[u32]) -> String {
    let mut v = items.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, tier: u32, cpus: Vec<u32>) -> NodeInfo {
        NodeInfo {
            tier_source: "kernel".into(),
            devices: vec![],
            node: id,
            tier,
            memory_tier: None,
            cpus,
            total_bytes: 1000 + id as u64,
            free_bytes: 500,
            read_latency_ns: None,
            read_bandwidth_mbps: None,
            write_latency_ns: None,
            write_bandwidth_mbps: None,
            distances: vec![],
        }
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn list_format() {
        assert_eq!(list(&[3, 0, 1, 2, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(list(&[5]), "5");
        assert_eq!(list(&[]), "");
    }

    #[test]
    fn writes_values_and_prunes_stale_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("tierd.sock"), "").unwrap();
        let tree = StateTree::new(root);
        let mut s = Snapshot {
            version: "0.1.0".into(),
            mode: "tiering".into(),
            nodes: vec![
                node(0, 0, vec![0, 1]),
                node(1, 1, vec![]),
                node(2, 1, vec![]),
            ],
            procs: vec![
                ManagedProc {
                    pid: 7,
                    policy: "tpp".into(),
                    fast_bytes: 4096,
                    promoted_pages: 3,
                    ..Default::default()
                },
                ManagedProc {
                    pid: 9,
                    policy: "off".into(),
                    ..Default::default()
                },
            ],
            clients: 2,
            metrics_address: Some("127.0.0.1:9464".into()),
            moves: vec![MoveCount {
                from_tier: 0,
                to_tier: 1,
                cause: tierd_api::MoveCause::Headroom,
                pages: 3,
                bytes: 3 * 4096,
            }],
            kernel_vmstat: BTreeMap::from([("pgmigrate_success".to_string(), 5)]),
            scopes: vec![ScopeStatus {
                name: "cgroup:/a/b".into(),
                kind: "cgroup".into(),
                selector: "/a/b".into(),
                pids: vec![7, 8],
                fast_budget_bytes: Some(4096),
                cgroup_node_bytes: BTreeMap::from([(0, 8192), (1, 4096)]),
                cgroup_fast_bytes: Some(8192),
                ..Default::default()
            }],
            ..Default::default()
        };
        s.procs[0].scope = Some("cgroup:/a/b".into());
        tree.write(&s).unwrap();
        assert_eq!(read(root, "scopes/cgroup:%2Fa%2Fb/pids"), "7\n8\n");
        assert_eq!(
            read(root, "scopes/cgroup:%2Fa%2Fb/fast_budget_bytes"),
            "4096\n"
        );
        assert!(!root.join("scopes/cgroup:%2Fa%2Fb/fast_min_bytes").exists());
        assert_eq!(
            read(root, "scopes/cgroup:%2Fa%2Fb/cgroup_node_bytes"),
            "0 8192\n1 4096\n"
        );
        assert_eq!(
            read(root, "scopes/cgroup:%2Fa%2Fb/cgroup_fast_bytes"),
            "8192\n"
        );
        assert_eq!(read(root, "procs/7/scope"), "cgroup:/a/b\n");
        assert!(!root.join("procs/9/scope").exists());
        assert_eq!(read(root, "mode"), "tiering\n");
        assert_eq!(read(root, "tiers/1/nodes"), "1-2\n");
        assert_eq!(read(root, "tiers/1/total_bytes"), "2003\n");
        assert_eq!(read(root, "tiers/0/free_bytes"), "500\n");
        assert_eq!(read(root, "nodes/0/cpus"), "0-1\n");
        assert_eq!(read(root, "nodes/2/tier"), "1\n");
        assert_eq!(read(root, "procs/7/policy"), "tpp\n");
        assert_eq!(read(root, "procs/7/fast_bytes"), "4096\n");
        assert_eq!(read(root, "procs/7/promoted"), "3\n");
        assert_eq!(read(root, "clients/count"), "2\n");
        assert_eq!(read(root, "metrics_address"), "127.0.0.1:9464\n");
        assert_eq!(read(root, "moves/0-1/headroom/pages"), "3\n");
        assert_eq!(read(root, "moves/0-1/headroom/bytes"), "12288\n");
        assert_eq!(read(root, "kernel_vmstat/pgmigrate_success"), "5\n");

        // Process 9 exits, node 2 goes away, metrics stop.
        s.procs.truncate(1);
        s.nodes.truncate(2);
        s.metrics_address = None;
        s.procs[0].fast_bytes = 8192;
        tree.write(&s).unwrap();
        assert!(!root.join("procs/9").exists());
        assert!(!root.join("nodes/2").exists());
        assert!(!root.join("metrics_address").exists());
        assert_eq!(read(root, "tiers/1/nodes"), "1\n");
        assert_eq!(read(root, "procs/7/fast_bytes"), "8192\n");
        let leftovers: Vec<_> = walk(root)
            .into_iter()
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

        tree.clear().unwrap();
        assert!(!root.join("procs").exists() && !root.join("mode").exists());
        assert!(!root.join("moves").exists() && !root.join("kernel_vmstat").exists());
        assert!(
            root.join("tierd.sock").exists(),
            "clear leaves sockets alone"
        );
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            out.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }
}
