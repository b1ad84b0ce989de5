//! Migration jobs: ranges of one process → one node, in batches.
//!
//! Called from the control socket (`tierctl migrate`, on the connection's thread) and
//! from the tiering loop's migration worker. Every batch: destination headroom check,
//! token-bucket wait, a query of where its pages are, `move_pages`, per-page accounting
//! (moved pages by source tier under the job's cause, failures by errno), pidfd
//! liveness check.

use super::accounting::MoveLedger;
use super::bucket::TokenBucket;
use super::{errno, thp, MoveError, Mover};
use crate::proc::maps::{migratable_ranges, MapsError};
use crate::proc::pidfd::PidFd;
use crate::proc::resident::{present_runs, ResidentError};
use crate::topology::{TopologyError, TopologySource};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tierd_api::{AddrRange, MigrateReply, MoveCause};
use tierd_config::MigrateConfig;

/// How a page that did not reach its node is counted: the errno the kernel gave it,
/// or `NOT_MIGRATED` (left untouched, or left on another node).
pub(super) fn failure_key(status: i32) -> String {
    match status {
        s if s < 0 && s != UNTOUCHED => errno::name(s),
        _ => "NOT_MIGRATED".to_string(),
    }
}

/// Status value the kernel leaves untouched for pages it did not attempt.
pub(super) const UNTOUCHED: i32 = i32::MIN;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    Move(#[from] MoveError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Resident(#[from] ResidentError),
}

/// One migration request.
#[derive(Debug, Clone)]
pub struct Job {
    pub pid: i32,
    /// Ranges to move; `None` = every resident page of the process.
    pub ranges: Option<Vec<AddrRange>>,
    pub to: u32,
    /// A floor of free bytes on the destination stricter than `migrate.free_watermark`.
    pub min_free_bytes: u64,
    /// Why the pages move: what the job's moves are counted under.
    pub cause: MoveCause,
}

/// Totals since start, for metrics and status; written only by the engine's `account`.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub moved_pages: AtomicU64,
    pub moved_bytes: AtomicU64,
    pub failed: Mutex<BTreeMap<String, u64>>,
    /// The moved pages per source tier, destination tier and cause.
    pub moves: MoveLedger,
}

/// Moved base pages per source tier, for [`MigrationEngine::account`].
pub(super) type FromTiers = BTreeMap<u32, u64>;

pub struct MigrationEngine {
    mover: Arc<dyn Mover>,
    topo: Arc<dyn TopologySource>,
    bucket: TokenBucket,
    /// The latency-first lane's own cap (`migrate.prefetch_rate_mbps`).
    urgent_bucket: TokenBucket,
    cfg: RwLock<MigrateConfig>,
    page: u64,
    topo_cache: Mutex<Option<(Instant, Arc<crate::topology::Topology>)>>,
    pub counters: EngineCounters,
    /// Ranges no job may move (pinned client regions): cut out of every job.
    pub pinned: super::pinned::PinnedRanges,
    /// The PSI backoff on `bucket` (fed by `note_pressure`, once a second).
    psi: super::pressure::Throttle,
    /// Told of every move's result ([`super::MoveObserver`]); set once by the protocol
    /// server.
    observer: RwLock<Option<Arc<dyn super::MoveObserver>>>,
}

const TOPOLOGY_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// One job in progress: what its batches share.
struct JobRun<'a> {
    job: &'a Job,
    /// Free bytes the destination keeps.
    floor: u64,
    extra: Option<&'a TokenBucket>,
    pidfd: &'a PidFd,
    topo: &'a crate::topology::Topology,
    reply: MigrateReply,
    /// Moved pages by source tier.
    from: FromTiers,
}

/// An address to pass to move_pages and how many base pages it stands for.
#[derive(Debug, Clone, Copy)]
struct Unit {
    addr: u64,
    pages: u64,
}

