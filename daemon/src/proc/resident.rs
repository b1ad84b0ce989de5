//! Which pages of a process are resident, in time and memory that follow what is
//! resident rather than the address space the process maps.
//!
//! GPU runtimes and allocators reserve terabytes of address space (`PROT_NONE`,
//! `MAP_NORESERVE`) and touch a few GiB of it. Everything tierd does per granule or per
//! page of a whole process (the placement scan, `tierctl migrate` without a range,
//! `tierctl placement`) starts from the runs found here, so a 16 TiB reservation costs
//! tierd nothing.
//!
//! The kernel does the walk: the `PAGEMAP_SCAN` ioctl on `/proc/PID/pagemap` (Linux 6.7,
//! `include/uapi/linux/fs.h`) walks the page tables, skips unpopulated ones a PMD or PUD
//! at a time, and returns runs of present pages with the categories asked for (here:
//! whether a run is PMD-mapped, i.e. transparent huge pages). No crate wraps this ioctl;
//! its two structs are mirrored below with their sizes asserted. Kernels without it
//! (ENOTTY/EINVAL) get the fallback: `/proc/PID/smaps` skips mappings with no resident
//! pages, and the pagemap entries (bit 63: present) of the others are read in bounded
//! chunks. Memory stays bounded either way; the fallback's time follows the size of the
//! mappings that hold anything.
//!
//! Called by the placement scan (`tiering/scan.rs`), the migration engine and the
//! control socket's `placement`; a read that races with the process mapping or
//! unmapping memory is as good as the next scan.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use tierd_api::AddrRange;

/// A run of present pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub range: AddrRange,
    /// Mapped by PMDs (transparent huge pages): one `move_pages` address per 2 MiB.
    pub huge: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ResidentError {
    #[error("no process {0}")]
    NoSuchProcess(i32),
    #[error("not permitted to read /proc/{0}/pagemap")]
    PermissionDenied(i32),
    #[error("/proc/{pid}/{file}: {source}")]
    Io {
        pid: i32,
        file: &'static str,
        source: std::io::Error,
    },
}

fn io_err(pid: i32, file: &'static str, e: std::io::Error) -> ResidentError {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => ResidentError::NoSuchProcess(pid),
        Some(libc::EPERM) | Some(libc::EACCES) => ResidentError::PermissionDenied(pid),
        _ => ResidentError::Io {
            pid,
            file,
            source: e,
        },
    }
}

// Page categories (`PAGE_IS_*` in include/uapi/linux/fs.h).
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
const PAGE_IS_HUGE: u64 = 1 << 6;

/// `struct page_region`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const _: () = assert!(std::mem::size_of::<PageRegion>() == 24);
const _: () = assert!(std::mem::size_of::<PmScanArg>() == 96);

/// `PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)`: direction read|write (3) in
/// bits 30-31, the struct's size in bits 16-29, type 'f' in bits 8-15, number 16.
const PAGEMAP_SCAN: u64 =
    (3 << 30) | ((std::mem::size_of::<PmScanArg>() as u64) << 16) | (0x66 << 8) | 16;

/// Runs returned per ioctl call; the walk resumes where it stopped.
const RUNS_PER_CALL: usize = 1024;

/// Appends `r` to `out`, merging it with the last run when they touch and agree.
fn push(out: &mut Vec<Run>, r: Run) {
    if let Some(last) = out.last_mut() {
        if last.range.end == r.range.start && last.huge == r.huge {
            last.range.end = r.range.end;
            return;
        }
    }
    out.push(r);
}

