//! Packets with an optional file descriptor over a `SOCK_SEQPACKET` Unix socket; used
//! by both the client and tierd's protocol server.

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One received packet.
#[derive(Debug)]
pub struct Packet {
    pub len: usize,
    /// The packet was longer than the buffer (the rest is lost).
    pub truncated: bool,
    /// A descriptor passed with it, if any (extra ones are closed).
    pub fd: Option<OwnedFd>,
    /// Descriptors were sent with it that this process could not take (`MSG_CTRUNC`):
    /// it is at its `RLIMIT_NOFILE`. The kernel closed them.
    pub fds_lost: bool,
}

/// The most descriptors one message can carry (the kernel's `SCM_MAX_FD`): with room
/// for all of them, the kernel only drops descriptors the receiver cannot take.
const MAX_FDS: usize = 253;

/// Sends `buf` as one packet, with `fd` attached via `SCM_RIGHTS` when given.
pub fn send(sock: &impl AsRawFd, buf: &[u8], fd: Option<RawFd>) -> nix::Result<()> {
    let iov = [IoSlice::new(buf)];
    let fds;
    let cmsgs: Vec<ControlMessage> = match fd {
        Some(f) => {
            fds = [f];
            vec![ControlMessage::ScmRights(&fds)]
        }
        None => Vec::new(),
    };
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if n != buf.len() {
        return Err(nix::errno::Errno::EMSGSIZE);
    }
    Ok(())
}

/// Receives one packet into `buf`. `Ok(None)`: the peer closed the connection.
///
/// Every descriptor that arrives is owned at once: the first is returned, the others
/// are closed, so a peer attaching descriptors nobody asked for leaks none. `libc`
/// rather than nix's `recvmsg`: nix refuses to read the control messages of a
/// truncated (`MSG_CTRUNC`) message, and the descriptors the kernel did install before
/// it ran out would be left open.
pub fn recv(sock: &impl AsRawFd, buf: &mut [u8]) -> nix::Result<Option<Packet>> {
    // u64 words: aligned as a cmsghdr must be.
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = control.len() * 8;
    // SAFETY: `hdr` points at `iov` (our `buf`) and `control`, both live and of the
    // lengths given, for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(nix::errno::Errno::last());
    }
    let mut fd = None;
    // SAFETY: `hdr` is the header recvmsg filled; CMSG_FIRSTHDR/NXTHDR stay within
    // `msg_controllen` bytes of `control`.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&hdr) };
    while !c.is_null() {
        // SAFETY: `c` is a complete cmsghdr inside `control` (CMSG_NXTHDR checks it).
        let (level, kind, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: as above; CMSG_LEN(0) is the header's size.
            let (data, head) = unsafe { (libc::CMSG_DATA(c), libc::CMSG_LEN(0) as usize) };
            // `cmsg_len` is a size_t on glibc, a socklen_t on musl.
            #[allow(clippy::unnecessary_cast)]
            let count = (len as usize).saturating_sub(head) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: `count` descriptors follow the header inside `control`
                // (unaligned reads: CMSG_DATA need not be aligned for RawFd).
                let raw = unsafe { data.cast::<RawFd>().add(i).read_unaligned() };
                // SAFETY: the kernel just installed `raw` in our table for us; nothing
                // else owns it. Extra descriptors are dropped (closed) right away.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&hdr, c) };
    }
    let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
    let fds_lost = hdr.msg_flags & libc::MSG_CTRUNC != 0;
    let len = n as usize;
    if len == 0 && !truncated && fd.is_none() && !fds_lost {
        return Ok(None);
    }
    Ok(Some(Packet {
        len,
        truncated,
        fd,
        fds_lost,
    }))
}
