//! The real `move_pages(2)`: a thin, unsafe-free-at-the-edges wrapper of the syscall.

use super::{MoveError, Mover};
use nix::errno::Errno;

/// `move_pages(2)` with `MPOL_MF_MOVE` (pages mapped only by this process).
#[derive(Debug, Default, Clone, Copy)]
pub struct MovePages;

const MPOL_MF_MOVE: libc::c_int = 1 << 1;

fn call(
    pid: i32,
    pages: &[u64],
    nodes: Option<&[i32]>,
    status: &mut [i32],
) -> Result<(), MoveError> {
    assert_eq!(pages.len(), status.len(), "move_pages: status length");
    if let Some(n) = nodes {
        assert_eq!(pages.len(), n.len(), "move_pages: nodes length");
    }
    if pages.is_empty() {
        return Ok(());
    }
    let nodes_ptr = nodes.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: `pages`, `nodes` (when given) and `status` are valid for `pages.len()`
    // elements of the sizes the syscall expects (void* as u64 on 64-bit, int, int); the
    // kernel only reads pages/nodes and writes status within that length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            pid as libc::c_long,
            pages.len() as libc::c_ulong,
            pages.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            MPOL_MF_MOVE as libc::c_long,
        )
    };
    if rc >= 0 {
        // rc > 0 is the number of pages not migrated; their status says why.
        return Ok(());
    }
    Err(match Errno::last() {
        Errno::ESRCH => MoveError::NoSuchProcess(pid),
        Errno::EPERM | Errno::EACCES => MoveError::PermissionDenied(pid),
        Errno::ENODEV => MoveError::BadNode(nodes.and_then(|n| n.first().copied()).unwrap_or(-1)),
        errno => MoveError::Other { pid, errno },
    })
}

impl Mover for MovePages {
    fn move_pages(
        &self,
        pid: i32,
        pages: &[u64],
        nodes: &[i32],
        status: &mut [i32],
    ) -> Result<(), MoveError> {
        call(pid, pages, Some(nodes), status)
    }

    fn query(&self, pid: i32, pages: &[u64], status: &mut [i32]) -> Result<(), MoveError> {
        call(pid, pages, None, status)
    }
}
