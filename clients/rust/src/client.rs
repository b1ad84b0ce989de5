//! The Rust client: connect, register regions, send hints, read placement, open pools.
//!
//! Control calls (register, pools, advice) are one request/reply on the socket,
//! serialised by a mutex; hints and placement reads never touch the socket: they are a
//! ring write and an atomic load on the region's shared memory. A [`Client`] is `Sync`;
//! each region's ring has one producer, so hints to one region from several threads
//! take that region's (uncontended in the common case) mutex.
//!
//! When tierd goes away (restart, crash) the client notices on its socket, not in the
//! regions' shared headers (a dead tierd cannot mark them): a `tierd-client` thread
//! ([`crate::reconnect`]) waits for the hang-up, marks every region not live, and
//! reconnects with exponential backoff ([`Reconnect`]), registering the same memory
//! again and replaying PIN_FAST. Region ids the application holds stay valid across
//! reconnections ([`Region::id`]); [`Client::is_connected`] says where it stands.

use crate::layout::{state, HintEntry, HintKind, PLACEMENT_UNKNOWN, WANTED_NONE};
use crate::reconnect::{self, PinSet};
use crate::ring::Producer;
use crate::shm::{ShmError, ShmView};
use crate::sock;
use crate::wire::{self, Reply, Request, WireError};
use memmap2::MmapRaw;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

pub use crate::reconnect::Reconnect;

/// Where tierd listens when no path is given (`client.socket` in tierd.toml).
pub const DEFAULT_SOCKET: &str = "/run/tierd/client.sock";
/// Environment variable overriding [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "TIERD_CLIENT_SOCKET";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: {errno}")]
    Connect {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("client socket: {0}")]
    Socket(nix::errno::Errno),
    #[error("tierd closed the connection")]
    Closed,
    #[error("malformed reply: {0}")]
    Wire(#[from] WireError),
    #[error("unexpected reply {0:?}")]
    Unexpected(Box<Reply>),
    #[error("tierd refused: {message} ({})", nix::errno::Errno::from_raw(*errno))]
    Refused { errno: i32, message: String },
    #[error("region {0} is not registered on this connection")]
    UnknownRegion(u32),
    #[error("block {block} is outside region {region}")]
    BlockRange { region: u32, block: u64 },
    #[error("region {region}: {source}")]
    Shm { region: u32, source: ShmError },
    #[error("region {region}: mapping its shared memory: {source}")]
    Map { region: u32, source: std::io::Error },
    #[error("reply for {0} carried no file descriptor")]
    NoFd(&'static str),
    #[error("{what}: {errno}")]
    Os {
        what: &'static str,
        errno: nix::errno::Errno,
    },
    /// tierd's reply carried a descriptor (a region's or pool's shared memory) that
    /// this process could not take: it is at its descriptor limit.
    #[error(
        "{what}: descriptor limit reached: raise RLIMIT_NOFILE (ulimit -n; soft {soft}, \
         hard {hard}) or close descriptors ({open} open); the shared memory tierd sent \
         could not be received"
    )]
    DescriptorLimit {
        what: &'static str,
        /// Descriptors open in this process (`/proc/self/fd`).
        open: usize,
        soft: u64,
        hard: u64,
    },
}

impl ClientError {
    /// [`ClientError::DescriptorLimit`] for `what`, with this process's numbers.
    fn descriptor_limit(what: &'static str) -> ClientError {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
        let open = match std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor is listed too.
            Ok(d) => d.count().saturating_sub(1),
            // At the limit the directory cannot be opened: probe the numbers below it.
            Err(_) => (0..soft.min(1 << 16) as i32)
                // SAFETY: F_GETFD reads a descriptor's flags; no memory involved.
                .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
                .count(),
        };
        ClientError::DescriptorLimit {
            what,
            open,
            soft,
            hard,
        }
    }
}

