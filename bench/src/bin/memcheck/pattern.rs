//! The self-describing pattern memcheck keeps in its memory, and its checks.
//!
//! The memory is cut into [`BLOCK`]-byte blocks, each with a generation (starting at 1)
//! bumped by every rewrite. Word `i` of the memory (counted from its start) holds
//! `gen << 40 | i`: a word read back tells where it was written and by which rewrite,
//! so a page that lost a write (a stale copy after a migration), landed at the wrong
//! address or was zeroed is told apart from a good one, and a mismatch report says which.
//! Pure functions over slices: called by the workload loop in `main.rs`, tested here.

/// Bytes per generation block: one base page, the unit `move_pages(2)` moves.
pub const BLOCK: usize = 4096;
/// u64 words per block.
pub const BLOCK_WORDS: usize = BLOCK / 8;
/// Bits of a word that hold its index (2^40 words = 8 TiB of memory).
const INDEX_BITS: u32 = 40;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The word expected at global word index `index` of a block of generation `gen`.
pub fn word(index: u64, gen: u32) -> u64 {
    (u64::from(gen) << INDEX_BITS) | (index & INDEX_MASK)
}

/// Decodes a word into (generation, index), for mismatch reports.
pub fn decode(w: u64) -> (u64, u64) {
    (w >> INDEX_BITS, w & INDEX_MASK)
}

/// Writes block `block` (its words in `dst`, `BLOCK_WORDS` long) with generation `gen`.
pub fn write_block(dst: &mut [u64], block: usize, gen: u32) {
    let base = (block * BLOCK_WORDS) as u64;
    for (k, w) in dst.iter_mut().enumerate() {
        *w = word(base + k as u64, gen);
    }
}

/// One word that did not hold what it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Word index from the start of the memory.
    pub index: u64,
    pub expected: u64,
    pub found: u64,
}

/// Checks blocks `first..first + gens.len()` of `mem` (all the memory's words) against
/// their generations `gens`; returns the words checked and appends every mismatch to
/// `out` (the caller bounds how many it prints, not how many it counts).
pub fn verify(mem: &[u64], first: usize, gens: &[u32], out: &mut Vec<Mismatch>) -> u64 {
    let mut n = 0;
    for (k, &gen) in gens.iter().enumerate() {
        let b = first + k;
        let base = b * BLOCK_WORDS;
        for (j, &found) in mem[base..base + BLOCK_WORDS].iter().enumerate() {
            let index = (base + j) as u64;
            let expected = word(index, gen);
            if found != expected {
                out.push(Mismatch {
                    index,
                    expected,
                    found,
                });
            }
        }
        n += BLOCK_WORDS as u64;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_encode_index_and_generation() {
        assert_eq!(decode(word(12345, 7)), (7, 12345));
        assert_ne!(word(0, 1), 0, "a zeroed page must not pass");
        assert_ne!(word(5, 1), word(5, 2));
        assert_ne!(word(5, 1), word(6, 1));
    }

    #[test]
    fn verify_finds_stale_misplaced_and_zeroed_words() {
        let blocks = 4;
        let mut mem = vec![0u64; blocks * BLOCK_WORDS];
        let mut gens = vec![1u32; blocks];
        for b in 0..blocks {
            write_block(&mut mem[b * BLOCK_WORDS..(b + 1) * BLOCK_WORDS], b, 1);
        }
        let mut out = Vec::new();
        assert_eq!(
            verify(&mem, 0, &gens, &mut out),
            (blocks * BLOCK_WORDS) as u64
        );
        assert!(out.is_empty());

        // A rewrite the memory did not get (a stale page): every word of the block.
        gens[1] = 2;
        // A word copied from another block, and a zeroed word.
        mem[2 * BLOCK_WORDS + 3] = mem[3 * BLOCK_WORDS + 3];
        mem[3 * BLOCK_WORDS] = 0;
        verify(&mem, 0, &gens, &mut out);
        assert_eq!(out.len(), BLOCK_WORDS + 2);
        assert_eq!(decode(out[0].found), (1, BLOCK_WORDS as u64));
        assert_eq!(decode(out[0].expected), (2, BLOCK_WORDS as u64));

        // Checking a sub-range looks at those blocks only.
        out.clear();
        assert_eq!(verify(&mem, 3, &gens[3..], &mut out), BLOCK_WORDS as u64);
        assert_eq!(out.len(), 1);
    }
}
