//! The shared-memory layout of one region: header, hint ring, placement table and
//! relocation-request table, in one memfd that tierd creates, sizes and seals.
//!
//! ```text
//! 0                 ShmHeader (320 bytes: geometry, producer line, two consumer lines)
//! ring_offset       ring_entries × HintEntry (24 bytes each), an SPSC ring
//! placement_offset  nblocks × i32: node of each block, or a negative errno
//! wanted_offset     nblocks × i32: node tierd wants the block copied to, or -1
//! ```
//!
//! Every offset is 64-byte aligned; the file is rounded up to the page size. All
//! integers are little-endian (the host's: both sides run on the same machine). The
//! geometry line is written once by tierd before the fd is handed out; tierd keeps its
//! own copy and never reads it back, so a client scribbling over it only hurts itself.
//! Sizes and offsets are asserted at compile time here and in `clients/c/include/tierd.h`.

use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

/// `"TIERDSHM"` as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TIERDSHM");
/// Bumped on any incompatible change of this file's layout.
pub const VERSION: u32 = 1;
/// Bytes of [`ShmHeader`].
pub const HEADER_BYTES: usize = 320;
/// Bytes of one [`HintEntry`].
pub const ENTRY_BYTES: usize = 24;
/// Alignment of each table.
pub const TABLE_ALIGN: u64 = 64;

/// Placement value of a block tierd has not looked at yet.
pub const PLACEMENT_UNKNOWN: i32 = -libc::EAGAIN;
/// Wanted-node value meaning "no request".
pub const WANTED_NONE: i32 = -1;

/// [`ShmHeader::state`] values.
pub mod state {
    /// Live: tierd consumes the ring.
    pub const LIVE: u32 = 0;
    /// Unregistered or the connection closed: hints are ignored.
    pub const CLOSED: u32 = 1;
    /// tierd found the ring indices corrupt and dropped the client.
    pub const CORRUPT: u32 = 2;
}

/// What a hint says about a range of blocks. Values are the C `TIERD_HINT_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum HintKind {
    /// Blocks are being used now (heat, and they are live again).
    Access = 1,
    /// Blocks will be read within `deadline_ms`: promote now.
    Prefetch = 2,
    /// Blocks will not be used soon: demote ahead of sampled-cold memory.
    Cold = 3,
    /// Contents are dead: cheapest placement, never promote.
    Free = 4,
    /// Keep on the fast tier until `Unpin`.
    PinFast = 5,
    /// Undo `PinFast`.
    Unpin = 6,
    /// The client copied these blocks as tierd asked (relocation table) and cleared them.
    Relocated = 7,
    /// Pinned regions: the contents of blocks `[first_block, first_block + nblocks)`
    /// now live in blocks `[to, to + nblocks)` (`to` travels in the entry's
    /// `deadline_ms` field, see [`HintEntry::to_block`]); the client re-pointed its block
    /// table. The source blocks stay a valid *shadow* copy until written or freed.
    Moved = 8,
    /// Pinned regions: the client will not serve these relocation requests (no free
    /// slot on the wanted node, block busy); tierd clears them and plans again.
    Declined = 9,
    /// Pinned regions: the blocks' contents changed; any shadow copy of them (or that
    /// they were) is dropped.
    Written = 10,
}

impl HintKind {
    pub const ALL: [HintKind; 10] = [
        HintKind::Access,
        HintKind::Prefetch,
        HintKind::Cold,
        HintKind::Free,
        HintKind::PinFast,
        HintKind::Unpin,
        HintKind::Relocated,
        HintKind::Moved,
        HintKind::Declined,
        HintKind::Written,
    ];

    pub fn from_raw(v: u16) -> Option<HintKind> {
        HintKind::ALL.into_iter().find(|k| *k as u16 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            HintKind::Access => "access",
            HintKind::Prefetch => "prefetch",
            HintKind::Cold => "cold",
            HintKind::Free => "free",
            HintKind::PinFast => "pin-fast",
            HintKind::Unpin => "unpin",
            HintKind::Relocated => "relocated",
            HintKind::Moved => "moved",
            HintKind::Declined => "declined",
            HintKind::Written => "written",
        }
    }
}

