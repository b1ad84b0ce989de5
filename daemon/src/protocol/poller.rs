//! The hint poller (`tierd-hints` thread): drains every region's ring, validates each
//! entry and applies it to the owner's heat table.
//!
//! Cadence: a pass over all rings, then a [`POLL_PERIOD`] sleep unless some ring had
//! more than [`BUDGET`] entries waiting (then the next pass starts at once). After
//! [`GRACE_PASSES`] passes in a row that find every ring empty, each further empty pass
//! doubles the sleep, up to `client.hint_poll_max_ms` ([`Backoff`]): a client sending
//! hints keeps the 1 ms cadence, a quiet one costs a few hundred wake-ups a second, not
//! a thousand, and the first hint after a quiet spell waits at most that long. A pass sends
//! one edit per region with entries to the heat tables' owner (the tiering loop,
//! through `Daemon::heat`), which applies them in order. Corrupt ring indices drop that client
//! ([`Hub::drop_client`]); a bad entry is counted in `rejected_entries` and skipped.
//! PREFETCH and PIN_FAST ranges are also queued for immediate promotion
//! ([`super::placement`]); when that queue is full the flags alone remain and the
//! policy promotes them on its next decision. A PIN_FAST entry that would take a uid
//! other than root past `client.max_pin_fast_bytes_per_uid` is ignored and counted
//! ([`crate::access::ceilings`]).
//!
//! The heat owner's queue is bounded in commands, not in their size: one edit carries
//! up to [`BUDGET`] entries, so 16 Ki queued edits could hold 2^26 entries (~2.7 GB).
//! The poller therefore counts the entries it sent that the owner has not applied yet
//! and, past [`MAX_BACKLOG_ENTRIES`], leaves them in the clients' rings (which the
//! clients see as ring-full drops) until the owner catches up. A pass cut short that way
//! ends at some region; the next pass starts there ([`RoundRobin`]), so under a
//! sustained load every client's ring is drained in turn, not only the first ones'.

use super::pinned::PinnedMap;
use super::placement::Prefetch;
use super::region::ShmRegion;
use super::{apply, Hub, POLL_PERIOD};
use crate::heat::{flags, Span};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tierd_api::AddrRange;
use tierd_client::layout::{HintEntry, WANTED_NONE};
use tierd_client::ring::validate;
use tierd_client::ring::Hint;
use tierd_client::HintKind;

/// Sleep between passes while no region is registered.
const IDLE_PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

/// Entries taken from one ring per pass.
pub const BUDGET: usize = 4096;

/// Entries sent to the heat owner and not applied yet past which no ring is drained:
/// 64 Ki entries, ~2.6 MB of ranges (the backlog exceeds it by one batch at most).
pub const MAX_BACKLOG_ENTRIES: usize = 16 * BUDGET;

/// One batch's share of [`Hub::hint_backlog`], given back when the edit carrying it
/// has run or was dropped unrun (the owner gone).
struct Backlog {
    count: Arc<AtomicUsize>,
    n: usize,
}

