//! Topology from sysfs, under an injectable root (`/` in production, a tempdir in tests).

use super::{parse_cpulist, Node, Perf, TierSource, Topology, TopologyError, TopologySource};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct SysfsTopology {
    root: PathBuf,
}

impl Default for SysfsTopology {
    fn default() -> Self {
        SysfsTopology::new("/")
    }
}

impl SysfsTopology {
    pub fn new(root: impl Into<PathBuf>) -> SysfsTopology {
        SysfsTopology { root: root.into() }
    }

    fn node_dir(&self) -> PathBuf {
        self.root.join("sys/devices/system/node")
    }

    fn tiering_dir(&self) -> PathBuf {
        self.root.join("sys/devices/virtual/memory_tiering")
    }

    /// Kernel tier id of each node, from `memory_tierN/nodelist`.
    fn kernel_tiers(&self) -> Result<BTreeMap<u32, u32>, TopologyError> {
        let dir = self.tiering_dir();
        let mut map = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(map);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("memory_tier")
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            let path = e.path().join("nodelist");
            for node in read_list(&path, "nodelist")? {
                map.insert(node, id);
            }
        }
        Ok(map)
    }

    fn read_node(&self, id: u32) -> Result<Node, TopologyError> {
        let dir = self.node_dir().join(format!("node{id}"));
        let cpus = read_list(&dir.join("cpulist"), "cpulist")?;
        let (total_bytes, free_bytes) = read_meminfo(&dir.join("meminfo"))?;
        let distances = read_numbers(&dir.join("distance"), "distance")?;
        let init = dir.join("access0/initiators");
        let perf = Perf {
            read_latency_ns: read_opt(&init.join("read_latency")),
            write_latency_ns: read_opt(&init.join("write_latency")),
            read_bandwidth_mbps: read_opt(&init.join("read_bandwidth")),
            write_bandwidth_mbps: read_opt(&init.join("write_bandwidth")),
        };
        Ok(Node {
            id,
            cpus,
            total_bytes,
            free_bytes,
            kernel_tier: None,
            tier: 0,
            tier_source: TierSource::Kernel,
            perf,
            distances,
        })
    }
}

impl TopologySource for SysfsTopology {
    fn read(&self) -> Result<Topology, TopologyError> {
        let nd = self.node_dir();
        let all_ids = read_list(&nd.join("online"), "online")?;
        let with_mem = read_list(&nd.join("has_memory"), "has_memory")?;
        if with_mem.is_empty() {
            return Err(TopologyError::NoNodes(nd));
        }
        let ktiers = self.kernel_tiers()?;
        let mut nodes = with_mem
            .iter()
            .map(|&id| self.read_node(id))
            .collect::<Result<Vec<_>, _>>()?;
        for n in &mut nodes {
            n.kernel_tier = ktiers.get(&n.id).copied();
        }
        rank_tiers(&mut nodes);
        Ok(Topology { nodes, all_ids })
    }

    fn free_bytes(&self, node: u32) -> Result<u64, TopologyError> {
        let path = self.node_dir().join(format!("node{node}/meminfo"));
        if !path.exists() {
            return Err(TopologyError::NoSuchNode(node));
        }
        read_meminfo(&path).map(|(_, free)| free)
    }
}

/// Ranks nodes by kernel tier id (lower id = faster). Without kernel tiers, nodes with
/// CPUs form tier 0 and CPU-less nodes tier 1, the kernel's own default.
fn rank_tiers(nodes: &mut [Node]) {
    let key = |n: &Node| match n.kernel_tier {
        Some(t) => t,
        None if n.cpus.is_empty() => u32::MAX,
        None => u32::MAX - 1,
    };
    let mut keys: Vec<u32> = nodes.iter().map(key).collect();
    keys.sort_unstable();
    keys.dedup();
    for n in nodes.iter_mut() {
        let k = key(n);
        n.tier = keys.iter().position(|&x| x == k).unwrap_or(0) as u32;
    }
}

fn read_text(path: &Path) -> Result<String, TopologyError> {
    std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_list(path: &Path, what: &'static str) -> Result<Vec<u32>, TopologyError> {
    let text = read_text(path)?;
    parse_cpulist(&text).ok_or_else(|| TopologyError::Parse {
        path: path.to_path_buf(),
        what,
        text,
    })
}

fn read_numbers(path: &Path, what: &'static str) -> Result<Vec<u32>, TopologyError> {
    let text = read_text(path)?;
    text.split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| TopologyError::Parse {
            path: path.to_path_buf(),
            what,
            text: text.clone(),
        })
}

