//! A stand-in for GPU pinning in tests: buffers registered with an io_uring as fixed
//! buffers (`IORING_REGISTER_BUFFERS`) are pinned long-term (FOLL_LONGTERM), as
//! `cudaHostRegister` pins them, so `move_pages(2)` leaves them where they are.
//!
//! Two raw syscalls (`io_uring_setup`, `io_uring_register`) instead of the `io-uring`
//! crate: registering buffers needs no submission or completion queue, the crate is not
//! in the workspace's lock file, and the initramfs has no liburing. The ring is never
//! used for I/O; dropping it (closing its fd) unpins the buffers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `IORING_REGISTER_BUFFERS` (include/uapi/linux/io_uring.h).
const IORING_REGISTER_BUFFERS: libc::c_uint = 0;
/// Size of `struct io_uring_params` (the kernel fills it; we only need it zeroed).
const PARAMS_BYTES: usize = 120;
/// The kernel's limit on one registered buffer.
const MAX_BUFFER: usize = 1 << 30;

/// An io_uring holding buffers pinned as fixed buffers.
pub struct PinnedBuffers {
    ring: OwnedFd,
    bytes: usize,
}

impl PinnedBuffers {
    /// Pins `[addr, addr + len)` of this process (split in buffers of at most 1 GiB).
    /// Needs `RLIMIT_MEMLOCK` room for `len` unless the caller has `CAP_IPC_LOCK`.
    pub fn pin(addr: u64, len: usize) -> io::Result<PinnedBuffers> {
        let mut params = [0u8; PARAMS_BYTES];
        // SAFETY: io_uring_setup reads and writes `params`, a zeroed io_uring_params of
        // the size the kernel expects; it returns a new fd we own, or -1.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let ring = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let iov: Vec<libc::iovec> = (0..len)
            .step_by(MAX_BUFFER)
            .map(|off| libc::iovec {
                iov_base: (addr as usize + off) as *mut libc::c_void,
                iov_len: (len - off).min(MAX_BUFFER),
            })
            .collect();
        // SAFETY: `iov` holds iov.len() valid iovecs describing memory of this process;
        // the kernel pins those pages and keeps no pointer to `iov` itself.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring.as_raw_fd(),
                IORING_REGISTER_BUFFERS,
                iov.as_ptr(),
                iov.len() as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PinnedBuffers { ring, bytes: len })
    }

    /// Bytes pinned.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ring's fd (closing it unpins).
    pub fn fd(&self) -> i32 {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_buffers_refuse_to_move() {
        let mut m = memmap2::MmapMut::map_anon(64 * crate::PAGE).unwrap();
        m.fill(7);
        let base = m.as_ptr() as u64;
        let pinned = match PinnedBuffers::pin(base, m.len()) {
            Ok(p) => p,
            // A sandbox without io_uring (seccomp, io_uring_disabled): nothing to show.
            Err(e) => {
                eprintln!("io_uring unavailable here: {e}");
                return;
            }
        };
        assert_eq!(pinned.bytes(), m.len());
        // Moving to the node it is on is always a no-op; what can be shown on any
        // host is that the pages stay present and the contents intact.
        let pages: Vec<u64> = (0..64).map(|i| base + i * crate::PAGE as u64).collect();
        let mut status = vec![0i32; 64];
        crate::numa::query(&pages, &mut status).unwrap();
        assert!(status.iter().all(|&s| s >= 0), "{status:?}");
        assert!(m.iter().all(|&b| b == 7));
    }
}
