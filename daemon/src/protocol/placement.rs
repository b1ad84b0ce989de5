//! Placement of registered blocks: immediate promotion of PREFETCH / PIN_FAST ranges
//! (`tierd-prefetch` thread) and the placement tables' upkeep (`tierd-placement`
//! thread, every [`REFRESH_PERIOD`]: tierd's own moves as they happen ([`moves`]), a
//! budgeted sweep for the others ([`sweep`]), and a re-read of the fast nodes' free
//! memory for the prefetch path's headroom check).
//!
//! A block's placement is the node of its first page (`move_pages` query), or the
//! negative errno the kernel gave for it. Promotion moves the blocks' pages through the
//! migration engine's latency-first lane (headroom check against
//! `policy.promote_watermark`) to the fast node with the most free memory, in tiering
//! mode only. Blocks the kernel would
//! not move although there was room (long-term pinned, e.g. `cudaHostRegister`) get a
//! relocation request in the region's wanted table: the client copies them itself.
//!
//! Promotions of a uid other than root spend its `migrate.max_rate_mbps_per_uid`
//! budget ([`crate::access::ceilings`]); one the budget cannot pay now is skipped (the
//! hint flags stay for the policy). Every refresh first ends the connections whose
//! registering process died or changed credentials ([`Hub::end_departed_peers`]).

use super::region::ShmRegion;
use super::{apply, moves, relocate, steps, sweep, Hub, REFRESH_PERIOD};
use crate::migrate::{UrgentJob, UrgentOutcome};
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
        if let Err(e) = d.engine.query(r.owner.pid, a, s) {
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
    if hub.region(r.id).is_none() || r.is_pinned() {
        return; // unregistered meanwhile, or placed by relocation (`super::relocate`)
    }
    let started = Instant::now();
    let queued = items
        .iter()
        .map(|p| started.saturating_duration_since(p.hinted))
        .max()
        .unwrap_or_default();
    let d = &hub.daemon;
    let blocks = steps::block_set(items.iter().map(|p| (p.first, p.n)));
    let topo = d.topology();
    let is_fast = |node: i32| node >= 0 && topo.tier_of(node as u32) == Some(0);
    let fast = {
        let cache = hub.fast_free.lock().unwrap_or_else(|p| p.into_inner());
        topo.nodes_in_tier(0)
            .map(|n| {
                let free = cache.get(&n.id).copied();
                (
                    n,
                    free.unwrap_or_else(|| d.topo_src.free_bytes(n.id).unwrap_or(n.free_bytes)),
                )
            })
            .max_by_key(|(_, free)| *free)
            .map(|(n, free)| (n.id, n.total_bytes, free))
    };
    let cfg = d.config();
    let bytes = blocks.len() as u64 * r.block_size;
    let target = fast
        .filter(|_| d.mode() == Mode::Tiering)
        // Only the live registering process's pages, by pid: its pidfd says it still is.
        .filter(|_| hub.peer_alive(r.owner.conn))
        .filter(|_| {
            d.ceilings.try_prefetch(
                r.owner.uid,
                cfg.migrate.max_rate_mbps_per_uid,
                bytes,
                blocks.len() as u64,
            )
        });
    let checked = Instant::now();
    let (nodes, headroom) = match target {
        Some((to, total, free)) => {
            let floor = cfg.policy.promote_watermark.of(total);
            let out = move_blocks(d, r, &blocks, to, free, floor);
            if !out.1 {
                relocate::detect(d, r, &out.0, to);
            }
            if !out.1 {
                let moved = blocks.len() as u64 * r.block_size;
                let mut cache = hub.fast_free.lock().unwrap_or_else(|p| p.into_inner());
                cache.insert(to, free.saturating_sub(moved));
            }
            out
        }
        None => (query_blocks(d, r, &blocks), false),
    };
    let alive = d
        .registry
        .get(r.owner.pid)
        .is_some_and(|p| !p.pidfd.exited());
    let (mut promoted, mut wanted) = (0u64, false);
    let mut up = Vec::new();
    for (&b, &n) in blocks.iter().zip(&nodes) {
        r.set_placement(b, n);
        if is_fast(n) {
            promoted += 1;
            up.push(b);
            r.set_wanted(b, tierd_client::layout::WANTED_NONE);
        } else if let (Some((to, _, _)), false, true, true) = (target, headroom, alive, n >= 0) {
            // Present, room was there, yet the kernel would not move it (pinned): ask the
            // client to copy it.
            r.set_wanted(b, to as i32);
            wanted = true;
        }
    }
    r.bump_placement();
    let published = Instant::now();
    if wanted {
        r.bump_wanted();
    }
    let h = r.header();
    h.promoted_blocks.fetch_add(promoted, Ordering::Relaxed);
    let now = Instant::now();
    let missed = items
        .iter()
        .filter(|p| p.deadline > p.hinted && now > p.deadline)
        .filter(|p| (p.first..p.first + p.n).any(|b| up.binary_search(&b).is_err()))
        .count();
    h.deadline_missed
        .fetch_add(missed as u64, Ordering::Relaxed);
    if !up.is_empty() {
        let served = ranges(r, &up);
        d.heat.edit(r.owner.pid, move |t| {
            for a in served {
                apply::prefetch_served(t, a);
            }
        });
    }
    tracing::debug!(
        region = r.id,
        blocks = blocks.len(),
        promoted,
        headroom,
        queued_us = queued.as_micros() as u64,
        headroom_us = (checked - started).as_micros() as u64,
        published_us = (published - started).as_micros() as u64,
        total_us = started.elapsed().as_micros() as u64,
        "prefetch"
    );
}