/// The first 320 bytes of a region's shared memory.
///
/// Lines 0-1 (geometry) are written by tierd before sharing; line 2 only by the client
/// (producer); lines 3-4 by tierd (consumer). Separate cache lines keep the two
/// sides from false sharing on the hot path.
#[repr(C)]
pub struct ShmHeader {
    pub magic: u64,
    pub version: u32,
    pub header_bytes: u32,
    pub total_bytes: u64,
    pub region: u32,
    pub ring_entries: u32,
    pub entry_bytes: u32,
    pub _pad0: u32,
    pub block_size: u64,
    pub nblocks: u64,
    /// Start address of the region in the client's address space.
    pub base: u64,
    pub ring_offset: u64,
    pub placement_offset: u64,
    pub wanted_offset: u64,
    pub _pad1: [u64; 5],
    // --- producer line (client writes) ---
    /// Entries published; the ring slot of entry `i` is `i % ring_entries`.
    pub tail: AtomicU64,
    /// Hints (blocks) dropped because the ring was full.
    pub dropped_blocks: AtomicU64,
    /// Ring entries dropped because the ring was full.
    pub dropped_entries: AtomicU64,
    pub _pad2: [u64; 5],
    // --- consumer line (tierd writes) ---
    /// Entries consumed.
    pub head: AtomicU64,
    /// [`state`] of the region.
    pub state: AtomicU32,
    pub _pad3: u32,
    /// Bumped after every placement-table update.
    pub placement_gen: AtomicU64,
    /// Bumped after every relocation-table update.
    pub wanted_gen: AtomicU64,
    /// Entries applied, and the blocks they covered.
    pub applied_entries: AtomicU64,
    pub applied_blocks: AtomicU64,
    /// Entries refused (unknown kind, wrong region, blocks out of range).
    pub rejected_entries: AtomicU64,
    /// PREFETCH hints whose blocks were not on the fast tier by their deadline.
    pub deadline_missed: AtomicU64,
    // --- consumer line 2 ---
    /// PREFETCH / PIN_FAST blocks read back on the fast tier (moved, or already there).
    pub promoted_blocks: AtomicU64,
    pub _pad4: [u64; 7],
}

/// One hint: `kind` for blocks `[first_block, first_block + nblocks)` of `region`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HintEntry {
    pub kind: u16,
    pub _reserved: u16,
    pub region: u32,
    pub first_block: u64,
    pub nblocks: u32,
    /// PREFETCH: the client needs the blocks within this many ms of the hint.
    /// MOVED: the first destination block ([`HintEntry::to_block`]).
    pub deadline_ms: u32,
}

impl HintEntry {
    /// MOVED's destination: the block the first source block's contents went to
    /// (regions have at most [`MAX_BLOCKS`] blocks, so a u32 holds it).
    pub fn to_block(&self) -> u64 {
        self.deadline_ms as u64
    }
}

// The layout is a contract with C and Python: sizes and offsets never change within a
// VERSION. `docs/protocol.md` and `tierd.h` list the same numbers.
const _: () = {
    assert!(size_of::<ShmHeader>() == HEADER_BYTES);
    assert!(align_of::<ShmHeader>() == 8);
    assert!(offset_of!(ShmHeader, magic) == 0);
    assert!(offset_of!(ShmHeader, version) == 8);
    assert!(offset_of!(ShmHeader, header_bytes) == 12);
    assert!(offset_of!(ShmHeader, total_bytes) == 16);
    assert!(offset_of!(ShmHeader, region) == 24);
    assert!(offset_of!(ShmHeader, ring_entries) == 28);
    assert!(offset_of!(ShmHeader, entry_bytes) == 32);
    assert!(offset_of!(ShmHeader, block_size) == 40);
    assert!(offset_of!(ShmHeader, nblocks) == 48);
    assert!(offset_of!(ShmHeader, base) == 56);
    assert!(offset_of!(ShmHeader, ring_offset) == 64);
    assert!(offset_of!(ShmHeader, placement_offset) == 72);
    assert!(offset_of!(ShmHeader, wanted_offset) == 80);
    assert!(offset_of!(ShmHeader, tail) == 128);
    assert!(offset_of!(ShmHeader, dropped_blocks) == 136);
    assert!(offset_of!(ShmHeader, dropped_entries) == 144);
    assert!(offset_of!(ShmHeader, head) == 192);
    assert!(offset_of!(ShmHeader, state) == 200);
    assert!(offset_of!(ShmHeader, placement_gen) == 208);
    assert!(offset_of!(ShmHeader, wanted_gen) == 216);
    assert!(offset_of!(ShmHeader, applied_entries) == 224);
    assert!(offset_of!(ShmHeader, applied_blocks) == 232);
    assert!(offset_of!(ShmHeader, rejected_entries) == 240);
    assert!(offset_of!(ShmHeader, deadline_missed) == 248);
    assert!(offset_of!(ShmHeader, promoted_blocks) == 256);
    assert!(size_of::<HintEntry>() == ENTRY_BYTES);
    assert!(offset_of!(HintEntry, kind) == 0);
    assert!(offset_of!(HintEntry, region) == 4);
    assert!(offset_of!(HintEntry, first_block) == 8);
    assert!(offset_of!(HintEntry, nblocks) == 16);
    assert!(offset_of!(HintEntry, deadline_ms) == 20);
    assert!(size_of::<AtomicU64>() == 8 && size_of::<AtomicI32>() == 4);
};

