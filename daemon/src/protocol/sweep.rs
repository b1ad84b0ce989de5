//! The placement sweep: a budgeted re-read of the placement tables, for the moves tierd
//! did not make (kernel reclaim and demotion, NUMA balancing, another tool) and for the
//! first placement of a new region. tierd's own moves reach the tables without a query
//! ([`super::moves`]), so the sweep's cost follows its budget, not the registered size.
//!
//! Cadence: one [`Sweep::step`] per `tierd-placement` pass (every
//! [`super::REFRESH_PERIOD`]). Each step may query `client.placement_sweep_pages_per_s`
//! × the time since the last step pages (one page per block: its first), in one
//! `move_pages` call per region touched. New regions are read first, whole, smallest first,
//! within that budget; then a cursor walks every region's blocks in region order, and a **pass** ends
//! when it wraps. The round robin reads a block at most once a step, so when the budget
//! covers every block each region is re-read every step (100 ms); otherwise a pass takes
//! blocks / budget seconds: the staleness bound for moves tierd did not make, reported
//! as `tierd_placement_sweep_seconds`. Pinned regions are not read (their placement is
//! their slots'). Owned and stepped by `tierd-placement` only.

use super::placement::query_blocks;
use super::region::ShmRegion;
use crate::state::Daemon;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sweep's and the move notices' figures, for the metrics endpoint. Written by
/// `tierd-placement`, except `move_notices_dropped` (by the movers' threads).
#[derive(Debug, Default)]
pub struct PlacementCounters {
    /// Pages the sweep queried since start.
    pub query_pages: AtomicU64,
    /// Full passes over every region's blocks.
    pub passes: AtomicU64,
    /// The last full pass: how long it took and how many blocks it read.
    pub last_pass_ms: AtomicU64,
    pub last_pass_blocks: AtomicU64,
    /// Blocks whose placement was written from tierd's own moves.
    pub move_blocks: AtomicU64,
    /// Notices of tierd's moves dropped because `tierd-placement` was behind.
    pub move_notices_dropped: AtomicU64,
}

/// The longest gap a step's budget covers: after a stall the sweep does not burst.
const MAX_STEP: Duration = Duration::from_millis(500);

/// Where the sweep is (see the module doc).
pub struct Sweep {
    /// The next block the round robin reads: (the first region with an id at least
    /// this, block); `None`: past the last region.
    cursor: Option<(u32, u64)>,
    pass_started: Instant,
    pass_blocks: u64,
    /// Regions not read in full yet, with their next block: served first.
    first: BTreeMap<u32, u64>,
    /// Every live region the sweep has met.
    seen: HashSet<u32>,
    last_step: Instant,
    /// Budget (pages) carried from step to step below one page.
    carry: f64,
}

impl Sweep {
    /// A sweep whose first step's budget covers one [`super::REFRESH_PERIOD`].
    pub fn new(now: Instant) -> Sweep {
        Sweep {
            cursor: Some((0, 0)),
            pass_started: now,
            pass_blocks: 0,
            first: BTreeMap::new(),
            seen: HashSet::new(),
            last_step: now.checked_sub(super::REFRESH_PERIOD).unwrap_or(now),
            carry: 0.0,
        }
    }

    /// Reads up to the budget's share since the last step (see the module doc).
    /// `regions` are the live regions in id order. Returns the pages queried.
    pub fn step(
        &mut self,
        d: &Daemon,
        regions: &[Arc<ShmRegion>],
        pages_per_s: u64,
        now: Instant,
    ) -> u64 {
        let dt = now.saturating_duration_since(self.last_step).min(MAX_STEP);
        self.last_step = now;
        let allowance = pages_per_s as f64 * dt.as_secs_f64() + self.carry;
        let mut left = allowance.floor() as u64;
        self.carry = allowance - left as f64;
        let live: Vec<&Arc<ShmRegion>> = regions.iter().filter(|r| !r.is_pinned()).collect();
        let ids: HashSet<u32> = live.iter().map(|r| r.id).collect();
        self.seen.retain(|id| ids.contains(id));
        self.first.retain(|id, _| ids.contains(id));
        for r in &live {
            if self.seen.insert(r.id) {
                self.first.insert(r.id, 0);
            }
        }
        let budget = left;
        // New regions first, the smallest first (a huge one does not hold up the others).
        let mut fresh: Vec<(u64, &Arc<ShmRegion>, u64)> = live
            .iter()
            .filter_map(|r| {
                let next = *self.first.get(&r.id)?;
                Some((r.nblocks.saturating_sub(next), *r, next))
            })
            .collect();
        fresh.sort_by_key(|&(remaining, r, _)| (remaining, r.id));
        for (remaining, r, next) in fresh {
            if left == 0 {
                break;
            }
            let n = left.min(remaining);
            read(d, r, next, n);
            left -= n;
            if n == remaining {
                self.first.remove(&r.id);
            } else {
                self.first.insert(r.id, next + n);
            }
        }
        // Then the round robin, at most once round per step.
        let (mut read_now, mut wrapped) = (0u64, false);
        while left > 0 {
            let at = self
                .cursor
                .and_then(|(id, block)| Some((live.iter().position(|r| r.id >= id)?, id, block)));
            let Some((i, id, block)) = at else {
                // Past the last region: a pass ends (counted if it read anything).
                self.end_pass(d, now);
                self.cursor = Some((0, 0));
                if wrapped || read_now > 0 {
                    break; // every block was read this step
                }
                wrapped = true;
                continue;
            };
            let r = live[i];
            let from = if r.id == id { block } else { 0 };
            let n = left.min(r.nblocks.saturating_sub(from));
            if n > 0 {
                read(d, r, from, n);
                left -= n;
                read_now += n;
                self.pass_blocks += n;
            }
            self.cursor = if from + n < r.nblocks {
                Some((r.id, from + n))
            } else {
                live.get(i + 1).map(|next| (next.id, 0))
            };
        }
        if left > 0 {
            self.carry = 0.0; // what the step could not use does not pile up
        }
        let used = budget - left;
        d.placement.query_pages.fetch_add(used, Ordering::Relaxed);
        used
    }

    fn end_pass(&mut self, d: &Daemon, now: Instant) {
        if self.pass_blocks > 0 {
            let c = &d.placement;
            let ms = now.saturating_duration_since(self.pass_started).as_millis() as u64;
            c.last_pass_ms.store(ms, Ordering::Relaxed);
            c.last_pass_blocks
                .store(self.pass_blocks, Ordering::Relaxed);
            c.passes.fetch_add(1, Ordering::Relaxed);
        }
        self.pass_started = now;
        self.pass_blocks = 0;
    }
}

/// Queries blocks `[first, first + n)` of `r`, writes them and bumps the generation.
fn read(d: &Daemon, r: &ShmRegion, first: u64, n: u64) {
    let blocks: Vec<u64> = (first..first + n).collect();
    let nodes = query_blocks(d, r, &blocks);
    for (b, node) in blocks.into_iter().zip(nodes) {
        r.set_placement(b, node);
    }
    r.bump_placement();
}
