//! The placement tables' upkeep against the fake mover: the sweep's page queries follow
//! `client.placement_sweep_pages_per_s`, not the registered size, and a small
//! registration is read once a step (100 ms), not more; tierd's own moves show without
//! waiting for the sweep; a move tierd did not make shows within one pass.

use super::tests::{fixture, wait_until};
use crate::migrate::Job;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tierd_api::{AddrRange, MoveCause};
use tierd_client::layout::PLACEMENT_UNKNOWN;
use tierd_client::Client;

const PAGE: u64 = 4096;

/// `blocks` one-page blocks of mapped, untouched anonymous memory (the fake mover
/// places every page on node 1): the mapping and its base.
fn mapped(blocks: u64) -> (memmap2::MmapMut, u64) {
    let m = memmap2::MmapMut::map_anon((blocks * PAGE) as usize).unwrap();
    let base = m.as_ptr() as u64;
    (m, base)
}

#[test]
fn sweep_queries_follow_the_budget_not_the_registered_size() {
    const BUDGET: u64 = 2_000;
    let f = fixture(|c| c.client.placement_sweep_pages_per_s = BUDGET);
    let (_mem, base) = mapped(16_384);
    let c = Client::connect(Some(&f.path)).unwrap();
    let big = c.register(base, 16_384 * PAGE, PAGE).unwrap();
    wait_until("the big region's first blocks read", || {
        c.placement(big, 0) == 1
    });
    // Over 2 s, about BUDGET pages a second (a step's worth of slack either way), where
    // re-reading every block every 100 ms would be 163,840.
    let q0 = f.mover.queried_pages();
    std::thread::sleep(Duration::from_secs(2));
    let per_s = (f.mover.queried_pages() - q0) as f64 / 2.0;
    assert!(
        per_s <= BUDGET as f64 * 1.15 && per_s >= BUDGET as f64 * 0.5,
        "{per_s} pages queried a second against a budget of {BUDGET}"
    );
    assert_eq!(
        c.placement(big, 16_383),
        PLACEMENT_UNKNOWN,
        "the last block is not reached within 2 s"
    );
    // A small region registered meanwhile is read before the sweep goes on.
    let (_small_mem, small_base) = mapped(16);
    let small = c.register(small_base, 16 * PAGE, PAGE).unwrap();
    let t0 = Instant::now();
    wait_until("the small region read", || c.placement(small, 15) == 1);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn tierds_own_moves_show_without_waiting_for_the_sweep() {
    // One page a second: the sweep reaches block 0 after a second, block 40 after 40.
    let f = fixture(|c| c.client.placement_sweep_pages_per_s = 1);
    let (_mem, base) = mapped(64);
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 64 * PAGE, PAGE).unwrap();
    let pid = std::process::id() as i32;
    let moved = |b: u64, to: u32| {
        let job = Job {
            pid,
            ranges: Some(vec![AddrRange {
                start: base + b * PAGE,
                end: base + (b + 2) * PAGE,
            }]),
            to,
            min_free_bytes: 0,
            cause: MoveCause::Migrate,
        };
        let reply = f.daemon.engine.run(&job, None).unwrap();
        assert_eq!(reply.moved_pages, 2, "{reply:?}");
    };
    let t0 = Instant::now();
    moved(40, 0);
    wait_until("block 40 on node 0", || c.placement(region, 40) == 0);
    assert_eq!(c.placement(region, 41), 0);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        c.placement(region, 42),
        PLACEMENT_UNKNOWN,
        "the sweep has not read the blocks beside"
    );
    // And back: the demotion shows as well.
    moved(40, 1);
    wait_until("block 40 back on node 1", || c.placement(region, 40) == 1);
    assert!(f.daemon.placement.move_blocks.load(Ordering::Relaxed) >= 4);
    assert_eq!(
        f.daemon
            .placement
            .move_notices_dropped
            .load(Ordering::Relaxed),
        0
    );
}

#[test]
fn a_move_tierd_did_not_make_shows_within_one_sweep() {
    // 1,000 blocks at 2,000 pages a second: a pass every half second.
    let f = fixture(|c| c.client.placement_sweep_pages_per_s = 2_000);
    let (_mem, base) = mapped(1_000);
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 1_000 * PAGE, PAGE).unwrap();
    let passes = || f.daemon.placement.passes.load(Ordering::Relaxed);
    wait_until("two full passes", || passes() >= 2);
    let ms = f.daemon.placement.last_pass_ms.load(Ordering::Relaxed);
    assert!((300..=1_500).contains(&ms), "a pass took {ms} ms");
    assert_eq!(
        f.daemon.placement.last_pass_blocks.load(Ordering::Relaxed),
        1_000
    );
    let pid = std::process::id() as i32;
    for b in [3, 700] {
        assert_eq!(c.placement(region, b), 1);
        f.mover.place(pid, base + b * PAGE, 0);
    }
    let t0 = Instant::now();
    wait_until("the kernel's moves seen", || {
        c.placement(region, 3) == 0 && c.placement(region, 700) == 0
    });
    assert!(
        t0.elapsed() < Duration::from_millis(ms + 300),
        "{:?} against a pass of {ms} ms",
        t0.elapsed()
    );
}

#[test]
fn a_small_registration_is_read_once_a_step_not_once_a_page_of_budget() {
    // 64 blocks against 10,000 pages a second: every 100 ms step covers them all, and
    // reads each once (640 pages a second), not round and round to spend the budget.
    let f = fixture(|c| c.client.placement_sweep_pages_per_s = 10_000);
    let (_mem, base) = mapped(64);
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 64 * PAGE, PAGE).unwrap();
    let r = c.region(region).unwrap();
    wait_until("first read", || c.placement(region, 63) == 1);
    let (q0, g0) = (f.mover.queried_pages(), r.stats().placement_gen);
    std::thread::sleep(Duration::from_secs(1));
    let (pages, gens) = (f.mover.queried_pages() - q0, r.stats().placement_gen - g0);
    assert!((320..=960).contains(&pages), "{pages} pages queried in 1 s");
    assert!(
        (5..=15).contains(&gens),
        "{gens} placement generations in 1 s"
    );
    let ms = f.daemon.placement.last_pass_ms.load(Ordering::Relaxed);
    assert!((50..=300).contains(&ms), "a pass took {ms} ms");
}
