//! The tiering loop's glue, on a fake two-tier machine (node 0 fast, node 1 slow) with
//! the tests' fake mover with every page on node 1: samples recorded as heat, the
//! placement scan of this test process (its real resident pages), hints sent through
//! the daemon's heat port, and the plan that reaches the worker's channel.

use super::{worker, Loop};
use crate::migrate::fake::FakeMover;
use crate::migrate::Mover;
use crate::sampling::{AccessSample, Sampler, SamplerError, SamplingSet};
use crate::state::Daemon;
use crate::topology::fake::FakeTopology;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tierd_api::BackendStatus;
use tierd_config::{Config, PolicyName};

/// A sampler that reports what the test queued, once per drain.
struct Queued(Arc<Mutex<Vec<AccessSample>>>);

impl Sampler for Queued {
    fn name(&self) -> &'static str {
        "queued"
    }
    fn track(&mut self, _pid: i32) -> Result<(), SamplerError> {
        Ok(())
    }
    fn untrack(&mut self, _pid: i32) {}
    fn drain(&mut self, out: &mut Vec<AccessSample>) -> Result<(), SamplerError> {
        out.append(&mut self.0.lock().unwrap());
        Ok(())
    }
    fn status(&self) -> BackendStatus {
        BackendStatus {
            name: "queued".into(),
            active: true,
            detail: String::new(),
        }
    }
}

struct Fixture {
    lp: Loop,
    rx: crossbeam_channel::Receiver<worker::PlanJob>,
    pid: i32,
    /// What the fake sampler reports at the next drain.
    queued: Arc<Mutex<Vec<AccessSample>>>,
}

fn fixture() -> Fixture {
    fixture_with(Arc::new(FakeMover::new().default_node(1)))
}

fn fixture_with(mover: Arc<dyn Mover>) -> Fixture {
    let mut cfg = Config::default();
    cfg.sampling.backends = Vec::new();
    let topo = Arc::new(FakeTopology::new(&[
        (0, &[0], 1 << 30, 0),
        (1, &[], 4 << 30, 1),
    ]));
    let d = Daemon::new(cfg, None, topo, mover).unwrap();
    let pid = std::process::id() as i32;
    d.registry.manage(pid, PolicyName::Tpp, 0).unwrap();
    let heat = d.heat.take_owner().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (_done_tx, done_rx) = crossbeam_channel::bounded(1);
    let mut lp = Loop::new(d, heat, tx, done_rx, Arc::new(AtomicU64::new(0)));
    let queued = Arc::new(Mutex::new(Vec::new()));
    let cfg = lp.d.config();
    lp.sampling = SamplingSet::of(&cfg.sampling, vec![Box::new(Queued(queued.clone()))]);
    Fixture {
        lp,
        rx,
        pid,
        queued,
    }
}

/// 4 MiB of touched memory of this process, granule-aligned: the mapping and its
/// first granule.
fn hot_memory() -> (memmap2::MmapMut, u64) {
    const G: u64 = 64 << 10;
    let mut m = memmap2::MmapMut::map_anon((4 << 20) + G as usize).unwrap();
    m.fill(1);
    let base = (m.as_ptr() as u64).div_ceil(G) * G;
    (m, base)
}

#[test]
fn sampled_heat_and_a_scan_become_promotions_in_the_workers_channel() {
    let mut f = fixture();
    let (_mem, base) = hot_memory();
    // Five drains that each saw the first 2 MiB read.
    for _ in 0..5 {
        f.queued.lock().unwrap().push(AccessSample {
            pid: f.pid,
            start: base,
            end: base + (2 << 20),
            weight: 4.0,
        });
        f.lp.sample();
        std::thread::sleep(Duration::from_millis(30));
    }
    f.lp.refresh_placement();
    assert!(
        f.lp.d
            .registry
            .get(f.pid)
            .unwrap()
            .stats
            .slow_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4 << 20,
        "the scan found this process's memory on node 1"
    );
    f.lp.decide();
    let job = f.rx.try_recv().expect("a plan for the worker");
    let up: Vec<u64> = job
        .moves
        .iter()
        .filter(|m| m.to == 0 && m.pid == f.pid)
        .map(|m| m.addr)
        .collect();
    for a in (base..base + (2 << 20)).step_by(64 << 10) {
        assert!(up.contains(&a), "hot granule {a:#x} is promoted");
    }
    assert!(
        !up.iter()
            .any(|&a| (base + (2 << 20)..base + (4 << 20)).contains(&a)),
        "cold granules stay"
    );
}

#[test]
fn hints_sent_through_the_port_reach_the_plan() {
    let mut f = fixture();
    let (_mem, base) = hot_memory();
    f.lp.refresh_placement();
    // A client's PIN_FAST on 1 MiB, sent as the hint poller sends it.
    let pin = tierd_api::AddrRange {
        start: base + (1 << 20),
        end: base + (2 << 20),
    };
    f.lp.d.heat.edit(f.pid, move |t| {
        crate::protocol::apply::apply(t, tierd_client::HintKind::PinFast, pin, 0)
    });
    let cfg = f.lp.d.config();
    f.lp.heat.apply_pending(&cfg);
    f.lp.decide();
    let job = f.rx.try_recv().expect("a plan for the worker");
    for a in (pin.start..pin.end).step_by(64 << 10) {
        assert!(
            job.moves.iter().any(|m| m.addr == a && m.to == 0),
            "pinned granule {a:#x} is promoted"
        );
    }
}

#[test]
fn a_slow_scan_is_not_repeated_every_period() {
    let mover = Arc::new(
        FakeMover::new()
            .default_node(1)
            .query_delay(Duration::from_millis(300)),
    );
    let mut f = fixture_with(mover.clone());
    let (_mem, _base) = hot_memory();
    let queries = || mover.queries();
    let t0 = std::time::Instant::now();
    f.lp.refresh_placement();
    let scans = queries();
    assert!(scans > 0, "the first scan queries");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300));
    // One scan period (1 s) later: a scan that took 300 ms waits 5 x 300 ms.
    std::thread::sleep((super::SCAN_PERIOD + Duration::from_millis(50)).saturating_sub(took));
    f.lp.refresh_placement();
    assert_eq!(
        queries(),
        scans,
        "not due yet: scans take at most a fifth of the loop"
    );
    // Past five times its duration: due.
    std::thread::sleep(
        (took * super::SCAN_DUTY + Duration::from_millis(50)).saturating_sub(t0.elapsed()),
    );
    f.lp.refresh_placement();
    assert!(queries() > scans, "due again after 5 x its duration");
}

#[test]
fn a_fast_scan_is_due_every_period() {
    let t = std::time::Instant::now();
    let p = Duration::from_millis(1000);
    assert_eq!(super::next_scan(t, Duration::from_millis(20), p), t + p);
    assert_eq!(
        super::next_scan(t, Duration::from_millis(400), p),
        t + Duration::from_millis(2000)
    );
}
