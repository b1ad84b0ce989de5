//! A host KV cache replayed from LLM request traces (the `kvreplay` benchmark's model).
//!
//! [`trace`] reads the Mooncake and Azure conversation traces into requests; [`pool`]
//! is the block pool (prefix-hash reuse, LRU eviction of unreferenced blocks);
//! [`sched`] admits requests as trace time passes and advances a batch one decode
//! token per step, telling the caller which blocks to write (new) and read (every
//! block of every running request, once per step). Pure logic: the binary owns the
//! memory and the clock. [`hints`] is what such an engine tells tierd when it uses the
//! client protocol; [`pinned`] keeps the pool in pinned memory behind a block table,
//! moved by tierd's relocation requests or by an oracle. [`ages`] buckets the replay's fast-node hits by the age of the
//! blocks read.

pub mod ages;
pub mod hints;
pub mod pinned;
pub mod pool;
pub mod sched;
pub mod trace;
