//! Capacity planning: for each upper-tier node, which granules come up, which go down.

use super::classify::{
    demote_rank, demote_unconditionally, idle, promote_score, recent, wants_fast,
};
use super::{Direction, GranuleView, Knobs, Move, NodeState, Plan, ProcInput};
use crate::heat::flags;
use std::cmp::Reverse;
use std::collections::HashSet;
use tierd_config::PolicyName;

/// Sort keys, compared as integers (computed once per candidate, not per comparison):
/// what fits (priority, hint, recency, heat), victims (priority, recency, rank), and
/// promotions (priority, heat class, hot-streak length); each ends with the
/// candidate's index, so the order is the stable order of the keys.
type FitKey = (Reverse<i32>, bool, bool, Reverse<i64>, usize);
type VictimKey = (i32, bool, i64, usize);
type PromoteKey = (Reverse<i32>, Reverse<i64>, u64, usize);

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
        // Candidates by index: residents first, then those below. Residents rank with
        // the hysteresis bonus: a candidate must be clearly hotter to displace one (no
        // churn between equally warm granules).
        let nres = residents.len();
        let cand = |i: usize| -> &Cand {
            if i < nres {
                &residents[i]
            } else {
                &lower[i - nres].0
            }
        };
        let mut ranked: Vec<FitKey> = (0..nres + lower.len())
            .map(|i| {
                let c = cand(i);
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
        let mut fits = vec![false; ranked.len()];
        let mut used = 0u64;
        let mut threshold = 0.0;
        // Dead contents never fit: they are victims, demoted first when room is needed.
        for &(.., i) in &ranked {
            let c = cand(i);
            if c.g.flags & flags::FREE != 0 {
                continue;
            }
            if used + c.g.bytes > capacity {
                threshold = c.g.heat;
                break;
            }
            used += c.g.bytes;
            fits[i] = true;
        }
        out.thresholds.push((up.id, threshold));

        // Victims: residents outside the fitting set, lowest priority first, then those
        // not accessed recently, then coldest first.
        let mut victims: Vec<(VictimKey, &Cand)> = residents
            .iter()
            .enumerate()
            .filter(|(i, c)| !fits[*i] || demote_unconditionally(c.policy, c.g, up.tier, k))
            .filter_map(|(i, c)| {
                demote_rank(c.policy, c.g, k)
                    .map(|r| ((c.priority, recent(c.g, k), total_order(r), i), c))
            })
            .collect();
        victims.sort_unstable_by_key(|v| v.0);
        let mut victims = victims.into_iter().map(|(_, c)| c).peekable();

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
            let Some(c) = victims.next() else { break };
            ctx.demote(c, &mut free, &mut out);
        }

        // Hot data below that does not fit: the node is contended.
        let contended = lower
            .iter()
            .enumerate()
            .any(|(i, (c, _))| !fits[nres + i] && !wants_fast(c.g));
        // Promotions, best first; evict a colder victim (with hysteresis) when full.
        // Hottest first at the resolution of a factor of two (sampled heat is no finer),
        // then the most recently become hot first: on a node that migration bandwidth
        // cannot keep up with, a page promoted early in its hot life serves more
        // accesses from the fast tier than one promoted late (TPP places new
        // allocations on the fast tier for the same reason: new data is hot data).
        let mut lower: Vec<(PromoteKey, &Cand)> = lower
            .iter()
            .enumerate()
            .filter(|(i, (c, _))| fits[nres + i] || wants_fast(c.g))
            .map(|(i, (c, score))| {
                let key = (
                    Reverse(c.priority),
                    Reverse(total_order(heat_class(*score))),
                    c.g.hot_for_ms,
                    i,
                );
                (key, c)
            })
            .collect();
        lower.sort_unstable_by_key(|l| l.0);
        for &(_, c) in &lower {
            if promote_budget < c.g.bytes || ctx.moved.contains(&(c.pid, c.g.addr)) {
                continue;
            }
            while free < pwm + c.g.bytes {
                let Some(v) = victims.peek() else { break };
                // Victims are outside the fitting set, which already applied the
                // hysteresis; only priority can still protect them.
                if v.priority > c.priority {
                    break;
                }
                let v = victims.next().expect("peeked");
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
            let Some(v) = victims.next() else { break };
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
