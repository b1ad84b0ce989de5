//! A bounds-checked view of one region's shared memory (see [`crate::layout`]).
//!
//! Both sides build a [`ShmView`] over their own mapping of the region's memfd, from a
//! [`Geometry`] they trust (tierd: the one it computed; the client: the header tierd
//! wrote, checked against the mapping's length). Every access after that is an atomic or
//! a volatile copy at an offset proved in range once, here: the other process may write
//! anything at any time, so nothing read from the mapping is ever used as an index
//! without validation by the caller.

use crate::layout::{Geometry, HintEntry, ShmHeader, ENTRY_BYTES, HEADER_BYTES, MAGIC, VERSION};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::AtomicI32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShmError {
    #[error("shared memory of {len} bytes is smaller than its layout ({need} bytes)")]
    TooSmall { len: usize, need: u64 },
    #[error("shared memory is not 8-byte aligned")]
    Misaligned,
    #[error("bad magic {0:#x}: not a tierd region")]
    Magic(u64),
    #[error("layout version {found}, this library speaks {VERSION}")]
    Version { found: u32 },
    #[error("header fields are inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// A view of a region's shared memory valid for `'a`.
#[derive(Clone, Copy)]
pub struct ShmView<'a> {
    base: NonNull<u8>,
    geo: Geometry,
    _mem: PhantomData<&'a [u8]>,
}

// SAFETY: all access through the view is atomic or a volatile copy of plain data; the
// memory is shared with another process anyway, so sharing it between threads adds no
// hazard that the protocol does not already handle.
unsafe impl Send for ShmView<'_> {}
// SAFETY: as above.
unsafe impl Sync for ShmView<'_> {}

impl<'a> ShmView<'a> {
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for `'a`, and no Rust
    /// reference to that memory may exist except through views (it is shared memory).
    pub unsafe fn from_raw(ptr: *mut u8, len: usize, geo: Geometry) -> Result<Self, ShmError> {
        let base = NonNull::new(ptr).ok_or(ShmError::Misaligned)?;
        if !(ptr as usize).is_multiple_of(8) {
            return Err(ShmError::Misaligned);
        }
        // The geometry may come from a header the other side wrote: every end offset is
        // computed with checks, so a hostile one is refused instead of wrapping around
        // past the bounds check below (found by fuzz/shm).
        let end = |offset: u64, n: u64, size: u64| n.checked_mul(size)?.checked_add(offset);
        let (Some(end_ring), Some(end_placement), Some(end_wanted)) = (
            end(geo.ring_offset, geo.ring_entries as u64, ENTRY_BYTES as u64),
            end(geo.placement_offset, geo.nblocks, 4),
            end(geo.wanted_offset, geo.nblocks, 4),
        ) else {
            return Err(ShmError::Inconsistent("table offsets overflow"));
        };
        let need = end_wanted.max(end_ring).max(HEADER_BYTES as u64);
        if (len as u64) < need || (len as u64) < geo.total_bytes {
            return Err(ShmError::TooSmall {
                len,
                need: need.max(geo.total_bytes),
            });
        }
        if geo.ring_offset < HEADER_BYTES as u64
            || geo.placement_offset < end_ring
            || geo.wanted_offset < end_placement
            || !geo.ring_offset.is_multiple_of(8)
            || !geo.placement_offset.is_multiple_of(4)
            || !geo.wanted_offset.is_multiple_of(4)
            || !geo.ring_entries.is_power_of_two()
        {
            return Err(ShmError::Inconsistent("tables overlap or are misaligned"));
        }
        Ok(ShmView {
            base,
            geo,
            _mem: PhantomData,
        })
    }

