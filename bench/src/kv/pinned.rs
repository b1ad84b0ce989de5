//! The replay's KV pool in pinned memory, as a GPU engine keeps it (issue 16): fast-node
//! slots then slow-node slots, pinned with io_uring fixed buffers (the stand-in for
//! `cudaHostRegister`, [`crate::uring`]), and a block table from the replay's logical
//! blocks (the [`super::pool::BlockPool`] numbers) to slots ([`crate::pinpool`]).
//! `move_pages` cannot move these pages; blocks change node only by a copy into a slot
//! on the other node (or a re-point to a shadow copy already there).
//!
//! Who moves blocks:
//! - [`PinnedKv::register`] + the hint methods: tierd, as for an integrated engine. The
//!   pool is registered with REGISTER_PINNED; each step sends PREFETCH / ACCESS / FREE /
//!   COLD (as [`super::hints`] does for a plain pool) and WRITTEN for new contents, in
//!   slot numbers; [`PinnedKv::serve`] answers tierd's relocation requests (copy or
//!   re-point, then MOVED; DECLINED without room).
//! - [`PinnedKv::oracle_place`]: the replay itself, knowing every future read: before a
//!   step's reads, each block read in the step is brought to a fast slot, evicting the
//!   fast block read again farthest in the future.
//!
//! New contents (prefill, new decode blocks) go to a fast slot when one is free or holds
//! only a shadow, else to a slow slot: where an engine allocates when it has room.
//! Called by `kvreplay --pinned` once per decode step, on its one thread.

use super::pool::BlockPool;
use crate::mem::{Region, Thp};
use crate::pinpool::{Serve, SlotPool};
use crate::uring::PinnedBuffers;
use crate::{numa, oracle::NextUse};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tierd_client::{Client, HintKind};

/// The slot pool names the two runs of slots, not their kernel nodes (which tierd's
/// requests and the layout sent to it use): the pool's logic then holds even when both
/// runs are on one node (a host without NUMA, for a dry run).
const FAST_RUN: i32 = 0;
const SLOW_RUN: i32 = 1;

/// tierd's side: the connection and the registered region.
struct Link {
    client: Client,
    region: u32,
    shm: Arc<tierd_client::Region>,
    reqs: Vec<(u64, i32)>,
    step_ms: u32,
}

/// What the pool did over the run.
#[derive(Debug, Default, Clone)]
pub struct PinnedStats {
    /// Relocation requests from tierd served (copied, re-pointed or declined).
    pub requests: u64,
    /// Hinted blocks accepted into the ring.
    pub hint_blocks_sent: u64,
    /// New blocks written into fast / slow slots.
    pub filled_fast: u64,
    pub filled_slow: u64,
}

pub struct PinnedKv {
    mem: Region,
    _pin: PinnedBuffers,
    pub pool: SlotPool,
    nf: usize,
    block: usize,
    fast: i32,
    slow: i32,
    link: Option<Link>,
    prev: Vec<u32>,
    cur: Vec<u32>,
    /// Per logical block: the step that last read it (oracle: "read this step").
    read_at: Vec<u64>,
    pub stats: PinnedStats,
}

impl PinnedKv {
    /// Lays out `nf` slots of `block` bytes on `fast` then `ns` on `slow`, pins them
    /// with io_uring, for `blocks` logical blocks (`ns >= blocks`: every block fits on
    /// the slow node).
    pub fn new(
        nf: usize,
        ns: usize,
        block: usize,
        (fast, slow): (u32, u32),
        blocks: usize,
    ) -> anyhow::Result<PinnedKv> {
        anyhow::ensure!(ns >= blocks, "the slow slots must hold every block");
        let mem = Region::place_runs(&[(fast, nf * block), (slow, ns * block)], Thp::NoHuge)
            .context("laying out the pinned pool")?;
        let pin = PinnedBuffers::pin(mem.base(), mem.len())
            .context("pinning the pool (io_uring fixed buffers)")?;
        let layout = [(FAST_RUN, nf as u32), (SLOW_RUN, ns as u32)];
        Ok(PinnedKv {
            mem,
            _pin: pin,
            pool: SlotPool::new(&layout, blocks),
            nf,
            block,
            fast: fast as i32,
            slow: slow as i32,
            link: None,
            prev: Vec::new(),
            cur: Vec::new(),
            read_at: vec![u64::MAX; blocks],
            stats: PinnedStats::default(),
        })
    }

