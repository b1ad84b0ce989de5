//! The C API of `clients/c/include/tierd.h`, exported from `libtierd.so` / `libtierd.a`.
//!
//! Thin wrappers over [`Client`]: every function returns a negative errno on failure
//! (or NULL with `errno` set, for `tierd_connect`) and never panics across the FFI
//! boundary (a panic is caught and reported as `-EIO`). They are `unsafe` because C
//! passes raw pointers: a client pointer from `tierd_connect` not yet closed, arrays of
//! the stated length, NUL-terminated strings; NULL is checked and refused with -EINVAL. Names and behaviour of the
//! issue's seven functions are fixed; the others are additions (`docs/protocol.md`).

use crate::client::{Client, ClientError};
use crate::layout::HintKind;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::IntoRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Opaque to C.
pub struct TierdClient(Client);

/// Counters of a region (`tierd_region_stats` in C).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct TierdRegionStats {
    pub state: u32,
    pub _pad: u32,
    pub published_entries: u64,
    pub applied_entries: u64,
    pub applied_blocks: u64,
    pub rejected_entries: u64,
    pub dropped_entries: u64,
    pub dropped_blocks: u64,
    pub deadline_missed: u64,
    pub promoted_blocks: u64,
    pub placement_gen: u64,
}

const _: () = assert!(std::mem::size_of::<TierdRegionStats>() == 80);

fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(-libc::EIO)
}

fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn client<'a>(c: *mut TierdClient) -> Result<&'a Client, c_int> {
    // SAFETY: the caller passes NULL or a pointer from tierd_connect not yet closed.
    unsafe { c.as_ref() }.map(|c| &c.0).ok_or(-libc::EINVAL)
}

/// `blocks[0..n]`, or EINVAL for a NULL pointer with n > 0.
fn blocks<'a>(p: *const u64, n: usize) -> Result<&'a [u64], c_int> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: the caller promises `p` points to `n` readable u64s.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// `f` on the client and `blocks[0..n]` (panics caught), or the argument error.
fn with_blocks(
    c: *mut TierdClient,
    p: *const u64,
    n: usize,
    f: impl FnOnce(&Client, &[u64]) -> c_int,
) -> c_int {
    guard(|| match (client(c), blocks(p, n)) {
        (Ok(c), Ok(b)) => f(c, b),
        (Err(e), _) | (_, Err(e)) => e,
    })
}

fn clamp(v: u64) -> c_int {
    v.min(c_int::MAX as u64) as c_int
}

fn neg(e: ClientError) -> c_int {
    -e.errno()
}

/// Connects to tierd (NULL: `$TIERD_CLIENT_SOCKET` or `/run/tierd/client.sock`).
/// Returns NULL with errno set on failure.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_connect(socket_path: *const c_char) -> *mut TierdClient {
    let r = catch_unwind(|| {
        let path = if socket_path.is_null() {
            None
        } else {
            // SAFETY: a non-NULL path is a NUL-terminated C string (the API contract).
            let s = unsafe { CStr::from_ptr(socket_path) };
            Some(Path::new(std::ffi::OsStr::new(
                std::str::from_utf8(s.to_bytes()).map_err(|_| libc::EINVAL)?,
            )))
        };
        Client::connect(path).map_err(|e| e.errno())
    });
    match r {
        Ok(Ok(c)) => Box::into_raw(Box::new(TierdClient(c))),
        Ok(Err(e)) => {
            set_errno(e);
            std::ptr::null_mut()
        }
        Err(_) => {
            set_errno(libc::EIO);
            std::ptr::null_mut()
        }
    }
}

/// Registers `[base, base + len)` of the caller's memory; `*region` gets its id.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_register(
    c: *mut TierdClient,
    base: *mut c_void,
    len: usize,
    block_size: usize,
    region: *mut u32,
) -> c_int {
    guard(|| {
        let c = match client(c) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if region.is_null() {
            return -libc::EINVAL;
        }
        match c.register(base as u64, len as u64, block_size as u64) {
            Ok(id) => {
                // SAFETY: checked non-NULL; the caller passes a writable u32.
                unsafe { *region = id };
                0
            }
            Err(e) => neg(e),
        }
    })
}

