//! The lock-free single-producer single-consumer hint ring of a region.
//!
//! The client ([`Producer`]) writes an entry into slot `tail % ring_entries`, then
//! publishes it with a release store of `tail + 1`; tierd ([`Consumer`]) loads `tail` with
//! acquire, copies the entries out, validates each one and stores `head` with release so
//! the slots can be reused. A full ring never blocks the producer: the entry is dropped
//! and counted in the header (`dropped_entries`, `dropped_blocks`).
//!
//! tierd keeps `head` in its own memory and only ever *writes* it to the mapping, so a
//! client cannot rewind the consumer; a `tail` that is behind `head` or more than
//! `ring_entries` ahead of it is reported as [`RingError::CorruptIndices`] and the client
//! is dropped. Entries are checked by [`validate`] before use.

use crate::layout::{HintEntry, HintKind};
use crate::shm::ShmView;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error(
        "region {region}: ring indices corrupt (head {head}, tail {tail}, capacity {capacity})"
    )]
    CorruptIndices {
        region: u32,
        head: u64,
        tail: u64,
        capacity: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("unknown hint kind {0}")]
    Kind(u16),
    #[error("entry names region {found}, ring belongs to region {expected}")]
    Region { found: u32, expected: u32 },
    #[error("blocks {first}+{n} outside the region's {nblocks} blocks")]
    Range { first: u64, n: u32, nblocks: u64 },
}

/// A validated hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub kind: HintKind,
    pub first_block: u64,
    pub nblocks: u64,
    pub deadline_ms: u32,
}

/// Checks an entry copied out of the ring against the region it came from.
pub fn validate(e: &HintEntry, region: u32, nblocks: u64) -> Result<Hint, EntryError> {
    let kind = HintKind::from_raw(e.kind).ok_or(EntryError::Kind(e.kind))?;
    if e.region != region {
        return Err(EntryError::Region {
            found: e.region,
            expected: region,
        });
    }
    let in_range =
        e.nblocks > 0 && e.first_block < nblocks && e.nblocks as u64 <= nblocks - e.first_block;
    if !in_range {
        return Err(EntryError::Range {
            first: e.first_block,
            n: e.nblocks,
            nblocks,
        });
    }
    if kind == HintKind::Moved {
        let to = e.to_block();
        let disjoint =
            to + e.nblocks as u64 <= e.first_block || e.first_block + e.nblocks as u64 <= to;
        if to >= nblocks || e.nblocks as u64 > nblocks - to || !disjoint {
            return Err(EntryError::Range {
                first: to,
                n: e.nblocks,
                nblocks,
            });
        }
    }
    Ok(Hint {
        kind,
        first_block: e.first_block,
        nblocks: e.nblocks as u64,
        deadline_ms: e.deadline_ms,
    })
}

/// The client's end. Not `Sync`: one producer per ring (the client wraps it in a mutex).
pub struct Producer<'a> {
    view: ShmView<'a>,
    tail: u64,
    cached_head: u64,
    capacity: u64,
}

