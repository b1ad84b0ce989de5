//! `hintload`: many protocol clients hinting at full speed at once (issue 18, "load";
//! tests/vm/scenarios/reliability/60-*, which runs a `tierctl` query loop beside it).
//!
//! ```text
//! hintload [--clients 256] [--region-kb 1024] [--block-kb 16] [--batch 4]
//!          [--seconds 20] [--socket PATH] [--tierd-pid PID] [--tag T]
//! ```
//!
//! Starts `--clients` threads, each with its own connection to tierd's client socket
//! and its own registered region of `--region-kb` KiB (blocks of `--block-kb` KiB).
//! Once all have registered, each sends ACCESS hints of `--batch` blocks at random
//! places as fast as it can for `--seconds`: what its ring does not take is dropped and
//! counted in the region's header, as the client library does. Meanwhile:
//! - a monitor (the main thread) reads every region's header every 50 ms: applied
//!   entries (the hint poller's progress) and the placement generation (bumped by
//!   tierd's own moves and by each step of the placement sweep that reads the region),
//!   and `VmRSS` of `--tierd-pid`.
//!
//! Prints RESULT lines (keys prefixed `T.` with `--tag`): `clients`,
//! `hints_published_per_s`, `hint_drops`, `hint_drop_ratio`, `hints_applied_per_s`,
//! `hint_blocks_applied_per_s`, `published_client_per_s_min`, `applied_client_per_s_min`,
//! `applied_idle_client_s` (one-second windows in which a client's ring had entries
//! waiting yet none was applied), `placement_refresh_per_s_min` / `_median`,
//! `placement_gap_ms_max`, `tierd_rss_kb_start`, `tierd_rss_kb_peak`. Exits 1 if a client could not connect or
//! register; the scenario judges the figures.

use anyhow::{anyhow, Context};
use clap::Parser;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tierd_bench::report::Reporter;
use tierd_bench::stats::percentile;
use tierd_client::{Client, HintKind, Region};

#[derive(Parser, Debug, Clone)]
#[command(about = "Many protocol clients hinting at full speed at once")]
struct Args {
    /// Concurrent clients, each with its own connection and region.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// KiB of memory each client registers.
    #[arg(long, default_value_t = 1024)]
    region_kb: u64,
    /// KiB per block of the regions.
    #[arg(long, default_value_t = 16)]
    block_kb: u64,
    /// Blocks per ACCESS hint (one ring entry).
    #[arg(long, default_value_t = 4)]
    batch: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// tierd's client socket (default: the library's, `$TIERD_CLIENT_SOCKET`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// tierd's pid, for its RSS.
    #[arg(long)]
    tierd_pid: Option<u32>,
    /// Prefix of every RESULT key.
    #[arg(long, default_value = "")]
    tag: String,
}

/// How often the monitor reads the regions' headers.
const SAMPLE: Duration = Duration::from_millis(50);

/// xorshift64*, one per client thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// One client's connection, memory and region, built on its own thread.
struct Conn {
    client: Client,
    region: Arc<Region>,
    id: u32,
    _mem: memmap2::MmapMut,
}

fn connect(a: &Args) -> anyhow::Result<Conn> {
    let client = Client::connect(a.socket.as_deref()).context("connect")?;
    let mut mem = memmap2::MmapMut::map_anon((a.region_kb << 10) as usize).context("mmap")?;
    mem.fill(1);
    let id = client
        .register(mem.as_ptr() as u64, a.region_kb << 10, a.block_kb << 10)
        .context("register")?;
    let region = client.region(id)?;
    Ok(Conn {
        client,
        region,
        id,
        _mem: mem,
    })
}

