//! Prefix pools: named memfds created once and handed to every authorised process, so
//! a system prompt's KV cache exists once.
//!
//! - **Charged to the client.** tierd creates the memfd and sets a preferred-node
//!   policy on it (it maps it, `mbind`s the mapping — for shmem the policy belongs to
//!   the file, so it holds for every process mapping it — and unmaps it) but never
//!   touches a page: each page is allocated where the policy says when a client first
//!   touches it, and charged to that client's memory cgroup. Preferred rather than bind:
//!   a full node then spills over instead of failing the client's fault.
//! - **Names are per uid** unless opened with `SHARED`: a pool `x` of uid 1000 and one
//!   of uid 1001 are different pools, so nobody can squat another user's name. The
//!   shared namespace is for pools meant to be shared: creating one takes root or a
//!   group of `client.allowed_groups`; opening one, the creator's uid, root or such a
//!   group.
//! - **Only the creator writes.** The creator's uid gets a read-write descriptor (unless
//!   it asks `READ_ONLY`); everyone else gets a read-only one (a fresh open of the file,
//!   `O_RDONLY`), which can be mapped `PROT_READ` only, so nobody else can write the
//!   pool or recycle it (`MADV_REMOVE` needs a writable shared mapping). The file is
//!   mode 0600 and owned by tierd, so a read-only holder cannot reopen it read-write
//!   through `/proc/self/fd`.
//! - **Quota by holders.** A pool counts against its creator's
//!   `client.max_pools_per_uid` while a connection that opened it is open *or* any
//!   process holds a descriptor or mapping of it ([`super::holders`], looked at lazily:
//!   when a uid reaches its quota and when connections close, at most once a second).
//!
//! `client.max_pool_bytes` bounds each pool. Called from connection threads.

use super::holders::{self, FileId};
use super::region::sealed_memfd;
use super::session::{refuse, Refusal};
use crate::topology::Topology;
use memmap2::MmapRaw;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tierd_client::wire::{pool_flags, Reply};
use tierd_config::{ClientConfig, PoolTier};

/// Sweeps for pools nobody holds run at most this often.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// The process on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, from `/proc/PID/status`.
    pub groups: Vec<u32>,
}

impl Peer {
    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Whose namespace a pool name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Uid(u32),
    Shared,
}

struct Pool {
    /// tierd's read-write descriptor (never mapped by tierd after creation).
    fd: OwnedFd,
    id: FileId,
    bytes: u64,
    node: i32,
    creator: u32,
    /// Open connections that opened it.
    refs: HashSet<u64>,
}

#[derive(Default)]
pub struct Pools {
    by_name: HashMap<(Scope, String), Pool>,
    last_sweep: Option<Instant>,
}

/// Group names of `allowed_groups` resolved to gids (unknown names are skipped).
fn allowed_gids(cfg: &ClientConfig) -> Vec<u32> {
    cfg.allowed_groups
        .iter()
        .filter_map(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .map(|g| g.gid.as_raw())
        .collect()
}

fn in_allowed_group(peer: &Peer, allowed: &[u32]) -> bool {
    allowed.iter().any(|&g| peer.in_group(g))
}

fn authorised(creator: u32, peer: &Peer, allowed: &[u32]) -> bool {
    peer.uid == 0 || peer.uid == creator || in_allowed_group(peer, allowed)
}

/// A read-only descriptor of the same file: a new open of it, `O_RDONLY`.
fn reopen_read_only(fd: &OwnedFd) -> Result<OwnedFd, Refusal> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::OpenOptions::new()
        .read(true)
        .open(&path)
        .map(OwnedFd::from)
        .map_err(|e| {
            refuse(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("{path}: {e}"),
            )
        })
}

/// One POOL_OPEN.
pub struct OpenRequest<'a> {
    pub name: &'a str,
    pub bytes: u64,
    pub flags: u32,
}

