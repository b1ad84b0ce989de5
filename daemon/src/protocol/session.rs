//! One client connection: who the peer is, what it registered and opened, and the
//! handlers of its control messages (called on the connection's thread).
//!
//! Security rests on one rule: the process acted on is always the peer of the socket,
//! never a pid from a message. The peer is pinned when the connection is accepted
//! (`SO_PEERPIDFD`, or a pidfd of the `SO_PEERCRED` pid whose start time predates the
//! accept: [`crate::access::process`]) together with its credentials then; every
//! request first checks that the peer is still that process with those credentials (a
//! peer that exec'd a set-uid program is no longer the process that connected), and
//! everything read by pid (`/proc/PID/maps`) is read after that check and verified
//! again after the read. REGISTER checks that the whole range is mapped in the peer's
//! address space, so a client can only ever have its own memory read (placement) or
//! moved (prefetch). The placement refresher ends a connection whose peer died or
//! changed credentials ([`PeerWatch`]), even while a child still holds the socket.

use super::pinned::PinnedMap;
use super::pools::{OpenRequest, Peer};
use super::region::{Owner, ShmRegion};
use super::{apply, Hub};
use crate::access::process::{boot_ticks, Creds, Process, ProcessError};
use crate::heat::{flags, Span};
use crate::proc::maps::{migratable_ranges, MapsError};
use nix::sys::socket::UnixCredentials;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tierd_api::AddrRange;
use tierd_client::layout::{state, Geometry, MAX_BLOCKS};
use tierd_client::wire::{Reply, Request};

/// A refused request: errno and message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: i32,
    pub message: String,
}

pub fn refuse(errno: i32, message: impl Into<String>) -> Refusal {
    Refusal {
        errno,
        message: message.into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("peer process {pid}: {source}")]
    Peer { pid: i32, source: ProcessError },
}

/// The peer of a connection as it was when it connected.
#[derive(Debug)]
pub struct PeerWatch {
    process: Process,
    creds: Creds,
}

impl PeerWatch {
    /// Pins the peer of a just-accepted socket and records its credentials.
    pub fn of_socket(sock: &OwnedFd, pid: i32) -> Result<PeerWatch, ProcessError> {
        let process = Process::of_peer(sock.as_fd(), pid, boot_ticks())?;
        let creds = process.creds()?;
        Ok(PeerWatch { process, creds })
    }

    /// Why the peer is no longer the process that connected, if it is not.
    pub fn changed(&self) -> Option<String> {
        use super::peers::Watched;
        self.judge(&self.process.creds())
    }

    /// Still running (no /proc read; for the hot paths).
    pub fn alive(&self) -> bool {
        self.process.alive()
    }
}

impl super::peers::Watched for PeerWatch {
    fn pid(&self) -> i32 {
        self.process.pid()
    }

    fn alive(&self) -> bool {
        self.process.alive()
    }

    fn read_creds(&self) -> Result<Creds, ProcessError> {
        self.process.creds()
    }

    fn judge(&self, now: &Result<Creds, ProcessError>) -> Option<String> {
        let pid = self.process.pid();
        match now {
            Ok(c) if *c == self.creds => None,
            Ok(_) => Some(format!(
                "process {pid} changed its credentials since it connected"
            )),
            Err(e) => Some(e.to_string()),
        }
    }
}

pub struct Session {
    hub: Arc<Hub>,
    conn: u64,
    peer: Peer,
    watch: Arc<PeerWatch>,
    sock: Arc<OwnedFd>,
    regions: Vec<u32>,
    /// This session made the process managed, so it unmanages it at the end.
    managed_by_us: bool,
}

type Handled = Result<(Reply, Option<OwnedFd>), Refusal>;

impl Session {
    pub fn open(
        hub: Arc<Hub>,
        creds: &UnixCredentials,
        sock: Arc<OwnedFd>,
    ) -> Result<Session, SessionError> {
        let pid = creds.pid();
        let watch = PeerWatch::of_socket(&sock, pid)
            .map_err(|source| SessionError::Peer { pid, source })?;
        let conn = hub.next_conn.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(watch);
        hub.watch_peer(conn, watch.clone());
        Ok(Session {
            peer: Peer {
                pid,
                uid: creds.uid(),
                gid: creds.gid(),
                groups: watch.creds.groups.clone(),
            },
            hub,
            conn,
            watch,
            sock,
            regions: Vec::new(),
            managed_by_us: false,
        })
    }

    pub fn handle(&mut self, req: Request) -> (Reply, Option<OwnedFd>) {
        let r = if let Some(why) = self.watch.changed() {
            Err(refuse(libc::ESRCH, why))
        } else {
            match req {
                Request::Register {
                    base,
                    len,
                    block_size,
                } => self.register(base, len, block_size, None),
                Request::RegisterPinned {
                    base,
                    len,
                    block_size,
                    slots,
                } => self.register(base, len, block_size, Some(&slots)),
                Request::Unregister { region } => self.unregister(region),
                Request::PoolOpen { name, bytes, flags } => self.pool_open(&OpenRequest {
                    name: &name,
                    bytes,
                    flags,
                }),
                Request::Advise { bytes, tier } => self.advise(bytes, tier),
            }
        };
        r.unwrap_or_else(|e| {
            (
                Reply::Error {
                    errno: e.errno,
                    message: e.message,
                },
                None,
            )
        })
    }

