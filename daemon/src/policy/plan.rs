//! Capacity planning: for each upper-tier node, which granules come up, which go down.

use super::classify::{
    demote_rank, demote_unconditionally, idle, promote_score, recent, wants_fast,
};
use super::{Direction, GranuleView, Knobs, Move, NodeState, Plan, ProcInput};
use crate::heat::flags;
use std::collections::HashSet;
use tierd_config::PolicyName;

struct Cand<'a> {
    pid: i32,
    policy: PolicyName,
    priority: i32,
    g: &'a GranuleView,
}

/// Decides this tick's moves. `nodes` lists every node with memory.
pub fn plan(procs: &[ProcInput], nodes: &[NodeState], k: &Knobs) -> Plan {
    let mut out = Plan::default();
    let mut moved: HashSet<(i32, u64)> = HashSet::new();
    let mut promote_budget = k.promote_budget_bytes;
    let mut demote_budget = k.demote_budget_bytes;
    let tier_of = |id: u32| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(u32::MAX, |n| n.tier)
    };
    let mut promotions = Vec::new();

    let mut uppers: Vec<&NodeState> = nodes.iter().filter(|n| n.demote_to.is_some()).collect();
    uppers.sort_by_key(|n| (n.tier, n.id));
    for up in uppers {
        let Some(down) = up.demote_to else { continue };
        let all = || {
            procs.iter().flat_map(|p| {
                p.granules.iter().map(move |g| Cand {
                    pid: p.pid,
                    policy: p.policy,
                    priority: p.priority,
                    g,
                })
            })
        };
        let feeds_up = |node: u32| {
            nodes
                .iter()
                .any(|n| n.id == node && n.promote_to == Some(up.id))
        };
        let residents: Vec<Cand> = all().filter(|c| c.g.node == up.id).collect();
        let lower: Vec<(Cand, f64)> = all()
            .filter(|c| feeds_up(c.g.node))
            .filter_map(|c| promote_score(c.policy, c.g, tier_of(c.g.node), k).map(|s| (c, s)))
            .collect();

        // What fits: managed residents plus free space above the demotion watermark,
        // filled by priority, then client hints, then recency (accessed within
        // `recent_ms`), then heat (Chameleon-style classes). Recency before heat: heat
        // is an average with a half-life of a second, so data that stopped being used
        // (a finished request's KV, a hot set that moved on) keeps a high heat for
        // seconds; ranked by heat alone, data that just became hot would wait that long
        // for room.
        let dwm = k.demote_watermark.of(up.total_bytes);
        let pwm = k.promote_watermark.of(up.total_bytes);
        let resident_bytes: u64 = residents.iter().map(|c| c.g.bytes).sum();
        let capacity = (resident_bytes + up.free_bytes).saturating_sub(dwm);
        let mut ranked: Vec<&Cand> = residents
            .iter()
            .chain(lower.iter().map(|(c, _)| c))
            .collect();
        // Residents rank with the hysteresis bonus: a candidate must be clearly
        // hotter to displace one (no churn between equally warm granules).
        let rank_heat = |c: &Cand| {
            if c.g.node == up.id {
                c.g.heat * k.hysteresis
            } else {
                c.g.heat
            }
        };
        ranked.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(wants_fast(b.g).cmp(&wants_fast(a.g)))
                .then(recent(b.g, k).cmp(&recent(a.g, k)))
                .then(rank_heat(b).total_cmp(&rank_heat(a)))
        });
        let mut fits: HashSet<(i32, u64)> = HashSet::new();
        let mut used = 0u64;
        let mut threshold = 0.0;
        // Dead contents never fit: they are victims, demoted first when room is needed.
        for c in ranked.into_iter().filter(|c| c.g.flags & flags::FREE == 0) {
            if used + c.g.bytes > capacity {
                threshold = c.g.heat;
                break;
            }
            used += c.g.bytes;
            fits.insert((c.pid, c.g.addr));
        }
        out.thresholds.push((up.id, threshold));

        // Victims: residents outside the fitting set, lowest priority first, then those
        // not accessed recently, then coldest first.
        let mut victims: Vec<(&Cand, f64)> = residents
            .iter()
            .filter(|c| {
                !fits.contains(&(c.pid, c.g.addr))
                    || demote_unconditionally(c.policy, c.g, up.tier, k)
            })
            .filter_map(|c| demote_rank(c.policy, c.g, k).map(|r| (c, r)))
            .collect();
        victims.sort_by(|a, b| {
            a.0.priority
                .cmp(&b.0.priority)
                .then(recent(a.0.g, k).cmp(&recent(b.0.g, k)))
                .then(a.1.total_cmp(&b.1))
        });
        let mut victims = victims.into_iter().peekable();

        let mut free = up.free_bytes;
        let mut ctx = Demoter {
            up: up.id,
            down,
            moved: &mut moved,
            budget: &mut demote_budget,
        };
        // Hinted-cold and (per policy) aged data goes regardless of pressure.
        for c in residents
            .iter()
            .filter(|c| demote_unconditionally(c.policy, c.g, up.tier, k))
        {
            ctx.demote(c, &mut free, &mut out);
        }
        // TPP proactive demotion: restore the headroom before anything else.
        while free < dwm {
            let Some((c, _)) = victims.next() else { break };
            ctx.demote(c, &mut free, &mut out);
        }

        // Hot data below that does not fit: the node is contended.
        let contended = lower
            .iter()
            .any(|(c, _)| !fits.contains(&(c.pid, c.g.addr)) && !wants_fast(c.g));
        // Promotions, best first; evict a colder victim (with hysteresis) when full.
        let mut lower: Vec<(Cand, f64)> = lower
            .into_iter()
            .filter(|(c, _)| fits.contains(&(c.pid, c.g.addr)) || wants_fast(c.g))
            .collect();
        // Hottest first at the resolution of a factor of two (sampled heat is no finer),
        // then the most recently become hot first: on a node that migration bandwidth
        // cannot keep up with, a page promoted early in its hot life serves more
        // accesses from the fast tier than one promoted late (TPP places new
        // allocations on the fast tier for the same reason: new data is hot data).
        lower.sort_by(|a, b| {
            b.0.priority
                .cmp(&a.0.priority)
                .then(heat_class(b.1).total_cmp(&heat_class(a.1)))
                .then(a.0.g.hot_for_ms.cmp(&b.0.g.hot_for_ms))
        });
        for (c, _) in &lower {
            if promote_budget < c.g.bytes || ctx.moved.contains(&(c.pid, c.g.addr)) {
                continue;
            }
            while free < pwm + c.g.bytes {
                let Some((v, _)) = victims.peek() else { break };
                // Victims are outside the fitting set, which already applied the
                // hysteresis; only priority can still protect them.
                if v.priority > c.priority {
                    break;
                }
                let (v, _) = victims.next().expect("peeked");
                ctx.demote(v, &mut free, &mut out);
            }
            if free < pwm + c.g.bytes {
                break;
            }
            ctx.moved.insert((c.pid, c.g.addr));
            free -= c.g.bytes;
            promote_budget -= c.g.bytes;
            promotions.push(Move {
                pid: c.pid,
                addr: c.g.addr,
                bytes: c.g.bytes,
                from: c.g.node,
                to: up.id,
                dir: Direction::Promote,
            });
        }
        // Promotions may have eaten into the headroom: restore it now, not next tick.
        while free < dwm {
            let Some((v, _)) = victims.next() else { break };
            ctx.demote(v, &mut free, &mut out);
        }
        // Headroom ahead of need: data idle for `cold_age_ms` goes while free memory is
        // below the idle watermark, so the next burst of promotions does not wait for
        // demotions. Not in ticks with promotions into this node (the worker runs
        // demotions first, and these must not delay promotions wanted now), and not on
        // a contended node, where hot data below does not fit: the room would only go
        // to data that loses it again at the next burst (migration bandwidth is spent
        // while it is otherwise unused).
        let iwm = k.idle_demote_watermark.of(up.total_bytes);
        if free < iwm && !contended && promotions.iter().all(|m: &Move| m.to != up.id) {
            let mut idle_residents: Vec<(&Cand, f64)> = residents
                .iter()
                .filter(|c| idle(c.policy, c.g, k))
                .filter_map(|c| demote_rank(c.policy, c.g, k).map(|r| (c, r)))
                .collect();
            idle_residents
                .sort_by(|a, b| a.0.priority.cmp(&b.0.priority).then(a.1.total_cmp(&b.1)));
            for (c, _) in idle_residents {
                if free >= iwm {
                    break;
                }
                ctx.demote(c, &mut free, &mut out);
            }
        }
    }
    out.moves.extend(promotions);
    out
}

/// A promotion score rounded down to a power of two.
fn heat_class(score: f64) -> f64 {
    if score > 0.0 && score.is_finite() {
        score.log2().floor()
    } else {
        score
    }
}

/// Records demotions out of one upper node, within the tick's byte budget.
struct Demoter<'m> {
    up: u32,
    down: u32,
    moved: &'m mut HashSet<(i32, u64)>,
    budget: &'m mut u64,
}

impl Demoter<'_> {
    fn demote(&mut self, c: &Cand, free: &mut u64, out: &mut Plan) -> bool {
        if *self.budget < c.g.bytes || !self.moved.insert((c.pid, c.g.addr)) {
            return false;
        }
        *self.budget -= c.g.bytes;
        *free += c.g.bytes;
        out.moves.push(Move {
            pid: c.pid,
            addr: c.g.addr,
            bytes: c.g.bytes,
            from: self.up,
            to: self.down,
            dir: Direction::Demote,
        });
        true
    }
}
