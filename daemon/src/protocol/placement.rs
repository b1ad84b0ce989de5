//! Placement of registered blocks: immediate promotion of PREFETCH / PIN_FAST ranges
//! (`tierd-prefetch` thread) and the periodic refresh of every placement table
//! (`tierd-placement` thread, every [`REFRESH_PERIOD`]).
//!
//! A block's placement is the node of its first page (`move_pages` query), or the
//! negative errno the kernel gave for it. Promotion goes through the migration engine
//! (headroom check against `policy.promote_watermark`, the shared MB/s bucket) to the
//! fast node with the most free memory, in tiering mode only. Blocks the kernel would
//! not move although there was room (long-term pinned, e.g. `cudaHostRegister`) get a
//! relocation request in the region's wanted table: the client copies them itself.

use super::region::ShmRegion;
use super::{apply, Hub, REFRESH_PERIOD};
use crate::migrate::engine::Job;
use crate::state::{Daemon, Mode};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tierd_api::AddrRange;

/// Blocks `[first, first + n)` of `region` to bring to the fast tier.
pub struct Prefetch {
    pub region: Arc<ShmRegion>,
    pub first: u64,
    pub n: u64,
    pub hinted: Instant,
    pub deadline: Instant,
}

/// Node (or negative errno) of the first page of each block.
pub fn query_blocks(d: &Daemon, r: &ShmRegion, blocks: &[u64]) -> Vec<i32> {
    let addrs: Vec<u64> = blocks.iter().map(|&b| r.block_addr(b)).collect();
    let mut status = vec![-libc::EAGAIN; addrs.len()];
    for (a, s) in addrs.chunks(4096).zip(status.chunks_mut(4096)) {
        if let Err(e) = d.engine.mover().query(r.owner.pid, a, s) {
            tracing::debug!(pid = r.owner.pid, region = r.id, error = %e, "placement query failed");
            s.fill(-libc::ESRCH);
        }
    }
    status
}

/// Consecutive blocks as address ranges.
fn ranges(r: &ShmRegion, blocks: &[u64]) -> Vec<AddrRange> {
    let mut out: Vec<AddrRange> = Vec::new();
    for &b in blocks {
        let a = r.blocks(b, 1);
        match out.last_mut() {
            Some(last) if last.end == a.start => last.end = a.end,
            _ => out.push(a),
        }
    }
    out
}

pub fn run_prefetch(hub: Arc<Hub>, rx: crossbeam_channel::Receiver<Prefetch>) {
    while !hub.daemon.shutdown.load(Ordering::Relaxed) {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(p) => p,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let mut by_region: BTreeMap<u32, Vec<Prefetch>> = BTreeMap::new();
        for p in std::iter::once(first).chain(rx.try_iter().take(4095)) {
            by_region.entry(p.region.id).or_default().push(p);
        }
        // Earliest deadline first.
        let mut groups: Vec<Vec<Prefetch>> = by_region.into_values().collect();
        groups.sort_by_key(|g| g.iter().map(|p| p.deadline).min());
        for g in groups {
            promote(&hub, &g);
        }
    }
}