/// A client thread: connects, registers, reports its region (or why it could not),
/// waits for everyone, then hints until `stop`.
fn client_thread(
    i: usize,
    a: Args,
    ready: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    tx: std::sync::mpsc::Sender<Result<Arc<Region>, String>>,
) {
    let conn = connect(&a).map_err(|e| format!("client {i}: {e:#}"));
    let _ = tx.send(
        conn.as_ref()
            .map(|c| c.region.clone())
            .map_err(Clone::clone),
    );
    ready.wait();
    let Ok(c) = conn else { return };
    let nblocks = c.region.nblocks();
    let batch = u64::from(a.batch).min(nblocks) as u32;
    let mut rng = Rng(0x9e37_79b9 + i as u64);
    while !stop.load(Ordering::Relaxed) {
        let first = rng.below(nblocks - u64::from(batch) + 1);
        if c.client
            .hint_range(c.id, HintKind::Access, first, batch, 0)
            .is_err()
        {
            return;
        }
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What the monitor saw of one region.
#[derive(Default, Clone)]
struct Watch {
    /// Applied entries at the start of each one-second window (and at the end).
    applied_at_s: Vec<u64>,
    /// Published entries at the start of each window.
    published_at_s: Vec<u64>,
    gen_first: u64,
    gen_last: u64,
    gen_changed: Option<Instant>,
    gap_max: Duration,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.clients > 0 && a.batch > 0 && a.block_kb > 0,
        "--clients, --batch and --block-kb must be > 0"
    );
    anyhow::ensure!(
        a.region_kb >= a.block_kb,
        "--region-kb must hold at least one block"
    );
    let r = Reporter::new(&a.tag);
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(a.clients + 1));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(a.clients);
    let t_setup = Instant::now();
    for i in 0..a.clients {
        let (a, ready, stop, tx) = (a.clone(), ready.clone(), stop.clone(), tx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("hint{i}"))
                .stack_size(256 << 10)
                .spawn(move || client_thread(i, a, ready, stop, tx))
                .context("spawning a client thread")?,
        );
    }
    drop(tx);
    let mut regions = Vec::with_capacity(a.clients);
    let mut errors = Vec::new();
    for m in rx.iter().take(a.clients) {
        match m {
            Ok(reg) => regions.push(reg),
            Err(e) => errors.push(e),
        }
    }
    println!(
        "{} clients registered in {:.1} s, {} failed",
        regions.len(),
        t_setup.elapsed().as_secs_f64(),
        errors.len()
    );
    for e in errors.iter().take(5) {
        eprintln!("hintload: {e}");
    }
    if !errors.is_empty() {
        stop.store(true, Ordering::SeqCst);
        ready.wait();
        for t in threads {
            let _ = t.join();
        }
        return Err(anyhow!("{} of {} clients failed", errors.len(), a.clients));
    }

    let rss_start = a.tierd_pid.and_then(rss_kb).unwrap_or(0);
    let mut rss_peak = rss_start;
    let before: Vec<_> = regions.iter().map(|g| g.stats()).collect();
    let mut watch: Vec<Watch> = before
        .iter()
        .map(|s| Watch {
            gen_first: s.placement_gen,
            gen_last: s.placement_gen,
            ..Watch::default()
        })
        .collect();
    let t0 = Instant::now();
    ready.wait();
    let total = Duration::from_secs_f64(a.seconds);
    let mut next_s = t0;
    while t0.elapsed() < total {
        let now = Instant::now();
        let second = now >= next_s;
        for (g, w) in regions.iter().zip(watch.iter_mut()) {
            let s = g.stats();
            if second {
                w.applied_at_s.push(s.applied_entries);
                w.published_at_s.push(s.published_entries);
            }
            if s.placement_gen != w.gen_last {
                let since = w.gen_changed.unwrap_or(t0);
                w.gap_max = w.gap_max.max(now - since);
                w.gen_changed = Some(now);
                w.gen_last = s.placement_gen;
            }
        }
        if second {
            next_s += Duration::from_secs(1);
        }
        if let Some(kb) = a.tierd_pid.and_then(rss_kb) {
            rss_peak = rss_peak.max(kb);
        }
        std::thread::sleep(SAMPLE.saturating_sub(now.elapsed()));
    }
    let load_s = t0.elapsed().as_secs_f64();
    let end = Instant::now();
    let after: Vec<_> = regions.iter().map(|g| g.stats()).collect();
    for (w, s) in watch.iter_mut().zip(&after) {
        w.applied_at_s.push(s.applied_entries);
        w.published_at_s.push(s.published_entries);
        // The count comes from the generation itself, not from how often this thread
        // got the CPU to look (it shares it with the spinning clients).
        if s.placement_gen != w.gen_last {
            w.gap_max = w.gap_max.max(end - w.gen_changed.unwrap_or(t0));
            w.gen_changed = Some(end);
            w.gen_last = s.placement_gen;
        }
        w.gap_max = w.gap_max.max(end - w.gen_changed.unwrap_or(t0));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }

    let sum = |f: fn(&tierd_client::RegionStats) -> u64| -> u64 {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| f(a).saturating_sub(f(b)))
            .sum()
    };
    let published = sum(|s| s.published_entries);
    let dropped = sum(|s| s.dropped_entries);
    let applied = sum(|s| s.applied_entries);
    let applied_blocks = sum(|s| s.applied_blocks);
    // Per client and one-second window: entries applied; a window counts as idle when
    // the ring had entries waiting at its start yet none was applied in it.
    let mut per_client_rate = Vec::with_capacity(watch.len());
    let mut per_client_published = Vec::with_capacity(watch.len());
    let mut idle = 0u64;
    let mut refresh_rate = Vec::with_capacity(watch.len());
    let mut gap_max = Duration::ZERO;
    for w in &watch {
        let n = w.applied_at_s.len();
        for k in 1..n {
            let waiting = w.published_at_s[k - 1] > w.applied_at_s[k - 1];
            if waiting && w.applied_at_s[k] == w.applied_at_s[k - 1] {
                idle += 1;
            }
        }
        per_client_rate
            .push((w.applied_at_s[n - 1].saturating_sub(w.applied_at_s[0])) as f64 / load_s);
        per_client_published
            .push((w.published_at_s[n - 1].saturating_sub(w.published_at_s[0])) as f64 / load_s);
        refresh_rate.push((w.gen_last - w.gen_first) as f64 / load_s);
        gap_max = gap_max.max(w.gap_max);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "load {load_s:.1} s: published {published} entries, dropped {dropped}, applied {applied}; tierd RSS {rss_start} -> peak {rss_peak} kB"
    );
    r.result("clients", regions.len());
    r.result("load_seconds", format!("{load_s:.1}"));
    r.result(
        "hints_published_per_s",
        format!("{:.0}", published as f64 / load_s),
    );
    r.result("hint_drops", dropped);
    r.ratio(
        "hint_drop_ratio",
        dropped as f64 / (published + dropped).max(1) as f64,
    );
    r.result(
        "hints_applied_per_s",
        format!("{:.0}", applied as f64 / load_s),
    );
    r.result(
        "hint_blocks_applied_per_s",
        format!("{:.0}", applied_blocks as f64 / load_s),
    );
    r.result(
        "published_client_per_s_min",
        format!("{:.0}", min(&per_client_published)),
    );
    r.result(
        "applied_client_per_s_min",
        format!("{:.0}", min(&per_client_rate)),
    );
    r.result("applied_idle_client_s", idle);
    r.result(
        "placement_refresh_per_s_min",
        format!("{:.2}", min(&refresh_rate)),
    );
    r.result(
        "placement_refresh_per_s_median",
        format!("{:.2}", percentile(&refresh_rate, 50.0)),
    );
    r.result("placement_gap_ms_max", gap_max.as_millis());
    if a.tierd_pid.is_some() {
        r.result("tierd_rss_kb_start", rss_start);
        r.result("tierd_rss_kb_peak", rss_peak);
    }
    Ok(())
}
