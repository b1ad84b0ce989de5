//! Messages on the client socket: a versioned little-endian binary framing, one message
//! per `SOCK_SEQPACKET` packet.
//!
//! Why binary and not JSON lines (as the control socket): replies carry file descriptors
//! (`SCM_RIGHTS`), which must travel with exactly one message; a seqpacket socket keeps
//! message boundaries, so a message *is* a packet and fds cannot be split from it. The
//! messages are a handful of fixed-size integer records that C and Python (`struct`)
//! encode in a line, and the decoder below is small enough to fuzz exhaustively.
//!
//! ```text
//! 0  magic   "TDMP"
//! 4  version u16 (1)
//! 6  type    u16 (Request/Reply code)
//! 8  seq     u32 (echoed in the reply)
//! 12 len     u32 payload bytes; the packet is exactly 16 + len bytes
//! 16 payload
//! ```
//! Packets longer than [`MAX_MESSAGE`] are refused. Payloads: `docs/protocol.md`.

pub const MAGIC: [u8; 4] = *b"TDMP";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
/// Largest packet either side sends or accepts.
pub const MAX_MESSAGE: usize = 512;
/// Longest pool name, bytes.
pub const MAX_POOL_NAME: usize = 64;
/// Longest error message in a reply, bytes.
pub const MAX_ERROR_MESSAGE: usize = 256;

/// Most nodes a REGISTER_PINNED layout may name.
pub const MAX_PINNED_NODES: usize = 32;

/// POOL_OPEN flags (the former reserved word: 0 is the original behaviour).
pub mod pool_flags {
    /// The pool lives in the namespace shared by all users, not in the caller's own
    /// (creating one needs root or a group of `client.allowed_groups`).
    pub const SHARED: u32 = 1;
    /// Hand out a read-only descriptor (every opener but the pool's creator gets one).
    pub const READ_ONLY: u32 = 2;
    pub const ALL: u32 = SHARED | READ_ONLY;
}

mod code {
    pub const REGISTER: u16 = 1;
    pub const UNREGISTER: u16 = 2;
    pub const POOL_OPEN: u16 = 3;
    pub const ADVISE: u16 = 4;
    pub const REGISTER_PINNED: u16 = 5;
    pub const REGISTERED: u16 = 0x81;
    pub const DONE: u16 = 0x82;
    pub const POOL: u16 = 0x83;
    pub const ADVICE: u16 = 0x84;
    pub const ERROR: u16 = 0xff;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated: {got} bytes, need {need}")]
    Truncated { got: usize, need: usize },
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLong(usize),
    #[error("bad magic {0:02x?}")]
    Magic([u8; 4]),
    #[error("protocol version {0}, this side speaks {VERSION}")]
    Version(u16),
    #[error("unknown message type {0:#x}")]
    Type(u16),
    #[error("payload length {declared} but {actual} bytes follow the header")]
    Length { declared: u32, actual: usize },
    #[error("pool name must be 1-{MAX_POOL_NAME} bytes of [A-Za-z0-9._-]")]
    PoolName,
    #[error("error message is not UTF-8")]
    Utf8,
    #[error("reserved field is not zero")]
    Reserved,
    #[error("pinned layout must name 1-{MAX_PINNED_NODES} nodes")]
    PinnedNodes,
}

/// Client → tierd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Register `[base, base + len)` of the caller's own memory as blocks of `block_size`.
    Register {
        base: u64,
        len: u64,
        block_size: u64,
    },
    Unregister {
        region: u32,
    },
    /// Open (create on first use) the named pool of `bytes`; `flags` from
    /// [`pool_flags`].
    PoolOpen {
        name: String,
        bytes: u64,
        flags: u32,
    },
    /// Which node should a new allocation of `bytes` on `tier` use (0 fastest, -1 slowest)?
    Advise {
        bytes: u64,
        tier: i32,
    },
    /// Register `[base, base + len)` as a *pinned* region (its pages cannot be moved by
    /// `move_pages`, e.g. `cudaHostRegister`ed): `slots` lists `(node, blocks)` in address
    /// order, the first `slots[0].1` blocks on `slots[0].0` and so on; the counts add up
    /// to `len / block_size`. tierd never moves its pages: it asks the client to.
    RegisterPinned {
        base: u64,
        len: u64,
        block_size: u64,
        slots: Vec<(i32, u32)>,
    },
}

