//! The `[topology] node_tier` override, laid over another [`TopologySource`].
//!
//! Every reader of the topology (the daemon's copy, `tierctl tiers`, the migration
//! engine) goes through this one source, so a node's tier is the same everywhere. The
//! override is checked against the machine when it is set (start and config reload, by
//! `Daemon`); a read that no longer fits it (a node went away) is an error naming the node.

use super::{Topology, TopologyError, TopologySource};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Where a node's tier rank came from (`tierctl tiers` shows it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TierSource {
    /// The kernel's memory tiers (or, without them, its default: CPU-less nodes lower).
    #[default]
    Kernel,
    /// `[topology] node_tier` in the config.
    Override,
}

impl TierSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TierSource::Kernel => "kernel",
            TierSource::Override => "override",
        }
    }
}

pub struct TierOverlay {
    inner: Arc<dyn TopologySource>,
    node_tier: RwLock<Arc<BTreeMap<u32, u32>>>,
}

impl TierOverlay {
    /// An overlay with no override in force (call [`TierOverlay::set`] to add one).
    pub fn new(inner: Arc<dyn TopologySource>) -> TierOverlay {
        TierOverlay {
            inner,
            node_tier: RwLock::new(Arc::default()),
        }
    }

    /// Checks `node_tier` against the machine as it is now and puts it in force; on
    /// error the override in force stays. An empty map means the kernel's tiers.
    pub fn set(&self, node_tier: BTreeMap<u32, u32>) -> Result<(), TopologyError> {
        let mut t = self.inner.read()?;
        apply(&mut t, &node_tier)?;
        *self.node_tier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(node_tier);
        Ok(())
    }

    fn current(&self) -> Arc<BTreeMap<u32, u32>> {
        self.node_tier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl TopologySource for TierOverlay {
    fn read(&self) -> Result<Topology, TopologyError> {
        let mut t = self.inner.read()?;
        apply(&mut t, &self.current())?;
        Ok(t)
    }

    fn free_bytes(&self, node: u32) -> Result<u64, TopologyError> {
        self.inner.free_bytes(node)
    }
}

/// Replaces the tier ranks of `t` by `node_tier` (node → rank). Every node with memory
/// must be listed and every listed node must have memory; ranks without gaps are the
/// config's check.
pub fn apply(t: &mut Topology, node_tier: &BTreeMap<u32, u32>) -> Result<(), TopologyError> {
    if node_tier.is_empty() {
        return Ok(());
    }
    let with_memory: Vec<u32> = t.nodes.iter().map(|n| n.id).collect();
    if let Some(&id) = node_tier.keys().find(|id| !with_memory.contains(id)) {
        return Err(TopologyError::Override(format!(
            "node {id} does not exist or has no memory (nodes with memory: {with_memory:?})"
        )));
    }
    if let Some(id) = with_memory.iter().find(|id| !node_tier.contains_key(id)) {
        return Err(TopologyError::Override(format!(
            "node {id} has memory but is not listed: list every node ({with_memory:?})"
        )));
    }
    for n in &mut t.nodes {
        n.tier = node_tier[&n.id];
        n.tier_source = TierSource::Override;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fake::FakeTopology;

    /// The no-HMAT machine: two nodes the kernel put in one tier.
    fn one_tier() -> Arc<FakeTopology> {
        Arc::new(FakeTopology::new(&[
            (0, &[0, 1], 1 << 30, 0),
            (1, &[], 4 << 30, 0),
        ]))
    }

    #[test]
    fn override_tiers_a_one_tier_machine() {
        let o = TierOverlay::new(one_tier());
        let t = o.read().unwrap();
        assert!(!t.is_tiered());
        assert_eq!(t.nodes[1].tier_source, TierSource::Kernel);
        o.set(BTreeMap::from([(0, 0), (1, 1)])).unwrap();
        let t = o.read().unwrap();
        assert!(t.is_tiered());
        assert_eq!((t.nodes[0].tier, t.nodes[1].tier), (0, 1));
        assert_eq!(t.nodes[1].tier_source, TierSource::Override);
        assert_eq!(t.demotion_target(0), Some(1));
        o.set(BTreeMap::new()).unwrap();
        assert!(
            !o.read().unwrap().is_tiered(),
            "an empty override is the kernel's tiers"
        );
    }

    #[test]
    fn unknown_or_missing_nodes_are_refused_and_the_old_override_stays() {
        let o = TierOverlay::new(one_tier());
        o.set(BTreeMap::from([(0, 0), (1, 1)])).unwrap();
        let e = o.set(BTreeMap::from([(0, 0), (1, 1), (5, 1)])).unwrap_err();
        assert!(e.to_string().contains("node 5 does not exist"), "{e}");
        let e = o.set(BTreeMap::from([(0, 0)])).unwrap_err();
        assert!(
            e.to_string()
                .contains("node 1 has memory but is not listed"),
            "{e}"
        );
        assert!(o.read().unwrap().is_tiered(), "the override in force stays");
    }
}