/// Promotes the blocks of `items` (all of one region) and writes their placement back.
fn promote(hub: &Hub, items: &[Prefetch]) {
    let r = &items[0].region;
    if hub.region(r.id).is_none() {
        return; // unregistered meanwhile
    }
    let d = &hub.daemon;
    let mut blocks: Vec<u64> = items.iter().flat_map(|p| p.first..p.first + p.n).collect();
    blocks.sort_unstable();
    blocks.dedup();
    let topo = d.topology();
    let fast = topo
        .nodes_in_tier(0)
        .map(|n| (n, d.topo_src.free_bytes(n.id).unwrap_or(n.free_bytes)))
        .max_by_key(|(_, free)| *free)
        .map(|(n, _)| (n.id, n.total_bytes));
    let is_fast = |node: i32| node >= 0 && topo.tier_of(node as u32) == Some(0);
    let before = query_blocks(d, r, &blocks);
    let todo: Vec<u64> = blocks
        .iter()
        .zip(&before)
        .filter(|(_, &n)| n >= 0 && !is_fast(n))
        .map(|(&b, _)| b)
        .collect();
    let mut headroom = false;
    let after = match (fast, d.mode(), todo.is_empty()) {
        (Some((to, total)), Mode::Tiering, false) => {
            let cfg = d.config();
            let job = Job {
                pid: r.owner.pid,
                ranges: Some(ranges(r, &todo)),
                to,
                min_free_bytes: cfg.policy.promote_watermark.of(total),
            };
            match d.engine.run(&job, None) {
                Ok(rep) => {
                    headroom = rep
                        .stopped
                        .as_deref()
                        .is_some_and(|s| s.starts_with("headroom"))
                }
                Err(e) => tracing::debug!(pid = r.owner.pid, error = %e, "prefetch failed"),
            }
            query_blocks(d, r, &todo)
        }
        _ => todo
            .iter()
            .map(|&b| before[blocks.binary_search(&b).unwrap_or(0)])
            .collect(),
    };
    for (&b, &n) in blocks.iter().zip(&before) {
        r.set_placement(b, n);
    }
    let mut promoted = 0u64;
    let mut wanted = false;
    let alive = d
        .registry
        .get(r.owner.pid)
        .is_some_and(|p| !p.pidfd.exited());
    for (&b, &n) in todo.iter().zip(&after) {
        r.set_placement(b, n);
        if is_fast(n) {
            promoted += 1;
            r.set_wanted(b, tierd_client::layout::WANTED_NONE);
        } else if let (Some((to, _)), Mode::Tiering, false, true) =
            (fast, d.mode(), headroom, alive)
        {
            // Room was there but the kernel would not move it: ask the client to copy it.
            r.set_wanted(b, to as i32);
            wanted = true;
        }
    }
    r.bump_placement();
    if wanted {
        r.bump_wanted();
    }
    let h = r.header();
    h.promoted_blocks.fetch_add(promoted, Ordering::Relaxed);
    let mut last: std::collections::HashMap<u64, i32> =
        blocks.iter().copied().zip(before).collect();
    last.extend(todo.iter().copied().zip(after.iter().copied()));
    let now = Instant::now();
    let missed = items
        .iter()
        .filter(|p| p.deadline > p.hinted && now > p.deadline)
        .filter(|p| (p.first..p.first + p.n).any(|b| !last.get(&b).is_some_and(|&n| is_fast(n))))
        .count();
    h.deadline_missed
        .fetch_add(missed as u64, Ordering::Relaxed);
    if promoted > 0 {
        let page = d.engine.page_size();
        let moved = ranges(r, &todo);
        d.with_heat(r.owner.pid, |t| {
            for a in &moved {
                apply::prefetch_served(t, *a);
            }
        });
        tracing::trace!(
            region = r.id,
            promoted,
            pages = promoted * r.block_size / page,
            "prefetched"
        );
    }
}

/// Re-reads every region's placement table every [`REFRESH_PERIOD`].
pub fn run_refresh(hub: Arc<Hub>) {
    while !hub.daemon.shutdown.load(Ordering::Relaxed) {
        let started = Instant::now();
        for r in hub.regions() {
            refresh(&hub.daemon, &r);
        }
        std::thread::sleep(REFRESH_PERIOD.saturating_sub(started.elapsed()));
    }
}

/// Re-reads one region's placement table.
pub fn refresh(d: &Daemon, r: &ShmRegion) {
    let blocks: Vec<u64> = (0..r.nblocks).collect();
    let nodes = query_blocks(d, r, &blocks);
    for (b, n) in blocks.into_iter().zip(nodes) {
        r.set_placement(b, n);
    }
    r.bump_placement();
}