    /// Reads the geometry tierd wrote into the header of a mapping of `len` bytes and
    /// checks it (the client side of [`ShmView::from_raw`]).
    ///
    /// # Safety
    /// As [`ShmView::from_raw`].
    pub unsafe fn open(ptr: *mut u8, len: usize) -> Result<(Self, u32, u64, u64), ShmError> {
        if len < HEADER_BYTES {
            return Err(ShmError::TooSmall {
                len,
                need: HEADER_BYTES as u64,
            });
        }
        if !(ptr as usize).is_multiple_of(8) {
            return Err(ShmError::Misaligned);
        }
        let h = ptr as *const ShmHeader;
        // SAFETY: `ptr` is valid for HEADER_BYTES (checked) and 8-aligned; the geometry
        // fields are plain integers written before the fd was shared.
        let (magic, version, region, block_size, base, geo) = unsafe {
            let r = |p: *const u64| std::ptr::read_volatile(p);
            let r32 = |p: *const u32| std::ptr::read_volatile(p);
            (
                r(&raw const (*h).magic),
                r32(&raw const (*h).version),
                r32(&raw const (*h).region),
                r(&raw const (*h).block_size),
                r(&raw const (*h).base),
                Geometry {
                    ring_entries: r32(&raw const (*h).ring_entries),
                    nblocks: r(&raw const (*h).nblocks),
                    ring_offset: r(&raw const (*h).ring_offset),
                    placement_offset: r(&raw const (*h).placement_offset),
                    wanted_offset: r(&raw const (*h).wanted_offset),
                    total_bytes: r(&raw const (*h).total_bytes),
                },
            )
        };
        if magic != MAGIC {
            return Err(ShmError::Magic(magic));
        }
        if version != VERSION {
            return Err(ShmError::Version { found: version });
        }
        if geo.nblocks == 0 || geo.nblocks > crate::layout::MAX_BLOCKS {
            return Err(ShmError::Inconsistent("nblocks"));
        }
        // SAFETY: forwarded from the caller.
        let view = unsafe { ShmView::from_raw(ptr, len, geo)? };
        Ok((view, region, block_size, base))
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The header; only its atomics may be used once the memory is shared.
    pub fn header(&self) -> &'a ShmHeader {
        // SAFETY: the mapping holds at least HEADER_BYTES at an 8-aligned address
        // (checked in from_raw) for 'a.
        unsafe { &*(self.base.as_ptr() as *const ShmHeader) }
    }

