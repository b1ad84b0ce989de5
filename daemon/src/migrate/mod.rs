//! Page migration: the `move_pages(2)` engine.
//!
//! [`Mover`] is the narrow kernel interface (move or query a batch of pages of one
//! process); [`syscall::MovePages`] is the real one, tests use a fake. [`engine`] turns
//! "move these ranges of pid P to node N" into batches, with a destination-headroom check
//! before each batch, a shared MB/s token bucket, THP awareness (one address per huge
//! page) and a pidfd so a process that exits mid-job ends the job cleanly; [`urgent`] is
//! its latency-first lane for client prefetches. Every page tierd moves goes through
//! the engine, so its budgets and accounting see every move; [`accounting`] is the
//! ledger of moved pages per source tier, destination tier and cause.

pub mod accounting;
pub mod bucket;
pub mod engine;
pub mod errno;
#[cfg(test)]
pub mod fake;
pub mod pinned;
pub mod pressure;
pub mod syscall;
pub mod thp;
pub mod urgent;

pub use engine::{Job, MigrationEngine};
pub use urgent::{UrgentJob, UrgentOutcome};

/// Page size of the running kernel: the one definition, shared with tierctl, is the
/// protocol's page unit.
pub use tierd_api::page_size;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MoveError {
    #[error("no process {0}")]
    NoSuchProcess(i32),
    #[error("not permitted to move pages of process {0}")]
    PermissionDenied(i32),
    #[error("node {0} does not exist or has no memory")]
    BadNode(i32),
    #[error("move_pages(pid {pid}): {errno}")]
    Other { pid: i32, errno: nix::errno::Errno },
}

/// Moves or queries pages of one process (`move_pages(2)`).
pub trait Mover: Send + Sync {
    /// Moves `pages[i]` to `nodes[i]`; `status[i]` gets the node the page is on
    /// afterwards, or a negative errno for that page.
    fn move_pages(
        &self,
        pid: i32,
        pages: &[u64],
        nodes: &[i32],
        status: &mut [i32],
    ) -> Result<(), MoveError>;

    /// `status[i]` gets the node of `pages[i]`, or a negative errno (`-ENOENT`: not
    /// present, `-EFAULT`: not mapped).
    fn query(&self, pid: i32, pages: &[u64], status: &mut [i32]) -> Result<(), MoveError>;
}

/// What one `move_pages` call did to one address: `bytes` from `addr` (a base page, or a
/// whole huge page) are now on node `status`, or `status` is the negative errno the
/// kernel gave it (`-ENOENT`: not present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub addr: u64,
    pub bytes: u64,
    pub status: i32,
}

/// Told of the result of every `move_pages` call of the engine's background jobs (not
/// the latency-first lane, whose caller publishes placement itself), so that readers of
/// placement learn of tierd's own moves without asking the kernel. Called on the mover's thread with no engine lock
/// held, after the call and before the job goes on: it must be quick and never block
/// (the protocol's implementation filters by pid and queues for `tierd-placement`).
pub trait MoveObserver: Send + Sync {
    fn moved(&self, pid: i32, moved: &[Moved]);
}
