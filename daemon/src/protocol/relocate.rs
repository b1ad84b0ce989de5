//! Placing pinned regions by relocation requests (`docs/protocol.md`, "Pinned
//! regions"): each pass reads the heat of every slot of a pinned region from its
//! owner's heat table, lets the region's [`PinnedMap`] plan the moves within each node's
//! slots, and writes them into the relocation table for the client. Also: finding out
//! that a region is pinned when a promotion of its blocks left every page in place.
//!
//! Runs on the `tierd-placement` thread, once per pinned region every
//! [`super::REFRESH_PERIOD`] (instead of a placement query: pinned pages do not move),
//! and on the `tierd-prefetch` thread for the detection. Tiering mode only.

use super::pinned::{PinnedMap, SlotHeat};
use super::placement::query_blocks;
use super::region::ShmRegion;
use super::{apply, session};
use crate::heat::flags;
use crate::state::{Daemon, Mode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a pass waits for the heat tables' owner.
const HEAT_TIMEOUT: Duration = Duration::from_millis(100);

/// The heat and hint flags of every block of `r`, from its owner's heat table (a block
/// is as hot as its hottest granule).
fn slot_heat(d: &Daemon, r: &ShmRegion) -> Option<Vec<(SlotHeat, u8)>> {
    let (base, bs, n) = (r.base, r.block_size, r.nblocks);
    d.heat.read(r.owner.pid, HEAT_TIMEOUT, move |t| {
        let Some(t) = t else {
            return vec![(SlotHeat::default(), 0); n as usize];
        };
        let now = t.now_ms(Instant::now());
        let g = t.granule().max(1);
        (0..n)
            .map(|b| {
                let a = base + b * bs;
                let (mut heat, mut f) = (0f64, 0u8);
                let mut x = a;
                while x < a + bs {
                    heat = heat.max(t.heat_at(x, now));
                    f |= t.cell(x).map_or(0, |c| c.flags());
                    x += g;
                }
                let live = f & flags::FREE == 0;
                let s = SlotHeat {
                    heat,
                    wants_fast: live && f & (flags::PIN_FAST | flags::PREFETCH) != 0,
                    pinned_fast: live && f & flags::PIN_FAST != 0,
                    cold: f & (flags::COLD | flags::FREE) != 0,
                };
                (s, f)
            })
            .collect()
    })
}

/// For a region found pinned (no fast slots of its own): the fast node with the most
/// free memory above `policy.promote_watermark`, in blocks of `r`.
fn outside_room(d: &Daemon, r: &ShmRegion) -> Option<(i32, i64)> {
    if !r.with_pinned(|m| m.outside()).unwrap_or(false) {
        return None;
    }
    let cfg = d.config();
    d.topology()
        .nodes_in_tier(0)
        .map(|n| {
            let free = d.topo_src.free_bytes(n.id).unwrap_or(n.free_bytes);
            let floor = cfg.policy.promote_watermark.of(n.total_bytes);
            (
                n.id as i32,
                (free.saturating_sub(floor) / r.block_size.max(1)) as i64,
            )
        })
        .max_by_key(|&(_, room)| room)
}

/// One planning pass over pinned region `r`: writes the moves it plans into the
/// relocation table and bumps `wanted_gen`. Returns the requests written.
pub fn plan(d: &Daemon, r: &ShmRegion) -> usize {
    if d.mode() != Mode::Tiering {
        return 0;
    }
    let Some(heat) = slot_heat(d, r) else {
        return 0;
    };
    let topo = d.topology();
    let is_fast = |n: i32| n >= 0 && topo.tier_of(n as u32) == Some(0);
    let slots: Vec<SlotHeat> = heat.iter().map(|(s, _)| *s).collect();
    let outside = outside_room(d, r);
    let headroom = d.config().client.pinned_headroom_percent;
    let Some(reqs) = r.with_pinned(|m| {
        m.set_headroom_percent(headroom);
        // A PREFETCH is served once its block is on the fast tier (as for other memory).
        let served: Vec<u64> = (0..m.len() as u64)
            .filter(|&b| is_fast(m.node(b)))
            .filter(|&b| heat[b as usize].1 & flags::PREFETCH != 0)
            .collect();
        (m.plan(&slots, is_fast, outside), served)
    }) else {
        return 0;
    };
    let (reqs, served) = reqs;
    if !served.is_empty() {
        let ranges: Vec<_> = served.iter().map(|&b| r.blocks(b, 1)).collect();
        d.heat.edit(r.owner.pid, move |t| {
            for a in ranges {
                apply::prefetch_served(t, a);
            }
        });
    }
    let mut up = 0u64;
    for &(b, node) in &reqs {
        r.set_wanted(b, node);
        up += is_fast(node) as u64;
    }
    let h = &d.hints;
    h.relocation_promote_blocks.fetch_add(up, Ordering::Relaxed);
    h.relocation_demote_blocks
        .fetch_add(reqs.len() as u64 - up, Ordering::Relaxed);
    if !reqs.is_empty() {
        r.bump_wanted();
        tracing::debug!(
            region = r.id,
            requests = reqs.len(),
            "pinned relocation requests"
        );
    }
    reqs.len()
}

/// A promotion of `blocks` to node `to` had room yet left every one of them where it
/// was (`nodes` read back after it): the region's pages are long-term pinned. It becomes
/// a pinned region, its slots' nodes read from the kernel once, and tierd asks no
/// further move of the kernel for it. Returns whether it did.
pub fn detect(d: &Daemon, r: &ShmRegion, nodes: &[i32], to: u32) -> bool {
    let stayed = !nodes.is_empty() && nodes.iter().all(|&n| n >= 0 && n != to as i32);
    if !stayed || r.is_pinned() {
        return false;
    }
    let all: Vec<u64> = (0..r.nblocks).collect();
    let map = PinnedMap::detected(query_blocks(d, r, &all));
    tracing::info!(
        pid = r.owner.pid,
        region = r.id,
        blocks = nodes.len(),
        "a promotion moved no page of the region: treating it as pinned"
    );
    session::mark_pinned(d, r, map);
    true
}
