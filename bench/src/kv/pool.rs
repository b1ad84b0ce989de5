//! The KV block pool: fixed slots; a request's prompt block with a known prefix hash
//! reuses the slot already holding it; unreferenced hashed blocks stay cached and are
//! evicted least recently released first; unhashed blocks are freed at release.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default)]
struct Slot {
    refs: u32,
    hash: Option<u64>,
    /// Key in `lru` while cached unreferenced.
    stamp: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Acquires that found the hash already in the pool.
    pub reused: u64,
    /// Acquires that took a fresh slot (the caller writes the block).
    pub filled: u64,
    /// Cached blocks dropped to make room.
    pub evicted: u64,
}

#[derive(Debug)]
pub struct BlockPool {
    slots: Vec<Slot>,
    /// Free slots, popped from the end (lowest index first at the start).
    free: Vec<u32>,
    lru: BTreeMap<u64, u32>,
    by_hash: HashMap<u64, u32>,
    clock: u64,
    pub stats: PoolStats,
}

/// What an acquire got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub slot: u32,
    /// True: the slot's contents are new and must be written (prefill / decode).
    pub fresh: bool,
}

impl BlockPool {
    pub fn new(slots: u32) -> BlockPool {
        BlockPool {
            slots: vec![Slot::default(); slots as usize],
            free: (0..slots).rev().collect(),
            lru: BTreeMap::new(),
            by_hash: HashMap::new(),
            clock: 0,
            stats: PoolStats::default(),
        }
    }

    /// A slot holding `hash` (reused if cached) or a fresh one; None if every slot is
    /// referenced.
    pub fn acquire(&mut self, hash: Option<u64>) -> Option<Acquired> {
        if let Some(&s) = hash.and_then(|h| self.by_hash.get(&h)) {
            let slot = &mut self.slots[s as usize];
            if slot.refs == 0 {
                self.lru.remove(&slot.stamp);
            }
            slot.refs += 1;
            self.stats.reused += 1;
            return Some(Acquired {
                slot: s,
                fresh: false,
            });
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                let (_, s) = self.lru.pop_first()?;
                if let Some(old) = self.slots[s as usize].hash.take() {
                    self.by_hash.remove(&old);
                }
                self.stats.evicted += 1;
                s
            }
        };
        let slot = &mut self.slots[s as usize];
        slot.refs = 1;
        slot.hash = hash;
        if let Some(h) = hash {
            self.by_hash.insert(h, s);
        }
        self.stats.filled += 1;
        Some(Acquired {
            slot: s,
            fresh: true,
        })
    }

    /// Drops one reference; an unreferenced hashed block stays cached (LRU), an
    /// unhashed one is freed.
    pub fn release(&mut self, s: u32) {
        let slot = &mut self.slots[s as usize];
        debug_assert!(slot.refs > 0, "release of an unreferenced slot {s}");
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs > 0 {
            return;
        }
        if slot.hash.is_some() {
            self.clock += 1;
            slot.stamp = self.clock;
            self.lru.insert(self.clock, s);
        } else {
            self.free.push(s);
        }
    }

    /// Whether slot `s` is on the free list (unreferenced, contents dead).
    pub fn is_free(&self, s: u32) -> bool {
        let slot = &self.slots[s as usize];
        slot.refs == 0 && slot.hash.is_none()
    }

    pub fn slots(&self) -> u32 {
        self.slots.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_and_lru_eviction() {
        let mut p = BlockPool::new(2);
        let a = p.acquire(Some(1)).unwrap();
        assert!(a.fresh);
        let b = p.acquire(Some(1)).unwrap();
        assert_eq!((b.slot, b.fresh), (a.slot, false));
        let c = p.acquire(Some(2)).unwrap();
        assert!(p.acquire(Some(3)).is_none(), "all referenced");
        p.release(a.slot);
        p.release(a.slot);
        p.release(c.slot);
        // hash 1 released first: evicted first.
        let d = p.acquire(Some(3)).unwrap();
        assert_eq!(d.slot, a.slot);
        assert!(p.acquire(Some(2)).is_some_and(|x| !x.fresh));
        assert_eq!(
            p.stats,
            PoolStats {
                reused: 2,
                filled: 3,
                evicted: 1
            }
        );
    }

    #[test]
    fn unhashed_blocks_are_freed() {
        let mut p = BlockPool::new(1);
        let a = p.acquire(None).unwrap();
        assert!(!p.is_free(a.slot));
        p.release(a.slot);
        assert!(p.is_free(a.slot));
        assert!(p.acquire(None).is_some());
        assert_eq!(p.stats.evicted, 0);
    }
}
