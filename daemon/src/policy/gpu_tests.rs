//! A scope that names its GPU, on the 2-socket server of the hwloc XML test data
//! (daemon/tests/data/hwloc-2socket-gpus.xml): node 0 on package 0 with GPUs 17:00.0 and
//! 18:00.0, node 1 and a CPU-less CXL node 2 on package 1 (the kernel's promotion target
//! of node 2 is node 1, its neighbour). Plans are applied tick after tick as the worker
//! would.

use super::budget_tests::{apply, hot_set, proc_};
use super::tests::{knobs, G, MB};
use super::*;
use crate::topology::devices::{fast_nodes_near_gpu, GpuRef};
use crate::topology::fake::FakeTopology;
use crate::topology::hwloc::devices_from_xml;
use crate::topology::{Topology, TopologySource};
use std::path::Path;
use tierd_config::Amount;

fn server() -> (Vec<crate::topology::devices::PciDevice>, Topology) {
    let xml = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hwloc-2socket-gpus.xml");
    let devs = devices_from_xml(&xml).unwrap();
    let mut topo = FakeTopology::new(&[
        (0, &[0, 1], 16 * MB, 0),
        (1, &[2, 3], 16 * MB, 0),
        (2, &[], 256 * MB, 1),
    ])
    .read()
    .unwrap();
    // The CXL node hangs off package 1: nearer to node 1 than to node 0.
    topo.nodes[2].distances = vec![30, 15, 10];
    (devs, topo)
}

/// The planner's nodes for `topo`, each fast node with `free` bytes free.
fn node_states(topo: &Topology, free: u64) -> Vec<NodeState> {
    topo.nodes
        .iter()
        .map(|n| NodeState {
            id: n.id,
            tier: n.tier,
            total_bytes: n.total_bytes,
            free_bytes: if n.tier == 0 { free } else { n.total_bytes / 2 },
            demote_to: topo.demotion_target(n.id),
            promote_to: topo.promotion_target(n.id),
        })
        .collect()
}

/// Runs `ticks` plans; returns every move planned.
fn run(procs: &mut [ProcInput], nodes: &mut [NodeState], b: &Budgets, ticks: usize) -> Vec<Move> {
    let mut all = Vec::new();
    for _ in 0..ticks {
        let plan = plan_with_budgets(procs, nodes, &knobs(), b);
        apply(&plan, procs, nodes);
        all.extend(plan.moves);
    }
    all
}

fn on(p: &ProcInput, node: u32) -> u64 {
    p.granules
        .iter()
        .filter(|g| g.node == node)
        .map(|g| g.bytes)
        .sum()
}

#[test]
fn a_scope_naming_its_gpu_is_promoted_to_the_node_near_it_not_the_other_sockets() {
    let (devs, topo) = server();
    assert_eq!(topo.promotion_target(2), Some(1));
    let near = fast_nodes_near_gpu(&devs, &topo, &GpuRef::parse("0000:17:00.0")).unwrap();
    assert_eq!(near, vec![0], "GPU 17:00.0 is on package 0");
    let by_index = fast_nodes_near_gpu(&devs, &topo, &GpuRef::parse("2")).unwrap();
    assert_eq!(by_index, vec![1], "GPU #2 (97:00.0) is on package 1");

    // Scope 0 (pid 1) names GPU 17:00.0: 2 MiB hot on the CXL node, 1 MiB hot on the
    // other socket's DRAM. Pid 2 is in no scope: 2 MiB hot on the CXL node.
    let procs = || {
        let mut a = hot_set(0, 2 * MB / G, 2);
        a.extend(hot_set(1 << 30, MB / G, 1));
        vec![proc_(1, 0, a), proc_(2, 0, hot_set(1 << 40, 2 * MB / G, 2))]
    };
    let mut b = Budgets::default();
    b.scopes.push(ScopeBudget {
        fast_nodes: near,
        ..ScopeBudget::default()
    });
    b.of_pid.insert(1, 0);

    let (mut p, mut n) = (procs(), node_states(&topo, 12 * MB));
    let moves = run(&mut p, &mut n, &b, 10);
    assert_eq!(
        on(&p[0], 0),
        3 * MB,
        "all of the scope's hot data near its GPU"
    );
    assert!(
        moves.iter().all(|m| m.pid != 1 || m.to == 0),
        "never promoted to another node: {moves:?}"
    );
    let relocated = moves.iter().filter(|m| m.pid == 1 && m.from == 1).count();
    assert_eq!(
        relocated as u64,
        MB / G,
        "moved straight from node 1, not via CXL"
    );
    assert_eq!(
        on(&p[1], 1),
        2 * MB,
        "others go where the kernel promotes node 2"
    );

    // The same without the GPU: the scope's hot data follows the kernel's target.
    b.scopes[0].fast_nodes.clear();
    let (mut p, mut n) = (procs(), node_states(&topo, 12 * MB));
    run(&mut p, &mut n, &b, 10);
    assert_eq!(on(&p[0], 0), 0);
    assert_eq!(on(&p[0], 1), 3 * MB);
}

#[test]
fn a_gpu_scopes_budget_is_a_share_of_its_own_nodes() {
    let (devs, topo) = server();
    let near = fast_nodes_near_gpu(&devs, &topo, &GpuRef::Index(0)).unwrap();
    // 8 MiB hot on the CXL node, a 50% budget: half of node 0's shareable memory (its
    // 12 MiB free less the 6% demotion watermark), not of both fast nodes'.
    let mut p = vec![proc_(1, 0, hot_set(0, 8 * MB / G, 2))];
    let mut n = node_states(&topo, 12 * MB);
    let mut b = Budgets::default();
    b.scopes.push(ScopeBudget {
        fast_budget: Some(Amount::Percent(50.0)),
        fast_nodes: near,
        ..ScopeBudget::default()
    });
    b.of_pid.insert(1, 0);
    let first = plan_with_budgets(&p, &n, &knobs(), &b);
    let shareable = 12 * MB - Amount::Percent(6.0).of(16 * MB);
    assert_eq!(first.scope_budgets[0].0, Some(shareable / 2));
    run(&mut p, &mut n, &b, 10);
    let held = on(&p[0], 0);
    assert!(held <= shareable / 2 && held + G > shareable / 2, "{held}");
    assert_eq!(on(&p[0], 1), 0);
}
