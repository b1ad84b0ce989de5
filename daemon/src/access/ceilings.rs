//! Per-user ceilings on what tierd does for a user's own processes, so one user cannot
//! take the fast tier or the migration budget from the others. Root (effective uid 0)
//! is never limited: root sets the limits.
//!
//! - **Priority** (`daemon.max_priority_unprivileged`): `manage --priority N` above the
//!   ceiling is refused (not capped: a caller asking for 10 and silently getting 0 would
//!   be misled).
//! - **PIN_FAST** (`client.max_pin_fast_bytes_per_uid`): a uid's pinned bytes (blocks ×
//!   block size over all its regions) stay within the quota; a PIN_FAST entry that
//!   would exceed it is ignored whole and counted (`pin_refused_blocks`). UNPIN, FREE
//!   and RELOCATED release pins; a region that goes releases all of its own.
//! - **Explicit migration** (`migrate.max_rate_mbps_per_uid`): `migrate` requests and
//!   PREFETCH / PIN_FAST promotions of a uid share one token bucket of that rate per
//!   uid. `migrate` waits for it (throttled like the global `migrate.rate_limit_mbps`);
//!   the prefetch thread, which serves every client, never waits: a promotion the
//!   bucket cannot pay now is skipped and counted (`prefetch_throttled_blocks`), and the
//!   blocks keep their hint flags for the policy.
//!
//! Called from the control socket's threads, the hint poller and the prefetch thread;
//! each call takes one short lock.

use crate::migrate::bucket::TokenBucket;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct CeilingCounters {
    /// `manage` requests refused for a priority above the ceiling.
    pub priority_refused: AtomicU64,
    /// Blocks of PIN_FAST entries ignored for the per-uid quota.
    pub pin_refused_blocks: AtomicU64,
    /// Blocks of PREFETCH / PIN_FAST promotions skipped for the per-uid budget.
    pub prefetch_throttled_blocks: AtomicU64,
}

#[derive(Default)]
pub struct Ceilings {
    buckets: Mutex<HashMap<u32, Arc<TokenBucket>>>,
    pins: Mutex<PinLedger>,
    pub counters: CeilingCounters,
}

/// A priority the caller may not set: the message names the key.
pub fn check_priority(priority: i32, root: bool, ceiling: i32) -> Result<(), String> {
    if root || priority <= ceiling {
        return Ok(());
    }
    Err(format!(
        "priority {priority} is above daemon.max_priority_unprivileged = {ceiling}; only \
         root may set more"
    ))
}

impl Ceilings {
    /// Checks a `manage` priority and counts a refusal.
    pub fn priority(&self, priority: i32, root: bool, ceiling: i32) -> Result<(), String> {
        check_priority(priority, root, ceiling).inspect_err(|_| {
            self.counters
                .priority_refused
                .fetch_add(1, Ordering::Relaxed);
        })
    }

    /// The migration bucket of `uid` at `rate_mbps` (None: not limited).
    pub fn bucket(&self, uid: u32, rate_mbps: u64) -> Option<Arc<TokenBucket>> {
        if uid == 0 || rate_mbps == 0 {
            return None;
        }
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = b
            .entry(uid)
            .or_insert_with(|| Arc::new(TokenBucket::new_full(rate_mbps)));
        if bucket.rate_mbps() != rate_mbps {
            bucket.set_rate(rate_mbps);
        }
        Some(bucket.clone())
    }

    /// Whether a promotion of `blocks` blocks (`bytes`) of `uid` may run now; counts
    /// a refusal.
    pub fn try_prefetch(&self, uid: u32, rate_mbps: u64, bytes: u64, blocks: u64) -> bool {
        let Some(b) = self.bucket(uid, rate_mbps) else {
            return true;
        };
        let ok = b.try_take(bytes, Instant::now());
        if !ok {
            self.counters
                .prefetch_throttled_blocks
                .fetch_add(blocks, Ordering::Relaxed);
        }
        ok
    }

    /// Records a PIN_FAST of blocks `[first, first + n)` of `region` (owned by `uid`,
    /// `block_size` bytes a block); false (and counted) when it would take the uid past
    /// `limit_bytes`.
    pub fn pin(
        &self,
        region: u32,
        uid: u32,
        block_size: u64,
        first: u64,
        n: u64,
        limit: u64,
    ) -> bool {
        if uid == 0 {
            return true;
        }
        let ok = self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pin(region, uid, block_size, first, n, limit);
        if !ok {
            self.counters
                .pin_refused_blocks
                .fetch_add(n, Ordering::Relaxed);
        }
        ok
    }

    /// UNPIN / FREE / RELOCATED of blocks `[first, first + n)`.
    pub fn unpin(&self, region: u32, first: u64, n: u64) {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unpin(region, first, n);
    }

    /// The region is gone: its pins are released.
    pub fn forget_region(&self, region: u32) {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(region);
    }

    /// Pinned bytes of `uid` (metrics, tests).
    pub fn pinned_bytes(&self, uid: u32) -> u64 {
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_uid
            .get(&uid)
            .copied()
            .unwrap_or(0)
    }
}

/// Which blocks of which region are pinned, and the bytes per uid.
#[derive(Default)]
struct PinLedger {
    regions: HashMap<u32, RegionPins>,
    by_uid: HashMap<u32, u64>,
}

