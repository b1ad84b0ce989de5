//! `kvreplay`: a host KV cache replayed from an LLM request trace (issue 5's KV
//! benchmark; issue 6 compares its oracle).
//!
//! A `--pool-mb` pool of `--block-kib` blocks, all first placed on `--slow`, is driven
//! by tierd_bench::kv: requests arrive on the trace clock (compressed `--compress`
//! times; trace time advances `--step-ms` x compress per executed step, so every arm
//! replays the same sequence whatever the VM's speed), their prompt blocks are taken from the pool (Mooncake prefix hashes reuse
//! cached blocks; LRU eviction of unreferenced ones) and written; then every
//! `--step-ms` of wall-clock time one decode step reads one word per 4 KiB page of
//! every block of every running request. Before each step's reads, the node of each
//! block (its first page) is queried with one batched `move_pages(2)` call: a read is
//! a fast hit if the block is on `--fast`.
//!
//! Prints `RESULT kv_fast_hit_fraction`, `block_reads`, per age of the blocks read
//! (time since last written: `age_0_0.5s`, …, `age_ge4s`) the share of reads and their
//! fast hit fraction, `steps_done`, `steps_planned`, `steps_late`, request counts;
//! with `--oracle`, Belady's MIN and an unlimited-bandwidth prefetcher on the same
//! block-read sequence with the fast node's capacity (tierd_bench::oracle).
//!
//! With `--hints` the replay behaves as an engine integrated with tierd: once released
//! (`--go`), it registers the pool over tierd's client socket and sends each step's
//! PREFETCH / ACCESS / FREE hints (tierd_bench::kv::hints), and recycles the blocks it
//! refills (`--no-recycle` to not); it also prints how often tierd's placement table
//! agreed with the kernel on the node of a block read.
//!
//! With `--pinned MODE` the pool is a GPU engine's pinned pool instead
//! (tierd_bench::kv::pinned): `--pinned-fast-mb` of slots on `--fast` then one slot per
//! block on `--slow`, pinned with io_uring fixed buffers, blocks reached through a block
//! table; new blocks go to a free fast slot if there is one. `hints`: registered with
//! tierd as pinned (REGISTER_PINNED), hinted each step as with `--hints`, and moved
//! only by serving tierd's relocation requests (copy or re-point to a shadow, MOVED /
//! DECLINED); `oracle`: no tierd, the replay moves blocks itself knowing every future
//! read (it replays the schedule once ahead, without memory). Prints the copies, bytes
//! copied, copies avoided by shadows, and the pool's pages that changed node (0: the
//! pin holds). `--count-move-pages` counts the `move_pages(2)` calls that ask to move
//! this process's pages (tracefs, tierd_bench::movecount).

use anyhow::{ensure, Context};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use tierd_bench::kv::pinned::PinnedKv;
use tierd_bench::kv::{ages::ReadAges, hints::EngineHints, pool::BlockPool, sched::Sched, trace};
use tierd_bench::movecount::MovePagesCount;
use tierd_bench::oracle::NextUse;
use tierd_bench::{mem, numa, oracle, pace::Pacer, report::Reporter, sysfs, PAGE};

/// Fast-node memory left free beside a pinned pool's fast slots (the replay's own
/// allocations, tierd).
const PINNED_MARGIN_MB: usize = 48;

/// Who moves the blocks of a pinned pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PinnedMode {
    /// tierd, through relocation requests (the pool registered as pinned, hints sent).
    Hints,
    /// The replay itself, knowing every future read.
    Oracle,
}

