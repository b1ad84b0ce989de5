//! A process's heat table: granule cells with lazy exponential decay, and the only
//! operations that change them (sampled accesses, hint flags, a scan's placement, a
//! move's outcome). Owned by the tiering loop; see `heat/mod.rs` for who calls what.

use super::cell::{in_streak, Cell, DecayMemo};
use super::flags;
use super::GranuleView;
use tierd_api::{AddrRange, HeatSnapshot};

/// A range spanning more granules than this creates no cells: it updates the cells the
/// table already has (which the placement scan creates for every resident granule).
/// A sampled region or a hinted block that large is mostly address space the process
/// reserved and never touched (a GPU runtime's terabytes of `PROT_NONE`), so creating a
/// cell per granule would make tierd's memory follow reserved address space instead of
/// resident memory. 16 MiB is above every DAMON region of a hot set (at least 200
/// regions per process) and every KV block, which keep the immediate bookkeeping they
/// had.
pub const MAX_NEW_GRANULES: u64 = 256;

/// Which granules of a range a hint flag applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Every granule the range touches (hints that protect memory).
    Touching,
    /// Only granules entirely inside the range (hints that give memory away: a cold
    /// block never drags a hot neighbour down).
    Covered,
}

/// What a placement scan made of one granule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// The node recorded.
    pub node: u32,
    /// The granule changed node although tierd did not move it recently.
    pub foreign: bool,
}

/// Runs `f` on the cells of granules `g0..=g1`: creating missing ones when the span is
/// at most [`MAX_NEW_GRANULES`] and `create`, otherwise on existing cells only, in time
/// proportional to the smaller of the span and the table.
fn each_cell(
    cells: &mut foldhash::HashMap<u64, Cell>,
    (g0, g1): (u64, u64),
    create: bool,
    mut f: impl FnMut(&mut Cell),
) {
    if g1 < g0 {
        return;
    }
    let span = g1 - g0 + 1;
    if create && span <= MAX_NEW_GRANULES {
        for g in g0..=g1 {
            f(cells.entry(g).or_default());
        }
    } else if span <= cells.len() as u64 {
        for g in g0..=g1 {
            if let Some(c) = cells.get_mut(&g) {
                f(c);
            }
        }
    } else {
        for (_, c) in cells.iter_mut().filter(|(g, _)| (g0..=g1).contains(*g)) {
            f(c);
        }
    }
}

pub struct HeatTable {
    epoch: std::time::Instant,
    granule: u64,
    /// Two accesses further apart than this end a hot streak.
    streak_gap_ms: u32,
    /// foldhash, not SipHash: the keys are granule numbers of our own processes (no
    /// hash flooding to defend against), and every drain and plan touches every cell.
    cells: foldhash::HashMap<u64, Cell>,
    /// Interior: heat is read through `&self` (the table sits behind a mutex).
    memo: std::cell::RefCell<DecayMemo>,
    pub(super) history: Vec<HeatSnapshot>,
    pub(super) history_len: usize,
}