/// Present pages of `pid` inside `within` (sorted, non-overlapping ranges, such as
/// [`super::maps::migratable_ranges`] returns), as sorted runs. Zero-page mappings
/// (read faults of untouched anonymous memory) do not count: they have no node.
pub fn present_runs(pid: i32, within: &[AddrRange]) -> Result<Vec<Run>, ResidentError> {
    let f = File::open(format!("/proc/{pid}/pagemap")).map_err(|e| io_err(pid, "pagemap", e))?;
    match scan_ioctl(pid, &f, within) {
        Err(ResidentError::Io { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOTTY) | Some(libc::EINVAL)
            ) =>
        {
            scan_pagemap(pid, &f, within)
        }
        r => r,
    }
}

/// Bytes in `runs`.
pub fn bytes(runs: &[Run]) -> u64 {
    runs.iter().map(|r| r.range.end - r.range.start).sum()
}

fn scan_ioctl(pid: i32, f: &File, within: &[AddrRange]) -> Result<Vec<Run>, ResidentError> {
    let page = crate::migrate::page_size();
    let mut out = Vec::new();
    let mut buf = vec![PageRegion::default(); RUNS_PER_CALL];
    for r in within {
        let mut start = r.start / page * page;
        let end = r.end.div_ceil(page) * page;
        while start < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start,
                end,
                vec: buf.as_mut_ptr() as u64,
                vec_len: buf.len() as u64,
                category_inverted: PAGE_IS_PFNZERO,
                category_mask: PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_HUGE,
                ..Default::default()
            };
            // SAFETY: PAGEMAP_SCAN reads `arg` and writes `arg.walk_end` and at most
            // `vec_len` entries of `buf`, which outlives the call; the fd is open.
            let n = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                return Err(io_err(pid, "pagemap", std::io::Error::last_os_error()));
            }
            for reg in &buf[..n as usize] {
                push(
                    &mut out,
                    Run {
                        range: AddrRange {
                            start: reg.start,
                            end: reg.end,
                        },
                        huge: reg.categories & PAGE_IS_HUGE != 0,
                    },
                );
            }
            if arg.walk_end <= start {
                break; // no progress: the mapping went away under the walk
            }
            start = arg.walk_end;
        }
    }
    Ok(out)
}

/// Pagemap entries read per `pread` in the fallback: 512 KiB of buffer.
const ENTRIES_PER_READ: u64 = 64 << 10;
const PM_PRESENT: u64 = 1 << 63;

