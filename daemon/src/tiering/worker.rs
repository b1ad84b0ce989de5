//! The migration worker: executes a plan off the tiering loop's thread.
//!
//! Receives the policy's moves over a bounded crossbeam channel, runs demotions and
//! promotions in two lanes at once (see [`run_lanes`]), in steps of one job per
//! (process, destination) through the migration engine, and writes the outcome back:
//! each moved granule's node, move time and ping-pong count in the heat table,
//! promoted/demoted counters and rates in the registry. The loop plans again every
//! `policy.interval_ms` while a plan runs; a newer plan waiting in the channel
//! supersedes the running one at its next step (see [`Lanes::superseded`]).

use crate::migrate::engine::Job;
use crate::policy::{Direction, Move, MoveCause};
use crate::state::Daemon;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tierd_api::AddrRange;

/// One plan for the worker.
pub struct PlanJob {
    pub moves: Vec<Move>,
    /// Free bytes to keep on the destination of promotions (promote watermark).
    pub promote_floor: BTreeMap<u32, u64>,
    pub pingpong_window_ms: u32,
}

/// Runs plans until the channel closes. `throughput` gets the measured migration rate
/// (bytes/s, smoothed) so the loop can size plans; `done` wakes the loop when the
/// worker runs out of plans after one that moved something.
pub fn run(
    d: Arc<Daemon>,
    rx: crossbeam_channel::Receiver<PlanJob>,
    throughput: Arc<AtomicU64>,
    done: crossbeam_channel::Sender<()>,
) {
    let heartbeat = d.liveness.register("tierd-migrate");
    while let Some(job) = heartbeat.recv(&rx) {
        let (bytes, secs) = execute(&d, job, &rx);
        if bytes > 0 {
            let now = bytes as f64 / secs;
            let old = throughput.load(Ordering::Relaxed) as f64;
            let ema = if old == 0.0 {
                now
            } else {
                0.5 * old + 0.5 * now
            };
            throughput.store(ema as u64, Ordering::Relaxed);
        }
        if bytes > 0 && rx.is_empty() {
            // Wake the loop to plan the next job (a wake-up already pending will do).
            // A plan that moved nothing (every destination full: headroom, ENOMEM) does
            // not: the next plan comes at the policy's own interval, not 50 ms later,
            // or a full node makes the loop replan futile moves ~10 times a second.
            let _ = done.try_send(());
        }
    }
}

fn merge(mut addrs: Vec<(u64, u64)>) -> Vec<AddrRange> {
    addrs.sort_unstable();
    let mut out: Vec<AddrRange> = Vec::new();
    for (a, len) in addrs {
        match out.last_mut() {
            Some(r) if r.end == a => r.end = a + len,
            _ => out.push(AddrRange {
                start: a,
                end: a + len,
            }),
        }
    }
    out
}

/// Migration work per step of a plan's schedule (see [`run_lanes`]).
const STEP_BYTES: u64 = 4 << 20;

/// Moved pages per (process, 1 = promotion / 0 = demotion).
type Pages = BTreeMap<(i32, u8), u64>;

/// What the two lanes need from the outside world: narrow, so the schedule is testable
/// without moving pages.
trait Lanes: Sync {
    /// Runs one step (moves of one direction); returns the pages it moved.
    fn step(&self, step: &[&Move], promote: bool) -> Pages;
    /// Whether node `to` has room for a promotion step above its promotion floor.
    fn room(&self, to: u32) -> bool;
    /// A newer plan is waiting: stop after the step in progress.
    fn superseded(&self) -> bool;
}

/// The worker's [`Lanes`]: the migration engine, the nodes' free memory, the channel.
struct WorkerLanes<'a> {
    d: &'a Daemon,
    job: &'a PlanJob,
    rx: &'a crossbeam_channel::Receiver<PlanJob>,
}

impl Lanes for WorkerLanes<'_> {
    fn step(&self, step: &[&Move], promote: bool) -> Pages {
        let mut pages = Pages::new();
        run_step(self.d, self.job, step, promote, &mut pages);
        pages
    }

    fn room(&self, to: u32) -> bool {
        let floor = self.job.promote_floor.get(&to).copied().unwrap_or(0);
        self.d
            .topo_src
            .free_bytes(to)
            .is_ok_and(|free| free >= floor.saturating_add(STEP_BYTES))
    }

    fn superseded(&self) -> bool {
        !self.rx.is_empty()
    }
}

