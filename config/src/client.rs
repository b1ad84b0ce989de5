//! `[client]`: the shared-memory protocol for inference processes.

use crate::{socket, Amount, Bytes, Invalid};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a shared prefix pool is placed when created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolTier {
    /// Tier 0.
    Fast,
    /// The lowest tier (CXL), as the seed's `shared_prefix_pool`.
    Slow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    pub enabled: bool,
    pub socket: PathBuf,
    /// Octal permission bits of the socket, as a string (`"0660"`).
    pub socket_mode: String,
    /// Group of the client socket (a name or a numeric gid); unset: root's group.
    pub socket_group: Option<String>,
    /// Client connections open at once.
    pub max_connections: u32,
    /// Client connections open at once per non-root uid.
    pub max_connections_per_uid: u32,
    /// A reply the client does not read within this long drops the connection.
    pub write_timeout_ms: u64,
    /// Groups (besides root and the pool's creator uid) allowed to open pools.
    pub allowed_groups: Vec<String>,
    pub max_regions_per_uid: u32,
    /// Bytes of address space one uid may have registered at once, over all its
    /// regions: bytes, or a percentage of the machine's memory (all nodes). tierd's
    /// bookkeeping for hinted memory follows registered bytes, so this bounds what a
    /// client can make tierd spend; a KV pool larger than the machine's memory is never
    /// resident anyway.
    pub max_registered_bytes_per_uid: Amount,
    pub max_pools_per_uid: u32,
    pub max_pool_bytes: Bytes,
    /// Bytes of registered blocks a uid other than root may hold PIN_FAST at once.
    pub max_pin_fast_bytes_per_uid: Bytes,
    /// Hint ring capacity, entries (a power of two).
    pub ring_entries: u32,
    pub pool_tier: PoolTier,
    /// Keep sampling processes that send hints. Off by default: hints are the signal for
    /// the memory they cover, and sampling is the fallback for processes that send none
    /// (a process goes back to being sampled `HINT_QUIET_MS` after its last hint).
    pub sample_hinting_processes: bool,
    /// Percent of each pinned region's fast slots tierd keeps free (or holding shadows)
    /// for the client's new blocks, by asking it to demote cold blocks ahead of need
    /// (0: demotions only make room for promotions).
    pub pinned_headroom_percent: u32,
    /// Pages a second the placement refresher may query (`move_pages`) to find moves
    /// tierd did not make (kernel reclaim, NUMA balancing, other tools): a full sweep of
    /// the registered blocks takes blocks / this many seconds. tierd's own moves reach
    /// the placement tables without a query.
    pub placement_sweep_pages_per_s: u64,
    /// Longest sleep of the hint poller between passes while every ring is empty: it
    /// polls every millisecond while hints arrive and doubles its sleep after each empty
    /// pass up to this, so an idle client costs ~1/this wake-ups a second and the first
    /// hint after a quiet spell waits up to this long. 1: always poll every millisecond.
    pub hint_poll_max_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            enabled: true,
            socket: PathBuf::from("/run/tierd/client.sock"),
            socket_mode: "0660".into(),
            socket_group: None,
            max_connections: 1024,
            max_connections_per_uid: 256,
            write_timeout_ms: 5_000,
            allowed_groups: Vec::new(),
            max_regions_per_uid: 64,
            max_registered_bytes_per_uid: Amount::Percent(100.0),
            max_pools_per_uid: 16,
            max_pool_bytes: Bytes(64 << 30),
            max_pin_fast_bytes_per_uid: Bytes(1 << 30),
            ring_entries: 65536,
            pool_tier: PoolTier::Slow,
            sample_hinting_processes: false,
            pinned_headroom_percent: 0,
            placement_sweep_pages_per_s: 10_000,
            hint_poll_max_ms: 4,
        }
    }
}

impl ClientConfig {
    /// The socket mode as bits.
    pub fn mode_bits(&self) -> Result<u32, Invalid> {
        socket::mode_bits("client.socket_mode", &self.socket_mode)
    }

    /// The client socket's group, resolved; `None` when unset.
    pub fn socket_gid(&self) -> Result<Option<u32>, Invalid> {
        self.socket_group
            .as_deref()
            .map(|g| socket::group_gid("client.socket_group", g))
            .transpose()
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        self.mode_bits()?;
        self.socket_gid()?;
        for (key, n) in [
            ("client.max_connections", self.max_connections as u64),
            (
                "client.max_connections_per_uid",
                self.max_connections_per_uid as u64,
            ),
            ("client.write_timeout_ms", self.write_timeout_ms),
            (
                "client.placement_sweep_pages_per_s",
                self.placement_sweep_pages_per_s,
            ),
            ("client.hint_poll_max_ms", self.hint_poll_max_ms),
        ] {
            if n == 0 {
                return Err(Invalid::new(key, "must be at least 1"));
            }
        }
        if !self.ring_entries.is_power_of_two() || self.ring_entries < 64 {
            return Err(Invalid::new(
                "client.ring_entries",
                format!("{} must be a power of two >= 64", self.ring_entries),
            ));
        }
        if self.hint_poll_max_ms > 1000 {
            return Err(Invalid::new(
                "client.hint_poll_max_ms",
                format!("{} is over 1000", self.hint_poll_max_ms),
            ));
        }
        if self.pinned_headroom_percent > 100 {
            return Err(Invalid::new(
                "client.pinned_headroom_percent",
                format!("{} is over 100", self.pinned_headroom_percent),
            ));
        }
        if !self.socket.is_absolute() {
            return Err(Invalid::new("client.socket", "must be an absolute path"));
        }
        Ok(())
    }
}
