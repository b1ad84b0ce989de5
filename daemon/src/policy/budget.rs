//! Per-scope fast-tier budgets: what [`super::plan_with_budgets`] honours before
//! priorities. A scope's `fast_budget` caps the bytes its processes hold on the fast
//! tier (the planner demotes the scope's coldest beyond it, whatever the free memory,
//! and promotes none past it); its `fast_min` is a guarantee (its hottest data up to
//! the minimum fits first, ahead of every priority, and is never a victim). A scope
//! whose cgroup is near `memory.high`/`memory.max` gets no promotions (`promote`).
//!
//! The fast tier is the upper nodes of the fastest tier. A percentage is of the fast
//! memory the planner shares out: what the managed processes hold there plus the free
//! memory above each node's demotion watermark (the kernel's and unmanaged processes'
//! memory is not tierd's to give), so `25%` and `75%` add up to all of it.

use super::{GranuleView, NodeState, ProcInput};
use crate::heat::flags;
use std::collections::HashMap;
use tierd_config::Amount;

/// One scope's limits as the tiering loop hands them to the planner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScopeBudget {
    pub fast_budget: Option<Amount>,
    pub fast_min: Option<Amount>,
    /// False while the scope's cgroup is near its memory limit: no promotions.
    pub promote: bool,
}

/// The scopes' budgets and which scope each managed process belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub scopes: Vec<ScopeBudget>,
    /// pid → index into `scopes`.
    pub of_pid: HashMap<i32, usize>,
}

/// The budgets in bytes for one plan, and what each scope holds on the fast tier.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolved {
    /// Upper nodes of the fastest tier.
    pub fast_nodes: Vec<u32>,
    pub max: Vec<Option<u64>>,
    pub min: Vec<u64>,
    pub promote: Vec<bool>,
    /// Bytes each scope holds on the fast tier, updated as moves are planned.
    pub fast: Vec<u64>,
}

impl Resolved {
    /// Resolves `b` against the fast memory of `nodes` (the demotion watermark of
    /// each node from `dwm`).
    pub fn new(
        b: &Budgets,
        procs: &[ProcInput],
        nodes: &[NodeState],
        dwm: impl Fn(&NodeState) -> u64,
    ) -> Resolved {
        let fastest = nodes
            .iter()
            .filter(|n| n.demote_to.is_some())
            .map(|n| n.tier)
            .min();
        let fast: Vec<&NodeState> = nodes
            .iter()
            .filter(|n| n.demote_to.is_some() && Some(n.tier) == fastest)
            .collect();
        let fast_nodes: Vec<u32> = fast.iter().map(|n| n.id).collect();
        let on_fast = |g: &GranuleView| fast_nodes.contains(&g.node) && g.flags & flags::FREE == 0;
        let managed: u64 = procs
            .iter()
            .flat_map(|p| p.granules.iter())
            .filter(|g| on_fast(g))
            .map(|g| g.bytes)
            .sum();
        let capacity = managed
            + fast
                .iter()
                .map(|n| n.free_bytes.saturating_sub(dwm(n)))
                .sum::<u64>();
        let mut held = vec![0u64; b.scopes.len()];
        for p in procs {
            if let Some(&s) = b.of_pid.get(&p.pid) {
                held[s] += p
                    .granules
                    .iter()
                    .filter(|g| on_fast(g))
                    .map(|g| g.bytes)
                    .sum::<u64>();
            }
        }
        let max: Vec<Option<u64>> = b
            .scopes
            .iter()
            .map(|s| s.fast_budget.map(|a| a.of(capacity)))
            .collect();
        let min = b
            .scopes
            .iter()
            .zip(&max)
            .map(|(s, m)| {
                let min = s.fast_min.map_or(0, |a| a.of(capacity));
                m.map_or(min, |m| min.min(m))
            })
            .collect();
        Resolved {
            fast_nodes,
            max,
            min,
            promote: b.scopes.iter().map(|s| s.promote).collect(),
            fast: held,
        }
    }

    pub fn is_fast(&self, node: u32) -> bool {
        self.fast_nodes.contains(&node)
    }

    /// Room left under scope `s`'s budget.
    pub fn room(&self, s: usize) -> u64 {
        self.max[s].map_or(u64::MAX, |m| m.saturating_sub(self.fast[s]))
    }
}
