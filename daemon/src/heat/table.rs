//! Granule heat with lazy exponential decay.

use super::Histogram;
use std::time::Instant;
use tierd_api::{HeatRegion, HeatSnapshot};

/// One granule's state. 24 bytes; with the map's key and control byte about 33 bytes
/// per granule: 0.05% of a 64 KiB granule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Heat at `updated_ms` (decays from there).
    pub heat: f32,
    pub updated_ms: u32,
    /// Last time an access was recorded, ms since the table's epoch.
    pub last_access_ms: u32,
    /// Start of the current run of consecutive accessed intervals.
    pub hot_since_ms: u32,
    /// Last time the policy moved this granule.
    pub last_move_ms: u32,
    /// Node last seen on (-1 unknown).
    pub node: i16,
    /// Moves within the current ping-pong window.
    pub moves: u8,
    /// Client hint flags (see `hint` constants in the policy).
    pub flags: u8,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            heat: 0.0,
            updated_ms: 0,
            last_access_ms: 0,
            hot_since_ms: u32::MAX,
            last_move_ms: 0,
            node: -1,
            moves: 0,
            flags: 0,
        }
    }
}

/// Shortest streak `HeatTable::rate_heat` corrects for: one observation in a 250 ms
/// streak stands for at most 6.3x its heat (1 s half-life).
pub const MIN_CORRECTED_STREAK_MS: u32 = 250;

/// The factor heat keeps after `dt_ms` with a half-life of `half_life_ms`.
fn decay(dt_ms: f64, half_life_ms: f64) -> f64 {
    (-dt_ms / half_life_ms * std::f64::consts::LN_2).exp()
}

/// `c` is in a hot streak at `now_ms`: accessed before, last within `gap_ms`.
fn in_streak(c: &Cell, now_ms: u32, gap_ms: u32) -> bool {
    c.hot_since_ms != u32::MAX && now_ms.saturating_sub(c.last_access_ms) <= gap_ms
}

/// [`decay`] remembered per whole-ms interval: the cells updated by one drain share
/// their update time, so a table's cells need few distinct factors at any moment, and
/// `exp` is the costliest part of a drain or a plan (tens of ns natively, about a
/// microsecond under emulation, for tens of thousands of cells). Direct-mapped: a slot
/// holds the last interval that hashed to it.
#[derive(Debug)]
struct DecayMemo {
    half_life_ms: f64,
    slots: Box<[(u32, f64)]>,
}

const MEMO_SLOTS: usize = 1024;

impl DecayMemo {
    fn new(half_life_ms: f64) -> DecayMemo {
        DecayMemo {
            half_life_ms,
            slots: vec![(u32::MAX, 0.0); MEMO_SLOTS].into_boxed_slice(),
        }
    }

    /// [`decay`] of `dt_ms`, exactly.
    fn factor(&mut self, dt_ms: u32) -> f64 {
        let slot = &mut self.slots[dt_ms as usize % MEMO_SLOTS];
        if slot.0 != dt_ms {
            *slot = (dt_ms, decay(dt_ms as f64, self.half_life_ms));
        }
        slot.1
    }

    /// `c`'s heat at `now_ms`.
    fn decayed(&mut self, c: &Cell, now_ms: u32) -> f64 {
        c.heat as f64 * self.factor(now_ms.saturating_sub(c.updated_ms))
    }
}

pub struct HeatTable {
    epoch: Instant,
    granule: u64,
    /// Two accesses further apart than this end a hot streak.
    streak_gap_ms: u32,
    /// foldhash, not SipHash: the keys are granule numbers of our own processes (no
    /// hash flooding to defend against), and every drain and plan touches every cell.
    cells: foldhash::HashMap<u64, Cell>,
    /// Interior: heat is read through `&self` (the table sits behind a mutex).
    memo: std::cell::RefCell<DecayMemo>,
    history: Vec<HeatSnapshot>,
    history_len: usize,
}

