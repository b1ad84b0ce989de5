//! Placement scan: where each granule of a managed process lives now.
//!
//! Called by the tiering loop about once a second per process (and right after a
//! process becomes managed): reads the process's mappings, queries the node of the
//! first page of every granule with `move_pages(nodes=NULL)` and records it in the heat
//! table. A node that changed although tierd did not move the granule means someone
//! else (the kernel's own tiering) moves this process's pages.

use crate::heat::HeatTable;
use crate::migrate::maps::migratable_ranges;
use crate::migrate::Mover;
use crate::topology::Topology;

/// What a scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanResult {
    pub fast_bytes: u64,
    pub slow_bytes: u64,
    /// Granules whose node changed without tierd moving them.
    pub foreign_moves: u64,
}

/// Scans `pid` into `table`; `recent_move_ms`: granules tierd moved more recently than
/// this are not counted as foreign moves.
pub fn scan(
    pid: i32,
    table: &mut HeatTable,
    mover: &dyn Mover,
    topo: &Topology,
    now_ms: u32,
    recent_move_ms: u32,
) -> Result<ScanResult, String> {
    let ranges = migratable_ranges(pid, None).map_err(|e| e.to_string())?;
    let g = table.granule();
    let mut addrs = Vec::new();
    for r in &ranges {
        let mut a = r.start.div_ceil(g) * g;
        // A granule that starts before the range still counts: use the range start.
        if r.start % g != 0 {
            addrs.push(r.start);
        }
        while a < r.end {
            addrs.push(a);
            a += g;
        }
    }
    let mut status = vec![0i32; addrs.len()];
    for (chunk, st) in addrs.chunks(8192).zip(status.chunks_mut(8192)) {
        mover.query(pid, chunk, st).map_err(|e| e.to_string())?;
    }
    let mut res = ScanResult::default();
    let mut mapped = std::collections::HashSet::with_capacity(addrs.len());
    for (&a, &s) in addrs.iter().zip(&status) {
        // Two mappings can share a granule (a VMA boundary inside it): the first one
        // seen speaks for the granule, or its node would flip between them.
        if !mapped.insert(a / g) {
            continue;
        }
        if s < 0 {
            continue; // not present (never touched) or not movable
        }
        let node = s as u32;
        let c = table.cell_mut(a);
        if c.node >= 0
            && c.node as u32 != node
            && now_ms.saturating_sub(c.last_move_ms) > recent_move_ms
        {
            res.foreign_moves += 1;
        }
        c.node = node as i16;
        match topo.tier_of(node) {
            Some(0) => res.fast_bytes += g,
            _ => res.slow_bytes += g,
        }
    }
    table.retain(|a| mapped.contains(&(a / g)));
    Ok(res)
}