    /// Writes the geometry line (tierd, before sharing the fd).
    pub fn init_header(&self, region: u32, block_size: u64, base: u64) {
        let h = self.base.as_ptr() as *mut ShmHeader;
        let g = self.geo;
        // SAFETY: in range and aligned (from_raw); the memory is not shared yet, so these
        // plain writes race with nothing.
        unsafe {
            (&raw mut (*h).magic).write_volatile(MAGIC);
            (&raw mut (*h).version).write_volatile(VERSION);
            (&raw mut (*h).header_bytes).write_volatile(HEADER_BYTES as u32);
            (&raw mut (*h).total_bytes).write_volatile(g.total_bytes);
            (&raw mut (*h).region).write_volatile(region);
            (&raw mut (*h).ring_entries).write_volatile(g.ring_entries);
            (&raw mut (*h).entry_bytes).write_volatile(ENTRY_BYTES as u32);
            (&raw mut (*h).block_size).write_volatile(block_size);
            (&raw mut (*h).nblocks).write_volatile(g.nblocks);
            (&raw mut (*h).base).write_volatile(base);
            (&raw mut (*h).ring_offset).write_volatile(g.ring_offset);
            (&raw mut (*h).placement_offset).write_volatile(g.placement_offset);
            (&raw mut (*h).wanted_offset).write_volatile(g.wanted_offset);
        }
        for i in 0..g.nblocks {
            if let Some(p) = self.placement(i) {
                p.store(
                    crate::layout::PLACEMENT_UNKNOWN,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            if let Some(w) = self.wanted(i) {
                w.store(
                    crate::layout::WANTED_NONE,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    }

    fn slot(&self, index: u64) -> *mut HintEntry {
        let i = index & (self.geo.ring_entries as u64 - 1);
        // SAFETY: i < ring_entries, and the ring lies inside the mapping (from_raw).
        unsafe {
            self.base
                .as_ptr()
                .add((self.geo.ring_offset + i * ENTRY_BYTES as u64) as usize)
                as *mut HintEntry
        }
    }

    /// A copy of ring slot `index % ring_entries` (the other side may be writing it).
    pub fn read_entry(&self, index: u64) -> HintEntry {
        // SAFETY: slot() is in range and 8-aligned; volatile because another process
        // may write the slot concurrently (then the copy is garbage, and is validated).
        unsafe { std::ptr::read_volatile(self.slot(index)) }
    }

    /// Writes ring slot `index % ring_entries` (the producer, before publishing it).
    pub fn write_entry(&self, index: u64, e: HintEntry) {
        // SAFETY: as read_entry; only the producer writes unpublished slots.
        unsafe { std::ptr::write_volatile(self.slot(index), e) }
    }

    /// Placement of `block`: node, or a negative errno. `None` when out of range.
    pub fn placement(&self, block: u64) -> Option<&'a AtomicI32> {
        self.table(self.geo.placement_offset, block)
    }

    /// Node tierd wants `block` copied to (relocation request), or -1.
    pub fn wanted(&self, block: u64) -> Option<&'a AtomicI32> {
        self.table(self.geo.wanted_offset, block)
    }

    fn table(&self, offset: u64, block: u64) -> Option<&'a AtomicI32> {
        if block >= self.geo.nblocks {
            return None;
        }
        // SAFETY: block < nblocks and the table lies in the mapping, 4-aligned (from_raw).
        Some(unsafe {
            &*(self.base.as_ptr().add((offset + block * 4) as usize) as *const AtomicI32)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 8-aligned heap memory standing in for a mapping.
    pub struct Mem(pub Vec<u64>);

    impl Mem {
        pub fn new(bytes: u64) -> Mem {
            Mem(vec![0; bytes.div_ceil(8) as usize])
        }
        pub fn view(&mut self, geo: Geometry) -> ShmView<'_> {
            let len = self.0.len() * 8;
            // SAFETY: the Vec is valid for len bytes while borrowed.
            unsafe { ShmView::from_raw(self.0.as_mut_ptr() as *mut u8, len, geo).unwrap() }
        }
    }

    /// A header whose offsets or sizes overflow u64 when added up must be refused, not
    /// wrap around (release builds) or panic (debug builds); found by `fuzz/shm`.
    #[test]
    fn offsets_that_overflow_are_refused() {
        let geo = Geometry::new(64, 100, 4096).unwrap();
        let mut m = Mem::new(geo.total_bytes);
        m.view(geo).init_header(7, 65536, 0x1000);
        let len = m.0.len() * 8;
        // Words of the header: 8 ring_offset, 9 placement_offset, 10 wanted_offset.
        for (word, value) in [(10, u64::MAX - 3), (9, u64::MAX - 3), (8, u64::MAX - 7)] {
            let saved = m.0[word];
            m.0[word] = value;
            // SAFETY: valid for len bytes.
            let got = unsafe { ShmView::open(m.0.as_mut_ptr() as *mut u8, len) };
            assert!(
                matches!(
                    got,
                    Err(ShmError::Inconsistent(_) | ShmError::TooSmall { .. })
                ),
                "word {word} = {value:#x}: {:?}",
                got.map(|_| ())
            );
            m.0[word] = saved;
        }
        // from_raw with a geometry no Geometry::new would make (tierd's own copy is
        // trusted, but the check must still not overflow).
        let huge = Geometry {
            nblocks: u64::MAX / 2,
            ..geo
        };
        // SAFETY: as above.
        let got = unsafe { ShmView::from_raw(m.0.as_mut_ptr() as *mut u8, len, huge) };
        assert!(got.is_err());
    }

    #[test]
    fn open_checks_magic_version_and_size() {
        let geo = Geometry::new(64, 100, 4096).unwrap();
        let mut m = Mem::new(geo.total_bytes);
        m.view(geo).init_header(7, 65536, 0x1000);
        let len = m.0.len() * 8;
        let ptr = m.0.as_mut_ptr() as *mut u8;
        // SAFETY: valid for len bytes.
        let (v, region, bs, base) = unsafe { ShmView::open(ptr, len).unwrap() };
        assert_eq!((region, bs, base), (7, 65536, 0x1000));
        assert_eq!(v.geometry(), geo);
        assert_eq!(
            v.placement(99)
                .unwrap()
                .load(std::sync::atomic::Ordering::Relaxed),
            crate::layout::PLACEMENT_UNKNOWN
        );
        assert!(v.placement(100).is_none());
        // SAFETY: as above, shorter.
        assert!(matches!(
            unsafe { ShmView::open(ptr, len - 4096) },
            Err(ShmError::TooSmall { .. })
        ));
        m.0[1] = 9; // version field (and header_bytes)
                    // SAFETY: as above.
        assert!(matches!(
            unsafe { ShmView::open(m.0.as_mut_ptr() as *mut u8, len) },
            Err(ShmError::Version { .. })
        ));
        m.0[0] = 0;
        // SAFETY: as above.
        assert!(matches!(
            unsafe { ShmView::open(m.0.as_mut_ptr() as *mut u8, len) },
            Err(ShmError::Magic(0))
        ));
    }
}