/// Moves every page of `blocks` to node `to` through the migration engine's
/// latency-first lane ([`crate::migrate::urgent`]) if, of its `free` bytes, `floor`
/// stay free after them. Returns the node (or negative errno) of each block's first
/// page afterwards, and whether the move was skipped for lack of headroom.
///
/// The headroom is checked before any page list is built, and the pages go to the lane
/// in steps of [`steps::URGENT_STEP_PAGES`]: a prefetch of blocks far larger than the
/// fast tier (a 16 TiB reservation in 16 GiB blocks) costs one query per block, not a
/// list of its 2^32 pages.
fn move_blocks(
    d: &Daemon,
    r: &ShmRegion,
    blocks: &[u64],
    to: u32,
    free: u64,
    floor: u64,
) -> (Vec<i32>, bool) {
    let bytes = (blocks.len() as u64).saturating_mul(r.block_size);
    if free < floor.saturating_add(bytes) {
        return (query_blocks(d, r, blocks), true);
    }
    let page = d.engine.page_size();
    let mut first = vec![-libc::EAGAIN; blocks.len()];
    let mut outcome = None;
    let mut sent = 0u64;
    let addr = |b: u64, j: u64| r.block_addr(b) + j * page;
    let per = (r.block_size / page).max(1);
    steps::page_steps(
        blocks,
        per,
        steps::URGENT_STEP_PAGES,
        addr,
        |pages, firsts| {
            let job = UrgentJob {
                pid: r.owner.pid,
                pages,
                to,
                // What the earlier steps took from the destination.
                free_bytes: free.saturating_sub(sent),
                floor_bytes: floor,
                cause: tierd_api::MoveCause::Prefetch,
            };
            sent = sent.saturating_add(pages.len() as u64 * page);
            match d.engine.run_urgent(&job) {
                UrgentOutcome::Moved(status) => {
                    for &(i, at) in firsts {
                        first[i] = status[at];
                    }
                    true
                }
                stop => {
                    outcome = Some(stop);
                    false
                }
            }
        },
    );
    match outcome {
        None => {}
        Some(UrgentOutcome::Pinned) => {
            // Made pinned meanwhile: its placement is known without asking the kernel.
            return (blocks.iter().map(|&b| r.placement(b)).collect(), true);
        }
        Some(_) => return (query_blocks(d, r, blocks), true),
    }
    // A page the kernel refused (EBUSY: pinned, ...) reports an errno, not its node:
    // read where those blocks are.
    let refused: Vec<usize> = (0..first.len())
        .filter(|&i| {
            first[i] < 0 && ![-libc::ENOENT, -libc::EFAULT, -libc::ESRCH].contains(&first[i])
        })
        .collect();
    if !refused.is_empty() {
        let which: Vec<u64> = refused.iter().map(|&i| blocks[i]).collect();
        for (&i, n) in refused.iter().zip(query_blocks(d, r, &which)) {
            first[i] = n;
        }
    }
    (first, false)
}

/// The `tierd-placement` loop. Every [`REFRESH_PERIOD`]: re-reads the fast nodes' free
/// memory, ends departed peers, plans the pinned regions' relocations and takes one
/// step of the placement sweep ([`sweep`]); in between, writes tierd's own moves into
/// the tables as their notices arrive ([`moves`]).
pub fn run_refresh(hub: Arc<Hub>, notices: crossbeam_channel::Receiver<moves::Notice>) {
    let mut sweep = sweep::Sweep::new(Instant::now());
    while !hub.daemon.shutdown.load(Ordering::Relaxed) {
        let started = Instant::now();
        let d = &hub.daemon;
        let free: std::collections::HashMap<u32, u64> = d
            .topology()
            .nodes_in_tier(0)
            .filter_map(|n| d.topo_src.free_bytes(n.id).ok().map(|f| (n.id, f)))
            .collect();
        *hub.fast_free.lock().unwrap_or_else(|p| p.into_inner()) = free;
        hub.end_departed_peers();
        let regions = hub.regions();
        for r in regions.iter().filter(|r| r.is_pinned()) {
            // Pinned pages stay where they are: no query; plan the client's moves.
            relocate::plan(d, r);
        }
        let budget = d.config().client.placement_sweep_pages_per_s;
        sweep.step(d, &regions, budget, Instant::now());
        let next = started + REFRESH_PERIOD;
        loop {
            match notices.recv_deadline(next) {
                Ok(n) => moves::apply(d, n),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    break;
                }
            }
        }
    }
}