impl HeatTable {
    pub fn new(granule: u64, half_life_ms: u64, history_len: usize, streak_gap_ms: u32) -> Self {
        HeatTable {
            epoch: std::time::Instant::now(),
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
    pub fn now_ms(&self, now: std::time::Instant) -> u32 {
        now.saturating_duration_since(self.epoch)
            .as_millis()
            .min(u32::MAX as u128) as u32
    }

    pub(super) fn decayed(&self, c: &Cell, now_ms: u32) -> f64 {
        self.memo.borrow_mut().decayed(c, now_ms)
    }

    /// Adds `weight` of accesses to every granule overlapping `[start, end)` (see
    /// [`MAX_NEW_GRANULES`] for ranges spanning more than 16 MiB).
    pub fn record(&mut self, start: u64, end: u64, weight: f64, now_ms: u32) {
        if end <= start || weight <= 0.0 {
            return;
        }
        let (g0, g1) = (start / self.granule, (end - 1) / self.granule);
        let gap = self.streak_gap_ms;
        let memo = self.memo.get_mut();
        each_cell(&mut self.cells, (g0, g1), true, |c| {
            c.heat = (memo.decayed(c, now_ms) + weight) as f32;
            c.updated_ms = now_ms;
            if !in_streak(c, now_ms, gap) {
                c.hot_since_ms = now_ms;
            }
            c.last_access_ms = now_ms;
        });
    }

    /// Zeroes the heat of the granules `r` covers entirely, creating no cells: their
    /// contents now live elsewhere (a pinned block its client moved,
    /// `protocol::pinned`), so the heat went with them.
    pub fn forget_heat(&mut self, r: AddrRange) {
        if let Some(gs) = self.granules(r, Span::Covered) {
            each_cell(&mut self.cells, gs, false, |c| c.heat = 0.0);
        }
    }

    /// Sets `set` and clears `clear` on the granules of `r` that `span` selects.
    pub fn mark(&mut self, r: AddrRange, span: Span, set: u8, clear: u8) {
        if let Some(gs) = self.granules(r, span) {
            each_cell(&mut self.cells, gs, true, |c| {
                c.flags = (c.flags & !clear) | set
            });
        }
    }

    /// Clears `clear` on the granules of `r` that `span` selects, creating no cells.
    pub fn unmark(&mut self, r: AddrRange, span: Span, clear: u8) {
        if let Some(gs) = self.granules(r, span) {
            each_cell(&mut self.cells, gs, false, |c| c.flags &= !clear);
        }
    }

    /// First and last granule number of `r` under `span`.
    fn granules(&self, r: AddrRange, span: Span) -> Option<(u64, u64)> {
        let g = self.granule.max(1);
        if r.end <= r.start {
            return None;
        }
        let (g0, end) = match span {
            Span::Touching => (r.start / g, r.end.div_ceil(g)),
            Span::Covered => (r.start.div_ceil(g), r.end / g),
        };
        (end > g0).then(|| (g0, end - 1))
    }

    /// Records that a placement scan whose `move_pages` query started at
    /// `query_started_ms` found the granule holding `addr` on `node`. A move tierd made
    /// after the query started stands (the query may have read the page before it);
    /// a node change with no move of tierd's within `recent_move_ms` is foreign.
    pub fn note_scanned(
        &mut self,
        addr: u64,
        node: u32,
        query_started_ms: u32,
        now_ms: u32,
        recent_move_ms: u32,
    ) -> Scanned {
        let c = self.cells.entry(addr / self.granule).or_default();
        let node = match c.node() {
            Some(n) if c.last_move_ms != 0 && c.last_move_ms >= query_started_ms => n,
            _ => node,
        };
        let foreign = c.node().is_some_and(|n| n != node)
            && now_ms.saturating_sub(c.last_move_ms) > recent_move_ms;
        c.node = node as i16;
        Scanned { node, foreign }
    }

    /// After a scan: forgets granules it did not find resident (`resident(granule
    /// start)` is false) unless they were accessed since the scan's query started or
    /// carry a hint that protects memory not yet touched (PIN_FAST, PREFETCH). The
    /// table then follows resident memory.
    pub fn retain_resident(&mut self, resident: impl Fn(u64) -> bool, query_started_ms: u32) {
        let g = self.granule;
        self.cells.retain(|&k, c| {
            resident(k * g)
                || c.accessed_since(query_started_ms)
                || c.flags & (flags::PIN_FAST | flags::PREFETCH) != 0
        });
    }

    /// Records the outcome of a move of the granule holding `addr` to `to`: `found` is
    /// the node its first page is on afterwards (negative: unknown). A granule still
    /// elsewhere is marked [`flags::STUCK`]; a promotion serves a PREFETCH. Returns
    /// whether the granule is ping-ponging (moved more than twice within `window_ms`).
    pub fn note_move(
        &mut self,
        addr: u64,
        to: u32,
        found: i32,
        promoted: bool,
        now_ms: u32,
        window_ms: u32,
    ) -> bool {
        let c = self.cells.entry(addr / self.granule).or_default();
        if promoted {
            // A prefetch is served once the block is up; it does not pin it there.
            c.flags &= !flags::PREFETCH;
        }
        if found >= 0 && found as u32 != to {
            // Still not where it was sent: try again only after a while.
            c.flags |= flags::STUCK;
            c.last_move_ms = now_ms.max(1);
        } else {
            c.flags &= !flags::STUCK;
        }
        if found >= 0 && c.node != found as i16 {
            if now_ms.saturating_sub(c.last_move_ms) > window_ms {
                c.moves = 0;
            }
            c.moves = c.moves.saturating_add(1);
            c.last_move_ms = now_ms.max(1);
            c.node = found as i16;
            return c.moves > 2;
        }
        false
    }

    /// Heat as an estimate of the current access rate: a granule in a hot streak
    /// (accessed within the streak gap) has its heat divided by the share of the
    /// steady-state heat a constant rate reaches in the streak's length,
    /// `1 - 2^(-streak / half_life)` (the bias correction of an average that starts
    /// from zero). Raw heat favours data that has been hot for long over data that just
    /// became hot at the same rate: a second after a block starts being read, its heat
    /// is half that of a block read at the same rate for ten. Streaks shorter than
    /// [`super::cell::MIN_CORRECTED_STREAK_MS`] count as that long, which bounds the
    /// correction. Granules not in a streak keep their decayed heat.
    fn rate_heat(&self, c: &Cell, heat: f64, now_ms: u32) -> f64 {
        if !in_streak(c, now_ms, self.streak_gap_ms) {
            return heat;
        }
        let streak = now_ms
            .saturating_sub(c.hot_since_ms)
            .max(super::cell::MIN_CORRECTED_STREAK_MS);
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

    /// The planner's view: granules of known placement for which `keep(node, idle_ms,
    /// flags)` holds (`idle_ms` is `u64::MAX` for a granule never accessed; `flags`
    /// without [`flags::CLIENT`]); their heat is computed only then.
    pub fn views<'a>(
        &'a self,
        now_ms: u32,
        keep: impl Fn(u32, u64, u8) -> bool + 'a,
    ) -> impl Iterator<Item = GranuleView> + 'a {
        let since = move |ms: u32| now_ms.saturating_sub(ms) as u64;
        let g = self.granule;
        self.cells.iter().filter_map(move |(&k, c)| {
            let node = c.node()?;
            let hot_since = c.hot_since_ms();
            let idle_ms = hot_since.map_or(u64::MAX, |_| since(c.last_access_ms));
            let flags = c.flags & !flags::CLIENT;
            if !keep(node, idle_ms, flags) {
                return None;
            }
            Some(GranuleView {
                addr: k * g,
                bytes: g,
                heat: self.rate_heat(c, self.decayed(c, now_ms), now_ms),
                node,
                hot_for_ms: hot_since.map_or(0, since),
                idle_ms,
                since_move_ms: c.last_move_ms().map_or(u64::MAX, since),
                moves: c.moves,
                flags,
            })
        })
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

    /// Forgets cold, never-placed, unhinted granules so the table tracks only what
    /// matters.
    pub fn prune(&mut self, now_ms: u32, min_heat: f64) {
        let memo = self.memo.get_mut();
        self.cells
            .retain(|_, c| memo.decayed(c, now_ms) >= min_heat || c.node >= 0 || c.flags != 0);
    }

    pub(super) fn capacity(&self) -> usize {
        self.cells.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 64 << 10;

    fn table() -> HeatTable {
        HeatTable::new(G, 1000, 4, 300)
    }

    fn r(start: u64, end: u64) -> AddrRange {
        AddrRange { start, end }
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
    fn a_huge_range_heats_known_granules_and_creates_none() {
        // A sample or hint over 16 TiB of reserved address space, two granules of which
        // the table knows: they are heated, nothing else is created (and the call does
        // not walk 2^28 granules).
        let mut t = table();
        t.note_scanned(5 * G, 0, 0, 0, 0);
        t.note_scanned((1 << 40) + 7 * G, 1, 0, 0, 0);
        t.record(0, 16 << 40, 2.0, 10);
        assert_eq!(t.len(), 2);
        assert!((t.heat_at(5 * G, 10) - 2.0).abs() < 1e-6);
        assert!((t.heat_at((1 << 40) + 7 * G, 10) - 2.0).abs() < 1e-6);
        t.mark(r(0, 16 << 40), Span::Touching, flags::PIN_FAST, 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.cell(5 * G).unwrap().flags(), flags::PIN_FAST);
        // At the limit a range still creates its cells.
        t.record(1 << 30, (1 << 30) + MAX_NEW_GRANULES * G, 1.0, 10);
        assert_eq!(t.len(), 2 + MAX_NEW_GRANULES as usize);
    }

    #[test]
    fn hot_streak_breaks_after_a_gap() {
        let mut t = table();
        for ms in [0, 100, 200, 300] {
            t.record(0, G, 1.0, ms);
        }
        assert_eq!(t.cell(0).unwrap().hot_since_ms(), Some(0));
        t.record(0, G, 1.0, 1000); // 700 ms gap > 300
        assert_eq!(t.cell(0).unwrap().hot_since_ms(), Some(1000));
    }

    #[test]
    fn prune_keeps_placed_and_hinted_granules() {
        let mut t = table();
        t.record(0, G, 1.0, 0);
        t.record(G, 2 * G, 1.0, 0);
        t.note_scanned(G, 1, 0, 0, 0);
        t.prune(100_000, 0.01);
        assert_eq!(t.len(), 1);
        assert!(t.cell(G).is_some());
    }

    #[test]
    fn a_scan_keeps_resident_young_and_pinned_granules_only() {
        let mut t = table();
        t.note_scanned(0, 0, 0, 0, 0); // resident
        t.note_scanned(G, 0, 0, 0, 0); // was resident, gone now
        t.record(2 * G, 3 * G, 1.0, 50); // touched before the query started at 100
        t.record(3 * G, 4 * G, 1.0, 120); // touched while the query ran
        t.mark(r(4 * G, 5 * G), Span::Touching, flags::PIN_FAST, 0);
        t.mark(r(5 * G, 6 * G), Span::Touching, flags::COLD, 0);
        t.retain_resident(|a| a == 0, 100);
        let mut kept: Vec<u64> = t.iter(200).map(|(a, _, _)| a / G).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![0, 3, 4]);
    }

    #[test]
    fn a_move_outcome_updates_node_history_and_stuck() {
        let mut t = table();
        t.note_scanned(0, 1, 0, 0, 0);
        t.mark(r(0, G), Span::Touching, flags::PREFETCH, 0);
        // Promoted to 0 and found there.
        assert!(!t.note_move(0, 0, 0, true, 100, 30_000));
        let c = *t.cell(0).unwrap();
        assert_eq!(
            (c.node(), c.moves(), c.last_move_ms()),
            (Some(0), 1, Some(100))
        );
        assert_eq!(
            c.flags() & flags::PREFETCH,
            0,
            "a promotion serves the prefetch"
        );
        // Sent to 1 but still on 0: stuck, node unchanged.
        t.note_move(0, 1, 0, false, 200, 30_000);
        let c = *t.cell(0).unwrap();
        assert_eq!(c.flags() & flags::STUCK, flags::STUCK);
        assert_eq!(c.node(), Some(0));
        // Two more round trips inside the window: ping-pong.
        assert!(!t.note_move(0, 1, 1, false, 300, 30_000));
        assert!(t.note_move(0, 0, 0, true, 400, 30_000));
        assert_eq!(t.cell(0).unwrap().flags() & flags::STUCK, 0);
        // Outside the window the count starts again.
        assert!(!t.note_move(0, 1, 1, false, 100_000, 30_000));
        assert_eq!(t.cell(0).unwrap().moves(), 1);
    }

    #[test]
    fn a_scan_does_not_undo_a_move_made_while_it_queried() {
        let mut t = table();
        // Moved by the worker to node 0 at 150 ms, after the query (started at 100 ms)
        // saw it on node 1.
        t.note_scanned(0, 1, 0, 0, 0);
        t.note_move(0, 0, 0, true, 150, 30_000);
        let s = t.note_scanned(0, 1, 100, 5000, 2000);
        assert_eq!(
            s,
            Scanned {
                node: 0,
                foreign: false
            }
        );
        // Moved at 50 ms, before the query, and since moved by someone else.
        t.note_scanned(G, 1, 0, 0, 0);
        t.note_move(G, 0, 0, true, 50, 30_000);
        let s = t.note_scanned(G, 1, 100, 5000, 2000);
        assert_eq!(
            s,
            Scanned {
                node: 1,
                foreign: true
            }
        );
    }

    #[test]
    fn views_decode_the_cells_for_the_planner() {
        let mut t = table();
        t.record(0, G, 1.0, 100);
        t.note_scanned(0, 1, 0, 100, 0);
        t.note_scanned(G, 0, 0, 100, 0); // placed, never accessed
        t.record(2 * G, 3 * G, 1.0, 100); // accessed, placement unknown
        let mut v: Vec<GranuleView> = t.views(400, |_, _, _| true).collect();
        v.sort_by_key(|x| x.addr);
        assert_eq!(v.len(), 2, "unplaced granules are not viewed");
        assert_eq!((v[0].node, v[0].idle_ms, v[0].hot_for_ms), (1, 300, 300));
        assert_eq!(v[0].since_move_ms, u64::MAX);
        assert!(v[0].heat > 0.0);
        assert_eq!((v[1].node, v[1].idle_ms, v[1].hot_for_ms), (0, u64::MAX, 0));
        let on_1: Vec<GranuleView> = t.views(400, |n, _, _| n == 1).collect();
        assert_eq!(on_1.len(), 1);
    }
}