impl ClientError {
    /// The positive errno this error maps to in the C API.
    pub fn errno(&self) -> i32 {
        match self {
            ClientError::Connect { errno, .. }
            | ClientError::Socket(errno)
            | ClientError::Os { errno, .. } => *errno as i32,
            ClientError::Closed => libc::ECONNRESET,
            ClientError::Wire(_) | ClientError::Unexpected(_) | ClientError::NoFd(_) => {
                libc::EPROTO
            }
            ClientError::Refused { errno, .. } => *errno,
            ClientError::UnknownRegion(_) => libc::EINVAL,
            ClientError::BlockRange { .. } => libc::ERANGE,
            ClientError::Shm { .. } => libc::EPROTO,
            ClientError::Map { source, .. } => source.raw_os_error().unwrap_or(libc::ENOMEM),
            ClientError::DescriptorLimit { .. } => libc::EMFILE,
        }
    }
}

/// Counters of a region, from its shared header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionStats {
    pub state: u32,
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

/// A registered region: its shared memory and ring producer, on one connection. After a
/// reconnection the [`Client`] holds a new `Region` under the same id; a handle taken
/// from [`Client::region`] before it stays readable but is no longer live.
pub struct Region {
    /// The id the application knows, stable across reconnections.
    id: u32,
    /// The id tierd gave it on the current connection (in every ring entry).
    wire: u32,
    block_size: u64,
    base: u64,
    /// The connection that registered it is up (tierd cannot clear `state` in the
    /// header when it dies: the client checks its socket instead).
    alive: AtomicBool,
    /// Blocks pinned with PIN_FAST, pinned again after a reconnection.
    pub(crate) pins: PinSet,
    /// A pinned region's `(node, blocks)` layout (registered again as pinned after a
    /// reconnection); `None` for an ordinary region.
    pub(crate) pinned: Option<Vec<(i32, u32)>>,
    // Field order matters: `producer` and `view` borrow `map` and are dropped first.
    producer: Mutex<Producer<'static>>,
    view: ShmView<'static>,
    _map: MmapRaw,
}

impl Region {
    /// Maps the region tierd registered as `wire`, known to the application as `id`.
    pub(crate) fn open(id: u32, wire: u32, fd: OwnedFd) -> Result<Region, ClientError> {
        let file = File::from(fd);
        let map =
            MmapRaw::map_raw(&file).map_err(|source| ClientError::Map { region: id, source })?;
        // SAFETY: `map` is a live shared mapping of `map.len()` bytes owned by the Region
        // next to the view; the view and producer are dropped before it (field order), so
        // the 'static lifetime never outlives the memory.
        let (view, region, block_size, base) =
            unsafe { ShmView::open(map.as_mut_ptr(), map.len()) }
                .map_err(|source| ClientError::Shm { region: id, source })?;
        if region != wire {
            return Err(ClientError::Shm {
                region: id,
                source: ShmError::Inconsistent("region id differs from the reply"),
            });
        }
        Ok(Region {
            id,
            wire,
            block_size,
            base,
            alive: AtomicBool::new(true),
            pins: PinSet::default(),
            pinned: None,
            producer: Mutex::new(Producer::new(view)),
            view,
            _map: map,
        })
    }

    /// The id the application registered it under (stable across reconnections).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Bytes registered (`nblocks × block_size`).
    pub(crate) fn len(&self) -> u64 {
        self.nblocks() * self.block_size
    }

