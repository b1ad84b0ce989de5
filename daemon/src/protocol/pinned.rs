//! Pinned regions: client memory `move_pages` cannot move (`cudaHostRegister`,
//! `cudaHostAlloc`, io_uring fixed buffers, RDMA registrations), laid out by the client
//! as *slots* on each node. tierd never moves their pages; it plans them like other
//! memory (heat from hints and sampling) within each node's slots and asks the client to
//! move contents between slots, in both directions, through the region's relocation
//! table. The client copies (or re-points to a shadow), updates its block table and
//! acknowledges with MOVED; this map follows the acknowledgements.
//!
//! Slots are `Free`, `Used` (holding a block's contents, perhaps with a shadow: a valid
//! older copy in another slot) or `Shadow` of a used slot. A block promoted by copy
//! leaves its slow slot as its shadow; demoting it again while unwritten is a re-point,
//! no copy. A write (WRITTEN) or a FREE drops the shadow.
//!
//! Pure logic, unit-tested here. One map per pinned region, behind the region's mutex:
//! changed by the hint poller (`tierd-hints`, on acknowledgements and hints) and by the
//! planner pass of the placement refresher (`tierd-placement`, every 100 ms).

/// No relocation requested (the wanted table's `-1`).
pub const NONE: i32 = -1;
/// Heat below which a slow block is not worth a promotion.
pub const MIN_HEAT: f64 = 0.1;
/// A slow block displaces a fast one only when this many times hotter: hysteresis
/// against swapping two blocks of about the same heat back and forth.
pub const DISPLACE_FACTOR: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Free,
    /// Holds a block; `shadow` is a slot with a valid copy of it.
    Used {
        shadow: Option<u32>,
    },
    /// A valid copy of the contents of slot `of`.
    Shadow {
        of: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("pinned layout names node {0}, which does not exist")]
    Node(i32),
    #[error("pinned layout holds {got} blocks, the region has {want}")]
    Count { got: u64, want: u64 },
}

/// What the planner knows of one slot's contents (from the heat table).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlotHeat {
    pub heat: f64,
    /// PREFETCH or PIN_FAST: wanted on the fast tier now.
    pub wants_fast: bool,
    /// PIN_FAST: never demoted.
    pub pinned_fast: bool,
    /// COLD: demoted first.
    pub cold: bool,
}

/// Totals since registration, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinnedCounters {
    pub promote_requests: u64,
    pub demote_requests: u64,
    /// Blocks the client copied to serve a move.
    pub copied_blocks: u64,
    /// Moves served by re-pointing to a valid shadow: no copy.
    pub avoided_blocks: u64,
    pub declined_blocks: u64,
}

#[derive(Debug, Clone)]
pub struct PinnedMap {
    node: Vec<i32>,
    slot: Vec<Slot>,
    requested: Vec<i32>,
    /// Found pinned rather than registered so: its client has no slots on the fast
    /// tier in the region and copies promoted blocks into memory of its own elsewhere
    /// (acknowledged with RELOCATED); the planner is given room outside the region.
    outside: bool,
    /// Percent of the region's fast slots to keep free (or holding shadows) for new
    /// contents, by demoting cold blocks ahead of need ([`PinnedMap::set_headroom_percent`]).
    headroom_percent: u32,
    pub counters: PinnedCounters,
}

impl PinnedMap {
    /// A map of `nblocks` slots laid out as `(node, slots)` runs in address order.
    pub fn new(
        layout: &[(i32, u32)],
        nblocks: u64,
        node_exists: impl Fn(i32) -> bool,
    ) -> Result<PinnedMap, LayoutError> {
        let got: u64 = layout.iter().map(|&(_, n)| n as u64).sum();
        if got != nblocks {
            return Err(LayoutError::Count { got, want: nblocks });
        }
        if let Some(&(n, _)) = layout.iter().find(|(n, _)| !node_exists(*n)) {
            return Err(LayoutError::Node(n));
        }
        let node = layout
            .iter()
            .flat_map(|&(n, c)| std::iter::repeat_n(n, c as usize))
            .collect();
        Ok(PinnedMap::from_nodes(node))
    }

