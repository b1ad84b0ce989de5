//! Scopes: every process of a cgroup, a systemd unit or with a matching command name,
//! present and future, managed with the scope's policy and priority, and (see
//! [`crate::policy::Budgets`]) held within the scope's fast-tier budget.
//!
//! Scopes come from the config (`[[scope]]`, adopted again at every start and
//! reload) and from `tierctl manage --cgroup/--unit/--comm` (runtime scopes, kept in
//! `daemon.scopes_file` by [`crate::persist::scopes`] so a restart adopts them too).
//! The `tierd-scopes` thread ([`watch`]) resolves every scope about every 500 ms (and
//! at once after a change): new processes are managed, processes that left the scope
//! or exited are dropped, and the result is published as [`ScopeState`]s for status,
//! the state tree and the tiering loop. A process managed by pid (`tierctl manage
//! --pid`) or by a protocol client is left as it is; a process in two scopes belongs
//! to the first (config scopes in file order, then runtime ones by name).
//!
//! A scope may name its GPU (`gpu`): each pass resolves it to the fast node(s) near
//! that GPU ([`crate::topology::devices::fast_nodes_near_gpu`]), the scope's fast tier
//! for the planner. Each pass also reads the cgroup's `memory.pressure` and steps the
//! scope's own PSI backoff ([`ScopePsi`]), which scales down its promotions.

pub mod psi;
pub mod source;
pub mod watch;

use crate::registry::Registry;
use crate::topology::devices::{DeviceError, GpuRef};
pub use psi::ScopePsi;
use source::{CgroupMemory, ScopeSource, SysSource};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::Instant;
use tierd_config::{Amount, Config, PolicyName, ScopeConfig, Selector};

/// Resolves a GPU to the fast nodes near it (the daemon's devices and topology; a
/// fixed answer in tests).
pub type GpuNodes<'a> = &'a dyn Fn(&GpuRef) -> Result<Vec<u32>, DeviceError>;

/// A cgroup whose usage is this close to its `memory.high`/`memory.max` gets no
/// promotions: a migration allocates the new page before it frees the old one, and
/// must not be what pushes the cgroup into reclaim.
pub const NEAR_LIMIT_BYTES: u64 = 16 << 20;

/// Where a scope was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Runtime,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Runtime => "runtime",
        }
    }
}

/// One scope's definition, checked.
#[derive(Debug, Clone)]
pub struct ScopeDef {
    pub name: Arc<str>,
    pub selector: Selector,
    comm: Option<regex::Regex>,
    pub policy: PolicyName,
    pub priority: i32,
    pub fast_budget: Option<Amount>,
    pub fast_min: Option<Amount>,
    /// The GPU the scope names, if any.
    pub gpu: Option<GpuRef>,
    pub origin: Origin,
}

impl ScopeDef {
    /// Checks `c`; an unset policy is `default_policy`.
    pub fn new(
        c: &ScopeConfig,
        origin: Origin,
        default_policy: PolicyName,
    ) -> Result<ScopeDef, String> {
        c.check()?;
        let selector = c.selector()?;
        let comm = match &selector {
            Selector::Comm(r) => Some(regex::Regex::new(r).map_err(|e| e.to_string())?),
            _ => None,
        };
        Ok(ScopeDef {
            name: Arc::from(c.name.as_str()),
            selector,
            comm,
            policy: c.policy.unwrap_or(default_policy),
            priority: c.priority,
            fast_budget: c.fast_budget,
            fast_min: c.fast_min,
            gpu: c.gpu.as_deref().map(GpuRef::parse),
            origin,
        })
    }
}

/// A scope as the last pass of the watcher found it.
#[derive(Debug, Clone)]
pub struct ScopeState {
    pub def: Arc<ScopeDef>,
    /// The cgroup it resolved to (cgroup and unit scopes).
    pub cgroup: Option<String>,
    /// Why it has no processes, when it cannot be resolved.
    pub problem: Option<String>,
    /// The processes it manages now.
    pub pids: Vec<i32>,
    /// Its cgroup's memory files (default for comm scopes).
    pub memory: CgroupMemory,
    /// The fast nodes near its GPU: its fast tier (empty: the whole fast tier).
    pub gpu_nodes: Vec<u32>,
    /// Its cgroup's memory pressure and the backoff on its promotions.
    pub psi: ScopePsi,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("scope {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("scope {name} is defined in the config file: change it there")]
    InConfig { name: String },
    #[error("no runtime scope named {name}")]
    NoSuchScope { name: String },
}

/// Per scope name: its fast-tier budget and guaranteed minimum in bytes.
pub type ResolvedBudgets = HashMap<Arc<str>, (Option<u64>, Option<u64>)>;

/// The scopes: runtime definitions (written by the control handlers), the watcher's
/// published states and the budgets the tiering loop resolved.
pub struct Scopes {
    source: Arc<dyn ScopeSource>,
    runtime: Mutex<BTreeMap<String, ScopeConfig>>,
    /// `daemon.scopes_file`, once main enabled writing it.
    file: OnceLock<PathBuf>,
    states: RwLock<Arc<Vec<ScopeState>>>,
    /// Fast-tier budget and minimum in bytes per scope, as the last plan resolved them.
    resolved: RwLock<ResolvedBudgets>,
    /// Set (and notified) to make the watcher run a pass now.
    wake: (Mutex<bool>, Condvar),
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes::with_source(Arc::new(SysSource::default()))
    }
}