    /// The connection that registered it went away.
    pub(crate) fn mark_dead(&self) {
        self.alive.store(false, Ordering::Release);
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
    pub fn block_size(&self) -> u64 {
        self.block_size
    }
    pub fn nblocks(&self) -> u64 {
        self.view.geometry().nblocks
    }
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Publishes entries; returns how many blocks were accepted (the rest were dropped
    /// and counted in the header). Nothing is accepted while the connection is down.
    /// Entries may carry [`Region::id`]: they are sent under the connection's own id.
    pub fn push(&self, entries: &[HintEntry]) -> u64 {
        if !self.alive() {
            return 0;
        }
        let renamed: Vec<HintEntry>;
        let entries = if entries.iter().any(|e| e.region != self.wire) {
            renamed = entries
                .iter()
                .map(|e| HintEntry {
                    region: if e.region == self.id {
                        self.wire
                    } else {
                        e.region
                    },
                    ..*e
                })
                .collect();
            &renamed[..]
        } else {
            entries
        };
        let n = self
            .producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entries);
        entries[..n].iter().map(|e| e.nblocks as u64).sum()
    }

    /// Node of `block`, or a negative errno (`-EAGAIN` not looked at yet, `-ENOENT` not
    /// populated, `-ERANGE` outside the region).
    pub fn placement(&self, block: u64) -> i32 {
        self.view
            .placement(block)
            .map_or(-libc::ERANGE, |p| p.load(Ordering::Acquire))
    }

    pub fn placement_generation(&self) -> u64 {
        self.view.header().placement_gen.load(Ordering::Acquire)
    }

    /// Blocks tierd wants copied elsewhere (it could not move them itself, e.g. they are
    /// pinned): appends `(block, node)` pairs, returns how many.
    pub fn relocations(&self, out: &mut Vec<(u64, i32)>) -> usize {
        let before = out.len();
        for b in 0..self.nblocks() {
            if let Some(w) = self.view.wanted(b) {
                let n = w.load(Ordering::Acquire);
                if n != WANTED_NONE && n >= 0 {
                    out.push((b, n));
                }
            }
        }
        out.len() - before
    }

    pub fn stats(&self) -> RegionStats {
        let h = self.view.header();
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        RegionStats {
            // A dead connection's header may still say LIVE; what tierd wrote before
            // closing it (CORRUPT) stands.
            state: match h.state.load(Ordering::Relaxed) {
                state::LIVE if !self.alive() => state::CLOSED,
                s => s,
            },
            published_entries: l(&h.tail),
            applied_entries: l(&h.applied_entries),
            applied_blocks: l(&h.applied_blocks),
            rejected_entries: l(&h.rejected_entries),
            dropped_entries: l(&h.dropped_entries),
            dropped_blocks: l(&h.dropped_blocks),
            deadline_missed: l(&h.deadline_missed),
            promoted_blocks: l(&h.promoted_blocks),
            placement_gen: l(&h.placement_gen),
        }
    }

    /// The shared header (counters; the ring indices are the library's business).
    pub fn header(&self) -> &crate::layout::ShmHeader {
        self.view.header()
    }

    /// Whether tierd still consumes this region's hints: the connection that registered
    /// it is up and tierd has not closed it. The header alone cannot tell: a tierd that
    /// was killed leaves it saying live.
    pub fn is_live(&self) -> bool {
        self.alive() && self.view.header().state.load(Ordering::Acquire) == state::LIVE
    }
}

/// Turns a list of block numbers into ring entries, one per run of consecutive blocks.
pub fn coalesce(
    region: u32,
    kind: HintKind,
    blocks: &[u64],
    deadline_ms: u32,
    out: &mut Vec<HintEntry>,
) {
    let mut i = 0;
    while i < blocks.len() {
        let first = blocks[i];
        let mut n: u32 = 1;
        while i + (n as usize) < blocks.len()
            && n < u32::MAX
            && Some(blocks[i + n as usize]) == first.checked_add(n as u64)
        {
            n += 1;
        }
        out.push(HintEntry {
            kind: kind as u16,
            _reserved: 0,
            region,
            first_block: first,
            nblocks: n,
            deadline_ms,
        });
        i += n as usize;
    }
}

/// A pool handed out by tierd.
#[derive(Debug)]
pub struct Pool {
    pub fd: OwnedFd,
    pub bytes: u64,
    /// Node the pool's memory was placed on.
    pub node: i32,
    /// This call created it (no other process had opened it yet).
    pub created: bool,
    /// The descriptor is read-only: map it `PROT_READ` (only the pool's creator uid
    /// gets a writable one, and only without [`crate::wire::pool_flags::READ_ONLY`]).
    pub read_only: bool,
}

/// Where tierd advises placing a new allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advice {
    pub node: i32,
    pub tier: u32,
    pub free_bytes: u64,
}

pub struct Client {
    inner: Arc<Inner>,
    /// The `tierd-client` thread watching the socket (stopped and joined on drop).
    watcher: Option<reconnect::Watcher>,
}

/// What the client and its watcher thread share.
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    /// The connection; held across a whole register/unregister (call and map update)
    /// and across a whole reconnection, so the two never interleave.
    pub(crate) conn: Mutex<Conn>,
    /// Regions by the id the application knows.
    pub(crate) regions: RwLock<HashMap<u32, Arc<Region>>>,
    pub(crate) connected: AtomicBool,
    pub(crate) reconnects: AtomicU64,
}

