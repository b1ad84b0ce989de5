//! Promotion/demotion policies: pure decisions over heat and tier state.
//!
//! Called by the tiering loop every `policy.interval_ms` with a snapshot of every
//! managed process's granules ([`GranuleView`]) and every node's capacity
//! ([`NodeState`]); returns the moves to make ([`Plan`]). No syscalls here, so the
//! policy is unit-tested on synthetic heat traces (`tests.rs`).
//!
//! The shape follows TPP (ASPLOS'23): proactive demotion keeps a free headroom
//! (`demote_watermark`) on every upper-tier node so promotions and new allocations land
//! there, promotions never take a node below `promote_watermark`, and only pages hot
//! for `hot_threshold_ms` are promoted. From Chameleon's characterization comes the
//! hot/warm/cold picture: a capacity-aware heat threshold from the histogram decides
//! what "fits" the fast tier (promote what fits, hottest first), and warm pages already
//! there are left alone (hysteresis) rather than churned. Per-granule history bounds
//! ping-pong. Policies (`tpp`, `lru-tiered`, `static`, `off`) differ only in which
//! granules are eligible and how they rank (`classify.rs`); capacity planning per node
//! is shared (`plan.rs`).

mod budget;
#[cfg(test)]
mod budget_tests;
mod classify;
#[cfg(all(test, feature = "hwloc"))]
mod gpu_tests;
mod plan;
#[cfg(test)]
mod psi_tests;
#[cfg(test)]
mod tests;

pub use budget::{Budgets, ScopeBudget};
pub use classify::may_promote;
pub use plan::{plan, plan_with_budgets};

use tierd_config::PolicyName;

pub use tierd_api::MoveCause;

pub use crate::heat::GranuleView;

/// One managed process.
#[derive(Debug, Clone)]
pub struct ProcInput {
    pub pid: i32,
    pub policy: PolicyName,
    pub priority: i32,
    pub granules: Vec<GranuleView>,
}

/// A node's capacity as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeState {
    pub id: u32,
    pub tier: u32,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Where this node's pages go when demoted / promoted (one tier at a time).
    pub demote_to: Option<u32>,
    pub promote_to: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Promote,
    Demote,
}

/// Move one granule of one process to a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    pub pid: i32,
    pub addr: u64,
    pub bytes: u64,
    pub from: u32,
    pub to: u32,
    pub dir: Direction,
    /// Why the planner moves it (what the engine counts the move under).
    pub cause: MoveCause,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Demotions first (they make the room promotions use), then promotions.
    pub moves: Vec<Move>,
    /// The capacity-aware heat threshold used per upper node (for status/debugging).
    pub thresholds: Vec<(u32, f64)>,
    /// Each scope's fast-tier budget and guaranteed minimum in bytes, as resolved for
    /// this plan (indices of [`Budgets::scopes`]).
    pub scope_budgets: Vec<(Option<u64>, u64)>,
}

/// The policy knobs of one decision, in the units the planner uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    pub demote_watermark: tierd_config::Amount,
    pub promote_watermark: tierd_config::Amount,
    pub hot_threshold_ms: u64,
    /// A granule idle longer than this is not "hot now", whatever its streak.
    pub recent_ms: u64,
    pub cold_age_ms: u64,
    pub min_residency_ms: u64,
    /// A granule whose last move failed (`flags::STUCK`) is not planned again before
    /// this long.
    pub stuck_retry_ms: u64,
    /// Demote data idle `cold_age_ms` while free memory is below this.
    pub idle_demote_watermark: tierd_config::Amount,
    pub hysteresis: f64,
    pub static_tier: u32,
    /// Byte budgets for this tick (rate limit × interval); `u64::MAX` = no cap.
    pub promote_budget_bytes: u64,
    pub demote_budget_bytes: u64,
}

impl Knobs {
    /// From the `[policy]` section and the tick length.
    pub fn from_config(p: &tierd_config::PolicyConfig, tick_ms: u64) -> Knobs {
        let budget = |mbps: u64| {
            if mbps == 0 {
                u64::MAX
            } else {
                mbps * 1_000_000 * tick_ms / 1000
            }
        };
        Knobs {
            demote_watermark: p.demote_watermark,
            promote_watermark: p.promote_watermark,
            hot_threshold_ms: p.hot_threshold_ms,
            recent_ms: 3 * p.hot_threshold_ms.max(1),
            cold_age_ms: p.cold_age_ms,
            min_residency_ms: p.min_residency_ms,
            stuck_retry_ms: p.pingpong_window_ms,
            idle_demote_watermark: p.idle_demote_watermark,
            hysteresis: p.hysteresis,
            static_tier: p.static_tier,
            promote_budget_bytes: budget(p.promote_rate_mbps),
            demote_budget_bytes: budget(p.demote_rate_mbps),
        }
    }
}
