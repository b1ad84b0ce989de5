//! `tierctl status`: the daemon's mode, backends and managed processes in one reply.

use crate::kernel;
use crate::state::Daemon;
use std::sync::atomic::Ordering;
use tierd_api::{ManagedProc, ScopeStatus, StatusReply};

pub fn status(d: &Daemon) -> StatusReply {
    let cfg = d.config();
    let topo = d.topology();
    let mode = d.mode();
    let knobs = kernel::read(std::path::Path::new("/"));
    let kernel_moves = kernel::moves_pages(&knobs) && topo.is_tiered();
    let now = std::time::Instant::now();
    let heat = d.heat.summary();
    let managed = d
        .registry
        .all()
        .iter()
        .map(|p| {
            let s = &p.stats;
            let fast = s.fast_bytes.load(Ordering::Relaxed);
            let slow = s.slow_bytes.load(Ordering::Relaxed);
            let (pr, dr) = s.rates();
            ManagedProc {
                pid: p.pid,
                comm: p.comm.clone(),
                policy: p.policy.as_str().into(),
                priority: p.priority,
                fast_bytes: fast,
                slow_bytes: slow,
                fast_share: if fast + slow == 0 {
                    0.0
                } else {
                    fast as f64 / (fast + slow) as f64
                },
                promoted_pages: s.promoted_pages.load(Ordering::Relaxed),
                demoted_pages: s.demoted_pages.load(Ordering::Relaxed),
                promotions_per_s: pr,
                demotions_per_s: dr,
                pingpong_pages: s.pingpong_pages.load(Ordering::Relaxed),
                kernel_tiering_active: kernel_moves,
                heat_table_bytes: heat.table_bytes.get(&p.pid).copied().unwrap_or(0),
                sampled: d.sampled(p, now),
                scope: p.scope.as_deref().map(str::to_string),
            }
        })
        .collect();
    StatusReply {
        version: env!("CARGO_PKG_VERSION").into(),
        mode: mode.name().into(),
        mode_reason: match &mode {
            crate::state::Mode::Tiering => crate::state::Mode::tiering_reason(&topo).into(),
            m => m.reason(),
        },
        uptime_s: d.started.elapsed().as_secs_f64(),
        tiers: topo.tier_count(),
        nodes: topo.nodes.len() as u32,
        config_path: d.config_path.as_ref().map(|p| p.display().to_string()),
        managed,
        sampling: {
            let mut s = d.sampling.read().unwrap_or_else(|e| e.into_inner()).clone();
            s.budget_pct_per_gb = cfg.sampling.budget_pct_per_gb;
            s
        },
        kernel: knobs,
        clients: d.clients.load(Ordering::Relaxed),
        health: d.liveness.health(),
        moves: d.engine.counters.moves.snapshot(d.engine.page_size()),
        kernel_vmstat: d.vmstat.deltas(),
        psi: d.engine.psi_status(),
        scopes: scopes(d),
    }
}

/// Every scope with its processes and budgets, as the scope watcher and the last plan
/// left them. A scope's processes are the registry's (those managed under its name), so
/// one reply or state-tree snapshot never lists a process under a scope whose list
/// lacks it: the watcher publishes its own list only after it has managed them.
pub fn scopes(d: &Daemon) -> Vec<ScopeStatus> {
    let procs = d.registry.all();
    let fast_nodes: Vec<u32> = d.topology().nodes_in_tier(0).map(|n| n.id).collect();
    d.scopes
        .states()
        .iter()
        .map(|s| {
            let members: Vec<_> = procs
                .iter()
                .filter(|p| p.scope.as_deref() == Some(&*s.def.name))
                .collect();
            let fast_bytes = members
                .iter()
                .map(|p| p.stats.fast_bytes.load(Ordering::Relaxed))
                .sum();
            let mut st = scope_status(s, d.scopes.resolved(&s.def.name), fast_bytes);
            st.pids = members.iter().map(|p| p.pid).collect();
            st.pids.sort_unstable();
            st.cgroup_fast_bytes = (!st.cgroup_node_bytes.is_empty()).then(|| {
                fast_nodes
                    .iter()
                    .filter_map(|n| st.cgroup_node_bytes.get(n))
                    .sum()
            });
            st
        })
        .collect()
}

