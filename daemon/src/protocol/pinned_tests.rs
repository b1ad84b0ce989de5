//! Pinned regions end to end in-process (the fixture of `tests.rs`: node 0 fast, node 1
//! slow, a fake mover): REGISTER_PINNED, relocation requests in both directions from
//! hint heat, the client's MOVED acknowledgements, shadow re-points, and not one
//! `move_pages` call for the region.

use super::tests::{anon, fixture, wait_until, BLOCK};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use tierd_client::{Client, ClientError, HintKind};

/// Waits until the relocation table asks exactly `want` ((block, node) pairs).
fn wait_wanted(c: &Client, region: u32, want: &[(u64, i32)]) {
    let want: BTreeSet<(u64, i32)> = want.iter().copied().collect();
    let r = c.region(region).unwrap();
    let mut got = BTreeSet::new();
    let t0 = std::time::Instant::now();
    wait_until(&format!("relocation requests {want:?}"), || {
        if t0.elapsed().as_secs() > 8 {
            eprintln!("got {got:?}");
        }
        let mut v = Vec::new();
        r.relocations(&mut v);
        got = v.into_iter().collect();
        got == want
    });
}

fn hint_times(c: &Client, region: u32, blocks: &[u64], times: usize) {
    for _ in 0..times {
        assert_eq!(
            c.hint(region, HintKind::Access, blocks).unwrap(),
            blocks.len() as u64
        );
    }
}

#[test]
fn pinned_region_is_placed_by_relocation_both_ways() {
    let f = fixture(|c| c.heat.half_life_ms = 3_600_000);
    let (_mem, base) = anon(12);
    let c = Client::connect(Some(&f.path)).unwrap();
    // 4 fast slots (0-3), 8 slow slots (4-11).
    let region = c
        .register_pinned(base, 12 * BLOCK, BLOCK, &[(0, 4), (1, 8)])
        .unwrap();
    assert_eq!((c.placement(region, 3), c.placement(region, 4)), (0, 1));
    let calls = f.mover.calls();

    // Hot blocks in slow slots 4, 5 (a PREFETCH too, which must not move pages): up.
    hint_times(&c, region, &[4, 5], 3);
    c.hint_prefetch(region, &[5], 0).unwrap();
    wait_wanted(&c, region, &[(4, 0), (5, 0)]);
    c.moved(region, 4, 0, 1).unwrap();
    c.moved(region, 5, 1, 1).unwrap();
    wait_wanted(&c, region, &[]);

    // Fast slots full (2, 3 lukewarm), 6, 7 much hotter: 2, 3 go down first...
    hint_times(&c, region, &[2, 3], 1);
    hint_times(&c, region, &[6, 7], 20);
    wait_wanted(&c, region, &[(2, 1), (3, 1)]);
    c.moved(region, 2, 8, 2).unwrap();
    // ... then 6, 7 take their slots (which hold shadows of 8, 9).
    wait_wanted(&c, region, &[(6, 0), (7, 0)]);
    c.moved(region, 6, 2, 2).unwrap();

    // 8, 9 (the demoted blocks) turn hot: the coldest fast blocks, 0 and 1 (promoted
    // from 4 and 5, never written, shadows intact), go back down by re-pointing.
    hint_times(&c, region, &[8, 9], 40);
    wait_wanted(&c, region, &[(0, 1), (1, 1)]);
    c.moved(region, 0, 4, 2).unwrap();
    wait_wanted(&c, region, &[(8, 0), (9, 0)]);

    wait_until("acknowledgements counted", || {
        f.daemon
            .hints
            .relocation_avoided_bytes
            .load(Ordering::Relaxed)
            == 2 * BLOCK
    });
    let h = &f.daemon.hints;
    assert_eq!(
        h.relocation_copied_bytes.load(Ordering::Relaxed),
        6 * BLOCK,
        "4->0, 5->1, 2->8, 3->9, 6->2, 7->3 were copies"
    );
    assert_eq!(h.relocation_promote_blocks.load(Ordering::Relaxed), 6);
    assert_eq!(h.relocation_demote_blocks.load(Ordering::Relaxed), 4);
    assert_eq!(
        f.mover.calls(),
        calls,
        "no move_pages call for a pinned region"
    );
    // And no migration job may touch it either.
    let job = crate::migrate::Job {
        pid: std::process::id() as i32,
        ranges: Some(vec![tierd_api::AddrRange {
            start: base,
            end: base + 12 * BLOCK,
        }]),
        to: 0,
        min_free_bytes: 0,
        cause: tierd_api::MoveCause::Migrate,
    };
    let reply = f.daemon.engine.run(&job, None).unwrap();
    assert_eq!((reply.requested_pages, f.mover.calls()), (0, calls));
}

#[test]
fn a_bad_pinned_layout_is_refused() {
    let f = fixture(|_| {});
    let (_mem, base) = anon(4);
    let c = Client::connect(Some(&f.path)).unwrap();
    for (slots, why) in [
        (vec![(0, 2), (1, 1)], "3 slots for 4 blocks"),
        (vec![(0, 2), (7, 2)], "node 7 does not exist"),
    ] {
        match c.register_pinned(base, 4 * BLOCK, BLOCK, &slots) {
            Err(ClientError::Refused { errno, .. }) => assert_eq!(errno, libc::EINVAL, "{why}"),
            other => panic!("{why}: {:?}", other.map(|_| ())),
        }
    }
    // The connection goes on.
    assert!(c
        .register_pinned(base, 4 * BLOCK, BLOCK, &[(0, 1), (1, 3)])
        .is_ok());
}

#[test]
fn a_region_whose_pages_do_not_move_becomes_pinned() {
    let f = fixture(|_| {});
    let (_mem, base) = anon(8);
    for b in 0..8 {
        f.mover.pin(base + b * BLOCK);
    }
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 8 * BLOCK, BLOCK).unwrap();
    wait_until("first placement refresh", || c.placement(region, 7) == 1);
    c.hint_prefetch(region, &[2, 3], 0).unwrap();
    // The move left both blocks on node 1: pinned from now on.
    let r = || f.server.hub.region(region).unwrap();
    wait_until("the region is found pinned", || r().is_pinned());
    let calls = f.mover.calls();
    c.hint_prefetch(region, &[4], 0).unwrap();
    hint_times(&c, region, &[4], 5);
    let rr = c.region(region).unwrap();
    wait_until("relocation request for block 4", || {
        let mut v = Vec::new();
        rr.relocations(&mut v);
        v.contains(&(4, 0))
    });
    assert_eq!(f.mover.calls(), calls, "no move_pages once found pinned");
}
