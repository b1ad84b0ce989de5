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