/// One scope's status line.
pub fn scope_status(
    s: &crate::scope::ScopeState,
    (budget, min): (Option<u64>, Option<u64>),
    fast_bytes: u64,
) -> ScopeStatus {
    ScopeStatus {
        name: s.def.name.to_string(),
        kind: s.def.selector.kind().into(),
        selector: s.def.selector.value().into(),
        origin: s.def.origin.as_str().into(),
        policy: s.def.policy.as_str().into(),
        priority: s.def.priority,
        cgroup: s.cgroup.clone(),
        problem: s.problem.clone(),
        pids: s.pids.clone(),
        fast_budget_bytes: budget,
        fast_min_bytes: min,
        fast_bytes,
        memory_max_bytes: s.memory.max_bytes,
        memory_high_bytes: s.memory.high_bytes,
        memory_current_bytes: s.memory.current_bytes,
        near_limit: s.memory.near_limit(crate::scope::NEAR_LIMIT_BYTES),
        cgroup_node_bytes: s.memory.node_bytes.clone(),
        cgroup_fast_bytes: None,
        gpu: s.def.gpu.as_ref().map(|g| g.to_string()),
        gpu_nodes: s.gpu_nodes.clone(),
        memory_pressure_some_avg10_pct: s.psi.pressure_pct,
        psi_rate_factor: s.psi.factor(),
        managed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::fake::FakeMover;
    use crate::scope::source::fake::FakeSource;
    use crate::topology::fake::FakeTopology;
    use std::sync::Arc;
    use tierd_config::{Config, ScopeConfig};

    /// The registry is the one owner of "which process is in which scope": a process
    /// the watcher has managed but not yet published is listed under its scope, and
    /// one the state still names but the registry dropped is not.
    /// A daemon on `nodes` with one config scope "svc" (cgroup /svc) read from a fake
    /// source.
    fn daemon_with_scope(nodes: &[(u32, &[u32], u64, u32)]) -> (Arc<Daemon>, Arc<FakeSource>) {
        let mut cfg = Config::default();
        cfg.scopes.push(ScopeConfig {
            name: "svc".into(),
            cgroup: Some("/svc".into()),
            ..Default::default()
        });
        let topo = Arc::new(FakeTopology::new(nodes));
        let mut d = Daemon::new(cfg, None, topo, Arc::new(FakeMover::new())).unwrap();
        let src = Arc::new(FakeSource::default());
        Arc::get_mut(&mut d).unwrap().scopes = crate::scope::Scopes::with_source(src.clone());
        (d, src)
    }

    #[test]
    fn a_scope_lists_the_processes_the_registry_manages_under_it() {
        let (d, _src) = daemon_with_scope(&[(0, &[0], 1 << 30, 0), (1, &[], 4 << 30, 1)]);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let no_gpus = |_: &_| Ok(Vec::new());
        // Published with no process (the cgroup was empty at the pass)...
        d.scopes.reconcile(&d.registry, &d.config(), 0, &no_gpus);
        assert!(d.scopes.states()[0].pids.is_empty());
        // ...then managed under the scope before the next pass publishes it.
        let policy = d.scopes.states()[0].def.policy;
        d.registry
            .manage_in(pid, policy, 0, Some("svc".into()))
            .unwrap();
        let s = scopes(&d);
        assert_eq!(s[0].pids, vec![pid]);
        assert!(status(&d)
            .managed
            .iter()
            .any(|p| p.pid == pid && p.scope.as_deref() == Some("svc")));
        // A pass that finds the cgroup still empty drops it: gone from both lists.
        d.scopes.reconcile(&d.registry, &d.config(), 0, &no_gpus);
        assert!(scopes(&d)[0].pids.is_empty());
        assert!(status(&d).managed.iter().all(|p| p.pid != pid));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The cgroup's fast bytes are its `memory.numa_stat` bytes on the fast tier's
    /// nodes; none without a reading.
    #[test]
    fn a_scope_reports_its_cgroup_bytes_on_the_fast_tier_from_numa_stat() {
        let (d, src) = daemon_with_scope(&[
            (0, &[0], 1 << 30, 0),
            (1, &[], 4 << 30, 1),
            (2, &[], 1 << 30, 0),
        ]);
        let no_gpus = |_: &_| Ok(Vec::new());
        src.cgroups.lock().unwrap().insert("/svc".into(), vec![]);
        d.scopes.reconcile(&d.registry, &d.config(), 0, &no_gpus);
        assert_eq!(scopes(&d)[0].cgroup_fast_bytes, None, "no numa_stat read");
        src.memory.lock().unwrap().insert(
            "/svc".into(),
            crate::scope::source::CgroupMemory {
                node_bytes: [(0, 100), (1, 1000), (2, 10)].into(),
                ..Default::default()
            },
        );
        d.scopes.reconcile(&d.registry, &d.config(), 0, &no_gpus);
        let s = &scopes(&d)[0];
        assert_eq!(s.cgroup_fast_bytes, Some(110), "nodes 0 and 2 are tier 0");
        assert_eq!(s.cgroup_node_bytes.get(&1), Some(&1000));
    }
}
