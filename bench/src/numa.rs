//! NUMA placement of the calling process's own memory, by raw syscall: `move_pages(2)`
//! to query (nodes = NULL) or move pages, `mbind(2)` / `set_mempolicy(2)` to choose
//! where first touch allocates; [`query_pid`] queries another process's pages (the
//! `fastshare` sampler). No libnuma: the test VM's initramfs has none.

use std::io;

const MPOL_DEFAULT: libc::c_int = 0;
const MPOL_BIND: libc::c_int = 2;
const MPOL_MF_MOVE: libc::c_int = 1 << 1;
/// Bits in the one-word node masks we pass (the kernel reads `maxnode - 1` bits).
const MASK_BITS: libc::c_ulong = 64;

fn node_mask(node: u32) -> io::Result<libc::c_ulong> {
    if u64::from(node) >= MASK_BITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("node {node} is beyond the {MASK_BITS}-node mask"),
        ));
    }
    Ok(1 << node)
}

fn move_pages_raw(
    pid: libc::pid_t,
    pages: &[u64],
    nodes: Option<&[i32]>,
    status: &mut [i32],
) -> io::Result<()> {
    assert_eq!(pages.len(), status.len(), "move_pages: status length");
    if let Some(n) = nodes {
        assert_eq!(pages.len(), n.len(), "move_pages: nodes length");
    }
    if pages.is_empty() {
        return Ok(());
    }
    let nodes_ptr = nodes.map_or(std::ptr::null(), |n| n.as_ptr());
    let flags = if nodes.is_some() { MPOL_MF_MOVE } else { 0 };
    // SAFETY: pages, nodes (when given) and status each hold pages.len() elements of the
    // types move_pages expects on 64-bit Linux (void * as u64, int, int); the kernel only
    // reads pages/nodes and writes status within that length. pid 0 = this process; the
    // addresses are only looked up in pid's address space, never dereferenced here.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            pid as libc::c_long,
            pages.len() as libc::c_ulong,
            pages.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            flags as libc::c_long,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `status[i]` gets the node holding `pages[i]`, or a negative errno (`-ENOENT`: not
/// populated, `-EFAULT`: not mapped).
pub fn query(pages: &[u64], status: &mut [i32]) -> io::Result<()> {
    move_pages_raw(0, pages, None, status)
}

/// As [`query`], for addresses in process `pid` (needs the right to read its memory:
/// root, or the same user).
pub fn query_pid(pid: libc::pid_t, pages: &[u64], status: &mut [i32]) -> io::Result<()> {
    move_pages_raw(pid, pages, None, status)
}

/// Moves `pages` to `node` in batches of `batch` pages (as tierd's engine does).
/// `status[i]` gets the node afterwards or a negative errno. Returns how many pages
/// ended on `node`.
pub fn move_to(pages: &[u64], node: u32, batch: usize, status: &mut [i32]) -> io::Result<usize> {
    let batch = batch.max(1);
    let nodes = vec![node as i32; batch.min(pages.len())];
    for (p, s) in pages.chunks(batch).zip(status.chunks_mut(batch)) {
        move_pages_raw(0, p, Some(&nodes[..p.len()]), s)?;
    }
    Ok(status.iter().filter(|&&s| s == node as i32).count())
}

fn mbind(
    addr: *mut u8,
    len: usize,
    mode: libc::c_int,
    mask: Option<libc::c_ulong>,
) -> io::Result<()> {
    let mask_ptr = mask
        .as_ref()
        .map_or(std::ptr::null(), |m| m as *const libc::c_ulong);
    let maxnode = if mask.is_some() { MASK_BITS + 1 } else { 0 };
    // SAFETY: mbind only changes the memory policy of [addr, addr+len), which the caller
    // owns (a mapping of its own); the mask pointer is null or points at one
    // c_ulong, matching maxnode - 1 = 64 bits.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr as libc::c_ulong,
            len as libc::c_ulong,
            mode as libc::c_ulong,
            mask_ptr,
            maxnode,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds `[addr, addr+len)` to `node` (MPOL_BIND): pages faulted in from now on come
/// from that node.
pub fn bind_range(addr: *mut u8, len: usize, node: u32) -> io::Result<()> {
    mbind(addr, len, MPOL_BIND, Some(node_mask(node)?))
}

/// Resets the range's policy to MPOL_DEFAULT, so nothing pins its pages to a node and
/// any mover (kernel, DAMON, tierd) may migrate them.
pub fn reset_range(addr: *mut u8, len: usize) -> io::Result<()> {
    mbind(addr, len, MPOL_DEFAULT, None)
}

fn set_mempolicy(mode: libc::c_int, mask: Option<libc::c_ulong>) -> io::Result<()> {
    let mask_ptr = mask
        .as_ref()
        .map_or(std::ptr::null(), |m| m as *const libc::c_ulong);
    let maxnode = if mask.is_some() { MASK_BITS + 1 } else { 0 };
    // SAFETY: set_mempolicy changes only the calling thread's policy; the mask pointer is
    // null or points at one c_ulong (maxnode - 1 = 64 bits).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode as libc::c_ulong,
            mask_ptr,
            maxnode,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread allocates from `node` only (MPOL_BIND) until reset.
pub fn thread_bind(node: u32) -> io::Result<()> {
    set_mempolicy(MPOL_BIND, Some(node_mask(node)?))
}

/// The calling thread's policy back to MPOL_DEFAULT (local node first).
pub fn thread_default() -> io::Result<()> {
    set_mempolicy(MPOL_DEFAULT, None)
}

/// Pages per node in a `query` status array: `(on_node, elsewhere, not_present)`.
pub fn count_on(status: &[i32], node: u32) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for &s in status {
        if s == node as i32 {
            c.0 += 1;
        } else if s >= 0 {
            c.1 += 1;
        } else {
            c.2 += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_node() {
        assert_eq!(count_on(&[0, 1, 1, -2, 0], 1), (2, 2, 1));
    }

    #[test]
    fn node_mask_bounds() {
        assert_eq!(node_mask(1).unwrap(), 2);
        assert!(node_mask(64).is_err());
    }

    #[test]
    fn query_own_memory() {
        let v = vec![1u8; 3 * crate::PAGE];
        let pages: Vec<u64> = (0..3)
            .map(|i| v.as_ptr() as u64 + (i * crate::PAGE) as u64)
            .collect();
        let mut st = vec![-1; 3];
        query(&pages, &mut st).unwrap();
        assert!(st.iter().all(|&s| s >= 0), "{st:?}");
    }
}
