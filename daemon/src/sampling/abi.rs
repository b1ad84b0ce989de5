//! Rust mirrors of `ebpf/tierd_bpf.h`: the structs and constants that cross the
//! BPF/Rust boundary. Sizes and field offsets are asserted at compile time, so a
//! change to the header without the same change here fails the build.

use std::mem::{offset_of, size_of};

pub const DAMON_MAX_ENTRIES: u32 = 16384;
pub const PAGE_MAX_ENTRIES: u32 = 65536;
pub const MAX_TRACKED: u32 = 4096;
pub const MAX_KDAMONDS: u32 = 8;

pub const STAT_EVENTS: u32 = 0;
pub const STAT_DROPPED: u32 = 1;
pub const STAT_UPDATES: u32 = 2;

/// `struct tierd_damon_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DamonKey {
    pub kdamond_pid: u32,
    pub target_id: u32,
    pub start: u64,
    pub end: u64,
}

/// `struct tierd_damon_val`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DamonVal {
    pub nr_accesses: u64,
    pub aggregations: u32,
    pub nr_regions: u32,
}

/// `struct tierd_page_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PageKey {
    pub tgid: u32,
    pub pad: u32,
    pub granule: u64,
}

const _: () = assert!(size_of::<DamonKey>() == 24);
const _: () = assert!(offset_of!(DamonKey, target_id) == 4);
const _: () = assert!(offset_of!(DamonKey, start) == 8);
const _: () = assert!(offset_of!(DamonKey, end) == 16);
const _: () = assert!(size_of::<DamonVal>() == 16);
const _: () = assert!(offset_of!(DamonVal, aggregations) == 8);
const _: () = assert!(offset_of!(DamonVal, nr_regions) == 12);
const _: () = assert!(size_of::<PageKey>() == 16);
const _: () = assert!(offset_of!(PageKey, granule) == 8);

// SAFETY: plain #[repr(C)] integers with no padding (asserted above); every bit
// pattern is a valid value, as aya's Pod requires.
unsafe impl aya::Pod for DamonKey {}
// SAFETY: as above.
unsafe impl aya::Pod for DamonVal {}
// SAFETY: as above (`pad` is an explicit field, not padding).
unsafe impl aya::Pod for PageKey {}

#[cfg(test)]
mod tests {
    /// The constants above equal the header's `#define`s.
    #[test]
    fn constants_match_the_c_header() {
        let h = include_str!("../../../ebpf/tierd_bpf.h");
        let define = |name: &str| -> u32 {
            h.lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("#define") && w.next() == Some(name))
                        .then(|| w.next().and_then(|v| v.parse().ok()))
                        .flatten()
                })
                .unwrap_or_else(|| panic!("{name} not in tierd_bpf.h"))
        };
        assert_eq!(define("TIERD_DAMON_MAX_ENTRIES"), super::DAMON_MAX_ENTRIES);
        assert_eq!(define("TIERD_PAGE_MAX_ENTRIES"), super::PAGE_MAX_ENTRIES);
        assert_eq!(define("TIERD_MAX_TRACKED"), super::MAX_TRACKED);
        assert_eq!(define("TIERD_MAX_KDAMONDS"), super::MAX_KDAMONDS);
        assert_eq!(define("TIERD_STAT_EVENTS"), super::STAT_EVENTS);
        assert_eq!(define("TIERD_STAT_DROPPED"), super::STAT_DROPPED);
        assert_eq!(define("TIERD_STAT_UPDATES"), super::STAT_UPDATES);
    }
}