    /// A map of slots on the given nodes (read from the kernel for a region found
    /// pinned; a slot whose node is unknown is never planned).
    pub fn from_nodes(node: Vec<i32>) -> PinnedMap {
        let n = node.len();
        PinnedMap {
            node,
            slot: vec![Slot::Free; n],
            requested: vec![NONE; n],
            outside: false,
            headroom_percent: 0,
            counters: PinnedCounters::default(),
        }
    }

    /// A region found pinned: slots on `node` (read from the kernel); those with a
    /// node hold blocks. Promotions go outside the region ([`PinnedMap::outside`]).
    pub fn detected(node: Vec<i32>) -> PinnedMap {
        let mut m = PinnedMap::from_nodes(node);
        for s in 0..m.node.len() {
            if m.node[s] >= 0 {
                m.slot[s] = Slot::Used { shadow: None };
            }
        }
        m.outside = true;
        m
    }

    /// Keep `percent` of the fast slots free for new contents (`client.pinned_headroom_percent`).
    pub fn set_headroom_percent(&mut self, percent: u32) {
        self.headroom_percent = percent.min(100);
    }

    /// Whether promotions go to the client's memory outside the region.
    pub fn outside(&self) -> bool {
        self.outside
    }

    pub fn len(&self) -> usize {
        self.slot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot.is_empty()
    }

    pub fn node(&self, s: u64) -> i32 {
        self.node.get(s as usize).copied().unwrap_or(NONE)
    }

    pub fn slot(&self, s: u64) -> Slot {
        self.slot.get(s as usize).copied().unwrap_or(Slot::Free)
    }

    pub fn requested(&self, s: u64) -> i32 {
        self.requested.get(s as usize).copied().unwrap_or(NONE)
    }

    fn range(&self, first: u64, n: u64) -> std::ops::Range<usize> {
        let len = self.slot.len();
        (first as usize).min(len)..(first.saturating_add(n) as usize).min(len)
    }

    /// Makes `s` hold fresh contents of its own: a shadow stops being one.
    fn claim(&mut self, s: usize) {
        match self.slot[s] {
            Slot::Shadow { of } => {
                self.unlink_shadow_of(of as usize);
                self.slot[s] = Slot::Used { shadow: None };
            }
            Slot::Free => self.slot[s] = Slot::Used { shadow: None },
            Slot::Used { .. } => {}
        }
    }

    /// Slot `u` no longer has a shadow.
    fn unlink_shadow_of(&mut self, u: usize) {
        if let Some(Slot::Used { shadow }) = self.slot.get_mut(u) {
            *shadow = None;
        }
    }

    /// Drops the shadow of used slot `u` (the shadow slot becomes free).
    fn drop_shadow(&mut self, u: usize) {
        if let Slot::Used { shadow: Some(s) } = self.slot[u] {
            self.slot[u] = Slot::Used { shadow: None };
            if self.slot.get(s as usize) == Some(&Slot::Shadow { of: u as u32 }) {
                self.slot[s as usize] = Slot::Free;
            }
        }
    }

    /// ACCESS, PREFETCH, PIN_FAST, COLD: the slots hold live blocks.
    pub fn used(&mut self, first: u64, n: u64) {
        for s in self.range(first, n) {
            self.claim(s);
        }
    }

    /// WRITTEN: the slots' contents changed; their shadows are stale and dropped.
    pub fn written(&mut self, first: u64, n: u64) {
        for s in self.range(first, n) {
            self.claim(s);
            self.drop_shadow(s);
        }
    }

    /// FREE, RELOCATED: the contents are dead (a shadow of them too).
    pub fn freed(&mut self, first: u64, n: u64) {
        for s in self.range(first, n) {
            match self.slot[s] {
                Slot::Shadow { of } => self.unlink_shadow_of(of as usize),
                Slot::Used { .. } => self.drop_shadow(s),
                Slot::Free => {}
            }
            self.slot[s] = Slot::Free;
            self.requested[s] = NONE;
        }
    }

    /// DECLINED: the client will not serve these requests now.
    pub fn declined(&mut self, first: u64, n: u64) {
        for s in self.range(first, n) {
            if self.requested[s] != NONE {
                self.counters.declined_blocks += 1;
            }
            self.requested[s] = NONE;
        }
    }

