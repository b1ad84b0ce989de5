//! Shared helpers of tierd's benchmark workloads (`hotwindow`, `kvreplay`, `migbench`).
//!
//! The binaries run inside the two-tier test VM (tests/vm/) and print their figures as
//! `RESULT key=value` lines, which tests/vm/run.sh collects. Kernel interfaces are raw
//! syscalls through libc (no libnuma in the initramfs): [`numa`] places and queries
//! pages, [`mem`] owns anonymous mappings placed on a node, [`pace`] runs fixed
//! wall-clock steps, [`stats`] and [`report`] summarise and print, [`oracle`] computes
//! the placements an all-knowing mover would make, [`kv`] models a host KV cache
//! replayed from request traces.

pub mod kv;
pub mod mem;
pub mod movecount;
pub mod numa;
pub mod oracle;
pub mod pace;
pub mod pinpool;
pub mod report;
pub mod stats;
pub mod sysfs;
pub mod uring;

/// Base page size assumed by the workloads (x86-64).
pub const PAGE: usize = 4096;
/// A PMD-sized transparent huge page (x86-64).
pub const HUGE: usize = 2 << 20;
/// Cache line: the stride at which workloads touch memory by default.
pub const LINE: usize = 64;