/// Sends a hint for `blocks[0..n]`; returns the number of blocks accepted (fewer than
/// `n` when the ring was full: the rest were dropped and counted).
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_hint(
    c: *mut TierdClient,
    region: u32,
    kind: c_int,
    blocks_ptr: *const u64,
    n: usize,
) -> c_int {
    with_blocks(c, blocks_ptr, n, |c, b| {
        let Some(kind) = u16::try_from(kind).ok().and_then(HintKind::from_raw) else {
            return -libc::EINVAL;
        };
        c.hint(region, kind, b).map_or_else(neg, clamp)
    })
}

/// PREFETCH `blocks[0..n]`, needed within `deadline_ms`; returns blocks accepted.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_hint_prefetch(
    c: *mut TierdClient,
    region: u32,
    blocks_ptr: *const u64,
    n: usize,
    deadline_ms: u32,
) -> c_int {
    with_blocks(c, blocks_ptr, n, |c, b| {
        c.hint_prefetch(region, b, deadline_ms)
            .map_or_else(neg, clamp)
    })
}

/// A hint for blocks `[first, first + n)` in one ring entry; returns blocks accepted.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_hint_range(
    c: *mut TierdClient,
    region: u32,
    kind: c_int,
    first: u64,
    n: u32,
    deadline_ms: u32,
) -> c_int {
    guard(|| {
        let c = match client(c) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let Some(kind) = u16::try_from(kind).ok().and_then(HintKind::from_raw) else {
            return -libc::EINVAL;
        };
        c.hint_range(region, kind, first, n, deadline_ms)
            .map_or_else(neg, clamp)
    })
}

/// Node holding `block`, or a negative errno.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_placement(c: *mut TierdClient, region: u32, block: u64) -> c_int {
    guard(|| match client(c) {
        Ok(c) => c.placement(region, block),
        Err(e) => e,
    })
}

/// Generation of the region's placement table (bumped on every update), or -errno.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_placement_generation(c: *mut TierdClient, region: u32) -> i64 {
    match client(c).and_then(|c| c.region(region).map_err(neg)) {
        Ok(r) => r.placement_generation().min(i64::MAX as u64) as i64,
        Err(e) => e as i64,
    }
}

/// Opens the named shared pool of `len` bytes; `*fd` gets a descriptor to mmap.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_pool_open(
    c: *mut TierdClient,
    name: *const c_char,
    len: usize,
    fd: *mut c_int,
) -> c_int {
    // SAFETY: the same contract.
    unsafe { tierd_pool_open_flags(c, name, len, 0, fd) }
}

/// `tierd_pool_open` with `TIERD_POOL_SHARED` / `TIERD_POOL_READ_ONLY` flags. Returns 0
/// for a read-write descriptor, 1 for a read-only one, or a negative errno.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_pool_open_flags(
    c: *mut TierdClient,
    name: *const c_char,
    len: usize,
    flags: u32,
    fd: *mut c_int,
) -> c_int {
    guard(|| {
        let c = match client(c) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if name.is_null() || fd.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL NUL-terminated string (the API contract).
        let Ok(name) = unsafe { CStr::from_ptr(name) }.to_str() else {
            return -libc::EINVAL;
        };
        match c.pool_open_flags(name, len as u64, flags) {
            Ok(p) => {
                let ro = p.read_only as c_int;
                // SAFETY: checked non-NULL; the caller now owns the descriptor.
                unsafe { *fd = p.fd.into_raw_fd() };
                ro
            }
            Err(e) => neg(e),
        }
    })
}

/// Closes the connection: tierd forgets its regions; pools stay mapped where mapped.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_close(c: *mut TierdClient) {
    if !c.is_null() {
        // SAFETY: a pointer from tierd_connect, closed once (the API contract).
        drop(unsafe { Box::from_raw(c) });
    }
}