/// KV-cache trace replay over memory that starts on the slow node.
#[derive(Parser, Debug)]
struct Args {
    /// Trace: Mooncake .jsonl or Azure .csv (see /work/shared/traces/README.md).
    #[arg(long)]
    trace: PathBuf,
    /// KV bytes of one 512-token block, KiB.
    #[arg(long, default_value_t = 256)]
    block_kib: usize,
    /// Pool size, MiB (larger than the fast node).
    #[arg(long, default_value_t = 1024)]
    pool_mb: usize,
    /// Wall-clock time of one decode step, ms.
    #[arg(long, default_value_t = 25)]
    step_ms: u64,
    /// Measured duration, seconds.
    #[arg(long, default_value_t = 40.0)]
    seconds: f64,
    /// Trace seconds per engine second (2: ~30 requests decode at once on Mooncake).
    #[arg(long, default_value_t = 2.0)]
    compress: f64,
    /// Start this far into the trace, seconds.
    #[arg(long, default_value_t = 0.0)]
    trace_offset_s: f64,
    /// At most this many decode steps per request.
    #[arg(long, default_value_t = 200)]
    decode_cap: u64,
    /// Tokens per block (the traces' prefix-block size).
    #[arg(long, default_value_t = trace::TRACE_BLOCK_TOKENS)]
    block_tokens: u64,
    #[arg(long, default_value_t = 0)]
    fast: u32,
    #[arg(long, default_value_t = 1)]
    slow: u32,
    /// Back the pool with transparent huge pages (default: 4 KiB pages only).
    #[arg(long)]
    thp: bool,
    /// Also print what a future-knowing placement would get.
    #[arg(long)]
    oracle: bool,
    /// Fast capacity for the oracle, MiB (default: the fast node's free memory once the
    /// pool is placed).
    #[arg(long)]
    fast_cap_mb: Option<usize>,
    /// Wait for this file to exist before the measured phase.
    #[arg(long)]
    go: Option<PathBuf>,
    /// Also report the hit fraction over the first this many steps: arms whose mover
    /// slows the VM down complete fewer steps, and their whole-run figures then cover
    /// less of the trace; this one covers the same requests in every arm.
    #[arg(long, default_value_t = 400)]
    checkpoint_steps: u64,
    /// Act as an engine that sends tierd hints (register the pool, PREFETCH / ACCESS /
    /// FREE each step).
    #[arg(long)]
    hints: bool,
    /// With --hints: do not recycle refilled blocks (hints only).
    #[arg(long)]
    no_recycle: bool,
    /// tierd's client socket (default: TIERD_CLIENT_SOCKET or /run/tierd/client.sock).
    #[arg(long)]
    client_socket: Option<PathBuf>,
    /// Keep the pool in pinned memory laid out per node (see the module doc).
    #[arg(long, value_enum, conflicts_with = "hints")]
    pinned: Option<PinnedMode>,
    /// With --pinned: fast-node slots, MiB.
    #[arg(long, default_value_t = 256)]
    pinned_fast_mb: usize,
    /// Count move_pages(2) calls that move this process's pages (tracefs; root).
    #[arg(long)]
    count_move_pages: bool,
    /// Prefix of the RESULT keys.
    #[arg(long, default_value = "")]
    tag: String,
}

/// Writes one word per page of each block in `slots` (prefill / decode append).
fn write_blocks(pool: &mut mem::Region, block: usize, slots: &[u32]) {
    let words = pool.words_mut();
    for &s in slots {
        let b = s as usize * block / 8;
        for w in words[b..b + block / 8].iter_mut().step_by(PAGE / 8) {
            *w = w.wrapping_add(1);
        }
    }
}

/// The pool's memory: plain (moved by the kernel, pages placed on `--slow` first) or
/// pinned (moved by copies between slots).
enum Store {
    Plain(mem::Region),
    Pinned(Box<PinnedKv>),
}

impl Store {
    fn region(&self) -> &mem::Region {
        match self {
            Store::Plain(r) => r,
            Store::Pinned(k) => k.region(),
        }
    }

    fn region_mut(&mut self) -> &mut mem::Region {
        match self {
            Store::Plain(r) => r,
            Store::Pinned(k) => k.region_mut(),
        }
    }

    /// The memory slot of each logical block in `blocks`, into `out`.
    fn slots(&self, blocks: &[u32], out: &mut Vec<u32>) {
        out.clear();
        match self {
            Store::Plain(_) => out.extend_from_slice(blocks),
            Store::Pinned(k) => out.extend(blocks.iter().map(|&b| k.slot(b))),
        }
    }
}

/// New contents for `fresh`: a slot to write them to (pinned), pages to write them on
/// (recycling), then the writes.
fn fill(
    store: &mut Store,
    hints: &mut Option<EngineHints>,
    fresh: &[u32],
    slots: &mut Vec<u32>,
    block: usize,
) -> anyhow::Result<()> {
    match store {
        Store::Pinned(k) => {
            slots.clear();
            k.fill(fresh, slots)?;
        }
        Store::Plain(_) => {
            if let Some(h) = hints.as_mut() {
                h.refill(fresh)?;
            }
            store.slots(fresh, slots);
        }
    }
    write_blocks(store.region_mut(), block, slots);
    Ok(())
}

