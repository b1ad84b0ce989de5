//! What a vLLM-shaped block manager tells tierd (issue 6's "with hints" arm). The
//! engine knows its batch, so each step it sends
//!
//! - `PREFETCH` (deadline one step) for blocks it reads this step that it did not read
//!   the step before (new requests' prompt blocks, reused prefix blocks, new decode
//!   blocks), and right after writing a new decode block (it is read next step);
//! - `ACCESS` for every block it reads this step;
//! - for blocks that left the batch: `FREE` when they went back to the free list
//!   (contents dead), `COLD` when they stay cached for prefix reuse (the request is
//!   done; a reuse brings them back with a PREFETCH). Trace reuse of finished requests'
//!   blocks is rare (Mooncake: a few percent of fills), so the engine gives their room
//!   to new KV rather than keep them on the fast tier.
//!
//! With recycling on (the default of `kvreplay --hints`) it also drops the pages of
//! blocks it frees and of blocks it takes for new contents (`Client::recycle`), then
//! pre-faults the latter (`MADV_POPULATE_WRITE`): new KV is allocated on the fast
//! tier, where tierd keeps headroom, instead of written where the slot last lived and
//! migrated afterwards (TPP's allocation path), and freed blocks give their fast
//! memory back without a migration.
//!
//! Block numbers are pool slots; the pool is one registered region of equal blocks.

use super::pool::BlockPool;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tierd_client::{Client, HintKind, Region, RegionStats};

pub struct EngineHints {
    client: Client,
    region: u32,
    /// The region's shared memory (placement reads without a lookup per block).
    shm: Arc<Region>,
    base: u64,
    block: u64,
    step_ms: u32,
    recycle: bool,
    prev: Vec<u64>,
    cur: Vec<u64>,
    scratch: Vec<u64>,
    /// Blocks accepted into the ring / offered, over the run.
    pub sent_blocks: u64,
    pub offered_blocks: u64,
    /// Blocks whose pages were dropped (freed or refilled).
    pub recycled_blocks: u64,
}

impl EngineHints {
    /// Connects to tierd's client socket (`None`: the default path) and registers the
    /// pool `[base, base + len)` as blocks of `block` bytes.
    ///
    /// # Safety
    /// With `recycle`, the pool must be memory of this process that no device pins, and
    /// the blocks passed to [`EngineHints::refill`] and those on the pool's free list must
    /// have dead contents: their pages are dropped (they read as zeros).
    pub unsafe fn connect(
        socket: Option<&Path>,
        base: u64,
        len: u64,
        block: u64,
        step_ms: u64,
        recycle: bool,
    ) -> anyhow::Result<EngineHints> {
        let client = Client::connect(socket).context("connecting to tierd's client socket")?;
        let region = client
            .register(base, len, block)
            .context("registering the KV pool")?;
        let shm = client.region(region)?;
        Ok(EngineHints {
            client,
            region,
            shm,
            base,
            block,
            step_ms: step_ms.clamp(1, u32::MAX as u64) as u32,
            recycle,
            prev: Vec::new(),
            cur: Vec::new(),
            scratch: Vec::new(),
            sent_blocks: 0,
            offered_blocks: 0,
            recycled_blocks: 0,
        })
    }

    fn send(&mut self, kind: HintKind, blocks: &[u64]) -> anyhow::Result<()> {
        let sent = send_hint(&self.client, self.region, kind, blocks, self.step_ms)?;
        self.sent_blocks += sent;
        self.offered_blocks += blocks.len() as u64;
        Ok(())
    }

    /// Drops the pages of `blocks` (sorted), when recycling is on.
    fn drop_pages(&mut self, blocks: &[u64]) -> anyhow::Result<bool> {
        if !self.recycle || blocks.is_empty() {
            return Ok(false);
        }
        // SAFETY: connect()'s contract: these blocks' contents are dead, nothing pins
        // the pool.
        unsafe { self.client.recycle(self.region, blocks) }.context("recycling blocks")?;
        self.recycled_blocks += blocks.len() as u64;
        Ok(true)
    }

    /// The hints of one step, sent before the step reads `reads` (pool slots).
    pub fn step(&mut self, reads: &[u32], pool: &BlockPool) -> anyhow::Result<()> {
        self.cur.clear();
        self.cur.extend(reads.iter().map(|&s| s as u64));
        self.cur.sort_unstable();
        self.cur.dedup();
        // New in the batch: PREFETCH.
        let mut list = std::mem::take(&mut self.scratch);
        list.clear();
        list.extend(
            self.cur
                .iter()
                .filter(|b| self.prev.binary_search(b).is_err()),
        );
        self.send(HintKind::Prefetch, &list)?;
        // Left the batch and freed: contents dead.
        list.clear();
        list.extend(
            self.prev
                .iter()
                .filter(|b| self.cur.binary_search(b).is_err() && pool.is_free(**b as u32)),
        );
        self.drop_pages(&list)?;
        self.send(HintKind::Free, &list)?;
        // Left the batch, kept for prefix reuse: COLD.
        list.clear();
        list.extend(
            self.prev
                .iter()
                .filter(|b| self.cur.binary_search(b).is_err() && !pool.is_free(**b as u32)),
        );
        self.send(HintKind::Cold, &list)?;
        self.scratch = list;
        let cur = std::mem::take(&mut self.cur);
        self.send(HintKind::Access, &cur)?;
        self.cur = std::mem::replace(&mut self.prev, cur);
        Ok(())
    }

    /// Blocks about to be filled with new contents (their old contents are dead): with
    /// recycling on, drops their pages and faults new ones in, on the fast tier.
    pub fn refill(&mut self, slots: &[u32]) -> anyhow::Result<()> {
        let mut b: Vec<u64> = slots.iter().map(|&s| s as u64).collect();
        b.sort_unstable();
        if !self.drop_pages(&b)? {
            return Ok(());
        }
        for &s in &b {
            let addr = self.base + s * self.block;
            // SAFETY: a range of the registered pool, this process's own memory;
            // populating pages changes no contents (they were just dropped).
            let rc = unsafe {
                libc::madvise(
                    addr as *mut libc::c_void,
                    self.block as usize,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            anyhow::ensure!(
                rc == 0,
                "madvise(MADV_POPULATE_WRITE) on block {s}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Blocks just written that the next step reads (new decode blocks).
    pub fn written(&mut self, slots: &[u32]) -> anyhow::Result<()> {
        let mut b: Vec<u64> = slots.iter().map(|&s| s as u64).collect();
        b.sort_unstable();
        self.send(HintKind::Prefetch, &b)
    }

    /// Where tierd's placement table says `slot` lives (node, or a negative errno).
    pub fn placement(&self, slot: u32) -> i32 {
        self.shm.placement(slot as u64)
    }

    pub fn stats(&self) -> RegionStats {
        self.shm.stats()
    }
}

/// Sends one hint of `kind` for `blocks` of `region` (a PREFETCH with a deadline of
/// `step_ms`, what one replay step lasts); the blocks accepted (none for no blocks).
/// Shared by the plain and the pinned replay's links.
pub fn send_hint(
    client: &Client,
    region: u32,
    kind: HintKind,
    blocks: &[u64],
    step_ms: u32,
) -> anyhow::Result<u64> {
    if blocks.is_empty() {
        return Ok(0);
    }
    if kind == HintKind::Prefetch {
        client.hint_prefetch(region, blocks, step_ms)
    } else {
        client.hint(region, kind, blocks)
    }
    .with_context(|| format!("{} hint", kind.name()))
}