impl Pools {
    /// Opens or creates a pool. `Err` with `EDQUOT` may pass after a [`sweep`].
    pub fn open(
        &mut self,
        req: &OpenRequest<'_>,
        peer: &Peer,
        conn: u64,
        cfg: &ClientConfig,
        topo: &Topology,
    ) -> Result<(Reply, OwnedFd), Refusal> {
        let name = req.name;
        let shared = req.flags & pool_flags::SHARED != 0;
        let scope = if shared {
            Scope::Shared
        } else {
            Scope::Uid(peer.uid)
        };
        let allowed = allowed_gids(cfg);
        if let Some(p) = self.by_name.get_mut(&(scope, name.to_string())) {
            if !authorised(p.creator, peer, &allowed) {
                return Err(refuse(
                    libc::EACCES,
                    format!(
                        "shared pool {name:?} belongs to uid {}; uid {} is neither root nor in \
                         client.allowed_groups",
                        p.creator, peer.uid
                    ),
                ));
            }
            if req.bytes > p.bytes {
                return Err(refuse(
                    libc::EINVAL,
                    format!(
                        "pool {name:?} exists with {} bytes, {} asked",
                        p.bytes, req.bytes
                    ),
                ));
            }
            let read_only = peer.uid != p.creator || req.flags & pool_flags::READ_ONLY != 0;
            let fd = if read_only {
                reopen_read_only(&p.fd)?
            } else {
                p.fd.try_clone()
                    .map_err(|e| refuse(libc::EMFILE, e.to_string()))?
            };
            p.refs.insert(conn);
            let reply = Reply::Pool {
                bytes: p.bytes,
                node: p.node,
                created: false,
                read_only,
            };
            return Ok((reply, fd));
        }
        if shared && peer.uid != 0 && !in_allowed_group(peer, &allowed) {
            return Err(refuse(
                libc::EACCES,
                format!(
                    "creating shared pool {name:?} needs root or a group of \
                     client.allowed_groups; uid {} has neither (open it without SHARED for a \
                     pool of your own)",
                    peer.uid
                ),
            ));
        }
        let bytes = req.bytes;
        if bytes == 0 || bytes > cfg.max_pool_bytes.0 {
            return Err(refuse(
                libc::EFBIG,
                format!(
                    "pool of {bytes} bytes: must be 1..={} (client.max_pool_bytes)",
                    cfg.max_pool_bytes.0
                ),
            ));
        }
        let created = self.count(peer.uid);
        if created >= cfg.max_pools_per_uid {
            return Err(refuse(
                libc::EDQUOT,
                format!(
                    "uid {} holds {created} pools (client.max_pools_per_uid); a pool counts \
                     until no process holds a descriptor or mapping of it",
                    peer.uid
                ),
            ));
        }
        let tier = match cfg.pool_tier {
            PoolTier::Fast => 0,
            PoolTier::Slow => topo.tier_count().saturating_sub(1),
        };
        let Some(node) = topo
            .nodes_in_tier(tier)
            .filter(|n| n.free_bytes >= bytes)
            .max_by_key(|n| n.free_bytes)
            .map(|n| n.id)
        else {
            return Err(refuse(
                libc::ENOMEM,
                format!("no node of tier {tier} has {bytes} bytes free for pool {name:?}"),
            ));
        };
        let fd = create(name, bytes, node)?;
        let id = holders::file_id(&fd).map_err(|e| refuse(libc::EIO, e.to_string()))?;
        let read_only = req.flags & pool_flags::READ_ONLY != 0;
        let out = if read_only {
            reopen_read_only(&fd)?
        } else {
            fd.try_clone()
                .map_err(|e| refuse(libc::EMFILE, e.to_string()))?
        };
        tracing::info!(
            pool = name,
            bytes,
            node,
            shared,
            uid = peer.uid,
            "pool created"
        );
        self.by_name.insert(
            (scope, name.to_string()),
            Pool {
                fd,
                id,
                bytes,
                node: node as i32,
                creator: peer.uid,
                refs: HashSet::from([conn]),
            },
        );
        Ok((
            Reply::Pool {
                bytes,
                node: node as i32,
                created: true,
                read_only,
            },
            out,
        ))
    }

    /// Pools `uid` created that are still in the table.
    pub fn count(&self, uid: u32) -> u32 {
        self.by_name.values().filter(|p| p.creator == uid).count() as u32
    }

    /// A connection closed: its references go. The pools stay until a [`sweep`] finds
    /// nobody holding them.
    pub fn release(&mut self, conn: u64) {
        for p in self.by_name.values_mut() {
            p.refs.remove(&conn);
        }
    }

