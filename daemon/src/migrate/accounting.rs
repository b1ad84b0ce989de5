//! What tierd moved, per source tier, destination tier and cause: the one ledger of
//! moved pages (`status.moves`, `tierd_tier_migrated_pages_total`, the state tree's
//! `moves/`).
//!
//! Written only by [`super::MigrationEngine`] after each job (its `account`), from the
//! per-page outcome of `move_pages(2)`: a page counts when the kernel reports it on
//! the destination and a query just before the move had it on another node, so pages
//! already there are not counted (the kernel does not migrate them either). The source
//! tier is that node's tier. Units are base pages, a THP counting as its base pages,
//! as in the kernel's `pgmigrate_success`, so the two can be reconciled.
//! Read by status, metrics and the state tree through [`MoveLedger::snapshot`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use tierd_api::{MoveCause, MoveCount};

/// Moved base pages per (from tier, to tier, cause).
#[derive(Debug, Default)]
pub struct MoveLedger {
    pages: Mutex<BTreeMap<(u32, u32, MoveCause), u64>>,
}

impl MoveLedger {
    /// Adds one job's moved pages: `from` maps a source tier to its pages.
    pub(super) fn add(&self, to_tier: u32, cause: MoveCause, from: &BTreeMap<u32, u64>) {
        let mut m = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        for (&from_tier, &n) in from.iter().filter(|(_, &n)| n > 0) {
            *m.entry((from_tier, to_tier, cause)).or_default() += n;
        }
    }

    /// Every (from, to, cause) with moves so far, with pages and bytes (`page` bytes
    /// per page).
    pub fn snapshot(&self, page: u64) -> Vec<MoveCount> {
        let m = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(&(from_tier, to_tier, cause), &pages)| MoveCount {
                from_tier,
                to_tier,
                cause,
                pages,
                bytes: pages * page,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_per_direction_and_cause() {
        let l = MoveLedger::default();
        l.add(0, MoveCause::Sampling, &BTreeMap::from([(1, 10), (2, 0)]));
        l.add(0, MoveCause::Sampling, &BTreeMap::from([(1, 5)]));
        l.add(1, MoveCause::Headroom, &BTreeMap::from([(0, 7)]));
        let s = l.snapshot(4096);
        assert_eq!(
            s,
            vec![
                MoveCount {
                    from_tier: 0,
                    to_tier: 1,
                    cause: MoveCause::Headroom,
                    pages: 7,
                    bytes: 7 * 4096
                },
                MoveCount {
                    from_tier: 1,
                    to_tier: 0,
                    cause: MoveCause::Sampling,
                    pages: 15,
                    bytes: 15 * 4096
                },
            ],
            "no row for a tier that moved nothing"
        );
    }
}