/// The reads and refills of every step, from a dry run of the same schedule (no
/// memory): the pinned oracle's knowledge of the future.
fn future(reqs: Vec<trace::Request>, nblocks: u32, a: &Args, steps: u64, t_off: f64) -> NextUse {
    let mut s = Sched::new(reqs, BlockPool::new(nblocks), a.block_tokens, a.decode_cap);
    let mut next = NextUse::new(nblocks as usize);
    let (mut fresh, mut reads) = (Vec::new(), Vec::new());
    for step in 0..steps {
        s.admit(
            step as f64 * a.step_ms as f64 * a.compress + t_off,
            &mut fresh,
        );
        fresh.drain(..).for_each(|b| next.filled(b, step));
        s.reads(&mut reads);
        reads.iter().for_each(|&b| next.read(b, step));
        s.advance(&mut fresh);
        fresh.drain(..).for_each(|b| next.filled(b, step + 1));
    }
    next
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rep = Reporter::new(&a.tag);
    let block = a.block_kib << 10;
    ensure!(
        block >= PAGE && block % PAGE == 0,
        "--block-kib must be a multiple of 4"
    );
    let nblocks = (a.pool_mb << 20) / block;
    ensure!(nblocks > 0, "the pool holds no block");
    let mut reqs = trace::load(&a.trace)?;
    let t_off = a.trace_offset_s * 1000.0;
    reqs.retain(|r| r.arrival_ms >= t_off);
    let total_reqs = reqs.len();
    if a.pinned.is_some() {
        // Pinned pages bound to the fast node cannot be reclaimed or moved: fail clearly
        // rather than be killed by the OOM killer halfway through the layout.
        let free = sysfs::node_meminfo(a.fast, "MemFree")? as usize;
        ensure!(
            (a.pinned_fast_mb + PINNED_MARGIN_MB) << 20 <= free,
            "--pinned-fast-mb {} needs {} MiB free on node {} (keeping {PINNED_MARGIN_MB} MiB), it has {}",
            a.pinned_fast_mb,
            a.pinned_fast_mb + PINNED_MARGIN_MB,
            a.fast,
            free >> 20
        );
    }
    let mut store = match a.pinned {
        None => Store::Plain(
            mem::Region::place(nblocks * block, Some(a.slow), mem::Thp::from_flag(a.thp))
                .context("placing the pool")?,
        ),
        Some(_) => Store::Pinned(Box::new(PinnedKv::new(
            (a.pinned_fast_mb << 20) / block,
            nblocks,
            block,
            (a.fast, a.slow),
            nblocks,
        )?)),
    };
    let base = store.region().base();
    let slot_addr = |s: u32| base + s as u64 * block as u64;
    let pages0 = match &store {
        Store::Pinned(k) => k.page_nodes()?,
        Store::Plain(_) => Vec::new(),
    };
    let firsts: Vec<u64> = (0..nblocks as u32).map(slot_addr).collect();
    let mut st = vec![0; nblocks];
    numa::query(&firsts, &mut st)?;
    let cap_blocks = match (a.fast_cap_mb, a.pinned) {
        (Some(mb), _) => (mb << 20) / block,
        (None, Some(_)) => (a.pinned_fast_mb << 20) / block,
        (None, None) => sysfs::node_meminfo(a.fast, "MemFree")? as usize / block,
    };
    println!(
        "ready pid={} pool={:#x}-{:#x} blocks={nblocks} on_slow={} requests={total_reqs} fast_cap_blocks={cap_blocks}",
        std::process::id(),
        base,
        base + store.region().len() as u64,
        numa::count_on(&st, a.slow).0,
    );
    if let Some(go) = &a.go {
        sysfs::wait_for_file(go);
    }
    let mut hints = if a.hints {
        // SAFETY: the pool is this process's anonymous memory, pinned by nothing; the
        // scheduler refills only slots whose contents are dead (free or evicted), and
        // freed slots are dead.
        Some(unsafe {
            EngineHints::connect(
                a.client_socket.as_deref(),
                base,
                (nblocks * block) as u64,
                block as u64,
                a.step_ms,
                !a.no_recycle,
            )
        }?)
    } else {
        None
    };
    if let (Store::Pinned(k), Some(PinnedMode::Hints)) = (&mut store, a.pinned) {
        k.register(a.client_socket.as_deref(), a.step_ms)?;
    }
    let moves = if a.count_move_pages {
        Some(MovePagesCount::start(std::process::id())?)
    } else {
        None
    };
    // Reads whose placement-table entry named the node the kernel reported.
    let mut table_agree = 0u64;

    let vm0 = sysfs::vmstat()?;
    let sched_reqs = match a.pinned {
        Some(PinnedMode::Oracle) => reqs.clone(),
        _ => Vec::new(),
    };
    let mut sched = Sched::new(
        reqs,
        BlockPool::new(nblocks as u32),
        a.block_tokens,
        a.decode_cap,
    );
    let mut pacer = Pacer::new(
        Duration::from_millis(a.step_ms),
        Duration::from_secs_f64(a.seconds),
    );
    let mut next = match a.pinned {
        Some(PinnedMode::Oracle) => Some(future(
            sched_reqs,
            nblocks as u32,
            &a,
            pacer.steps_planned() + 1,
            t_off,
        )),
        _ => None,
    };
    let (mut fresh, mut reads, mut addrs, mut status, mut slots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut hits, mut total, mut running_sum) = (0u64, 0u64, 0u64);
    // Pinned: reads whose slot is a fast slot by the layout (the block table's view).
    let mut table_hits = 0u64;
    let mut checkpoint = None;
    let mut ages = ReadAges::new(nblocks);
    let (mut seq, mut bounds): (Vec<u32>, Vec<usize>) = (Vec::new(), vec![0]);
    while pacer.tick() {
        // Trace time follows the engine's steps, not the wall clock: every arm replays
        // the same request sequence however many steps the VM manages.
        let step = pacer.steps_done() - 1;
        let trace_ms = step as f64 * a.step_ms as f64 * a.compress + t_off;
        sched.admit(trace_ms, &mut fresh);
        fill(&mut store, &mut hints, &fresh, &mut slots, block)?;
        ages.written(&fresh, pacer.elapsed_s());
        fresh.clear();
        sched.reads(&mut reads);
        if let Some(h) = hints.as_mut() {
            h.step(&reads, &sched.pool)?;
        }
        if let Store::Pinned(k) = &mut store {
            k.serve()?;
            k.hints_step(&reads, &sched.pool)?;
            if let Some(n) = next.as_mut() {
                k.oracle_place(step, &reads, n)?;
            }
        }
        store.slots(&reads, &mut slots);
        addrs.clear();
        addrs.extend(slots.iter().map(|&s| slot_addr(s)));
        status.resize(addrs.len(), 0);
        numa::query(&addrs, &mut status).context("placement query")?;
        hits += numa::count_on(&status, a.fast).0 as u64;
        if let Store::Pinned(k) = &store {
            table_hits += slots.iter().filter(|&&s| k.is_fast_slot(s)).count() as u64;
        }
        let now = pacer.elapsed_s();
        for (&s, &n) in reads.iter().zip(&status) {
            ages.read(s, n == a.fast as i32, now);
        }
        if let Some(h) = hints.as_ref() {
            table_agree += reads
                .iter()
                .zip(&status)
                .filter(|(&s, &n)| h.placement(s) == n)
                .count() as u64;
        }
        total += reads.len() as u64;
        if pacer.steps_done() == a.checkpoint_steps {
            checkpoint = Some((hits, total, pacer.elapsed_s()));
        }
        running_sum += sched.running() as u64;
        let words = store.region().words();
        for &s in &slots {
            let b = s as usize * block / 8;
            mem::read_every(&words[b..b + block / 8], PAGE / 8);
        }
        if a.oracle {
            seq.extend_from_slice(&reads);
            bounds.push(seq.len());
        }
        sched.advance(&mut fresh);
        fill(&mut store, &mut hints, &fresh, &mut slots, block)?;
        ages.written(&fresh, pacer.elapsed_s());
        if let Some(h) = hints.as_mut() {
            h.written(&fresh)?;
        }
        if let Store::Pinned(k) = &mut store {
            k.hints_written(&fresh)?;
        }
        fresh.clear();
        if pacer.steps_done().is_multiple_of(400) {
            println!(
                "t={:.1}s steps={} running={} waiting={} reads/step={} hit={:.3}",
                pacer.elapsed_s(),
                pacer.steps_done(),
                sched.running(),
                sched.waiting(),
                reads.len(),
                hits as f64 / total.max(1) as f64
            );
        }
    }
    let steps = pacer.steps_done();
    let vm1 = sysfs::vmstat()?;
    rep.ratio("kv_fast_hit_fraction", hits as f64 / total.max(1) as f64);
    rep.result("block_reads", total);
    if let Some((h, t, secs)) = checkpoint {
        let k = a.checkpoint_steps;
        rep.ratio(
            &format!("kv_fast_hit_fraction_{k}steps"),
            h as f64 / t.max(1) as f64,
        );
        rep.result(&format!("seconds_to_{k}steps"), format!("{secs:.1}"));
    }
    for (label, r, h) in ages.labelled() {
        rep.ratio(
            &format!("{label}_read_share"),
            r as f64 / total.max(1) as f64,
        );
        rep.ratio(&format!("{label}_hit_fraction"), h as f64 / r.max(1) as f64);
    }
    rep.result("steps_done", steps);
    rep.result("steps_planned", pacer.steps_planned());
    rep.result("steps_late", pacer.steps_late());
    rep.result("requests_admitted", sched.stats.admitted);
    rep.result("requests_completed", sched.stats.completed);
    rep.result("requests_deferred", sched.stats.deferred);
    rep.result(
        "running_avg",
        format!("{:.1}", running_sum as f64 / steps.max(1) as f64),
    );
    rep.result("blocks_reused", sched.pool.stats.reused);
    rep.result("blocks_filled", sched.pool.stats.filled);
    rep.result("blocks_evicted", sched.pool.stats.evicted);
    rep.result(
        "pages_migrated",
        sysfs::delta(&vm0, &vm1, "pgmigrate_success"),
    );
    if let Some(h) = &hints {
        let st = h.stats();
        rep.result("hint_blocks_offered", h.offered_blocks);
        rep.result("blocks_recycled", h.recycled_blocks);
        rep.result("hint_blocks_sent", h.sent_blocks);
        rep.result("hint_blocks_applied", st.applied_blocks);
        rep.result("hint_blocks_dropped", st.dropped_blocks);
        rep.result("hint_deadline_missed", st.deadline_missed);
        rep.result("hint_promoted_blocks", st.promoted_blocks);
        rep.ratio(
            "placement_table_agree",
            table_agree as f64 / total.max(1) as f64,
        );
    }
    if let Store::Pinned(k) = &store {
        let p = &k.pool;
        rep.result("pinned_fast_slots", (a.pinned_fast_mb << 20) / block);
        rep.ratio(
            "table_fast_fraction",
            table_hits as f64 / total.max(1) as f64,
        );
        rep.result("copies", p.copies);
        rep.result("copied_bytes", p.copies * block as u64);
        rep.result("copies_avoided", p.repoints);
        rep.result("avoided_bytes", p.repoints * block as u64);
        rep.result("declines", p.declines);
        rep.result("relocation_requests", k.stats.requests);
        rep.result("filled_fast", k.stats.filled_fast);
        rep.result("filled_slow", k.stats.filled_slow);
        rep.result("hint_blocks_sent", k.stats.hint_blocks_sent);
        rep.result(
            "layout_pages_ok",
            format!("{}/{}", k.layout_ok(&pages0), pages0.len()),
        );
        let pages1 = k.page_nodes()?;
        let changed = pages0.iter().zip(&pages1).filter(|(x, y)| x != y).count();
        rep.result("pages_changed_node", changed);
    }
    if let Some(m) = &moves {
        rep.result("move_pages_calls", m.calls()?);
    }
    if a.oracle {
        let bel = oracle::belady_hits(&seq, cap_blocks);
        let pre = oracle::prefetch_hits(bounds.windows(2).map(|w| &seq[w[0]..w[1]]), cap_blocks);
        rep.result("oracle_cap_blocks", cap_blocks);
        rep.ratio("kv_oracle_belady", bel as f64 / total.max(1) as f64);
        rep.ratio("kv_oracle_prefetch", pre as f64 / total.max(1) as f64);
        rep.ratio("kv_fast_hit_vs_belady", hits as f64 / bel.max(1) as f64);
    }
    Ok(())
}
