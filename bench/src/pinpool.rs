//! The client's side of a pinned region (`docs/protocol.md`, "Pinned regions"): slots
//! laid out per node up front, a block table (logical block → slot), free slots per
//! node, and shadow copies. tierd asks for a block's contents on another node; this
//! decides how to serve it: re-point to a valid shadow already on that node (no copy),
//! copy into a free slot there (or into another block's shadow, dropping it), or
//! decline when the node has no slot left.
//!
//! Pure bookkeeping: the caller copies the bytes and sends MOVED / DECLINED. Used by
//! `pinbench` and `kvreplay --pinned` in the VM; the Python pool
//! (`clients/python/tierd/kvpool.py`) follows the same rules. Room on a node is a set
//! lookup, so pools of thousands of slots serve a request in O(log n).

use std::collections::{BTreeMap, BTreeSet};

/// How to serve one relocation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Copy slot `from` into slot `to`, then acknowledge MOVED(from, to).
    Copy { from: u64, to: u64 },
    /// `to` already holds the same contents: acknowledge MOVED(from, to), no copy.
    Repoint { from: u64, to: u64 },
    /// No slot on that node (or the slot holds no block): acknowledge DECLINED.
    Decline,
}

#[derive(Debug, Clone)]
pub struct SlotPool {
    node: Vec<i32>,
    /// Slot → logical block it holds.
    holder: Vec<Option<usize>>,
    /// Slot → logical block it is a shadow of.
    shadow_of: Vec<Option<usize>>,
    /// Logical block → its slot, and its shadow slot.
    table: Vec<Option<u64>>,
    shadow: Vec<Option<u64>>,
    /// Per node, lowest first: slots holding nothing, and slots holding only a shadow
    /// (so finding room is a set lookup, not a scan of a pool of thousands of slots).
    free: BTreeMap<i32, BTreeSet<u64>>,
    shadows: BTreeMap<i32, BTreeSet<u64>>,
    pub copies: u64,
    pub repoints: u64,
    pub declines: u64,
}

impl SlotPool {
    /// Slots laid out as `(node, count)` runs; `blocks` logical blocks, none placed.
    pub fn new(layout: &[(i32, u32)], blocks: usize) -> SlotPool {
        let node: Vec<i32> = layout
            .iter()
            .flat_map(|&(n, c)| std::iter::repeat_n(n, c as usize))
            .collect();
        let n = node.len();
        let mut free: BTreeMap<i32, BTreeSet<u64>> = BTreeMap::new();
        for (s, &nd) in node.iter().enumerate() {
            free.entry(nd).or_default().insert(s as u64);
        }
        SlotPool {
            node,
            holder: vec![None; n],
            shadow_of: vec![None; n],
            table: vec![None; blocks],
            shadow: vec![None; blocks],
            free,
            shadows: BTreeMap::new(),
            copies: 0,
            repoints: 0,
            declines: 0,
        }
    }

    pub fn slots(&self) -> usize {
        self.node.len()
    }

    pub fn node_of(&self, slot: u64) -> i32 {
        self.node[slot as usize]
    }

    /// The slot holding logical block `b`.
    pub fn slot_of(&self, b: usize) -> Option<u64> {
        self.table.get(b).copied().flatten()
    }

    /// The logical block slot `s` holds.
    pub fn holder(&self, s: u64) -> Option<usize> {
        self.holder.get(s as usize).copied().flatten()
    }

    /// Whether `node` has a slot for new contents (free, or holding a shadow).
    pub fn has_room(&self, node: i32) -> bool {
        let some = |m: &BTreeMap<i32, BTreeSet<u64>>| m.get(&node).is_some_and(|s| !s.is_empty());
        some(&self.free) || some(&self.shadows)
    }

    fn mark_free(&mut self, s: u64) {
        let nd = self.node[s as usize];
        self.holder[s as usize] = None;
        self.shadow_of[s as usize] = None;
        self.shadows.entry(nd).or_default().remove(&s);
        self.free.entry(nd).or_default().insert(s);
    }

    fn mark_shadow(&mut self, s: u64, b: usize) {
        let nd = self.node[s as usize];
        self.holder[s as usize] = None;
        self.shadow_of[s as usize] = Some(b);
        self.free.entry(nd).or_default().remove(&s);
        self.shadows.entry(nd).or_default().insert(s);
    }

    fn mark_used(&mut self, s: u64, b: usize) {
        let nd = self.node[s as usize];
        self.holder[s as usize] = Some(b);
        self.shadow_of[s as usize] = None;
        self.free.entry(nd).or_default().remove(&s);
        self.shadows.entry(nd).or_default().remove(&s);
        self.table[b] = Some(s);
    }

    /// A slot on `node` for new contents: a free one, else another block's shadow
    /// (dropped). The caller marks it used.
    fn take_slot(&mut self, node: i32) -> Option<u64> {
        if let Some(s) = self.free.get(&node).and_then(|f| f.first().copied()) {
            return Some(s);
        }
        let s = self.shadows.get(&node).and_then(|f| f.first().copied())?;
        if let Some(b) = self.shadow_of[s as usize] {
            self.shadow[b] = None;
        }
        Some(s)
    }

