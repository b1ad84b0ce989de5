//! One registered region: the client's address range split into blocks, and the sealed
//! memfd that tierd shares with the client (header, hint ring, placement and relocation
//! tables; layout in `tierd_client::layout`).
//!
//! Created by the connection thread on REGISTER; drained by the poller thread; its
//! placement table written by the promoter and the refresher. tierd keeps the geometry,
//! the owner and the ring head in its own memory and never trusts the mapping for them.

use memmap2::MmapRaw;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tierd_api::AddrRange;
use tierd_client::layout::{state, Geometry, HintEntry};
use tierd_client::ring::{Consumer, RingError};
use tierd_client::shm::ShmView;

use super::pinned::PinnedMap;

#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("region {region} of pid {pid}: creating its shared memory: {errno}")]
    Memfd {
        region: u32,
        pid: i32,
        errno: nix::errno::Errno,
    },
    #[error("region {region} of pid {pid}: mapping its shared memory: {source}")]
    Map {
        region: u32,
        pid: i32,
        source: std::io::Error,
    },
    #[error("region {region} of pid {pid}: {msg}")]
    Layout { region: u32, pid: i32, msg: String },
}

/// Who registered a region and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub uid: u32,
    /// The connection that registered it (its regions go when it closes).
    pub conn: u64,
}

pub struct ShmRegion {
    pub id: u32,
    pub owner: Owner,
    pub base: u64,
    pub block_size: u64,
    pub nblocks: u64,
    /// The connection's socket, to shut it down when the client must be dropped.
    pub conn_sock: Arc<OwnedFd>,
    fd: OwnedFd,
    consumer: Mutex<Consumer>,
    /// The client's drop counters (entries, blocks) already added to the daemon's totals.
    drops_seen: Mutex<(u64, u64)>,
    /// Set for a pinned region (registered so, or found so): its slots and the moves
    /// asked of the client ([`super::pinned`]). tierd never moves its pages.
    pinned: Mutex<Option<PinnedMap>>,
    // `view` borrows `map`; declared first so it is dropped first.
    view: ShmView<'static>,
    _map: MmapRaw,
}

/// F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL: the client cannot resize the file under
/// tierd's mapping (a shrink would SIGBUS the daemon).
fn seal(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map(|_| ())
}

/// A memfd of `bytes`, sealed against resizing.
pub fn sealed_memfd(name: &str, bytes: u64) -> nix::Result<OwnedFd> {
    let cname = CString::new(name).map_err(|_| nix::errno::Errno::EINVAL)?;
    let fd = memfd_create(
        &cname,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )?;
    nix::unistd::ftruncate(&fd, bytes as i64)?;
    seal(&fd)?;
    Ok(fd)
}

impl ShmRegion {
    /// Creates the region's shared memory and writes its header.
    pub fn create(
        id: u32,
        owner: Owner,
        base: u64,
        block_size: u64,
        geo: Geometry,
        conn_sock: Arc<OwnedFd>,
    ) -> Result<ShmRegion, RegionError> {
        let pid = owner.pid;
        let fd = sealed_memfd(&format!("tierd-region-{id}"), geo.total_bytes).map_err(|errno| {
            RegionError::Memfd {
                region: id,
                pid,
                errno,
            }
        })?;
        let file = File::from(fd.try_clone().map_err(|source| RegionError::Map {
            region: id,
            pid,
            source,
        })?);
        let map = MmapRaw::map_raw(&file).map_err(|source| RegionError::Map {
            region: id,
            pid,
            source,
        })?;
        // SAFETY: `map` is a live shared mapping of map.len() bytes owned by this struct;
        // `view` is dropped before it (field order), so 'static never outlives it.
        let view = unsafe { ShmView::from_raw(map.as_mut_ptr(), map.len(), geo) }.map_err(|e| {
            RegionError::Layout {
                region: id,
                pid,
                msg: e.to_string(),
            }
        })?;
        view.init_header(id, block_size, base);
        Ok(ShmRegion {
            id,
            owner,
            base,
            block_size,
            nblocks: geo.nblocks,
            conn_sock,
            fd,
            drops_seen: Mutex::new((0, 0)),
            pinned: Mutex::new(None),
            consumer: Mutex::new(Consumer::new()),
            view,
            _map: map,
        })
    }