    /// MOVED: the contents of `[from, from + n)` are now in `[to, to + n)`; the sources
    /// keep a valid copy (shadow). A destination that was the source's shadow was a
    /// re-point (no copy); any other destination was copied to. Returns the blocks
    /// copied (the rest were re-points).
    pub fn moved(&mut self, from: u64, to: u64, n: u64) -> u64 {
        let mut copied = 0;
        for (f, t) in self.range(from, n).zip(self.range(to, n)) {
            if f == t {
                continue;
            }
            let repoint = self.slot[t] == Slot::Shadow { of: f as u32 };
            // Whatever `t` was, it now holds `f`'s contents.
            match self.slot[t] {
                Slot::Shadow { of } if of as usize != f => self.unlink_shadow_of(of as usize),
                Slot::Used { .. } => self.drop_shadow(t),
                _ => {}
            }
            // `f`'s other shadow (not `t`) is a copy nobody tracks any more.
            if let Slot::Used { shadow: Some(s) } = self.slot[f] {
                if s as usize != t {
                    self.drop_shadow(f);
                }
            }
            self.slot[t] = Slot::Used {
                shadow: Some(f as u32),
            };
            self.slot[f] = Slot::Shadow { of: t as u32 };
            self.requested[f] = NONE;
            self.requested[t] = NONE;
            if repoint {
                self.counters.avoided_blocks += 1;
            } else {
                self.counters.copied_blocks += 1;
                copied += 1;
            }
        }
        copied
    }

