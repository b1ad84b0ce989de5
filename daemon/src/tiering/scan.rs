//! Placement scan: where each granule of a managed process lives now.
//!
//! Called by the tiering loop about once a second per process (and right after a
//! process becomes managed): reads the process's mappings, queries the node of the
//! first page of every granule with `move_pages(nodes=NULL)` ([`query`], no lock held)
//! and records it in the heat table ([`apply`]). A node that changed although tierd
//! did not move the granule means someone else (the kernel's own tiering) moves this
//! process's pages.

use crate::heat::HeatTable;
use crate::migrate::Mover;
use crate::proc::maps::migratable_ranges;
use crate::proc::resident::present_runs;
use crate::topology::Topology;

/// What a scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanResult {
    pub fast_bytes: u64,
    pub slow_bytes: u64,
    /// Granules whose node changed without tierd moving them.
    pub foreign_moves: u64,
}

/// Where each granule of a process was, read without the heat table (the `move_pages`
/// query costs tens of ms per GiB under emulation; the table's lock is not held
/// meanwhile, so hint appliers and the migration worker do not wait for it).
pub struct Placement {
    granule: u64,
    /// When the query started, in the table's clock.
    started_ms: u32,
    addrs: Vec<u64>,
    status: Vec<i32>,
}

/// Queries the node of the first resident page of every granule (`g` bytes) that holds
/// resident pages of `pid`. Granules with nothing resident are not queried: the cost is
/// that of resident memory, whatever address space the process reserves
/// ([`crate::proc::resident`]).
pub fn query(pid: i32, g: u64, mover: &dyn Mover, started_ms: u32) -> Result<Placement, String> {
    let maps = migratable_ranges(pid, None).map_err(|e| e.to_string())?;
    let runs = present_runs(pid, &maps).map_err(|e| e.to_string())?;
    let mut addrs: Vec<u64> = Vec::new();
    for r in &runs {
        let mut a = r.range.start;
        while a < r.range.end {
            if addrs.last().is_none_or(|&l| l / g != a / g) {
                addrs.push(a);
            }
            a = (a / g + 1) * g;
        }
    }
    let mut status = vec![0i32; addrs.len()];
    for (chunk, st) in addrs.chunks(8192).zip(status.chunks_mut(8192)) {
        mover.query(pid, chunk, st).map_err(|e| e.to_string())?;
    }
    Ok(Placement {
        granule: g,
        started_ms,
        addrs,
        status,
    })
}

/// Records a [`query`]'s result in `table`; `recent_move_ms`: granules tierd moved
/// more recently than this are not counted as foreign moves. A granule tierd moved
/// after the query started keeps the node the move recorded (the query may have seen
/// it before the move).
pub fn apply(
    p: &Placement,
    table: &mut HeatTable,
    topo: &Topology,
    now_ms: u32,
    recent_move_ms: u32,
) -> ScanResult {
    let g = table.granule();
    if g != p.granule {
        // The granule changed meanwhile (a reload): the next scan will do.
        return ScanResult::default();
    }
    let mut res = ScanResult::default();
    let mut resident: foldhash::HashSet<u64> = foldhash::HashSet::default();
    resident.reserve(p.addrs.len());
    for (&a, &s) in p.addrs.iter().zip(&p.status) {
        // Two mappings can share a granule (a VMA boundary inside it): the first one
        // seen speaks for the granule, or its node would flip between them.
        if s < 0 || !resident.insert(a / g) {
            continue; // not movable (or its other half already counted)
        }
        let seen = table.note_scanned(a, s as u32, p.started_ms, now_ms, recent_move_ms);
        res.foreign_moves += seen.foreign as u64;
        match topo.tier_of(seen.node) {
            Some(0) => res.fast_bytes += g,
            _ => res.slow_bytes += g,
        }
    }
    table.retain_resident(|a| resident.contains(&(a / g)), p.started_ms);
    res
}

#[cfg(test)]
mod tests {
    use super::{apply, Placement};
    use crate::heat::HeatTable;
    use crate::topology::{Node, Perf, Topology};

    const G: u64 = 64 << 10;

    fn topo() -> Topology {
        let node = |id: u32, tier: u32| Node {
            id,
            cpus: Vec::new(),
            total_bytes: 1 << 30,
            free_bytes: 1 << 29,
            kernel_tier: None,
            tier,
            tier_source: Default::default(),
            perf: Perf::default(),
            distances: vec![10, 20],
        };
        Topology {
            nodes: vec![node(0, 0), node(1, 1)],
            all_ids: vec![0, 1],
        }
    }

    #[test]
    fn a_scan_does_not_undo_a_move_made_while_it_queried() {
        let mut t = HeatTable::new(G, 1000, 4, 300);
        // Granule 0: moved by the worker to node 0 at 150 ms, after the query (started
        // at 100 ms) saw it on node 1. Granule 1: moved at 50 ms, before the query,
        // and since moved by someone else to node 1. Granule 2: new to the table.
        // Granule 3: was resident, is not any more.
        t.note_move(0, 0, 0, true, 150, 30_000);
        t.note_move(G, 0, 0, true, 50, 30_000);
        t.note_scanned(3 * G, 0, 0, 0, 0);
        let p = Placement {
            granule: G,
            started_ms: 100,
            addrs: vec![0, G, 2 * G],
            status: vec![1, 1, 1],
        };
        let r = apply(&p, &mut t, &topo(), 5000, 2000);
        assert_eq!(
            t.cell(0).unwrap().node(),
            Some(0),
            "the worker's move stands"
        );
        assert_eq!(
            t.cell(G).unwrap().node(),
            Some(1),
            "the query is newer than that move"
        );
        assert_eq!(t.cell(2 * G).unwrap().node(), Some(1));
        assert!(t.cell(3 * G).is_none(), "not resident: not tracked");
        assert_eq!(r.foreign_moves, 1);
        assert_eq!((r.fast_bytes, r.slow_bytes), (G, 2 * G));
    }

    #[test]
    fn a_scan_made_with_another_granule_changes_nothing() {
        let mut t = HeatTable::new(G, 1000, 4, 300);
        t.note_scanned(0, 0, 0, 0, 0);
        let p = Placement {
            granule: 2 * G,
            started_ms: 0,
            addrs: vec![0],
            status: vec![1],
        };
        assert_eq!(apply(&p, &mut t, &topo(), 10, 2000), Default::default());
        assert_eq!(t.cell(0).unwrap().node(), Some(0));
    }
}