    /// The memfd to hand to the client.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn view(&self) -> &ShmView<'static> {
        &self.view
    }

    /// Adds what the client dropped since the last call (its ring was full) to `totals`.
    /// The counters live in client-writable memory: only increases are taken.
    pub fn account_drops(&self, totals: &crate::state::HintCounters) {
        let h = self.header();
        let (e, b) = (
            h.dropped_entries.load(Ordering::Relaxed),
            h.dropped_blocks.load(Ordering::Relaxed),
        );
        let mut seen = self.drops_seen.lock().unwrap_or_else(|p| p.into_inner());
        if e > seen.0 {
            totals
                .dropped_entries
                .fetch_add(e - seen.0, Ordering::Relaxed);
        }
        if b > seen.1 {
            totals
                .dropped_blocks
                .fetch_add(b - seen.1, Ordering::Relaxed);
        }
        *seen = (seen.0.max(e), seen.1.max(b));
    }

    pub fn header(&self) -> &tierd_client::layout::ShmHeader {
        self.view.header()
    }

    /// Copies up to `max` published entries out of the ring.
    pub fn drain(&self, max: usize, out: &mut Vec<HintEntry>) -> Result<usize, RingError> {
        self.consumer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(&self.view, self.id, max, out)
    }

    /// Address range of blocks `[first, first + n)` (validated by the caller).
    pub fn blocks(&self, first: u64, n: u64) -> AddrRange {
        AddrRange {
            start: self.base + first * self.block_size,
            end: self.base + (first + n) * self.block_size,
        }
    }

    /// Address of the first byte of `block`.
    pub fn block_addr(&self, block: u64) -> u64 {
        self.base + block * self.block_size
    }

    pub fn set_placement(&self, block: u64, node: i32) {
        if let Some(p) = self.view.placement(block) {
            p.store(node, Ordering::Release);
        }
    }

    /// The placement last written for `block`.
    pub fn placement(&self, block: u64) -> i32 {
        self.view
            .placement(block)
            .map_or(tierd_client::layout::PLACEMENT_UNKNOWN, |p| {
                p.load(Ordering::Acquire)
            })
    }

    pub fn set_wanted(&self, block: u64, node: i32) {
        if let Some(w) = self.view.wanted(block) {
            w.store(node, Ordering::Release);
        }
    }

    pub fn bump_placement(&self) {
        self.header().placement_gen.fetch_add(1, Ordering::AcqRel);
    }

    pub fn bump_wanted(&self) {
        self.header().wanted_gen.fetch_add(1, Ordering::AcqRel);
    }

    pub fn state(&self) -> u32 {
        self.header().state.load(Ordering::Acquire)
    }

    /// Makes the region pinned with `map` (its slots' nodes); the placement table shows
    /// them from now on (pinned pages stay where they are). Returns false if it
    /// already was.
    pub fn make_pinned(&self, map: PinnedMap) -> bool {
        let mut p = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_some() {
            return false;
        }
        for b in 0..self.nblocks {
            self.set_placement(b, map.node(b));
        }
        self.bump_placement();
        *p = Some(map);
        true
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Runs `f` on the pinned map, if the region is pinned.
    pub fn with_pinned<R>(&self, f: impl FnOnce(&mut PinnedMap) -> R) -> Option<R> {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(f)
    }

    /// Marks the region closed (or corrupt) for the client to see.
    pub fn close(&self, why: u32) {
        let _ = self.header().state.compare_exchange(
            state::LIVE,
            why,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}
