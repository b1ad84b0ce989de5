//! The heat table: per managed process, heat of each granule (`heat.granule`, 64 KiB
//! by default) with exponential decay, time of last access, the start of the current
//! hot streak, the node it was last seen on and its migration history.
//!
//! Fed by the tiering loop from drained [`crate::sampling::AccessSample`]s, by client
//! hints ([`HeatTable::record`], [`HeatTable::mark`]), by the placement scan
//! ([`HeatTable::note_scanned`], [`HeatTable::retain_resident`]) and by the migration
//! worker ([`HeatTable::note_move`]); read by the policy through [`GranuleView`]s and
//! by `tierctl heat`/`heatmap` through the reports. Only these operations write a
//! [`Cell`]: its fields are private to this module. Pure data: no syscalls,
//! unit-tested here.

mod cell;
mod histogram;
pub mod owner;
mod report;
mod table;

pub use cell::{Cell, MIN_CORRECTED_STREAK_MS};
pub use histogram::Histogram;
pub use owner::{HeatOwner, HeatPort, HeatSummary};
pub use table::{HeatTable, Scanned, Span, MAX_NEW_GRANULES};
use tierd_config::Config;

/// One granule of a managed process as the policy sees it ([`HeatTable::views`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GranuleView {
    pub addr: u64,
    pub bytes: u64,
    pub heat: f64,
    /// Node it is on; granules of unknown placement are not viewed.
    pub node: u32,
    /// Length of the current hot streak, ms (0 when not in a streak).
    pub hot_for_ms: u64,
    /// Time since the last recorded access, ms (`u64::MAX`: never).
    pub idle_ms: u64,
    /// Time since tierd last moved it, ms (`u64::MAX`: never).
    pub since_move_ms: u64,
    /// Moves within the ping-pong window.
    pub moves: u8,
    /// [`flags`] bits, without [`flags::CLIENT`].
    pub flags: u8,
}

/// How long a granule may go without a recorded access and still count as in the same
/// hot streak: at least one heat half-life and three sampling periods. Sampling sees a
/// page that is read a few times a second only now and then (DAMON checks one page per
/// region per sample interval), so a shorter gap would break every streak.
pub fn streak_gap_ms(cfg: &Config) -> u64 {
    let period = cfg
        .sampling
        .drain_interval_ms
        .max(cfg.sampling.damon.aggr_ms);
    cfg.heat.half_life_ms.max(3 * period)
}

/// A heat table as `[heat]` and `[sampling]` configure it.
pub fn new_heat_table(cfg: &Config) -> HeatTable {
    HeatTable::new(
        cfg.heat.granule.0,
        cfg.heat.half_life_ms,
        cfg.heat.history_len,
        streak_gap_ms(cfg) as u32,
    )
}

/// Client-hint flags kept in [`Cell::flags`]; the policy honours them over sampled heat.
pub mod flags {
    /// `PIN_FAST`: keep on tier 0, never demote (until `UNPIN`).
    pub const PIN_FAST: u8 = 1 << 0;
    /// `COLD`: demote soon, ahead of colder-looking sampled granules.
    pub const COLD: u8 = 1 << 1;
    /// `FREE`: contents dead; cheapest placement, never promote.
    pub const FREE: u8 = 1 << 2;
    /// The granule belongs to a client-registered region (hints, not guesses).
    pub const CLIENT: u8 = 1 << 3;
    /// `PREFETCH`: promote now (deadline-driven), then behave as accessed.
    pub const PREFETCH: u8 = 1 << 4;
    /// Not a hint: tierd's last attempt to move the granule left it where it was (its
    /// pages are shared with other processes, pinned, ...); the policy leaves it alone
    /// for a while (`Knobs::stuck_retry_ms`) instead of planning the same move every
    /// tick.
    pub const STUCK: u8 = 1 << 5;
    /// Not a hint: the granule belongs to a pinned client region (`move_pages` cannot
    /// move it). The policy never plans it; the protocol's pinned planner places it by
    /// relocation requests (`protocol::pinned`).
    pub const PINNED: u8 = 1 << 6;
}
