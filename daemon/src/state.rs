//! The daemon's shared state: config in force, topology, mode, the registry of managed
//! processes, heat tables, the migration engine and sampling status. One `Arc<Daemon>`
//! is shared by the control socket, the client protocol, the tiering loop and the
//! operations endpoints; each takes short locks only. The heat tables are not here:
//! the tiering loop owns them, and `heat` is the port to send it edits and reads.

use crate::kernel;
use crate::migrate::{MigrationEngine, Mover};
use crate::ops::liveness::Liveness;
use crate::persist::managed::Journal;
use crate::registry::Registry;
use crate::topology::{Topology, TopologySource};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tierd_api::{KernelTiering, NodeInfo, ReloadReply, SamplingStatus, TiersReply};
use tierd_config::Config;

/// Whether tierd moves pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Tiering,
    /// Observe only, and why.
    MonitorOnly(String),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Tiering => "tiering",
            Mode::MonitorOnly(_) => "monitor-only",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Mode::Tiering => "several memory tiers found".into(),
            Mode::MonitorOnly(r) => r.clone(),
        }
    }

    /// Decides the mode from the topology and config.
    pub fn decide(topo: &Topology, cfg: &Config) -> Mode {
        if cfg.daemon.monitor_only {
            Mode::MonitorOnly("daemon.monitor_only = true in the config".into())
        } else if topo.nodes.len() < 2 {
            Mode::MonitorOnly(format!(
                "only {} NUMA node with memory: nothing to tier",
                topo.nodes.len()
            ))
        } else if !topo.is_tiered() {
            Mode::MonitorOnly(format!(
                "{} NUMA nodes but all in one memory tier",
                topo.nodes.len()
            ))
        } else {
            Mode::Tiering
        }
    }
}

pub struct Daemon {
    config: RwLock<Arc<Config>>,
    pub config_path: Option<PathBuf>,
    pub topo_src: Arc<dyn TopologySource>,
    topology: RwLock<Arc<Topology>>,
    mode: RwLock<Mode>,
    pub registry: Registry,
    pub engine: Arc<MigrationEngine>,
    /// The heat tables, owned by the tiering loop; other threads send edits and reads.
    pub heat: crate::heat::HeatPort,
    pub sampling: RwLock<SamplingStatus>,
    /// The kernel's tiering knobs as found at start.
    pub kernel_found: KernelTiering,
    pub started: Instant,
    pub shutdown: AtomicBool,
    /// Bumped on every applied reload; loops re-read the config when it changes.
    pub generation: AtomicU64,
    /// Connected protocol clients (set by the client server).
    pub clients: AtomicU64,
    /// Hint-ring totals over all protocol clients, past and present (fed by the
    /// protocol; read by the metrics endpoint).
    pub hints: HintCounters,
    /// Heartbeats of the worker threads (the watchdog and `status.health` read them).
    pub liveness: Liveness,
    /// Processes managed with `tierctl manage`, written down for a restart.
    pub journal: Journal,
    /// The kernel's access rule for requests that name a pid, and the per-user ceilings.
    pub access: crate::access::Access,
    pub ceilings: crate::access::ceilings::Ceilings,
    /// Scopes (config and runtime) and what the scope watcher last found.
    pub scopes: crate::scope::Scopes,
}

/// Hint-ring counters summed over every client region, including closed ones.
#[derive(Debug, Default)]
pub struct HintCounters {
    /// Ring entries clients dropped because their ring was full.
    pub dropped_entries: AtomicU64,
    /// Hinted blocks clients dropped because their ring was full.
    pub dropped_blocks: AtomicU64,
}

