//! A scope's PSI backoff in the planner (`ScopeBudget::promote_factor`): the scope's
//! promotions are held to that share of the plan's promotion bytes; others are not.

use super::budget_tests::{hot_set, proc_};
use super::tests::{knobs, nodes_with, G, MB};
use super::*;

#[test]
fn a_scope_under_memory_pressure_gets_its_share_of_each_plans_promotions() {
    let procs = [
        proc_(1, 0, hot_set(0, 8 * MB / G, 1)),
        proc_(2, 0, hot_set(1 << 40, 8 * MB / G, 1)),
    ];
    let nodes = nodes_with(256 * MB, 200 * MB, 4);
    let k = Knobs {
        promote_budget_bytes: 4 * MB,
        ..knobs()
    };
    let promoted = |b: &Budgets, pid: i32| -> u64 {
        plan_with_budgets(&procs, &nodes, &k, b)
            .moves
            .iter()
            .filter(|m| m.pid == pid && m.dir == Direction::Promote)
            .map(|m| m.bytes)
            .sum()
    };
    let mut b = Budgets::default();
    b.scopes.push(ScopeBudget::default());
    b.of_pid.insert(1, 0);
    let (one, two) = (promoted(&b, 1), promoted(&b, 2));
    assert_eq!(one + two, 4 * MB, "the plan's 4 MiB");
    assert!(
        one > 3 * MB,
        "no pressure: pid 1 takes its part as heat ranks it ({one})"
    );
    b.scopes[0].promote_factor = 0.25;
    assert_eq!(promoted(&b, 1), MB, "a quarter of the plan's 4 MiB");
    assert_eq!(promoted(&b, 2), 3 * MB, "the rest goes to others");
}
