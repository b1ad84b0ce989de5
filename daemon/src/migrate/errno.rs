//! Names for per-page move_pages status codes, as reported in `failed_pages`.

/// `EBUSY` for -16, etc.; unknown codes as `E<n>`.
pub fn name(neg_errno: i32) -> String {
    let e = nix::errno::Errno::from_raw(-neg_errno);
    match e {
        nix::errno::Errno::UnknownErrno => format!("E{}", -neg_errno),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::name(-libc::EBUSY), "EBUSY");
        assert_eq!(super::name(-libc::ENOENT), "ENOENT");
        assert_eq!(super::name(-libc::EFAULT), "EFAULT");
        assert_eq!(super::name(-libc::ENOMEM), "ENOMEM");
    }
}
