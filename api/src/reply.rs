//! Reply payloads: the stable `--json` shapes of `tierctl`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `tierctl tiers --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TiersReply {
    pub nodes: Vec<NodeInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub node: u32,
    /// Rank of the node's memory tier, 0 fastest.
    pub tier: u32,
    /// The kernel's tier directory name (`memory_tier4`), if the kernel has tiers.
    pub memory_tier: Option<String>,
    pub cpus: Vec<u32>,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub read_latency_ns: Option<u64>,
    pub read_bandwidth_mbps: Option<u64>,
    #[serde(default)]
    pub write_latency_ns: Option<u64>,
    #[serde(default)]
    pub write_bandwidth_mbps: Option<u64>,
    /// SLIT distances to every node, in node order.
    #[serde(default)]
    pub distances: Vec<u32>,
    /// Where `tier` came from: `kernel` (its memory tiers, or its default without
    /// them) or `override` (`[topology] node_tier` in the config).
    #[serde(default)]
    pub tier_source: String,
    /// GPUs and NICs local to this node (hwloc's PCI locality).
    #[serde(default)]
    pub devices: Vec<DeviceInfo>,
}

/// A GPU or NIC near a node (`tiers.nodes[].devices`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceInfo {
    /// `gpu` (PCI class 0x03xx) or `nic` (0x02xx).
    pub kind: String,
    /// PCI address, `dddd:bb:dd.f`.
    pub pci: String,
    /// For GPUs, the index in PCI bus order (`CUDA_DEVICE_ORDER=PCI_BUS_ID`).
    pub gpu_index: Option<u32>,
    pub vendor_id: u16,
    pub device_id: u16,
    pub class_id: u16,
    pub name: Option<String>,
}

/// `tierctl placement --json`: resident bytes per node, keyed by node id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlacementReply {
    pub pid: i32,
    pub nodes: BTreeMap<String, u64>,
}

/// `tierctl migrate --json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MigrateReply {
    pub requested_pages: u64,
    pub moved_pages: u64,
    /// Pages not moved, by errno name (`EBUSY`, `EFAULT`, `ENOENT`, ...).
    pub failed_pages: BTreeMap<String, u64>,
    pub bytes: u64,
    pub seconds: f64,
    /// Huge pages among the moved pages, each counted once.
    #[serde(default)]
    pub huge_pages: u64,
    /// Why the job stopped early, if it did (`process exited`, `headroom`, ...).
    #[serde(default)]
    pub stopped: Option<String>,
    /// Pages already on the destination: neither moved nor failed.
    #[serde(default)]
    pub already_pages: u64,
}

/// `tierctl manage/unmanage --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManageReply {
    pub pid: i32,
    pub policy: String,
    pub priority: i32,
    pub managed: bool,
}

/// One managed process in `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ManagedProc {
    pub pid: i32,
    pub comm: String,
    pub policy: String,
    pub priority: i32,
    pub fast_bytes: u64,
    pub slow_bytes: u64,
    /// fast_bytes / (fast_bytes + slow_bytes), 0 when nothing is resident.
    pub fast_share: f64,
    pub promoted_pages: u64,
    pub demoted_pages: u64,
    pub promotions_per_s: f64,
    pub demotions_per_s: f64,
    /// Pages that moved more than twice within the ping-pong window.
    pub pingpong_pages: u64,
    /// The kernel's own tiering is also moving this process's pages.
    pub kernel_tiering_active: bool,
    /// Memory of the process's heat table in the daemon, bytes.
    #[serde(default)]
    pub heat_table_bytes: u64,
    /// The sampling backends watch it (false: it sends client hints, which drive its
    /// placement; see `client.sample_hinting_processes`).
    #[serde(default = "yes")]
    pub sampled: bool,
    /// The scope that manages it (absent: managed by pid or by a client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

fn yes() -> bool {
    true
}

/// A sampling backend as `status` reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    pub name: String,
    pub active: bool,
    /// Why the backend is off, or what it attached to.
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SamplingStatus {
    pub backends: Vec<BackendStatus>,
    /// Current sampling interval of the active backend, ms.
    pub interval_ms: u64,
    /// Measured sampling overhead, percent of one CPU.
    pub overhead_pct: f64,
    /// Configured budget, percent of one CPU per managed GB.
    pub budget_pct_per_gb: f64,
}

/// `tierctl status --json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusReply {
    pub version: String,
    /// `tiering` or `monitor-only`.
    pub mode: String,
    /// Why the daemon is in this mode, in words.
    pub mode_reason: String,
    pub uptime_s: f64,
    pub tiers: u32,
    pub nodes: u32,
    pub config_path: Option<String>,
    pub managed: Vec<ManagedProc>,
    pub sampling: SamplingStatus,
    /// The kernel's tiering knobs as tierd found them.
    pub kernel: KernelTiering,
    #[serde(default)]
    pub clients: u64,
    /// Whether tierd's worker threads make progress (what the systemd watchdog is fed
    /// on); absent from replies of older daemons.
    #[serde(default)]
    pub health: Health,
    /// Pages tierd moved since it started, per source tier, destination tier and cause.
    #[serde(default)]
    pub moves: Vec<crate::MoveCount>,
    /// Growth of the kernel's migration counters since tierd started (`/proc/vmstat`:
    /// `pgmigrate_*`, `pgpromote_*`, `pgdemote_*`, `numa_*` but the allocation ones,
    /// `thp_migration_*`, `compact_*`), by every mover: tierd's moves are among them.
    #[serde(default)]
    pub kernel_vmstat: BTreeMap<String, u64>,
    /// The PSI backoff on the migration rate (`migrate.psi_threshold_pct`).
    #[serde(default)]
    pub psi: PsiStatus,
    /// Scopes (config and runtime) and their processes.
    #[serde(default)]
    pub scopes: Vec<ScopeStatus>,
}

