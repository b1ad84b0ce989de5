//! Which 2 MiB-aligned addresses of a process are backed by a transparent huge page,
//! from `/proc/PID/pagemap` (virtual → PFN) and `/proc/kpageflags` (PFN → THP flag).
//! Both need CAP_SYS_ADMIN; without it every page is treated as a small page, which
//! is still correct, only slower (tail pages report EBUSY and are retried as heads).

use procfs::process::PageInfo;
use procfs::{KPageFlags, PhysicalPageFlags};

pub const HUGE_BYTES: u64 = 2 << 20;

/// Finds THP heads among the 2 MiB-aligned addresses in `[start, end)`; returns them
/// sorted. Errors (no permission, process gone) yield an empty list.
pub fn huge_heads(pid: i32, start: u64, end: u64, page: u64) -> Vec<u64> {
    let first = start.div_ceil(HUGE_BYTES) * HUGE_BYTES;
    if first + HUGE_BYTES > end {
        return Vec::new();
    }
    let Ok(proc) = procfs::process::Process::new(pid) else {
        return Vec::new();
    };
    let (Ok(mut pagemap), Ok(mut kflags)) = (proc.pagemap(), KPageFlags::new()) else {
        return Vec::new();
    };
    let mut heads = Vec::new();
    let mut addr = first;
    while addr + HUGE_BYTES <= end {
        let idx = (addr / page) as usize;
        if let Ok(info) = pagemap.get_range_info(idx..idx + 1) {
            if let Some(PageInfo::MemoryPage(f)) = info.first() {
                let pfn = f.get_page_frame_number();
                if pfn.0 != 0 {
                    if let Ok(fl) = kflags.get_range_info(pfn, procfs::process::Pfn(pfn.0 + 1)) {
                        if fl
                            .first()
                            .is_some_and(|x| x.contains(PhysicalPageFlags::THP))
                        {
                            heads.push(addr);
                        }
                    }
                }
            }
        }
        addr += HUGE_BYTES;
    }
    heads
}