impl HeatTable {
    pub fn new(granule: u64, half_life_ms: u64, history_len: usize, streak_gap_ms: u32) -> Self {
        HeatTable {
            epoch: Instant::now(),
            granule,
            streak_gap_ms,
            cells: foldhash::HashMap::default(),
            memo: std::cell::RefCell::new(DecayMemo::new(half_life_ms as f64)),
            history: Vec::new(),
            history_len,
        }
    }

    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Milliseconds since the table was created.
    pub fn now_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch)
            .as_millis()
            .min(u32::MAX as u128) as u32
    }

    fn decayed(&self, c: &Cell, now_ms: u32) -> f64 {
        self.memo.borrow_mut().decayed(c, now_ms)
    }

    /// Adds `weight` of accesses to every granule overlapping `[start, end)`.
    pub fn record(&mut self, start: u64, end: u64, weight: f64, now_ms: u32) {
        if end <= start || weight <= 0.0 {
            return;
        }
        let (g0, g1) = (start / self.granule, (end - 1) / self.granule);
        let (memo, gap) = (self.memo.get_mut(), self.streak_gap_ms);
        for g in g0..=g1 {
            let c = self.cells.entry(g).or_default();
            c.heat = (memo.decayed(c, now_ms) + weight) as f32;
            c.updated_ms = now_ms;
            if !in_streak(c, now_ms, gap) {
                c.hot_since_ms = now_ms;
            }
            c.last_access_ms = now_ms;
        }
    }

    /// Heat as an estimate of the current access rate: a granule in a hot streak
    /// (accessed within the streak gap) has its heat divided by the share of the
    /// steady-state heat a constant rate reaches in the streak's length,
    /// `1 - 2^(-streak / half_life)` (the bias correction of an average that starts
    /// from zero). Raw heat favours data that has been hot for long over data that just
    /// became hot at the same rate: a second after a block starts being read, its heat
    /// is half that of a block read at the same rate for ten. Streaks shorter than
    /// [`MIN_CORRECTED_STREAK_MS`] count as that long, which bounds the correction.
    /// Granules not in a streak keep their decayed heat.
    fn rate_heat(&self, c: &Cell, heat: f64, now_ms: u32) -> f64 {
        if !in_streak(c, now_ms, self.streak_gap_ms) {
            return heat;
        }
        let streak = now_ms
            .saturating_sub(c.hot_since_ms)
            .max(MIN_CORRECTED_STREAK_MS);
        heat / (1.0 - self.memo.borrow_mut().factor(streak))
    }

    /// Current heat of the granule holding `addr`.
    pub fn heat_at(&self, addr: u64, now_ms: u32) -> f64 {
        self.cells
            .get(&(addr / self.granule))
            .map_or(0.0, |c| self.decayed(c, now_ms))
    }

    /// Iterates `(granule start address, cell, current heat)`.
    pub fn iter(&self, now_ms: u32) -> impl Iterator<Item = (u64, &Cell, f64)> + '_ {
        self.cells
            .iter()
            .map(move |(&g, c)| (g * self.granule, c, self.decayed(c, now_ms)))
    }

    /// Iterates `(granule start address, cell)`, without computing heat.
    pub fn cells(&self) -> impl Iterator<Item = (u64, &Cell)> + '_ {
        self.cells.iter().map(move |(&g, c)| (g * self.granule, c))
    }

    /// `c`'s heat at `now_ms` as a rate estimate (`rate_heat`: within a hot streak,
    /// the decayed heat corrected for the streak's length).
    pub fn heat_of(&self, c: &Cell, now_ms: u32) -> f64 {
        self.rate_heat(c, self.decayed(c, now_ms), now_ms)
    }

    pub fn cell_mut(&mut self, addr: u64) -> &mut Cell {
        self.cells.entry(addr / self.granule).or_default()
    }

    pub fn cell(&self, addr: u64) -> Option<&Cell> {
        self.cells.get(&(addr / self.granule))
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Drops granules no longer mapped (the caller passes a predicate on the address).
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let g = self.granule;
        self.cells.retain(|&k, _| keep(k * g));
    }

    /// Forgets cold, never-placed granules so the table tracks only what matters.
    pub fn prune(&mut self, now_ms: u32, min_heat: f64) {
        let memo = self.memo.get_mut();
        self.cells
            .retain(|_, c| memo.decayed(c, now_ms) >= min_heat || c.node >= 0 || c.flags != 0);
    }

    /// Bytes per heat class.
    pub fn histogram(&self, now_ms: u32) -> Histogram {
        let mut h = Histogram::new();
        for (_, _, heat) in self.iter(now_ms) {
            h.add(heat, self.granule);
        }
        h
    }

    /// Memory the table uses, bytes (cells, keys, hash control bytes, history).
    pub fn memory_bytes(&self) -> u64 {
        let per = std::mem::size_of::<(u64, Cell)>() + 1;
        let hist: usize = self
            .history
            .iter()
            .map(|s| s.regions.len() * std::mem::size_of::<HeatRegion>())
            .sum();
        (self.cells.capacity() * per + hist) as u64
    }

    /// Regions hottest first, adjacent granules with the same node and similar heat
    /// merged; cut after `top_bytes` when given.
    pub fn regions(&self, now_ms: u32, top_bytes: Option<u64>) -> Vec<HeatRegion> {
        let mut by_addr: Vec<(u64, f64, i16)> = self
            .iter(now_ms)
            .filter(|(_, _, h)| *h > 1e-3)
            .map(|(a, c, h)| (a, h, c.node))
            .collect();
        by_addr.sort_unstable_by_key(|x| x.0);
        let mut merged: Vec<HeatRegion> = Vec::new();
        for (a, h, n) in by_addr {
            let node = (n >= 0).then_some(n as i32);
            if let Some(last) = merged.last_mut() {
                let close = (last.heat - h).abs() <= 0.05 * last.heat.max(h);
                if last.end == a && last.node == node && close {
                    let w = ((last.end - last.start) / self.granule) as f64;
                    last.heat = (last.heat * w + h) / (w + 1.0);
                    last.end = a + self.granule;
                    continue;
                }
            }
            merged.push(HeatRegion {
                start: a,
                end: a + self.granule,
                heat: h,
                node,
            });
        }
        merged.sort_by(|x, y| y.heat.total_cmp(&x.heat).then(x.start.cmp(&y.start)));
        if let Some(limit) = top_bytes {
            let mut total = 0;
            let mut out = Vec::new();
            for r in merged {
                if total >= limit {
                    break;
                }
                let len = (r.end - r.start).min(limit - total);
                total += len;
                out.push(HeatRegion {
                    end: r.start + len,
                    ..r
                });
            }
            return out;
        }
        merged
    }

    /// Stores a snapshot for the heatmap (at most 512 hottest regions).
    pub fn snapshot(&mut self, now_ms: u32) {
        let mut regions = self.regions(now_ms, None);
        regions.truncate(512);
        self.history.push(HeatSnapshot {
            t_s: now_ms as f64 / 1000.0,
            regions,
        });
        if self.history.len() > self.history_len {
            let excess = self.history.len() - self.history_len;
            self.history.drain(..excess);
        }
    }

    pub fn history(&self) -> &[HeatSnapshot] {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 64 << 10;

    fn table() -> HeatTable {
        HeatTable::new(G, 1000, 4, 300)
    }

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
    fn heat_decays_by_half_life() {
        let mut t = table();
        t.record(0, G, 1.0, 0);
        assert!((t.heat_at(0, 0) - 1.0).abs() < 1e-6);
        assert!((t.heat_at(0, 1000) - 0.5).abs() < 1e-3);
        assert!((t.heat_at(0, 3000) - 0.125).abs() < 1e-3);
        t.record(0, G, 1.0, 1000);
        assert!((t.heat_at(0, 1000) - 1.5).abs() < 1e-3);
    }

    #[test]
    fn rate_heat_ranks_new_and_old_streaks_of_one_rate_alike() {
        // 1 s half-life, 300 ms streak gap. Granule 0 is read every 100 ms for 10 s,
        // granule 1 for the last second only.
        let mut t = table();
        for ms in (0..=10_000).step_by(100) {
            t.record(0, G, 1.0, ms);
            if ms >= 9_000 {
                t.record(G, 2 * G, 1.0, ms);
            }
        }
        let now = 10_000;
        let (old, new) = (t.cell(0).unwrap(), t.cell(G).unwrap());
        let (h_old, h_new) = (t.heat_at(0, now), t.heat_at(G, now));
        assert!(h_new < 0.6 * h_old, "raw heat halves the new streak");
        let (r_old, r_new) = (t.rate_heat(old, h_old, now), t.rate_heat(new, h_new, now));
        assert!((r_new / r_old - 1.0).abs() < 0.1, "{r_new} vs {r_old}");
        // Out of its streak (idle past the gap): the decayed heat as it is.
        let later = now + 1_000;
        let h = t.heat_at(0, later);
        assert_eq!(t.rate_heat(old, h, later), h);
        // One observation just now counts as a 250 ms streak: at most 6.3x.
        t.record(5 * G, 6 * G, 1.0, later);
        let c = t.cell(5 * G).unwrap();
        let r = t.rate_heat(c, 1.0, later);
        assert!((r - 1.0 / (1.0 - 0.5f64.powf(0.25))).abs() < 1e-6, "{r}");
    }

    #[test]
    fn record_spans_every_overlapping_granule() {
        let mut t = table();
        t.record(G / 2, 2 * G + 1, 1.0, 0);
        assert_eq!(t.len(), 3);
        assert_eq!(t.heat_at(3 * G, 0), 0.0);
    }

    #[test]
    fn hot_streak_breaks_after_a_gap() {
        let mut t = table();
        for ms in [0, 100, 200, 300] {
            t.record(0, G, 1.0, ms);
        }
        assert_eq!(t.cell(0).unwrap().hot_since_ms, 0);
        t.record(0, G, 1.0, 1000); // 700 ms gap > 300
        assert_eq!(t.cell(0).unwrap().hot_since_ms, 1000);
    }

    #[test]
    fn regions_merge_and_rank_and_cut() {
        let mut t = table();
        t.record(0, 4 * G, 1.0, 0); // 4 granules of heat 1
        t.record(10 * G, 11 * G, 5.0, 0); // one granule of heat 5
        let r = t.regions(0, None);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].start, r[0].end), (10 * G, 11 * G));
        assert_eq!((r[1].start, r[1].end), (0, 4 * G));
        let top = t.regions(0, Some(2 * G));
        assert_eq!(top.len(), 2);
        assert_eq!(top[1].end - top[1].start, G);
    }

    #[test]
    fn history_is_bounded_and_memory_is_small() {
        let mut t = table();
        // 640 MiB of granules.
        t.record(0, 640 << 20, 0.5, 0);
        for ms in 0..10 {
            t.snapshot(ms * 1000);
        }
        assert_eq!(t.history().len(), 4);
        let cells_bytes =
            t.memory_bytes() - (t.history().len() * std::mem::size_of::<HeatRegion>()) as u64;
        let ratio = cells_bytes as f64 / (640u64 << 20) as f64;
        assert!(ratio < 0.001, "heat table costs {ratio} of managed memory");
    }

    #[test]
    fn prune_keeps_placed_and_hinted_granules() {
        let mut t = table();
        t.record(0, G, 1.0, 0);
        t.record(G, 2 * G, 1.0, 0);
        t.cell_mut(G).node = 1;
        t.prune(100_000, 0.01);
        assert_eq!(t.len(), 1);
        assert!(t.cell(G).is_some());
    }
}
