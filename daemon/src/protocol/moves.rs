//! tierd's own moves into the placement tables, without a query.
//!
//! The migration engine tells [`MoveNotices`] (its [`MoveObserver`], set by
//! [`super::Server::start`]) the result of every `move_pages` call, on the mover's thread
//! (`tierd-migrate`, `tierd-migrate2`, a `tierctl migrate` connection; not the prefetch
//! lane, whose caller, `tierd-prefetch`, writes its blocks' placement itself).
//! The observer keeps only what lands on registered blocks: a block's placement is its
//! first page's node, so a move of that page decides it. It queues them, never waiting,
//! for `tierd-placement`, the tables' writer, which applies them as they arrive
//! ([`apply`]), between its 100 ms steps. A notice that finds the queue full is dropped
//! and counted: the block is then only as fresh as the sweep ([`super::sweep`]) makes it.

use super::region::ShmRegion;
use super::Hub;
use crate::migrate::{MoveObserver, Moved};
use crate::state::Daemon;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tierd_api::AddrRange;

/// Notices waiting for `tierd-placement` at most (each one move call's blocks of one
/// region).
pub const QUEUE: usize = 1024;

/// New placements of blocks of one region, from one move call.
pub struct Notice {
    pub region: Arc<ShmRegion>,
    /// (block, node or negative errno of its first page)
    pub blocks: Vec<(u64, i32)>,
}

/// The engine's observer: filters moves down to registered blocks and queues them.
pub struct MoveNotices {
    hub: Weak<Hub>,
    tx: crossbeam_channel::Sender<Notice>,
}

impl MoveNotices {
    pub fn new(hub: Weak<Hub>, tx: crossbeam_channel::Sender<Notice>) -> MoveNotices {
        MoveNotices { hub, tx }
    }
}

impl MoveObserver for MoveNotices {
    fn moved(&self, pid: i32, moved: &[Moved]) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        // The span of the call, so that only the regions it touches are looked at (one
        // engine may register hundreds of regions; a batch touches a few).
        let mut told = moved.iter().filter(|m| tells_placement(m.status));
        let Some(first) = told.next() else {
            return;
        };
        let span = told.fold(
            AddrRange {
                start: first.addr,
                end: first.addr.saturating_add(first.bytes),
            },
            |s, m| AddrRange {
                start: s.start.min(m.addr),
                end: s.end.max(m.addr.saturating_add(m.bytes)),
            },
        );
        for r in hub.regions_within(pid, span) {
            if r.is_pinned() {
                continue; // placed by relocation: its table shows its slots
            }
            let blocks = blocks_moved(r.base, r.block_size, r.nblocks, moved);
            if blocks.is_empty() {
                continue;
            }
            if self.tx.try_send(Notice { region: r, blocks }).is_err() {
                hub.daemon
                    .placement
                    .move_notices_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether a move's status says where the page is: its node, or that it is absent or
/// unmapped. Other errnos (`EBUSY`, `ENOMEM`, ...) say only that it did not move.
fn tells_placement(status: i32) -> bool {
    status >= 0 || status == -libc::ENOENT || status == -libc::EFAULT
}

/// The blocks of a region (`nblocks` of `block_size` bytes from `base`) whose first page
/// is in one of `moved`, with that page's status.
fn blocks_moved(base: u64, block_size: u64, nblocks: u64, moved: &[Moved]) -> Vec<(u64, i32)> {
    let end = base + nblocks * block_size;
    let mut out = Vec::new();
    for m in moved.iter().filter(|m| tells_placement(m.status)) {
        let lo = m.addr.max(base);
        let hi = m.addr.saturating_add(m.bytes).min(end);
        if lo >= hi {
            continue;
        }
        let mut b = (lo - base).div_ceil(block_size);
        while b < nblocks && base + b * block_size < hi {
            out.push((b, m.status));
            b += 1;
        }
    }
    out
}

/// Writes a notice's blocks into its region's table and bumps its generation. Called by
/// `tierd-placement` only.
pub fn apply(d: &Daemon, n: Notice) {
    for &(b, node) in &n.blocks {
        n.region.set_placement(b, node);
    }
    n.region.bump_placement();
    d.placement
        .move_blocks
        .fetch_add(n.blocks.len() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_decides_the_blocks_whose_first_page_it_moved() {
        let (page, bs) = (4096, 16 * 4096);
        let base = 0x10_0000;
        let within = |addr, bytes, status| Moved {
            addr,
            bytes,
            status,
        };
        let moved = [
            // block 0's first page
            within(base, page, 0),
            // inside block 1: not its first page
            within(base + bs + page, page, 0),
            // a huge page from before the region over blocks 2.. (base + 2 * bs is in it)
            within(base + 2 * bs - page, 2 * bs, 1),
            // refused: says nothing about where block 5 is
            within(base + 5 * bs, page, -libc::EBUSY),
            // absent
            within(base + 6 * bs, page, -libc::ENOENT),
            // past the region's end
            within(base + 8 * bs, page, 0),
        ];
        let got = blocks_moved(base, bs, 8, &moved);
        assert_eq!(got, vec![(0, 0), (2, 1), (3, 1), (6, -libc::ENOENT)]);
    }
}
