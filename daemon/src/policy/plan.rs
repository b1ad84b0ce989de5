//! Capacity planning: for each upper-tier node, which granules come up, which go down.
//!
//! [`plan`] visits the upper-tier nodes fastest tier first and runs the same phases on
//! each (the methods of [`NodePlan`], in the order `plan` lists them). What crosses
//! nodes (the granules already planned this tick, the tick's byte budgets, the moves so
//! far, what each scope holds on the fast tier against its budget) is kept in a
//! [`Ledger`]. Scope budgets ([`super::budget`]) come before priorities: a scope's
//! guaranteed minimum fits first, what is beyond its budget never fits and is demoted
//! regardless of pressure, and no promotion takes it past the budget. A scope placed
//! near its GPU has its own fast nodes: its candidates below are promoted only there,
//! its data on the other fast nodes is moved there when it fits (and never fits where
//! it is), and those nodes are planned first in their tier so that move comes before
//! the other node's demotions.

use super::budget::{Budgets, Resolved};
use super::classify::{
    demote_rank, demote_unconditionally, idle, promote_cause, promote_score, recent,
    unconditional_cause, wants_fast,
};
use super::{Direction, GranuleView, Knobs, Move, MoveCause, NodeState, Plan, ProcInput};
use crate::heat::flags;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use tierd_config::PolicyName;

/// Sort keys, compared as integers (computed once per candidate, not per comparison):
/// what fits (priority, hint, recency, heat), victims (priority, recency, rank), and
/// promotions (priority, heat class, hot-streak length); each ends with the
/// candidate's index, so the order is the stable order of the keys.
type FitKey = (Reverse<i32>, bool, bool, Reverse<i64>, usize);
type VictimKey = (i32, bool, i64, usize);
type PromoteKey = (bool, Reverse<i32>, Reverse<i64>, u64, usize);

#[derive(Clone, Copy)]
struct Cand<'a> {
    pid: i32,
    policy: PolicyName,
    priority: i32,
    /// Index of its scope in the plan's budgets.
    scope: Option<usize>,
    g: &'a GranuleView,
}

/// Decides this tick's moves. `nodes` lists every node with memory.
pub fn plan(procs: &[ProcInput], nodes: &[NodeState], k: &Knobs) -> Plan {
    plan_with_budgets(procs, nodes, k, &Budgets::default())
}

/// [`plan`] with scopes' fast-tier budgets honoured before priorities.
pub fn plan_with_budgets(
    procs: &[ProcInput],
    nodes: &[NodeState],
    k: &Knobs,
    budgets: &Budgets,
) -> Plan {
    let scopes = Resolved::new(budgets, procs, nodes, k.promote_budget_bytes, |n| {
        k.demote_watermark.of(n.total_bytes)
    });
    let mut ledger = Ledger {
        out: Plan {
            scope_budgets: scopes
                .max
                .iter()
                .copied()
                .zip(scopes.min.iter().copied())
                .collect(),
            ..Plan::default()
        },
        promotions: Vec::new(),
        moved: HashSet::new(),
        promote_budget: k.promote_budget_bytes,
        demote_budget: k.demote_budget_bytes,
        scopes,
    };
    let mut uppers: Vec<&NodeState> = nodes.iter().filter(|n| n.demote_to.is_some()).collect();
    uppers.sort_by_key(|n| (n.tier, !ledger.scopes.is_gpu_node(n.id), n.id));
    for up in uppers {
        let Some(down) = up.demote_to else { continue };
        let mut node = NodePlan::gather(procs, nodes, up, down, k, &budgets.of_pid, &ledger.scopes);
        node.fit(&mut ledger);
        node.rank_victims();
        node.enforce_budgets(&mut ledger);
        node.demote_regardless_of_pressure(&mut ledger);
        node.restore_headroom(&mut ledger);
        node.promote(&mut ledger);
        // Promotions may have eaten into the headroom: restore it now, not next tick.
        node.restore_headroom(&mut ledger);
        node.demote_idle(&mut ledger);
    }
    ledger.finish()
}

