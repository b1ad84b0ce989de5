//! A long-term pin by io_uring: part of memcheck's memory registered as fixed buffers
//! (`IORING_REGISTER_BUFFERS`, which pins the pages with `FOLL_LONGTERM` as RDMA and
//! GPU drivers do), and rewrites of that memory done by the kernel through the pin
//! (`IORING_OP_READ_FIXED` from a memfd into the buffer), the way a device writes.
//!
//! If a migration moved a pinned page anyway, the kernel's writes would land in the old
//! page and the process would read stale data: the check in `pattern` catches that.
//! Raw syscalls and `#[repr(C)]` mirrors of `<linux/io_uring.h>` (the kernel 6.x layout,
//! sizes asserted below), one submission at a time: memcheck needs nothing more, and a
//! test tool should not pull an io_uring crate into the workspace for one opcode.
//! Called by `main.rs` only when `--pin` is given.

use anyhow::{bail, Context};
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

const IORING_OFF_SQ_RING: u64 = 0;
const IORING_OFF_CQ_RING: u64 = 0x800_0000;
const IORING_OFF_SQES: u64 = 0x1000_0000;
const IORING_ENTER_GETEVENTS: libc::c_uint = 1;
const IORING_REGISTER_BUFFERS: libc::c_uint = 0;
const IORING_OP_READ_FIXED: u8 = 4;
/// Submission queue depth: one request in flight at a time.
const ENTRIES: u32 = 4;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqringOffsets,
    cq_off: CqringOffsets,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    rw_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad2: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

const _: () = assert!(std::mem::size_of::<Params>() == 120);
const _: () = assert!(std::mem::size_of::<Sqe>() == 64);
const _: () = assert!(std::mem::size_of::<Cqe>() == 16);

/// Memory `[base, base + len)` registered as io_uring fixed buffer 0, and a memfd the
/// kernel copies from into it.
pub struct PinnedBuffer {
    ring: File,
    sq: MmapRaw,
    cq: MmapRaw,
    sqes: MmapRaw,
    p: Params,
    src: File,
    base: u64,
    len: usize,
    seq: u64,
}

fn map(ring: &File, offset: u64, len: usize, what: &str) -> anyhow::Result<MmapRaw> {
    MmapOptions::new()
        .offset(offset)
        .len(len)
        .populate()
        .map_raw(ring)
        .with_context(|| format!("mmap of the io_uring {what}"))
}