fn read_opt(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `(MemTotal, MemFree)` in bytes from a node's meminfo (`Node 0 MemTotal: 123 kB`).
fn read_meminfo(path: &Path) -> Result<(u64, u64), TopologyError> {
    let text = read_text(path)?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace().skip(2);
            (w.next()? == name).then(|| w.next()?.parse::<u64>().ok())?
        })
    };
    match (field("MemTotal:"), field("MemFree:")) {
        (Some(t), Some(f)) => Ok((t * 1024, f * 1024)),
        _ => Err(TopologyError::Parse {
            path: path.to_path_buf(),
            what: "meminfo",
            text: text.lines().take(3).collect::<Vec<_>>().join("\\n"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn fake_node(root: &Path, id: u32, cpus: &str, total_kb: u64, free_kb: u64, dist: &str) {
        let d = format!("sys/devices/system/node/node{id}");
        write(root, &format!("{d}/cpulist"), &format!("{cpus}\n"));
        write(
            root,
            &format!("{d}/meminfo"),
            &format!("Node {id} MemTotal:  {total_kb} kB\nNode {id} MemFree:   {free_kb} kB\nNode {id} MemUsed: 1 kB\n"),
        );
        write(root, &format!("{d}/distance"), &format!("{dist}\n"));
    }

    /// The VM testbed's shape: node0 with CPUs, node1 CPU-less in memory_tier22.
    fn two_tier(root: &Path) {
        write(root, "sys/devices/system/node/online", "0-1\n");
        write(root, "sys/devices/system/node/has_memory", "0-1\n");
        fake_node(root, 0, "0-1", 524288, 400000, "10 20");
        fake_node(root, 1, "", 1572864, 1500000, "20 10");
        let i1 = "sys/devices/system/node/node1/access0/initiators";
        write(root, &format!("{i1}/read_latency"), "30\n");
        write(root, &format!("{i1}/read_bandwidth"), "2048\n");
        write(
            root,
            "sys/devices/virtual/memory_tiering/memory_tier4/nodelist",
            "0\n",
        );
        write(
            root,
            "sys/devices/virtual/memory_tiering/memory_tier22/nodelist",
            "1\n",
        );
    }

    #[test]
    fn two_tier_machine() {
        let dir = tempfile::tempdir().unwrap();
        two_tier(dir.path());
        let src = SysfsTopology::new(dir.path());
        let t = src.read().unwrap();
        assert_eq!(t.nodes.len(), 2);
        let (n0, n1) = (&t.nodes[0], &t.nodes[1]);
        assert_eq!(
            (n0.tier, n0.kernel_tier, n0.cpus.clone()),
            (0, Some(4), vec![0, 1])
        );
        assert_eq!((n1.tier, n1.kernel_tier, n1.cpus.len()), (1, Some(22), 0));
        assert_eq!(n1.total_bytes, 1572864 * 1024);
        assert_eq!(n1.perf.read_latency_ns, Some(30));
        assert_eq!(n0.perf.read_latency_ns, None);
        assert_eq!(t.demotion_target(0), Some(1));
        assert_eq!(src.free_bytes(1).unwrap(), 1500000 * 1024);
        assert!(matches!(
            src.free_bytes(5),
            Err(TopologyError::NoSuchNode(5))
        ));
    }

    #[test]
    fn one_node_is_one_tier() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "sys/devices/system/node/online", "0\n");
        write(r, "sys/devices/system/node/has_memory", "0\n");
        fake_node(r, 0, "0-1", 1000, 500, "10");
        let t = SysfsTopology::new(r).read().unwrap();
        assert_eq!(t.tier_count(), 1);
        assert!(!t.is_tiered());
    }

    #[test]
    fn no_tiering_dir_ranks_cpuless_nodes_lower() {
        let dir = tempfile::tempdir().unwrap();
        two_tier(dir.path());
        fs::remove_dir_all(dir.path().join("sys/devices/virtual")).unwrap();
        let t = SysfsTopology::new(dir.path()).read().unwrap();
        assert_eq!((t.nodes[0].tier, t.nodes[1].tier), (0, 1));
        assert_eq!(t.nodes[1].kernel_tier, None);
    }

    #[test]
    fn garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        two_tier(dir.path());
        write(dir.path(), "sys/devices/system/node/node1/cpulist", "zz\n");
        let err = SysfsTopology::new(dir.path())
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node1/cpulist") && err.contains("cpulist"),
            "{err}"
        );
    }
}