    /// Places new logical block `b` on `node` (its contents are then written by the
    /// caller, who hints WRITTEN). Returns its slot.
    pub fn allocate(&mut self, b: usize, node: i32) -> Option<u64> {
        self.free(b);
        let s = self.take_slot(node)?;
        self.mark_used(s, b);
        Some(s)
    }

    /// Block `b` was rewritten: its shadow is stale and freed.
    pub fn written(&mut self, b: usize) {
        if let Some(s) = self.shadow[b].take() {
            self.mark_free(s);
        }
    }

    /// Block `b` is evicted: its slot and its shadow are free.
    pub fn free(&mut self, b: usize) {
        self.written(b);
        if let Some(s) = self.table[b].take() {
            self.mark_free(s);
        }
    }

    /// Serves tierd's request to have slot `from`'s contents on `node`, updating the
    /// table as if the caller did what the answer says.
    pub fn serve(&mut self, from: u64, node: i32) -> Serve {
        let Some(b) = self.holder(from) else {
            self.declines += 1;
            return Serve::Decline;
        };
        let to = match self.shadow[b] {
            Some(s) if self.node[s as usize] == node => {
                self.repoints += 1;
                Some((s, true))
            }
            _ => self.take_slot(node).map(|s| (s, false)),
        };
        let Some((to, repoint)) = to else {
            self.declines += 1;
            return Serve::Decline;
        };
        // A shadow elsewhere than `to` is dropped; `from` becomes the new shadow.
        if let Some(s) = self.shadow[b] {
            if s != to {
                self.mark_free(s);
            }
        }
        self.mark_shadow(from, b);
        self.shadow[b] = Some(from);
        self.mark_used(to, b);
        if repoint {
            Serve::Repoint { from, to }
        } else {
            self.copies += 1;
            Serve::Copy { from, to }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_by_copy_demote_by_repoint() {
        // Slots 0-1 fast (node 0), 2-4 slow (node 1).
        let mut p = SlotPool::new(&[(0, 2), (1, 3)], 3);
        assert_eq!(p.allocate(0, 1), Some(2));
        assert_eq!(p.allocate(1, 1), Some(3));
        assert_eq!(p.serve(2, 0), Serve::Copy { from: 2, to: 0 });
        assert_eq!(p.slot_of(0), Some(0));
        // Back down while unwritten: its old slot still holds it.
        assert_eq!(p.serve(0, 1), Serve::Repoint { from: 0, to: 2 });
        assert_eq!(p.slot_of(0), Some(2));
        // Up again: the fast copy is still valid too.
        assert_eq!(p.serve(2, 0), Serve::Repoint { from: 2, to: 0 });
        // A write drops the shadow: the next demotion copies.
        p.written(0);
        assert_eq!(p.serve(0, 1), Serve::Copy { from: 0, to: 2 });
        assert_eq!((p.copies, p.repoints), (2, 2));
    }

    #[test]
    fn shadows_are_given_up_for_room_and_full_nodes_decline() {
        let mut p = SlotPool::new(&[(0, 1), (1, 2)], 3);
        assert_eq!(p.allocate(0, 1), Some(1));
        assert_eq!(p.allocate(1, 1), Some(2));
        assert_eq!(p.serve(2, 0), Serve::Copy { from: 2, to: 0 });
        // New block 2 on the slow node takes block 1's shadow slot (2).
        assert_eq!(p.allocate(2, 1), Some(2));
        // Block 1 can no longer go down: no slot left on node 1.
        assert_eq!(p.serve(0, 1), Serve::Decline);
        assert_eq!(p.declines, 1);
        // A request for an empty slot is declined too.
        p.free(0);
        assert_eq!(p.serve(1, 0), Serve::Decline);
    }

    #[test]
    fn room_follows_the_slots() {
        // 2 fast, 2 slow slots, 3 blocks.
        let mut p = SlotPool::new(&[(0, 2), (1, 2)], 3);
        assert!(p.has_room(0) && p.has_room(1));
        assert_eq!(p.allocate(0, 0), Some(0));
        assert_eq!(p.allocate(1, 0), Some(1));
        assert!(!p.has_room(0), "both fast slots hold blocks");
        // Demote block 1 by copy: slot 1 becomes its shadow, which is room again.
        assert_eq!(p.serve(1, 1), Serve::Copy { from: 1, to: 2 });
        assert!(p.has_room(0));
        assert_eq!((p.holder(1), p.holder(2)), (None, Some(1)));
        // A new fast block takes the shadow; block 1 then demotes back by copy.
        assert_eq!(p.allocate(2, 0), Some(1));
        assert!(!p.has_room(0));
        assert_eq!(p.serve(2, 0), Serve::Decline);
        p.free(2);
        assert!(p.has_room(0));
        assert_eq!(p.serve(2, 0), Serve::Copy { from: 2, to: 1 });
        assert_eq!(p.slot_of(1), Some(1));
    }
}
