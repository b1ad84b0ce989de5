//! What a hint does to a heat table. Pure logic, unit-tested here; run on the tiering
//! loop's thread (the tables' owner) in the edits the hint poller sends, once per
//! validated ring entry.
//!
//! Hints are per block, flags per heat granule (`heat.granule`). A block smaller than a
//! granule shares it with its neighbours, so hints that *protect* memory (ACCESS,
//! PREFETCH, PIN_FAST) mark every granule they touch, while hints that *give memory
//! away* (COLD, FREE, RELOCATED) mark only granules they cover entirely: one cold block
//! never drags a hot neighbour down.

use crate::heat::{flags, HeatTable, Span};
use tierd_api::AddrRange;
use tierd_client::HintKind;

/// Every flag a client hint can set.
pub const HINT_FLAGS: u8 =
    flags::PIN_FAST | flags::COLD | flags::FREE | flags::CLIENT | flags::PREFETCH;

/// Applies one hint for the address range `r` of a region.
pub fn apply(t: &mut HeatTable, kind: HintKind, r: AddrRange, now_ms: u32) {
    if r.end <= r.start {
        return;
    }
    let protect = |t: &mut HeatTable, set: u8| {
        t.mark(
            r,
            Span::Touching,
            set | flags::CLIENT,
            flags::COLD | flags::FREE,
        )
    };
    match kind {
        HintKind::Access | HintKind::Written => {
            t.record(r.start, r.end, 1.0, now_ms);
            protect(t, 0);
        }
        // Pinned-region acknowledgements: the map follows them (`super::pinned`); MOVED
        // carries the source's heat over ([`carry`]).
        HintKind::Moved | HintKind::Declined => {}
        HintKind::Prefetch => protect(t, flags::PREFETCH),
        HintKind::PinFast => protect(t, flags::PIN_FAST),
        HintKind::Unpin => t.unmark(r, Span::Touching, flags::PIN_FAST),
        HintKind::Cold => t.mark(
            r,
            Span::Covered,
            flags::COLD | flags::CLIENT,
            flags::PREFETCH,
        ),
        HintKind::Free | HintKind::Relocated => t.mark(
            r,
            Span::Covered,
            flags::FREE | flags::CLIENT,
            flags::PREFETCH | flags::PIN_FAST | flags::COLD,
        ),
    }
}

/// Applies many ACCESS hints at once: each granule touched by any of `ranges` gets one
/// heat update weighted by how many ranges touch it, instead of one per range. Same
/// heat as applying them one by one (they share `now_ms`), far fewer table updates when
/// an engine re-hints the same blocks every step. O(n log n) in the number of ranges.
pub fn access_many(
    t: &mut HeatTable,
    ranges: &[AddrRange],
    now_ms: u32,
    events: &mut Vec<(u64, i32)>,
) {
    let g = t.granule().max(1);
    events.clear();
    for r in ranges.iter().filter(|r| r.end > r.start) {
        events.push((r.start / g, 1));
        events.push(((r.end - 1) / g + 1, -1));
    }
    events.sort_unstable();
    let mut depth = 0i32;
    let mut from = 0u64;
    for &(x, d) in events.iter() {
        if depth > 0 && x > from {
            let span = AddrRange {
                start: from * g,
                end: x * g,
            };
            t.record(span.start, span.end, depth as f64, now_ms);
            t.mark(
                span,
                Span::Touching,
                flags::CLIENT,
                flags::COLD | flags::FREE,
            );
        }
        depth += d;
        from = x;
    }
}

/// MOVED: the contents of `from` now live at `to` (same length): `to` takes `from`'s
/// heat and hint flags, so a block just moved does not look cold (or stop being
/// pinned to the fast tier) at its new place; `from`, now a mere copy, loses both.
pub fn carry(t: &mut HeatTable, from: AddrRange, to: AddrRange, now_ms: u32) {
    let g = t.granule().max(1);
    let mut a = from.start;
    while a < from.end {
        let b = to.start + (a - from.start);
        let heat = t.heat_at(a, now_ms);
        let set = t.cell(a).map_or(0, |c| c.flags() & HINT_FLAGS);
        let end = (b + g).min(to.end);
        t.forget_heat(AddrRange { start: b, end });
        if heat > 0.0 {
            t.record(b, end, heat, now_ms);
        }
        t.mark(
            AddrRange { start: b, end },
            Span::Touching,
            set,
            HINT_FLAGS & !set,
        );
        a += g;
    }
    t.forget_heat(from);
    t.unmark(from, Span::Covered, HINT_FLAGS);
}

/// Forgets every hint on `r` (the region was unregistered).
pub fn clear(t: &mut HeatTable, r: AddrRange) {
    t.unmark(r, Span::Touching, HINT_FLAGS);
}

