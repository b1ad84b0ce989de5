//! The shared-memory protocol for inference processes: the client socket
//! (`client.socket`), hint rings, placement tables and shared prefix pools.
//! Byte layout and message formats: `docs/protocol.md`; client side: `tierd_client`.
//!
//! Threads and cadence:
//! - `tierd-client` accepts connections ([`server`]); each connection gets a thread that
//!   answers its control messages ([`session`]: REGISTER, UNREGISTER, POOL_OPEN, ADVISE)
//!   and, when the peer closes or dies, drops its regions and pool references;
//! - `tierd-hints` ([`poller`]) drains every region's ring about every millisecond,
//!   validates each entry and applies it to the process's heat table ([`apply`]);
//!   PREFETCH / PIN_FAST ranges go to
//! - `tierd-prefetch` ([`placement`]), which promotes them at once through the migration
//!   engine and writes their placement back, and
//! - `tierd-placement` ([`placement`]), which writes tierd's own moves into the
//!   placement tables as they happen ([`moves`]) and, every [`REFRESH_PERIOD`], takes a
//!   step of a budgeted sweep over every table for the moves tierd did not make
//!   ([`sweep`]).
//!
//! Like the control socket, this module only reads state and sends commands into the
//! sampling → heat → policy → migrate flow: hints become heat and flags the policy
//! honours; the only pages it moves itself are prefetches and pins, of the caller's
//! own registered ranges. The peer is identified by `SO_PEERCRED` + pidfd only.

pub mod apply;
pub mod holders;
pub mod moves;
pub mod peers;
pub mod pinned;
pub mod placement;
pub mod poller;
pub mod pools;
pub mod region;
pub mod relocate;
pub mod server;
pub mod session;
pub mod steps;
pub mod sweep;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod permission_tests;
#[cfg(test)]
mod pinned_tests;
#[cfg(test)]
mod sweep_tests;
#[cfg(test)]
mod tests;

use crate::state::Daemon;
use anyhow::Context;
use region::ShmRegion;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How often the poller looks at the rings when they were empty.
pub const POLL_PERIOD: Duration = Duration::from_millis(1);
/// How often `tierd-placement` ends departed peers, re-reads the fast nodes' free memory
/// and steps the placement sweep ([`sweep`]).
pub const REFRESH_PERIOD: Duration = Duration::from_millis(100);

/// What one uid has registered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UidRegions {
    pub regions: u32,
    pub bytes: u64,
}

/// State shared by the protocol's threads.
pub struct Hub {
    pub daemon: Arc<Daemon>,
    regions: RwLock<BTreeMap<u32, Arc<ShmRegion>>>,
    next_region: AtomicU32,
    next_conn: AtomicU64,
    pub pools: Mutex<pools::Pools>,
    /// The peer of every open connection, for the refresher's identity check.
    peers: RwLock<HashMap<u64, Arc<session::PeerWatch>>>,
    /// Regions and registered bytes per uid, for `client.max_regions_per_uid` and
    /// `client.max_registered_bytes_per_uid`.
    region_count: Mutex<HashMap<u32, UidRegions>>,
    prefetch_tx: crossbeam_channel::Sender<placement::Prefetch>,
    /// Free bytes of the fast nodes, re-read by the placement refresher every
    /// [`REFRESH_PERIOD`] and lowered by every prefetch: the prefetch path's headroom
    /// check without a sysfs read (milliseconds under TCG).
    fast_free: Mutex<HashMap<u32, u64>>,
    /// Hint entries the poller sent to the heat tables' owner and it has not applied
    /// yet ([`poller::MAX_BACKLOG_ENTRIES`]).
    hint_backlog: Arc<AtomicUsize>,
}

impl Hub {
    fn new(
        daemon: Arc<Daemon>,
        prefetch_tx: crossbeam_channel::Sender<placement::Prefetch>,
    ) -> Hub {
        Hub {
            daemon,
            regions: RwLock::new(BTreeMap::new()),
            next_region: AtomicU32::new(1),
            next_conn: AtomicU64::new(1),
            pools: Mutex::new(pools::Pools::default()),
            peers: RwLock::new(HashMap::new()),
            region_count: Mutex::new(HashMap::new()),
            prefetch_tx,
            fast_free: Mutex::new(HashMap::new()),
            hint_backlog: Arc::default(),
        }
    }

    /// Every live region (a snapshot of Arcs; cheap).
    pub fn regions(&self) -> Vec<Arc<ShmRegion>> {
        self.regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The live regions `pid` registered that overlap `span`.
    pub fn regions_within(&self, pid: i32, span: tierd_api::AddrRange) -> Vec<Arc<ShmRegion>> {
        self.regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.owner.pid == pid)
            .filter(|r| r.base < span.end && span.start < r.base + r.nblocks * r.block_size)
            .cloned()
            .collect()
    }

