//! Move accounting shapes: why tierd moved pages ([`MoveCause`]) and how many it moved
//! per source tier, destination tier and cause ([`MoveCount`], `status.moves`).
//!
//! The daemon's policy gives every move its cause when it plans it; the migration
//! engine counts what the kernel really moved under that cause (docs/operations.md,
//! "Accounting").

use serde::{Deserialize, Serialize};

/// Why tierd moved a page: the `cause` label of `tierd_tier_migrated_pages_total` and
/// of `status.moves`. Names are a contract: new causes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveCause {
    /// The policy promoted data that sampled accesses showed hot.
    Sampling,
    /// The policy acted on a client hint (PIN_FAST / PREFETCH up, COLD down).
    Hint,
    /// A client's PREFETCH / PIN_FAST moved at once on the latency-first lane.
    Prefetch,
    /// The policy demoted to keep (or make) free room on a faster node: the
    /// demotion watermark, room for a promotion, or the idle watermark.
    Headroom,
    /// The process's policy places the data whatever its heat (`static`'s tier,
    /// `lru-tiered`'s cold age).
    Policy,
    /// `tierctl migrate`.
    Migrate,
    /// A scope held more of the fast tier than its `fast_budget`.
    Budget,
}

impl MoveCause {
    /// Every cause, in the order of the enum.
    pub const ALL: [MoveCause; 7] = [
        MoveCause::Sampling,
        MoveCause::Hint,
        MoveCause::Prefetch,
        MoveCause::Headroom,
        MoveCause::Policy,
        MoveCause::Migrate,
        MoveCause::Budget,
    ];

    /// The name used in JSON, metrics labels and the state tree.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveCause::Sampling => "sampling",
            MoveCause::Hint => "hint",
            MoveCause::Prefetch => "prefetch",
            MoveCause::Headroom => "headroom",
            MoveCause::Policy => "policy",
            MoveCause::Migrate => "migrate",
            MoveCause::Budget => "budget",
        }
    }
}

/// Pages tierd moved from one tier to another for one cause, since it started
/// (`status.moves`). Pages are base pages of [`crate::page_size`]: a transparent huge
/// page counts as 512 on x86-64, as the kernel's `pgmigrate_success` counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveCount {
    /// Tier rank the pages were on (0 fastest).
    pub from_tier: u32,
    /// Tier rank they were moved to.
    pub to_tier: u32,
    pub cause: MoveCause,
    pub pages: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_names_match_their_json() {
        for c in MoveCause::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }
}