    /// REGISTER, and REGISTER_PINNED with its `(node, slots)` layout.
    fn register(
        &mut self,
        base: u64,
        len: u64,
        block_size: u64,
        layout: Option<&[(i32, u32)]>,
    ) -> Handled {
        let d = &self.hub.daemon;
        let cfg = d.config();
        let (pid, uid) = (self.peer.pid, self.peer.uid);
        let page = d.engine.page_size();
        if block_size < page || !block_size.is_multiple_of(page) {
            return Err(refuse(
                libc::EINVAL,
                format!("block size {block_size} is not a multiple of the {page}-byte page"),
            ));
        }
        let end = base.checked_add(len).filter(|_| len > 0);
        let Some(end) = end.filter(|_| base.is_multiple_of(page) && len.is_multiple_of(block_size))
        else {
            return Err(refuse(
                libc::EINVAL,
                format!(
                    "region {base:#x}+{len:#x}: base must be page-aligned and the length a \
                     non-zero multiple of the block size {block_size}"
                ),
            ));
        };
        let nblocks = len / block_size;
        if nblocks > MAX_BLOCKS {
            return Err(refuse(
                libc::E2BIG,
                format!("{nblocks} blocks; at most {MAX_BLOCKS} per region"),
            ));
        }
        let pinned = match layout {
            None => None,
            Some(l) => {
                let topo = d.topology();
                let exists = |n: i32| n >= 0 && topo.nodes.iter().any(|x| x.id == n as u32);
                let map = PinnedMap::new(l, nblocks, exists)
                    .map_err(|e| refuse(libc::EINVAL, e.to_string()))?;
                Some(map)
            }
        };
        let range = AddrRange { start: base, end };
        let mapped: u64 = match migratable_ranges(pid, Some(range)) {
            Ok(rs) => rs.iter().map(|r| r.end - r.start).sum(),
            Err(MapsError::NotMapped { .. }) => 0,
            Err(e) => return Err(refuse(libc::ESRCH, e.to_string())),
        };
        if mapped != len {
            return Err(refuse(
                libc::EFAULT,
                format!("{range} is not entirely mapped in process {pid} (the caller)"),
            ));
        }
        // The maps were read by pid: they were the peer's only if it still runs.
        if !self.watch.alive() {
            return Err(refuse(libc::ESRCH, format!("process {pid} exited")));
        }
        let machine_bytes: u64 = d.topology().nodes.iter().map(|n| n.total_bytes).sum();
        let max_bytes = cfg.client.max_registered_bytes_per_uid.of(machine_bytes);
        {
            let mut counts = self
                .hub
                .region_count
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(uid).or_default();
            if n.regions >= cfg.client.max_regions_per_uid {
                return Err(refuse(
                    libc::EDQUOT,
                    format!(
                        "uid {uid} has {} regions (client.max_regions_per_uid = {})",
                        n.regions, cfg.client.max_regions_per_uid
                    ),
                ));
            }
            if n.bytes.saturating_add(len) > max_bytes {
                return Err(refuse(
                    libc::EDQUOT,
                    format!(
                        "uid {uid} has {} bytes registered; {len} more would pass \
                         client.max_registered_bytes_per_uid ({max_bytes} bytes)",
                        n.bytes
                    ),
                ));
            }
            n.regions += 1;
            n.bytes += len;
        }
        let undo_count = |hub: &Hub| {
            let mut counts = hub.region_count.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&uid) {
                n.regions = n.regions.saturating_sub(1);
                n.bytes = n.bytes.saturating_sub(len);
            }
        };
        if d.registry.get(pid).is_none() {
            if let Err(e) = d.registry.manage(pid, cfg.policy.default_policy, 0) {
                undo_count(&self.hub);
                return Err(refuse(libc::ESRCH, e.to_string()));
            }
            self.managed_by_us = true;
            if !self.watch.alive() {
                undo_count(&self.hub);
                return Err(refuse(libc::ESRCH, format!("process {pid} exited")));
            }
        }
        let geo = Geometry::new(cfg.client.ring_entries, nblocks, page)
            .map_err(|e| refuse(libc::EINVAL, e.to_string()));
        let id = self.hub.next_region.fetch_add(1, Ordering::Relaxed);
        let owner = Owner {
            pid,
            uid,
            conn: self.conn,
        };
        let region = geo.and_then(|geo| {
            ShmRegion::create(id, owner, base, block_size, geo, self.sock.clone())
                .map_err(|e| refuse(libc::ENOMEM, e.to_string()))
        });
        let region = match region {
            Ok(r) => Arc::new(r),
            Err(e) => {
                undo_count(&self.hub);
                return Err(e);
            }
        };
        let fd = region
            .fd()
            .try_clone_to_owned()
            .map_err(|e| refuse(libc::EMFILE, e.to_string()))?;
        let shm_bytes = region.view().geometry().total_bytes;
        if let Some(map) = pinned {
            mark_pinned(d, &region, map);
        }
        self.hub
            .regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, region);
        self.regions.push(id);
        tracing::info!(pid, region = id, %range, block_size, nblocks, "client region registered");
        Ok((
            Reply::Registered {
                region: id,
                ring_entries: cfg.client.ring_entries,
                nblocks,
                shm_bytes,
            },
            Some(fd),
        ))
    }

    fn unregister(&mut self, region: u32) -> Handled {
        let Some(i) = self.regions.iter().position(|&r| r == region) else {
            return Err(refuse(
                libc::EINVAL,
                format!("region {region} was not registered on this connection"),
            ));
        };
        self.regions.swap_remove(i);
        self.remove_region(region);
        Ok((Reply::Done, None))
    }

    /// Forgets a region: closed for the client, hints cleared, uid count released.
    fn remove_region(&self, id: u32) {
        let r = self
            .hub
            .regions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(r) = r else { return };
        r.close(state::CLOSED);
        if r.is_pinned() {
            self.hub.daemon.engine.pinned.remove(r.owner.pid, r.id);
        }
        self.hub.daemon.ceilings.forget_region(id);
        {
            let mut counts = self
                .hub
                .region_count
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&r.owner.uid) {
                n.regions = n.regions.saturating_sub(1);
                n.bytes = n.bytes.saturating_sub(r.nblocks * r.block_size);
            }
        }
        let all = r.blocks(0, r.nblocks);
        self.hub.daemon.heat.edit(r.owner.pid, move |t| {
            apply::clear(t, all);
            t.unmark(all, Span::Touching, flags::PINNED);
        });
    }

    fn pool_open(&mut self, req: &OpenRequest<'_>) -> Handled {
        let d = &self.hub.daemon;
        let cfg = d.config();
        let topo = d.topology();
        let open = || {
            self.hub
                .pools
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open(req, &self.peer, self.conn, &cfg.client, &topo)
        };
        let (reply, fd) = match open() {
            // Some of the uid's pools may have no holder left: look, then try again.
            Err(e) if e.errno == libc::EDQUOT => {
                super::pools::sweep(&self.hub.pools);
                open()?
            }
            r => r?,
        };
        Ok((reply, Some(fd)))
    }

    fn advise(&self, bytes: u64, tier: i32) -> Handled {
        let d = &self.hub.daemon;
        let topo = d.topology();
        let cfg = d.config();
        let tiers = topo.tier_count();
        let want = match tier {
            -1 => tiers.saturating_sub(1),
            t if t >= 0 && (t as u32) < tiers => t as u32,
            _ => {
                return Err(refuse(
                    libc::EINVAL,
                    format!(
                        "tier {tier}: this machine has tiers 0..{}",
                        tiers.saturating_sub(1)
                    ),
                ))
            }
        };
        // The requested tier or, when full, the next slower one with room.
        for t in want..tiers {
            let best = topo
                .nodes_in_tier(t)
                .map(|n| {
                    let free = d.topo_src.free_bytes(n.id).unwrap_or(n.free_bytes);
                    (n, free)
                })
                .filter(|(n, free)| {
                    *free >= bytes.saturating_add(cfg.policy.promote_watermark.of(n.total_bytes))
                })
                .max_by_key(|(_, free)| *free);
            if let Some((n, free)) = best {
                return Ok((
                    Reply::Advice {
                        node: n.id as i32,
                        tier: t,
                        free_bytes: free,
                    },
                    None,
                ));
            }
        }
        Err(refuse(
            libc::ENOMEM,
            format!("no node of tier {want} or slower has {bytes} bytes free above its watermark"),
        ))
    }

    /// The connection ended: regions and pool references go; the process is unmanaged
    /// if this session made it managed and no other connection of it has regions.
    pub fn close(self) {
        for &id in &self.regions {
            self.remove_region(id);
        }
        self.hub
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.conn);
        super::pools::sweep(&self.hub.pools);
        self.hub.unwatch_peer(self.conn);
        let pid = self.peer.pid;
        let others = self.hub.regions().iter().any(|r| r.owner.pid == pid);
        if self.managed_by_us && !others {
            let d = &self.hub.daemon;
            // The tiering loop forgets the heat table of a process no longer managed.
            let _ = d.registry.unmanage(pid);
        }
    }
}

/// Makes `r` pinned with `map`: no job of the migration engine touches its pages from
/// now on, the policy leaves its granules to the pinned planner, and the placement
/// table shows the slots' nodes. Called on REGISTER_PINNED and when a move finds a
/// region's pages pinned ([`super::placement`]).
pub fn mark_pinned(d: &crate::state::Daemon, r: &ShmRegion, map: PinnedMap) {
    if !r.make_pinned(map) {
        return;
    }
    let all = r.blocks(0, r.nblocks);
    d.engine.pinned.add(r.owner.pid, r.id, all);
    d.heat.edit(r.owner.pid, move |t| {
        t.mark(all, Span::Touching, flags::PINNED, 0)
    });
    tracing::info!(
        pid = r.owner.pid,
        region = r.id,
        "client region is pinned: placed by relocation"
    );
}