/// Executes one plan, or its head until a newer plan supersedes it; returns (bytes
/// moved, seconds taken).
fn execute(d: &Daemon, job: PlanJob, rx: &crossbeam_channel::Receiver<PlanJob>) -> (u64, f64) {
    let started = Instant::now();
    let lanes = WorkerLanes { d, job: &job, rx };
    let (pages, superseded) = run_lanes(&lanes, &job.moves);
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let mut moved = [0u64; 2]; // [demoted, promoted] pages
    for (&(_, dir), &n) in &pages {
        moved[dir as usize] += n;
    }
    tracing::debug!(
        moves = job.moves.len(),
        promoted_pages = moved[1],
        demoted_pages = moved[0],
        superseded,
        secs,
        "plan executed"
    );
    for p in d.registry.all() {
        let prom = pages.get(&(p.pid, 1)).copied().unwrap_or(0);
        let dem = pages.get(&(p.pid, 0)).copied().unwrap_or(0);
        p.stats.promoted_pages.fetch_add(prom, Ordering::Relaxed);
        p.stats.demoted_pages.fetch_add(dem, Ordering::Relaxed);
        p.stats.set_rates(prom as f64 / secs, dem as f64 / secs);
    }
    (pages.values().sum::<u64>() * d.engine.page_size(), secs)
}

/// Runs a plan's moves in two lanes; returns the pages moved and whether a newer plan
/// cut it short.
///
/// The plan lists demotions, then promotions best first. They run in two lanes at
/// once, each in steps of [`STEP_BYTES`]: a scoped `tierd-migrate2` thread runs the
/// demotions, then joins this one in taking promotion steps, best first, from a shared
/// cursor. A promotion step starts as soon as its destination has room for it above
/// the promotion floor (or every demotion is done), so the best promotion of a plan
/// full of demotions waits for one demotion step, not for all of them, and the two
/// directions share the machine's CPUs as the kernel's own movers do (TPP: kswapd
/// demotes while faulting tasks promote). Page migration is CPU work (unmap, copy,
/// remap): with two lanes it runs on two CPUs, also when a plan only promotes (a
/// node with room, or a hot set moving in after its demotions are done).
///
/// Before each step both lanes ask whether a newer plan waits; if so they stop, so
/// newly hot data waits at most one step plus one planning period for the worker,
/// not for the rest of a plan made on older heat.
fn run_lanes(lanes: &impl Lanes, moves: &[Move]) -> (Pages, bool) {
    let (dem, prom): (Vec<&Move>, Vec<&Move>) =
        moves.iter().partition(|m| m.dir == Direction::Demote);
    let prom: Vec<&[&Move]> = steps(&prom).collect();
    let next = AtomicUsize::new(0);
    let cut = AtomicBool::new(false);
    let demoting = Demoting::new(dem.is_empty());
    // A newer plan waits: remember that the plan was cut short, and stop.
    let stop = || {
        let s = lanes.superseded();
        if s {
            cut.store(true, Ordering::Relaxed);
        }
        s
    };
    let demote = || {
        // Marks the demotions done however they end (a panic too), so promotion steps
        // never wait for demotions that will not come.
        let _done = LaneDone(&demoting);
        let mut pages = Pages::new();
        for step in steps(&dem) {
            if stop() {
                break;
            }
            add_pages(&mut pages, lanes.step(step, false));
            demoting.stepped(false);
        }
        pages
    };
    // Promotion steps, best first, taken from a shared cursor by whichever lane is free.
    let promote = || {
        let mut pages = Pages::new();
        while let Some(step) = prom.get(next.fetch_add(1, Ordering::Relaxed)) {
            let to = step[0].to;
            demoting.wait_for_room(|| lanes.superseded() || lanes.room(to));
            if stop() {
                break;
            }
            add_pages(&mut pages, lanes.step(step, true));
        }
        pages
    };
    let second = || {
        let mut pages = demote();
        add_pages(&mut pages, promote());
        pages
    };
    let mut pages = Pages::new();
    std::thread::scope(|s| {
        let lane = if dem.is_empty() && prom.len() < 2 {
            None
        } else {
            match std::thread::Builder::new()
                .name("tierd-migrate2".into())
                .spawn_scoped(s, second)
            {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "no second migration lane: demoting before promoting");
                    add_pages(&mut pages, demote());
                    None
                }
            }
        };
        add_pages(&mut pages, promote());
        if let Some(h) = lane {
            match h.join() {
                Ok(p) => add_pages(&mut pages, p),
                Err(_) => tracing::error!("the second migration lane panicked"),
            }
        }
    });
    (pages, cut.load(Ordering::Relaxed))
}

