//! Shared prefix pools: named memfds created once and handed to every authorised
//! process, so a system prompt's KV cache exists once.
//!
//! tierd cannot mbind another process's mapping, so it maps the new memfd itself, sets
//! a preferred-node policy on that mapping (for shmem the policy belongs to the file,
//! so it holds for every process mapping it), touches every page so each is allocated
//! there now, reads back where the first page landed and unmaps. Preferred rather than
//! bind: a full node then spills over instead of OOM-killing the daemon.
//!
//! Who may open: the creator's uid, root, or a member of `client.allowed_groups`. Limits:
//! `client.max_pools_per_uid` live pools created per uid, `client.max_pool_bytes` each.
//! A pool lives while at least one connection that opened it is open; processes that
//! mapped it keep their mapping after that. Called from connection threads.

use super::region::sealed_memfd;
use super::session::{refuse, Refusal};
use crate::migrate::Mover;
use crate::topology::Topology;
use memmap2::MmapRaw;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use tierd_client::wire::Reply;
use tierd_config::{ClientConfig, PoolTier};

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
    pub fn new(pid: i32, uid: u32, gid: u32) -> Peer {
        let groups = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                    g.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
            })
            .unwrap_or_default();
        Peer {
            pid,
            uid,
            gid,
            groups,
        }
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

struct Pool {
    fd: OwnedFd,
    bytes: u64,
    node: i32,
    creator: u32,
    /// Connections that opened it.
    refs: HashSet<u64>,
}

#[derive(Default)]
pub struct Pools {
    by_name: HashMap<String, Pool>,
}

/// Group names of `allowed_groups` resolved to gids (unknown names are skipped).
fn allowed_gids(cfg: &ClientConfig) -> Vec<u32> {
    cfg.allowed_groups
        .iter()
        .filter_map(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .map(|g| g.gid.as_raw())
        .collect()
}

fn authorised(creator: u32, peer: &Peer, allowed: &[u32]) -> bool {
    peer.uid == 0 || peer.uid == creator || allowed.iter().any(|&g| peer.in_group(g))
}

impl Pools {
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        name: &str,
        bytes: u64,
        peer: &Peer,
        conn: u64,
        cfg: &ClientConfig,
        topo: &Topology,
        mover: &dyn Mover,
    ) -> Result<(Reply, OwnedFd), Refusal> {
        if let Some(p) = self.by_name.get_mut(name) {
            if !authorised(p.creator, peer, &allowed_gids(cfg)) {
                return Err(refuse(
                    libc::EACCES,
                    format!(
                        "pool {name:?} belongs to uid {}; uid {} is not allowed",
                        p.creator, peer.uid
                    ),
                ));
            }
            if bytes > p.bytes {
                return Err(refuse(
                    libc::EINVAL,
                    format!("pool {name:?} exists with {} bytes, {bytes} asked", p.bytes),
                ));
            }
            let fd =
                p.fd.try_clone()
                    .map_err(|e| refuse(libc::EMFILE, e.to_string()))?;
            p.refs.insert(conn);
            let reply = Reply::Pool {
                bytes: p.bytes,
                node: p.node,
                created: false,
            };
            return Ok((reply, fd));
        }
        if bytes == 0 || bytes > cfg.max_pool_bytes.0 {
            return Err(refuse(
                libc::EFBIG,
                format!(
                    "pool of {bytes} bytes: must be 1..={} (client.max_pool_bytes)",
                    cfg.max_pool_bytes.0
                ),
            ));
        }
        let created = self
            .by_name
            .values()
            .filter(|p| p.creator == peer.uid)
            .count() as u32;
        if created >= cfg.max_pools_per_uid {
            return Err(refuse(
                libc::EDQUOT,
                format!(
                    "uid {} has {created} pools (client.max_pools_per_uid)",
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
        let (fd, placed) = create(name, bytes, node, mover)?;
        let out = fd
            .try_clone()
            .map_err(|e| refuse(libc::EMFILE, e.to_string()))?;
        tracing::info!(
            pool = name,
            bytes,
            node,
            placed,
            uid = peer.uid,
            "shared pool created"
        );
        self.by_name.insert(
            name.to_string(),
            Pool {
                fd,
                bytes,
                node: placed,
                creator: peer.uid,
                refs: HashSet::from([conn]),
            },
        );
        Ok((
            Reply::Pool {
                bytes,
                node: placed,
                created: true,
            },
            out,
        ))
    }

    /// A connection closed: drop its references; pools nobody holds are forgotten.
    pub fn release(&mut self, conn: u64) {
        self.by_name.retain(|name, p| {
            p.refs.remove(&conn);
            if p.refs.is_empty() {
                tracing::info!(pool = %name, "shared pool released by its last holder");
            }
            !p.refs.is_empty()
        });
    }
}

const MPOL_PREFERRED: libc::c_long = 1;

/// Creates the pool's memfd and allocates its pages on `node`; returns the fd and the
/// node its first page landed on (a negative errno if that could not be read).
fn create(name: &str, bytes: u64, node: u32, mover: &dyn Mover) -> Result<(OwnedFd, i32), Refusal> {
    let fd = sealed_memfd(&format!("tierd-pool-{name}"), bytes)
        .map_err(|e| refuse(e as i32, format!("pool {name:?}: memfd: {e}")))?;
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
    let page = crate::migrate::page_size() as usize;
    for off in (0..map.len()).step_by(page) {
        // SAFETY: off < map.len(); writing a zero into a fresh zero page allocates it
        // under the policy without changing its contents.
        unsafe { map.as_mut_ptr().add(off).write_volatile(0) };
    }
    let mut status = [0i32];
    let placed = match mover.query(
        std::process::id() as i32,
        &[map.as_ptr() as u64],
        &mut status,
    ) {
        Ok(()) => status[0],
        Err(_) => -libc::EIO,
    };
    Ok((fd, placed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorisation() {
        let peer = Peer {
            pid: 1,
            uid: 1000,
            gid: 100,
            groups: vec![27],
        };
        assert!(authorised(1000, &peer, &[]), "creator");
        assert!(!authorised(1001, &peer, &[]), "another uid");
        assert!(
            authorised(1001, &peer, &[27]),
            "allowed supplementary group"
        );
        assert!(authorised(1001, &peer, &[100]), "allowed primary group");
        let root = Peer { uid: 0, ..peer };
        assert!(authorised(1001, &root, &[]));
    }

    #[test]
    fn peer_groups_are_read_from_proc() {
        let me = Peer::new(std::process::id() as i32, 0, 0);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(me.groups.len(), line.split_whitespace().count() - 1);
    }
}
