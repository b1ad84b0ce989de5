//! The latency-first lane: a client's PREFETCH or PIN_FAST promotion of a few blocks,
//! which must land within its deadline (target p99 10 ms).
//!
//! Called by the protocol's `tierd-prefetch` thread. A background job
//! ([`MigrationEngine::run`]) re-reads the topology and the process's maps first, which
//! costs tens of ms under emulation; this lane takes the destination's free memory from
//! the caller's cache instead, and has its own MB/s bucket (`migrate.prefetch_rate_mbps`)
//! so a prefetch never queues behind background migrations. It keeps the engine's other
//! rules: the headroom check, batches of `migrate.batch_pages`, and the same accounting
//! (moved pages by source tier under the job's cause, failures by errno) as every other
//! move; the tiers are those of the engine's cached topology, not re-read here. Unlike
//! the background jobs it sends no move notice: its caller publishes the placement.

use super::engine::{failure_key, FromTiers, MigrationEngine, UNTOUCHED};
use super::MoveError;
use tierd_api::MoveCause;

/// Pages of one process to move to one node at once.
#[derive(Debug, Clone, Copy)]
pub struct UrgentJob<'a> {
    pub pid: i32,
    /// Page addresses.
    pub pages: &'a [u64],
    pub to: u32,
    /// The destination's free bytes (the caller's cache).
    pub free_bytes: u64,
    /// Free bytes the destination must keep after the move.
    pub floor_bytes: u64,
    /// What the moves are counted under (a client's PREFETCH / PIN_FAST: `prefetch`).
    pub cause: MoveCause,
}

/// What became of an urgent job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrgentOutcome {
    /// Not attempted: the destination would fall below its floor.
    NoHeadroom,
    /// Not attempted: the pages are in a pinned client region (`super::pinned`).
    Pinned,
    /// Per page: the node it is on now, or a negative errno (`-ESRCH`: the process
    /// went away).
    Moved(Vec<i32>),
}

impl MigrationEngine {
    /// Moves `job.pages` to `job.to` now (see the module doc).
    pub fn run_urgent(&self, job: &UrgentJob) -> UrgentOutcome {
        let page = self.page_size();
        if job.pages.iter().any(|&a| self.pinned.contains(job.pid, a)) {
            // Pinned client memory is never moved by tierd (`super::pinned`): callers
            // relocate it through the client; a job naming it is refused whole.
            self.pinned
                .skipped_pages
                .fetch_add(job.pages.len() as u64, std::sync::atomic::Ordering::Relaxed);
            return UrgentOutcome::Pinned;
        }
        let bytes = job.pages.len() as u64 * page;
        if job.free_bytes < job.floor_bytes.saturating_add(bytes) {
            return UrgentOutcome::NoHeadroom;
        }
        self.urgent_bucket().acquire(bytes);
        let nodes = vec![job.to as i32; job.pages.len()];
        let mut status = vec![UNTOUCHED; job.pages.len()];
        // Where each page is before its move (see `engine::batch`).
        let mut before = vec![UNTOUCHED; job.pages.len()];
        let batch = self.batch_pages();
        for (((a, n), s), b) in job
            .pages
            .chunks(batch)
            .zip(nodes.chunks(batch))
            .zip(status.chunks_mut(batch))
            .zip(before.chunks_mut(batch))
        {
            if self.mover().query(job.pid, a, b).is_err() {
                s.fill(-libc::ESRCH);
                continue;
            }
            match self.mover().move_pages(job.pid, a, n, s) {
                Ok(()) => {}
                Err(MoveError::NoSuchProcess(_)) => s.fill(-libc::ESRCH),
                Err(e) => {
                    tracing::debug!(pid = job.pid, error = %e, "urgent move failed");
                    s.fill(-libc::ESRCH);
                }
            }
        }
        // No move notice ([`super::MoveObserver`]): the lane's one caller, the prefetch
        // thread, writes the blocks' placement from `status` itself, at once (the
        // client's latency); a notice would make `tierd-placement` write them again.
        let topo = self.cached_topology();
        let tier = |node: i32| {
            topo.as_ref()
                .and_then(|t| t.tier_of(node as u32))
                .unwrap_or(u32::MAX)
        };
        let mut from = FromTiers::new();
        let mut failed = std::collections::BTreeMap::new();
        for (&s, &was) in status.iter().zip(&before) {
            if s != job.to as i32 {
                *failed.entry(failure_key(s)).or_default() += 1;
            } else if was >= 0 && was != s {
                *from.entry(tier(was)).or_default() += 1;
            }
        }
        self.account(tier(job.to as i32), job.cause, &from, &failed);
        for s in status.iter_mut().filter(|s| **s == UNTOUCHED) {
            *s = -libc::EAGAIN;
        }
        UrgentOutcome::Moved(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::fake::FakeMover;
    use crate::topology::fake::FakeTopology;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use tierd_config::MigrateConfig;

    #[test]
    fn urgent_moves_are_checked_for_room_and_counted_like_any_other() {
        // Pages 0..8 of one process on node 1; page 3 pinned (EBUSY).
        let pages: Vec<u64> = (0..8).map(|i| i * 4096).collect();
        let mover = Arc::new(
            FakeMover::new()
                .with_pages(1, pages.iter().copied(), 1)
                .with_pinned([3 * 4096]),
        );
        let topo = Arc::new(FakeTopology::new(&[
            (0, &[0], 1 << 30, 0),
            (1, &[], 1 << 30, 1),
        ]));
        let cfg = MigrateConfig {
            batch_pages: 3,
            ..MigrateConfig::default()
        };
        let e = MigrationEngine::new(mover.clone(), topo, cfg);
        let page = e.page_size();
        let job = |free| UrgentJob {
            pid: 1,
            pages: &pages,
            to: 0,
            free_bytes: free,
            floor_bytes: 4096,
            cause: MoveCause::Prefetch,
        };
        assert_eq!(e.run_urgent(&job(8 * page)), UrgentOutcome::NoHeadroom);
        assert!(
            pages.iter().all(|&a| mover.node_of(1, a) == Some(1)),
            "nothing moved"
        );
        let UrgentOutcome::Moved(status) = e.run_urgent(&job(1 << 20)) else {
            panic!("not moved");
        };
        assert_eq!(status, vec![0, 0, 0, -libc::EBUSY, 0, 0, 0, 0]);
        assert_eq!(e.counters.moved_pages.load(Ordering::Relaxed), 7);
        assert_eq!(e.counters.moved_bytes.load(Ordering::Relaxed), 7 * page);
        assert_eq!(e.counters.failed.lock().unwrap().get("EBUSY"), Some(&1));
        let moves = e.counters.moves.snapshot(page);
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(
            (moves[0].from_tier, moves[0].to_tier, moves[0].cause),
            (1, 0, MoveCause::Prefetch)
        );
        assert_eq!(moves[0].pages, 7);
        // Moved again: every page is already there, and none counts twice.
        let UrgentOutcome::Moved(_) = e.run_urgent(&job(1 << 20)) else {
            panic!("not moved");
        };
        assert_eq!(e.counters.moved_pages.load(Ordering::Relaxed), 7);
        assert_eq!(e.counters.moves.snapshot(page)[0].pages, 7);
    }
}
