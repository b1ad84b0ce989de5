//! Address ranges whose pages tierd must never ask the kernel to move: client regions
//! registered (or found) pinned (`cudaHostRegister`, io_uring fixed buffers, RDMA
//! registrations). `move_pages` cannot move long-term pinned pages anyway; asking costs
//! a failed migration per page each time (`pgmigrate_fail`), so every job is cut around
//! these ranges before a single syscall. The pages are placed by the client instead
//! (relocation requests, `docs/protocol.md`, "Pinned regions").
//!
//! Written by the protocol's threads when a pinned region comes and goes; read by every
//! job of the engine ([`super::MigrationEngine::run`], the urgent lane).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use tierd_api::AddrRange;

/// Pinned ranges per pid, keyed by the protocol region that declared them.
#[derive(Debug, Default)]
pub struct PinnedRanges {
    by_pid: RwLock<HashMap<i32, Vec<(u32, AddrRange)>>>,
    /// Pages left out of jobs because they were pinned.
    pub skipped_pages: AtomicU64,
}

impl PinnedRanges {
    /// Declares `range` of `pid` pinned (region `id`).
    pub fn add(&self, pid: i32, id: u32, range: AddrRange) {
        let mut m = self.by_pid.write().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(pid).or_default();
        v.retain(|(i, _)| *i != id);
        v.push((id, range));
    }

    /// Forgets region `id` of `pid`.
    pub fn remove(&self, pid: i32, id: u32) {
        let mut m = self.by_pid.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = m.get_mut(&pid) {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                m.remove(&pid);
            }
        }
    }

    /// Whether `addr` of `pid` is pinned.
    pub fn contains(&self, pid: i32, addr: u64) -> bool {
        let m = self.by_pid.read().unwrap_or_else(|p| p.into_inner());
        m.get(&pid)
            .is_some_and(|v| v.iter().any(|(_, r)| r.start <= addr && addr < r.end))
    }

    /// `ranges` without their pinned parts; the pinned pages left out are counted.
    pub fn subtract(&self, pid: i32, ranges: Vec<AddrRange>, page: u64) -> Vec<AddrRange> {
        let m = self.by_pid.read().unwrap_or_else(|p| p.into_inner());
        let Some(pinned) = m.get(&pid) else {
            return ranges;
        };
        let mut out = Vec::with_capacity(ranges.len());
        let mut skipped = 0u64;
        for r in ranges {
            let mut parts = vec![r];
            for (_, p) in pinned {
                let mut next = Vec::with_capacity(parts.len() + 1);
                for q in parts {
                    let (lo, hi) = (q.start.max(p.start), q.end.min(p.end));
                    if lo >= hi {
                        next.push(q);
                        continue;
                    }
                    skipped += hi - lo;
                    if q.start < lo {
                        next.push(AddrRange {
                            start: q.start,
                            end: lo,
                        });
                    }
                    if hi < q.end {
                        next.push(AddrRange {
                            start: hi,
                            end: q.end,
                        });
                    }
                }
                parts = next;
            }
            out.extend(parts);
        }
        if skipped > 0 {
            self.skipped_pages
                .fetch_add(skipped.div_ceil(page.max(1)), Ordering::Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> AddrRange {
        AddrRange { start, end }
    }

    #[test]
    fn jobs_are_cut_around_pinned_ranges() {
        let p = PinnedRanges::default();
        p.add(7, 1, r(0x2000, 0x4000));
        p.add(7, 2, r(0x8000, 0x9000));
        let out = p.subtract(
            7,
            vec![r(0x1000, 0x5000), r(0x8000, 0x9000), r(0xa000, 0xb000)],
            0x1000,
        );
        assert_eq!(
            out,
            vec![r(0x1000, 0x2000), r(0x4000, 0x5000), r(0xa000, 0xb000)]
        );
        assert_eq!(p.skipped_pages.load(Ordering::Relaxed), 3);
        assert!(p.contains(7, 0x3fff) && !p.contains(7, 0x4000) && !p.contains(8, 0x3000));
        assert_eq!(
            p.subtract(8, vec![r(0x2000, 0x3000)], 0x1000),
            vec![r(0x2000, 0x3000)]
        );
        p.remove(7, 1);
        assert!(!p.contains(7, 0x3000));
        p.remove(7, 2);
        assert_eq!(p.subtract(7, vec![r(0x8000, 0x9000)], 0x1000).len(), 1);
    }
}