/// Where everything sits in a region's file; computed by tierd, checked by clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub ring_entries: u32,
    pub nblocks: u64,
    pub ring_offset: u64,
    pub placement_offset: u64,
    pub wanted_offset: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("ring_entries {0} is not a power of two >= 2")]
    RingEntries(u32),
    #[error("{0} blocks is too many for one region")]
    TooManyBlocks(u64),
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x / a * a)
}

/// Largest number of blocks in one region (placement + wanted tables of 8 MiB).
pub const MAX_BLOCKS: u64 = 1 << 20;

impl Geometry {
    /// Lays out a region of `nblocks` blocks with a ring of `ring_entries` entries.
    pub fn new(ring_entries: u32, nblocks: u64, page: u64) -> Result<Geometry, GeometryError> {
        if ring_entries < 2 || !ring_entries.is_power_of_two() {
            return Err(GeometryError::RingEntries(ring_entries));
        }
        if nblocks == 0 || nblocks > MAX_BLOCKS {
            return Err(GeometryError::TooManyBlocks(nblocks));
        }
        let ring_offset = HEADER_BYTES as u64;
        let placement_offset = ring_offset + ring_entries as u64 * ENTRY_BYTES as u64;
        let placement_offset =
            align_up(placement_offset, TABLE_ALIGN).ok_or(GeometryError::TooManyBlocks(nblocks))?;
        let wanted_offset = align_up(placement_offset + nblocks * 4, TABLE_ALIGN)
            .ok_or(GeometryError::TooManyBlocks(nblocks))?;
        let total_bytes = align_up(wanted_offset + nblocks * 4, page.max(TABLE_ALIGN))
            .ok_or(GeometryError::TooManyBlocks(nblocks))?;
        Ok(Geometry {
            ring_entries,
            nblocks,
            ring_offset,
            placement_offset,
            wanted_offset,
            total_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_aligned_and_disjoint() {
        let g = Geometry::new(64, 1000, 4096).unwrap();
        assert_eq!(g.ring_offset, 320);
        assert_eq!(g.placement_offset, 320 + 64 * 24);
        assert_eq!(g.placement_offset % 64, 0);
        assert!(g.wanted_offset >= g.placement_offset + 4000);
        assert_eq!(g.wanted_offset % 64, 0);
        assert!(g.total_bytes >= g.wanted_offset + 4000);
        assert_eq!(g.total_bytes % 4096, 0);
        assert_eq!(
            Geometry::new(100, 1, 4096),
            Err(GeometryError::RingEntries(100))
        );
        assert_eq!(
            Geometry::new(64, 0, 4096),
            Err(GeometryError::TooManyBlocks(0))
        );
        assert!(Geometry::new(64, MAX_BLOCKS + 1, 4096).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in HintKind::ALL {
            assert_eq!(HintKind::from_raw(k as u16), Some(k));
        }
        assert_eq!(HintKind::from_raw(0), None);
        assert_eq!(HintKind::from_raw(99), None);
    }
}
