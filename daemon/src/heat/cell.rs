//! One granule's state and the arithmetic of its decaying heat. The fields are private
//! to `heat/`: only [`super::HeatTable`]'s operations write them, everyone else reads
//! through the getters or the planner's [`super::GranuleView`].

/// One granule's state. 24 bytes; with the map's key and control byte about 33 bytes
/// per granule: 0.05% of a 64 KiB granule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Heat at `updated_ms` (decays from there).
    pub(super) heat: f32,
    pub(super) updated_ms: u32,
    /// Last time an access was recorded, ms since the table's epoch.
    pub(super) last_access_ms: u32,
    /// Start of the current run of consecutive accessed intervals ([`NEVER`]: never
    /// accessed).
    pub(super) hot_since_ms: u32,
    /// Last time tierd moved this granule or found it stuck (0: never).
    pub(super) last_move_ms: u32,
    /// Node last seen on (-1 unknown).
    pub(super) node: i16,
    /// Moves within the current ping-pong window.
    pub(super) moves: u8,
    /// Client hint flags and STUCK ([`super::flags`]).
    pub(super) flags: u8,
}

/// `hot_since_ms` of a granule never accessed.
pub(super) const NEVER: u32 = u32::MAX;

impl Default for Cell {
    fn default() -> Self {
        Cell {
            heat: 0.0,
            updated_ms: 0,
            last_access_ms: 0,
            hot_since_ms: NEVER,
            last_move_ms: 0,
            node: -1,
            moves: 0,
            flags: 0,
        }
    }
}

impl Cell {
    /// The node the granule was last seen on (by a scan or after a move).
    pub fn node(&self) -> Option<u32> {
        (self.node >= 0).then_some(self.node as u32)
    }

    /// [`super::flags`] bits.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Moves within the current ping-pong window.
    pub fn moves(&self) -> u8 {
        self.moves
    }

    /// When tierd last moved the granule (or found it stuck), in the table's clock.
    pub fn last_move_ms(&self) -> Option<u32> {
        (self.last_move_ms != 0).then_some(self.last_move_ms)
    }

    /// Start of the current hot streak, if the granule was ever accessed.
    pub fn hot_since_ms(&self) -> Option<u32> {
        (self.hot_since_ms != NEVER).then_some(self.hot_since_ms)
    }

    /// Whether an access was recorded at or after `ms`.
    pub(super) fn accessed_since(&self, ms: u32) -> bool {
        self.hot_since_ms != NEVER && self.last_access_ms >= ms
    }
}

/// Shortest streak `HeatTable::rate_heat` corrects for: one observation in a 250 ms
/// streak stands for at most 6.3x its heat (1 s half-life).
pub const MIN_CORRECTED_STREAK_MS: u32 = 250;

/// The factor heat keeps after `dt_ms` with a half-life of `half_life_ms`.
pub(super) fn decay(dt_ms: f64, half_life_ms: f64) -> f64 {
    (-dt_ms / half_life_ms * std::f64::consts::LN_2).exp()
}

/// `c` is in a hot streak at `now_ms`: accessed before, last within `gap_ms`.
pub(super) fn in_streak(c: &Cell, now_ms: u32, gap_ms: u32) -> bool {
    c.hot_since_ms != NEVER && now_ms.saturating_sub(c.last_access_ms) <= gap_ms
}

/// [`decay`] remembered per whole-ms interval: the cells updated by one drain share
/// their update time, so a table's cells need few distinct factors at any moment, and
/// `exp` is the costliest part of a drain or a plan (tens of ns natively, about a
/// microsecond under emulation, for tens of thousands of cells). Direct-mapped: a slot
/// holds the last interval that hashed to it.
#[derive(Debug)]
pub(super) struct DecayMemo {
    half_life_ms: f64,
    slots: Box<[(u32, f64)]>,
}

const MEMO_SLOTS: usize = 1024;

impl DecayMemo {
    pub(super) fn new(half_life_ms: f64) -> DecayMemo {
        DecayMemo {
            half_life_ms,
            slots: vec![(u32::MAX, 0.0); MEMO_SLOTS].into_boxed_slice(),
        }
    }

    /// [`decay`] of `dt_ms`, exactly.
    pub(super) fn factor(&mut self, dt_ms: u32) -> f64 {
        let slot = &mut self.slots[dt_ms as usize % MEMO_SLOTS];
        if slot.0 != dt_ms {
            *slot = (dt_ms, decay(dt_ms as f64, self.half_life_ms));
        }
        slot.1
    }

    /// `c`'s heat at `now_ms`.
    pub(super) fn decayed(&mut self, c: &Cell, now_ms: u32) -> f64 {
        c.heat as f64 * self.factor(now_ms.saturating_sub(c.updated_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decay_memo_gives_exactly_the_computed_factor() {
        let mut m = DecayMemo::new(1000.0);
        // Intervals that share memo slots, in both orders, and repeats.
        let dts = [
            0,
            1,
            100,
            1124,
            100,
            2148,
            1,
            1025,
            999_999,
            u32::MAX - 1,
            0,
        ];
        for _ in 0..2 {
            for &dt in &dts {
                assert_eq!(m.factor(dt), decay(dt as f64, 1000.0), "dt {dt}");
            }
        }
    }

    #[test]
    fn a_new_cell_decodes_to_nothing_known() {
        let c = Cell::default();
        assert_eq!(
            (c.node(), c.last_move_ms(), c.hot_since_ms(), c.flags()),
            (None, None, None, 0)
        );
        assert!(!c.accessed_since(0));
    }
}
