//! Scope budgets in the planner, on a synthetic two-node machine: plans are applied to
//! the fake placement tick after tick, as the migration worker would.

use super::*;
use tierd_config::Amount;

use super::tests::{hot, knobs, nodes_with, G, MB};

fn nodes(fast_total: u64, fast_free: u64) -> Vec<NodeState> {
    nodes_with(fast_total, fast_free, 16)
}

/// `n` granules from `base`, hot (heat 10 + i) and recently accessed, on `node`.
pub(super) fn hot_set(base: u64, n: u64, node: u32) -> Vec<GranuleView> {
    (0..n)
        .map(|i| hot(base + i * G, node, 10.0 + i as f64))
        .collect()
}

pub(super) fn proc_(pid: i32, priority: i32, granules: Vec<GranuleView>) -> ProcInput {
    ProcInput {
        pid,
        policy: PolicyName::Tpp,
        priority,
        granules,
    }
}

fn scope(budget: Option<Amount>, min: Option<Amount>) -> ScopeBudget {
    ScopeBudget {
        fast_budget: budget,
        fast_min: min,
        ..ScopeBudget::default()
    }
}

fn fast_bytes(p: &ProcInput) -> u64 {
    p.granules
        .iter()
        .filter(|g| g.node == 0)
        .map(|g| g.bytes)
        .sum()
}

/// Applies a plan's moves to the fake placement and the nodes' free memory.
pub(super) fn apply(plan: &Plan, procs: &mut [ProcInput], nodes: &mut [NodeState]) {
    for m in &plan.moves {
        let p = procs.iter_mut().find(|p| p.pid == m.pid).unwrap();
        let g = p.granules.iter_mut().find(|g| g.addr == m.addr).unwrap();
        assert_eq!(g.node, m.from);
        g.node = m.to;
        nodes[m.from as usize].free_bytes += m.bytes;
        nodes[m.to as usize].free_bytes -= m.bytes;
    }
}

#[test]
fn a_scope_beyond_its_budget_loses_its_coldest_even_with_free_memory() {
    // 100 granules of scope 0 on fast, a 4 MiB (64 granule) budget, lots of free memory.
    let procs = [proc_(1, 0, hot_set(0, 100, 0))];
    let mut b = Budgets::default();
    b.scopes.push(scope(Some(Amount::Bytes(4 * MB)), None));
    b.of_pid.insert(1, 0);
    let plan = plan_with_budgets(&procs, &nodes(1024 * MB, 900 * MB), &knobs(), &b);
    let demoted: Vec<u64> = plan
        .moves
        .iter()
        .filter(|m| m.dir == Direction::Demote)
        .map(|m| m.addr / G)
        .collect();
    assert_eq!(demoted.len(), 36, "{plan:?}");
    assert!(
        demoted.iter().all(|&i| i < 36),
        "the coldest go: {demoted:?}"
    );
    assert_eq!(plan.scope_budgets, vec![(Some(4 * MB), 0)]);
    // Without the budget nothing moves: the node has room.
    assert!(plan_with_budgets(
        &procs,
        &nodes(1024 * MB, 900 * MB),
        &knobs(),
        &Budgets::default()
    )
    .moves
    .is_empty());
}

#[test]
fn no_promotion_takes_a_scope_past_its_budget_nor_into_a_cgroup_near_its_limit() {
    let procs = [proc_(1, 0, hot_set(0, 100, 1))];
    let mut b = Budgets::default();
    b.scopes.push(scope(Some(Amount::Bytes(2 * MB)), None));
    b.of_pid.insert(1, 0);
    let plan = plan_with_budgets(&procs, &nodes(1024 * MB, 900 * MB), &knobs(), &b);
    assert_eq!(plan.moves.len(), 32, "2 MiB of 64 KiB granules");
    let hottest = plan.moves.iter().all(|m| m.addr / G >= 68);
    assert!(hottest, "the hottest are promoted: {:?}", plan.moves);
    b.scopes[0].promote = false;
    let plan = plan_with_budgets(&procs, &nodes(1024 * MB, 900 * MB), &knobs(), &b);
    assert!(plan.moves.is_empty(), "{plan:?}");
}