impl std::fmt::Debug for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scopes").finish_non_exhaustive()
    }
}

impl Scopes {
    pub fn with_source(source: Arc<dyn ScopeSource>) -> Scopes {
        Scopes {
            source,
            runtime: Mutex::new(BTreeMap::new()),
            file: OnceLock::new(),
            states: RwLock::new(Arc::new(Vec::new())),
            resolved: RwLock::new(HashMap::new()),
            wake: (Mutex::new(false), Condvar::new()),
        }
    }

    pub fn source(&self) -> &dyn ScopeSource {
        self.source.as_ref()
    }

    fn runtime(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ScopeConfig>> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the runtime scopes a previous tierd kept (called by main before the
    /// watcher starts) and writes every later change to `file`.
    pub fn enable_file(&self, file: PathBuf, kept: Vec<ScopeConfig>) {
        let mut rt = self.runtime();
        for c in kept {
            rt.insert(c.name.clone(), c);
        }
        let _ = self.file.set(file);
    }

    fn save(&self, rt: &BTreeMap<String, ScopeConfig>) {
        if let Some(path) = self.file.get() {
            let list: Vec<ScopeConfig> = rt.values().cloned().collect();
            if let Err(e) = crate::persist::scopes::save(path, &list) {
                tracing::warn!(error = %e, "runtime scopes not saved: a restart will not adopt them");
            }
        }
    }

    /// Adds (or replaces) runtime scope `c`. A cgroup scope's cgroup must exist.
    pub fn add(&self, c: ScopeConfig, cfg: &Config) -> Result<Arc<ScopeDef>, ScopeError> {
        let invalid = |reason: String| ScopeError::Invalid {
            name: c.name.clone(),
            reason,
        };
        if cfg.scopes.iter().any(|s| s.name == c.name) {
            return Err(ScopeError::InConfig { name: c.name });
        }
        let def = ScopeDef::new(&c, Origin::Runtime, cfg.policy.default_policy).map_err(invalid)?;
        if let Selector::Cgroup(p) = &def.selector {
            self.source
                .cgroup_pids(p)
                .map_err(|e| invalid(e.to_string()))?;
        }
        let mut rt = self.runtime();
        rt.insert(c.name.clone(), c);
        self.save(&rt);
        drop(rt);
        self.wake_watcher();
        Ok(Arc::new(def))
    }

    /// Removes runtime scope `name`; its processes are dropped at the watcher's next
    /// pass (run at once).
    pub fn remove(&self, name: &str, cfg: &Config) -> Result<ScopeConfig, ScopeError> {
        if cfg.scopes.iter().any(|s| s.name == name) {
            return Err(ScopeError::InConfig { name: name.into() });
        }
        let mut rt = self.runtime();
        let c = rt
            .remove(name)
            .ok_or(ScopeError::NoSuchScope { name: name.into() })?;
        self.save(&rt);
        drop(rt);
        self.wake_watcher();
        Ok(c)
    }

    /// Config scopes in file order, then runtime ones by name. A scope that does not
    /// check (a runtime one written by an older tierd) is logged and left out.
    pub fn defs(&self, cfg: &Config) -> Vec<Arc<ScopeDef>> {
        let rt: Vec<ScopeConfig> = self.runtime().values().cloned().collect();
        let cfg_scopes = cfg.scopes.iter().map(|c| (c, Origin::Config));
        let rt_scopes = rt
            .iter()
            .filter(|c| !cfg.scopes.iter().any(|s| s.name == c.name))
            .map(|c| (c, Origin::Runtime));
        cfg_scopes
            .chain(rt_scopes)
            .filter_map(
                |(c, o)| match ScopeDef::new(c, o, cfg.policy.default_policy) {
                    Ok(d) => Some(Arc::new(d)),
                    Err(e) => {
                        tracing::warn!(scope = %c.name, error = %e, "scope ignored");
                        None
                    }
                },
            )
            .collect()
    }

    /// The states the watcher published last.
    pub fn states(&self) -> Arc<Vec<ScopeState>> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Budget and minimum in bytes of scope `name`, as the last plan resolved them.
    pub fn resolved(&self, name: &str) -> (Option<u64>, Option<u64>) {
        self.resolved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    /// Written by the tiering loop after each plan.
    pub fn set_resolved(&self, r: ResolvedBudgets) {
        *self.resolved.write().unwrap_or_else(|p| p.into_inner()) = r;
    }

    pub fn wake_watcher(&self) {
        let (m, c) = &self.wake;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        c.notify_all();
    }

    /// Waits up to `timeout` or until [`Scopes::wake_watcher`].
    fn wait(&self, timeout: std::time::Duration) {
        let (m, c) = &self.wake;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (mut g, _) = c
            .wait_timeout_while(g, timeout, |woken| !*woken)
            .unwrap_or_else(|p| p.into_inner());
        *g = false;
    }

    /// One pass: resolves every scope, manages its new processes and drops those that
    /// left it (or whose scope is gone); publishes and returns the states. `own_pid`
    /// (tierd) is never managed.
    pub fn reconcile(
        &self,
        registry: &Registry,
        cfg: &Config,
        own_pid: i32,
        gpus: GpuNodes<'_>,
    ) -> Arc<Vec<ScopeState>> {
        self.reconcile_at(registry, cfg, own_pid, gpus, Instant::now())
    }

    /// [`Scopes::reconcile`] at `now` (the PSI backoff's clock).
    pub fn reconcile_at(
        &self,
        registry: &Registry,
        cfg: &Config,
        own_pid: i32,
        gpus: GpuNodes<'_>,
        now: Instant,
    ) -> Arc<Vec<ScopeState>> {
        let before = self.states();
        let mut claimed: HashMap<i32, Arc<ScopeDef>> = HashMap::new();
        let mut states = Vec::new();
        for def in self.defs(cfg) {
            let (cgroup, found) = self.resolve(&def);
            let (mut pids, mut problem) = match found {
                Ok(p) => (p, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            // A GPU that went away (a runtime scope kept by an older tierd, or hwloc
            // unavailable): the scope keeps the whole fast tier and says why.
            let gpu_nodes = match def.gpu.as_ref().map(gpus) {
                None => Vec::new(),
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    let why = format!("gpu: {e}; its fast tier is the whole fast tier");
                    problem = Some(match problem {
                        Some(p) => format!("{p}; {why}"),
                        None => why,
                    });
                    Vec::new()
                }
            };
            pids.retain(|&p| p != own_pid && !claimed.contains_key(&p));
            for &p in &pids {
                claimed.insert(p, def.clone());
            }
            let memory = cgroup
                .as_deref()
                .map(|c| self.source.memory(c))
                .unwrap_or_default();
            let mut psi = before
                .iter()
                .find(|s| s.def.name == def.name)
                .map(|s| s.psi)
                .unwrap_or_default();
            let pressure = cgroup
                .as_deref()
                .and_then(|c| self.source.memory_pressure(c).ok());
            psi.step(pressure, now, &cfg.migrate);
            states.push(ScopeState {
                def,
                cgroup,
                problem,
                pids,
                memory,
                gpu_nodes,
                psi,
            });
        }
        // Drop what left its scope (or whose scope went) first, then adopt.
        for p in registry.all() {
            let Some(s) = p.scope.as_deref() else {
                continue;
            };
            if claimed.get(&p.pid).is_none_or(|d| &*d.name != s) && registry.unmanage_from(p.pid, s)
            {
                tracing::info!(pid = p.pid, scope = s, "left its scope: no longer managed");
            }
        }
        for st in &mut states {
            let def = &st.def;
            st.pids.retain(|&pid| match registry.get(pid) {
                Some(p) if !p.pidfd.exited() && p.scope.is_none() => false,
                Some(p)
                    if !p.pidfd.exited()
                        && p.policy == def.policy
                        && p.priority == def.priority =>
                {
                    true
                }
                _ => match registry.manage_in(pid, def.policy, def.priority, Some(def.name.clone())) {
                    Ok(p) => {
                        tracing::info!(pid, comm = %p.comm, scope = %def.name, "managed as part of its scope");
                        true
                    }
                    // Exited between the listing and the pidfd.
                    Err(_) => false,
                },
            });
        }
        let states = Arc::new(states);
        *self.states.write().unwrap_or_else(|p| p.into_inner()) = states.clone();
        states
    }

    /// The cgroup a scope resolves to, and its processes (or why there are none).
    fn resolve(&self, def: &ScopeDef) -> (Option<String>, Result<Vec<i32>, String>) {
        match &def.selector {
            Selector::Cgroup(p) => (
                Some(p.clone()),
                self.source.cgroup_pids(p).map_err(|e| e.to_string()),
            ),
            Selector::Unit(u) => match self.source.unit_cgroup(u) {
                Ok(cg) => {
                    let pids = self.source.cgroup_pids(&cg).map_err(|e| e.to_string());
                    (Some(cg), pids)
                }
                Err(e) => (None, Err(e.to_string())),
            },
            Selector::Comm(_) => match &def.comm {
                Some(re) => (None, Ok(self.source.comm_pids(re))),
                None => (None, Err("no regex".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests;
