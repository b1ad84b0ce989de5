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
use crate::topology::devices::{self, DeviceError, GpuRef, PciDevice};
use crate::topology::{TierOverlay, TierSource, Topology, TopologySource};
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

    /// Why tiering runs, for a topology in tiering mode: the kernel's tiers or the override.
    pub fn tiering_reason(topo: &Topology) -> &'static str {
        if topo
            .nodes
            .iter()
            .any(|n| n.tier_source == TierSource::Override)
        {
            "memory tiers from [topology] node_tier"
        } else {
            "several memory tiers found"
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
        } else if !topo.is_tiered() && !cfg.topology.node_tier.is_empty() {
            Mode::MonitorOnly(format!(
                "{} NUMA nodes, all in one tier by [topology] node_tier",
                topo.nodes.len()
            ))
        } else if !topo.is_tiered() {
            Mode::MonitorOnly(format!(
                "{} NUMA nodes but the kernel put all in one memory tier (no HMAT/CDAT \
                 performance data?); set [topology] node_tier to rank them",
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
    /// The machine's topology with the `[topology] node_tier` override applied (the
    /// overlay below, as a plain source).
    pub topo_src: Arc<dyn TopologySource>,
    overlay: Arc<TierOverlay>,
    topology: RwLock<Arc<Topology>>,
    /// GPUs and NICs with their local nodes (hwloc, set once at start by main).
    devices: RwLock<Arc<Vec<PciDevice>>>,
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
    /// The placement tables' upkeep: the sweep's progress and tierd's own moves
    /// (written by the protocol; read by the metrics endpoint).
    pub placement: crate::protocol::sweep::PlacementCounters,
    /// Heartbeats of the worker threads (the watchdog and `status.health` read them).
    pub liveness: Liveness,
    /// Processes managed with `tierctl manage`, written down for a restart.
    pub journal: Journal,
    /// The kernel's access rule for requests that name a pid, and the per-user ceilings.
    pub access: crate::access::Access,
    pub ceilings: crate::access::ceilings::Ceilings,
    /// The kernel's migration counters, as growth since this daemon started.
    pub vmstat: crate::vmstat::KernelCounters,
    /// Memory pressure for the migration engine's PSI backoff, read by `tierd-ops`.
    pub pressure: Arc<dyn crate::migrate::pressure::PressureSource>,
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
    /// Pinned regions (`protocol::pinned`): relocation requests written, to a fast
    /// node (promote) and to a slower one (demote).
    pub relocation_promote_blocks: AtomicU64,
    pub relocation_demote_blocks: AtomicU64,
    /// Bytes clients copied to serve MOVED, and bytes they re-pointed to a valid
    /// shadow instead of copying.
    pub relocation_copied_bytes: AtomicU64,
    pub relocation_avoided_bytes: AtomicU64,
}

impl Daemon {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        topo_src: Arc<dyn TopologySource>,
        mover: Arc<dyn Mover>,
    ) -> Result<Arc<Daemon>, crate::topology::TopologyError> {
        let overlay = Arc::new(TierOverlay::new(topo_src));
        overlay.set(config.topology.node_tiers())?;
        let topo_src: Arc<dyn TopologySource> = overlay.clone();
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
            overlay,
            topology: RwLock::new(Arc::new(topology)),
            devices: RwLock::default(),
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
            placement: Default::default(),
            liveness: Liveness::default(),
            journal: Journal::default(),
            access: crate::access::Access::default(),
            ceilings: Default::default(),
            vmstat: crate::vmstat::KernelCounters::new(Box::new(
                crate::vmstat::ProcVmstat::default(),
            )),
            pressure: Arc::new(crate::migrate::pressure::PsiFile::system()),
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

    /// GPUs and NICs found at start (empty without hwloc).
    pub fn devices(&self) -> Arc<Vec<PciDevice>> {
        self.devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the PCI devices (main, once, from hwloc).
    pub fn set_devices(&self, d: Vec<PciDevice>) {
        *self.devices.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(d);
    }

    /// The fast node (tier 0) nearest to a GPU named by PCI address or index, for
    /// placing a scope near its GPU.
    pub fn fast_node_near_gpu(&self, gpu: &GpuRef) -> Result<u32, DeviceError> {
        devices::fast_node_near_gpu(&self.devices(), &self.topology(), gpu)
    }

    /// The fast nodes near a GPU: the fast tier of a scope that names it.
    pub fn fast_nodes_near_gpu(&self, gpu: &GpuRef) -> Result<Vec<u32>, DeviceError> {
        devices::fast_nodes_near_gpu(&self.devices(), &self.topology(), gpu)
    }

    /// Checks that every `[[scope]]` naming a GPU names one of this machine's
    /// (at start, after the devices are known, and on reload).
    pub fn check_scope_gpus(&self, cfg: &Config) -> Result<(), String> {
        for s in &cfg.scopes {
            if let Some(g) = &s.gpu {
                self.fast_nodes_near_gpu(&GpuRef::parse(g))
                    .map_err(|e| format!("scope {:?}: gpu {g:?}: {e}", s.name))?;
            }
        }
        Ok(())
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
        Ok(tiers_reply(&self.topo_src.read()?, &self.devices()))
    }

    /// Applies a new config (already parsed and validated, its `[topology]` already in
    /// force: see [`Daemon::reload`]). Keeps managed processes, heat and clients;
    /// returns what changed.
    pub fn apply_config(&self, new: Config) -> ReloadReply {
        let old = self.config();
        let changes = old.diff(&new);
        self.engine.set_config(new.migrate.clone());
        let topo = match self.refresh_topology() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reload: cannot re-read the topology");
                self.topology()
            }
        };
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

    /// Reloads the config file; a bad file (or a `[topology] node_tier` that does not
    /// fit the machine, or a scope naming a GPU it does not have) is refused and the
    /// old config stays.
    pub fn reload(&self) -> Result<ReloadReply, tierd_config::ConfigError> {
        let (cfg, _) = Config::load_default_or(self.config_path.as_deref())?;
        self.overlay.set(cfg.topology.node_tiers()).map_err(|e| {
            tierd_config::ConfigError::Invalid {
                path: self.config_path.clone().unwrap_or_default(),
                line: 0,
                key: "topology.node_tier".into(),
                reason: match e {
                    crate::topology::TopologyError::Override(r) => r,
                    e => e.to_string(),
                },
            }
        })?;
        self.check_scope_gpus(&cfg)
            .map_err(|reason| tierd_config::ConfigError::Invalid {
                path: self.config_path.clone().unwrap_or_default(),
                line: 0,
                key: "scope.gpu".into(),
                reason,
            })?;
        Ok(self.apply_config(cfg))
    }
}

/// A process whose last client hint is more recent than this is not sampled (unless
/// `client.sample_hinting_processes`): its hints are the signal.
pub const HINT_QUIET_MS: u64 = 10_000;

/// The `tiers` reply for a topology and the PCI devices near its nodes.
pub fn tiers_reply(t: &Topology, devs: &[PciDevice]) -> TiersReply {
    let gpus = devices::gpus(devs);
    let device_info = |d: &PciDevice| tierd_api::DeviceInfo {
        kind: d.kind.as_str().into(),
        pci: d.pci.clone(),
        gpu_index: gpus.iter().position(|g| g.pci == d.pci).map(|i| i as u32),
        vendor_id: d.vendor_id,
        device_id: d.device_id,
        class_id: d.class_id,
        name: d.name.clone(),
    };
    TiersReply {
        nodes: t
            .nodes
            .iter()
            .map(|n| NodeInfo {
                node: n.id,
                tier: n.tier,
                tier_source: n.tier_source.as_str().into(),
                memory_tier: n.kernel_tier.map(|k| format!("memory_tier{k}")),
                cpus: n.cpus.clone(),
                total_bytes: n.total_bytes,
                free_bytes: n.free_bytes,
                read_latency_ns: n.perf.read_latency_ns,
                read_bandwidth_mbps: n.perf.read_bandwidth_mbps,
                write_latency_ns: n.perf.write_latency_ns,
                write_bandwidth_mbps: n.perf.write_bandwidth_mbps,
                distances: n.distances.clone(),
                devices: devices::near_node(devs, n.id).map(device_info).collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::fake::FakeMover;
    use crate::topology::fake::FakeTopology;

    /// A two-node machine the kernel put in one memory tier (no HMAT), its config in a file.
    fn no_hmat(config: &str) -> (tempfile::TempDir, Arc<Daemon>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tierd.toml");
        std::fs::write(&path, config).unwrap();
        let cfg = Config::load(&path).unwrap();
        let topo = Arc::new(FakeTopology::new(&[
            (0, &[0, 1], 1 << 30, 0),
            (1, &[], 4 << 30, 0),
        ]));
        let d = Daemon::new(cfg, Some(path), topo, Arc::new(FakeMover::new())).unwrap();
        (dir, d)
    }

    const OVERRIDE: &str = "[topology]\nnode_tier = { 0 = 0, 1 = 1 }\n";

    #[test]
    fn one_kernel_tier_is_monitor_only_and_says_how_to_fix_it() {
        let (_dir, d) = no_hmat("");
        let Mode::MonitorOnly(why) = d.mode() else {
            panic!("tiering on one tier");
        };
        assert!(
            why.contains("one memory tier") && why.contains("node_tier"),
            "{why}"
        );
        let t = d.tiers().unwrap();
        assert!(t
            .nodes
            .iter()
            .all(|n| n.tier == 0 && n.tier_source == "kernel"));
    }

    #[test]
    fn the_override_tiers_at_start_and_on_reload() {
        let (_dir, d) = no_hmat(OVERRIDE);
        assert_eq!(d.mode(), Mode::Tiering);
        assert_eq!(
            Mode::tiering_reason(&d.topology()),
            "memory tiers from [topology] node_tier"
        );
        let t = d.tiers().unwrap();
        assert_eq!(
            (t.nodes[1].tier, t.nodes[1].tier_source.as_str()),
            (1, "override")
        );

        let (dir, d) = no_hmat("");
        assert!(matches!(d.mode(), Mode::MonitorOnly(_)));
        std::fs::write(dir.path().join("tierd.toml"), OVERRIDE).unwrap();
        let r = d.reload().unwrap();
        assert!(
            r.changes.iter().any(|c| c.contains("topology.node_tier")),
            "{r:?}"
        );
        assert_eq!(d.mode(), Mode::Tiering);
        assert_eq!(d.topology().demotion_target(0), Some(1));
        // Taken away again: back to the kernel's one tier.
        std::fs::write(dir.path().join("tierd.toml"), "").unwrap();
        d.reload().unwrap();
        assert!(matches!(d.mode(), Mode::MonitorOnly(_)));
    }

    #[test]
    fn an_override_naming_an_unknown_node_is_refused_and_the_old_config_stays() {
        let (dir, d) = no_hmat(OVERRIDE);
        let bad = "[topology]\nnode_tier = { 0 = 0, 1 = 1, 7 = 1 }\n";
        std::fs::write(dir.path().join("tierd.toml"), bad).unwrap();
        let e = d.reload().unwrap_err().to_string();
        assert!(
            e.contains("topology.node_tier") && e.contains("node 7 does not exist"),
            "{e}"
        );
        assert_eq!(d.mode(), Mode::Tiering);
        assert_eq!(d.config().topology.node_tiers().len(), 2);
        // At start, the same file is an error naming the node.
        let cfg = Config::load(&dir.path().join("tierd.toml")).unwrap();
        let topo = Arc::new(FakeTopology::new(&[(0, &[0], 1 << 30, 0)]));
        let e = Daemon::new(cfg, None, topo, Arc::new(FakeMover::new()))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("node 1 does not exist"), "{e}");
    }

    #[test]
    fn a_scope_naming_a_gpu_the_machine_lacks_is_refused_on_reload_and_a_known_one_applies() {
        use crate::topology::devices::{DeviceKind, PciDevice};
        let (dir, d) = no_hmat(OVERRIDE);
        d.set_devices(vec![PciDevice {
            kind: DeviceKind::Gpu,
            pci: "0000:17:00.0".into(),
            class_id: 0x0302,
            vendor_id: 0x10de,
            device_id: 0x2330,
            name: None,
            nodes: vec![0],
        }]);
        let scope = |gpu: &str| {
            format!("{OVERRIDE}[[scope]]\nname = \"llm\"\ncomm = \"^x$\"\ngpu = \"{gpu}\"\n")
        };
        std::fs::write(dir.path().join("tierd.toml"), scope("0000:3b:00.0")).unwrap();
        let e = d.reload().unwrap_err().to_string();
        assert!(
            e.contains("scope.gpu")
                && e.contains(
                    "scope \"llm\": gpu \"0000:3b:00.0\": no GPU 0000:3b:00.0 (GPUs: 0000:17:00.0)"
                ),
            "{e}"
        );
        assert!(d.config().scopes.is_empty(), "the old config stays");
        std::fs::write(dir.path().join("tierd.toml"), scope("0")).unwrap();
        d.reload().unwrap();
        assert_eq!(d.config().scopes[0].gpu.as_deref(), Some("0"));
        assert_eq!(d.fast_nodes_near_gpu(&GpuRef::Index(0)).unwrap(), vec![0]);
    }
}
