//! The one fake [`Mover`] of the tests: pages in memory, with one set of rules.
//!
//! Used by the engine's and the urgent lane's unit tests and by the protocol server's
//! in-process tests (anything that builds a [`super::MigrationEngine`] without a kernel).
//! The rules, the same for `move_pages` and `query`:
//! - A page is known by (pid, address). A page tierd moved is on the node it was moved
//!   to; a page placed with [`FakeMover::with_pages`] is on that node until moved.
//! - Any other page is on the [`FakeMover::default_node`] if one is set (every page of
//!   every process present), or else absent: `-ENOENT` for that page, on a move as on a
//!   query.
//! - A pinned address ([`FakeMover::with_pinned`], [`FakeMover::pin`]) refuses to move,
//!   in every process: a present page gets `-EBUSY` and stays where it is, like
//!   long-term pinned memory (an absent one is still `-ENOENT`).
//! - With [`FakeMover::owner`], a call for any other pid fails whole with
//!   [`MoveError::NoSuchProcess`], as for a process that does not exist.
//! - [`FakeMover::calls`] counts the `move_pages` calls that reached the pages (not
//!   those refused for their pid); [`FakeMover::queries`] and
//!   [`FakeMover::queried_pages`] count placement queries and the pages they named.
//! - [`FakeMover::place`] moves a page behind tierd's back (no call counted).

use super::{MoveError, Mover};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A fake [`Mover`] (see the module doc for its rules). Build it with
/// [`FakeMover::new`] and the `with_`/`owner`/`default_node` options.
#[derive(Default)]
pub struct FakeMover {
    owner: Option<i32>,
    default_node: Option<i32>,
    pages: Mutex<Pages>,
    calls: AtomicU64,
    /// Each `query` sleeps this long first (a slow machine).
    query_delay: std::time::Duration,
    queries: AtomicU64,
    queried_pages: AtomicU64,
}

#[derive(Default)]
struct Pages {
    node: HashMap<(i32, u64), i32>,
    pinned: HashSet<u64>,
}

impl Pages {
    fn node_of(&self, pid: i32, addr: u64, default_node: Option<i32>) -> Option<i32> {
        self.node.get(&(pid, addr)).copied().or(default_node)
    }
}

impl FakeMover {
    /// No pages, any pid, nothing pinned.
    pub fn new() -> FakeMover {
        FakeMover::default()
    }

    /// Only `pid` exists: calls for any other pid fail with `NoSuchProcess`.
    pub fn owner(mut self, pid: i32) -> FakeMover {
        self.owner = Some(pid);
        self
    }

    /// Pages never placed nor moved are on `node` (instead of absent).
    pub fn default_node(mut self, node: i32) -> FakeMover {
        self.default_node = Some(node);
        self
    }

    /// Every placement query takes `delay` (a slow machine, or a huge region).
    pub fn query_delay(mut self, delay: std::time::Duration) -> FakeMover {
        self.query_delay = delay;
        self
    }

    /// Places `pid`'s pages at `addrs` on `node`.
    pub fn with_pages(
        self,
        pid: i32,
        addrs: impl IntoIterator<Item = u64>,
        node: i32,
    ) -> FakeMover {
        self.lock()
            .node
            .extend(addrs.into_iter().map(|a| ((pid, a), node)));
        self
    }

    /// Pins the pages at `addrs` (see [`FakeMover::pin`]).
    pub fn with_pinned(self, addrs: impl IntoIterator<Item = u64>) -> FakeMover {
        self.lock().pinned.extend(addrs);
        self
    }

    /// From now on the page at `addr`, in every process, refuses to move (`-EBUSY`).
    pub fn pin(&self, addr: u64) {
        self.lock().pinned.insert(addr);
    }

    /// Moves `pid`'s page at `addr` to `node` behind tierd's back (as kernel reclaim or
    /// another tool would): no `move_pages` call is counted.
    pub fn place(&self, pid: i32, addr: u64, node: i32) {
        self.lock().node.insert((pid, addr), node);
    }

    /// Where `pid`'s page at `addr` is, as `query` would say (`None`: absent).
    pub fn node_of(&self, pid: i32, addr: u64) -> Option<i32> {
        self.lock().node_of(pid, addr, self.default_node)
    }

    /// `move_pages` calls so far that reached the pages.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Placement queries so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Pages asked about by placement queries so far.
    pub fn queried_pages(&self) -> u64 {
        self.queried_pages.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pages> {
        self.pages.lock().unwrap()
    }

    fn check_pid(&self, pid: i32) -> Result<(), MoveError> {
        match self.owner {
            Some(owner) if owner != pid => Err(MoveError::NoSuchProcess(pid)),
            _ => Ok(()),
        }
    }
}

impl Mover for FakeMover {
    fn move_pages(
        &self,
        pid: i32,
        pages: &[u64],
        nodes: &[i32],
        status: &mut [i32],
    ) -> Result<(), MoveError> {
        self.check_pid(pid)?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut p = self.lock();
        for i in 0..pages.len() {
            status[i] = match p.node_of(pid, pages[i], self.default_node) {
                None => -libc::ENOENT,
                Some(_) if p.pinned.contains(&pages[i]) => -libc::EBUSY,
                Some(_) => {
                    p.node.insert((pid, pages[i]), nodes[i]);
                    nodes[i]
                }
            };
        }
        Ok(())
    }

    fn query(&self, pid: i32, pages: &[u64], status: &mut [i32]) -> Result<(), MoveError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.queried_pages
            .fetch_add(pages.len() as u64, Ordering::Relaxed);
        std::thread::sleep(self.query_delay);
        self.check_pid(pid)?;
        let p = self.lock();
        for i in 0..pages.len() {
            status[i] = p
                .node_of(pid, pages[i], self.default_node)
                .unwrap_or(-libc::ENOENT);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_and_queries_follow_one_rule_set() {
        let m = FakeMover::new()
            .owner(7)
            .with_pages(7, [0x1000, 0x2000], 0)
            .with_pinned([0x2000, 0x3000]);
        let mut st = [0; 3];
        m.move_pages(7, &[0x1000, 0x2000, 0x3000], &[1; 3], &mut st)
            .unwrap();
        assert_eq!(st, [1, -libc::EBUSY, -libc::ENOENT]);
        m.query(7, &[0x1000, 0x2000, 0x3000], &mut st).unwrap();
        assert_eq!(st, [1, 0, -libc::ENOENT]);
        assert_eq!(
            m.move_pages(8, &[0x1000], &[1], &mut st[..1]),
            Err(MoveError::NoSuchProcess(8))
        );
        assert_eq!(
            m.query(8, &[0x1000], &mut st[..1]),
            Err(MoveError::NoSuchProcess(8))
        );
        assert_eq!(m.calls(), 1, "a refused pid is not a call");

        let m = FakeMover::new().default_node(1);
        m.pin(0x2000);
        m.move_pages(3, &[0x1000, 0x2000], &[0, 0], &mut st[..2])
            .unwrap();
        assert_eq!(st[..2], [0, -libc::EBUSY]);
        assert_eq!(m.node_of(3, 0x1000), Some(0));
        assert_eq!(m.node_of(4, 0x1000), Some(1), "pages are per process");
        assert_eq!(m.node_of(3, 0x2000), Some(1));
    }
}