fn scan_pagemap(pid: i32, f: &File, within: &[AddrRange]) -> Result<Vec<Run>, ResidentError> {
    let page = crate::migrate::page_size();
    let proc = procfs::process::Process::new(pid).map_err(|_| ResidentError::NoSuchProcess(pid))?;
    let smaps = proc.smaps().map_err(|e| match e {
        procfs::ProcError::PermissionDenied(_) => ResidentError::PermissionDenied(pid),
        _ => ResidentError::NoSuchProcess(pid),
    })?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; (ENTRIES_PER_READ * 8) as usize];
    for m in smaps {
        if m.extension.map.get("Rss").copied().unwrap_or(0) == 0 {
            continue;
        }
        for w in within {
            let (s, e) = (m.address.0.max(w.start), m.address.1.min(w.end));
            let (mut idx, end) = (s / page, e.div_ceil(page));
            while idx < end {
                let n = (end - idx).min(ENTRIES_PER_READ);
                let b = &mut buf[..(n * 8) as usize];
                f.read_exact_at(b, idx * 8)
                    .map_err(|e| io_err(pid, "pagemap", e))?;
                for (i, c) in b.chunks_exact(8).enumerate() {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(c);
                    if u64::from_ne_bytes(x) & PM_PRESENT != 0 {
                        let a = (idx + i as u64) * page;
                        push(
                            &mut out,
                            Run {
                                range: AddrRange {
                                    start: a,
                                    end: a + page,
                                },
                                huge: false,
                            },
                        );
                    }
                }
                idx += n;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::NonNull;

    /// An anonymous private mapping of `len` bytes, unmapped on drop.
    struct Anon {
        ptr: NonNull<libc::c_void>,
        len: usize,
    }

    impl Anon {
        fn new(len: usize, prot: libc::c_int) -> Anon {
            // SAFETY: a fresh anonymous mapping; nothing else refers to it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED, "mmap {len} bytes");
            Anon {
                ptr: NonNull::new(p).unwrap(),
                len,
            }
        }
        fn range(&self) -> AddrRange {
            let start = self.ptr.as_ptr() as u64;
            AddrRange {
                start,
                end: start + self.len as u64,
            }
        }
        fn touch(&self, offset: usize) {
            // SAFETY: offset < len inside a readable, writable mapping we own.
            unsafe { *(self.ptr.as_ptr() as *mut u8).add(offset) = 1 };
        }
    }

    impl Drop for Anon {
        fn drop(&mut self) {
            // SAFETY: unmapping exactly the mapping created in new().
            unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
        }
    }

    #[test]
    fn the_ioctl_number_is_the_kernels() {
        assert_eq!(PAGEMAP_SCAN, 0xC060_6610);
    }

    type Scan = fn(i32, &File, &[AddrRange]) -> Result<Vec<Run>, ResidentError>;

    fn touched_runs(scan: Scan) {
        let page = crate::migrate::page_size() as usize;
        let m = Anon::new(64 * page, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: MADV_NOHUGEPAGE on our own mapping only changes how it is backed.
        unsafe { libc::madvise(m.ptr.as_ptr(), m.len, libc::MADV_NOHUGEPAGE) };
        for p in [0, 1, 2, 10, 63] {
            m.touch(p * page);
        }
        let pid = std::process::id() as i32;
        let f = File::open(format!("/proc/{pid}/pagemap")).unwrap();
        let runs = scan(pid, &f, &[m.range()]).unwrap();
        let base = m.range().start;
        let got: Vec<(u64, u64)> = runs
            .iter()
            .map(|r| {
                (
                    (r.range.start - base) / page as u64,
                    (r.range.end - base) / page as u64,
                )
            })
            .collect();
        assert_eq!(got, vec![(0, 3), (10, 11), (63, 64)]);
        assert!(runs.iter().all(|r| !r.huge));
    }

    #[test]
    fn the_ioctl_finds_exactly_the_touched_pages() {
        touched_runs(scan_ioctl);
    }

    #[test]
    fn the_fallback_finds_exactly_the_touched_pages() {
        touched_runs(scan_pagemap);
    }

    #[test]
    fn a_terabyte_reservation_holds_no_runs() {
        // 1 TiB of PROT_NONE address space beside 1 MiB of touched memory: the scan
        // reports the touched MiB and nothing of the reservation.
        let r = Anon::new(1 << 40, libc::PROT_NONE);
        let m = Anon::new(1 << 20, libc::PROT_READ | libc::PROT_WRITE);
        let page = crate::migrate::page_size() as usize;
        for off in (0..m.len).step_by(page) {
            m.touch(off);
        }
        let pid = std::process::id() as i32;
        let runs = present_runs(pid, &[r.range()]).unwrap();
        assert!(runs.is_empty(), "{runs:?}");
        let runs = present_runs(pid, &[m.range()]).unwrap();
        assert_eq!(bytes(&runs), 1 << 20);
    }

    #[test]
    fn a_read_of_untouched_memory_is_not_resident() {
        // A read fault maps the shared zero page: no node, nothing to move.
        let m = Anon::new(16 << 12, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: reading inside our own readable mapping.
        let v = unsafe { std::ptr::read_volatile(m.ptr.as_ptr() as *const u8) };
        assert_eq!(v, 0);
        let runs = present_runs(std::process::id() as i32, &[m.range()]).unwrap();
        assert!(runs.is_empty(), "{runs:?}");
    }

    #[test]
    fn a_missing_process_is_named() {
        assert!(matches!(
            present_runs(i32::MAX, &[]),
            Err(ResidentError::NoSuchProcess(_))
        ));
    }
}
