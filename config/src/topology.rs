//! `[topology]`: corrections to what the kernel says about the machine.
//!
//! `node_tier` ranks NUMA nodes by hand (node → tier rank, 0 fastest) for machines whose
//! firmware gives the kernel no HMAT/CDAT, so it puts every node in one memory tier.
//! Only the shape is checked here (node ids, ranks without gaps); whether the nodes
//! exist is checked by the daemon against the machine, at start and on reload.

use crate::Invalid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologyConfig {
    /// Node id → tier rank (0 fastest), e.g. `{ 0 = 0, 1 = 1 }`. Empty: the kernel's
    /// tiers. When set, every node with memory must be listed. TOML keys are strings,
    /// so the ids are kept as written and parsed by [`TopologyConfig::node_tiers`].
    pub node_tier: BTreeMap<String, u32>,
}

impl TopologyConfig {
    /// The override as node id → rank (empty when not set). Call after `validate`;
    /// keys that are not node ids are left out.
    pub fn node_tiers(&self) -> BTreeMap<u32, u32> {
        self.node_tier
            .iter()
            .filter_map(|(k, &v)| Some((k.trim().parse().ok()?, v)))
            .collect()
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        const KEY: &str = "topology.node_tier";
        for k in self.node_tier.keys() {
            if k.trim().parse::<u32>().is_err() {
                return Err(Invalid::new(
                    KEY,
                    format!("{k:?} is not a NUMA node id (write node = rank, e.g. 1 = 1)"),
                ));
            }
        }
        let mut ranks: Vec<u32> = self.node_tier.values().copied().collect();
        ranks.sort_unstable();
        ranks.dedup();
        if let Some(missing) = (0..).zip(&ranks).find(|(i, r)| *i != **r).map(|(i, _)| i) {
            return Err(Invalid::new(
                KEY,
                format!("tier ranks must run from 0 without gaps; ranks {ranks:?} miss {missing}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::collections::BTreeMap;
    use std::path::Path;

    #[test]
    fn node_tier_parses_as_the_issue_writes_it() {
        let c =
            Config::parse("[topology]\nnode_tier = { 0 = 0, 1 = 1 }\n", Path::new("c")).unwrap();
        assert_eq!(c.topology.node_tiers(), BTreeMap::from([(0, 0), (1, 1)]));
        assert!(Config::default().topology.node_tiers().is_empty());
    }

    #[test]
    fn gaps_and_bad_ids_are_refused_with_the_line() {
        let msg = Config::parse("[topology]\nnode_tier = { 0 = 0, 1 = 2 }\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("c:2: topology.node_tier:") && msg.contains("miss 1"),
            "{msg}"
        );
        let msg = Config::parse("[topology]\nnode_tier = { 0 = 1 }\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("miss 0"), "{msg}");
        let msg = Config::parse("[topology]\nnode_tier = { fast = 0 }\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"fast\" is not a NUMA node id"), "{msg}");
    }
}