/// `status.psi`: memory pressure and what it does to the migration rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PsiStatus {
    /// `/proc/pressure/memory` "some avg10" as last read (null: not readable).
    pub memory_some_avg10_pct: Option<f64>,
    /// `migrate.psi_threshold_pct` (0: backoff off).
    pub threshold_pct: f64,
    /// The factor on the full migration rate, 1 without pressure.
    pub rate_factor: f64,
    /// The shared migration bucket's cap now, MB/s (0: none).
    pub rate_limit_mbps: u64,
    /// Measured move_pages throughput, MB/s (the full rate when no cap is configured).
    pub measured_mbps: f64,
}

/// One scope in `status` (and the reply of `manage_scope` / `unmanage_scope`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScopeStatus {
    pub name: String,
    /// `cgroup`, `unit` or `comm`.
    pub kind: String,
    /// The cgroup path, unit name or regex.
    pub selector: String,
    /// `config` or `runtime` (added with tierctl).
    pub origin: String,
    pub policy: String,
    pub priority: i32,
    /// The cgroup the scope resolved to (cgroup and unit scopes), if it exists now.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Why the scope has no processes, if it cannot be resolved (`no cgroup ...`).
    #[serde(default)]
    pub problem: Option<String>,
    pub pids: Vec<i32>,
    /// Fast-tier cap and guaranteed minimum in bytes (resolved against the fast tier).
    #[serde(default)]
    pub fast_budget_bytes: Option<u64>,
    #[serde(default)]
    pub fast_min_bytes: Option<u64>,
    /// Bytes of the scope's processes on the fast tier (tierd's placement scans).
    #[serde(default)]
    pub fast_bytes: u64,
    /// The cgroup's `memory.max` / `memory.high` (null: `max` or no cgroup).
    #[serde(default)]
    pub memory_max_bytes: Option<u64>,
    #[serde(default)]
    pub memory_high_bytes: Option<u64>,
    /// The cgroup's `memory.current`.
    #[serde(default)]
    pub memory_current_bytes: Option<u64>,
    /// The cgroup is near `memory.high`/`memory.max`: tierd promotes none of its pages.
    #[serde(default)]
    pub near_limit: bool,
    /// The cgroup's bytes (anon + file) on each node, from its `memory.numa_stat` as
    /// last read: the kernel's view, which also counts page cache and processes tierd
    /// does not manage (empty: no cgroup, a comm scope, or not readable).
    #[serde(default)]
    pub cgroup_node_bytes: BTreeMap<u32, u64>,
    /// Of those, the bytes on the fast tier's nodes: to reconcile with `fast_bytes`
    /// (null when `cgroup_node_bytes` is empty).
    #[serde(default)]
    pub cgroup_fast_bytes: Option<u64>,
    /// The GPU the scope names (`gpu`): an index (`"3"`) or a PCI address
    /// (`"0000:3b:00.0"`, lower case, with its domain).
    #[serde(default)]
    pub gpu: Option<String>,
    /// The fast node(s) near that GPU: the scope's fast tier (empty: the whole fast
    /// tier, or the GPU is not found; then `problem` says why).
    #[serde(default)]
    pub gpu_nodes: Vec<u32>,
    /// The scope cgroup's `memory.pressure` "some avg10" as last read, percent (null:
    /// not readable, or a comm scope).
    #[serde(default)]
    pub memory_pressure_some_avg10_pct: Option<f64>,
    /// The PSI backoff's factor on the scope's promotions (1: full rate), stepped like
    /// the machine's (`migrate.psi_threshold_pct`) on the cgroup's pressure.
    #[serde(default = "full_rate")]
    pub psi_rate_factor: f64,
    /// Whether tierd manages it now (false in the reply of `unmanage_scope`).
    pub managed: bool,
}

fn full_rate() -> f64 {
    1.0
}

/// Liveness of tierd's worker threads (`status.health`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// Every watched thread beat within `stall_after_ms`.
    pub ok: bool,
    /// A thread silent for longer is stalled.
    pub stall_after_ms: u64,
    pub threads: Vec<ThreadHealth>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ok: true,
            stall_after_ms: 0,
            threads: Vec::new(),
        }
    }
}

/// One watched thread in [`Health`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadHealth {
    /// Thread name (`tierd-tiering`, `tierd-migrate`).
    pub name: String,
    /// Milliseconds since its last heartbeat.
    pub silent_ms: u64,
    /// The thread returned (it should run as long as the daemon).
    pub ended: bool,
    /// Silent for longer than `stall_after_ms`, or ended.
    pub stalled: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelTiering {
    /// `/proc/sys/kernel/numa_balancing` (0, 1, 2, 3), if readable.
    pub numa_balancing: Option<u32>,
    /// `/sys/kernel/mm/numa/demotion_enabled`, if present.
    pub demotion_enabled: Option<bool>,
}

/// `tierctl heat --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeatReply {
    pub pid: i32,
    pub regions: Vec<HeatRegion>,
    /// Address x time heat, oldest first, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HeatSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeatRegion {
    pub start: u64,
    pub end: u64,
    pub heat: f64,
    /// Node the region was last seen on; null when unknown or mixed.
    pub node: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeatSnapshot {
    /// Seconds since the process became managed.
    pub t_s: f64,
    pub regions: Vec<HeatRegion>,
}

/// `tierctl config show --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigReply {
    pub path: Option<String>,
    pub toml: String,
}

/// `tierctl reload --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadReply {
    pub applied: bool,
    pub path: Option<String>,
    /// What changed, one line per key.
    pub changes: Vec<String>,
}

/// `tierctl metrics --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsReply {
    pub text: String,
}