impl Request {
    /// The request's name in errors (`register`, `pool_open`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Register { .. } => "register",
            Request::Unregister { .. } => "unregister",
            Request::PoolOpen { .. } => "pool_open",
            Request::Advise { .. } => "advise",
            Request::RegisterPinned { .. } => "register_pinned",
        }
    }
}

/// tierd → client. `Registered` and `Pool` come with one fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Registered {
        region: u32,
        ring_entries: u32,
        nblocks: u64,
        shm_bytes: u64,
    },
    Done,
    Pool {
        bytes: u64,
        node: i32,
        created: bool,
        /// The descriptor is read-only (the pool's pages can be mapped for reading only).
        read_only: bool,
    },
    Advice {
        node: i32,
        tier: u32,
        free_bytes: u64,
    },
    /// A failure: a positive errno and why.
    Error {
        errno: i32,
        message: String,
    },
}

fn valid_pool_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_POOL_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn frame(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a packet into (type, seq, payload) after checking the header.
fn unframe(buf: &[u8]) -> Result<(u16, u32, &[u8]), WireError> {
    if buf.len() > MAX_MESSAGE {
        return Err(WireError::TooLong(buf.len()));
    }
    let mut r = Reader { buf, pos: 0 };
    let magic = r.array::<4>()?;
    if magic != MAGIC {
        return Err(WireError::Magic(magic));
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let kind = r.u16()?;
    let seq = r.u32()?;
    let len = r.u32()?;
    let payload = &buf[HEADER_LEN..];
    if payload.len() != len as usize {
        return Err(WireError::Length {
            declared: len,
            actual: payload.len(),
        });
    }
    Ok((kind, seq, payload))
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(WireError::Truncated {
            got: self.buf.len(),
            need: self.pos.saturating_add(n),
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A reserved u32: must be zero so it can be given a meaning later.
    fn zero32(&mut self) -> Result<(), WireError> {
        match self.u32()? {
            0 => Ok(()),
            _ => Err(WireError::Reserved),
        }
    }
    /// The payload must be consumed exactly: trailing bytes are a length error.
    fn end(&self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(WireError::Length {
                declared: self.pos as u32,
                actual: self.buf.len(),
            })
        }
    }
}

impl Request {
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut p = Vec::new();
        let kind = match self {
            Request::Register {
                base,
                len,
                block_size,
            } => {
                p.extend_from_slice(&base.to_le_bytes());
                p.extend_from_slice(&len.to_le_bytes());
                p.extend_from_slice(&block_size.to_le_bytes());
                code::REGISTER
            }
            Request::Unregister { region } => {
                p.extend_from_slice(&region.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
                code::UNREGISTER
            }
            Request::PoolOpen { name, bytes, flags } => {
                p.extend_from_slice(&bytes.to_le_bytes());
                p.extend_from_slice(&(name.len() as u32).to_le_bytes());
                p.extend_from_slice(&flags.to_le_bytes());
                p.extend_from_slice(name.as_bytes());
                code::POOL_OPEN
            }
            Request::Advise { bytes, tier } => {
                p.extend_from_slice(&bytes.to_le_bytes());
                p.extend_from_slice(&tier.to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
                code::ADVISE
            }
            Request::RegisterPinned {
                base,
                len,
                block_size,
                slots,
            } => {
                p.extend_from_slice(&base.to_le_bytes());
                p.extend_from_slice(&len.to_le_bytes());
                p.extend_from_slice(&block_size.to_le_bytes());
                p.extend_from_slice(&(slots.len() as u32).to_le_bytes());
                p.extend_from_slice(&0u32.to_le_bytes());
                for (node, n) in slots {
                    p.extend_from_slice(&node.to_le_bytes());
                    p.extend_from_slice(&n.to_le_bytes());
                }
                code::REGISTER_PINNED
            }
        };
        frame(kind, seq, &p)
    }

    /// Decodes one packet into (seq, request).
    pub fn decode(buf: &[u8]) -> Result<(u32, Request), WireError> {
        let (kind, seq, payload) = unframe(buf)?;
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let req = match kind {
            code::REGISTER => Request::Register {
                base: r.u64()?,
                len: r.u64()?,
                block_size: r.u64()?,
            },
            code::UNREGISTER => {
                let region = r.u32()?;
                r.zero32()?;
                Request::Unregister { region }
            }
            code::POOL_OPEN => {
                let bytes = r.u64()?;
                let n = r.u32()? as usize;
                let flags = r.u32()?;
                if flags & !pool_flags::ALL != 0 {
                    return Err(WireError::Reserved);
                }
                if n > MAX_POOL_NAME {
                    return Err(WireError::PoolName);
                }
                let name = std::str::from_utf8(r.bytes(n)?).map_err(|_| WireError::PoolName)?;
                if !valid_pool_name(name) {
                    return Err(WireError::PoolName);
                }
                Request::PoolOpen {
                    name: name.to_string(),
                    bytes,
                    flags,
                }
            }
            code::ADVISE => {
                let bytes = r.u64()?;
                let tier = r.i32()?;
                r.zero32()?;
                Request::Advise { bytes, tier }
            }
            code::REGISTER_PINNED => {
                let (base, len, block_size) = (r.u64()?, r.u64()?, r.u64()?);
                let n = r.u32()? as usize;
                r.zero32()?;
                if n == 0 || n > MAX_PINNED_NODES {
                    return Err(WireError::PinnedNodes);
                }
                let mut slots = Vec::with_capacity(n);
                for _ in 0..n {
                    slots.push((r.i32()?, r.u32()?));
                }
                Request::RegisterPinned {
                    base,
                    len,
                    block_size,
                    slots,
                }
            }
            other => return Err(WireError::Type(other)),
        };
        r.end()?;
        Ok((seq, req))
    }
}

impl Reply {
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut p = Vec::new();
        let kind = match self {
            Reply::Registered {
                region,
                ring_entries,
                nblocks,
                shm_bytes,
            } => {
                p.extend_from_slice(&region.to_le_bytes());
                p.extend_from_slice(&ring_entries.to_le_bytes());
                p.extend_from_slice(&nblocks.to_le_bytes());
                p.extend_from_slice(&shm_bytes.to_le_bytes());
                code::REGISTERED
            }
            Reply::Done => code::DONE,
            Reply::Pool {
                bytes,
                node,
                created,
                read_only,
            } => {
                // Bit 0 created, bit 1 read-only: an original client, which never asks
                // for flags, only ever gets its own read-write pools (0 or 1 here).
                let bits = *created as u32 | (*read_only as u32) << 1;
                p.extend_from_slice(&bytes.to_le_bytes());
                p.extend_from_slice(&node.to_le_bytes());
                p.extend_from_slice(&bits.to_le_bytes());
                code::POOL
            }
            Reply::Advice {
                node,
                tier,
                free_bytes,
            } => {
                p.extend_from_slice(&node.to_le_bytes());
                p.extend_from_slice(&tier.to_le_bytes());
                p.extend_from_slice(&free_bytes.to_le_bytes());
                code::ADVICE
            }
            Reply::Error { errno, message } => {
                let mut m = message.as_str();
                while m.len() > MAX_ERROR_MESSAGE {
                    // Cut on a char boundary.
                    let mut cut = MAX_ERROR_MESSAGE;
                    while !m.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    m = &m[..cut];
                }
                p.extend_from_slice(&errno.to_le_bytes());
                p.extend_from_slice(&(m.len() as u32).to_le_bytes());
                p.extend_from_slice(m.as_bytes());
                code::ERROR
            }
        };
        frame(kind, seq, &p)
    }

    pub fn decode(buf: &[u8]) -> Result<(u32, Reply), WireError> {
        let (kind, seq, payload) = unframe(buf)?;
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let rep = match kind {
            code::REGISTERED => Reply::Registered {
                region: r.u32()?,
                ring_entries: r.u32()?,
                nblocks: r.u64()?,
                shm_bytes: r.u64()?,
            },
            code::DONE => Reply::Done,
            code::POOL => {
                let (bytes, node, bits) = (r.u64()?, r.i32()?, r.u32()?);
                if bits > 3 {
                    return Err(WireError::Reserved);
                }
                Reply::Pool {
                    bytes,
                    node,
                    created: bits & 1 != 0,
                    read_only: bits & 2 != 0,
                }
            }
            code::ADVICE => Reply::Advice {
                node: r.i32()?,
                tier: r.u32()?,
                free_bytes: r.u64()?,
            },
            code::ERROR => {
                let errno = r.i32()?;
                let n = r.u32()? as usize;
                if n > MAX_ERROR_MESSAGE {
                    return Err(WireError::TooLong(n));
                }
                let message = std::str::from_utf8(r.bytes(n)?)
                    .map_err(|_| WireError::Utf8)?
                    .to_string();
                Reply::Error { errno, message }
            }
            other => return Err(WireError::Type(other)),
        };
        r.end()?;
        Ok((seq, rep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn requests() -> Vec<Request> {
        vec![
            Request::Register {
                base: 0x7f00_0000_0000,
                len: 1 << 30,
                block_size: 1 << 16,
            },
            Request::Unregister { region: 9 },
            Request::PoolOpen {
                name: "sys-prompt.v1".into(),
                bytes: 64 << 20,
                flags: 0,
            },
            Request::PoolOpen {
                name: "shared".into(),
                bytes: 1 << 20,
                flags: pool_flags::SHARED | pool_flags::READ_ONLY,
            },
            Request::Advise {
                bytes: 1 << 30,
                tier: -1,
            },
            Request::RegisterPinned {
                base: 0x7f00_0000_0000,
                len: 96 << 16,
                block_size: 1 << 16,
                slots: vec![(0, 32), (1, 64)],
            },
        ]
    }

    #[test]
    fn pinned_layout_is_bounded() {
        let req = |n: usize| Request::RegisterPinned {
            base: 0,
            len: 0,
            block_size: 4096,
            slots: vec![(0, 1); n],
        };
        assert_eq!(
            Request::decode(&req(0).encode(1)),
            Err(WireError::PinnedNodes)
        );
        assert_eq!(
            Request::decode(&req(MAX_PINNED_NODES + 1).encode(1)),
            Err(WireError::PinnedNodes)
        );
        assert!(Request::decode(&req(MAX_PINNED_NODES).encode(1)).is_ok());
    }

    #[test]
    fn requests_and_replies_round_trip() {
        for (i, r) in requests().into_iter().enumerate() {
            assert_eq!(Request::decode(&r.encode(i as u32)).unwrap(), (i as u32, r));
        }
        let replies = vec![
            Reply::Registered {
                region: 1,
                ring_entries: 1024,
                nblocks: 7,
                shm_bytes: 8192,
            },
            Reply::Done,
            Reply::Pool {
                bytes: 4096,
                node: 1,
                created: true,
                read_only: false,
            },
            Reply::Pool {
                bytes: 4096,
                node: 1,
                created: false,
                read_only: true,
            },
            Reply::Advice {
                node: 0,
                tier: 0,
                free_bytes: 5,
            },
            Reply::Error {
                errno: libc::EPERM,
                message: "no".into(),
            },
        ];
        for r in replies {
            assert_eq!(Reply::decode(&r.encode(5)).unwrap(), (5, r));
        }
    }

    #[test]
    fn truncated_oversized_and_malformed_are_refused() {
        let good = requests()[0].encode(1);
        for cut in 0..good.len() {
            assert!(Request::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.resize(MAX_MESSAGE + 1, 0);
        assert_eq!(
            Request::decode(&long),
            Err(WireError::TooLong(MAX_MESSAGE + 1))
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(Request::decode(&bad), Err(WireError::Magic(_))));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(Request::decode(&bad), Err(WireError::Version(2)));
        let mut bad = good.clone();
        bad[6] = 0x42;
        assert_eq!(Request::decode(&bad), Err(WireError::Type(0x42)));
        // Declared length larger than the packet, and trailing garbage.
        let mut bad = good.clone();
        bad[12] = 200;
        assert!(matches!(
            Request::decode(&bad),
            Err(WireError::Length { .. })
        ));
        let mut trailing = frame(code::UNREGISTER, 0, &[0; 12]);
        assert!(Request::decode(&trailing).is_err());
        trailing.truncate(HEADER_LEN);
        assert!(Request::decode(&trailing).is_err());
        // Pool names: empty, too long, path-like.
        for name in ["", "../etc", &"x".repeat(65), "a b"] {
            let r = Request::PoolOpen {
                name: name.into(),
                bytes: 1,
                flags: 0,
            };
            assert_eq!(
                Request::decode(&r.encode(0)),
                Err(WireError::PoolName),
                "{name:?}"
            );
        }
    }

    #[test]
    fn pool_flags_are_backward_compatible() {
        // An original client's POOL_OPEN (reserved word 0) decodes as flags 0, and the
        // reply to it reads as the original `created u32 (0/1)`.
        let old = Request::PoolOpen {
            name: "p".into(),
            bytes: 1,
            flags: 0,
        }
        .encode(3);
        assert_eq!(&old[HEADER_LEN + 12..HEADER_LEN + 16], &[0, 0, 0, 0]);
        let reply = Reply::Pool {
            bytes: 1,
            node: 0,
            created: true,
            read_only: false,
        }
        .encode(3);
        assert_eq!(&reply[HEADER_LEN + 12..], &1u32.to_le_bytes());
        // Unknown flag bits are refused, as the reserved word was.
        let mut bad = old.clone();
        bad[HEADER_LEN + 12] = 4;
        assert_eq!(Request::decode(&bad), Err(WireError::Reserved));
    }

    #[test]
    fn long_error_messages_are_cut_on_char_boundaries() {
        let r = Reply::Error {
            errno: 1,
            message: "é".repeat(300),
        };
        let buf = r.encode(0);
        assert!(buf.len() <= MAX_MESSAGE);
        let (_, Reply::Error { message, .. }) = Reply::decode(&buf).unwrap() else {
            panic!("not an error reply");
        };
        assert!(message.len() <= MAX_ERROR_MESSAGE && message.starts_with('é'));
    }

    proptest! {
        // The decoders never panic and never accept more than MAX_MESSAGE bytes; what
        // they accept re-encodes to the same bytes.
        #[test]
        fn decoders_are_total(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok((seq, r)) = Request::decode(&buf) {
                prop_assert!(buf.len() <= MAX_MESSAGE);
                prop_assert_eq!(r.encode(seq), buf.clone());
            }
            if let Ok((seq, r)) = Reply::decode(&buf) {
                prop_assert_eq!(r.encode(seq), buf.clone());
            }
        }

        #[test]
        fn framed_garbage_is_total(kind in 0u16..6, seq: u32, payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let buf = frame(kind, seq, &payload);
            if let Ok((s, r)) = Request::decode(&buf) {
                prop_assert_eq!(s, seq);
                prop_assert_eq!(r.encode(seq), buf);
            }
        }
    }
}
