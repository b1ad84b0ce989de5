//! The unit of the protocol's page counts (`promoted_pages`, `moved_pages`, ...): base
//! pages of the host the daemon runs on. A client on the same host (the control socket
//! is a Unix socket) turns them into bytes with [`page_size`]; the daemon uses the same
//! function for its own byte figures.

/// Base page size of the running kernel, in bytes (4096 if the kernel will not say).
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_a_power_of_two_of_at_least_4_kib() {
        let p = super::page_size();
        assert!(p >= 4096 && p.is_power_of_two(), "page size {p}");
    }
}