/// Unregisters a region.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_unregister(c: *mut TierdClient, region: u32) -> c_int {
    guard(|| match client(c) {
        Ok(c) => c.unregister(region).map_or_else(neg, |_| 0),
        Err(e) => e,
    })
}

/// Placement at allocation: `*node` gets the node a new allocation of `len` bytes on
/// `tier` (0 fastest, -1 slowest) should be bound to before it is pinned.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_advise_node(
    c: *mut TierdClient,
    len: usize,
    tier: c_int,
    node: *mut c_int,
) -> c_int {
    guard(|| {
        let c = match client(c) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if node.is_null() {
            return -libc::EINVAL;
        }
        match c.advise(len as u64, tier) {
            Ok(a) => {
                // SAFETY: checked non-NULL.
                unsafe { *node = a.node };
                0
            }
            Err(e) => neg(e),
        }
    })
}

/// Binds `[addr, addr + len)` of the caller's memory to `node` (mbind MPOL_BIND,
/// moving what is already there): the client side of placement at allocation.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_bind_node(addr: *mut c_void, len: usize, node: c_int) -> c_int {
    if !(0..1024).contains(&node) {
        return -libc::EINVAL;
    }
    let mut mask = [0u64; 16];
    mask[node as usize / 64] |= 1 << (node % 64);
    const MPOL_BIND: libc::c_long = 2;
    const MPOL_MF_MOVE: libc::c_long = 1 << 1;
    // SAFETY: mbind reads `mask` (1024 bits, passed as maxnode + 1) and acts on the
    // caller's own mapping; it fails with EFAULT/EINVAL on a bad range.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len,
            MPOL_BIND,
            mask.as_ptr(),
            (mask.len() * 64 + 1) as libc::c_ulong,
            MPOL_MF_MOVE,
        )
    };
    if rc < 0 {
        -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        0
    }
}

/// Relocation requests: fills up to `max` (block, node) pairs tierd wants copied by the
/// client (it could not move them, e.g. pinned); returns how many.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_relocations(
    c: *mut TierdClient,
    region: u32,
    blocks_out: *mut u64,
    nodes_out: *mut i32,
    max: usize,
) -> c_int {
    guard(|| {
        let r = match client(c).and_then(|c| c.region(region).map_err(neg)) {
            Ok(r) => r,
            Err(e) => return e,
        };
        if max > 0 && (blocks_out.is_null() || nodes_out.is_null()) {
            return -libc::EINVAL;
        }
        let mut v = Vec::new();
        r.relocations(&mut v);
        let n = v.len().min(max);
        for (i, (b, node)) in v.into_iter().take(n).enumerate() {
            // SAFETY: i < max and the caller passes arrays of `max` elements.
            unsafe {
                *blocks_out.add(i) = b;
                *nodes_out.add(i) = node;
            }
        }
        clamp(n as u64)
    })
}

/// Acknowledges relocation of `blocks[0..n]` (copied away; tierd treats them as free).
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_relocated(
    c: *mut TierdClient,
    region: u32,
    blocks_ptr: *const u64,
    n: usize,
) -> c_int {
    with_blocks(c, blocks_ptr, n, |c, b| {
        c.relocated(region, b).map_or_else(neg, clamp)
    })
}

/// Registers `[base, base + len)` as a pinned region laid out as `nnodes` runs of
/// `slots[i]` blocks on `nodes[i]`, in address order; see `Client::register_pinned`.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_register_pinned(
    c: *mut TierdClient,
    base: *mut c_void,
    len: usize,
    block_size: usize,
    nodes: *const i32,
    slots: *const u32,
    nnodes: usize,
    region: *mut u32,
) -> c_int {
    guard(|| {
        let c = match client(c) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if region.is_null() || nodes.is_null() || slots.is_null() || nnodes == 0 {
            return -libc::EINVAL;
        }
        if nnodes > crate::wire::MAX_PINNED_NODES {
            return -libc::E2BIG;
        }
        // SAFETY: both arrays hold `nnodes` elements (tierd.h); checked non-NULL.
        let (n, s) = unsafe {
            (
                std::slice::from_raw_parts(nodes, nnodes),
                std::slice::from_raw_parts(slots, nnodes),
            )
        };
        let layout: Vec<(i32, u32)> = n.iter().copied().zip(s.iter().copied()).collect();
        match c.register_pinned(base as u64, len as u64, block_size as u64, &layout) {
            Ok(id) => {
                // SAFETY: checked non-NULL; the caller passes a writable u32.
                unsafe { *region = id };
                0
            }
            Err(e) => neg(e),
        }
    })
}

