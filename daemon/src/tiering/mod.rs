//! The tiering loop: sampling → heat → policy → migration.
//!
//! One thread wakes every `sampling.drain_interval_ms`: it reaps exited processes,
//! keeps the samplers' targets in step with the registry, drains the samplers into the
//! heat tables and runs one rate-controller step. Every `policy.interval_ms` it
//! refreshes placement (a scan per process about once a second; every 5 s in
//! monitor-only mode; less often when a scan is slow, so that scans take at most a
//! fifth of the loop's time: [`next_scan`]) and, in tiering mode, builds the policy's view, plans, and hands
//! the plan to the migration worker thread (`worker.rs`), so the loop never blocks on
//! migration. A plan sent while the worker runs one supersedes it at the worker's next
//! step: newly hot data waits one policy period, not for a plan made on older heat.
//! When the worker runs out of plans (after one that moved something: a full node
//! must not make the loop replan futile moves every 50 ms) it wakes the loop, which
//! drains and plans again
//! at once (at most every [`MIN_REPLAN`]): migration bandwidth is the scarce resource,
//! so the worker should not sit idle until the next policy tick.

mod costs;
mod scan;
#[cfg(test)]
mod tests;
mod worker;

use crate::heat::{HeatOwner, HeatTable};
use crate::policy::{self, GranuleView, Knobs, NodeState, ProcInput};
use crate::sampling::{AccessSample, SamplingSet};
use crate::state::{Daemon, Mode};
use anyhow::Context;
use costs::Costs;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tierd_config::Config;

/// How often each managed process's placement is re-read while tierd moves pages.
const SCAN_PERIOD: Duration = Duration::from_millis(1000);
/// ... and in monitor-only mode, where placement only feeds status and metrics (a scan
/// queries every granule's node: the largest share of tierd's own CPU time).
const MONITOR_SCAN_PERIOD: Duration = Duration::from_millis(5000);
/// Smallest plan, bytes per direction, whatever the measured migration rate.
const PLAN_FLOOR_BYTES: u64 = 16 << 20;
/// Shortest gap between two plans when the worker asks for the next one.
const MIN_REPLAN: Duration = Duration::from_millis(50);
/// A process's scans take at most 1 / SCAN_DUTY of the loop's time: the next one starts
/// no sooner than SCAN_DUTY times the last one's duration after that one began.
const SCAN_DUTY: u32 = 5;
/// How often a heat snapshot is kept for heatmaps.
const SNAPSHOT_PERIOD: Duration = Duration::from_millis(1000);

pub fn start(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let (tx, rx) = crossbeam_channel::bounded::<worker::PlanJob>(1);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let throughput = Arc::new(AtomicU64::new(0));
    let (d, t) = (daemon.clone(), throughput.clone());
    std::thread::Builder::new()
        .name("tierd-migrate".into())
        .spawn(move || worker::run(d, rx, t, done_tx))
        .context("spawning the migration worker")?;
    let heat = daemon
        .heat
        .take_owner()
        .context("the heat tables already have an owner")?;
    let d = daemon.clone();
    std::thread::Builder::new()
        .name("tierd-tiering".into())
        .spawn(move || Loop::new(d, heat, tx, done_rx, throughput).run())
        .context("spawning the tiering loop")?;
    Ok(())
}

struct Loop {
    d: Arc<Daemon>,
    /// The heat tables: this loop owns them; other threads send edits (hints, move
    /// outcomes) and reads through `Daemon::heat`.
    heat: HeatOwner,
    tx: crossbeam_channel::Sender<worker::PlanJob>,
    /// The worker finished a plan.
    done: crossbeam_channel::Receiver<()>,
    /// Measured migration rate, bytes/s (0 until the first plan ran).
    throughput: Arc<AtomicU64>,
    sampling: SamplingSet,
    generation: u64,
    last_policy: Instant,
    last_snapshot: Instant,
    /// When each process's next placement scan is due ([`next_scan`]).
    next_scan: HashMap<i32, Instant>,
    samples: Vec<AccessSample>,
    costs: Costs,
}

