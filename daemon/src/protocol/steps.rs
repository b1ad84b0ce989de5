//! What a batch of PREFETCH / PIN_FAST ranges costs the prefetch thread in memory: the
//! lists it builds are bounded by the region, never by what clients send or by the size
//! of their blocks.
//!
//! Called by `tierd-prefetch` ([`super::placement`]) once per batch and region.
//! - [`block_set`]: the blocks of up to 4096 queued ranges, each once (at most the
//!   region's `MAX_BLOCKS`, however much the ranges overlap).
//! - [`page_steps`]: the pages of those blocks cut into steps of at most
//!   [`URGENT_STEP_PAGES`] pages, each handed to the migration engine's latency-first
//!   lane in turn. A block is `block_size / page` pages: a region of 16 GiB blocks (as
//!   a GPU runtime's reservation) has 4 Mi pages a block, and a list of all pages of
//!   its 1024 blocks would be 32 GiB.

/// Pages handed to the latency-first lane at once: 256 MiB of 4 KiB pages, and at most
/// 2 MiB of page lists (address, node, status and previous node: 4 × 8 bytes a page).
pub const URGENT_STEP_PAGES: usize = 64 * 1024;

/// The blocks of `spans` (first block, count), ascending, each once.
pub fn block_set(spans: impl IntoIterator<Item = (u64, u64)>) -> Vec<u64> {
    let mut spans: Vec<(u64, u64)> = spans
        .into_iter()
        .map(|(first, n)| (first, first.saturating_add(n)))
        .collect();
    spans.sort_unstable();
    let mut out = Vec::new();
    let mut next = 0;
    for (start, end) in spans {
        out.extend(start.max(next)..end);
        next = next.max(end);
    }
    out
}

/// Cuts the pages of `blocks` (`per_block` pages each; page `j` of block `b` is at
/// `addr(b, j)`) into steps of at most `max_pages` pages, in order, and calls `step`
/// with each: its page addresses, and `(i, at)` for every block `blocks[i]` whose first
/// page is `pages[at]` of this step. Stops early when `step` returns false.
pub fn page_steps(
    blocks: &[u64],
    per_block: u64,
    max_pages: usize,
    addr: impl Fn(u64, u64) -> u64,
    mut step: impl FnMut(&[u64], &[(usize, usize)]) -> bool,
) {
    let (per_block, max_pages) = (per_block.max(1), max_pages.max(1));
    let mut pages = Vec::with_capacity(
        (blocks.len() as u64)
            .saturating_mul(per_block)
            .min(max_pages as u64) as usize,
    );
    let mut firsts = Vec::new();
    for (i, &b) in blocks.iter().enumerate() {
        let mut j = 0;
        while j < per_block {
            if j == 0 {
                firsts.push((i, pages.len()));
            }
            let n = (per_block - j).min((max_pages - pages.len()) as u64);
            pages.extend((j..j + n).map(|j| addr(b, j)));
            j += n;
            if pages.len() == max_pages {
                if !step(&pages, &firsts) {
                    return;
                }
                pages.clear();
                firsts.clear();
            }
        }
    }
    if !pages.is_empty() {
        step(&pages, &firsts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierd_client::layout::MAX_BLOCKS;

    #[test]
    fn overlapping_spans_cost_the_region_not_the_spans() {
        assert_eq!(
            block_set([(5, 3), (0, 2), (6, 4), (1, 1)]),
            [0, 1, 5, 6, 7, 8, 9]
        );
        assert!(block_set([(3, 0)]).is_empty());
        // 64 prefetches of a whole region of MAX_BLOCKS blocks: one region's blocks. The
        // former flat list held 64 × 2^20 entries (512 MiB) before its dedup; a queue of
        // 4096 such prefetches was 32 GiB.
        let all = block_set(std::iter::repeat_n((0, MAX_BLOCKS), 64));
        assert_eq!(all.len() as u64, MAX_BLOCKS);
        assert!(
            all.capacity() as u64 <= 2 * MAX_BLOCKS,
            "{}",
            all.capacity()
        );
        assert!(all.windows(2).all(|w| w[0] + 1 == w[1]));
    }

    #[test]
    fn pages_of_huge_blocks_go_in_bounded_steps() {
        // Three 4 GiB blocks of 4 KiB pages: 1 Mi pages each.
        const PER: u64 = 1 << 20;
        let blocks = [7u64, 8, 20];
        let addr = |b: u64, j: u64| (b << 32) + (j << 12);
        let (mut steps, mut total, mut firsts) = (0, 0u64, Vec::new());
        page_steps(&blocks, PER, URGENT_STEP_PAGES, addr, |pages, f| {
            assert!(pages.len() <= URGENT_STEP_PAGES);
            assert!(pages.windows(2).all(|w| w[0] < w[1]), "in order");
            for &(i, at) in f {
                assert_eq!(pages[at], addr(blocks[i], 0), "block {i}'s first page");
                firsts.push(i);
            }
            steps += 1;
            total += pages.len() as u64;
            true
        });
        assert_eq!(total, 3 * PER);
        assert_eq!(steps, 3 * PER / URGENT_STEP_PAGES as u64);
        assert_eq!(firsts, [0, 1, 2]);
    }

    #[test]
    fn small_blocks_share_a_step_and_a_false_stops() {
        let blocks: Vec<u64> = (0..10).collect();
        let mut seen = Vec::new();
        page_steps(
            &blocks,
            3,
            4,
            |b, j| b * 3 + j,
            |pages, f| {
                seen.push((pages.to_vec(), f.to_vec()));
                true
            },
        );
        assert_eq!(seen.len(), 8, "30 pages in steps of 4");
        assert_eq!(seen[0], (vec![0, 1, 2, 3], vec![(0, 0), (1, 3)]));
        assert_eq!(seen[1], (vec![4, 5, 6, 7], vec![(2, 2)]));
        assert_eq!(seen[7], (vec![28, 29], vec![]));
        let mut calls = 0;
        page_steps(
            &blocks,
            3,
            4,
            |b, j| b * 3 + j,
            |_, _| {
                calls += 1;
                false
            },
        );
        assert_eq!(calls, 1);
    }
}
