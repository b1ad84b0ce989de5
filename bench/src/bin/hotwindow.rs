//! `hotwindow`: the moving-hot-window benchmark (issue 5).
//!
//! Maps `--mb` MiB, all first placed on `--slow` (MPOL_BIND during first touch, then
//! MPOL_DEFAULT so nothing pins it), prints `ready pid=..`, optionally waits for
//! `--go FILE` (the scenario starts the mover under test first), then reads and
//! writes one word per cache line of a `--hot-mb` window continuously; the window
//! steps `--step-mb` further every `--move-s` seconds (wrapping), for `--seconds`.
//!
//! A sampler thread queries, every `--sample-ms`, the node of every page of the hot
//! window (`move_pages`, nodes = NULL) and integrates over time the fraction of the
//! current window on `--fast`; every `--moves-every` samples it queries the whole
//! footprint and counts node changes per page since the previous full query (a page
//! that moves and moves back in between counts 0 moves). Both queries look at every
//! `--sample-stride`-th page only (counts are scaled back). The move count that is
//! compared with the ideal one is exact and system-wide: the growth of /proc/vmstat's
//! `pgmigrate_success` (base pages migrated, by any mover) over the measured phase.
//! Prints `RESULT hot_fast_fraction`, `access_gbps`, `pages_migrated`,
//! `pages_{promoted,demoted}_sampled`, `ideal_moves` (see tierd_bench::oracle::window_moves, with the fast
//! node's free memory at start as capacity unless `--fast-cap-mb`), `moves_ratio`.

use anyhow::{ensure, Context};
use clap::Parser;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tierd_bench::{mem, numa, oracle, report::Reporter, stats::TimeWeighted, sysfs, LINE, PAGE};

/// Moving hot window over memory that starts on the slow node.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Footprint, MiB.
    #[arg(long, default_value_t = 640)]
    mb: usize,
    /// Hot window, MiB.
    #[arg(long, default_value_t = 128)]
    hot_mb: usize,
    /// How far the window moves each time, MiB (default: one window).
    #[arg(long)]
    step_mb: Option<usize>,
    /// Seconds between window moves.
    #[arg(long, default_value_t = 10.0)]
    move_s: f64,
    /// Measured duration, seconds.
    #[arg(long, default_value_t = 40.0)]
    seconds: f64,
    /// Sampling period of the hot window's placement query, ms.
    #[arg(long, default_value_t = 200)]
    sample_ms: u64,
    /// Query the whole footprint (to count page moves) every this many samples; a
    /// footprint query costs ~5x a window query, so not every time under TCG.
    #[arg(long, default_value_t = 5)]
    moves_every: u64,
    /// Sample every this many pages (a query costs ~5-10 us per page under TCG; the
    /// sampler must not steal the CPU from the workload and the mover under test).
    #[arg(long, default_value_t = 8)]
    sample_stride: usize,
    /// Bytes between touched words (64: one per cache line).
    #[arg(long, default_value_t = LINE)]
    stride: usize,
    /// Back the footprint with transparent huge pages (MADV_HUGEPAGE; default
    /// MADV_NOHUGEPAGE, 4 KiB pages only).
    #[arg(long)]
    thp: bool,
    #[arg(long, default_value_t = 0)]
    fast: u32,
    #[arg(long, default_value_t = 1)]
    slow: u32,
    /// Fast capacity for the ideal-move count, MiB (default: the fast node's free
    /// memory once the footprint is placed).
    #[arg(long)]
    fast_cap_mb: Option<usize>,
    /// Wait for this file to exist before the measured phase.
    #[arg(long)]
    go: Option<PathBuf>,
    /// Prefix of the RESULT keys (e.g. kernel, damon, tierd).
    #[arg(long, default_value = "")]
    tag: String,
}

/// Window k's first page and length, in pages: positions 0, step, 2 step, ... as far
/// as the window fits, then back to 0.
fn window(a: &Args, k: usize) -> (usize, usize) {
    let total = (a.mb << 20) / PAGE;
    let hot = (a.hot_mb << 20) / PAGE;
    let step = ((a.step_mb.unwrap_or(a.hot_mb) << 20) / PAGE).max(1);
    let positions = (total - hot) / step + 1;
    ((k % positions) * step, hot)
}

#[derive(Default)]
struct Tally {
    fast_frac: TimeWeighted,
    promoted: u64,
    demoted: u64,
    samples: u64,
    query_s: f64,
    full_queries: u64,
    full_query_s: f64,
}

