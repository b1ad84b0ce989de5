//! The heat table: per managed process, heat of each granule (`heat.granule`, 64 KiB
//! by default) with exponential decay, time of last access, the start of the current
//! hot streak, the node it was last seen on and its migration history.
//!
//! Fed by the tiering loop from drained [`crate::sampling::AccessSample`]s and client
//! hints; read by the policy (ranking, histogram) and by `tierctl heat`/`heatmap`.
//! Pure data: no syscalls, unit-tested here.

mod histogram;
mod table;

pub use histogram::Histogram;
pub use table::{Cell, HeatTable};

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
}
