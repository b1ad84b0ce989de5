//! `[sampling]`: which access-sampling backends run, and how fast.

use crate::Invalid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// perf load/store sampling with data addresses (PEBS / IBS), where the CPU has it.
    HwSample,
    /// DAMON virtual-address monitoring, aggregated by a BPF program on
    /// `damon:damon_aggregated`.
    Damon,
    /// User page faults (first touch, NUMA hinting) from `exceptions/page_fault_user`.
    Fault,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Backends to try, in order; each one that can run here runs.
    pub backends: Vec<BackendKind>,
    /// How often the daemon drains the in-kernel maps, ms.
    pub drain_interval_ms: u64,
    /// Raise/lower the sampling rate with uncertainty and overhead.
    pub adaptive: bool,
    /// Overhead budget: percent of one CPU per managed GiB.
    pub budget_pct_per_gb: f64,
    pub damon: DamonConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DamonConfig {
    /// Access-check (sampling) interval, microseconds; adaptive within min/max.
    pub sample_us: u64,
    pub min_sample_us: u64,
    pub max_sample_us: u64,
    /// Aggregation interval, ms.
    pub aggr_ms: u64,
    /// Region-count bounds per monitored process.
    pub min_regions: u32,
    pub max_regions: u32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            backends: vec![
                BackendKind::HwSample,
                BackendKind::Damon,
                BackendKind::Fault,
            ],
            drain_interval_ms: 100,
            adaptive: true,
            budget_pct_per_gb: 2.0,
            damon: DamonConfig::default(),
        }
    }
}

impl Default for DamonConfig {
    fn default() -> Self {
        DamonConfig {
            sample_us: 5_000,
            min_sample_us: 1_000,
            max_sample_us: 50_000,
            aggr_ms: 50,
            min_regions: 200,
            max_regions: 4000,
        }
    }
}

impl SamplingConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.drain_interval_ms == 0 {
            return Err(Invalid::new("sampling.drain_interval_ms", "must be > 0"));
        }
        if !(self.budget_pct_per_gb > 0.0 && self.budget_pct_per_gb <= 100.0) {
            return Err(Invalid::new(
                "sampling.budget_pct_per_gb",
                "must be within (0, 100]",
            ));
        }
        let d = &self.damon;
        if !(d.min_sample_us <= d.sample_us && d.sample_us <= d.max_sample_us)
            || d.min_sample_us == 0
        {
            return Err(Invalid::new(
                "sampling.damon.sample_us",
                "needs 0 < min_sample_us <= sample_us <= max_sample_us",
            ));
        }
        if d.aggr_ms * 1000 < d.sample_us {
            return Err(Invalid::new(
                "sampling.damon.aggr_ms",
                "must be at least one sample interval",
            ));
        }
        if d.min_regions < 3 || d.max_regions < d.min_regions {
            return Err(Invalid::new(
                "sampling.damon.max_regions",
                "needs 3 <= min_regions <= max_regions",
            ));
        }
        Ok(())
    }
}