impl MigrationEngine {
    pub fn new(mover: Arc<dyn Mover>, topo: Arc<dyn TopologySource>, cfg: MigrateConfig) -> Self {
        MigrationEngine {
            mover,
            topo,
            bucket: TokenBucket::new(cfg.rate_limit_mbps),
            urgent_bucket: TokenBucket::new(cfg.prefetch_rate_mbps),
            cfg: RwLock::new(cfg),
            page: super::page_size(),
            topo_cache: Mutex::new(None),
            counters: EngineCounters::default(),
            pinned: Default::default(),
            psi: Default::default(),
            observer: RwLock::new(None),
        }
    }

    /// From now on `o` is told of every move's result (replacing any earlier one).
    pub fn set_observer(&self, o: Arc<dyn super::MoveObserver>) {
        *self.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(o);
    }

    /// Tells the observer, if any, where the pages of one `move_pages` call went:
    /// `units[i]` (address, base pages) got `status[i]`; untouched ones are left out.
    pub(super) fn notify(&self, pid: i32, units: impl Iterator<Item = (u64, u64)>, status: &[i32]) {
        let o = self
            .observer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(o) = o else { return };
        let moved: Vec<super::Moved> = units
            .zip(status)
            .filter(|(_, &s)| s != UNTOUCHED)
            .map(|((addr, pages), &status)| super::Moved {
                addr,
                bytes: pages * self.page,
                status,
            })
            .collect();
        if !moved.is_empty() {
            o.moved(pid, &moved);
        }
    }

    pub fn page_size(&self) -> u64 {
        self.page
    }

    pub fn mover(&self) -> &Arc<dyn Mover> {
        &self.mover
    }

    /// Where `pages` of `pid` are (`move_pages` with no nodes): node or negative errno
    /// per page. Moves nothing.
    pub fn query(&self, pid: i32, pages: &[u64], status: &mut [i32]) -> Result<(), MoveError> {
        self.mover.query(pid, pages, status)
    }

    /// Applies a reloaded `[migrate]` section.
    pub fn set_config(&self, cfg: MigrateConfig) {
        self.bucket.set_rate(self.psi.cap_mbps(&cfg));
        self.urgent_bucket.set_rate(cfg.prefetch_rate_mbps);
        *self.cfg.write().unwrap_or_else(|p| p.into_inner()) = cfg;
    }

    /// One memory-pressure reading (`None`: unreadable): steps the PSI backoff and
    /// sets the shared bucket's rate. Called once a second by `tierd-ops`.
    pub fn note_pressure(&self, pressure_pct: Option<f64>) {
        let before = self.psi.snapshot().1;
        let cap = self.psi.step(pressure_pct, &self.config());
        let factor = self.psi.snapshot().1;
        if factor != before {
            tracing::info!(
                pressure_pct = ?pressure_pct,
                factor,
                rate_limit_mbps = cap,
                "PSI backoff: migration rate factor changed"
            );
        }
        self.bucket.set_rate(cap);
    }

    /// Reads memory pressure from `src` and steps the backoff (an unreadable source
    /// counts as no pressure; the error is returned for the caller to log once).
    pub fn sample_pressure(
        &self,
        src: &dyn super::pressure::PressureSource,
    ) -> Result<(), super::pressure::PressureError> {
        match src.memory_some_avg10_pct() {
            Ok(p) => {
                self.note_pressure(Some(p));
                Ok(())
            }
            Err(e) => {
                self.note_pressure(None);
                Err(e)
            }
        }
    }

    /// The PSI backoff now, for status and metrics.
    pub fn psi_status(&self) -> tierd_api::PsiStatus {
        let (pressure, factor, measured) = self.psi.snapshot();
        let cfg = self.config();
        tierd_api::PsiStatus {
            memory_some_avg10_pct: pressure,
            threshold_pct: cfg.psi_threshold_pct,
            rate_factor: factor,
            rate_limit_mbps: self.bucket.rate_mbps(),
            measured_mbps: measured,
        }
    }

