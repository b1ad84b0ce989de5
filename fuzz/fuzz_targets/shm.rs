//! The client side of a region's shared memory: `ShmView::open` reads the geometry
//! tierd wrote into the header of a mapping and must refuse any header whose tables do
//! not lie inside the mapping, whatever the bytes and the mapping's length. The input
//! gives the mapping's length, the header and the bytes after it; every view `open`
//! accepts is then walked to its last ring slot and table entry (an access outside the
//! buffer is an AddressSanitizer report, and the asserts check the arithmetic). The
//! second half checks `Geometry::new` against `from_raw`: a geometry tierd computes
//! always fits the file it sizes, and survives the header round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;
use tierd_client::layout::{Geometry, HEADER_BYTES, MAGIC, VERSION};
use tierd_client::shm::ShmView;

/// Largest mapping tried, bytes (a view's tables must fit in it).
const MAX_LEN: usize = 1 << 16;

fn check_view(v: &ShmView<'_>, base: usize, len: usize) {
    let g = v.geometry();
    let inside = |p: usize, n: usize| p >= base && p + n <= base + len;
    assert!(g.nblocks >= 1 && g.ring_entries.is_power_of_two());
    for b in [0, g.nblocks / 2, g.nblocks - 1] {
        let p = v
            .placement(b)
            .expect("block below nblocks has a placement entry");
        assert!(inside(p as *const _ as usize, 4));
        let _ = p.load(Ordering::Relaxed);
        let w = v.wanted(b).expect("block below nblocks has a wanted entry");
        assert!(inside(w as *const _ as usize, 4));
        let _ = w.load(Ordering::Relaxed);
    }
    assert!(v.placement(g.nblocks).is_none() && v.wanted(g.nblocks).is_none());
    for i in [
        0,
        g.ring_entries as u64 - 1,
        g.ring_entries as u64,
        u64::MAX,
    ] {
        let e = v.read_entry(i);
        v.write_entry(i, e);
    }
    let _ = v.header().tail.load(Ordering::Relaxed);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // The mapping: a length in 8-byte words (not always a whole header), the bytes.
    let words = (u16::from_le_bytes([data[0], data[1]]) as usize % (MAX_LEN / 8)).max(1);
    let mut mem = vec![0u64; words];
    let len = words * 8 - (data[2] as usize >> 5).min(7) * (data[2] as usize & 1);
    let body = &data[3..];
    for (i, c) in body.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        if let Some(x) = mem.get_mut(i) {
            *x = u64::from_le_bytes(w);
        }
    }
    // Half the inputs get a valid magic and version, so the geometry checks are reached.
    if data[2] & 2 != 0 && mem.len() >= 2 {
        mem[0] = MAGIC;
        mem[1] = (mem[1] & !0xffff_ffff) | VERSION as u64;
    }
    let base = mem.as_mut_ptr() as usize;
    // SAFETY: `mem` is valid for `len` <= its size for the whole block and only used
    // through the view.
    if let Ok((v, _, _, _)) = unsafe { ShmView::open(mem.as_mut_ptr().cast(), len) } {
        assert!(len >= HEADER_BYTES);
        check_view(&v, base, len);
    }

    // Geometry::new from the same bytes: what tierd computes must fit what it sizes.
    let ring = 1u32 << (body.first().copied().unwrap_or(0) % 12);
    let nblocks = body
        .get(1..5)
        .map_or(1, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
    let page = 1u64 << (body.get(5).copied().unwrap_or(12) % 24);
    if let Ok(g) = Geometry::new(ring, nblocks % (MAX_LEN as u64 / 8), page) {
        if g.total_bytes as usize > MAX_LEN * 4 {
            return;
        }
        let mut file = vec![0u64; g.total_bytes as usize / 8];
        let flen = file.len() * 8;
        // SAFETY: as above.
        let v = unsafe { ShmView::from_raw(file.as_mut_ptr().cast(), flen, g) }
            .expect("a geometry from Geometry::new fits its own total_bytes");
        v.init_header(3, 4096, 0x1000);
        // SAFETY: as above.
        let (o, region, bs, b) = unsafe { ShmView::open(file.as_mut_ptr().cast(), flen) }
            .expect("a header init_header wrote opens");
        assert_eq!((o.geometry(), region, bs, b), (g, 3, 4096, 0x1000));
        check_view(&o, file.as_ptr() as usize, flen);
    }
});
