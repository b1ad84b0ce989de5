//! Packets with an optional file descriptor over a `SOCK_SEQPACKET` Unix socket; used
//! by both the client and tierd's protocol server.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One received packet.
#[derive(Debug)]
pub struct Packet {
    pub len: usize,
    /// The packet was longer than the buffer (the rest is lost).
    pub truncated: bool,
    /// A descriptor passed with it, if any (extra ones are closed).
    pub fd: Option<OwnedFd>,
}

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
pub fn recv(sock: &impl AsRawFd, buf: &mut [u8]) -> nix::Result<Option<Packet>> {
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed `f` in our table for us; nothing
                // else owns it. Extra descriptors are dropped (closed) right away.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    if msg.bytes == 0 && !truncated && fd.is_none() {
        return Ok(None);
    }
    Ok(Some(Packet {
        len: msg.bytes,
        truncated,
        fd,
    }))
}