#[test]
fn two_scopes_with_25_and_75_percent_budgets_converge_to_them_whatever_their_priorities() {
    // A 64 MiB fast node; both hot sets exceed their budgets; the 25% scope has the
    // higher priority and starts with all of its hot set on the fast node.
    let mut nodes = nodes(64 * MB, 16 * MB);
    let mut procs = vec![
        proc_(1, 10, hot_set(0, 48 * MB / G, 0)), // 48 MiB on fast
        proc_(2, 0, hot_set(1 << 40, 60 * MB / G, 1)), // 60 MiB on slow
    ];
    let mut b = Budgets::default();
    b.scopes.push(scope(Some(Amount::Percent(25.0)), None));
    b.scopes.push(scope(Some(Amount::Percent(75.0)), None));
    b.of_pid.insert(1, 0);
    b.of_pid.insert(2, 1);
    let k = Knobs {
        promote_budget_bytes: 8 * MB,
        demote_budget_bytes: 8 * MB,
        ..knobs()
    };
    let mut last = Plan::default();
    for _ in 0..40 {
        last = plan_with_budgets(&procs, &nodes, &k, &b);
        apply(&last, &mut procs, &mut nodes);
    }
    let (max0, max1) = (
        last.scope_budgets[0].0.unwrap(),
        last.scope_budgets[1].0.unwrap(),
    );
    // Capacity: 48 MiB held + 16 MiB free - the 6% demotion watermark.
    let capacity = 64 * MB - Amount::Percent(6.0).of(64 * MB);
    assert!(max0.abs_diff(capacity / 4) <= G, "{max0} vs {capacity}");
    for (p, max) in [(&procs[0], max0), (&procs[1], max1)] {
        let f = fast_bytes(p);
        let off = f.abs_diff(max) as f64 / max as f64;
        assert!(off <= 0.05, "pid {}: {f} fast bytes, budget {max}", p.pid);
    }
    // Settled: the last plans move nothing.
    assert!(last.moves.is_empty(), "{last:?}");
}

#[test]
fn a_guaranteed_minimum_comes_before_a_higher_priority() {
    // 8 MiB fast node full of a priority-10 process's hot data; scope 0 (priority 0)
    // has a 2 MiB minimum and its hot set on the slow node.
    let mut nodes = nodes(8 * MB, 0);
    let mut procs = vec![
        proc_(1, 10, hot_set(0, 8 * MB / G, 0)),
        proc_(2, 0, hot_set(1 << 40, 4 * MB / G, 1)),
    ];
    let mut b = Budgets::default();
    b.scopes.push(scope(None, Some(Amount::Bytes(2 * MB))));
    b.of_pid.insert(2, 0);
    let mut without = procs.clone();
    let mut n2 = nodes.clone();
    for _ in 0..10 {
        let plan = plan_with_budgets(&procs, &nodes, &knobs(), &b);
        apply(&plan, &mut procs, &mut nodes);
        let plan = plan_with_budgets(&without, &n2, &knobs(), &Budgets::default());
        apply(&plan, &mut without, &mut n2);
    }
    assert_eq!(fast_bytes(&procs[1]), 2 * MB, "the minimum, not more");
    assert_eq!(fast_bytes(&without[1]), 0, "without it, priority wins");
    // Its granules on fast are not victims for the higher priority either.
    let plan = plan_with_budgets(&procs, &nodes, &knobs(), &b);
    assert!(plan.moves.iter().all(|m| m.pid != 2), "{plan:?}");
}

#[test]
fn a_percentage_is_of_what_managed_processes_hold_plus_free_above_the_watermark() {
    // A 64 MiB fast node: 16 MiB free, 32 MiB held by managed pid 1 (scope 0) and pid
    // 2 (no scope), so 16 MiB is the kernel's and unmanaged processes'.
    let procs = [
        proc_(1, 0, hot_set(0, 8 * MB / G, 0)),
        proc_(2, 0, hot_set(1 << 40, 24 * MB / G, 0)),
    ];
    let mut b = Budgets::default();
    b.scopes.push(scope(
        Some(Amount::Percent(25.0)),
        Some(Amount::Percent(10.0)),
    ));
    b.of_pid.insert(1, 0);
    let plan = plan_with_budgets(&procs, &nodes(64 * MB, 16 * MB), &knobs(), &b);
    let watermark = Amount::Percent(6.0).of(64 * MB);
    let shared = 32 * MB + 16 * MB - watermark;
    assert_eq!(
        plan.scope_budgets[0],
        (
            Some(Amount::Percent(25.0).of(shared)),
            Amount::Percent(10.0).of(shared)
        ),
        "not a share of the node's 64 MiB"
    );
    // Pages moving between managed and free leave it unchanged: 8 MiB more held, 8 MiB
    // less free.
    let more = [
        proc_(1, 0, hot_set(0, 16 * MB / G, 0)),
        proc_(2, 0, hot_set(1 << 40, 24 * MB / G, 0)),
    ];
    let again = plan_with_budgets(&more, &nodes(64 * MB, 8 * MB), &knobs(), &b);
    assert_eq!(again.scope_budgets[0].0, plan.scope_budgets[0].0);
}
