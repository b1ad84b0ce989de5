//! The ring reader over hostile shared memory: the input supplies the geometry, the
//! bytes of the ring slots and a sequence of (tail, max) steps, as a client that writes
//! anything at any time would. The reader must never panic, never return more than
//! `max` or the capacity, never move `head` on corrupt indices, and every entry that
//! `validate` accepts must lie inside the region.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::atomic::Ordering;
use tierd_client::layout::Geometry;
use tierd_client::ring::{validate, Consumer};
use tierd_client::shm::ShmView;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cap = 1u32 << (1 + data[0] % 7);
    let nblocks = 1 + (data[1] as u64 % 200);
    let Ok(geo) = Geometry::new(cap, nblocks, 4096) else {
        return;
    };
    let mut mem = vec![0u64; (geo.total_bytes / 8) as usize];
    let rest = &data[2..];
    let split = rest.len() / 2;
    let (slots, steps) = rest.split_at(split);
    let ring = (geo.ring_offset / 8) as usize;
    for (i, c) in slots.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        if let Some(x) = mem.get_mut(ring + i) {
            *x = u64::from_le_bytes(w);
        }
    }
    let len = mem.len() * 8;
    // SAFETY: `mem` is valid for `len` bytes for the whole run and only used via `v`.
    let Ok(v) = (unsafe { ShmView::from_raw(mem.as_mut_ptr().cast(), len, geo) }) else {
        return;
    };
    v.init_header(9, 4096, 0);
    let mut c = Consumer::new();
    let mut out = Vec::new();
    for s in steps.chunks(9) {
        let mut w = [0u8; 8];
        w[..s.len().min(8)].copy_from_slice(&s[..s.len().min(8)]);
        let raw = u64::from_le_bytes(w);
        let tail = if raw & 1 == 0 {
            c.head() + (raw >> 1) % 130
        } else {
            raw
        };
        let max = s.get(8).copied().unwrap_or(0) as usize;
        v.header().tail.store(tail, Ordering::Relaxed);
        let before = c.head();
        out.clear();
        match c.drain(&v, 9, max, &mut out) {
            Ok(n) => {
                assert!(n <= max && n as u64 <= cap as u64 && n == out.len());
                assert_eq!(c.head(), before + n as u64);
            }
            Err(_) => assert_eq!(c.head(), before),
        }
        for e in &out {
            if let Ok(h) = validate(e, 9, nblocks) {
                assert!(h.nblocks >= 1 && h.first_block + h.nblocks <= nblocks);
            }
        }
    }
});