impl Loop {
    fn new(
        d: Arc<Daemon>,
        heat: HeatOwner,
        tx: crossbeam_channel::Sender<worker::PlanJob>,
        done: crossbeam_channel::Receiver<()>,
        throughput: Arc<AtomicU64>,
    ) -> Loop {
        let cfg = d.config();
        let generation = d.generation.load(Ordering::SeqCst);
        Loop {
            sampling: SamplingSet::new(&cfg.sampling),
            d,
            heat,
            tx,
            done,
            throughput,
            generation,
            last_policy: Instant::now(),
            last_snapshot: Instant::now(),
            next_scan: HashMap::new(),
            samples: Vec::new(),
            costs: Costs::default(),
        }
    }

    fn run(mut self) {
        let mut next_drain = Instant::now();
        let heartbeat = self.d.liveness.register("tierd-tiering");
        while !self.d.shutdown.load(Ordering::Relaxed) {
            heartbeat.beat();
            let cfg = self.d.config();
            let period = Duration::from_millis(cfg.sampling.drain_interval_ms);
            // Sleep until the next drain, or until the worker finishes a plan, running
            // the heat tables' edits and reads as they come.
            let replan = self.wait(next_drain, &cfg);
            // Everything sent before now (a step's outcome before its plan's end) is
            // in the tables before they are read.
            self.apply_pending(&cfg);
            if !replan {
                next_drain += period;
                // Behind by more than a period (a slow drain): restart the cadence.
                let now = Instant::now();
                if next_drain < now {
                    next_drain = now + period;
                }
            }
            let gen = self.d.generation.load(Ordering::SeqCst);
            if gen != self.generation {
                self.sampling.set_config(&cfg.sampling);
                self.generation = gen;
            }
            let t = Instant::now();
            self.sample();
            self.costs.sample += t.elapsed();
            let since = self.last_policy.elapsed();
            if since >= Duration::from_millis(cfg.policy.interval_ms)
                || (replan && since >= MIN_REPLAN)
            {
                self.last_policy = Instant::now();
                let t = Instant::now();
                self.refresh_placement();
                self.costs.scan += t.elapsed();
                if self.d.mode() == Mode::Tiering {
                    self.decide();
                }
            }
            self.costs.maybe_log();
        }
    }