    pub fn region(&self, id: u32) -> Option<Arc<ShmRegion>> {
        self.regions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Drops a client whose ring is corrupt: marks its regions, shuts its socket down so
    /// its connection thread cleans up. Other clients are not touched.
    pub fn drop_client(&self, conn: u64, why: &dyn std::fmt::Display) {
        self.end_client(conn, tierd_client::layout::state::CORRUPT, why);
    }

    fn watch_peer(&self, conn: u64, w: Arc<session::PeerWatch>) {
        self.peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conn, w);
    }

    fn unwatch_peer(&self, conn: u64) {
        self.peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn);
    }

    /// Whether the peer of `conn` is still running (cheap: one poll of its pidfd).
    pub fn peer_alive(&self, conn: u64) -> bool {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&conn)
            .is_some_and(|w| w.alive())
    }

    /// Ends the connections with regions whose peer died or changed credentials (their
    /// regions close, their sockets are shut down). Called by the placement refresher.
    /// Credentials are read once per peer process, not per connection ([`peers`]).
    pub fn end_departed_peers(&self) {
        let conns: std::collections::BTreeSet<u64> =
            self.regions().iter().map(|r| r.owner.conn).collect();
        let mut watched = Vec::with_capacity(conns.len());
        let mut gone = Vec::new();
        {
            let peers = self.peers.read().unwrap_or_else(|p| p.into_inner());
            for conn in conns {
                match peers.get(&conn) {
                    Some(w) => watched.push((conn, w.clone())),
                    None => gone.push((conn, "connection closed".to_string())),
                }
            }
        }
        let list: Vec<(u64, &session::PeerWatch)> =
            watched.iter().map(|(c, w)| (*c, &**w)).collect();
        gone.extend(peers::departed(&list));
        for (conn, why) in gone {
            self.end_client(conn, tierd_client::layout::state::CLOSED, &why);
        }
    }

    /// Marks the regions of `conn` with `state` and shuts its socket down.
    fn end_client(&self, conn: u64, state: u32, why: &dyn std::fmt::Display) {
        let mut sock = None;
        for r in self.regions().into_iter().filter(|r| r.owner.conn == conn) {
            r.close(state);
            sock = Some(r.conn_sock.clone());
        }
        if let Some(s) = sock {
            tracing::warn!(conn, reason = %why, "ending protocol client");
            let _ = nix::sys::socket::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&*s),
                nix::sys::socket::Shutdown::Both,
            );
        }
    }
}

/// A running protocol server (threads stop when the daemon shuts down).
pub struct Server {
    pub hub: Arc<Hub>,
}

impl Server {
    /// Binds `path` with `mode` (and `client.socket_group`) and starts the protocol's threads.
    pub fn start(daemon: &Arc<Daemon>, path: &Path, mode: u32) -> anyhow::Result<Server> {
        let gid = daemon
            .config()
            .client
            .socket_gid()
            .map_err(crate::sockets::invalid)?;
        let listener = server::bind(path, mode, gid)?;
        let (tx, rx) = crossbeam_channel::bounded(4096);
        let hub = Arc::new(Hub::new(daemon.clone(), tx));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .with_context(|| format!("spawning {name}"))
        };
        let h = hub.clone();
        let p = path.to_path_buf();
        spawn(
            "tierd-client",
            Box::new(move || server::serve(listener, h, p)),
        )?;
        let h = hub.clone();
        spawn("tierd-hints", Box::new(move || poller::run(h)))?;
        let h = hub.clone();
        spawn(
            "tierd-prefetch",
            Box::new(move || placement::run_prefetch(h, rx)),
        )?;
        let (notice_tx, notice_rx) = crossbeam_channel::bounded(moves::QUEUE);
        daemon.engine.set_observer(Arc::new(moves::MoveNotices::new(
            Arc::downgrade(&hub),
            notice_tx,
        )));
        let h = hub.clone();
        spawn(
            "tierd-placement",
            Box::new(move || placement::run_refresh(h, notice_rx)),
        )?;
        Ok(Server { hub })
    }
}

/// Starts the client socket server when `client.enabled`.
pub fn start(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    let cfg = daemon.config();
    if !cfg.client.enabled {
        tracing::info!("client protocol disabled (client.enabled = false)");
        return Ok(());
    }
    let mode = cfg
        .client
        .mode_bits()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;
    Server::start(daemon, &cfg.client.socket, mode)?;
    tracing::info!(socket = %cfg.client.socket.display(), "client protocol socket ready");
    Ok(())
}