impl<'a> Producer<'a> {
    pub fn new(view: ShmView<'a>) -> Producer<'a> {
        let h = view.header();
        Producer {
            tail: h.tail.load(Ordering::Relaxed),
            cached_head: h.head.load(Ordering::Acquire),
            capacity: view.geometry().ring_entries as u64,
            view,
        }
    }

    /// Free slots, looking at the consumer's line only when the cached view of it does
    /// not show `want` free (keeps that line out of our cache on the fast path).
    fn free_slots(&mut self, want: u64) -> u64 {
        let free = self
            .capacity
            .saturating_sub(self.tail.wrapping_sub(self.cached_head));
        if free >= want {
            return free;
        }
        self.cached_head = self.view.header().head.load(Ordering::Acquire);
        self.capacity
            .saturating_sub(self.tail.wrapping_sub(self.cached_head))
    }

    /// Publishes as many of `entries` as fit, in order, with one release store; drops
    /// and counts the rest. Returns how many were published. Never blocks.
    pub fn push(&mut self, entries: &[HintEntry]) -> usize {
        let free = self.free_slots(entries.len() as u64);
        let n = (entries.len() as u64).min(free) as usize;
        for (i, e) in entries[..n].iter().enumerate() {
            self.view.write_entry(self.tail + i as u64, *e);
        }
        if n > 0 {
            self.tail += n as u64;
            self.view.header().tail.store(self.tail, Ordering::Release);
        }
        if n < entries.len() {
            let h = self.view.header();
            let lost: u64 = entries[n..].iter().map(|e| e.nblocks as u64).sum();
            h.dropped_entries
                .fetch_add((entries.len() - n) as u64, Ordering::Relaxed);
            h.dropped_blocks.fetch_add(lost, Ordering::Relaxed);
        }
        n
    }
}

/// tierd's end.
#[derive(Debug, Default)]
pub struct Consumer {
    head: u64,
}

impl Consumer {
    /// A consumer of a fresh ring (tierd zeroes `head` and `tail` before sharing).
    pub fn new() -> Consumer {
        Consumer { head: 0 }
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// Copies up to `max` published entries into `out` and frees their slots. Entries
    /// are not validated here (see [`validate`]); indices are.
    pub fn drain(
        &mut self,
        view: &ShmView<'_>,
        region: u32,
        max: usize,
        out: &mut Vec<HintEntry>,
    ) -> Result<usize, RingError> {
        let h = view.header();
        let capacity = view.geometry().ring_entries as u64;
        let tail = h.tail.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > capacity {
            return Err(RingError::CorruptIndices {
                region,
                head: self.head,
                tail,
                capacity,
            });
        }
        let n = avail.min(max as u64);
        out.reserve(n as usize);
        for i in 0..n {
            out.push(view.read_entry(self.head + i));
        }
        self.head += n;
        h.head.store(self.head, Ordering::Release);
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Geometry;
    use crate::shm::tests::Mem;

    fn entry(kind: HintKind, first: u64, n: u32) -> HintEntry {
        HintEntry {
            kind: kind as u16,
            region: 3,
            first_block: first,
            nblocks: n,
            ..HintEntry::default()
        }
    }

    #[test]
    fn fifo_wraps_and_full_ring_drops_and_counts() {
        let geo = Geometry::new(8, 64, 4096).unwrap();
        let mut m = Mem::new(geo.total_bytes);
        let v = m.view(geo);
        v.init_header(3, 4096, 0);
        let mut p = Producer::new(v);
        let mut c = Consumer::new();
        let mut out = Vec::new();
        for round in 0..5u64 {
            let batch: Vec<HintEntry> = (0..6)
                .map(|i| entry(HintKind::Access, round * 6 + i, 1))
                .collect();
            assert_eq!(p.push(&batch), 6);
            out.clear();
            assert_eq!(c.drain(&v, 3, 100, &mut out).unwrap(), 6);
            assert_eq!(out, batch, "FIFO across wrap-around, round {round}");
        }
        let batch: Vec<HintEntry> = (0..10).map(|i| entry(HintKind::Cold, i, 2)).collect();
        assert_eq!(p.push(&batch), 8, "eight slots");
        let h = v.header();
        assert_eq!(h.dropped_entries.load(Ordering::Relaxed), 2);
        assert_eq!(h.dropped_blocks.load(Ordering::Relaxed), 4);
        out.clear();
        assert_eq!(c.drain(&v, 3, 3, &mut out).unwrap(), 3, "max honoured");
        assert_eq!(p.push(&batch[..4]), 3, "three slots freed");
    }

    #[test]
    fn corrupt_indices_are_detected() {
        let geo = Geometry::new(8, 64, 4096).unwrap();
        let mut m = Mem::new(geo.total_bytes);
        let v = m.view(geo);
        v.init_header(3, 4096, 0);
        let mut c = Consumer::new();
        let mut out = Vec::new();
        // tail too far ahead
        v.header().tail.store(9, Ordering::Relaxed);
        assert!(matches!(
            c.drain(&v, 3, 100, &mut out),
            Err(RingError::CorruptIndices { tail: 9, .. })
        ));
        // tail behind head (wrapping_sub is huge)
        v.header().tail.store(4, Ordering::Relaxed);
        assert_eq!(c.drain(&v, 3, 100, &mut out).unwrap(), 4);
        v.header().tail.store(2, Ordering::Relaxed);
        assert!(c.drain(&v, 3, 100, &mut out).is_err());
        // A client rewriting head cannot rewind the consumer.
        v.header().head.store(0, Ordering::Relaxed);
        v.header().tail.store(4, Ordering::Relaxed);
        out.clear();
        assert_eq!(c.drain(&v, 3, 100, &mut out).unwrap(), 0);
    }

    #[test]
    fn validate_refuses_bad_entries() {
        let ok = entry(HintKind::Prefetch, 60, 4);
        assert_eq!(validate(&ok, 3, 64).unwrap().nblocks, 4);
        let mut e = ok;
        e.kind = 0;
        assert_eq!(validate(&e, 3, 64), Err(EntryError::Kind(0)));
        let mut e = ok;
        e.region = 4;
        assert!(matches!(
            validate(&e, 3, 64),
            Err(EntryError::Region { .. })
        ));
        for (first, n) in [
            (61, 4),
            (64, 1),
            (0, 0),
            (u64::MAX, u32::MAX),
            (1, u32::MAX),
        ] {
            assert!(
                matches!(
                    validate(&entry(HintKind::Access, first, n), 3, 64),
                    Err(EntryError::Range { .. })
                ),
                "{first}+{n}"
            );
        }
    }

    #[test]
    fn moved_destinations_are_checked() {
        let moved = |from, to, n| HintEntry {
            deadline_ms: to,
            ..entry(HintKind::Moved, from, n)
        };
        assert!(validate(&moved(0, 60, 4), 3, 64).is_ok());
        assert!(validate(&moved(60, 0, 4), 3, 64).is_ok());
        for (from, to, n) in [(0, 61, 4), (0, 64, 1), (0, 2, 4), (4, 2, 4), (5, 5, 1)] {
            assert!(
                matches!(
                    validate(&moved(from, to, n), 3, 64),
                    Err(EntryError::Range { .. })
                ),
                "{from}->{to}+{n}: out of range or overlapping"
            );
        }
    }

    proptest::proptest! {
        // The ring reader over hostile memory: any bytes in the slots, any sequence of
        // tails. It never panics, never hands out more than `max` or more than the
        // capacity, and everything validate() accepts lies inside the region.
        #[test]
        fn reader_is_total_over_hostile_memory(
            log_cap in 1u32..7,
            nblocks in 1u64..100,
            bytes in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..400),
            tails in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..20),
            max in 0usize..100,
        ) {
            let geo = Geometry::new(1 << log_cap, nblocks, 4096).unwrap();
            let mut m = Mem::new(geo.total_bytes);
            let ring_words = (geo.ring_offset / 8) as usize;
            for (i, w) in bytes.iter().enumerate() {
                if let Some(slot) = m.0.get_mut(ring_words + i) {
                    *slot = *w;
                }
            }
            let v = m.view(geo);
            v.init_header(5, 4096, 0);
            let mut c = Consumer::new();
            let mut out = Vec::new();
            for t in tails {
                // Small tails are plausible; huge ones are corruption.
                let tail = if t % 2 == 0 { c.head() + t % 70 } else { t };
                v.header().tail.store(tail, Ordering::Relaxed);
                out.clear();
                let before = c.head();
                match c.drain(&v, 5, max, &mut out) {
                    Ok(n) => {
                        proptest::prop_assert!(n <= max && n as u64 <= geo.ring_entries as u64);
                        proptest::prop_assert_eq!(n, out.len());
                        proptest::prop_assert_eq!(c.head(), before + n as u64);
                        proptest::prop_assert_eq!(v.header().head.load(Ordering::Relaxed), c.head());
                    }
                    Err(RingError::CorruptIndices { tail: bad, .. }) => {
                        proptest::prop_assert!(bad.wrapping_sub(before) > geo.ring_entries as u64);
                        proptest::prop_assert_eq!(c.head(), before);
                    }
                }
                for e in &out {
                    if let Ok(h) = validate(e, 5, nblocks) {
                        proptest::prop_assert!(h.nblocks >= 1 && h.first_block + h.nblocks <= nblocks);
                    }
                }
            }
        }
    }
}