/// One connection to tierd's client socket.
pub(crate) struct Conn {
    pub(crate) fd: OwnedFd,
    seq: u32,
}

/// Connects a fresh `SOCK_SEQPACKET` socket to `path`.
pub(crate) fn dial(path: &Path) -> Result<OwnedFd, ClientError> {
    let err = |errno| ClientError::Connect {
        path: path.to_path_buf(),
        errno,
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err)?;
    let addr = UnixAddr::new(path).map_err(err)?;
    connect(fd.as_raw_fd(), &addr).map_err(err)?;
    Ok(fd)
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd) -> Conn {
        Conn { fd, seq: 0 }
    }

    /// One request, one reply (and the fd that came with it).
    pub(crate) fn call(&mut self, req: &Request) -> Result<(Reply, Option<OwnedFd>), ClientError> {
        let (reply, fd, lost) = self.call_raw(req)?;
        if lost {
            return Err(ClientError::descriptor_limit(req.name()));
        }
        Ok((reply, fd))
    }

    /// One request, one reply, its descriptor and whether a descriptor sent with it was
    /// lost (this process at its `RLIMIT_NOFILE`).
    fn call_raw(&mut self, req: &Request) -> Result<(Reply, Option<OwnedFd>, bool), ClientError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        sock::send(&self.fd, &req.encode(seq), None).map_err(ClientError::Socket)?;
        let mut buf = [0u8; wire::MAX_MESSAGE];
        loop {
            let p = sock::recv(&self.fd, &mut buf)
                .map_err(ClientError::Socket)?
                .ok_or(ClientError::Closed)?;
            if p.truncated {
                return Err(WireError::TooLong(p.len).into());
            }
            let (rseq, reply) = Reply::decode(&buf[..p.len])?;
            if rseq != seq {
                continue; // a reply to an earlier request that timed out on our side
            }
            if let Reply::Error { errno, message } = reply {
                return Err(ClientError::Refused { errno, message });
            }
            return Ok((reply, p.fd, p.fds_lost));
        }
    }

    /// Registers `[base, base + len)` (pinned with `slots` when given); returns tierd's id
    /// for it and its shared memory.
    pub(crate) fn register_layout(
        &mut self,
        base: u64,
        len: u64,
        block_size: u64,
        slots: Option<&[(i32, u32)]>,
    ) -> Result<(u32, OwnedFd), ClientError> {
        let req = match slots {
            None => Request::Register {
                base,
                len,
                block_size,
            },
            Some(s) => Request::RegisterPinned {
                base,
                len,
                block_size,
                slots: s.to_vec(),
            },
        };
        let (reply, fd, lost) = self.call_raw(&req)?;
        let Reply::Registered { region, .. } = reply else {
            return Err(ClientError::Unexpected(Box::new(reply)));
        };
        if lost {
            // A region this process cannot see must not count against its quotas.
            let _ = self.call(&Request::Unregister { region });
            return Err(ClientError::descriptor_limit(req.name()));
        }
        Ok((region, fd.ok_or(ClientError::NoFd("register"))?))
    }
}

