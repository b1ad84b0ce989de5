//! The `fault` backend: user page faults of managed processes, counted per 64 KiB
//! granule in the kernel by `ebpf/fault.bpf.c` on `exceptions:page_fault_user`.
//!
//! A fault marks first touch, a swap-in, a write to a shared page, or (with NUMA
//! balancing on) a NUMA-hinting fault; it is a cheap but sparse signal, so its weight
//! is the fraction of the granule's pages that faulted (comparable to DAMON's
//! fraction of checks). Opened once by [`super::SamplingSet::new`]; runs on the host too.

use super::abi::PageKey;
use super::bpf::{self, BpfHash};
use super::pages::{PageSampler, GRANULE_SHIFT};
use super::{tracefs, SamplerError};
use aya::maps::{HashMap, MapData};
use std::path::Path;

const NAME: &str = "fault";
const OBJECT: &str = "fault.bpf.o";
const PROGRAM: &str = "tierd_page_fault_user";

pub type FaultSampler = PageSampler<BpfHash<PageKey, u64>, HashMap<MapData, u32, u8>>;

/// Loads and attaches the program; fails (with the reason) where it cannot run.
pub fn open() -> Result<FaultSampler, SamplerError> {
    let err = |msg: String| SamplerError::Unavailable { backend: NAME, msg };
    bpf::ensure_tracefs().map_err(|e| err(e.to_string()))?;
    let off = tracefs::offsets(
        Path::new(tracefs::ROOT),
        "exceptions",
        "page_fault_user",
        &[("address", 8)],
    )
    .map_err(|e| err(e.to_string()))?;
    let globals = [("granule_shift", GRANULE_SHIFT), ("off_address", off[0])];
    let mut obj = bpf::load(OBJECT, bpf::FAULT_OBJ, &globals).map_err(|e| err(e.to_string()))?;
    bpf::attach_tracepoint(&mut obj, OBJECT, PROGRAM, "exceptions", "page_fault_user")
        .map_err(err)?;
    let pages = bpf::hash_map(&mut obj, OBJECT, "fault_pages").map_err(|e| err(e.to_string()))?;
    let tracked = bpf::hash_map(&mut obj, OBJECT, "tracked").map_err(|e| err(e.to_string()))?;
    let stats = bpf::stats(&mut obj, OBJECT).map_err(|e| err(e.to_string()))?;
    let pages_per_granule = (1u64 << GRANULE_SHIFT) / 4096;
    let mut s = PageSampler::new(
        NAME,
        BpfHash(pages),
        tracked,
        1.0 / pages_per_granule as f64,
        "tracepoint exceptions:page_fault_user, 64 KiB granules".into(),
    );
    s.stats = Some(stats);
    s._attached = Some(Box::new(obj));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::Sampler;

    /// On the host, as root (CI runs as root): the program loads, attaches and counts
    /// this test process's first-touch faults. Skipped, with the reason, otherwise.
    #[test]
    fn counts_faults_of_a_tracked_process() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED counts_faults_of_a_tracked_process: needs root (BPF)");
            return;
        }
        let mut s = open().expect("the fault backend loads and attaches on this host");
        let me = std::process::id() as i32;
        s.track(me).unwrap();
        let len = 16usize << 20;
        let mut buf = vec![0u8; len];
        // First touch of every page: one fault each (THP may fold some).
        for i in (0..len).step_by(4096) {
            buf[i] = 1;
        }
        let base = buf.as_ptr() as u64;
        let mut out = Vec::new();
        s.drain(&mut out).unwrap();
        let granules = out
            .iter()
            .filter(|x| {
                x.pid == me && x.start + (1 << GRANULE_SHIFT) > base && x.start < base + len as u64
            })
            .count();
        println!("fault backend: {granules} granules of the 256 touched reported");
        assert!(granules >= 128, "only {granules} of 256 granules reported");
        assert!(std::hint::black_box(&buf)[4096] == 1);
        s.untrack(me);
    }
}
