//! What a placement that knew the future would achieve: the yardsticks the measured
//! movers are compared with.
//!
//! - [`window_moves`]: the fewest page moves that keep each hot window of `hotwindow`
//!   on the fast node (every window page promoted once when it becomes hot, the least
//!   recently hot pages demoted only when the fast node would overflow).
//! - [`belady_hits`]: Belady's MIN with bypass over a block-read sequence: a block read
//!   from the slow node may then be placed on the fast node (evicting the block needed
//!   farthest in the future), so every first read is a miss.
//! - [`prefetch_hits`]: an oracle that may move any blocks before each step (unlimited
//!   migration bandwidth): per step, the `cap` most-read blocks are fast.
//! - [`NextUse`]: when each block is next read, for a replay that places its blocks
//!   itself with that knowledge (`kvreplay --pinned oracle`).

use std::collections::{BTreeSet, HashMap};

/// Promotions and demotions (in pages) for hot windows `(first_page, pages)` taken in
/// order, with room for `cap_pages` on the fast node, everything starting slow.
pub fn window_moves(windows: &[(usize, usize)], cap_pages: usize) -> (u64, u64) {
    let n = windows.iter().map(|&(s, l)| s + l).max().unwrap_or(0);
    // last window in which each page was hot while fast; None = on the slow node.
    let mut fast: Vec<Option<usize>> = vec![None; n];
    let (mut promoted, mut demoted) = (0u64, 0u64);
    let mut resident = 0usize;
    for (k, &(start, len)) in windows.iter().enumerate() {
        for p in &mut fast[start..start + len] {
            if p.is_none() {
                promoted += 1;
                resident += 1;
            }
            *p = Some(k);
        }
        if resident > cap_pages {
            let mut victims: Vec<(usize, usize)> = fast
                .iter()
                .enumerate()
                .filter_map(|(i, f)| f.filter(|&w| w != k).map(|w| (w, i)))
                .collect();
            victims.sort_unstable();
            for (_, i) in victims.into_iter().take(resident - cap_pages) {
                fast[i] = None;
                demoted += 1;
                resident -= 1;
            }
        }
    }
    (promoted, demoted)
}

/// Hits of Belady's MIN (with bypass) on `seq` with `cap` fast slots, all blocks
/// starting slow.
pub fn belady_hits(seq: &[u32], cap: usize) -> u64 {
    const NEVER: usize = usize::MAX;
    let mut next = vec![NEVER; seq.len()];
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for i in (0..seq.len()).rev() {
        next[i] = seen.insert(seq[i], i).unwrap_or(NEVER);
    }
    let mut by_next: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut cached: HashMap<u32, usize> = HashMap::new();
    let mut hits = 0u64;
    for (i, &b) in seq.iter().enumerate() {
        let nu = next[i];
        if let Some(old) = cached.remove(&b) {
            hits += 1;
            by_next.remove(&(old, b));
        } else if cap == 0 {
            continue;
        } else if cached.len() >= cap {
            let &(far, victim) = by_next.last().expect("cache is full");
            if far <= nu {
                continue; // bypass: b is needed later than anything cached
            }
            by_next.remove(&(far, victim));
            cached.remove(&victim);
        }
        if nu != NEVER {
            by_next.insert((nu, b));
            cached.insert(b, nu);
        }
    }
    hits
}

/// Hits when, before every step, the `cap` blocks read most in that step are made fast.
/// `steps` are the block reads of each step.
pub fn prefetch_hits<'a>(steps: impl IntoIterator<Item = &'a [u32]>, cap: usize) -> u64 {
    let mut hits = 0u64;
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for s in steps {
        counts.clear();
        for &b in s {
            *counts.entry(b).or_default() += 1;
        }
        let mut c: Vec<u64> = counts.values().copied().collect();
        c.sort_unstable_by(|a, b| b.cmp(a));
        hits += c.iter().take(cap).sum::<u64>();
    }
    hits
}

/// When each block is next read, over a replay's future: its reads per step and the
/// steps where it gets new contents (a read after a refill is another block's). Asked
/// with non-decreasing steps per block.
#[derive(Debug, Default)]
pub struct NextUse {
    /// Per block, ascending: `2s + 1` for a read in step `s`, `2s` for new contents
    /// written before step `s` reads.
    events: Vec<Vec<u64>>,
    cursor: Vec<usize>,
}

impl NextUse {
    pub fn new(blocks: usize) -> NextUse {
        NextUse {
            events: vec![Vec::new(); blocks],
            cursor: vec![0; blocks],
        }
    }

    /// Block `b` is read in step `s` (steps recorded in order).
    pub fn read(&mut self, b: u32, s: u64) {
        let e = &mut self.events[b as usize];
        if e.last() != Some(&(2 * s + 1)) {
            e.push(2 * s + 1);
        }
    }

    /// Block `b` gets new contents before step `s` reads.
    pub fn filled(&mut self, b: u32, s: u64) {
        self.events[b as usize].push(2 * s);
    }

    /// The first step after `s` that reads `b`'s current contents (`u64::MAX`: never,
    /// or they are overwritten first).
    pub fn after(&mut self, b: usize, s: u64) -> u64 {
        let (e, c) = (&self.events[b], &mut self.cursor[b]);
        while *c < e.len() && e[*c] <= 2 * s + 1 {
            *c += 1;
        }
        match e.get(*c) {
            Some(&k) if k % 2 == 1 => (k - 1) / 2,
            _ => u64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_use_stops_at_a_refill() {
        let mut n = NextUse::new(2);
        n.read(0, 1);
        n.read(0, 4);
        n.filled(0, 6);
        n.read(0, 6);
        n.read(1, 2);
        assert_eq!(n.after(0, 0), 1);
        assert_eq!(n.after(0, 1), 4);
        assert_eq!(n.after(0, 4), u64::MAX, "refilled before its next read");
        assert_eq!(n.after(1, 0), 2);
        assert_eq!(n.after(1, 2), u64::MAX);
    }

    #[test]
    fn windows_that_fit_only_promote() {
        assert_eq!(window_moves(&[(0, 4), (4, 4)], 8), (8, 0));
        assert_eq!(window_moves(&[(0, 4), (0, 4)], 8), (4, 0));
    }

    #[test]
    fn windows_that_overflow_demote_oldest() {
        // cap 6: after window 2 (pages 4..8) two of window 0's pages go.
        assert_eq!(window_moves(&[(0, 4), (4, 4)], 6), (8, 2));
        // Revisiting window 0: its two demoted pages come back, two of window 1's go.
        assert_eq!(window_moves(&[(0, 4), (4, 4), (0, 4)], 6), (10, 4));
    }

    #[test]
    fn belady_small() {
        // cap 1: a a b a -> hit on 2nd a; b bypassed (a needed sooner); hit on last a.
        assert_eq!(belady_hits(&[1, 1, 2, 1], 1), 2);
        assert_eq!(belady_hits(&[1, 2, 3, 1, 2, 3], 3), 3);
        assert_eq!(belady_hits(&[1, 2, 3, 1, 2, 3], 0), 0);
        // cap 2 over a cycle of 3: MIN keeps one of the pair hitting.
        assert_eq!(belady_hits(&[1, 2, 3, 1, 2, 3], 2), 2);
    }

    #[test]
    fn prefetch_small() {
        let steps: Vec<Vec<u32>> = vec![vec![1, 2, 2, 3], vec![4]];
        assert_eq!(prefetch_hits(steps.iter().map(|v| v.as_slice()), 1), 3);
        assert_eq!(prefetch_hits(steps.iter().map(|v| v.as_slice()), 3), 5);
    }
}
