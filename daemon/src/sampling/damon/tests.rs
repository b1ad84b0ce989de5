use super::*;
use crate::sampling::bpf::fake::{FakeFilter, FakeMap};
use std::sync::{Arc, Mutex};

/// A kdamond that records what it was asked and hands out kthread pids 1000, 1001, ...
#[derive(Clone, Default)]
struct FakeKdamond {
    log: Arc<Mutex<Vec<String>>>,
    running: Arc<Mutex<bool>>,
    fail: Arc<Mutex<Option<String>>>,
}

impl KdamondCtl for FakeKdamond {
    fn apply(&mut self, pids: &[i32], a: &Attrs) -> Result<u32, sysfs::DamonError> {
        if let Some(m) = self.fail.lock().unwrap().clone() {
            return Err(sysfs::DamonError::Parse {
                path: "fake".into(),
                content: m,
            });
        }
        let mut log = self.log.lock().unwrap();
        log.push(format!("apply {pids:?} {}", a.sample_us));
        *self.running.lock().unwrap() = true;
        Ok(1000 + log.len() as u32 - 1)
    }
    fn stop(&mut self) -> Result<(), sysfs::DamonError> {
        self.log.lock().unwrap().push("stop".into());
        *self.running.lock().unwrap() = false;
        Ok(())
    }
    fn set_sample_us(&mut self, a: &Attrs) -> Result<(), sysfs::DamonError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("rate {}", a.sample_us));
        Ok(())
    }
    fn running(&self) -> bool {
        *self.running.lock().unwrap()
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

type Fake = DamonSampler<FakeMap<DamonKey, DamonVal>, FakeFilter, FakeKdamond>;

fn sampler() -> (Fake, FakeMap<DamonKey, DamonVal>, FakeFilter, FakeKdamond) {
    let (m, f, k) = (
        FakeMap::default(),
        FakeFilter::default(),
        FakeKdamond::default(),
    );
    let a = Attrs {
        sample_us: 5000,
        aggr_us: 100_000,
        min_regions: 10,
        max_regions: 1000,
    };
    (
        DamonSampler::new(m.clone(), f.clone(), k.clone(), a),
        m,
        f,
        k,
    )
}

fn region(kpid: u32, tid: u32, acc: u64) -> (DamonKey, DamonVal) {
    (
        DamonKey {
            kdamond_pid: kpid,
            target_id: tid,
            start: 0x1000,
            end: 0x3000,
        },
        DamonVal {
            nr_accesses: acc,
            aggregations: 1,
            nr_regions: 10,
        },
    )
}

#[test]
fn targets_apply_once_per_drain_and_filter_follows_the_kthread() {
    let (mut s, map, filter, k) = sampler();
    s.track(10).unwrap();
    s.track(20).unwrap();
    let mut out = Vec::new();
    s.drain(&mut out).unwrap();
    assert_eq!(*k.log.lock().unwrap(), vec!["apply [10, 20] 5000"]);
    assert_eq!(
        filter.0.lock().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![1000]
    );
    assert_eq!(s.kthreads(), vec![1000]);

    // Target 1 is pid 20; weight = 10 of 20 checks.
    map.0.lock().unwrap().push(region(1000, 1, 10));
    s.drain(&mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].pid, out[0].weight), (20, 0.5));

    // Untracking restarts the kdamond; the old kthread's late events are dropped.
    s.untrack(10);
    out.clear();
    s.drain(&mut out).unwrap();
    assert_eq!(
        filter.0.lock().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![1001]
    );
    map.0.lock().unwrap().push(region(1000, 0, 20));
    s.drain(&mut out).unwrap();
    assert!(out.is_empty());
    assert!(s.status().active);
}

#[test]
fn a_kdamond_that_stopped_by_itself_is_restarted_and_errors_reach_status() {
    let (mut s, _map, _f, k) = sampler();
    s.track(10).unwrap();
    let mut out = Vec::new();
    s.drain(&mut out).unwrap();
    *k.running.lock().unwrap() = false;
    *k.fail.lock().unwrap() = Some("busy".into());
    for _ in 0..RUNNING_CHECK_DRAINS {
        s.drain(&mut out).unwrap();
    }
    let st = s.status();
    assert!(!st.active);
    assert!(st.detail.contains("busy"), "{}", st.detail);
    assert!(s.kthreads().is_empty());
}

#[test]
fn rate_changes_reach_the_kdamond() {
    let (mut s, _map, _f, k) = sampler();
    assert_eq!(s.set_period_us(2000), 2000);
    assert_eq!(s.period_us(), 2000);
    assert_eq!(k.log.lock().unwrap().last().unwrap(), "rate 2000");
}

/// On the host, as root: the program loads and attaches to damon:damon_aggregated,
/// and a peer's kdamond (the host may run one, e.g. DAMON_RECLAIM) is ignored.
/// Skipped, with the reason, without root or without DAMON's sysfs interface.
#[test]
fn loads_attaches_and_ignores_peer_kdamonds_on_this_host() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED damon host test: needs root (BPF)");
        return;
    }
    if !Path::new(sysfs::ADMIN).exists() {
        eprintln!(
            "SKIPPED damon host test: {} absent (kernel without DAMON sysfs)",
            sysfs::ADMIN
        );
        return;
    }
    let cfg = DamonConfig::default();
    let mut s = open(&cfg).expect("the damon backend loads and attaches on this host");
    std::thread::sleep(Duration::from_millis(3 * cfg.aggr_ms));
    let mut out = Vec::new();
    s.drain(&mut out).unwrap();
    assert!(
        out.is_empty(),
        "events of a kdamond tierd did not start: {out:?}"
    );
    let events = s
        .stats
        .as_ref()
        .map_or(0, |st| st.sum(crate::sampling::abi::STAT_EVENTS));
    assert_eq!(events, 0, "the kthread filter lets peers through");
    println!("damon backend on the host: {}", s.status().detail);
}