impl Backlog {
    fn add(count: &Arc<AtomicUsize>, n: usize) -> Backlog {
        count.fetch_add(n, Ordering::AcqRel);
        Backlog {
            count: count.clone(),
            n,
        }
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.count.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Where each pass over the regions starts: after the region the last pass ended at,
/// so a pass the backlog cuts short does not always favour the same first regions.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// The indices of a pass over `n` regions, in order.
    pub fn pass(&self, n: usize) -> impl Iterator<Item = usize> {
        let start = if n == 0 { 0 } else { self.next % n };
        (0..n).map(move |k| (start + k) % n)
    }

    /// The pass stopped before region `i` (it was not drained): the next pass starts
    /// there. A pass that completes calls this with the index after its last one.
    pub fn stopped_before(&mut self, i: usize) {
        self.next = i;
    }
}

/// Empty passes in a row polled at [`POLL_PERIOD`] before the sleep grows: a scheduler's
/// hints come in bursts (a step's ACCESS, the next turn's PREFETCH), so a ring quiet for
/// 16 ms is a quiet client, and one that is not keeps the 1 ms latency.
pub const GRACE_PASSES: u32 = 16;

/// The poller's sleep between passes: [`POLL_PERIOD`] after a pass that drained
/// something and for [`GRACE_PASSES`] empty passes after it, then doubled after each
/// further empty pass, up to a ceiling.
#[derive(Debug, Default)]
pub struct Backoff {
    empty_passes: u32,
}

impl Backoff {
    /// Records a pass (`drained`: it took at least one entry) and returns the sleep
    /// before the next one, at most `max` (and never under [`POLL_PERIOD`]).
    pub fn after_pass(&mut self, drained: bool, max: Duration) -> Duration {
        self.empty_passes = if drained {
            0
        } else {
            self.empty_passes.saturating_add(1)
        };
        let beyond = self.empty_passes.saturating_sub(GRACE_PASSES).min(16);
        let doubled = POLL_PERIOD.saturating_mul(1 << beyond);
        doubled.min(max).max(POLL_PERIOD)
    }
}

pub fn run(hub: Arc<Hub>) {
    let mut buf: Vec<HintEntry> = Vec::with_capacity(BUDGET);
    let mut order = RoundRobin::default();
    let mut backoff = Backoff::default();
    while !hub.daemon.shutdown.load(Ordering::Relaxed) {
        let mut more = false;
        let mut drained = false;
        let regions = hub.regions();
        if regions.is_empty() {
            // No client: no ring to poll; wake rarely (a 1 ms wake-up costs CPU too).
            std::thread::sleep(IDLE_PERIOD);
            continue;
        }
        let mut last = None;
        for i in order.pass(regions.len()) {
            let r = &regions[i];
            r.account_drops(&hub.daemon.hints);
            if hub.hint_backlog.load(Ordering::Acquire) >= MAX_BACKLOG_ENTRIES {
                // The heat owner is behind: the entries wait in the rings, and the next
                // pass starts with this region (at the 1 ms cadence: not a quiet spell).
                more = false;
                drained = true;
                order.stopped_before(i);
                last = None;
                break;
            }
            last = Some(i);
            buf.clear();
            match r.drain(BUDGET, &mut buf) {
                Ok(0) => continue,
                Ok(n) => {
                    drained = true;
                    more |= n == BUDGET;
                }
                Err(e) => {
                    hub.drop_client(r.owner.conn, &e);
                    continue;
                }
            }
            ingest(&hub, r, &buf);
        }
        if let Some(i) = last {
            order.stopped_before(i + 1);
        }
        if !more {
            let max = Duration::from_millis(hub.daemon.config().client.hint_poll_max_ms);
            std::thread::sleep(backoff.after_pass(drained, max));
        }
    }
}

/// Applies a batch of entries from region `r`'s ring, in order; runs of ACCESS entries
/// are merged ([`apply::access_many`]). PREFETCH / PIN_FAST ranges are queued for
/// promotion *before* the heat edit is sent: the tiering loop applies edits between its
/// steps (a plan, a placement scan), which must not delay a prefetch.
pub fn ingest(hub: &Hub, r: &Arc<ShmRegion>, entries: &[HintEntry]) {
    let received = Instant::now();
    let mut hints = Vec::with_capacity(entries.len());
    let mut rejected = 0u64;
    let ceilings = &hub.daemon.ceilings;
    let pin_limit = hub.daemon.config().client.max_pin_fast_bytes_per_uid.0;
    for e in entries {
        let Ok(h) = validate(e, r.id, r.nblocks) else {
            rejected += 1;
            continue;
        };
        let (first, n) = (h.first_block, h.nblocks);
        match h.kind {
            HintKind::PinFast
                if !ceilings.pin(r.id, r.owner.uid, r.block_size, first, n, pin_limit) =>
            {
                continue;
            }
            HintKind::Unpin | HintKind::Free | HintKind::Relocated => {
                ceilings.unpin(r.id, first, n)
            }
            _ => {}
        }
        hints.push(h);
    }
    let mut relocated = false;
    let pinned = r.is_pinned();
    if pinned {
        let (copied, avoided) = r.with_pinned(|m| follow(m, &hints)).unwrap_or_default();
        let c = &hub.daemon.hints;
        c.relocation_copied_bytes
            .fetch_add(copied * r.block_size, Ordering::Relaxed);
        c.relocation_avoided_bytes
            .fetch_add(avoided * r.block_size, Ordering::Relaxed);
    }
    for h in &hints {
        match h.kind {
            // A pinned region's blocks are never moved by tierd: the flags reach the
            // pinned planner (next refresh) through the heat table.
            HintKind::Prefetch | HintKind::PinFast if pinned => {}
            HintKind::Prefetch | HintKind::PinFast => {
                // Full queue: the PREFETCH / PIN_FAST flags stay and the policy promotes.
                let _ = hub.prefetch_tx.try_send(Prefetch {
                    region: r.clone(),
                    first: h.first_block,
                    n: h.nblocks,
                    hinted: received,
                    deadline: received + Duration::from_millis(h.deadline_ms as u64),
                });
            }
            HintKind::Relocated => {
                for b in h.first_block..h.first_block + h.nblocks {
                    r.set_wanted(b, WANTED_NONE);
                }
                relocated = true;
            }
            _ => {}
        }
    }
    if relocated {
        r.bump_wanted();
    }
    let ranges: Vec<(HintKind, AddrRange, AddrRange)> = hints
        .iter()
        .map(|h| {
            let to = match h.kind {
                HintKind::Moved => r.blocks(h.deadline_ms as u64, h.nblocks),
                _ => AddrRange { start: 0, end: 0 },
            };
            (h.kind, r.blocks(h.first_block, h.nblocks), to)
        })
        .collect();
    let backlog = Backlog::add(&hub.hint_backlog, ranges.len());
    hub.daemon.heat.edit(r.owner.pid, move |t| {
        let _backlog = backlog;
        let now = t.now_ms(received);
        let (mut access, mut events) = (Vec::new(), Vec::new());
        for (kind, range, to) in ranges {
            if pinned {
                // Cells created by hints carry the flag the policy skips pinned memory by.
                t.mark(range, Span::Touching, flags::PINNED, 0);
            }
            if kind == HintKind::Access {
                access.push(range);
                continue;
            }
            apply::access_many(t, &access, now, &mut events);
            access.clear();
            if kind == HintKind::Moved {
                apply::carry(t, range, to, now);
                t.mark(to, Span::Touching, flags::PINNED, 0);
            }
            apply::apply(t, kind, range, now);
        }
        apply::access_many(t, &access, now, &mut events);
    });
    if !hints.is_empty() {
        hub.daemon.note_hints(r.owner.pid, received);
    }
    let applied = hints.len() as u64;
    let blocks: u64 = hints.iter().map(|h| h.nblocks).sum();
    let h = r.header();
    h.applied_entries.fetch_add(applied, Ordering::Relaxed);
    h.applied_blocks.fetch_add(blocks, Ordering::Relaxed);
    h.rejected_entries.fetch_add(rejected, Ordering::Relaxed);
}

/// What a pinned region's map learns from a batch of hints: which slots hold live
/// blocks, which were freed or rewritten, and the client's acknowledgements. Returns the
/// blocks moved by copy and by re-pointing to a shadow.
fn follow(m: &mut PinnedMap, hints: &[Hint]) -> (u64, u64) {
    let (mut copied, mut avoided) = (0, 0);
    for h in hints {
        let (first, n) = (h.first_block, h.nblocks);
        match h.kind {
            HintKind::Access | HintKind::Prefetch | HintKind::PinFast | HintKind::Cold => {
                m.used(first, n)
            }
            HintKind::Written => m.written(first, n),
            HintKind::Free | HintKind::Relocated => m.freed(first, n),
            HintKind::Moved => {
                let c = m.moved(first, h.deadline_ms as u64, n);
                copied += c;
                avoided += n - c;
            }
            HintKind::Declined => m.declined(first, n),
            HintKind::Unpin => {}
        }
    }
    (copied, avoided)
}

#[cfg(test)]
mod tests {
    use super::{Backoff, RoundRobin, GRACE_PASSES, POLL_PERIOD};
    use std::time::Duration;