/// Clears PREFETCH on granules entirely inside `r` once they are on the fast tier: a
/// prefetch is served when the block is up, it does not pin it there.
pub fn prefetch_served(t: &mut HeatTable, r: AddrRange) {
    t.unmark(r, Span::Covered, flags::PREFETCH);
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

    fn f(t: &HeatTable, a: u64) -> u8 {
        t.cell(a).map_or(0, |c| c.flags())
    }

    #[test]
    fn access_heats_and_revives() {
        let mut t = table();
        apply(&mut t, HintKind::Free, r(0, 2 * G), 0);
        assert_eq!(f(&t, 0), flags::FREE | flags::CLIENT);
        apply(&mut t, HintKind::Access, r(G / 2, G / 2 + 4096), 10);
        assert_eq!(f(&t, 0), flags::CLIENT, "a used block is live again");
        assert_eq!(f(&t, G), flags::FREE | flags::CLIENT);
        assert!(t.heat_at(0, 10) > 0.9);
    }

    #[test]
    fn access_many_equals_one_by_one() {
        let ranges = [
            r(0, G),
            r(G / 2, 3 * G),
            r(5 * G, 6 * G + 1),
            r(0, 4096),
            r(7, 7),
        ];
        let (mut a, mut b) = (table(), table());
        for x in ranges {
            apply(&mut a, HintKind::Access, x, 5);
        }
        access_many(&mut b, &ranges, 5, &mut Vec::new());
        assert_eq!(a.len(), b.len());
        for (addr, c, h) in a.iter(5) {
            let other = b.cell(addr).unwrap();
            assert!((h - b.heat_at(addr, 5)).abs() < 1e-4, "granule {addr:#x}");
            assert_eq!(c.flags(), other.flags());
        }
        assert!(
            (b.heat_at(0, 5) - 3.0).abs() < 1e-4,
            "three ranges touch granule 0"
        );
        assert!((b.heat_at(6 * G, 5) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn giving_away_marks_only_covered_granules() {
        let mut t = table();
        // 16 KiB blocks: a cold block inside granule 0 leaves it alone.
        apply(&mut t, HintKind::Cold, r(16 << 10, 32 << 10), 0);
        assert_eq!(f(&t, 0), 0);
        // Blocks spanning granule 1 entirely and half of granule 2.
        apply(&mut t, HintKind::Cold, r(G, 2 * G + G / 2), 0);
        assert_eq!(f(&t, G), flags::COLD | flags::CLIENT);
        assert_eq!(f(&t, 2 * G), 0);
        // Protecting hints touch partial granules.
        apply(&mut t, HintKind::PinFast, r(2 * G + 4096, 2 * G + 8192), 0);
        assert_eq!(f(&t, 2 * G), flags::PIN_FAST | flags::CLIENT);
        apply(&mut t, HintKind::PinFast, r(G, 2 * G), 0);
        assert_eq!(f(&t, G), flags::PIN_FAST | flags::CLIENT, "pin clears cold");
        apply(&mut t, HintKind::Unpin, r(G, 3 * G), 0);
        assert_eq!(f(&t, G) & flags::PIN_FAST, 0);
        assert_eq!(f(&t, 2 * G) & flags::PIN_FAST, 0);
    }

    #[test]
    fn moved_carries_heat_and_flags() {
        let mut t = table();
        for _ in 0..4 {
            apply(&mut t, HintKind::Access, r(0, G), 10);
        }
        apply(&mut t, HintKind::PinFast, r(0, G), 10);
        apply(&mut t, HintKind::Cold, r(8 * G, 9 * G), 10);
        carry(&mut t, r(0, G), r(8 * G, 9 * G), 10);
        assert!(t.heat_at(8 * G, 10) > 3.9);
        assert_eq!(t.heat_at(0, 10), 0.0, "the old place is a mere copy");
        assert_eq!(
            f(&t, 8 * G),
            flags::PIN_FAST | flags::CLIENT,
            "COLD was stale"
        );
        assert_eq!(f(&t, 0), 0);
    }

    #[test]
    fn free_unpins_and_prefetch_is_served_once() {
        let mut t = table();
        apply(&mut t, HintKind::PinFast, r(0, G), 0);
        apply(&mut t, HintKind::Free, r(0, G), 0);
        assert_eq!(f(&t, 0), flags::FREE | flags::CLIENT);
        apply(&mut t, HintKind::Prefetch, r(0, 2 * G), 0);
        assert_eq!(f(&t, G), flags::PREFETCH | flags::CLIENT);
        prefetch_served(&mut t, r(0, 2 * G));
        assert_eq!(f(&t, G), flags::CLIENT);
        clear(&mut t, r(0, 2 * G));
        assert_eq!((f(&t, 0), f(&t, G)), (0, 0));
    }
}
