//! One owner for the heat tables. The tiering loop holds the [`HeatOwner`] (the tables
//! themselves, no lock); every other thread reaches them through the daemon's
//! [`HeatPort`]: it sends an edit or a read as a closure, which the owner runs on its
//! own thread, in the order sent, between its own steps. Readers that only need
//! totals (status, metrics) read the [`HeatSummary`] the owner publishes after each
//! drain.
//!
//! Senders: the hint poller (every ~1 ms, one edit per region with hints), the
//! prefetch thread (a served PREFETCH), the migration lanes (each step's outcome), the
//! client sessions (a region's hints forgotten), the control socket (`tierctl heat`,
//! a read with a timeout). The channel is bounded: a sender that outruns the owner
//! waits (the poller then leaves entries in the clients' rings, which the clients see
//! as ring-full drops) instead of growing tierd's memory.

use super::{new_heat_table, HeatTable};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tierd_config::Config;

type Edit = Box<dyn FnOnce(&mut HeatTable) + Send>;
type Read = Box<dyn FnOnce(Option<&HeatTable>) + Send>;

/// A request to the owner.
pub enum HeatCmd {
    /// Change `pid`'s table (created from the config when missing).
    Edit { pid: i32, f: Edit },
    /// Read `pid`'s table (`None`: tierd has none for it).
    Read { pid: i32, f: Read },
}

/// Commands that may wait for the owner before a sender blocks.
const QUEUE: usize = 16 << 10;

/// Totals the owner publishes for readers that need no table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeatSummary {
    /// Memory each process's table uses, bytes.
    pub table_bytes: HashMap<i32, u64>,
}

/// The senders' side, held by the daemon.
pub struct HeatPort {
    tx: Sender<HeatCmd>,
    /// Taken once, by the owner.
    rx: Mutex<Option<Receiver<HeatCmd>>>,
    summary: RwLock<Arc<HeatSummary>>,
}

impl Default for HeatPort {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        HeatPort {
            tx,
            rx: Mutex::new(Some(rx)),
            summary: RwLock::new(Arc::default()),
        }
    }
}

impl HeatPort {
    /// Changes `pid`'s table on the owner's thread, after every command sent before.
    /// Waits only while the queue is full; a command sent after the owner is gone
    /// (shutdown) is dropped.
    pub fn edit(&self, pid: i32, f: impl FnOnce(&mut HeatTable) + Send + 'static) {
        let _ = self.tx.send(HeatCmd::Edit {
            pid,
            f: Box::new(f),
        });
    }

    /// Runs `f` on `pid`'s table on the owner's thread and returns its result, or
    /// `None` when the owner did not answer within `timeout`.
    pub fn read<R: Send + 'static>(
        &self,
        pid: i32,
        timeout: Duration,
        f: impl FnOnce(Option<&HeatTable>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let f: Read = Box::new(move |t| {
            let _ = tx.send(f(t));
        });
        self.tx
            .send_timeout(HeatCmd::Read { pid, f }, timeout)
            .ok()?;
        rx.recv_timeout(timeout).ok()
    }

    /// The owner's latest totals.
    pub fn summary(&self) -> Arc<HeatSummary> {
        self.summary
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The owner's side; `None` after the first call.
    pub fn take_owner(&self) -> Option<HeatOwner> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(HeatOwner {
            tables: HashMap::new(),
            rx,
        })
    }

    fn publish(&self, s: HeatSummary) {
        *self.summary.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }
}

/// The heat tables and the queue of commands for them.
pub struct HeatOwner {
    tables: HashMap<i32, HeatTable>,
    rx: Receiver<HeatCmd>,
}

impl HeatOwner {
    /// The command queue, to wait on beside other events.
    pub fn queue(&self) -> &Receiver<HeatCmd> {
        &self.rx
    }

    /// Runs one command.
    pub fn apply(&mut self, cmd: HeatCmd, cfg: &Config) {
        match cmd {
            HeatCmd::Edit { pid, f } => f(self.table(pid, cfg)),
            HeatCmd::Read { pid, f } => f(self.tables.get(&pid)),
        }
    }

    /// Runs every command waiting in the queue; returns how many.
    pub fn apply_pending(&mut self, cfg: &Config) -> usize {
        let mut n = 0;
        while let Ok(cmd) = self.rx.try_recv() {
            self.apply(cmd, cfg);
            n += 1;
        }
        n
    }

    /// `pid`'s table, created from the config when missing.
    pub fn table(&mut self, pid: i32, cfg: &Config) -> &mut HeatTable {
        self.tables
            .entry(pid)
            .or_insert_with(|| new_heat_table(cfg))
    }

    pub fn get(&self, pid: i32) -> Option<&HeatTable> {
        self.tables.get(&pid)
    }

    pub fn get_mut(&mut self, pid: i32) -> Option<&mut HeatTable> {
        self.tables.get_mut(&pid)
    }

    pub fn tables_mut(&mut self) -> impl Iterator<Item = (&i32, &mut HeatTable)> {
        self.tables.iter_mut()
    }

    /// Keeps the tables of the processes `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(i32) -> bool) {
        self.tables.retain(|pid, _| keep(*pid));
    }

    /// Publishes the totals readers see through [`HeatPort::summary`].
    pub fn publish(&self, port: &HeatPort) {
        port.publish(HeatSummary {
            table_bytes: self
                .tables
                .iter()
                .map(|(pid, t)| (*pid, t.memory_bytes()))
                .collect(),
        });
    }

    /// Serves commands until `stop` is set: the owner thread of tests that run the
    /// protocol or the control socket without the tiering loop.
    pub fn serve(mut self, cfg: Arc<Config>, stop: Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::Ordering;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(cmd) = self.rx.recv_timeout(Duration::from_millis(20)) {
                self.apply(cmd, &cfg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_and_reads_run_in_order_on_the_owner() {
        let port = Arc::new(HeatPort::default());
        let owner = port.take_owner().expect("first take");
        assert!(port.take_owner().is_none(), "one owner");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cfg = Arc::new(Config::default());
        let (s, c) = (stop.clone(), cfg.clone());
        let t = std::thread::spawn(move || owner.serve(c, s));
        port.edit(7, |t| t.record(0, 4096, 1.0, 0));
        port.edit(7, |t| t.record(1 << 20, (1 << 20) + 4096, 1.0, 0));
        let n = port.read(7, Duration::from_secs(5), |t| t.map(|t| t.len()));
        assert_eq!(n, Some(Some(2)), "the read sees both edits sent before it");
        let none = port.read(8, Duration::from_secs(5), |t| t.is_none());
        assert_eq!(none, Some(true));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        t.join().unwrap();
        let late = port.read(7, Duration::from_millis(50), |_| ());
        assert_eq!(late, None, "no owner: the read times out");
    }
}
