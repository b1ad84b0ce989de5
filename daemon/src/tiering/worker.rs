//! The migration worker: executes a plan off the tiering loop's thread.
//!
//! Receives the policy's moves over a bounded crossbeam channel (one plan in flight:
//! the loop does not plan again until the worker is idle), groups them into one job per
//! (process, destination), demotions first, runs them through the migration engine and
//! writes the outcome back: each moved granule's node, move time and ping-pong count in
//! the heat table, promoted/demoted counters and rates in the registry.

use crate::heat::flags;
use crate::migrate::engine::Job;
use crate::policy::{Direction, Move};
use crate::state::Daemon;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tierd_api::AddrRange;

/// One plan for the worker.
pub struct Batch {
    pub moves: Vec<Move>,
    /// Free bytes to keep on the destination of promotions (promote watermark).
    pub promote_floor: BTreeMap<u32, u64>,
    pub pingpong_window_ms: u32,
}

/// Runs plans until the channel closes. `throughput` gets the measured migration rate
/// (bytes/s, smoothed) so the loop can size plans to about a second of work; `done`
/// wakes the loop after each plan.
pub fn run(
    d: Arc<Daemon>,
    rx: crossbeam_channel::Receiver<Batch>,
    busy: Arc<AtomicBool>,
    throughput: Arc<AtomicU64>,
    done: crossbeam_channel::Sender<()>,
) {
    for batch in rx {
        let (bytes, secs) = execute(&d, batch);
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
        busy.store(false, Ordering::Release);
        // Wake the loop to plan the next batch (a wake-up already pending will do).
        let _ = done.try_send(());
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

/// Migration work per step of a plan's schedule (see [`execute`]).
const STEP_BYTES: u64 = 4 << 20;

/// Executes one plan; returns (bytes moved, seconds taken).
///
/// The plan lists demotions, then promotions best first. They run in steps of
/// [`STEP_BYTES`], interleaved: the next promotions whenever their destination has room
/// for a step above its promotion floor, otherwise the next demotions, which make that
/// room. Run as two phases (every demotion, then every promotion), the best promotion
/// of a plan full of demotions would wait for all of them; interleaved, it waits for
/// one step.
fn execute(d: &Daemon, batch: Batch) -> (u64, f64) {
    let started = Instant::now();
    let (dem, prom): (Vec<&Move>, Vec<&Move>) =
        batch.moves.iter().partition(|m| m.dir == Direction::Demote);
    let (mut dem, mut prom) = (&dem[..], &prom[..]);
    let mut pages: BTreeMap<(i32, u8), u64> = BTreeMap::new();
    while !dem.is_empty() || !prom.is_empty() {
        let promote = prom.first().is_some_and(|m| {
            let floor = batch.promote_floor.get(&m.to).copied().unwrap_or(0);
            dem.is_empty()
                || d.topo_src
                    .free_bytes(m.to)
                    .is_ok_and(|free| free >= floor.saturating_add(STEP_BYTES))
        });
        let queue = if promote { &mut prom } else { &mut dem };
        let (step, rest) = queue.split_at(step_len(queue));
        *queue = rest;
        run_step(d, &batch, step, promote, &mut pages);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let mut moved = [0u64; 2]; // [demoted, promoted] pages
    for (&(_, dir), &n) in &pages {
        moved[dir as usize] += n;
    }
    tracing::debug!(
        moves = batch.moves.len(),
        promoted_pages = moved[1],
        demoted_pages = moved[0],
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

/// Runs one step: one migration job per (process, destination); `pages` counts what
/// moved per (process, 1 = promotion / 0 = demotion).
fn run_step(
    d: &Daemon,
    batch: &Batch,
    step: &[&Move],
    promote: bool,
    pages: &mut BTreeMap<(i32, u8), u64>,
) {
    let mut groups: BTreeMap<(i32, u32), Vec<(u64, u64)>> = BTreeMap::new();
    for m in step {
        groups
            .entry((m.pid, m.to))
            .or_default()
            .push((m.addr, m.bytes));
    }
    for ((pid, to), addrs) in groups {
        let granules: Vec<u64> = addrs.iter().map(|a| a.0).collect();
        let job = Job {
            pid,
            ranges: Some(merge(addrs)),
            to,
            min_free_bytes: if promote {
                batch.promote_floor.get(&to).copied().unwrap_or(0)
            } else {
                0
            },
        };
        match d.engine.run(&job, None) {
            Ok(r) => {
                *pages.entry((pid, promote as u8)).or_default() += r.moved_pages;
                if let Some(why) = &r.stopped {
                    tracing::debug!(pid, to, reason = %why, "migration stopped early");
                }
                record_outcome(d, pid, &granules, to, batch.pingpong_window_ms, promote);
            }
            Err(e) => tracing::debug!(pid, to, error = %e, "migration failed"),
        }
    }
}

/// Reads back where the granules are now and updates their history; a granule still
/// elsewhere than `to` is marked [`flags::STUCK`] (the policy leaves it alone a while).
fn record_outcome(d: &Daemon, pid: i32, granules: &[u64], to: u32, window_ms: u32, promoted: bool) {
    let mut status = vec![0i32; granules.len()];
    if d.engine.mover().query(pid, granules, &mut status).is_err() {
        return;
    }
    let page = d.engine.page_size();
    let mut pingpong = 0u64;
    d.with_heat(pid, |t| {
        let now = t.now_ms(Instant::now());
        let g = t.granule();
        for (&a, &s) in granules.iter().zip(&status) {
            let c = t.cell_mut(a);
            if promoted {
                // A prefetch is served once the block is up; it does not pin it there.
                c.flags &= !flags::PREFETCH;
            }
            if s >= 0 && s as u32 != to {
                // Still not where it was sent: try again only after a while.
                c.flags |= flags::STUCK;
                c.last_move_ms = now.max(1);
            } else {
                c.flags &= !flags::STUCK;
            }
            if s >= 0 && c.node != s as i16 {
                if now.saturating_sub(c.last_move_ms) > window_ms {
                    c.moves = 0;
                }
                c.moves = c.moves.saturating_add(1);
                c.last_move_ms = now.max(1);
                c.node = s as i16;
                if c.moves > 2 {
                    pingpong += g / page;
                }
            }
        }
    });
    if pingpong > 0 {
        if let Some(p) = d.registry.get(pid) {
            p.stats
                .pingpong_pages
                .fetch_add(pingpong, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{step_len, STEP_BYTES};
    use crate::policy::{Direction, Move};

    #[test]
    fn steps_hold_step_bytes_and_at_least_one_move() {
        let m = |bytes| Move {
            pid: 1,
            addr: 0,
            bytes,
            from: 1,
            to: 0,
            dir: Direction::Promote,
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