/// What this tick has decided so far, over all upper nodes: a granule moves at most
/// once per tick, and the byte budgets are the tick's, not a node's.
struct Ledger {
    /// Demotions so far, in the order they were decided, and each node's threshold.
    out: Plan,
    promotions: Vec<Move>,
    /// (pid, addr) of every granule with a move planned this tick.
    moved: HashSet<(i32, u64)>,
    promote_budget: u64,
    demote_budget: u64,
    /// Scopes' budgets in bytes and what each holds on the fast tier.
    scopes: Resolved,
}

impl Ledger {
    /// Demotions first (they make the room promotions use), then promotions.
    fn finish(mut self) -> Plan {
        self.out.moves.extend(self.promotions);
        self.out
    }
}

/// One upper-tier node's share of the plan: its residents, the promotion candidates on
/// the nodes below that promote into it, and its free memory as the phases spend and
/// make room.
struct NodePlan<'a> {
    up: &'a NodeState,
    /// Where its demotions go.
    down: u32,
    k: &'a Knobs,
    residents: Vec<Cand<'a>>,
    /// Promotion candidates with their [`promote_score`].
    lower: Vec<(Cand<'a>, f64)>,
    /// Candidates by index, residents first, then `lower`: in the fitting set.
    fits: Vec<bool>,
    /// ... fitting within their scope's guaranteed minimum (never victims, promoted
    /// first).
    guaranteed: Vec<bool>,
    /// ... beyond their scope's budget (residents: demoted regardless of pressure).
    over_budget: Vec<bool>,
    /// Residents that give up their place when room is needed, in order (indices into
    /// `residents`); `next_victim` is the first not yet taken.
    victims: Vec<usize>,
    next_victim: usize,
    /// Free bytes on `up` once the moves planned so far are made.
    free: u64,
    /// The demotion and promotion watermarks in bytes.
    dwm: u64,
    pwm: u64,
}

