//! The set of sampling backends the daemon runs, with the adaptive rate controller.
//! The tiering loop owns one `SamplingSet` and calls it every drain interval.

use super::AccessSample;
use tierd_api::SamplingStatus;
use tierd_config::SamplingConfig;

pub struct SamplingSet {
    cfg: SamplingConfig,
}

impl SamplingSet {
    /// Tries every configured backend; the ones that cannot run report why in status.
    pub fn new(cfg: &SamplingConfig) -> SamplingSet {
        SamplingSet { cfg: cfg.clone() }
    }

    /// Tracks exactly these pids from now on (track new ones, untrack gone ones).
    pub fn sync_targets(&mut self, pids: &[i32]) {
        let _ = pids;
    }

    /// Appends what every active backend saw since the last drain.
    pub fn drain(&mut self, out: &mut Vec<AccessSample>) {
        let _ = out;
    }

    /// One rate-controller step; `managed_bytes` sizes the overhead budget.
    pub fn adapt(&mut self, managed_bytes: u64) {
        let _ = managed_bytes;
    }

    pub fn status(&self) -> SamplingStatus {
        SamplingStatus {
            budget_pct_per_gb: self.cfg.budget_pct_per_gb,
            ..SamplingStatus::default()
        }
    }

    /// Applies a reloaded `[sampling]` section.
    pub fn set_config(&mut self, cfg: &SamplingConfig) {
        self.cfg = cfg.clone();
    }
}