/// Acknowledges a pinned region's relocation request: blocks `[from, from + n)` now
/// live in `[to, to + n)`; see `Client::moved`. Returns the blocks accepted.
/// # Safety
/// `c` must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_moved(
    c: *mut TierdClient,
    region: u32,
    from: u64,
    to: u64,
    n: u32,
) -> c_int {
    guard(|| match client(c) {
        Ok(c) => c.moved(region, from, to, n).map_or_else(neg, clamp),
        Err(e) => e,
    })
}

/// Declines the relocation requests of `blocks[0..n]`; see `Client::declined`.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_declined(
    c: *mut TierdClient,
    region: u32,
    blocks_ptr: *const u64,
    n: usize,
) -> c_int {
    with_blocks(c, blocks_ptr, n, |c, b| {
        c.declined(region, b).map_or_else(neg, clamp)
    })
}

/// Drops the memory behind `blocks` (contents dead, about to be rewritten) so their new
/// contents are allocated on the fast tier; see `Client::recycle`. Returns 0.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents; the blocks' contents
/// must be dead and not pinned for device DMA.
#[no_mangle]
pub unsafe extern "C" fn tierd_recycle(
    c: *mut TierdClient,
    region: u32,
    blocks_ptr: *const u64,
    n: usize,
) -> c_int {
    with_blocks(c, blocks_ptr, n, |c, b| {
        // SAFETY: the caller vouches the blocks are dead and unpinned (tierd.h).
        unsafe { c.recycle(region, b) }.map_or_else(neg, |_| 0)
    })
}

/// Copies the region's counters (drops, applied, rejected, ...) into `*out`.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_stats(
    c: *mut TierdClient,
    region: u32,
    out: *mut TierdRegionStats,
) -> c_int {
    guard(|| {
        let r = match client(c).and_then(|c| c.region(region).map_err(neg)) {
            Ok(r) => r,
            Err(e) => return e,
        };
        if out.is_null() {
            return -libc::EINVAL;
        }
        let s = r.stats();
        let v = TierdRegionStats {
            state: s.state,
            _pad: 0,
            published_entries: s.published_entries,
            applied_entries: s.applied_entries,
            applied_blocks: s.applied_blocks,
            rejected_entries: s.rejected_entries,
            dropped_entries: s.dropped_entries,
            dropped_blocks: s.dropped_blocks,
            deadline_missed: s.deadline_missed,
            promoted_blocks: s.promoted_blocks,
            placement_gen: s.placement_gen,
        };
        // SAFETY: checked non-NULL; the caller passes a writable struct.
        unsafe { *out = v };
        0
    })
}

/// 1 while connected to tierd, 0 while it is away (the library reconnects by itself).
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_is_connected(c: *mut TierdClient) -> c_int {
    guard(|| match client(c) {
        Ok(c) => c_int::from(c.is_connected()),
        Err(e) => e,
    })
}

/// Successful reconnections so far.
/// # Safety
/// Pointer arguments must be NULL or valid as `tierd.h` documents.
#[no_mangle]
pub unsafe extern "C" fn tierd_reconnects(c: *mut TierdClient) -> i64 {
    catch_unwind(AssertUnwindSafe(|| match client(c) {
        Ok(c) => c.reconnects().min(i64::MAX as u64) as i64,
        Err(e) => e as i64,
    }))
    .unwrap_or(-libc::EIO as i64)
}