    /// The files of pools no open connection references, if a sweep is due at `now`.
    fn sweep_candidates(&mut self, now: Instant) -> Option<HashSet<FileId>> {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_PERIOD)
        {
            return None;
        }
        self.last_sweep = Some(now);
        let ids: HashSet<FileId> = self
            .by_name
            .values()
            .filter(|p| p.refs.is_empty())
            .map(|p| p.id)
            .collect();
        (!ids.is_empty()).then_some(ids)
    }

    /// Drops the pools among `candidates` that nobody `held` and no connection opened
    /// meanwhile.
    fn drop_unheld(&mut self, candidates: &HashSet<FileId>, held: &HashSet<FileId>) {
        self.by_name.retain(|(_, name), p| {
            let gone = p.refs.is_empty() && candidates.contains(&p.id) && !held.contains(&p.id);
            if gone {
                tracing::info!(pool = %name, uid = p.creator, "pool released: nobody holds it");
            }
            !gone
        });
    }
}

/// Forgets the pools nobody holds any more (at most once per [`SWEEP_PERIOD`]); the
/// look at `/proc` runs without the pools lock.
pub fn sweep(pools: &Mutex<Pools>) {
    let candidates = pools
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sweep_candidates(Instant::now());
    let Some(candidates) = candidates else {
        return;
    };
    let held = holders::held(
        std::path::Path::new("/proc"),
        &candidates,
        std::process::id(),
    );
    pools
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drop_unheld(&candidates, &held);
}

const MPOL_PREFERRED: libc::c_long = 1;

/// Creates the pool's memfd (mode 0600) with a preferred-node policy for `node`; no
/// page is allocated.
fn create(name: &str, bytes: u64, node: u32) -> Result<OwnedFd, Refusal> {
    let fd = sealed_memfd(&format!("tierd-pool-{name}"), bytes)
        .map_err(|e| refuse(e as i32, format!("pool {name:?}: memfd: {e}")))?;
    nix::sys::stat::fchmod(
        fd.as_raw_fd(),
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(|e| refuse(e as i32, format!("pool {name:?}: fchmod: {e}")))?;
    let file = File::from(
        fd.try_clone()
            .map_err(|e| refuse(libc::EMFILE, e.to_string()))?,
    );
    let map = MmapRaw::map_raw(&file)
        .map_err(|e| refuse(libc::ENOMEM, format!("pool {name:?}: mmap: {e}")))?;
    let mut mask = [0u64; 16];
    if node as usize >= mask.len() * 64 {
        return Err(refuse(libc::EINVAL, format!("node {node} out of range")));
    }
    mask[node as usize / 64] |= 1 << (node % 64);
    // SAFETY: mbind on our own live mapping of map.len() bytes; `mask` holds 1024 bits.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            map.as_mut_ptr(),
            map.len(),
            MPOL_PREFERRED,
            mask.as_ptr(),
            (mask.len() * 64 + 1) as libc::c_ulong,
            0 as libc::c_long,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(refuse(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("pool {name:?}: mbind to node {node}: {e}"),
        ));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: Vec<u32>) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups,
        }
    }

    #[test]
    fn authorisation() {
        let p = peer(1000, 100, vec![27]);
        assert!(authorised(1000, &p, &[]), "creator");
        assert!(!authorised(1001, &p, &[]), "another uid");
        assert!(authorised(1001, &p, &[27]), "allowed supplementary group");
        assert!(authorised(1001, &p, &[100]), "allowed primary group");
        assert!(authorised(1001, &peer(0, 0, vec![]), &[]), "root");
    }

    #[test]
    fn sweeps_are_rate_limited_and_spare_referenced_pools() {
        let mut pools = Pools::default();
        let fd = sealed_memfd("tierd-pool-test", 4096).unwrap();
        let id = holders::file_id(&fd).unwrap();
        pools.by_name.insert(
            (Scope::Uid(7), "a".into()),
            Pool {
                fd,
                id,
                bytes: 4096,
                node: 0,
                creator: 7,
                refs: HashSet::from([1]),
            },
        );
        let t0 = Instant::now();
        assert_eq!(pools.sweep_candidates(t0), None, "referenced");
        pools.release(1);
        assert_eq!(pools.sweep_candidates(t0), None, "too soon after the last");
        let c = pools.sweep_candidates(t0 + SWEEP_PERIOD).unwrap();
        assert!(c.contains(&id));
        pools.drop_unheld(&c, &HashSet::from([id]));
        assert_eq!(pools.count(7), 1, "held by some process: kept");
        pools.drop_unheld(&c, &HashSet::new());
        assert_eq!(pools.count(7), 0);
    }
}