    /// The run loop's use of [`RoundRobin`], with a backlog that lets `per_pass`
    /// regions through each pass: how often each of `n` regions was drained.
    fn drained(n: usize, per_pass: usize, passes: usize) -> Vec<usize> {
        let mut order = RoundRobin::default();
        let mut count = vec![0; n];
        for _ in 0..passes {
            let mut last = None;
            for (k, i) in order.pass(n).enumerate() {
                if k == per_pass {
                    order.stopped_before(i);
                    last = None;
                    break;
                }
                count[i] += 1;
                last = Some(i);
            }
            if let Some(i) = last {
                order.stopped_before(i + 1);
            }
        }
        count
    }

    #[test]
    fn passes_cut_short_by_the_backlog_take_every_region_in_turn() {
        // 256 clients, the backlog letting 16 rings through a pass: each one 4 times in
        // 64 passes (always starting at the first would leave 240 of them 0 times).
        assert_eq!(drained(256, 16, 64), vec![4; 256]);
        assert_eq!(drained(5, 2, 10), vec![4; 5]);
        // Uncut passes drain every region every pass.
        assert_eq!(drained(3, 10, 4), vec![4; 3]);
        assert_eq!(RoundRobin::default().pass(0).count(), 0);
    }

    #[test]
    fn empty_passes_back_off_to_the_ceiling_and_a_hint_resets_the_period() {
        let ms = Duration::from_millis;
        let mut b = Backoff::default();
        let grace: Vec<_> = (0..GRACE_PASSES)
            .map(|_| b.after_pass(false, ms(4)))
            .collect();
        assert_eq!(grace, vec![POLL_PERIOD; GRACE_PASSES as usize]);
        let sleeps: Vec<_> = (0..4).map(|_| b.after_pass(false, ms(4))).collect();
        assert_eq!(sleeps, [ms(2), ms(4), ms(4), ms(4)]);
        // An entry: back to 1 ms, and the grace starts again.
        assert_eq!(b.after_pass(true, ms(4)), POLL_PERIOD);
        for _ in 0..GRACE_PASSES {
            assert_eq!(b.after_pass(false, ms(4)), POLL_PERIOD);
        }
        assert_eq!(b.after_pass(false, ms(4)), ms(2));
        // A ceiling of 1 ms is polling every millisecond; a long quiet spell does not
        // overflow the doubling.
        assert_eq!(b.after_pass(false, ms(1)), POLL_PERIOD);
        for _ in 0..100 {
            b.after_pass(false, ms(1000));
        }
        assert_eq!(b.after_pass(false, ms(1000)), ms(1000));
    }
}