impl<'a> NodePlan<'a> {
    /// The node's residents, and the granules on the nodes that promote into it which
    /// their policy would promote. For a scope placed near its GPU, the fast tier's
    /// nodes promote only into the scope's own nodes, and its data on the other fast
    /// nodes is a candidate for its own (ranked as one tier below).
    fn gather(
        procs: &'a [ProcInput],
        nodes: &'a [NodeState],
        up: &'a NodeState,
        down: u32,
        k: &'a Knobs,
        scope_of: &HashMap<i32, usize>,
        r: &Resolved,
    ) -> NodePlan<'a> {
        let tier_of = |id: u32| {
            nodes
                .iter()
                .find(|n| n.id == id)
                .map_or(u32::MAX, |n| n.tier)
        };
        let all = || {
            procs.iter().flat_map(|p| {
                let scope = scope_of.get(&p.pid).copied();
                p.granules.iter().map(move |g| Cand {
                    pid: p.pid,
                    policy: p.policy,
                    priority: p.priority,
                    scope,
                    g,
                })
            })
        };
        let feeds_up = |node: u32| {
            nodes
                .iter()
                .any(|n| n.id == node && n.promote_to == Some(up.id))
        };
        let promotes_to = |node: u32| nodes.iter().find(|n| n.id == node)?.promote_to;
        let up_is_fast = r.fast_nodes.contains(&up.id);
        // The tier a candidate ranks as, if it is one for this node.
        let source_tier = |c: &Cand<'_>| match c.scope {
            Some(s) if r.placed[s] && up_is_fast => {
                let from = c.g.node;
                if !r.is_fast_for(s, up.id) {
                    None
                } else if r.is_foreign(s, from) {
                    Some(up.tier + 1)
                } else {
                    promotes_to(from)
                        .filter(|t| r.fast_nodes.contains(t))
                        .map(|_| tier_of(from))
                }
            }
            _ => feeds_up(c.g.node).then(|| tier_of(c.g.node)),
        };
        let residents = all().filter(|c| c.g.node == up.id).collect();
        let lower = all()
            .filter_map(|c| {
                let tier = source_tier(&c)?;
                promote_score(c.policy, c.g, tier, k).map(|s| (c, s))
            })
            .collect();
        NodePlan {
            up,
            down,
            k,
            residents,
            lower,
            fits: Vec::new(),
            guaranteed: Vec::new(),
            over_budget: Vec::new(),
            victims: Vec::new(),
            next_victim: 0,
            free: up.free_bytes,
            dwm: k.demote_watermark.of(up.total_bytes),
            pwm: k.promote_watermark.of(up.total_bytes),
        }
    }

    /// Candidate `i`: residents first, then those below.
    fn cand(&self, i: usize) -> &Cand<'a> {
        let nres = self.residents.len();
        if i < nres {
            &self.residents[i]
        } else {
            &self.lower[i - nres].0
        }
    }

    /// What fits: managed residents plus free space above the demotion watermark,
    /// filled by priority, then client hints, then recency (accessed within
    /// `recent_ms`), then heat (Chameleon-style classes). Recency before heat: heat
    /// is an average with a half-life of a second, so data that stopped being used
    /// (a finished request's KV, a hot set that moved on) keeps a high heat for
    /// seconds; ranked by heat alone, data that just became hot would wait that long
    /// for room. Records the heat where the node fills as its threshold.
    fn fit(&mut self, ledger: &mut Ledger) {
        let k = self.k;
        let resident_bytes: u64 = self.residents.iter().map(|c| c.g.bytes).sum();
        let capacity = (resident_bytes + self.up.free_bytes).saturating_sub(self.dwm);
        // Residents rank with the hysteresis bonus: a candidate must be clearly hotter
        // to displace one (no churn between equally warm granules).
        let nres = self.residents.len();
        let mut ranked: Vec<FitKey> = (0..nres + self.lower.len())
            .map(|i| {
                let c = self.cand(i);
                let heat = if i < nres {
                    c.g.heat * k.hysteresis
                } else {
                    c.g.heat
                };
                (
                    Reverse(c.priority),
                    !wants_fast(c.g),
                    !recent(c.g, k),
                    Reverse(total_order(heat)),
                    i,
                )
            })
            .collect();
        ranked.sort_unstable();
        let n = ranked.len();
        let mut fits = vec![false; n];
        let mut guaranteed = vec![false; n];
        let mut over_budget = vec![false; n];
        let mut used = 0u64;
        let mut threshold = 0.0;
        // Each scope's room on this node: its budget (and minimum) less what it holds
        // on the other fast nodes.
        let (mut room, mut min_left) = self.scope_room(&ledger.scopes);
        // Scopes' guaranteed minimums first, whatever the priorities.
        for &(.., i) in &ranked {
            let c = self.cand(i);
            let Some(s) = c.scope else { continue };
            if c.g.flags & flags::FREE != 0 || min_left[s] < c.g.bytes {
                continue;
            }
            if used + c.g.bytes > capacity {
                break;
            }
            used += c.g.bytes;
            min_left[s] -= c.g.bytes;
            room[s] = room[s].saturating_sub(c.g.bytes);
            fits[i] = true;
            guaranteed[i] = true;
        }
        // Dead contents never fit: they are victims, demoted first when room is needed.
        for &(.., i) in &ranked {
            let c = self.cand(i);
            if fits[i] || c.g.flags & flags::FREE != 0 {
                continue;
            }
            if let Some(s) = c.scope {
                if room[s] < c.g.bytes {
                    over_budget[i] = true;
                    continue;
                }
            }
            if used + c.g.bytes > capacity {
                threshold = c.g.heat;
                break;
            }
            used += c.g.bytes;
            if let Some(s) = c.scope {
                room[s] -= c.g.bytes;
            }
            fits[i] = true;
        }
        self.guaranteed = guaranteed;
        self.over_budget = over_budget;
        self.fits = fits;
        ledger.out.thresholds.push((self.up.id, threshold));
    }

    /// Per scope, the room under its budget and its minimum left to fill on this node:
    /// the scope's limits less what it holds on its other fast nodes (no limits on a
    /// node that is not on the fast tier; no room at all on a fast node that is not the
    /// scope's own, for a scope placed near its GPU).
    fn scope_room(&self, r: &Resolved) -> (Vec<u64>, Vec<u64>) {
        let n = r.max.len();
        let id = self.up.id;
        let mut here = vec![0u64; n];
        for c in &self.residents {
            if let Some(s) = c.scope {
                if c.g.flags & flags::FREE == 0 {
                    here[s] += c.g.bytes;
                }
            }
        }
        let elsewhere = |s: usize| r.fast[s].saturating_sub(here[s]);
        let room = (0..n)
            .map(|s| {
                if r.is_fast_for(s, id) {
                    r.max[s].map_or(u64::MAX, |m| m.saturating_sub(elsewhere(s)))
                } else if r.is_foreign(s, id) {
                    0
                } else {
                    u64::MAX
                }
            })
            .collect();
        let min = (0..n)
            .map(|s| {
                if r.is_fast_for(s, id) {
                    r.min[s].saturating_sub(elsewhere(s))
                } else {
                    0
                }
            })
            .collect();
        (room, min)
    }

    /// Residents beyond their scope's budget go whatever the free memory, coldest
    /// first (the victims' order), until the scope holds no more than its budget: a
    /// scope within its budget is not made to swap its own data.
    fn enforce_budgets(&mut self, ledger: &mut Ledger) {
        let over: Vec<usize> = self
            .victims
            .iter()
            .copied()
            .filter(|&i| self.over_budget[i])
            .collect();
        for i in over {
            let Some(s) = self.residents[i].scope else {
                continue;
            };
            let r = &ledger.scopes;
            if r.is_fast_for(s, self.up.id) && r.max[s].is_some_and(|m| r.fast[s] > m) {
                self.demote(i, ledger, MoveCause::Budget);
            }
        }
    }

    /// Victims: residents outside the fitting set (and those demoted regardless of
    /// pressure), lowest priority first, then those not accessed recently, then
    /// coldest first.
    fn rank_victims(&mut self) {
        let (k, tier) = (self.k, self.up.tier);
        let mut keys: Vec<VictimKey> = self
            .residents
            .iter()
            .enumerate()
            .filter(|(i, c)| !self.fits[*i] || demote_unconditionally(c.policy, c.g, tier, k))
            .filter_map(|(i, c)| {
                demote_rank(c.policy, c.g, k)
                    .map(|r| (c.priority, recent(c.g, k), total_order(r), i))
            })
            .collect();
        keys.sort_unstable();
        self.victims = keys.into_iter().map(|(.., i)| i).collect();
    }

    /// Hinted-cold and (per policy) aged data goes regardless of pressure.
    fn demote_regardless_of_pressure(&mut self, ledger: &mut Ledger) {
        for i in 0..self.residents.len() {
            let c = &self.residents[i];
            if demote_unconditionally(c.policy, c.g, self.up.tier, self.k) {
                let cause = unconditional_cause(c.g);
                self.demote(i, ledger, cause);
            }
        }
    }

    /// TPP proactive demotion: victims go while free memory is below the demotion
    /// watermark, so promotions and new allocations find room on the node.
    fn restore_headroom(&mut self, ledger: &mut Ledger) {
        while self.free < self.dwm {
            let Some(&i) = self.victims.get(self.next_victim) else {
                break;
            };
            self.next_victim += 1;
            self.demote(i, ledger, MoveCause::Headroom);
        }
    }

    /// Promotions, best first; evict a colder victim (with hysteresis) when full.
    /// Hottest first at the resolution of a factor of two (sampled heat is no finer),
    /// then the most recently become hot first: on a node that migration bandwidth
    /// cannot keep up with, a page promoted early in its hot life serves more
    /// accesses from the fast tier than one promoted late (TPP places new
    /// allocations on the fast tier for the same reason: new data is hot data).
    fn promote(&mut self, ledger: &mut Ledger) {
        let nres = self.residents.len();
        let mut order: Vec<PromoteKey> = self
            .lower
            .iter()
            .enumerate()
            .filter(|(i, (c, _))| self.fits[nres + i] || wants_fast(c.g))
            .map(|(i, (c, score))| {
                (
                    !self.guaranteed[nres + i],
                    Reverse(c.priority),
                    Reverse(total_order(heat_class(*score))),
                    c.g.hot_for_ms,
                    i,
                )
            })
            .collect();
        order.sort_unstable();
        for (.., j) in order {
            let c = self.lower[j].0;
            if ledger.promote_budget < c.g.bytes || ledger.moved.contains(&(c.pid, c.g.addr)) {
                continue;
            }
            // Not past the scope's budget; nothing while its cgroup is near its limit;
            // within its share of the plan under memory pressure.
            if let Some(s) = c.scope {
                let r = &ledger.scopes;
                if r.promote_left[s] < c.g.bytes
                    || (r.is_fast_for(s, self.up.id) && (!r.promote[s] || r.room(s) < c.g.bytes))
                {
                    continue;
                }
            }
            while self.free < self.pwm + c.g.bytes {
                let Some(&v) = self.victims.get(self.next_victim) else {
                    break;
                };
                // Victims are outside the fitting set, which already applied the
                // hysteresis; only priority can still protect them (not against a
                // scope's guaranteed minimum, which comes before priorities).
                if self.residents[v].priority > c.priority && !self.guaranteed[nres + j] {
                    break;
                }
                self.next_victim += 1;
                self.demote(v, ledger, MoveCause::Headroom);
            }
            if self.free < self.pwm + c.g.bytes {
                break;
            }
            ledger.moved.insert((c.pid, c.g.addr));
            self.free -= c.g.bytes;
            ledger.promote_budget -= c.g.bytes;
            if let Some(s) = c.scope {
                let r = &mut ledger.scopes;
                r.promote_left[s] = r.promote_left[s].saturating_sub(c.g.bytes);
                if r.is_fast_for(s, self.up.id) {
                    r.fast[s] += c.g.bytes;
                }
            }
            ledger.promotions.push(Move {
                pid: c.pid,
                addr: c.g.addr,
                bytes: c.g.bytes,
                from: c.g.node,
                to: self.up.id,
                dir: Direction::Promote,
                cause: promote_cause(c.policy, c.g),
            });
        }
    }

    /// Headroom ahead of need: data idle for `cold_age_ms` goes while free memory is
    /// below the idle watermark, so the next burst of promotions does not wait for
    /// demotions. Not in ticks with promotions into this node (the worker runs
    /// demotions first, and these must not delay promotions wanted now), and not on
    /// a contended node, where hot data below does not fit: the room would only go
    /// to data that loses it again at the next burst (migration bandwidth is spent
    /// while it is otherwise unused).
    fn demote_idle(&mut self, ledger: &mut Ledger) {
        let k = self.k;
        let iwm = k.idle_demote_watermark.of(self.up.total_bytes);
        if self.free >= iwm
            || self.contended()
            || ledger.promotions.iter().any(|m| m.to == self.up.id)
        {
            return;
        }
        let mut idle_residents: Vec<(usize, f64)> = self
            .residents
            .iter()
            .enumerate()
            .filter(|(_, c)| idle(c.policy, c.g, k))
            .filter_map(|(i, c)| demote_rank(c.policy, c.g, k).map(|r| (i, r)))
            .collect();
        let priority = |i: usize| self.residents[i].priority;
        idle_residents.sort_by(|a, b| priority(a.0).cmp(&priority(b.0)).then(a.1.total_cmp(&b.1)));
        for (i, _) in idle_residents {
            if self.free >= iwm {
                break;
            }
            self.demote(i, ledger, MoveCause::Headroom);
        }
    }

    /// Hot data below that does not fit: the node is contended.
    fn contended(&self) -> bool {
        let nres = self.residents.len();
        self.lower
            .iter()
            .enumerate()
            .any(|(i, (c, _))| !self.fits[nres + i] && !wants_fast(c.g))
    }

    /// Plans resident `i`'s demotion for `cause`, within the tick's byte budget and
    /// unless it is already moving this tick.
    fn demote(&mut self, i: usize, ledger: &mut Ledger, cause: MoveCause) {
        let c = &self.residents[i];
        if ledger.demote_budget < c.g.bytes || !ledger.moved.insert((c.pid, c.g.addr)) {
            return;
        }
        ledger.demote_budget -= c.g.bytes;
        self.free += c.g.bytes;
        if let Some(s) = c
            .scope
            .filter(|&s| ledger.scopes.is_fast_for(s, self.up.id))
        {
            ledger.scopes.fast[s] = ledger.scopes.fast[s].saturating_sub(c.g.bytes);
        }
        ledger.out.moves.push(Move {
            pid: c.pid,
            addr: c.g.addr,
            bytes: c.g.bytes,
            from: self.up.id,
            to: self.down,
            dir: Direction::Demote,
            cause,
        });
    }
}

/// `x` as an integer in the order of [`f64::total_cmp`].
fn total_order(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    b ^ ((((b >> 63) as u64) >> 1) as i64)
}

/// A promotion score rounded down to a power of two.
fn heat_class(score: f64) -> f64 {
    if score > 0.0 && score.is_finite() {
        score.log2().floor()
    } else {
        score
    }
}
