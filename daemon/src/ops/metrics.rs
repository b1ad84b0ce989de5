//! Prometheus (OpenMetrics) text exposition of the daemon's state.
//!
//! Cadence: on demand. Each scrape of `GET /metrics` ([`super::http`]) and each
//! `tierctl metrics` (the control socket's `metrics` command) calls [`render`], which
//! reads the same snapshot `tierctl status` and `tierctl tiers` return and encodes it
//! with `prometheus-client` into a registry built for that scrape. A per-scrape
//! registry is the collector pattern: every value already lives in the daemon's own
//! atomics, so mirroring them into long-lived metric objects would only add a second
//! copy that can drift. Metric names and meanings: `docs/operations.md`.

use crate::state::Daemon;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tierd_api::{NodeInfo, StatusReply};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Everything one scrape exposes, read from the daemon in one go.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub status: StatusReply,
    pub nodes: Vec<NodeInfo>,
    pub page_bytes: u64,
    /// All pages moved by the engine (policy, prefetch and `tierctl migrate`).
    pub moved_pages: u64,
    pub moved_bytes: u64,
    /// Pages the engine failed to move, by errno name.
    pub failed_pages: BTreeMap<String, u64>,
    pub config_generation: u64,
    pub hint_dropped_entries: u64,
    pub hint_dropped_blocks: u64,
    /// Requests naming a pid refused by the kernel's access rule.
    pub access_denied: u64,
    pub priority_refused: u64,
    pub pin_refused_blocks: u64,
    pub prefetch_throttled_blocks: u64,
    /// Pinned regions: relocation requests (blocks) up and down; bytes copied and
    /// bytes re-pointed to shadows instead.
    pub relocation_promote_blocks: u64,
    pub relocation_demote_blocks: u64,
    pub relocation_copied_bytes: u64,
    pub relocation_avoided_bytes: u64,
    /// Pages the engine left out of jobs because they were in pinned regions.
    pub pinned_skipped_pages: u64,
    /// The placement tables' upkeep (`protocol::sweep`): the last full sweep's duration
    /// and blocks, passes and pages queried since start; blocks written from tierd's
    /// own moves and the notices of them dropped.
    pub placement_sweep_seconds: f64,
    pub placement_sweep_blocks: u64,
    pub placement_sweep_passes: u64,
    pub placement_query_pages: u64,
    pub placement_move_blocks: u64,
    pub placement_move_notices_dropped: u64,
}

impl Inputs {
    /// Reads the daemon: the status reply, a fresh topology and the engine counters.
    pub fn read(d: &Daemon) -> Inputs {
        let nodes = match d.tiers() {
            Ok(t) => t.nodes,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the topology");
                Vec::new()
            }
        };
        let c = &d.engine.counters;
        Inputs {
            status: crate::status::status(d),
            nodes,
            page_bytes: d.engine.page_size(),
            moved_pages: c.moved_pages.load(Ordering::Relaxed),
            moved_bytes: c.moved_bytes.load(Ordering::Relaxed),
            failed_pages: c.failed.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            config_generation: d.generation.load(Ordering::Relaxed),
            hint_dropped_entries: d.hints.dropped_entries.load(Ordering::Relaxed),
            hint_dropped_blocks: d.hints.dropped_blocks.load(Ordering::Relaxed),
            relocation_promote_blocks: d.hints.relocation_promote_blocks.load(Ordering::Relaxed),
            relocation_demote_blocks: d.hints.relocation_demote_blocks.load(Ordering::Relaxed),
            relocation_copied_bytes: d.hints.relocation_copied_bytes.load(Ordering::Relaxed),
            relocation_avoided_bytes: d.hints.relocation_avoided_bytes.load(Ordering::Relaxed),
            pinned_skipped_pages: d.engine.pinned.skipped_pages.load(Ordering::Relaxed),
            placement_sweep_seconds: d.placement.last_pass_ms.load(Ordering::Relaxed) as f64
                / 1000.0,
            placement_sweep_blocks: d.placement.last_pass_blocks.load(Ordering::Relaxed),
            placement_sweep_passes: d.placement.passes.load(Ordering::Relaxed),
            placement_query_pages: d.placement.query_pages.load(Ordering::Relaxed),
            placement_move_blocks: d.placement.move_blocks.load(Ordering::Relaxed),
            placement_move_notices_dropped: d
                .placement
                .move_notices_dropped
                .load(Ordering::Relaxed),
            access_denied: d.access.denied.load(Ordering::Relaxed),
            priority_refused: d.ceilings.counters.priority_refused.load(Ordering::Relaxed),
            pin_refused_blocks: d
                .ceilings
                .counters
                .pin_refused_blocks
                .load(Ordering::Relaxed),
            prefetch_throttled_blocks: d
                .ceilings
                .counters
                .prefetch_throttled_blocks
                .load(Ordering::Relaxed),
        }
    }
}

