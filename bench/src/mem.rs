//! Anonymous memory placed on a chosen node at first touch, then left free to move.
//!
//! [`Region::place`] maps, optionally advises THP, binds the range to a node
//! (`mbind(MPOL_BIND)`), writes every page so it is allocated there, and resets the
//! policy to MPOL_DEFAULT, so no policy pins the pages: the kernel, DAMON or tierd may
//! migrate them afterwards. Also the word-level access loops the workloads use.

use crate::{numa, PAGE};
use anyhow::Context;
use memmap2::{Advice, MmapMut};

/// Transparent huge pages for a region (the test VM's THP mode is `always`, so "no
/// advice" would mean huge pages too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thp {
    /// MADV_HUGEPAGE: 2 MiB pages where possible.
    Huge,
    /// MADV_NOHUGEPAGE: 4 KiB pages only.
    NoHuge,
}

impl Thp {
    pub fn from_flag(huge: bool) -> Thp {
        if huge {
            Thp::Huge
        } else {
            Thp::NoHuge
        }
    }
}

/// An anonymous private mapping, seen as u64 words.
pub struct Region {
    map: MmapMut,
}

impl Region {
    /// Maps `len` bytes (rounded up to pages), advises `thp`; with `node`, allocates
    /// every page there at first touch and then resets the policy.
    pub fn place(len: usize, node: Option<u32>, thp: Thp) -> anyhow::Result<Region> {
        let len = len.div_ceil(PAGE) * PAGE;
        anyhow::ensure!(len > 0, "cannot map an empty region");
        let mut map = MmapMut::map_anon(len).with_context(|| format!("mmap {len} bytes"))?;
        match thp {
            Thp::Huge => map
                .advise(Advice::HugePage)
                .context("madvise(MADV_HUGEPAGE)")?,
            Thp::NoHuge => map
                .advise(Advice::NoHugePage)
                .context("madvise(MADV_NOHUGEPAGE)")?,
        }
        let p = map.as_mut_ptr();
        if let Some(n) = node {
            numa::bind_range(p, len, n).with_context(|| format!("mbind MPOL_BIND to node {n}"))?;
        }
        for b in map.iter_mut().step_by(PAGE) {
            *b = 1;
        }
        if node.is_some() {
            numa::reset_range(p, len).context("mbind MPOL_DEFAULT")?;
        }
        Ok(Region { map })
    }

    /// Maps runs of `(node, bytes)` back to back (each a multiple of pages), every run's
    /// pages allocated on its node at first touch and kept bound there: the per-node
    /// layout of a pinned pool (fast-node slots, then slow-node slots).
    pub fn place_runs(runs: &[(u32, usize)], thp: Thp) -> anyhow::Result<Region> {
        anyhow::ensure!(
            runs.iter().all(|&(_, l)| l % PAGE == 0),
            "runs must be whole pages"
        );
        let len: usize = runs.iter().map(|&(_, l)| l).sum();
        anyhow::ensure!(len > 0, "cannot map an empty region");
        let mut map = MmapMut::map_anon(len).with_context(|| format!("mmap {len} bytes"))?;
        let advice = match thp {
            Thp::Huge => Advice::HugePage,
            Thp::NoHuge => Advice::NoHugePage,
        };
        map.advise(advice).context("madvise")?;
        let p = map.as_mut_ptr();
        let mut off = 0;
        for &(n, l) in runs {
            numa::bind_range(p.wrapping_add(off), l, n)
                .with_context(|| format!("mbind MPOL_BIND {l} bytes to node {n}"))?;
            off += l;
        }
        for b in map.iter_mut().step_by(PAGE) {
            *b = 1;
        }
        Ok(Region { map })
    }

    pub fn base(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub fn words(&self) -> &[u64] {
        // SAFETY: the mapping is page-aligned (so u64-aligned), len is a multiple of
        // PAGE, every bit pattern is a valid u64, and the borrow of self keeps it alive
        // and unaliased by any &mut.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const u64, self.map.len() / 8) }
    }

    pub fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in words(); the &mut self borrow makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr() as *mut u64, self.map.len() / 8)
        }
    }

    /// Address of every base page in `[off, off+len)` of the region.
    pub fn page_addrs(&self, off: usize, len: usize) -> Vec<u64> {
        let end = (off + len).min(self.len());
        (off / PAGE..end.div_ceil(PAGE))
            .map(|i| self.base() + (i * PAGE) as u64)
            .collect()
    }
}

/// Fills `w` with a position-dependent pattern (so misplaced pages change the checksum).
pub fn fill(w: &mut [u64], seed: u64) {
    for (i, x) in w.iter_mut().enumerate() {
        *x = (i as u64 ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// FNV-1a over words.
pub fn checksum(w: &[u64]) -> u64 {
    w.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ x).wrapping_mul(0x100_0000_01b3)
    })
}

/// Reads and writes one word every `stride_words` words (one per cache line by
/// default): the hot-window access. Returns the number of words touched.
pub fn update_every(w: &mut [u64], stride_words: usize) -> usize {
    let mut n = 0;
    for x in w.iter_mut().step_by(stride_words.max(1)) {
        *x = x.wrapping_add(1);
        n += 1;
    }
    std::hint::black_box(&w);
    n
}

/// Reads one word every `stride_words` words; returns their sum (kept live).
pub fn read_every(w: &[u64], stride_words: usize) -> u64 {
    let s = w
        .iter()
        .step_by(stride_words.max(1))
        .fold(0u64, |a, &x| a.wrapping_add(x));
    std::hint::black_box(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_without_node_is_usable() {
        let mut r = Region::place(3 * PAGE + 1, None, Thp::NoHuge).unwrap();
        assert_eq!(r.len(), 4 * PAGE);
        fill(r.words_mut(), 7);
        let c = checksum(r.words());
        assert_eq!(c, checksum(r.words()));
        assert_eq!(r.page_addrs(PAGE, 2 * PAGE).len(), 2);
        assert_eq!(update_every(r.words_mut(), 8), 4 * PAGE / 64);
        assert_ne!(c, checksum(r.words()));
    }
}
