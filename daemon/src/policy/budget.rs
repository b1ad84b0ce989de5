//! Per-scope fast-tier budgets: what [`super::plan_with_budgets`] honours before
//! priorities. A scope's `fast_budget` caps the bytes its processes hold on the fast
//! tier (the planner demotes the scope's coldest beyond it, whatever the free memory,
//! and promotes none past it); its `fast_min` is a guarantee (its hottest data up to
//! the minimum fits first, ahead of every priority, and is never a victim). A scope
//! whose cgroup is near `memory.high`/`memory.max` gets no promotions (`promote`), and
//! one whose cgroup is under memory pressure gets a share of each plan's promotion
//! bytes (`promote_factor`, its PSI backoff: [`crate::scope::ScopePsi`]).
//!
//! The fast tier is the upper nodes of the fastest tier; for a scope that names its GPU
//! it is the fast node(s) near that GPU (`fast_nodes`): its data is promoted there (and
//! moved there from the other fast nodes when it fits), never promoted to the other
//! fast nodes, where it never fits (it is the first to go when they need room). A
//! percentage is of the fast memory the planner shares out on the scope's fast nodes:
//! what the managed processes hold there plus the free memory above each node's
//! demotion watermark (the kernel's and unmanaged processes' memory is not tierd's to
//! give), so `25%` and `75%` add up to all of it; only bytes on those nodes count
//! against the budget.

use super::{GranuleView, NodeState, ProcInput};
use crate::heat::flags;
use std::collections::HashMap;
use tierd_config::Amount;

/// One scope's limits as the tiering loop hands them to the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeBudget {
    pub fast_budget: Option<Amount>,
    pub fast_min: Option<Amount>,
    /// False while the scope's cgroup is near its memory limit: no promotions.
    pub promote: bool,
    /// The share of each plan's promotion bytes the scope may use (its PSI backoff;
    /// 1: no limit of its own).
    pub promote_factor: f64,
    /// The fast nodes near the scope's GPU: its fast tier (empty: the whole fast tier).
    pub fast_nodes: Vec<u32>,
}

impl Default for ScopeBudget {
    fn default() -> Self {
        ScopeBudget {
            fast_budget: None,
            fast_min: None,
            promote: true,
            promote_factor: 1.0,
            fast_nodes: Vec::new(),
        }
    }
}

/// The scopes' budgets and which scope each managed process belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub scopes: Vec<ScopeBudget>,
    /// pid → index into `scopes`.
    pub of_pid: HashMap<i32, usize>,
}

/// The budgets in bytes for one plan, and what each scope holds on its fast nodes.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolved {
    /// Upper nodes of the fastest tier.
    pub fast_nodes: Vec<u32>,
    /// Each scope's fast nodes: those near its GPU, or `fast_nodes`.
    pub nodes: Vec<Vec<u32>>,
    /// The scope has fast nodes of its own (near its GPU).
    pub placed: Vec<bool>,
    pub max: Vec<Option<u64>>,
    pub min: Vec<u64>,
    pub promote: Vec<bool>,
    /// Promotion bytes each scope may still use this plan (its PSI backoff).
    pub promote_left: Vec<u64>,
    /// Bytes each scope holds on its fast nodes, updated as moves are planned.
    pub fast: Vec<u64>,
}

impl Resolved {
    /// Resolves `b` against the fast memory of `nodes` (the demotion watermark of
    /// each node from `dwm`); `promote_budget` is the plan's promotion bytes.
    pub fn new(
        b: &Budgets,
        procs: &[ProcInput],
        nodes: &[NodeState],
        promote_budget: u64,
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
        // A GPU's nodes that are not upper nodes of the fastest tier (monitor-only
        // topology, a node gone): the scope falls back to the whole fast tier.
        let scope_nodes: Vec<Vec<u32>> = b
            .scopes
            .iter()
            .map(|s| {
                let own: Vec<u32> = s
                    .fast_nodes
                    .iter()
                    .copied()
                    .filter(|n| fast_nodes.contains(n))
                    .collect();
                if own.is_empty() {
                    fast_nodes.clone()
                } else {
                    own
                }
            })
            .collect();
        let on = |set: &[u32], g: &GranuleView| set.contains(&g.node) && g.flags & flags::FREE == 0;
        // What the managed processes hold on `set` plus its free memory above the
        // demotion watermarks.
        let capacity = |set: &[u32]| -> u64 {
            let managed: u64 = procs
                .iter()
                .flat_map(|p| p.granules.iter())
                .filter(|g| on(set, g))
                .map(|g| g.bytes)
                .sum();
            managed
                + fast
                    .iter()
                    .filter(|n| set.contains(&n.id))
                    .map(|n| n.free_bytes.saturating_sub(dwm(n)))
                    .sum::<u64>()
        };
        let all_capacity = capacity(&fast_nodes);
        let capacities: Vec<u64> = scope_nodes
            .iter()
            .map(|set| {
                if *set == fast_nodes {
                    all_capacity
                } else {
                    capacity(set)
                }
            })
            .collect();
        let mut held = vec![0u64; b.scopes.len()];
        for p in procs {
            if let Some(&s) = b.of_pid.get(&p.pid) {
                held[s] += p
                    .granules
                    .iter()
                    .filter(|g| on(&scope_nodes[s], g))
                    .map(|g| g.bytes)
                    .sum::<u64>();
            }
        }
        let max: Vec<Option<u64>> = b
            .scopes
            .iter()
            .zip(&capacities)
            .map(|(s, &c)| s.fast_budget.map(|a| a.of(c)))
            .collect();
        let min = b
            .scopes
            .iter()
            .zip(&max)
            .zip(&capacities)
            .map(|((s, m), &c)| {
                let min = s.fast_min.map_or(0, |a| a.of(c));
                m.map_or(min, |m| min.min(m))
            })
            .collect();
        let promote_left = b
            .scopes
            .iter()
            .map(|s| {
                if s.promote_factor >= 1.0 {
                    u64::MAX
                } else {
                    (promote_budget as f64 * s.promote_factor.max(0.0)) as u64
                }
            })
            .collect();
        Resolved {
            placed: scope_nodes.iter().map(|set| *set != fast_nodes).collect(),
            nodes: scope_nodes,
            fast_nodes,
            max,
            min,
            promote: b.scopes.iter().map(|s| s.promote).collect(),
            promote_left,
            fast: held,
        }
    }

    /// Whether `node` is one of the fast nodes of some scope placed near its GPU.
    pub fn is_gpu_node(&self, node: u32) -> bool {
        self.nodes
            .iter()
            .zip(&self.placed)
            .any(|(set, &p)| p && set.contains(&node))
    }

    /// `node` is one of scope `s`'s fast nodes: its budget applies there.
    pub fn is_fast_for(&self, s: usize, node: u32) -> bool {
        self.nodes[s].contains(&node)
    }

    /// `node` is on the fast tier but not one of scope `s`'s fast nodes (another
    /// socket's memory for a scope placed near its GPU): its data never fits there.
    pub fn is_foreign(&self, s: usize, node: u32) -> bool {
        self.fast_nodes.contains(&node) && !self.nodes[s].contains(&node)
    }

    /// Room left under scope `s`'s budget.
    pub fn room(&self, s: usize) -> u64 {
        self.max[s].map_or(u64::MAX, |m| m.saturating_sub(self.fast[s]))
    }
}