    /// Waits until `deadline` or until the worker finishes a plan (true), running heat
    /// commands as they arrive.
    fn wait(&mut self, deadline: Instant, cfg: &Config) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.done) -> r => match r {
                    Ok(()) => return true,
                    // No worker (it ended; a panic would have aborted tierd): keep
                    // the cadence with a plain sleep.
                    Err(_) => {
                        std::thread::sleep(left);
                        return false;
                    }
                },
                recv(self.heat.queue()) -> cmd => {
                    if let Ok(cmd) = cmd {
                        let t = Instant::now();
                        self.heat.apply(cmd, cfg);
                        self.costs.heat += t.elapsed();
                        self.costs.heat_cmds += 1;
                    }
                }
                default(left) => return false,
            }
        }
    }

    /// Runs every heat command waiting, counting its time.
    fn apply_pending(&mut self, cfg: &Config) {
        let t = Instant::now();
        self.costs.heat_cmds += self.heat.apply_pending(cfg) as u64;
        self.costs.heat += t.elapsed();
    }

    /// Reap, sync targets, drain samplers into heat tables, adapt the rate.
    fn sample(&mut self) {
        let d = &self.d;
        for pid in d.registry.reap() {
            self.next_scan.remove(&pid);
            tracing::info!(pid, "managed process exited");
        }
        let procs = d.registry.all();
        let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
        // Forget tables of processes no longer managed.
        self.heat.retain(|pid| pids.contains(&pid));
        self.next_scan.retain(|pid, _| pids.contains(pid));
        // Processes that send hints are left to their hints (Daemon::sampled).
        let now = Instant::now();
        let sampled: Vec<i32> = procs
            .iter()
            .filter(|p| d.sampled(p, now))
            .map(|p| p.pid)
            .collect();
        self.sampling.sync_targets(&sampled);
        self.samples.clear();
        let t = Instant::now();
        self.sampling.drain(&mut self.samples);
        self.costs.drain += t.elapsed();
        let t = Instant::now();
        let snapshot = self.last_snapshot.elapsed() >= SNAPSHOT_PERIOD;
        let mut managed_bytes = 0u64;
        {
            let cfg = d.config();
            for pid in &pids {
                self.heat.table(*pid, &cfg);
            }
            for s in &self.samples {
                if let Some(t) = self.heat.get_mut(s.pid) {
                    let now = t.now_ms(Instant::now());
                    t.record(s.start, s.end, s.weight, now);
                }
            }
            for (_, t) in self.heat.tables_mut() {
                managed_bytes += t.len() as u64 * t.granule();
                if snapshot {
                    let now = t.now_ms(Instant::now());
                    t.snapshot(now);
                }
            }
            self.heat.publish(&d.heat);
        }
        self.costs.record += t.elapsed();
        if snapshot {
            self.last_snapshot = Instant::now();
        }
        self.sampling.adapt(managed_bytes);
        *d.sampling.write().unwrap_or_else(|e| e.into_inner()) = self.sampling.status();
    }

    /// Re-reads placement of processes whose scan is due (also in monitor-only mode:
    /// status and metrics report it), while the worker migrates too.
    fn refresh_placement(&mut self) {
        let d = self.d.clone();
        let topo = d.topology();
        let cfg = d.config();
        let period = if d.mode() == Mode::Tiering {
            SCAN_PERIOD
        } else {
            MONITOR_SCAN_PERIOD
        };
        for p in &d.registry.all() {
            let began = Instant::now();
            if self.next_scan.get(&p.pid).is_some_and(|&due| began < due) {
                continue;
            }
            // The worker may move pages while the query runs, which `scan::apply`
            // allows for; its outcomes reach the table before the scan's result does.
            let t = self.heat.table(p.pid, &cfg);
            let (granule, started) = (t.granule(), t.now_ms(Instant::now()));
            let queried = Instant::now();
            let res = scan::query(p.pid, granule, d.engine.mover().as_ref(), started);
            self.costs.scan_query += queried.elapsed();
            let res = res.map(|q| {
                self.apply_pending(&cfg);
                let t = self.heat.table(p.pid, &cfg);
                let now = t.now_ms(Instant::now());
                scan::apply(&q, t, &topo, now, 2 * period.as_millis() as u32)
            });
            match res {
                Ok(r) => {
                    p.stats.fast_bytes.store(r.fast_bytes, Ordering::Relaxed);
                    p.stats.slow_bytes.store(r.slow_bytes, Ordering::Relaxed);
                    // Pages that changed node without tierd moving them: the kernel's
                    // own tiering, or memory freed and refaulted elsewhere. Only logged:
                    // status reports the kernel's knobs, which say who else may move.
                    if r.foreign_moves > 0 {
                        tracing::debug!(
                            pid = p.pid,
                            granules = r.foreign_moves,
                            "pages changed node without tierd"
                        );
                    }
                }
                Err(e) => tracing::debug!(pid = p.pid, error = %e, "placement scan failed"),
            }
            self.next_scan
                .insert(p.pid, next_scan(began, began.elapsed(), period));
        }
    }

    /// Plans from the heat tables and hands the plan to the worker (superseding the one
    /// it runs, if any) unless the worker has not taken the last one yet.
    fn decide(&mut self) {
        let d = self.d.clone();
        let cfg = d.config();
        let topo = d.topology();
        let procs = d.registry.all();
        if self.tx.is_full() {
            return; // the worker has not taken the last plan yet
        }
        let t = Instant::now();
        let nodes: Vec<NodeState> = topo
            .nodes
            .iter()
            .map(|n| NodeState {
                id: n.id,
                tier: n.tier,
                total_bytes: n.total_bytes,
                free_bytes: d.topo_src.free_bytes(n.id).unwrap_or(n.free_bytes),
                demote_to: topo.demotion_target(n.id),
                promote_to: topo.promotion_target(n.id),
            })
            .collect();
        // Nodes whose granules are residents the plan may demote; on the others (the
        // lowest tier) only promotion candidates matter to it.
        let uppers: Vec<u32> = nodes
            .iter()
            .filter(|n| n.demote_to.is_some())
            .map(|n| n.id)
            .collect();
        let k = Knobs {
            recent_ms: crate::heat::streak_gap_ms(&cfg),
            ..Knobs::from_config(&cfg.policy, cfg.policy.interval_ms)
        };
        let inputs: Vec<ProcInput> = {
            procs
                .iter()
                .filter_map(|p| {
                    self.heat.get(p.pid).map(|t| ProcInput {
                        pid: p.pid,
                        policy: p.policy,
                        priority: p.priority,
                        granules: views(t, |node, idle_ms, flags| {
                            uppers.contains(&node)
                                || policy::may_promote(p.policy, idle_ms, flags, &k)
                        }),
                    })
                })
                .collect()
        };
        // Size the plan to `plan_horizon_ms` of migration at the measured rate, so the
        // next plan sees fresh heat instead of executing a stale one for many seconds.
        // Half of it each way: on a full node every promotion comes with a demotion.
        // Before the first plan ran the rate is unknown: start at the floor.
        let cap = (self.throughput.load(Ordering::Relaxed) as f64
            * cfg.policy.plan_horizon_ms as f64
            / 2000.0) as u64;
        let cap = cap.max(PLAN_FLOOR_BYTES);
        let knobs = Knobs {
            promote_budget_bytes: k.promote_budget_bytes.min(cap),
            demote_budget_bytes: k.demote_budget_bytes.min(cap),
            ..k
        };
        self.costs.views += t.elapsed();
        let t = Instant::now();
        let (budgets, scope_names) = budgets(&d);
        let plan = policy::plan_with_budgets(&inputs, &nodes, &knobs, &budgets);
        d.scopes.set_resolved(
            scope_names
                .into_iter()
                .zip(plan.scope_budgets.iter())
                .map(|(name, &(max, min))| (name, (max, (min > 0).then_some(min))))
                .collect(),
        );
        self.costs.plan += t.elapsed();
        self.costs.plans += 1;
        tracing::debug!(
            granules = inputs.iter().map(|p| p.granules.len()).sum::<usize>(),
            promote = plan.moves.iter().filter(|m| m.dir == policy::Direction::Promote).count(),
            demote = plan.moves.iter().filter(|m| m.dir == policy::Direction::Demote).count(),
            thresholds = ?plan.thresholds,
            "plan"
        );
        if plan.moves.is_empty() {
            return;
        }
        let promote_floor: BTreeMap<u32, u64> = nodes
            .iter()
            .map(|n| (n.id, cfg.policy.promote_watermark.of(n.total_bytes)))
            .collect();
        let job = worker::PlanJob {
            moves: plan.moves,
            promote_floor,
            pingpong_window_ms: cfg.policy.pingpong_window_ms as u32,
        };
        // A plan sent while the worker runs one supersedes it at the worker's next step.
        if self.tx.try_send(job).is_err() {
            tracing::debug!("the migration worker is gone: plan dropped");
        }
    }
}