impl Inner {
    pub(crate) fn conn(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Client {
    /// Connects to `path`, or `$TIERD_CLIENT_SOCKET`, or [`DEFAULT_SOCKET`], and
    /// reconnects after tierd restarts ([`Reconnect::default`]).
    pub fn connect(path: Option<&Path>) -> Result<Client, ClientError> {
        Client::connect_with(path, Reconnect::default())
    }

    /// [`Client::connect`] with a reconnection policy of the caller's choice.
    pub fn connect_with(path: Option<&Path>, reconnect: Reconnect) -> Result<Client, ClientError> {
        let path: PathBuf = match path {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os(SOCKET_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
        };
        let fd = dial(&path)?;
        let inner = Arc::new(Inner {
            path,
            conn: Mutex::new(Conn::new(fd)),
            regions: RwLock::new(HashMap::new()),
            connected: AtomicBool::new(true),
            reconnects: AtomicU64::new(0),
        });
        let watcher = reconnect::Watcher::spawn(inner.clone(), reconnect)?;
        Ok(Client {
            inner,
            watcher: Some(watcher),
        })
    }

    /// Whether the connection to tierd is up. False from the moment tierd's end closes
    /// until a reconnection has registered the regions again.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Successful reconnections so far.
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for the connection to be up; returns whether it is.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let t0 = Instant::now();
        while !self.is_connected() {
            if t0.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// One request, one reply (and the fd that came with it).
    fn call(&self, req: &Request) -> Result<(Reply, Option<OwnedFd>), ClientError> {
        self.inner.conn().call(req)
    }

    /// Registers `[base, base + len)` of this process's memory as blocks of `block_size`
    /// bytes; returns the region id.
    pub fn register(&self, base: u64, len: u64, block_size: u64) -> Result<u32, ClientError> {
        self.register_layout(base, len, block_size, None)
    }

    /// Registers `[base, base + len)` as a pinned region (pages `move_pages` cannot move,
    /// e.g. `cudaHostRegister`ed or io_uring fixed buffers) laid out as `slots`:
    /// `(node, blocks)` in address order. tierd never moves its pages; it asks for moves
    /// in the relocation table ([`Region::relocations`]), answered with
    /// [`Client::moved`] or [`Client::declined`]. `docs/protocol.md`, "Pinned regions".
    pub fn register_pinned(
        &self,
        base: u64,
        len: u64,
        block_size: u64,
        slots: &[(i32, u32)],
    ) -> Result<u32, ClientError> {
        self.register_layout(base, len, block_size, Some(slots.to_vec()))
    }

    fn register_layout(
        &self,
        base: u64,
        len: u64,
        block_size: u64,
        pinned: Option<Vec<(i32, u32)>>,
    ) -> Result<u32, ClientError> {
        let mut conn = self.inner.conn();
        let (wire, fd) = conn.register_layout(base, len, block_size, pinned.as_deref())?;
        let mut regions = self
            .inner
            .regions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // tierd's id, unless an id of an earlier connection already uses it.
        let id = if regions.contains_key(&wire) {
            (1..=u32::MAX)
                .find(|i| !regions.contains_key(i))
                .unwrap_or(wire)
        } else {
            wire
        };
        let mut r = Region::open(id, wire, fd)?;
        r.pinned = pinned;
        regions.insert(id, Arc::new(r));
        Ok(id)
    }

    /// Unregisters a region. While the connection is down tierd has forgotten it
    /// already: it is only dropped here.
    pub fn unregister(&self, region: u32) -> Result<(), ClientError> {
        let r = self.region(region)?;
        let mut conn = self.inner.conn();
        if r.alive() {
            match conn.call(&Request::Unregister { region: r.wire }) {
                Ok(_) => {}
                // The connection is gone, and with it the region on tierd's side.
                Err(ClientError::Closed | ClientError::Socket(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.inner
            .regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&region);
        Ok(())
    }

    pub fn region(&self, region: u32) -> Result<Arc<Region>, ClientError> {
        self.inner
            .regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&region)
            .cloned()
            .ok_or(ClientError::UnknownRegion(region))
    }

    /// Sends `kind` for `blocks` (runs of consecutive blocks become one ring entry).
    /// Returns the blocks accepted; the rest were dropped (ring full) and counted.
    pub fn hint(&self, region: u32, kind: HintKind, blocks: &[u64]) -> Result<u64, ClientError> {
        self.hint_with_deadline(region, kind, blocks, 0)
    }

    pub fn hint_prefetch(
        &self,
        region: u32,
        blocks: &[u64],
        deadline_ms: u32,
    ) -> Result<u64, ClientError> {
        self.hint_with_deadline(region, HintKind::Prefetch, blocks, deadline_ms)
    }

    fn hint_with_deadline(
        &self,
        region: u32,
        kind: HintKind,
        blocks: &[u64],
        deadline_ms: u32,
    ) -> Result<u64, ClientError> {
        let r = self.region(region)?;
        if let Some(&b) = blocks.iter().find(|&&b| b >= r.nblocks()) {
            return Err(ClientError::BlockRange { region, block: b });
        }
        let mut entries = Vec::with_capacity(4);
        coalesce(r.wire, kind, blocks, deadline_ms, &mut entries);
        r.pins.note(kind, &entries, r.nblocks());
        Ok(r.push(&entries))
    }

    /// Sends `kind` for blocks `[first, first + n)`.
    pub fn hint_range(
        &self,
        region: u32,
        kind: HintKind,
        first: u64,
        n: u32,
        deadline_ms: u32,
    ) -> Result<u64, ClientError> {
        let r = self.region(region)?;
        if n == 0 || first >= r.nblocks() || n as u64 > r.nblocks() - first {
            return Err(ClientError::BlockRange {
                region,
                block: first.saturating_add(n as u64),
            });
        }
        let e = HintEntry {
            kind: kind as u16,
            _reserved: 0,
            region: r.wire,
            first_block: first,
            nblocks: n,
            deadline_ms,
        };
        r.pins.note(kind, &[e], r.nblocks());
        Ok(r.push(&[e]))
    }

    /// Node of `block`, or a negative errno.
    pub fn placement(&self, region: u32, block: u64) -> i32 {
        match self.region(region) {
            Ok(r) => r.placement(block),
            Err(e) => -e.errno(),
        }
    }

    /// Opens (creating on first use) the caller's own pool `name` (its uid's namespace),
    /// read-write.
    pub fn pool_open(&self, name: &str, bytes: u64) -> Result<Pool, ClientError> {
        self.pool_open_flags(name, bytes, 0)
    }

    /// Opens (creating on first use) pool `name` with [`crate::wire::pool_flags`]: `SHARED` for the
    /// namespace shared by all users, `READ_ONLY` for a read-only descriptor.
    pub fn pool_open_flags(&self, name: &str, bytes: u64, flags: u32) -> Result<Pool, ClientError> {
        let (reply, fd) = self.call(&Request::PoolOpen {
            name: name.to_string(),
            bytes,
            flags,
        })?;
        let Reply::Pool {
            bytes,
            node,
            created,
            read_only,
        } = reply
        else {
            return Err(ClientError::Unexpected(Box::new(reply)));
        };
        Ok(Pool {
            fd: fd.ok_or(ClientError::NoFd("pool_open"))?,
            bytes,
            node,
            created,
            read_only,
        })
    }

    /// Which node a new allocation of `bytes` on `tier` (0 fastest, -1 slowest) should
    /// be bound to (mbind it there before pinning it).
    pub fn advise(&self, bytes: u64, tier: i32) -> Result<Advice, ClientError> {
        let (reply, _) = self.call(&Request::Advise { bytes, tier })?;
        match reply {
            Reply::Advice {
                node,
                tier,
                free_bytes,
            } => Ok(Advice {
                node,
                tier,
                free_bytes,
            }),
            other => Err(ClientError::Unexpected(Box::new(other))),
        }
    }

    /// Acknowledges relocation requests: the client copied `blocks` to memory on the
    /// wanted node and no longer uses them (tierd then treats them as free).
    pub fn relocated(&self, region: u32, blocks: &[u64]) -> Result<u64, ClientError> {
        let r = self.region(region)?;
        for &b in blocks {
            if let Some(w) = r.view.wanted(b) {
                w.store(WANTED_NONE, Ordering::Release);
            }
        }
        self.hint(region, HintKind::Relocated, blocks)
    }

    /// Pinned regions: acknowledges a relocation request. The contents of blocks
    /// `[from, from + n)` are now in `[to, to + n)` (on the wanted node) and the block
    /// table points there; `[from, from + n)` keeps a valid copy (a shadow) until it is
    /// written ([`HintKind::Written`]) or freed. Clears the requests of the source blocks.
    pub fn moved(&self, region: u32, from: u64, to: u64, n: u32) -> Result<u64, ClientError> {
        let r = self.region(region)?;
        let nb = r.nblocks();
        let inside = |b: u64| n > 0 && b < nb && n as u64 <= nb - b;
        if !inside(from) || !inside(to) || to > u32::MAX as u64 {
            return Err(ClientError::BlockRange {
                region,
                block: if inside(from) { to } else { from },
            });
        }
        for b in from..from + n as u64 {
            if let Some(w) = r.view.wanted(b) {
                w.store(WANTED_NONE, Ordering::Release);
            }
        }
        self.hint_range(region, HintKind::Moved, from, n, to as u32)
    }

    /// Pinned regions: refuses the relocation requests of `blocks` (no free block on the
    /// wanted node, say); tierd clears them and plans again.
    pub fn declined(&self, region: u32, blocks: &[u64]) -> Result<u64, ClientError> {
        let r = self.region(region)?;
        for &b in blocks {
            if let Some(w) = r.view.wanted(b) {
                w.store(WANTED_NONE, Ordering::Release);
            }
        }
        self.hint(region, HintKind::Declined, blocks)
    }
}

impl Client {
    /// Drops the memory behind `blocks` of `region` (their contents are dead and about to
    /// be rewritten, e.g. blocks taken from an engine's free list for new KV), so the new
    /// contents are allocated where new memory goes: the CPU's local node, the fast tier,
    /// whose headroom tierd keeps free by demoting ahead of need (TPP). A recycled block
    /// costs a page fault per page on its next write instead of a migration. Private
    /// anonymous memory is dropped with `MADV_DONTNEED`, shared memory (memfd, shmem
    /// pools) with `MADV_REMOVE`. Returns the bytes dropped.
    ///
    /// # Safety
    /// The blocks read back as zeros afterwards: nothing may rely on their old contents,
    /// and they must not be pinned for device DMA (`cudaHostRegister`, `cudaHostAlloc`):
    /// a device would go on using the old pages. Pinned pools use relocation instead.
    pub unsafe fn recycle(&self, region: u32, blocks: &[u64]) -> Result<u64, ClientError> {
        let r = self.region(region)?;
        if let Some(&b) = blocks.iter().find(|&&b| b >= r.nblocks()) {
            return Err(ClientError::BlockRange { region, block: b });
        }
        let mut runs = Vec::new();
        coalesce(region, HintKind::Free, blocks, 0, &mut runs);
        let mut dropped = 0u64;
        for e in &runs {
            let addr = r.base + e.first_block * r.block_size;
            let len = e.nblocks as u64 * r.block_size;
            // SAFETY: the range is inside memory the caller registered as its own (tierd
            // checked it at registration); the caller vouches its contents are dead.
            let rc = unsafe {
                libc::madvise(addr as *mut libc::c_void, len as usize, libc::MADV_REMOVE)
            };
            if rc != 0 {
                let e = nix::errno::Errno::last();
                if e != nix::errno::Errno::EINVAL && e != nix::errno::Errno::EOPNOTSUPP {
                    return Err(ClientError::Os {
                        what: "madvise(MADV_REMOVE)",
                        errno: e,
                    });
                }
                // SAFETY: as above.
                let rc = unsafe {
                    libc::madvise(addr as *mut libc::c_void, len as usize, libc::MADV_DONTNEED)
                };
                if rc != 0 {
                    return Err(ClientError::Os {
                        what: "madvise(MADV_DONTNEED)",
                        errno: nix::errno::Errno::last(),
                    });
                }
            }
            dropped += len;
        }
        Ok(dropped)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Stop the watcher first: it holds the other reference to `inner`, whose
        // socket and regions go when the client goes.
        drop(self.watcher.take());
    }
}

/// Whether a placement value is a node (not an error).
pub fn is_node(placement: i32) -> bool {
    placement >= 0 && placement != PLACEMENT_UNKNOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_makes_one_entry_per_run() {
        let mut out = Vec::new();
        coalesce(1, HintKind::Access, &[4, 5, 6, 9, 3, 4], 0, &mut out);
        let runs: Vec<(u64, u32)> = out.iter().map(|e| (e.first_block, e.nblocks)).collect();
        assert_eq!(runs, vec![(4, 3), (9, 1), (3, 2)]);
        out.clear();
        coalesce(1, HintKind::Access, &[], 0, &mut out);
        assert!(out.is_empty());
        coalesce(1, HintKind::Access, &[u64::MAX, 0], 0, &mut out);
        assert_eq!(out.len(), 2, "no wrap-around run");
    }
}
