//! Page-access sampling backends.
//!
//! Each backend aggregates accesses **in the kernel** (BPF maps) and the tiering loop
//! drains them every `sampling.drain_interval_ms` through the [`Sampler`] trait: no
//! per-event trip to user space. Backends that cannot run on this machine say why in
//! their [`BackendStatus`]. See `docs/sampling.md` for the choice of signals.
//!
//! Layout: [`abi`] mirrors `ebpf/tierd_bpf.h`; [`bpf`] loads the embedded objects and
//! wraps their maps; one module per backend ([`damon`], [`fault`], [`hw`]; the last two
//! share [`pages`]); [`rate`] is the adaptive rate controller and [`cputime`] measures
//! its overhead input; [`tracefs`] reads tracepoint record layouts; [`set`] runs them
//! all for the tiering loop.

pub mod abi;
pub mod bpf;
pub mod cputime;
pub mod damon;
pub mod fault;
pub mod hw;
pub mod pages;
pub mod rate;
mod set;
pub mod tracefs;

pub use set::SamplingSet;
use tierd_api::BackendStatus;
use tierd_config::SamplingConfig;

/// Stops the kernel-side sampling tierd started that outlives its file descriptors
/// (its kdamond). `main` calls it at shutdown; BPF programs detach with the process.
pub fn release_kernel_resources() {
    damon::sysfs::release_all();
}

/// Stops the kdamonds a previous tierd left running (recorded in `kdamonds_file`,
/// `<state_dir>/persist/kdamonds.json`) and records this tierd's there from now on.
/// Called by `main` at start, under the instance lock, before the samplers open.
pub fn recover_kernel_resources(kdamonds_file: &std::path::Path) -> damon::ledger::Recovery {
    damon::ledger::global().recover(kdamonds_file)
}

/// Accesses seen in `[start, end)` of process `pid` since the last drain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessSample {
    pub pid: i32,
    pub start: u64,
    pub end: u64,
    /// Access weight: for DAMON the fraction of checks that found the region accessed
    /// (0..=1); for event samplers the number of sampled events.
    pub weight: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("{backend}: {msg}")]
    Unavailable { backend: &'static str, msg: String },
    #[error("{backend}: pid {pid}: {msg}")]
    Track {
        backend: &'static str,
        pid: i32,
        msg: String,
    },
    #[error("{backend}: drain: {msg}")]
    Drain { backend: &'static str, msg: String },
}

/// One access-sampling backend.
pub trait Sampler: Send {
    fn name(&self) -> &'static str;
    /// Start sampling a process.
    fn track(&mut self, pid: i32) -> Result<(), SamplerError>;
    /// Stop sampling a process (it exited or was unmanaged).
    fn untrack(&mut self, pid: i32);
    /// Appends what was seen since the last drain.
    fn drain(&mut self, out: &mut Vec<AccessSample>) -> Result<(), SamplerError>;
    /// Active or not, and why.
    fn status(&self) -> BackendStatus;
    /// Current sampling period, µs (for status and the rate controller).
    fn period_us(&self) -> u64 {
        0
    }
    /// Asks for a new sampling period; returns the one applied.
    fn set_period_us(&mut self, period_us: u64) -> u64 {
        period_us
    }
    /// Kernel threads sampling for this backend; their CPU time is its overhead.
    fn kthreads(&self) -> Vec<i32> {
        Vec::new()
    }
    /// Applies a reloaded `[sampling]` section (attributes other than the rate).
    fn reconfigure(&mut self, _cfg: &SamplingConfig) {}
}