/// The sampler thread's loop: see the module doc. `pages` are the sampled pages (every
/// `--sample-stride`-th page of the footprint).
fn sample(
    a: &Args,
    pages: &[u64],
    cur: &AtomicUsize,
    stop: &AtomicBool,
    t0: Instant,
) -> anyhow::Result<Tally> {
    let stride = a.sample_stride.max(1);
    let mut t = Tally::default();
    let mut last: Vec<i32> = vec![-1; pages.len()];
    let mut now: Vec<i32> = vec![0; pages.len()];
    numa::query(pages, &mut last).context("placement query")?;
    t.fast_frac.start(0.0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(a.sample_ms));
        let q = Instant::now();
        let (start, len) = window(a, cur.load(Ordering::Relaxed));
        let w = start.div_ceil(stride)..(start + len).div_ceil(stride).min(pages.len());
        numa::query(&pages[w.clone()], &mut now[w.clone()]).context("placement query")?;
        t.query_s += q.elapsed().as_secs_f64();
        let n = w.len().max(1);
        let on_fast = numa::count_on(&now[w], a.fast).0;
        t.fast_frac
            .add(t0.elapsed().as_secs_f64(), on_fast as f64 / n as f64);
        t.samples += 1;
        if !t.samples.is_multiple_of(a.moves_every.max(1)) {
            continue;
        }
        let q = Instant::now();
        numa::query(pages, &mut now).context("placement query")?;
        t.full_query_s += q.elapsed().as_secs_f64();
        t.full_queries += 1;
        for (l, &n) in last.iter_mut().zip(&now) {
            if n >= 0 && *l >= 0 && n != *l {
                if n == a.fast as i32 {
                    t.promoted += stride as u64;
                } else {
                    t.demoted += stride as u64;
                }
            }
            if n >= 0 {
                *l = n;
            }
        }
    }
    Ok(t)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rep = Reporter::new(&a.tag);
    ensure!(
        a.hot_mb > 0 && a.hot_mb <= a.mb,
        "--hot-mb must be within 1..=--mb"
    );
    let len = a.mb << 20;
    let mut region = mem::Region::place(len, Some(a.slow), mem::Thp::from_flag(a.thp))
        .context("placing the footprint")?;
    let pages = region.page_addrs(0, len);
    let mut st = vec![0; pages.len()];
    numa::query(&pages, &mut st)?;
    let (on_slow, _, _) = numa::count_on(&st, a.slow);
    ensure!(
        a.step_mb.unwrap_or(a.hot_mb) > 0,
        "--step-mb must be at least 1"
    );
    let cap_pages = match a.fast_cap_mb {
        Some(mb) => (mb << 20) / PAGE,
        None => sysfs::node_meminfo(a.fast, "MemFree")? as usize / PAGE,
    };
    println!(
        "ready pid={} range={:#x}-{:#x} pages={} on_slow={on_slow} fast_cap_pages={cap_pages} thp={}",
        std::process::id(),
        region.base(),
        region.base() + len as u64,
        pages.len(),
        a.thp
    );
    if let Some(go) = &a.go {
        sysfs::wait_for_file(go);
    }

    let cur = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let vm0 = sysfs::vmstat()?;
    let t0 = Instant::now();
    let sampler = {
        let (a, cur, stop) = (a.clone(), cur.clone(), stop.clone());
        let sampled: Vec<u64> = pages
            .iter()
            .step_by(a.sample_stride.max(1))
            .copied()
            .collect();
        std::thread::spawn(move || sample(&a, &sampled, &cur, &stop, t0))
    };
    let stride = (a.stride / 8).max(1);
    let (mut bytes, mut k) = (0u64, 0usize);
    let mut windows = vec![window(&a, 0)];
    while t0.elapsed().as_secs_f64() < a.seconds {
        let want = (t0.elapsed().as_secs_f64() / a.move_s) as usize;
        if want != k {
            k = want;
            cur.store(k, Ordering::Relaxed);
            windows.push(window(&a, k));
            println!(
                "window {k} at {:.1}s: pages {:?}",
                t0.elapsed().as_secs_f64(),
                window(&a, k)
            );
        }
        let (start, n) = window(&a, k);
        let w = &mut region.words_mut()[start * PAGE / 8..(start + n) * PAGE / 8];
        // Throughput in cache lines brought in: one per touched word at stride >= 64 B.
        bytes += (mem::update_every(w, stride) * LINE.min(stride * 8)) as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let vm1 = sysfs::vmstat()?;
    stop.store(true, Ordering::Relaxed);
    let t = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler thread panicked"))??;
    let (ip, id) = oracle::window_moves(&windows, cap_pages);
    let migrated = sysfs::delta(&vm0, &vm1, "pgmigrate_success");
    rep.ratio("hot_fast_fraction", t.fast_frac.average());
    rep.result("access_gbps", format!("{:.3}", bytes as f64 / secs / 1e9));
    rep.result("windows", windows.len());
    rep.result("pages_promoted_sampled", t.promoted);
    rep.result("pages_demoted_sampled", t.demoted);
    rep.result("pages_migrated", migrated);
    for k in [
        "pgpromote_success",
        "pgdemote_kswapd",
        "pgdemote_direct",
        "numa_pages_migrated",
    ] {
        rep.result(&format!("vmstat_{k}"), sysfs::delta(&vm0, &vm1, k));
    }
    rep.result("ideal_moves", ip + id);
    rep.ratio("moves_ratio", migrated as f64 / (ip + id).max(1) as f64);
    rep.result("samples", t.samples);
    rep.result(
        "sample_query_ms",
        format!("{:.1}", t.query_s * 1e3 / t.samples.max(1) as f64),
    );
    rep.result(
        "full_query_ms",
        format!("{:.1}", t.full_query_s * 1e3 / t.full_queries.max(1) as f64),
    );
    Ok(())
}