    /// The topology, re-read from its source at most once a second: nodes change
    /// rarely, and a full sysfs read per job is expensive (tens of ms under emulation).
    /// Free memory, which does change, is read per batch through `free_bytes`.
    fn topology(&self) -> Result<Arc<crate::topology::Topology>, TopologyError> {
        let mut cache = self.topo_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, t)) = cache.as_ref() {
            if at.elapsed() < TOPOLOGY_TTL {
                return Ok(t.clone());
            }
        }
        let t = Arc::new(self.topo.read()?);
        *cache = Some((Instant::now(), t.clone()));
        Ok(t)
    }

    fn config(&self) -> MigrateConfig {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn batch_pages(&self) -> usize {
        self.cfg
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .batch_pages
            .max(1)
    }

    pub(super) fn urgent_bucket(&self) -> &TokenBucket {
        &self.urgent_bucket
    }

    /// The topology as last read, without re-reading it when it is older than a second
    /// (the latency-first lane's view of the tiers, which change rarely).
    pub(super) fn cached_topology(&self) -> Option<Arc<crate::topology::Topology>> {
        let cache = self.topo_cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((_, t)) => Some(t.clone()),
            None => {
                drop(cache);
                self.topology().ok()
            }
        }
    }

    /// Adds a job's moved pages (per source tier, into `to_tier` for `cause`) and
    /// failures (pages by errno name) to the totals: the one writer of
    /// [`EngineCounters`].
    pub(super) fn account(
        &self,
        to_tier: u32,
        cause: MoveCause,
        from: &FromTiers,
        failed_pages: &BTreeMap<String, u64>,
    ) {
        let moved_pages: u64 = from.values().sum();
        self.counters.moves.add(to_tier, cause, from);
        self.counters
            .moved_pages
            .fetch_add(moved_pages, Ordering::Relaxed);
        self.counters
            .moved_bytes
            .fetch_add(moved_pages * self.page, Ordering::Relaxed);
        let mut failed = self
            .counters
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (k, v) in failed_pages {
            *failed.entry(k.clone()).or_default() += v;
        }
    }

    /// Runs a job to completion (or until the process exits / headroom runs out).
    /// `extra` is a further rate cap (the policy's promote or demote bucket).
    pub fn run(&self, job: &Job, extra: Option<&TokenBucket>) -> Result<MigrateReply, EngineError> {
        let started = Instant::now();
        let cfg = self.config();
        let topo = self.topology()?;
        let dest = topo.check_node(job.to)?;
        let floor = cfg
            .free_watermark
            .of(dest.total_bytes)
            .max(job.min_free_bytes);
        let pidfd = PidFd::open(job.pid).map_err(|e| match e {
            nix::errno::Errno::EPERM => MoveError::PermissionDenied(job.pid),
            _ => MoveError::NoSuchProcess(job.pid),
        })?;
        let ranges = match &job.ranges {
            Some(r) => r.clone(),
            None => self.resident(job.pid, None)?,
        };
        let ranges = self.pinned.subtract(job.pid, ranges, self.page);
        let mut run = JobRun {
            job,
            floor,
            extra,
            pidfd: &pidfd,
            topo: &topo,
            reply: MigrateReply::default(),
            from: FromTiers::new(),
        };
        let mut units = Vec::with_capacity(cfg.batch_pages);
        'ranges: for r in &ranges {
            let heads = if cfg.thp_aware {
                thp::huge_heads(job.pid, r.start, r.end, self.page)
            } else {
                Vec::new()
            };
            let mut heads = heads.into_iter().peekable();
            let mut addr = r.start / self.page * self.page;
            while addr < r.end {
                let unit = if heads.peek() == Some(&addr) {
                    heads.next();
                    Unit {
                        addr,
                        pages: thp::HUGE_BYTES / self.page,
                    }
                } else {
                    Unit { addr, pages: 1 }
                };
                addr += unit.pages * self.page;
                units.push(unit);
                if units.len() == cfg.batch_pages {
                    let stop = self.batch(&mut run, &units);
                    if let Some(why) = self.settle(&run, stop)? {
                        run.reply.stopped = Some(why);
                        break 'ranges;
                    }
                    units.clear();
                }
            }
        }
        if run.reply.stopped.is_none() && !units.is_empty() {
            let stop = self.batch(&mut run, &units);
            run.reply.stopped = self.settle(&run, stop)?;
        }
        let to_tier = topo.tier_of(job.to).unwrap_or(0);
        self.account(to_tier, job.cause, &run.from, &run.reply.failed_pages);
        let mut reply = run.reply;
        reply.bytes = reply.moved_pages * self.page;
        reply.seconds = started.elapsed().as_secs_f64();
        Ok(reply)
    }

    /// A batch's error, once what the job moved before it is counted: the kernel moved
    /// those pages whatever happens next.
    fn settle(
        &self,
        run: &JobRun,
        stop: Result<Option<String>, EngineError>,
    ) -> Result<Option<String>, EngineError> {
        if stop.is_err() {
            let to_tier = run.topo.tier_of(run.job.to).unwrap_or(0);
            self.account(to_tier, run.job.cause, &run.from, &run.reply.failed_pages);
        }
        stop
    }

    /// Moves one batch; `Ok(Some(reason))` stops the job early.
    fn batch(&self, run: &mut JobRun, units: &[Unit]) -> Result<Option<String>, EngineError> {
        let job = run.job;
        let reply = &mut run.reply;
        let pages: u64 = units.iter().map(|u| u.pages).sum();
        reply.requested_pages += pages;
        let bytes = pages * self.page;
        if run.pidfd.exited() {
            return Ok(Some("process exited".into()));
        }
        let free = self.topo.free_bytes(job.to)?;
        if free < run.floor.saturating_add(bytes) {
            return Ok(Some(format!(
                "headroom: node {} has {free} bytes free, watermark {}",
                job.to, run.floor
            )));
        }
        self.bucket.acquire(bytes);
        if let Some(b) = run.extra {
            b.acquire(bytes);
        }
        let addrs: Vec<u64> = units.iter().map(|u| u.addr).collect();
        // Where the pages are before the move: a page already on the destination comes
        // back with the destination as its status too, but the kernel did not move it.
        let mut before = vec![UNTOUCHED; addrs.len()];
        match self.mover.query(job.pid, &addrs, &mut before) {
            Ok(()) => {}
            Err(MoveError::NoSuchProcess(_)) => return Ok(Some("process exited".into())),
            Err(e) => return Err(e.into()),
        }
        let nodes = vec![job.to as i32; addrs.len()];
        let mut status = vec![UNTOUCHED; addrs.len()];
        // The destination ran out of memory mid-call (the kernel's refusal, below our
        // headroom check: another allocator got there first, or free_watermark is 0):
        // the job stops as at a headroom stop, keeping what it moved so far.
        let mut full = None;
        let t0 = Instant::now();
        match self.mover.move_pages(job.pid, &addrs, &nodes, &mut status) {
            Ok(()) => self.psi.note_moved(bytes, t0.elapsed()),
            Err(MoveError::NoSuchProcess(_)) => return Ok(Some("process exited".into())),
            Err(MoveError::Other {
                errno: nix::errno::Errno::ENOMEM,
                ..
            }) => full = Some(format!("node {} out of memory (ENOMEM)", job.to)),
            Err(e) => return Err(e.into()),
        }
        // Pages the kernel gave up on mid-call (a failed folio aborts the rest): once more.
        let retry: Vec<usize> = (0..status.len())
            .filter(|&i| status[i] == UNTOUCHED)
            .collect();
        if full.is_none() && !retry.is_empty() {
            let a: Vec<u64> = retry.iter().map(|&i| addrs[i]).collect();
            let mut s = vec![UNTOUCHED; a.len()];
            if self
                .mover
                .move_pages(job.pid, &a, &nodes[..a.len()], &mut s)
                .is_ok()
            {
                for (k, &i) in retry.iter().enumerate() {
                    status[i] = s[k];
                }
            }
        }
        self.notify(job.pid, units.iter().map(|u| (u.addr, u.pages)), &status);
        for ((u, &st), &was) in units.iter().zip(&status).zip(&before) {
            if st == job.to as i32 && (was < 0 || was == st) {
                // Already there (or not present when asked, then faulted in where it
                // is now): not a move.
                reply.already_pages += u.pages;
            } else if st == job.to as i32 {
                reply.moved_pages += u.pages;
                if u.pages > 1 {
                    reply.huge_pages += 1;
                }
                let from_tier = run.topo.tier_of(was as u32).unwrap_or(u32::MAX);
                *run.from.entry(from_tier).or_default() += u.pages;
            } else {
                let key = match st {
                    UNTOUCHED if full.is_some() => "ENOMEM".to_string(),
                    st => failure_key(st),
                };
                *reply.failed_pages.entry(key).or_default() += u.pages;
            }
        }
        Ok(full)
    }

    /// The resident parts of `pid`'s migratable mappings (within `range`, if given):
    /// what a whole-process or whole-range job or query walks, so that its cost follows
    /// resident memory and not reserved address space. A `range` that touches no
    /// mapping is an error ([`MapsError::NotMapped`]).
    pub fn resident(
        &self,
        pid: i32,
        range: Option<AddrRange>,
    ) -> Result<Vec<AddrRange>, EngineError> {
        let maps = migratable_ranges(pid, range)?;
        Ok(present_runs(pid, &maps)?
            .into_iter()
            .map(|r| r.range)
            .collect())
    }

    /// Resident bytes per node of `pid` (within `range`, if given).
    pub fn placement(
        &self,
        pid: i32,
        range: Option<AddrRange>,
    ) -> Result<BTreeMap<u32, u64>, EngineError> {
        let ranges = self.resident(pid, range)?;
        let mut out = BTreeMap::new();
        let mut addrs = Vec::with_capacity(8192);
        let flush =
            |addrs: &mut Vec<u64>, out: &mut BTreeMap<u32, u64>| -> Result<(), EngineError> {
                let mut status = vec![0i32; addrs.len()];
                self.mover.query(pid, addrs, &mut status)?;
                for s in status.into_iter().filter(|s| *s >= 0) {
                    *out.entry(s as u32).or_default() += self.page;
                }
                addrs.clear();
                Ok(())
            };
        for r in ranges {
            let mut a = r.start;
            while a < r.end {
                addrs.push(a);
                a += self.page;
                if addrs.len() == 8192 {
                    flush(&mut addrs, &mut out)?;
                }
            }
        }
        flush(&mut addrs, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::fake::FakeMover;
    use crate::topology::fake::FakeTopology;

    /// The fake's one process: this test process, a live pid so the pidfd opens.
    fn live_pid() -> i32 {
        std::process::id() as i32
    }

    fn engine(
        npages: u64,
        pinned: Vec<u64>,
        batch: usize,
    ) -> (MigrationEngine, Arc<FakeMover>, Arc<FakeTopology>) {
        let pid = live_pid();
        let pages = (0..npages).map(|i| 0x10000 + i * 4096);
        // One process whose pages are on node 0; others are ENOENT.
        let mover = Arc::new(
            FakeMover::new()
                .owner(pid)
                .with_pages(pid, pages, 0)
                .with_pinned(pinned),
        );
        let topo = Arc::new(FakeTopology::new(&[
            (0, &[0], 1 << 30, 0),
            (1, &[], 4 << 30, 1),
        ]));
        let cfg = MigrateConfig {
            batch_pages: batch,
            thp_aware: false,
            ..MigrateConfig::default()
        };
        (
            MigrationEngine::new(mover.clone(), topo.clone(), cfg),
            mover,
            topo,
        )
    }

    fn job(pid: i32, npages: u64, to: u32) -> Job {
        Job {
            pid,
            ranges: Some(vec![AddrRange {
                start: 0x10000,
                end: 0x10000 + npages * 4096,
            }]),
            to,
            min_free_bytes: 0,
            cause: MoveCause::Migrate,
        }
    }

    #[test]
    fn memory_pressure_slows_the_shared_bucket_and_it_recovers() {
        use crate::migrate::pressure::fake::FakePressure;
        let (e, _, _) = engine(10, vec![], 16);
        e.set_config(MigrateConfig {
            rate_limit_mbps: 200,
            psi_threshold_pct: 10.0,
            psi_min_rate_pct: 25.0,
            ..MigrateConfig::default()
        });
        let p = FakePressure::default();
        let rates = |n: usize| -> Vec<u64> {
            (0..n)
                .map(|_| {
                    e.sample_pressure(&p).unwrap();
                    e.psi_status().rate_limit_mbps
                })
                .collect()
        };
        *p.0.lock().unwrap() = 3.0;
        assert_eq!(rates(1), vec![200]);
        *p.0.lock().unwrap() = 60.0;
        assert_eq!(rates(3), vec![100, 50, 50]);
        let st = e.psi_status();
        assert_eq!(
            (st.memory_some_avg10_pct, st.rate_factor),
            (Some(60.0), 0.25)
        );
        *p.0.lock().unwrap() = 1.0;
        assert_eq!(rates(3), vec![100, 200, 200]);
    }

    #[test]
    fn moves_in_batches_and_counts_failures_by_errno() {
        let (e, mover, _) = engine(100, vec![0x10000 + 5 * 4096], 16);
        let pid = live_pid();
        // Ask for two pages past the end: those are ENOENT.
        let r = e.run(&job(pid, 102, 1), None).unwrap();
        assert_eq!(r.requested_pages, 102);
        assert_eq!(r.moved_pages, 99);
        assert_eq!(r.failed_pages.get("EBUSY"), Some(&1));
        assert_eq!(r.failed_pages.get("ENOENT"), Some(&2));
        assert_eq!(r.bytes, 99 * 4096);
        assert_eq!(mover.calls(), 7); // ceil(102 / 16)
        let placed = e.placement(pid, None).ok();
        // placement() reads the real /proc maps of this test process, so only check
        // the fake's view through query().
        drop(placed);
        let mut st = vec![0; 3];
        mover
            .query(
                pid,
                &[0x10000, 0x10000 + 5 * 4096, 0x10000 + 99 * 4096],
                &mut st,
            )
            .unwrap();
        assert_eq!(st, vec![1, 0, 1]);
    }

    #[test]
    fn headroom_stops_before_filling_the_destination() {
        let (e, _, topo) = engine(1000, vec![], 100);
        // Destination 1 has 4 GiB; leave it only the 2% watermark + 50 pages free.
        let floor = (4u64 << 30) * 2 / 100;
        topo.free.lock().unwrap().insert(1, floor + 50 * 4096);
        let r = e.run(&job(live_pid(), 1000, 1), None).unwrap();
        assert_eq!(
            r.moved_pages, 0,
            "a 100-page batch does not fit above the watermark"
        );
        assert!(
            r.stopped.as_deref().unwrap().starts_with("headroom"),
            "{:?}",
            r.stopped
        );
    }

    #[test]
    fn bad_node_and_dead_process_are_errors() {
        let (e, _, _) = engine(10, vec![], 16);
        assert!(matches!(
            e.run(&job(live_pid(), 10, 9), None),
            Err(EngineError::Topology(TopologyError::NoSuchNode(9)))
        ));
        assert!(matches!(
            e.run(&job(i32::MAX, 10, 1), None),
            Err(EngineError::Move(MoveError::NoSuchProcess(_)))
        ));
    }

    #[test]
    fn counts_moves_per_source_tier_and_cause_not_pages_already_there() {
        let (e, mover, _) = engine(64, vec![], 16);
        let pid = live_pid();
        // A quarter of the pages are on node 1 already.
        let there: Vec<u64> = (0..16).map(|i| 0x10000 + i * 4096).collect();
        let mut st = vec![0; there.len()];
        mover
            .move_pages(pid, &there, &vec![1; there.len()], &mut st)
            .unwrap();
        let r = e.run(&job(pid, 64, 1), None).unwrap();
        assert_eq!(r.moved_pages, 48);
        assert_eq!(r.already_pages, 16);
        assert_eq!(r.bytes, 48 * 4096);
        // Back up for another reason: every page moves.
        let mut up = job(pid, 64, 0);
        up.cause = MoveCause::Sampling;
        assert_eq!(e.run(&up, None).unwrap().moved_pages, 64);
        let moves = e.counters.moves.snapshot(4096);
        let rows: Vec<(u32, u32, MoveCause, u64)> = moves
            .iter()
            .map(|m| (m.from_tier, m.to_tier, m.cause, m.pages))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, 1, MoveCause::Migrate, 48),
                (1, 0, MoveCause::Sampling, 64)
            ]
        );
        assert_eq!(e.counters.moved_pages.load(Ordering::Relaxed), 48 + 64);
    }

    /// The fake, except that calls after the first `ok_calls` move the first half of
    /// their pages and then fail with ENOMEM, as `move_pages` does into a full node.
    struct FullAfter {
        inner: FakeMover,
        ok_calls: u64,
        calls: AtomicU64,
    }

    impl Mover for FullAfter {
        fn move_pages(
            &self,
            pid: i32,
            pages: &[u64],
            nodes: &[i32],
            status: &mut [i32],
        ) -> Result<(), MoveError> {
            if self.calls.fetch_add(1, Ordering::Relaxed) < self.ok_calls {
                return self.inner.move_pages(pid, pages, nodes, status);
            }
            let half = pages.len() / 2;
            self.inner
                .move_pages(pid, &pages[..half], &nodes[..half], &mut status[..half])?;
            Err(MoveError::Other {
                pid,
                errno: nix::errno::Errno::ENOMEM,
            })
        }
        fn query(&self, pid: i32, pages: &[u64], status: &mut [i32]) -> Result<(), MoveError> {
            self.inner.query(pid, pages, status)
        }
    }

    #[test]
    fn enomem_stops_the_job_and_keeps_what_moved() {
        let pid = live_pid();
        let mover = Arc::new(FullAfter {
            inner: FakeMover::new().owner(pid).with_pages(
                pid,
                (0..100).map(|i| 0x10000 + i * 4096),
                0,
            ),
            ok_calls: 2,
            calls: AtomicU64::new(0),
        });
        let topo = Arc::new(FakeTopology::new(&[
            (0, &[0], 1 << 30, 0),
            (1, &[], 4 << 30, 1),
        ]));
        let cfg = MigrateConfig {
            batch_pages: 16,
            thp_aware: false,
            ..MigrateConfig::default()
        };
        let e = MigrationEngine::new(mover.clone(), topo, cfg);
        let r = e.run(&job(pid, 100, 1), None).unwrap();
        // Two full batches, then half of the third before the node ran out.
        assert_eq!(r.moved_pages, 16 + 16 + 8);
        assert_eq!(r.failed_pages.get("ENOMEM"), Some(&8));
        assert_eq!(r.requested_pages, 48, "no batch after the refusal");
        assert!(
            r.stopped.as_deref().unwrap().contains("ENOMEM"),
            "{:?}",
            r.stopped
        );
        assert_eq!(
            mover.calls.load(Ordering::Relaxed),
            3,
            "no retry into a full node"
        );
        assert_eq!(
            e.counters.moved_pages.load(Ordering::Relaxed),
            40,
            "moves before the refusal are counted"
        );
    }
}