    /// Plans moves from the slots' heat (one entry per slot; missing entries count as
    /// cold) and records them as requested. Returns `(slot, node)` requests:
    /// promotions of the hottest slow blocks into fast slots that are free (or hold
    /// shadows), and, when the fast slots are full, demotions of the coldest fast
    /// blocks that a hotter slow block should displace. A promotion waits for the
    /// demotion that makes its room to be acknowledged (the next pass).
    ///
    /// `outside_fast`: for a region found pinned, a fast node and the blocks it has room
    /// for outside the region.
    pub fn plan(
        &mut self,
        heat: &[SlotHeat],
        is_fast: impl Fn(i32) -> bool,
        outside_fast: Option<(i32, i64)>,
    ) -> Vec<(u64, i32)> {
        let h = |s: usize| heat.get(s).copied().unwrap_or_default();
        let mut fast_room: Vec<(i32, i64)> =
            outside_fast.filter(|_| self.outside).into_iter().collect();
        let mut slow_room: Vec<(i32, i64)> = Vec::new();
        let (mut ups, mut downs) = (Vec::new(), Vec::new());
        let (mut pending_down, mut pending_up) = (0i64, 0i64);
        let mut fast_slots = 0i64;
        for s in 0..self.slot.len() {
            let node = self.node[s];
            if node < 0 {
                continue;
            }
            let fast = is_fast(node);
            fast_slots += fast as i64;
            let room = if fast { &mut fast_room } else { &mut slow_room };
            let i = match room.iter().position(|(n, _)| *n == node) {
                Some(i) => i,
                None => {
                    room.push((node, 0));
                    room.len() - 1
                }
            };
            match (self.slot[s], self.requested[s]) {
                (Slot::Free | Slot::Shadow { .. }, _) => room[i].1 += 1,
                (Slot::Used { .. }, NONE) => {
                    let x = h(s);
                    if fast && !x.pinned_fast {
                        downs.push(s);
                    } else if !fast && !x.cold && (x.wants_fast || x.heat >= MIN_HEAT) {
                        ups.push(s);
                    }
                }
                (Slot::Used { .. }, want) if is_fast(want) => pending_up += 1,
                (Slot::Used { .. }, _) => pending_down += 1,
            }
        }
        // Room already promised to outstanding requests.
        take(&mut fast_room, pending_up);
        take(&mut slow_room, pending_down);
        let hotter = |a: &SlotHeat, b: &SlotHeat| {
            (b.wants_fast, b.heat)
                .partial_cmp(&(a.wants_fast, a.heat))
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        ups.sort_by(|&a, &b| hotter(&h(a), &h(b)));
        // Coldest first: COLD-hinted, then by heat; blocks wanted fast last.
        downs.sort_by(|&a, &b| {
            let (x, y) = (h(a), h(b));
            (y.cold, x.wants_fast, x.heat)
                .partial_cmp(&(x.cold, y.wants_fast, y.heat))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut out = Vec::new();
        let mut downs = downs.into_iter();
        let mut coming = pending_down;
        for u in ups {
            if let Some(node) = take_one(&mut fast_room) {
                out.push((u as u64, node));
                self.counters.promote_requests += 1;
                continue;
            }
            if coming > 0 {
                coming -= 1; // a demotion under way makes this block's room
                continue;
            }
            let Some(c) = downs.next() else { break };
            let (hu, hc) = (h(u), h(c));
            let displace = hc.cold
                || (hu.wants_fast && !hc.wants_fast)
                || hu.heat > hc.heat * DISPLACE_FACTOR + MIN_HEAT;
            if !displace {
                break; // the rest are colder still
            }
            let Some(to) = self.demotion_target(c, &is_fast, &mut slow_room) else {
                break;
            };
            out.push((c as u64, to));
            self.counters.demote_requests += 1;
        }
        // Headroom: new contents (prefill, new decode blocks) are written where the
        // client has room, so keep some fast slots free for them, as TPP keeps a free
        // watermark on the fast node: demote cold blocks (COLD / FREE-flagged, or cooled
        // below MIN_HEAT and not wanted fast) ahead of need, coldest first.
        let headroom = (fast_slots * self.headroom_percent as i64 + 99) / 100;
        let mut room = fast_room.iter().map(|r| r.1.max(0)).sum::<i64>() + coming.max(0);
        if self.outside {
            room = headroom;
        }
        for c in downs {
            if room >= headroom {
                break;
            }
            let x = h(c);
            if !(x.cold || (!x.wants_fast && x.heat < MIN_HEAT)) {
                break; // the rest are warmer
            }
            let Some(to) = self.demotion_target(c, &is_fast, &mut slow_room) else {
                break;
            };
            out.push((c as u64, to));
            self.counters.demote_requests += 1;
            room += 1;
        }
        for &(s, node) in &out {
            self.requested[s as usize] = node;
        }
        out
    }
}

impl PinnedMap {
    /// Where fast block `c` goes down: to its own shadow's node if it has one there (a
    /// re-point, which needs no free slow slot: the shadow is nobody else's room), else
    /// to the slow node with the most room.
    fn demotion_target(
        &self,
        c: usize,
        is_fast: &impl Fn(i32) -> bool,
        slow_room: &mut [(i32, i64)],
    ) -> Option<i32> {
        match self.slot[c] {
            Slot::Used { shadow: Some(s) } if !is_fast(self.node(s as u64)) => {
                let node = self.node(s as u64);
                if let Some(r) = slow_room.iter_mut().find(|r| r.0 == node) {
                    r.1 -= 1;
                }
                Some(node)
            }
            _ => take_one(slow_room),
        }
    }
}

/// Takes `n` slots of room, from the nodes with the most first.
fn take(room: &mut [(i32, i64)], mut n: i64) {
    while n > 0 {
        let Some(r) = room.iter_mut().filter(|r| r.1 > 0).max_by_key(|r| r.1) else {
            return;
        };
        r.1 -= 1;
        n -= 1;
    }
}

/// One slot of room on the node with the most.
fn take_one(room: &mut [(i32, i64)]) -> Option<i32> {
    let r = room.iter_mut().filter(|r| r.1 > 0).max_by_key(|r| r.1)?;
    r.1 -= 1;
    Some(r.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: i32 = 0;
    const SLOW: i32 = 1;

    fn fast(n: i32) -> bool {
        n == FAST
    }

    /// 2 fast slots (0, 1), 4 slow slots (2..6).
    fn map() -> PinnedMap {
        PinnedMap::new(&[(FAST, 2), (SLOW, 4)], 6, |n| n == FAST || n == SLOW).unwrap()
    }

    fn hot(h: f64) -> SlotHeat {
        SlotHeat {
            heat: h,
            ..SlotHeat::default()
        }
    }

    #[test]
    fn layout_is_checked() {
        let ok = |n: i32| n == 0;
        assert_eq!(
            PinnedMap::new(&[(0, 2)], 3, ok).unwrap_err(),
            LayoutError::Count { got: 2, want: 3 }
        );
        assert_eq!(
            PinnedMap::new(&[(0, 2), (5, 1)], 3, ok).unwrap_err(),
            LayoutError::Node(5)
        );
        let m = map();
        assert_eq!((m.node(1), m.node(2), m.node(6)), (FAST, SLOW, NONE));
    }

    #[test]
    fn hot_slow_blocks_are_promoted_into_free_fast_slots() {
        let mut m = map();
        m.used(2, 3); // blocks in slow slots 2, 3, 4
        let heat = [hot(0.0), hot(0.0), hot(5.0), hot(0.0), hot(9.0), hot(0.0)];
        let plan = m.plan(&heat, fast, None);
        assert_eq!(
            plan,
            vec![(4, FAST), (2, FAST)],
            "hottest first; cold 3 stays"
        );
        assert_eq!(m.requested(4), FAST);
        // Outstanding requests are not asked again, and hold their room.
        assert!(m.plan(&heat, fast, None).is_empty());
        assert_eq!(m.counters.promote_requests, 2);
    }

    #[test]
    fn full_fast_slots_demote_the_coldest_first_then_promote() {
        let mut m = map();
        m.used(0, 3); // fast 0, 1 used; slow 2 used
        let mut heat = [hot(3.0), hot(0.5), hot(8.0), hot(0.0), hot(0.0), hot(0.0)];
        assert_eq!(
            m.plan(&heat, fast, None),
            vec![(1, SLOW)],
            "make room first"
        );
        // Not acknowledged yet: nothing more (the room is coming).
        assert!(m.plan(&heat, fast, None).is_empty());
        // The client copied fast 1 to slow 5: fast 1 is now its shadow, i.e. room.
        assert_eq!(m.moved(1, 5, 1), 1);
        assert_eq!(m.slot(1), Slot::Shadow { of: 5 });
        heat[5] = heat[1];
        assert_eq!(m.plan(&heat, fast, None), vec![(2, FAST)]);
        // Served by a copy into the shadow slot of another block: that shadow is gone.
        assert_eq!(m.moved(2, 1, 1), 1);
        assert_eq!(m.slot(5), Slot::Used { shadow: None });
        assert_eq!(m.slot(1), Slot::Used { shadow: Some(2) });
        assert_eq!(m.counters.copied_blocks, 2);
    }

    #[test]
    fn similar_heat_does_not_swap_and_pin_fast_is_never_demoted() {
        let mut m = map();
        m.used(0, 3);
        let heat = [hot(4.0), hot(4.0), hot(5.0), hot(0.0), hot(0.0), hot(0.0)];
        assert!(
            m.plan(&heat, fast, None).is_empty(),
            "5 is not 1.5x hotter than 4"
        );
        let mut heat = [hot(0.0), hot(0.0), hot(0.0), hot(0.0), hot(0.0), hot(0.0)];
        heat[0].pinned_fast = true;
        heat[1].pinned_fast = true;
        heat[2].wants_fast = true;
        assert!(m.plan(&heat, fast, None).is_empty(), "PIN_FAST blocks stay");
        heat[1].pinned_fast = false;
        assert_eq!(
            m.plan(&heat, fast, None),
            vec![(1, SLOW)],
            "prefetch displaces"
        );
    }

    #[test]
    fn headroom_demotes_cold_blocks_ahead_of_need() {
        // 4 fast slots (0-3), 4 slow (4-7), all fast ones used, nothing slow wants up.
        let mut m = PinnedMap::new(&[(FAST, 4), (SLOW, 4)], 8, |n| n == FAST || n == SLOW).unwrap();
        m.used(0, 4);
        let mut heat = [
            hot(5.0),
            hot(0.05),
            hot(3.0),
            hot(0.0),
            hot(0.0),
            hot(0.0),
            hot(0.0),
            hot(0.0),
        ];
        heat[3].cold = true;
        assert!(m.plan(&heat, fast, None).is_empty(), "no headroom asked");
        // 50 %: two fast slots kept free: the COLD block first, then the cooled one; the
        // warm ones stay.
        m.set_headroom_percent(50);
        assert_eq!(m.plan(&heat, fast, None), vec![(3, SLOW), (1, SLOW)]);
        assert_eq!(m.counters.demote_requests, 2);
        // Outstanding demotions count as room: nothing more until they are served.
        assert!(m.plan(&heat, fast, None).is_empty());
        m.moved(3, 4, 1);
        m.moved(1, 5, 1);
        assert!(
            m.plan(&heat, fast, None).is_empty(),
            "two shadows are the room"
        );
        // 100 %: only cold blocks go, warm ones are not pushed out for headroom.
        m.set_headroom_percent(100);
        assert!(m.plan(&heat, fast, None).is_empty());
    }

    #[test]
    fn demoting_an_unwritten_block_is_a_re_point() {
        let mut m = map();
        m.used(2, 1);
        // Promoted by copy: slow 2 stays as a shadow of fast 0.
        assert_eq!(m.moved(2, 0, 1), 1);
        assert_eq!(m.slot(2), Slot::Shadow { of: 0 });
        // Fast full of hotter data: block 0 is demoted back to its shadow for free.
        m.used(1, 1);
        m.used(3, 1);
        let heat = [hot(0.2), hot(9.0), hot(0.0), hot(7.0), hot(0.0), hot(0.0)];
        assert_eq!(m.plan(&heat, fast, None), vec![(0, SLOW)]);
        assert_eq!(m.moved(0, 2, 1), 0, "re-point, no copy");
        assert_eq!(m.counters.avoided_blocks, 1);
        assert_eq!(m.slot(0), Slot::Shadow { of: 2 });
        // Promoting it again would re-point too; a write drops the shadow instead.
        m.written(2, 1);
        assert_eq!(m.slot(0), Slot::Free);
        assert_eq!(m.slot(2), Slot::Used { shadow: None });
    }

    #[test]
    fn a_block_with_a_slow_shadow_is_demoted_onto_it() {
        let mut m = PinnedMap::new(&[(FAST, 1), (SLOW, 2)], 3, |_| true).unwrap();
        m.used(1, 1);
        m.moved(1, 0, 1); // fast 0 holds it, slow 1 its shadow
        m.used(2, 1); // slow 2 used: no free slow slot left
        let heat = [hot(0.0), hot(0.0), hot(6.0)];
        assert_eq!(m.plan(&heat, fast, None), vec![(0, SLOW)]);
        assert_eq!(m.moved(0, 1, 1), 0);
    }

    #[test]
    fn a_found_pinned_region_promotes_outside_itself() {
        let mut m = PinnedMap::detected(vec![SLOW, SLOW, -libc::ENOENT]);
        assert_eq!(
            (m.slot(0), m.slot(2)),
            (Slot::Used { shadow: None }, Slot::Free)
        );
        let heat = [hot(3.0), hot(0.0), hot(9.0)];
        assert!(m.plan(&heat, fast, None).is_empty(), "no room given");
        assert_eq!(m.plan(&heat, fast, Some((FAST, 4))), vec![(0, FAST)]);
        // The client copied it out of the region: RELOCATED frees the slot.
        m.freed(0, 1);
        assert_eq!(m.slot(0), Slot::Free);
        assert!(!map().outside() && m.outside());
        assert!(
            map().plan(&heat, fast, Some((FAST, 4))).is_empty(),
            "a registered layout gets no outside room"
        );
    }

    #[test]
    fn reuse_free_and_decline() {
        let mut m = map();
        m.used(2, 1);
        m.moved(2, 0, 1);
        // The client reused the shadow slot for new contents.
        m.used(2, 1);
        assert_eq!(m.slot(0), Slot::Used { shadow: None });
        assert_eq!(m.slot(2), Slot::Used { shadow: None });
        // Freed with a shadow: both slots free.
        m.moved(2, 1, 1);
        m.freed(1, 1);
        assert_eq!((m.slot(1), m.slot(2)), (Slot::Free, Slot::Free));
        m.used(3, 1);
        let heat = [hot(0.0), hot(0.0), hot(0.0), hot(2.0), hot(0.0), hot(0.0)];
        assert_eq!(m.plan(&heat, fast, None), vec![(3, FAST)]);
        m.declined(3, 1);
        assert_eq!(m.requested(3), NONE);
        assert_eq!(m.counters.declined_blocks, 1);
        assert_eq!(m.plan(&heat, fast, None), vec![(3, FAST)], "asked again");
    }
}