impl PinnedBuffer {
    /// Sets up a ring and registers `[base, base + len)` (at most 1 GiB, mapped for as
    /// long as the returned value lives) as its fixed buffer 0. An error here means the
    /// kernel offers no such pin (no io_uring, `io_uring_disabled`, ...).
    pub fn register(base: *mut u8, len: usize) -> anyhow::Result<PinnedBuffer> {
        let mut p = Params::default();
        // SAFETY: io_uring_setup reads and writes one io_uring_params, which `p` is
        // (layout mirrored and size-asserted above).
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, ENTRIES, &mut p as *mut Params) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("io_uring_setup");
        }
        // SAFETY: a fresh fd returned by io_uring_setup, owned by nobody else.
        let ring = unsafe { File::from_raw_fd(fd as i32) };
        let sq = map(
            &ring,
            IORING_OFF_SQ_RING,
            p.sq_off.array as usize + p.sq_entries as usize * 4,
            "submission ring",
        )?;
        let cq = map(
            &ring,
            IORING_OFF_CQ_RING,
            p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>(),
            "completion ring",
        )?;
        let sqes = map(
            &ring,
            IORING_OFF_SQES,
            p.sq_entries as usize * std::mem::size_of::<Sqe>(),
            "submission entries",
        )?;
        let iov = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        // SAFETY: one iovec describing memory the caller keeps mapped while this lives;
        // the kernel pins its pages and reads nothing else.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring.as_raw_fd(),
                IORING_REGISTER_BUFFERS,
                &iov as *const libc::iovec,
                1 as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .context(format!("IORING_REGISTER_BUFFERS of {len} bytes"));
        }
        // SAFETY: memfd_create with a NUL-terminated name; the fd is checked below.
        let src = unsafe { libc::memfd_create(c"memcheck-pin-src".as_ptr(), libc::MFD_CLOEXEC) };
        if src < 0 {
            return Err(std::io::Error::last_os_error()).context("memfd_create");
        }
        Ok(PinnedBuffer {
            ring,
            sq,
            cq,
            sqes,
            p,
            // SAFETY: a fresh fd from memfd_create, owned by nobody else.
            src: unsafe { File::from_raw_fd(src) },
            base: base as u64,
            len,
            seq: 0,
        })
    }

    pub fn contains(&self, addr: u64, len: usize) -> bool {
        addr >= self.base && addr + len as u64 <= self.base + self.len as u64
    }

    fn u32_at(map: &MmapRaw, off: u32) -> &AtomicU32 {
        // SAFETY: `off` is one of the ring offsets the kernel gave, 4-aligned and inside
        // the mapping, which lives as long as `map`; the kernel updates these words
        // concurrently, hence atomics.
        unsafe { &*(map.as_mut_ptr().add(off as usize) as *const AtomicU32) }
    }

    /// Has the kernel copy `data` into `[dst, dst + data.len())` of the pinned buffer
    /// (through the pin, not through the process's page tables) and waits for it.
    pub fn write(&mut self, dst: u64, data: &[u8]) -> anyhow::Result<()> {
        if !self.contains(dst, data.len()) {
            bail!("{dst:#x}+{} is outside the pinned buffer", data.len());
        }
        self.src
            .write_all_at(data, 0)
            .context("writing the pin's source memfd")?;
        self.seq += 1;
        let sqe = Sqe {
            opcode: IORING_OP_READ_FIXED,
            fd: self.src.as_raw_fd(),
            off: 0,
            addr: dst,
            len: data.len() as u32,
            user_data: self.seq,
            buf_index: 0,
            ..Sqe::default()
        };
        let so = self.p.sq_off;
        let tail = Self::u32_at(&self.sq, so.tail).load(Ordering::Acquire);
        let mask = Self::u32_at(&self.sq, so.ring_mask).load(Ordering::Relaxed);
        let slot = tail & mask;
        // SAFETY: `slot` < sq_entries, so the entry and the array element are inside
        // their mappings; the kernel reads them only after the tail store below.
        unsafe {
            (self.sqes.as_mut_ptr() as *mut Sqe)
                .add(slot as usize)
                .write(sqe);
            (self.sq.as_mut_ptr().add(so.array as usize) as *mut u32)
                .add(slot as usize)
                .write(slot);
        }
        Self::u32_at(&self.sq, so.tail).store(tail.wrapping_add(1), Ordering::Release);
        // SAFETY: io_uring_enter on our ring: submit 1, wait for 1 completion; no sigset.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.ring.as_raw_fd(),
                1 as libc::c_uint,
                1 as libc::c_uint,
                IORING_ENTER_GETEVENTS,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("io_uring_enter");
        }
        let co = self.p.cq_off;
        let head = Self::u32_at(&self.cq, co.head).load(Ordering::Relaxed);
        let ctail = Self::u32_at(&self.cq, co.tail).load(Ordering::Acquire);
        if head == ctail {
            bail!("io_uring_enter returned without a completion");
        }
        let cmask = Self::u32_at(&self.cq, co.ring_mask).load(Ordering::Relaxed);
        // SAFETY: head != tail, so the entry at head & mask is a completion the kernel
        // wrote (published by the tail load above), inside the mapping.
        let cqe = unsafe {
            (self.cq.as_mut_ptr().add(co.cqes as usize) as *const Cqe)
                .add((head & cmask) as usize)
                .read()
        };
        Self::u32_at(&self.cq, co.head).store(head.wrapping_add(1), Ordering::Release);
        if cqe.user_data != self.seq {
            bail!("completion {} for request {}", cqe.user_data, self.seq);
        }
        if cqe.res < 0 {
            return Err(std::io::Error::from_raw_os_error(-cqe.res)).context("READ_FIXED");
        }
        if cqe.res as usize != data.len() {
            bail!("READ_FIXED copied {} of {} bytes", cqe.res, data.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs where io_uring is allowed (skips, saying so, where it is not).
    #[test]
    fn kernel_writes_land_in_the_registered_buffer() {
        let mut mem = memmap2::MmapMut::map_anon(64 << 10).unwrap();
        mem.fill(0);
        let mut pin = match PinnedBuffer::register(mem.as_mut_ptr(), mem.len()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipped: no io_uring here: {e:#}");
                return;
            }
        };
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
        let dst = mem.as_ptr() as u64 + 8192;
        pin.write(dst, &data).unwrap();
        assert_eq!(&mem[8192..8192 + 4096], &data[..]);
        assert!(mem[..8192].iter().all(|&b| b == 0));
        assert!(pin.write(mem.as_ptr() as u64 + (64 << 10), &data).is_err());
        drop(pin);
    }
}