/// Renders the metrics text (served on `metrics.listen` and by `tierctl metrics`).
pub fn render(d: &Daemon) -> String {
    encode_inputs(&Inputs::read(d))
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g = FloatGauge::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A labelled gauge family filled from `rows` of (labels, value).
fn gauge_family(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, f64)>) {
    let f = Family::<Labels, FloatGauge>::default();
    for (l, v) in rows {
        f.get_or_create(&l).set(v);
    }
    reg.register(name, help, f);
}

/// A labelled counter family filled from `rows` of (labels, value).
fn counter_family(reg: &mut Registry, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
    let f = Family::<Labels, Counter>::default();
    for (l, v) in rows {
        f.get_or_create(&l).inc_by(v);
    }
    reg.register(name, help, f);
}

/// Encodes `i` as OpenMetrics text; pure, so it is tested without a daemon.
pub fn encode_inputs(i: &Inputs) -> String {
    let s = &i.status;
    let mut reg = Registry::with_prefix("tierd");

    gauge_family(
        &mut reg,
        "build_info",
        "tierd version (value 1)",
        vec![(labels(&[("version", s.version.clone())]), 1.0)],
    );
    gauge_family(
        &mut reg,
        "mode",
        "1 for the daemon's current mode (tiering or monitor-only)",
        vec![(labels(&[("mode", s.mode.clone())]), 1.0)],
    );
    gauge(
        &mut reg,
        "memory_pressure_some_avg10_pct",
        "/proc/pressure/memory some avg10 as last read (-1: unreadable)",
        s.psi.memory_some_avg10_pct.unwrap_or(-1.0),
    );
    gauge(
        &mut reg,
        "migration_rate_factor",
        "PSI backoff factor on the migration rate (1: full rate)",
        s.psi.rate_factor,
    );
    gauge(
        &mut reg,
        "migration_rate_limit_mbps",
        "Cap on the shared migration bucket now, MB/s (0: none)",
        s.psi.rate_limit_mbps as f64,
    );
    if !s.scopes.is_empty() {
        let per_scope = |v: &dyn Fn(&tierd_api::ScopeStatus) -> f64| {
            s.scopes
                .iter()
                .map(|c| (labels(&[("scope", c.name.clone())]), v(c)))
                .collect()
        };
        gauge_family(
            &mut reg,
            "scope_memory_pressure_some_avg10_pct",
            "A scope cgroup's memory.pressure some avg10 as last read (-1: unreadable or no cgroup)",
            per_scope(&|c| c.memory_pressure_some_avg10_pct.unwrap_or(-1.0)),
        );
        gauge_family(
            &mut reg,
            "scope_psi_rate_factor",
            "A scope's PSI backoff factor on its promotions (1: full rate)",
            per_scope(&|c| c.psi_rate_factor),
        );
        gauge_family(
            &mut reg,
            "scope_fast_bytes",
            "Bytes of a scope's managed processes on the fast tier (tierd's placement scans)",
            per_scope(&|c| c.fast_bytes as f64),
        );
        gauge_family(
            &mut reg,
            "scope_cgroup_fast_bytes",
            "A scope cgroup's bytes on the fast tier by its memory.numa_stat (-1: unknown)",
            per_scope(&|c| c.cgroup_fast_bytes.map_or(-1.0, |b| b as f64)),
        );
    }
    gauge(
        &mut reg,
        "uptime_seconds",
        "Seconds since tierd started",
        s.uptime_s,
    );
    gauge(
        &mut reg,
        "config_generation",
        "Config reloads applied since start",
        i.config_generation as f64,
    );

    // Nodes and tiers.
    let node_rows = |f: fn(&NodeInfo) -> u64| -> Vec<(Labels, f64)> {
        i.nodes
            .iter()
            .map(|n| {
                let l = labels(&[("node", n.node.to_string()), ("tier", n.tier.to_string())]);
                (l, f(n) as f64)
            })
            .collect()
    };
    gauge_family(
        &mut reg,
        "node_total_bytes",
        "Memory of a NUMA node",
        node_rows(|n| n.total_bytes),
    );
    gauge_family(
        &mut reg,
        "node_free_bytes",
        "Free memory of a NUMA node",
        node_rows(|n| n.free_bytes),
    );
    let mut tiers: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for n in &i.nodes {
        let t = tiers.entry(n.tier).or_default();
        t.0 += n.total_bytes;
        t.1 += n.free_bytes;
    }
    let tier_rows = |f: fn(&(u64, u64)) -> u64| -> Vec<(Labels, f64)> {
        tiers
            .iter()
            .map(|(t, v)| (labels(&[("tier", t.to_string())]), f(v) as f64))
            .collect()
    };
    gauge_family(
        &mut reg,
        "tier_total_bytes",
        "Memory of a tier (0 fastest), all its nodes",
        tier_rows(|v| v.0),
    );
    gauge_family(
        &mut reg,
        "tier_free_bytes",
        "Free memory of a tier",
        tier_rows(|v| v.1),
    );
    gauge_family(
        &mut reg,
        "tier_used_bytes",
        "Used memory of a tier (total - free)",
        tier_rows(|v| v.0.saturating_sub(v.1)),
    );

    // Managed processes.
    let proc_labels = |p: &tierd_api::ManagedProc| {
        labels(&[("pid", p.pid.to_string()), ("comm", p.comm.clone())])
    };
    gauge(
        &mut reg,
        "managed_processes",
        "Processes under a tiering policy",
        s.managed.len() as f64,
    );
    let pg = |f: fn(&tierd_api::ManagedProc) -> f64| -> Vec<(Labels, f64)> {
        s.managed.iter().map(|p| (proc_labels(p), f(p))).collect()
    };
    gauge_family(
        &mut reg,
        "process_fast_bytes",
        "Resident bytes of a managed process on tier 0",
        pg(|p| p.fast_bytes as f64),
    );
    gauge_family(
        &mut reg,
        "process_slow_bytes",
        "Resident bytes of a managed process on slower tiers",
        pg(|p| p.slow_bytes as f64),
    );
    gauge_family(
        &mut reg,
        "process_fast_share_ratio",
        "fast / (fast + slow) resident bytes of a managed process",
        pg(|p| p.fast_share),
    );
    gauge_family(
        &mut reg,
        "process_heat_table_bytes",
        "Memory of a managed process's heat table in tierd",
        pg(|p| p.heat_table_bytes as f64),
    );
    let pc = |f: &dyn Fn(&tierd_api::ManagedProc) -> u64| -> Vec<(Labels, u64)> {
        s.managed.iter().map(|p| (proc_labels(p), f(p))).collect()
    };
    counter_family(
        &mut reg,
        "process_promoted_pages",
        "Pages of a managed process promoted by the policy",
        pc(&|p| p.promoted_pages),
    );
    counter_family(
        &mut reg,
        "process_demoted_pages",
        "Pages of a managed process demoted by the policy",
        pc(&|p| p.demoted_pages),
    );
    counter_family(
        &mut reg,
        "process_promoted_bytes",
        "Bytes of a managed process promoted by the policy",
        pc(&|p| p.promoted_pages * i.page_bytes),
    );
    counter_family(
        &mut reg,
        "process_demoted_bytes",
        "Bytes of a managed process demoted by the policy",
        pc(&|p| p.demoted_pages * i.page_bytes),
    );
    counter_family(
        &mut reg,
        "process_pingpong_pages",
        "Pages of a managed process moved more than twice within the ping-pong window",
        pc(&|p| p.pingpong_pages),
    );

    // Migration engine.
    counter(
        &mut reg,
        "migrated_pages",
        "Pages moved by the migration engine (policy, prefetch and tierctl migrate)",
        i.moved_pages,
    );
    counter(
        &mut reg,
        "migrated_bytes",
        "Bytes moved by the migration engine",
        i.moved_bytes,
    );
    counter_family(
        &mut reg,
        "migration_failed_pages",
        "Pages move_pages(2) did not move, by errno",
        i.failed_pages
            .iter()
            .map(|(e, v)| (labels(&[("errno", e.clone())]), *v))
            .collect(),
    );
    let move_rows = |f: fn(&tierd_api::MoveCount) -> u64| -> Vec<(Labels, u64)> {
        s.moves
            .iter()
            .map(|m| {
                let l = labels(&[
                    ("from", m.from_tier.to_string()),
                    ("to", m.to_tier.to_string()),
                    ("cause", m.cause.as_str().to_string()),
                ]);
                (l, f(m))
            })
            .collect()
    };
    counter_family(
        &mut reg,
        "tier_migrated_pages",
        "Base pages tierd moved from tier `from` to tier `to` (0 fastest), by cause",
        move_rows(|m| m.pages),
    );
    counter_family(
        &mut reg,
        "tier_migrated_bytes",
        "Bytes tierd moved from tier `from` to tier `to`, by cause",
        move_rows(|m| m.bytes),
    );
    counter_family(
        &mut reg,
        "kernel_vmstat",
        "Growth of a /proc/vmstat migration counter since tierd started (every mover, tierd included)",
        s.kernel_vmstat
            .iter()
            .map(|(k, v)| (labels(&[("counter", k.clone())]), *v))
            .collect(),
    );

    // Sampling.
    gauge(
        &mut reg,
        "sampling_interval_seconds",
        "Current sampling interval of the active backend",
        s.sampling.interval_ms as f64 / 1000.0,
    );
    gauge(
        &mut reg,
        "sampling_overhead_cpu_ratio",
        "Measured sampling overhead, fraction of one CPU",
        s.sampling.overhead_pct / 100.0,
    );
    gauge(
        &mut reg,
        "sampling_budget_cpu_ratio_per_gib",
        "Configured sampling budget, fraction of one CPU per managed GiB",
        s.sampling.budget_pct_per_gb / 100.0,
    );
    gauge_family(
        &mut reg,
        "sampling_backend_active",
        "1 when a sampling backend runs, 0 when it is off",
        s.sampling
            .backends
            .iter()
            .map(|b| {
                let v = if b.active { 1.0 } else { 0.0 };
                (labels(&[("backend", b.name.clone())]), v)
            })
            .collect(),
    );

    // Protocol clients.
    gauge(
        &mut reg,
        "clients",
        "Connected shared-memory protocol clients",
        s.clients as f64,
    );
    counter(
        &mut reg,
        "hint_ring_dropped_entries",
        "Hint ring entries clients dropped because their ring was full",
        i.hint_dropped_entries,
    );
    counter(
        &mut reg,
        "hint_ring_dropped_blocks",
        "Hinted blocks clients dropped because their ring was full",
        i.hint_dropped_blocks,
    );
    let reloc = Family::<Labels, Counter>::default();
    for (dir, v) in [
        ("promote", i.relocation_promote_blocks),
        ("demote", i.relocation_demote_blocks),
    ] {
        reloc
            .get_or_create(&labels(&[("direction", dir.to_string())]))
            .inc_by(v);
    }
    reg.register(
        "relocation_requests_blocks",
        "Pinned regions: blocks tierd asked their client to move, by direction",
        reloc,
    );
    counter(
        &mut reg,
        "relocation_copied_bytes",
        "Pinned regions: bytes clients copied to serve relocation requests",
        i.relocation_copied_bytes,
    );
    counter(
        &mut reg,
        "relocation_avoided_bytes",
        "Pinned regions: bytes moved by re-pointing to a valid shadow copy (no copy)",
        i.relocation_avoided_bytes,
    );
    counter(
        &mut reg,
        "pinned_skipped_pages",
        "Pages of pinned regions left out of migration jobs (never passed to move_pages)",
        i.pinned_skipped_pages,
    );

    // Placement tables (docs/protocol.md, "Placement table").
    gauge(
        &mut reg,
        "placement_sweep_seconds",
        "Duration of the last full placement sweep: the staleness bound for moves tierd did not make",
        i.placement_sweep_seconds,
    );
    gauge(
        &mut reg,
        "placement_sweep_blocks",
        "Blocks the last full placement sweep read (one page query each)",
        i.placement_sweep_blocks as f64,
    );
    counter(
        &mut reg,
        "placement_sweep_passes",
        "Full placement sweeps over every registered block",
        i.placement_sweep_passes,
    );
    counter(
        &mut reg,
        "placement_query_pages",
        "Pages the placement sweep queried (client.placement_sweep_pages_per_s bounds the rate)",
        i.placement_query_pages,
    );
    counter(
        &mut reg,
        "placement_move_updates_blocks",
        "Placement-table blocks written from tierd's own moves, without a query",
        i.placement_move_blocks,
    );
    counter(
        &mut reg,
        "placement_move_notices_dropped",
        "Notices of tierd's moves dropped because the placement refresher was behind",
        i.placement_move_notices_dropped,
    );

    // Permissions and per-user ceilings (docs/security.md).
    counter(
        &mut reg,
        "access_denied",
        "Control requests refused by the kernel's access rule (ptrace_may_access, READ_REALCREDS)",
        i.access_denied,
    );
    counter(
        &mut reg,
        "priority_refused",
        "manage requests refused for a priority above daemon.max_priority_unprivileged",
        i.priority_refused,
    );
    counter(
        &mut reg,
        "pin_fast_refused_blocks",
        "Blocks of PIN_FAST hints ignored for client.max_pin_fast_bytes_per_uid",
        i.pin_refused_blocks,
    );
    counter(
        &mut reg,
        "prefetch_throttled_blocks",
        "Blocks of PREFETCH / PIN_FAST promotions skipped for migrate.max_rate_mbps_per_uid",
        i.prefetch_throttled_blocks,
    );

    if let Some(nb) = s.kernel.numa_balancing {
        gauge(
            &mut reg,
            "kernel_numa_balancing",
            "/proc/sys/kernel/numa_balancing as found",
            nb as f64,
        );
    }

    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        // Only a fmt::Error from writing into a String, which cannot fail; say so anyway.
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierd_api::{BackendStatus, ManagedProc, SamplingStatus};

    fn node(id: u32, tier: u32, total: u64, free: u64) -> NodeInfo {
        NodeInfo {
            tier_source: "kernel".into(),
            devices: vec![],
            node: id,
            tier,
            memory_tier: None,
            cpus: vec![],
            total_bytes: total,
            free_bytes: free,
            read_latency_ns: None,
            read_bandwidth_mbps: None,
            write_latency_ns: None,
            write_bandwidth_mbps: None,
            distances: vec![],
        }
    }

    fn sample<'a>(
        s: &'a prometheus_parse::Scrape,
        name: &str,
        l: &[(&str, &str)],
    ) -> &'a prometheus_parse::Sample {
        s.samples
            .iter()
            .find(|x| x.metric == name && l.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name} {l:?}"))
    }

    fn value(s: &prometheus_parse::Sample) -> f64 {
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("unexpected value type"),
        }
    }

    #[test]
    fn encodes_tiers_processes_and_failures() {
        let mut i = Inputs {
            nodes: vec![
                node(0, 0, 1000, 400),
                node(1, 1, 3000, 2000),
                node(2, 1, 1000, 1000),
            ],
            page_bytes: 4096,
            moved_pages: 10,
            moved_bytes: 40960,
            config_generation: 2,
            hint_dropped_entries: 5,
            placement_sweep_seconds: 1.5,
            placement_query_pages: 30_000,
            ..Default::default()
        };
        i.failed_pages.insert("EBUSY".into(), 3);
        i.status.mode = "tiering".into();
        i.status.clients = 1;
        i.status.moves = vec![tierd_api::MoveCount {
            from_tier: 1,
            to_tier: 0,
            cause: tierd_api::MoveCause::Sampling,
            pages: 512,
            bytes: 512 * 4096,
        }];
        i.status
            .kernel_vmstat
            .insert("pgmigrate_success".into(), 600);
        i.status.psi.memory_some_avg10_pct = Some(42.5);
        i.status.psi.rate_factor = 0.25;
        i.status.scopes = vec![tierd_api::ScopeStatus {
            name: "llm".into(),
            memory_pressure_some_avg10_pct: Some(31.5),
            psi_rate_factor: 0.5,
            fast_bytes: 1000,
            cgroup_fast_bytes: Some(1200),
            ..Default::default()
        }];
        i.status.managed = vec![ManagedProc {
            pid: 42,
            comm: "kv".into(),
            fast_bytes: 300,
            slow_bytes: 100,
            fast_share: 0.75,
            promoted_pages: 7,
            ..Default::default()
        }];
        i.status.sampling = SamplingStatus {
            backends: vec![BackendStatus {
                name: "damon".into(),
                active: true,
                detail: String::new(),
            }],
            interval_ms: 5,
            overhead_pct: 1.5,
            budget_pct_per_gb: 2.0,
        };
        let text = encode_inputs(&i);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let s = prometheus_parse::Scrape::parse(lines).unwrap();
        let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(
            s.samples.len(),
            sample_lines,
            "every sample line parses:\n{text}"
        );
        assert_eq!(
            value(sample(&s, "tierd_tier_total_bytes", &[("tier", "1")])),
            4000.0
        );
        assert_eq!(
            value(sample(&s, "tierd_tier_used_bytes", &[("tier", "1")])),
            1000.0
        );
        assert_eq!(
            value(sample(&s, "tierd_node_free_bytes", &[("node", "0")])),
            400.0
        );
        assert_eq!(
            value(sample(
                &s,
                "tierd_process_fast_share_ratio",
                &[("pid", "42"), ("comm", "kv")]
            )),
            0.75
        );
        assert_eq!(
            value(sample(
                &s,
                "tierd_process_promoted_bytes_total",
                &[("pid", "42")]
            )),
            7.0 * 4096.0
        );
        assert_eq!(
            value(sample(
                &s,
                "tierd_migration_failed_pages_total",
                &[("errno", "EBUSY")]
            )),
            3.0
        );
        assert_eq!(
            value(sample(&s, "tierd_sampling_overhead_cpu_ratio", &[])),
            0.015
        );
        assert_eq!(
            value(sample(&s, "tierd_hint_ring_dropped_entries_total", &[])),
            5.0
        );
        assert_eq!(value(sample(&s, "tierd_placement_sweep_seconds", &[])), 1.5);
        assert_eq!(
            value(sample(&s, "tierd_placement_query_pages_total", &[])),
            30_000.0
        );
        assert_eq!(value(sample(&s, "tierd_mode", &[("mode", "tiering")])), 1.0);
        let moved = [("from", "1"), ("to", "0"), ("cause", "sampling")];
        assert_eq!(
            value(sample(&s, "tierd_tier_migrated_pages_total", &moved)),
            512.0
        );
        assert_eq!(
            value(sample(&s, "tierd_tier_migrated_bytes_total", &moved)),
            512.0 * 4096.0
        );
        assert_eq!(
            value(sample(
                &s,
                "tierd_kernel_vmstat_total",
                &[("counter", "pgmigrate_success")]
            )),
            600.0
        );
        assert_eq!(value(sample(&s, "tierd_config_generation", &[])), 2.0);
        assert_eq!(
            value(sample(&s, "tierd_memory_pressure_some_avg10_pct", &[])),
            42.5
        );
        assert_eq!(value(sample(&s, "tierd_migration_rate_factor", &[])), 0.25);
        assert_eq!(
            value(sample(
                &s,
                "tierd_scope_memory_pressure_some_avg10_pct",
                &[("scope", "llm")]
            )),
            31.5
        );
        assert_eq!(
            value(sample(
                &s,
                "tierd_scope_psi_rate_factor",
                &[("scope", "llm")]
            )),
            0.5
        );
        let llm = [("scope", "llm")];
        assert_eq!(value(sample(&s, "tierd_scope_fast_bytes", &llm)), 1000.0);
        assert_eq!(
            value(sample(&s, "tierd_scope_cgroup_fast_bytes", &llm)),
            1200.0
        );
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
    }
}
