//! The decode batch: requests arrive on the (compressed) trace clock, are admitted when
//! the pool can hold their prompt, then take one decode step per engine step until
//! their output (capped) is done. Each step reads every block of every running request
//! once; a request whose context crosses a block boundary gets a new, unshared block.

use super::pool::BlockPool;
use super::trace::Request;
use std::collections::VecDeque;

#[derive(Debug)]
struct Running {
    slots: Vec<u32>,
    tokens: u64,
    steps_left: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedStats {
    pub admitted: u64,
    pub completed: u64,
    /// Admissions that had to wait for the pool.
    pub deferred: u64,
    /// New decode blocks the full pool could not provide (the request went on without).
    pub grow_failed: u64,
}

pub struct Sched {
    pub pool: BlockPool,
    reqs: Vec<Request>,
    next: usize,
    waiting: VecDeque<usize>,
    running: Vec<Running>,
    block_tokens: u64,
    decode_cap: u64,
    pub stats: SchedStats,
}

impl Sched {
    /// `block_tokens`: tokens per pool block (the traces' 512); `decode_cap`: at most
    /// this many decode steps per request.
    pub fn new(reqs: Vec<Request>, pool: BlockPool, block_tokens: u64, decode_cap: u64) -> Sched {
        Sched {
            pool,
            reqs,
            next: 0,
            waiting: VecDeque::new(),
            running: Vec::new(),
            block_tokens: block_tokens.max(1),
            decode_cap,
            stats: SchedStats::default(),
        }
    }

    /// Queues requests that arrived by `trace_ms` and admits what the pool can hold
    /// (FIFO). Fresh slots (to be written by the caller) are appended to `fresh`.
    pub fn admit(&mut self, trace_ms: f64, fresh: &mut Vec<u32>) {
        while self.next < self.reqs.len() && self.reqs[self.next].arrival_ms <= trace_ms {
            self.waiting.push_back(self.next);
            self.next += 1;
        }
        while let Some(&i) = self.waiting.front() {
            let r = &self.reqs[i];
            let mut slots = Vec::with_capacity(r.prompt_blocks.len());
            let mut new = Vec::new();
            let mut ok = true;
            for &h in &r.prompt_blocks {
                match self.pool.acquire(h) {
                    Some(a) => {
                        slots.push(a.slot);
                        if a.fresh {
                            new.push(a.slot);
                        }
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                for s in slots {
                    self.pool.release(s);
                }
                self.stats.deferred += 1;
                break;
            }
            fresh.extend(new);
            self.waiting.pop_front();
            self.stats.admitted += 1;
            self.running.push(Running {
                slots,
                tokens: r.input_tokens,
                steps_left: r.output_tokens.min(self.decode_cap).max(1),
            });
        }
    }

    /// The block reads of one step: every block of every running request.
    pub fn reads(&self, out: &mut Vec<u32>) {
        out.clear();
        for r in &self.running {
            out.extend_from_slice(&r.slots);
        }
    }

    /// One decode token for every running request; finished requests release their
    /// blocks; new decode blocks are appended to `fresh`.
    pub fn advance(&mut self, fresh: &mut Vec<u32>) {
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            r.tokens += 1;
            r.steps_left -= 1;
            if r.steps_left == 0 {
                let r = self.running.swap_remove(i);
                for s in r.slots {
                    self.pool.release(s);
                }
                self.stats.completed += 1;
                continue;
            }
            if r.tokens > self.block_tokens * r.slots.len() as u64 {
                match self.pool.acquire(None) {
                    Some(a) => {
                        r.slots.push(a.slot);
                        fresh.push(a.slot);
                    }
                    None => self.stats.grow_failed += 1,
                }
            }
            i += 1;
        }
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(t: f64, blocks: &[Option<u64>], input: u64, out: u64) -> Request {
        Request {
            arrival_ms: t,
            prompt_blocks: blocks.to_vec(),
            input_tokens: input,
            output_tokens: out,
        }
    }

    #[test]
    fn shared_prefix_read_by_both_and_growth() {
        let reqs = vec![
            req(0.0, &[Some(1), Some(2)], 4, 3),
            req(5.0, &[Some(1), Some(3)], 4, 1),
        ];
        let mut s = Sched::new(reqs, BlockPool::new(8), 4, 100);
        let (mut fresh, mut reads) = (Vec::new(), Vec::new());
        s.admit(1.0, &mut fresh);
        assert_eq!(fresh.len(), 2);
        s.reads(&mut reads);
        assert_eq!(reads.len(), 2);
        fresh.clear();
        s.advance(&mut fresh); // token 5 > 2 blocks * 4 tokens? no (8)
        assert!(fresh.is_empty());
        s.admit(5.0, &mut fresh);
        assert_eq!(fresh.len(), 1, "hash 1 reused, hash 3 new");
        s.reads(&mut reads);
        assert_eq!(reads.len(), 4);
        s.advance(&mut fresh);
        assert_eq!(s.stats.completed, 1);
        s.advance(&mut fresh);
        assert_eq!(s.running(), 0);
        assert_eq!(s.stats.admitted, 2);
    }

    #[test]
    fn waits_for_a_full_pool() {
        let reqs = vec![req(0.0, &[None, None], 10, 1), req(0.0, &[None], 10, 1)];
        let mut s = Sched::new(reqs, BlockPool::new(2), 512, 10);
        let mut fresh = Vec::new();
        s.admit(0.0, &mut fresh);
        assert_eq!((s.running(), s.waiting()), (1, 1));
        s.advance(&mut fresh);
        s.admit(0.0, &mut fresh);
        assert_eq!((s.running(), s.waiting()), (1, 0));
    }
}