    pub fn region(&self) -> &Region {
        &self.mem
    }

    pub fn region_mut(&mut self) -> &mut Region {
        &mut self.mem
    }

    /// The node each page of the pool is on (the kernel's answer).
    pub fn page_nodes(&self) -> anyhow::Result<Vec<i32>> {
        let pages = self.mem.page_addrs(0, self.mem.len());
        let mut st = vec![0i32; pages.len()];
        numa::query(&pages, &mut st).context("querying the pool's pages")?;
        Ok(st)
    }

    /// Pages on the node of their slot's run, of all pages.
    pub fn layout_ok(&self, nodes: &[i32]) -> usize {
        let fast_pages = self.nf * self.block / crate::PAGE;
        nodes
            .iter()
            .enumerate()
            .filter(|&(i, &n)| n == if i < fast_pages { self.fast } else { self.slow })
            .count()
    }

    /// Registers the pool with tierd as pinned (REGISTER_PINNED), slots per node.
    pub fn register(&mut self, socket: Option<&Path>, step_ms: u64) -> anyhow::Result<()> {
        let client = Client::connect(socket).context("connecting to tierd's client socket")?;
        let layout = [
            (self.fast, self.nf as u32),
            (self.slow, (self.pool.slots() - self.nf) as u32),
        ];
        let region = client
            .register_pinned(
                self.mem.base(),
                self.mem.len() as u64,
                self.block as u64,
                &layout,
            )
            .context("REGISTER_PINNED")?;
        let shm = client.region(region)?;
        self.link = Some(Link {
            client,
            region,
            shm,
            reqs: Vec::new(),
            step_ms: step_ms.clamp(1, u32::MAX as u64) as u32,
        });
        Ok(())
    }

    /// Whether slot `s` is one of the fast-node slots (by the layout, not by asking the
    /// kernel: the replay's own view, which `pages_changed_node` == 0 vouches for).
    pub fn is_fast_slot(&self, s: u32) -> bool {
        (s as usize) < self.nf
    }

    /// The slot of logical block `b` (every block read has one).
    pub fn slot(&self, b: u32) -> u32 {
        self.pool.slot_of(b as usize).map_or(0, |s| s as u32)
    }

    fn send(&mut self, kind: HintKind, slots: &[u64]) -> anyhow::Result<()> {
        let Some(l) = self.link.as_ref() else {
            return Ok(());
        };
        let sent = super::hints::send_hint(&l.client, l.region, kind, slots, l.step_ms)?;
        self.stats.hint_blocks_sent += sent;
        Ok(())
    }

    /// Gives the logical blocks in `fresh` (new contents, about to be written) slots: a
    /// fast one if there is room, else a slow one; appends those slots to `slots`.
    /// tierd is told the old slots are FREE and the new ones WRITTEN.
    pub fn fill(&mut self, fresh: &[u32], slots: &mut Vec<u32>) -> anyhow::Result<()> {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for &b in fresh {
            let b = b as usize;
            if let Some(s) = self.pool.slot_of(b) {
                old.push(s);
            }
            let s = match self.pool.allocate(b, FAST_RUN) {
                Some(s) => {
                    self.stats.filled_fast += 1;
                    s
                }
                None => {
                    self.stats.filled_slow += 1;
                    self.pool
                        .allocate(b, SLOW_RUN)
                        .context("no slow slot for a new block")?
                }
            };
            new.push(s);
            slots.push(s as u32);
        }
        self.send(HintKind::Free, &old)?;
        self.send(HintKind::Written, &new)
    }

    /// Carries out one decision of the slot pool: copies the bytes for a copy.
    fn apply(&mut self, serve: Serve) {
        if let Serve::Copy { from, to } = serve {
            let (f, t) = (from as usize * self.block, to as usize * self.block);
            self.mem.bytes_mut().copy_within(f..f + self.block, t);
        }
    }