impl Daemon {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        topo_src: Arc<dyn TopologySource>,
        mover: Arc<dyn Mover>,
    ) -> Result<Arc<Daemon>, crate::topology::TopologyError> {
        let topology = topo_src.read()?;
        let mode = Mode::decide(&topology, &config);
        let engine = Arc::new(MigrationEngine::new(
            mover,
            topo_src.clone(),
            config.migrate.clone(),
        ));
        Ok(Arc::new(Daemon {
            config: RwLock::new(Arc::new(config)),
            config_path,
            topo_src,
            topology: RwLock::new(Arc::new(topology)),
            mode: RwLock::new(mode),
            registry: Registry::default(),
            engine,
            heat: crate::heat::HeatPort::default(),
            sampling: RwLock::new(SamplingStatus::default()),
            kernel_found: kernel::read(std::path::Path::new("/")),
            started: Instant::now(),
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            hints: HintCounters::default(),
            liveness: Liveness::default(),
            journal: Journal::default(),
            access: crate::access::Access::default(),
            ceilings: Default::default(),
            scopes: crate::scope::Scopes::default(),
        }))
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn mode(&self) -> Mode {
        self.mode.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the topology into the daemon's copy (free memory changes constantly;
    /// nodes may be hotplugged). Called once a second by the state-tree writer
    /// (`ops::snapshot`), the copy's one refresher.
    pub fn refresh_topology(&self) -> Result<Arc<Topology>, crate::topology::TopologyError> {
        let t = Arc::new(self.topo_src.read()?);
        *self.topology.write().unwrap_or_else(|p| p.into_inner()) = t.clone();
        Ok(t)
    }

    /// `tierctl tiers`: a fresh read of the source, so free bytes are current; the
    /// daemon's copy is left as it is.
    pub fn tiers(&self) -> Result<TiersReply, crate::topology::TopologyError> {
        Ok(tiers_reply(&self.topo_src.read()?))
    }

    /// Applies a new config (already parsed and validated). Keeps managed processes,
    /// heat and clients; returns what changed.
    pub fn apply_config(&self, new: Config) -> ReloadReply {
        let old = self.config();
        let changes = old.diff(&new);
        self.engine.set_config(new.migrate.clone());
        let topo = self.topology();
        *self.mode.write().unwrap_or_else(|p| p.into_inner()) = Mode::decide(&topo, &new);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Edited `[[scope]]` entries apply at once, not at the watcher's next pass.
        self.scopes.wake_watcher();
        for c in &changes {
            tracing::info!(change = %c, "config reloaded");
        }
        ReloadReply {
            applied: true,
            path: self.config_path.as_ref().map(|p| p.display().to_string()),
            changes,
        }
    }

    /// Records that client hints of `pid` were applied at `at`.
    pub fn note_hints(&self, pid: i32, at: Instant) {
        if let Some(p) = self.registry.get(pid) {
            let ms = at.saturating_duration_since(self.started).as_millis() as u64;
            p.stats.last_hint_ms.store(ms + 1, Ordering::Relaxed);
        }
    }

    /// Whether the sampling backends should watch `p` at `now`: always, unless it sent
    /// client hints within [`HINT_QUIET_MS`] and `client.sample_hinting_processes` is off.
    pub fn sampled(&self, p: &crate::registry::ManagedProcess, now: Instant) -> bool {
        if self.config().client.sample_hinting_processes {
            return true;
        }
        let last = p.stats.last_hint_ms.load(Ordering::Relaxed);
        let now_ms = now.saturating_duration_since(self.started).as_millis() as u64 + 1;
        last == 0 || now_ms.saturating_sub(last) > HINT_QUIET_MS
    }

    /// Reloads the config file; a bad file is refused and the old config stays.
    pub fn reload(&self) -> Result<ReloadReply, tierd_config::ConfigError> {
        let (cfg, _) = Config::load_default_or(self.config_path.as_deref())?;
        Ok(self.apply_config(cfg))
    }
}

/// A process whose last client hint is more recent than this is not sampled (unless
/// `client.sample_hinting_processes`): its hints are the signal.
pub const HINT_QUIET_MS: u64 = 10_000;

/// The `tiers` reply for a topology.
pub fn tiers_reply(t: &Topology) -> TiersReply {
    TiersReply {
        nodes: t
            .nodes
            .iter()
            .map(|n| NodeInfo {
                node: n.id,
                tier: n.tier,
                memory_tier: n.kernel_tier.map(|k| format!("memory_tier{k}")),
                cpus: n.cpus.clone(),
                total_bytes: n.total_bytes,
                free_bytes: n.free_bytes,
                read_latency_ns: n.perf.read_latency_ns,
                read_bandwidth_mbps: n.perf.read_bandwidth_mbps,
                write_latency_ns: n.perf.write_latency_ns,
                write_bandwidth_mbps: n.perf.write_bandwidth_mbps,
                distances: n.distances.clone(),
            })
            .collect(),
    }
}