struct RegionPins {
    uid: u32,
    block_size: u64,
    /// One bit per block, grown to the highest pinned block.
    bits: Vec<u64>,
}

impl RegionPins {
    fn get(&self, b: u64) -> bool {
        self.bits
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    fn set(&mut self, b: u64, on: bool) {
        let i = (b / 64) as usize;
        if i >= self.bits.len() {
            if !on {
                return;
            }
            self.bits.resize(i + 1, 0);
        }
        if on {
            self.bits[i] |= 1 << (b % 64);
        } else {
            self.bits[i] &= !(1 << (b % 64));
        }
    }

    fn count(&self) -> u64 {
        self.bits.iter().map(|w| w.count_ones() as u64).sum()
    }
}

impl PinLedger {
    fn pin(
        &mut self,
        region: u32,
        uid: u32,
        block_size: u64,
        first: u64,
        n: u64,
        limit: u64,
    ) -> bool {
        let r = self.regions.entry(region).or_insert(RegionPins {
            uid,
            block_size,
            bits: Vec::new(),
        });
        let end = first.saturating_add(n);
        let new = (first..end).filter(|&b| !r.get(b)).count() as u64;
        let used = self.by_uid.get(&uid).copied().unwrap_or(0);
        let add = new.saturating_mul(block_size);
        if used.saturating_add(add) > limit {
            return false;
        }
        for b in first..end {
            r.set(b, true);
        }
        *self.by_uid.entry(uid).or_default() += add;
        true
    }

    fn unpin(&mut self, region: u32, first: u64, n: u64) {
        let Some(r) = self.regions.get_mut(&region) else {
            return;
        };
        let end = first.saturating_add(n).min(r.bits.len() as u64 * 64);
        let mut freed = 0;
        for b in first..end {
            if r.get(b) {
                r.set(b, false);
                freed += 1;
            }
        }
        let (uid, bytes) = (r.uid, freed * r.block_size);
        if let Some(u) = self.by_uid.get_mut(&uid) {
            *u = u.saturating_sub(bytes);
        }
    }

    fn forget(&mut self, region: u32) {
        if let Some(r) = self.regions.remove(&region) {
            if let Some(u) = self.by_uid.get_mut(&r.uid) {
                *u = u.saturating_sub(r.count() * r.block_size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_ceiling_binds_everyone_but_root() {
        assert!(check_priority(0, false, 0).is_ok());
        assert!(check_priority(-5, false, 0).is_ok());
        let e = check_priority(10, false, 0).unwrap_err();
        assert!(e.contains("daemon.max_priority_unprivileged = 0"), "{e}");
        assert!(check_priority(10, true, 0).is_ok());
        assert!(check_priority(3, false, 5).is_ok());
        let c = Ceilings::default();
        assert!(c.priority(7, false, 5).is_err());
        assert_eq!(c.counters.priority_refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn pins_are_counted_per_uid_and_released() {
        let c = Ceilings::default();
        const B: u64 = 1 << 20;
        // Quota 4 blocks for uid 1000 over two regions.
        assert!(c.pin(1, 1000, B, 0, 3, 4 * B));
        assert!(c.pin(1, 1000, B, 1, 2, 4 * B), "re-pinning costs nothing");
        assert_eq!(c.pinned_bytes(1000), 3 * B);
        assert!(!c.pin(2, 1000, B, 0, 2, 4 * B), "5 blocks > 4");
        assert_eq!(c.counters.pin_refused_blocks.load(Ordering::Relaxed), 2);
        assert!(c.pin(2, 1000, B, 7, 1, 4 * B));
        assert!(
            c.pin(3, 1001, B, 0, 4, 4 * B),
            "another uid has its own quota"
        );
        c.unpin(1, 0, 2);
        assert_eq!(c.pinned_bytes(1000), 2 * B);
        c.unpin(1, 1 << 40, 5); // beyond anything pinned: nothing
        c.forget_region(2);
        assert_eq!(c.pinned_bytes(1000), B);
        assert!(c.pin(2, 1000, B, 0, 3, 4 * B));
        assert!(c.pin(9, 0, B, 0, 1 << 20, 0), "root is not limited");
        assert_eq!(c.pinned_bytes(0), 0);
    }

    #[test]
    fn migration_budget_is_per_uid() {
        let c = Ceilings::default();
        assert!(c.bucket(0, 10).is_none(), "root");
        assert!(c.bucket(1000, 0).is_none(), "0 = no per-uid cap");
        let a = c.bucket(1000, 10).unwrap();
        assert!(Arc::ptr_eq(&a, &c.bucket(1000, 10).unwrap()));
        assert!(!Arc::ptr_eq(&a, &c.bucket(1001, 10).unwrap()));
        assert_eq!(c.bucket(1000, 20).unwrap().rate_mbps(), 20, "reloaded rate");
        // A fresh bucket holds a quarter second of budget (2.5 MB at 10 MB/s).
        assert!(c.try_prefetch(1002, 10, 2 << 20, 32));
        assert!(!c.try_prefetch(1002, 10, 1 << 20, 16));
        assert_eq!(
            c.counters.prefetch_throttled_blocks.load(Ordering::Relaxed),
            16
        );
        assert!(c.try_prefetch(0, 10, 1 << 40, 1), "root");
    }
}
