//! Memory topology: NUMA nodes, their tiers and performance.
//!
//! Read once at start and again on reload (and for free memory, before every migration
//! batch) through the [`TopologySource`] trait, so the policy and the migration engine
//! can be tested on a fake machine. Tier ranks are the kernel's memory tiers
//! (`/sys/devices/virtual/memory_tiering/memory_tierN`) sorted by N: rank 0 is fastest,
//! unless `[topology] node_tier` overrides them ([`overlay`], laid over the source).

mod cpulist;
pub mod devices;
#[cfg(feature = "hwloc")]
pub mod hwloc;
pub mod overlay;
mod sysfs;

pub use cpulist::parse_cpulist;
pub use overlay::{TierOverlay, TierSource};
pub use sysfs::SysfsTopology;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot parse {what}: {text:?}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        text: String,
    },
    #[error("no NUMA node with memory found under {0}")]
    NoNodes(PathBuf),
    #[error("node {0} does not exist or has no memory")]
    NoSuchNode(u32),
    #[error("topology.node_tier: {0}")]
    Override(String),
}

/// HMAT access performance from the node's nearest initiator (`access0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Perf {
    pub read_latency_ns: Option<u64>,
    pub write_latency_ns: Option<u64>,
    pub read_bandwidth_mbps: Option<u64>,
    pub write_bandwidth_mbps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// The kernel's memory tier id (`memory_tier4` → 4), if the kernel has tiers.
    pub kernel_tier: Option<u32>,
    /// Rank among this machine's tiers, 0 fastest.
    pub tier: u32,
    /// Where `tier` came from: the kernel, or the `[topology] node_tier` override.
    pub tier_source: TierSource,
    pub perf: Perf,
    /// SLIT distances to every node id listed in `Topology::all_ids`, in order.
    pub distances: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Nodes with memory, by id.
    pub nodes: Vec<Node>,
    /// Ids of every online node (the columns of `Node::distances`).
    pub all_ids: Vec<u32>,
}

impl Topology {
    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Number of distinct tiers.
    pub fn tier_count(&self) -> u32 {
        self.nodes.iter().map(|n| n.tier + 1).max().unwrap_or(0)
    }

    /// More than one tier: tierd can move pages between them.
    pub fn is_tiered(&self) -> bool {
        self.tier_count() > 1
    }

    pub fn tier_of(&self, node: u32) -> Option<u32> {
        self.node(node).map(|n| n.tier)
    }

    pub fn nodes_in_tier(&self, tier: u32) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.tier == tier)
    }

    fn distance(&self, from: u32, to: u32) -> u32 {
        let col = self.all_ids.iter().position(|&i| i == to);
        self.node(from)
            .zip(col)
            .and_then(|(n, c)| n.distances.get(c).copied())
            .unwrap_or(u32::MAX)
    }

    /// The nearest node of the tier just below `node`'s (demotion target), if any.
    pub fn demotion_target(&self, node: u32) -> Option<u32> {
        let t = self.tier_of(node)?;
        self.nearest_in_tier(node, t + 1)
    }

    /// The nearest node of the tier just above `node`'s (promotion target), if any.
    pub fn promotion_target(&self, node: u32) -> Option<u32> {
        let t = self.tier_of(node)?;
        t.checked_sub(1)
            .and_then(|up| self.nearest_in_tier(node, up))
    }

    /// Nearest node (by SLIT distance) in `tier`, seen from `from`.
    pub fn nearest_in_tier(&self, from: u32, tier: u32) -> Option<u32> {
        self.nodes_in_tier(tier)
            .min_by_key(|n| (self.distance(from, n.id), n.id))
            .map(|n| n.id)
    }

    /// Checks that a node exists and has memory.
    pub fn check_node(&self, id: u32) -> Result<&Node, TopologyError> {
        self.node(id)
            .filter(|n| n.total_bytes > 0)
            .ok_or(TopologyError::NoSuchNode(id))
    }
}

/// Where topology and free memory come from (sysfs, or a fake in tests).
pub trait TopologySource: Send + Sync {
    fn read(&self) -> Result<Topology, TopologyError>;
    /// Free bytes on a node now (read before every migration batch).
    fn free_bytes(&self, node: u32) -> Result<u64, TopologyError>;
}

#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A machine in memory: node id → (cpus, total, free, tier).
    pub struct FakeTopology {
        pub topo: Topology,
        pub free: Mutex<BTreeMap<u32, u64>>,
    }

    impl FakeTopology {
        /// `spec`: (id, cpus, total_bytes, tier) per node; free starts at total.
        pub fn new(spec: &[(u32, &[u32], u64, u32)]) -> FakeTopology {
            let all_ids: Vec<u32> = spec.iter().map(|s| s.0).collect();
            let nodes = spec
                .iter()
                .map(|&(id, cpus, total, tier)| Node {
                    id,
                    cpus: cpus.to_vec(),
                    total_bytes: total,
                    free_bytes: total,
                    kernel_tier: Some(4 * (tier + 1)),
                    tier,
                    tier_source: TierSource::Kernel,
                    perf: Perf::default(),
                    distances: all_ids
                        .iter()
                        .map(|&o| if o == id { 10 } else { 20 })
                        .collect(),
                })
                .collect();
            let free = spec.iter().map(|s| (s.0, s.2)).collect();
            FakeTopology {
                topo: Topology { nodes, all_ids },
                free: Mutex::new(free),
            }
        }
    }

    impl TopologySource for FakeTopology {
        fn read(&self) -> Result<Topology, TopologyError> {
            let mut t = self.topo.clone();
            let free = self.free.lock().unwrap();
            for n in &mut t.nodes {
                n.free_bytes = free[&n.id];
            }
            Ok(t)
        }
        fn free_bytes(&self, node: u32) -> Result<u64, TopologyError> {
            self.free
                .lock()
                .unwrap()
                .get(&node)
                .copied()
                .ok_or(TopologyError::NoSuchNode(node))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeTopology;
    use super::*;

    #[test]
    fn three_tiers_demote_and_promote_one_step() {
        let f = FakeTopology::new(&[
            (0, &[0, 1], 1 << 30, 0),
            (1, &[], 4 << 30, 1),
            (2, &[], 8 << 30, 2),
        ]);
        let t = f.read().unwrap();
        assert_eq!(t.tier_count(), 3);
        assert_eq!(t.demotion_target(0), Some(1));
        assert_eq!(t.demotion_target(1), Some(2));
        assert_eq!(t.demotion_target(2), None);
        assert_eq!(t.promotion_target(2), Some(1));
        assert_eq!(t.promotion_target(0), None);
        assert!(t.check_node(7).is_err());
    }
}