/// Adds one lane's moved-page counts to another's.
fn add_pages(into: &mut Pages, from: Pages) {
    for (k, n) in from {
        *into.entry(k).or_default() += n;
    }
}

/// The demotions' progress, for promotion steps to wait on.
struct Demoting {
    progress: Mutex<Progress>,
    /// Signalled after each demotion step.
    stepped: Condvar,
}

#[derive(Clone, Copy)]
struct Progress {
    /// Demotion steps run so far.
    steps: u64,
    /// Every demotion of the plan has run.
    done: bool,
}

/// Marks the demotion lane done when dropped.
struct LaneDone<'a>(&'a Demoting);

impl Drop for LaneDone<'_> {
    fn drop(&mut self) {
        self.0.stepped(true);
    }
}

/// Longest wait for a demotion step before checking free memory again (memory also
/// frees up without tierd: a process exits or unmaps).
const ROOM_POLL: Duration = Duration::from_millis(50);

impl Demoting {
    fn new(done: bool) -> Demoting {
        Demoting {
            progress: Mutex::new(Progress { steps: 0, done }),
            stepped: Condvar::new(),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One demotion step ran (`last`: and it was the last one).
    fn stepped(&self, last: bool) {
        let mut p = self.progress();
        p.steps += 1;
        p.done |= last;
        self.stepped.notify_all();
    }

    /// Returns once `room()` holds or every demotion has run. `room()` runs without the
    /// lock held (it reads sysfs); a step that ends meanwhile is not missed: the wait
    /// only starts if no step ran since the last check.
    fn wait_for_room(&self, room: impl Fn() -> bool) {
        let mut seen = self.progress().steps;
        loop {
            let done = self.progress().done;
            if done || room() {
                return;
            }
            let p = self.progress();
            let p = if p.steps == seen && !p.done {
                self.stepped
                    .wait_timeout(p, ROOM_POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            } else {
                p
            };
            if p.done {
                return;
            }
            seen = p.steps;
        }
    }
}

/// The steps of a queue, in order (see [`step_len`]).
fn steps<'a, 'm>(mut queue: &'a [&'m Move]) -> impl Iterator<Item = &'a [&'m Move]> {
    std::iter::from_fn(move || {
        if queue.is_empty() {
            return None;
        }
        let (step, rest) = queue.split_at(step_len(queue));
        queue = rest;
        Some(step)
    })
}

/// How many moves from the head of `queue` make one step (at least one).
fn step_len(queue: &[&Move]) -> usize {
    let mut bytes = 0;
    queue
        .iter()
        .take_while(|m| {
            let first = bytes == 0;
            bytes += m.bytes;
            first || bytes <= STEP_BYTES
        })
        .count()
}

/// Runs one step: one migration job per (process, destination, cause); `pages` counts
/// what moved per (process, 1 = promotion / 0 = demotion).
fn run_step(d: &Daemon, plan: &PlanJob, step: &[&Move], promote: bool, pages: &mut Pages) {
    let mut groups: BTreeMap<(i32, u32, MoveCause), Vec<(u64, u64)>> = BTreeMap::new();
    for m in step {
        groups
            .entry((m.pid, m.to, m.cause))
            .or_default()
            .push((m.addr, m.bytes));
    }
    for ((pid, to, cause), addrs) in groups {
        let granules: Vec<u64> = addrs.iter().map(|a| a.0).collect();
        let job = Job {
            pid,
            ranges: Some(merge(addrs)),
            to,
            min_free_bytes: if promote {
                plan.promote_floor.get(&to).copied().unwrap_or(0)
            } else {
                0
            },
            cause,
        };
        match d.engine.run(&job, None) {
            Ok(r) => {
                *pages.entry((pid, promote as u8)).or_default() += r.moved_pages;
                if let Some(why) = &r.stopped {
                    tracing::debug!(pid, to, reason = %why, "migration stopped early");
                }
                record_outcome(d, pid, &granules, to, plan.pingpong_window_ms, promote);
            }
            Err(e) => tracing::debug!(pid, to, error = %e, "migration failed"),
        }
    }
}

/// Reads back where the granules are now and updates their history; a granule still
/// elsewhere than `to` is marked [`crate::heat::flags::STUCK`] (the policy leaves it alone a while).
fn record_outcome(d: &Daemon, pid: i32, granules: &[u64], to: u32, window_ms: u32, promoted: bool) {
    let mut status = vec![0i32; granules.len()];
    if d.engine.mover().query(pid, granules, &mut status).is_err() {
        return;
    }
    let page = d.engine.page_size();
    let proc = d.registry.get(pid);
    let (granules, at) = (granules.to_vec(), Instant::now());
    d.heat.edit(pid, move |t| {
        let now = t.now_ms(at);
        let mut pingpong = 0u64;
        for (&a, &s) in granules.iter().zip(&status) {
            if t.note_move(a, to, s, promoted, now, window_ms) {
                pingpong += t.granule() / page;
            }
        }
        if let Some(p) = proc.filter(|_| pingpong > 0) {
            p.stats
                .pingpong_pages
                .fetch_add(pingpong, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{run_lanes, step_len, steps, Demoting, LaneDone, Lanes, Pages, STEP_BYTES};
    use crate::policy::{Direction, Move, MoveCause};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Runs `wait_for_room` on a thread; returns a receiver that gets `()` when it
    /// returns (so a test fails by timeout instead of hanging).
    fn waiter(
        lane: &Arc<Demoting>,
        room: &Arc<AtomicBool>,
        checks: &Arc<AtomicUsize>,
    ) -> crossbeam_channel::Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (lane, room, checks) = (lane.clone(), room.clone(), checks.clone());
        std::thread::spawn(move || {
            lane.wait_for_room(|| {
                checks.fetch_add(1, Ordering::SeqCst);
                room.load(Ordering::SeqCst)
            });
            let _ = tx.send(());
        });
        rx
    }

    #[test]
    fn promotions_wait_for_room_or_the_last_demotion() {
        let long = Duration::from_secs(10);
        let checks = Arc::new(AtomicUsize::new(0));
        // Room already: no wait.
        let lane = Arc::new(Demoting::new(false));
        let room = Arc::new(AtomicBool::new(true));
        waiter(&lane, &room, &checks).recv_timeout(long).unwrap();
        // No demotions in the plan: no wait, room is not even checked.
        let before = checks.load(Ordering::SeqCst);
        let none = Arc::new(Demoting::new(true));
        let full = Arc::new(AtomicBool::new(false));
        waiter(&none, &full, &checks).recv_timeout(long).unwrap();
        assert_eq!(checks.load(Ordering::SeqCst), before);
        // A demotion step makes room: the waiter checks again and goes.
        let lane = Arc::new(Demoting::new(false));
        let room = Arc::new(AtomicBool::new(false));
        let done = waiter(&lane, &room, &checks);
        assert!(
            done.recv_timeout(Duration::from_millis(200)).is_err(),
            "no room yet"
        );
        room.store(true, Ordering::SeqCst);
        lane.stepped(false);
        done.recv_timeout(long).unwrap();
        // Still no room after the last demotion: go anyway (the engine's headroom
        // check stops the job if the node is really full).
        let lane = Arc::new(Demoting::new(false));
        let room = Arc::new(AtomicBool::new(false));
        let done = waiter(&lane, &room, &checks);
        lane.stepped(false);
        assert!(
            done.recv_timeout(Duration::from_millis(200)).is_err(),
            "more demotions to come"
        );
        lane.stepped(true);
        done.recv_timeout(long).unwrap();
        // A demotion lane that panics still lets the promotions go.
        let lane = Arc::new(Demoting::new(false));
        let done = waiter(&lane, &full, &checks);
        let l = lane.clone();
        let panicked = std::thread::spawn(move || {
            let _done = LaneDone(&l);
            panic!("a demotion step panicked");
        })
        .join();
        assert!(panicked.is_err());
        done.recv_timeout(long).unwrap();
    }

    /// A [`Lanes`] that moves nothing: logs each step (direction, moves, thread), moves
    /// one page per move, takes `step_ms` per step, and reports a newer plan once
    /// `cut_after` steps have run.
    struct Fake {
        log: Mutex<Vec<(bool, Vec<u64>, String)>>,
        ran: AtomicUsize,
        cut_after: usize,
        step_ms: u64,
    }

    impl Fake {
        fn new(cut_after: usize, step_ms: u64) -> Fake {
            Fake {
                log: Mutex::new(Vec::new()),
                ran: AtomicUsize::new(0),
                cut_after,
                step_ms,
            }
        }
    }

    impl Lanes for Fake {
        fn step(&self, step: &[&Move], promote: bool) -> Pages {
            std::thread::sleep(Duration::from_millis(self.step_ms));
            let thread = std::thread::current().name().unwrap_or("").to_string();
            self.log
                .lock()
                .unwrap()
                .push((promote, step.iter().map(|m| m.addr).collect(), thread));
            self.ran.fetch_add(1, Ordering::SeqCst);
            let mut p = Pages::new();
            p.insert((1, promote as u8), step.len() as u64);
            p
        }
        fn room(&self, _to: u32) -> bool {
            true
        }
        fn superseded(&self) -> bool {
            self.ran.load(Ordering::SeqCst) >= self.cut_after
        }
    }

    /// `n` moves of half a step each; `demote_every`: every such move is a demotion.
    fn plan(n: u64, demote_every: u64) -> Vec<Move> {
        (0..n)
            .map(|i| {
                let demote = demote_every > 0 && i % demote_every == 0;
                Move {
                    pid: 1,
                    addr: i,
                    bytes: STEP_BYTES / 2,
                    from: if demote { 0 } else { 1 },
                    to: if demote { 1 } else { 0 },
                    dir: if demote {
                        Direction::Demote
                    } else {
                        Direction::Promote
                    },
                    cause: MoveCause::Sampling,
                }
            })
            .collect()
    }

    /// Runs a whole plan (no newer plan comes) on a [`Fake`] taking `step_ms` per step;
    /// returns the pages moved and the steps' log.
    fn run_whole(moves: &[Move], step_ms: u64) -> (Pages, Vec<(bool, Vec<u64>, String)>) {
        let fake = Fake::new(usize::MAX, step_ms);
        let (pages, cut) = run_lanes(&fake, moves);
        assert!(!cut);
        (pages, fake.log.into_inner().unwrap())
    }

    #[test]
    fn lanes_run_every_step_of_a_plan_once() {
        let (pages, log) = run_whole(&plan(12, 2), 0);
        assert_eq!(pages.get(&(1, 0)), Some(&6));
        assert_eq!(pages.get(&(1, 1)), Some(&6));
        let lane = |promote: bool| -> Vec<Vec<u64>> {
            log.iter()
                .filter(|(p, ..)| *p == promote)
                .map(|(_, a, _)| a.clone())
                .collect()
        };
        // Demotions run in order on one lane; promotion steps may run on either.
        assert_eq!(lane(false), vec![vec![0, 2], vec![4, 6], vec![8, 10]]);
        let mut up = lane(true);
        up.sort();
        assert_eq!(up, vec![vec![1, 3], vec![5, 7], vec![9, 11]]);
    }

    #[test]
    fn a_plan_of_promotions_only_runs_on_both_lanes() {
        let (pages, log) = run_whole(&plan(40, 0), 10);
        assert_eq!(pages.get(&(1, 1)), Some(&40));
        let threads: std::collections::BTreeSet<&str> =
            log.iter().map(|(.., t)| t.as_str()).collect();
        assert!(threads.contains("tierd-migrate2"), "threads: {threads:?}");
        assert_eq!(threads.len(), 2, "threads: {threads:?}");
    }

    #[test]
    fn a_newer_plan_stops_both_lanes_at_their_next_step() {
        for cut_after in [0, 1, 3] {
            let fake = Fake::new(cut_after, 0);
            let (pages, cut) = run_lanes(&fake, &plan(40, 2));
            assert!(cut, "cut after {cut_after}");
            let ran = fake.ran.load(Ordering::SeqCst);
            // Each lane may finish the step it started before the cut, no more.
            assert!(
                ran >= cut_after && ran <= cut_after + 2,
                "cut after {cut_after}: {ran} steps ran"
            );
            let moved: u64 = pages.values().sum();
            assert_eq!(moved, 2 * ran as u64, "pages of the steps that ran");
        }
    }

    #[test]
    fn steps_cover_the_queue_in_order() {
        let m = |addr| Move {
            pid: 1,
            addr,
            bytes: STEP_BYTES / 2,
            from: 1,
            to: 0,
            dir: Direction::Demote,
            cause: MoveCause::Headroom,
        };
        let moves: Vec<Move> = (0..5).map(m).collect();
        let refs: Vec<&Move> = moves.iter().collect();
        let got: Vec<Vec<u64>> = steps(&refs)
            .map(|s| s.iter().map(|m| m.addr).collect())
            .collect();
        assert_eq!(got, vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(steps(&[]).count(), 0);
    }

    #[test]
    fn steps_hold_step_bytes_and_at_least_one_move() {
        let m = |bytes| Move {
            pid: 1,
            addr: 0,
            bytes,
            from: 1,
            to: 0,
            dir: Direction::Promote,
            cause: MoveCause::Sampling,
        };
        let small: Vec<Move> = (0..100).map(|_| m(STEP_BYTES / 64)).collect();
        let refs: Vec<&Move> = small.iter().collect();
        assert_eq!(step_len(&refs), 64);
        assert_eq!(step_len(&refs[90..]), 10);
        let big = [m(2 * STEP_BYTES), m(1)];
        let refs: Vec<&Move> = big.iter().collect();
        assert_eq!(step_len(&refs), 1, "an oversized move is a step of its own");
        assert_eq!(step_len(&[]), 0);
    }

    #[test]
    fn merge_joins_adjacent_granules() {
        let r = super::merge(vec![
            (0x20000, 0x10000),
            (0x0, 0x10000),
            (0x10000, 0x10000),
            (0x40000, 0x10000),
        ]);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].start, r[0].end), (0, 0x30000));
        assert_eq!((r[1].start, r[1].end), (0x40000, 0x50000));
    }
}

#[cfg(test)]
mod wake_tests {
    use super::{run, PlanJob};
    use crate::migrate::fake::FakeMover;
    use crate::policy::{Direction, Move, MoveCause};
    use crate::state::Daemon;
    use crate::topology::fake::FakeTopology;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;
    use tierd_config::Config;

    /// Runs one plan demoting 1 MiB of this process to node 1 on a worker whose moves
    /// `succeed` or are all refused; whether the worker woke the loop after it.
    fn wakes_after_one_plan(succeed: bool) -> bool {
        let mut cfg = Config::default();
        cfg.migrate.thp_aware = false;
        let topo = Arc::new(FakeTopology::new(&[
            (0, &[0], 1 << 30, 0),
            (1, &[], 4 << 30, 1),
        ]));
        let pid = std::process::id() as i32;
        // Every page on node 0; a mover for another pid refuses this one's (nothing moves).
        let mover = FakeMover::new().default_node(0);
        let mover = if succeed { mover } else { mover.owner(pid + 1) };
        let d = Daemon::new(cfg, None, topo, Arc::new(mover)).unwrap();
        let mem = vec![1u8; 2 << 20];
        let addr = (mem.as_ptr() as u64).div_ceil(1 << 20) * (1 << 20);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let worker = {
            let d = d.clone();
            std::thread::spawn(move || run(d, rx, Arc::new(AtomicU64::new(0)), done_tx))
        };
        tx.send(PlanJob {
            moves: vec![Move {
                pid,
                addr,
                bytes: 64 << 10,
                from: 0,
                to: 1,
                dir: Direction::Demote,
                cause: MoveCause::Headroom,
            }],
            promote_floor: Default::default(),
            pingpong_window_ms: 30_000,
        })
        .unwrap();
        let woke = done_rx.recv_timeout(Duration::from_millis(1500)).is_ok();
        drop(tx);
        worker.join().unwrap();
        drop(mem);
        woke
    }

    #[test]
    fn a_plan_that_moved_nothing_does_not_wake_the_loop_early() {
        assert!(
            wakes_after_one_plan(true),
            "a plan that moved pages asks for the next"
        );
        assert!(
            !wakes_after_one_plan(false),
            "nothing moved (a full node): the next plan waits for the policy interval"
        );
    }
}