    /// Serves every outstanding relocation request from tierd: copy (or re-point to a
    /// shadow) and MOVED, or DECLINED without room.
    pub fn serve(&mut self) -> anyhow::Result<()> {
        let Some(l) = self.link.as_mut() else {
            return Ok(());
        };
        let mut reqs = std::mem::take(&mut l.reqs);
        reqs.clear();
        l.shm.relocations(&mut reqs);
        let (mut moved, mut declined) = (Vec::new(), Vec::new());
        for &(slot, node) in &reqs {
            let run = if node == self.fast {
                FAST_RUN
            } else {
                SLOW_RUN
            };
            let s = self.pool.serve(slot, run);
            self.apply(s);
            match s {
                Serve::Copy { from, to } | Serve::Repoint { from, to } => moved.push((from, to)),
                Serve::Decline => declined.push(slot),
            }
        }
        self.stats.requests += reqs.len() as u64;
        let l = self.link.as_mut().context("tierd link")?;
        for (from, to) in moved {
            l.client.moved(l.region, from, to, 1).context("MOVED")?;
        }
        if !declined.is_empty() {
            l.client.declined(l.region, &declined).context("DECLINED")?;
        }
        l.reqs = reqs;
        Ok(())
    }

    /// The hints of one step, sent before it reads `reads` (logical blocks): PREFETCH
    /// for blocks new in the batch, FREE for blocks that left it and went back to the
    /// free list (their slots are freed here), COLD for those kept for prefix reuse,
    /// ACCESS for every block read.
    pub fn hints_step(&mut self, reads: &[u32], bp: &BlockPool) -> anyhow::Result<()> {
        let mut cur = std::mem::take(&mut self.cur);
        cur.clear();
        cur.extend_from_slice(reads);
        cur.sort_unstable();
        cur.dedup();
        let prev = std::mem::take(&mut self.prev);
        let slot = |p: &SlotPool, b: u32| p.slot_of(b as usize);
        let new: Vec<u64> = cur
            .iter()
            .filter(|b| prev.binary_search(b).is_err())
            .filter_map(|&b| slot(&self.pool, b))
            .collect();
        self.send(HintKind::Prefetch, &new)?;
        let (mut freed, mut cold) = (Vec::new(), Vec::new());
        for &b in prev.iter().filter(|b| cur.binary_search(b).is_err()) {
            let Some(s) = slot(&self.pool, b) else {
                continue;
            };
            if bp.is_free(b) {
                self.pool.free(b as usize);
                freed.push(s);
            } else {
                cold.push(s);
            }
        }
        self.send(HintKind::Free, &freed)?;
        self.send(HintKind::Cold, &cold)?;
        let access: Vec<u64> = cur.iter().filter_map(|&b| slot(&self.pool, b)).collect();
        self.send(HintKind::Access, &access)?;
        self.cur = prev;
        self.prev = cur;
        Ok(())
    }

    /// Blocks just written that the next step reads (new decode blocks): PREFETCH.
    pub fn hints_written(&mut self, fresh: &[u32]) -> anyhow::Result<()> {
        let slots: Vec<u64> = fresh
            .iter()
            .filter_map(|&b| self.pool.slot_of(b as usize))
            .collect();
        self.send(HintKind::Prefetch, &slots)
    }

    /// The oracle: before step `step` reads `reads`, brings each of them to a fast slot,
    /// evicting (to the slow node) the fast block whose next read is farthest away and
    /// is not read in this step.
    pub fn oracle_place(
        &mut self,
        step: u64,
        reads: &[u32],
        next: &mut NextUse,
    ) -> anyhow::Result<()> {
        for &b in reads {
            self.read_at[b as usize] = step;
        }
        for &b in reads {
            let Some(s) = self.pool.slot_of(b as usize) else {
                continue;
            };
            if self.is_fast_slot(s as u32) {
                continue;
            }
            if !self.pool.has_room(FAST_RUN) {
                let victim = (0..self.nf as u64)
                    .filter_map(|v| self.pool.holder(v).map(|h| (v, h)))
                    .filter(|&(_, h)| self.read_at[h] != step)
                    .max_by_key(|&(_, h)| next.after(h, step));
                let Some((v, _)) = victim else {
                    break;
                };
                let d = self.pool.serve(v, SLOW_RUN);
                anyhow::ensure!(d != Serve::Decline, "no slow slot for a demotion");
                self.apply(d);
            }
            let p = self.pool.serve(s, FAST_RUN);
            self.apply(p);
        }
        Ok(())
    }
}
