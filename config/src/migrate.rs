//! `[migrate]`: the move_pages engine's batch size, rate limit and headroom.

use crate::{Amount, Invalid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrateConfig {
    /// Pages per move_pages(2) call.
    pub batch_pages: usize,
    /// Cap on all migration traffic, MB/s; 0 means no cap.
    pub rate_limit_mbps: u64,
    /// Cap per uid other than root on explicit migration (`migrate` requests, client
    /// PREFETCH / PIN_FAST promotions), MB/s; 0 means no per-uid cap.
    pub max_rate_mbps_per_uid: u64,
    /// Never fill a destination node below this much free memory.
    pub free_watermark: Amount,
    /// Move a transparent huge page as one unit (one address per 2 MiB).
    pub thp_aware: bool,
    /// Cap on the latency-first lane (client PREFETCH / PIN_FAST promotions), MB/s;
    /// 0 means no cap. Its own bucket: a prefetch never waits behind background
    /// migrations' `rate_limit_mbps`.
    pub prefetch_rate_mbps: u64,
    /// PSI backoff: while `/proc/pressure/memory` "some avg10" is above this share
    /// (percent of time some task stalled on memory), the background migration rate
    /// is halved each second, down to `psi_min_rate_pct`; 0 turns the backoff off.
    pub psi_threshold_pct: f64,
    /// The floor of the PSI backoff, percent of the full rate.
    pub psi_min_rate_pct: f64,
}

impl Default for MigrateConfig {
    fn default() -> Self {
        MigrateConfig {
            batch_pages: 1024,
            rate_limit_mbps: 0,
            max_rate_mbps_per_uid: 1000,
            free_watermark: Amount::Percent(2.0),
            thp_aware: true,
            prefetch_rate_mbps: 0,
            psi_threshold_pct: 0.0,
            psi_min_rate_pct: 10.0,
        }
    }
}

impl MigrateConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !(1..=65536).contains(&self.batch_pages) {
            return Err(Invalid::new(
                "migrate.batch_pages",
                format!("{} is outside 1..=65536", self.batch_pages),
            ));
        }
        if !(0.0..=100.0).contains(&self.psi_threshold_pct) {
            return Err(Invalid::new(
                "migrate.psi_threshold_pct",
                format!("{} is outside 0..=100 (0 = off)", self.psi_threshold_pct),
            ));
        }
        if !(1.0..=100.0).contains(&self.psi_min_rate_pct) {
            return Err(Invalid::new(
                "migrate.psi_min_rate_pct",
                format!("{} is outside 1..=100", self.psi_min_rate_pct),
            ));
        }
        Ok(())
    }
}
