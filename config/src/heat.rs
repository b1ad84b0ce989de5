//! `[heat]`: the heat table's granularity, decay and history.

use crate::{Bytes, Invalid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeatConfig {
    /// Unit of heat tracking (a power of two, at least one page).
    pub granule: Bytes,
    /// Heat halves after this long without accesses.
    pub half_life_ms: u64,
    /// Snapshots kept for `tierctl heatmap`.
    pub history_len: usize,
}

impl Default for HeatConfig {
    fn default() -> Self {
        HeatConfig {
            granule: Bytes(64 << 10),
            half_life_ms: 1000,
            history_len: 120,
        }
    }
}

impl HeatConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let g = self.granule.0;
        if g < 4096 || !g.is_power_of_two() || g > (1 << 30) {
            return Err(Invalid::new(
                "heat.granule",
                format!("{g} must be a power of two between 4KiB and 1GiB"),
            ));
        }
        if self.half_life_ms == 0 {
            return Err(Invalid::new("heat.half_life_ms", "must be > 0"));
        }
        Ok(())
    }
}