/// When the next placement scan of a process is due, given when the last one `began`
/// and how long it `took`: every `period`, or less often when a scan is slow (a process
/// with a large or fragmented address space under a slow CPU), so that scans leave the
/// loop time for the drains, the plans and the heat commands. Heat commands wait while a
/// scan runs: a loop that scanned back to back would fill their queue and stall the
/// hint poller, the clients' rings filling meanwhile.
fn next_scan(began: Instant, took: Duration, period: Duration) -> Instant {
    began + period.max(took * SCAN_DUTY)
}

/// The scopes' budgets as the scope watcher last published them, and their names (in
/// the order of [`policy::Budgets::scopes`]).
fn budgets(d: &Daemon) -> (policy::Budgets, Vec<Arc<str>>) {
    let states = d.scopes.states();
    let mut b = policy::Budgets::default();
    let mut names = Vec::new();
    for (i, st) in states.iter().enumerate() {
        b.scopes.push(policy::ScopeBudget {
            fast_budget: st.def.fast_budget,
            fast_min: st.def.fast_min,
            promote: !st.memory.near_limit(crate::scope::NEAR_LIMIT_BYTES),
            promote_factor: st.psi.factor(),
            fast_nodes: st.gpu_nodes.clone(),
        });
        names.push(st.def.name.clone());
        for &pid in &st.pids {
            b.of_pid.insert(pid, i);
        }
    }
    (b, names)
}

/// The policy's view of a heat table: granules of known placement for which
/// `keep(node, idle_ms, flags)` holds (their heat is computed only then).
fn views(t: &HeatTable, keep: impl Fn(u32, u64, u8) -> bool) -> Vec<GranuleView> {
    t.views(t.now_ms(Instant::now()), keep).collect()
}
