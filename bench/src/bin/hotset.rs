//! `hotset`: a workload with a known, moving hot set, for the sampling accuracy and
//! overhead scenarios (tests/vm/scenarios/sampling/).
//!
//! `hotset run [--mb 512] [--hot-mb 32] [--move-s 5] [--seconds S] [--state FILE]
//! [--seed N] [--progress FILE]` maps `--mb` MiB, touches all of it once, then keeps
//! writing one word per cache line of a `--hot-mb` MiB window that jumps to a new
//! random page-aligned place every `--move-s` seconds. Each move rewrites FILE (atomically) with
//! `SEQ START END T_CS` (the true hot range, decimal; the move's CLOCK_BOOTTIME in
//! centiseconds, the clock of /proc/uptime) and prints `move seq=.. start=.. end=..
//! mbps=..` (throughput of the last period). At the end (after S seconds, or SIGTERM)
//! it prints `total bytes=.. seconds=.. mbps=..`. With `--progress FILE` it also keeps
//! two native-endian u64 in FILE (shared mapping, stored after every pass over the
//! window; `od -An -tu8 FILE` reads them): the running byte total and the
//! CLOCK_MONOTONIC nanoseconds when it was reached. A scenario then measures
//! throughput over any window of its own, timed by the workload itself, without a
//! syscall in the loop but one clock read per pass. The two are stored one after the
//! other: a reader racing a store is off by at most one pass (~4 ms here).
//!
//! `hotset score --truth FILE --heat FILE.json` compares the hottest regions of a
//! `tierctl heat --json` reply with the true range and prints
//! `precision=.. recall=.. reported_bytes=..`.
//!
//! `hotset watch --state FILE --pid PID [--socket S] [--top BYTES] [--after-ms 1500]
//! [--moves 5] [--out-dir D]` does the same for each of the next `--moves` moves,
//! asking tierd (the request `tierctl heat --top` sends) `--after-ms` after the move,
//! and prints `move seq=.. precision=.. recall=.. .. answered_after_ms=..`.

use anyhow::{bail, Context};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const PAGE: usize = 4096;
const LINE: usize = 64;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| anyhow::anyhow!("{name}: bad value {v:?}"))
        }
    }
}

/// xorshift64*: enough randomness to place a window, reproducible with --seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Clock `clock` in nanoseconds (a vDSO read).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME in centiseconds: the clock of /proc/uptime, for shell scenarios.
fn boottime_cs() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME) / 10_000_000
}

/// CLOCK_MONOTONIC in nanoseconds, for the `--progress` file.
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The `--progress` file: two u64 (byte total, its CLOCK_MONOTONIC ns) in a shared
/// mapping.
struct Progress(memmap2::MmapMut);

impl Progress {
    fn create(path: &str) -> anyhow::Result<Progress> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("creating {path}"))?;
        f.set_len(16).with_context(|| format!("sizing {path}"))?;
        // SAFETY: the file is ours (just created and truncated) and 16 bytes long; other
        // processes only read it.
        let map =
            unsafe { memmap2::MmapMut::map_mut(&f) }.with_context(|| format!("mapping {path}"))?;
        let p = Progress(map);
        // A reader from now on gets a valid (bytes, time) pair.
        p.store(0, monotonic_ns());
        Ok(p)
    }

    fn store(&self, total: u64, ns: u64) {
        // SAFETY: the mapping is 16 bytes, page-aligned, and lives as long as self;
        // atomic stores so a reader never sees a torn value.
        let cells = unsafe { &*(self.0.as_ptr() as *const [std::sync::atomic::AtomicU64; 2]) };
        cells[0].store(total, Ordering::Relaxed);
        cells[1].store(ns, Ordering::Release);
    }
}

fn write_state(path: &str, seq: u64, start: u64, end: u64) -> anyhow::Result<()> {
    let tmp = format!("{path}.tmp");
    let t = boottime_cs();
    std::fs::write(&tmp, format!("{seq} {start} {end} {t}\n"))
        .with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {tmp} to {path}"))
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let mb: usize = arg(args, "--mb", 512)?;
    let hot_mb: usize = arg(args, "--hot-mb", 32)?;
    let move_s: f64 = arg(args, "--move-s", 5.0)?;
    let seconds: f64 = arg(args, "--seconds", 0.0)?;
    let state: String = arg(args, "--state", String::new())?;
    let seed: u64 = arg(args, "--seed", 0x9e37_79b9_7f4a_7c15)?;
    let progress_path: String = arg(args, "--progress", String::new())?;
    let (len, hot) = (mb << 20, hot_mb << 20);
    if hot == 0 || hot > len {
        bail!("--hot-mb must be within 1..=--mb");
    }
    // SAFETY: anonymous private mapping, no fd; checked for MAP_FAILED below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    anyhow::ensure!(p != libc::MAP_FAILED, "mmap {mb} MiB failed");
    // SAFETY: the mapping is len bytes, readable and writable, and lives until exit.
    let buf = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, len / 8) };
    for i in (0..buf.len()).step_by(PAGE / 8) {
        buf[i] = i as u64;
    }
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    let base = p as u64;
    println!(
        "range={base:#x}-{:#x} pid={}",
        base + len as u64,
        std::process::id()
    );
    let progress = (!progress_path.is_empty())
        .then(|| Progress::create(&progress_path))
        .transpose()?;
    let mut rng = Rng(seed | 1);
    let pages = (len - hot) / PAGE;
    let (t0, mut total) = (Instant::now(), 0u64);
    let mut seq = 0u64;
    while !STOP.load(Ordering::SeqCst) && (seconds <= 0.0 || t0.elapsed().as_secs_f64() < seconds) {
        seq += 1;
        let off = (rng.next() as usize % (pages + 1)) * PAGE;
        let (start, end) = (base + off as u64, base + (off + hot) as u64);
        if !state.is_empty() {
            write_state(&state, seq, start, end)?;
        }
        let period = Instant::now();
        let mut bytes = 0u64;
        let window = &mut buf[off / 8..(off + hot) / 8];
        while period.elapsed().as_secs_f64() < move_s && !STOP.load(Ordering::SeqCst) {
            for w in window.iter_mut().step_by(LINE / 8) {
                *w = w.wrapping_add(1);
            }
            std::hint::black_box(&window);
            bytes += hot as u64;
            if let Some(p) = &progress {
                p.store(total + bytes, monotonic_ns());
            }
            if seconds > 0.0 && t0.elapsed().as_secs_f64() >= seconds {
                break;
            }
        }
        let s = period.elapsed().as_secs_f64();
        total += bytes;
        println!(
            "move seq={seq} start={start} end={end} mbps={:.1}",
            bytes as f64 / s / (1 << 20) as f64
        );
    }
    let s = t0.elapsed().as_secs_f64();
    println!(
        "total bytes={total} seconds={s:.2} mbps={:.1}",
        total as f64 / s / (1 << 20) as f64
    );
    Ok(())
}

/// Bytes of `[a0, a1)` inside `[b0, b1)`.
fn overlap(a0: u64, a1: u64, b0: u64, b1: u64) -> u64 {
    a1.min(b1).saturating_sub(a0.max(b0))
}

/// `(precision, recall, reported bytes)` of heat regions against the true range.
fn score_regions(regions: &[serde_json::Value], t0: u64, t1: u64) -> (f64, f64, u64) {
    let (mut reported, mut hit) = (0u64, 0u64);
    for r in regions {
        let (s, e) = (
            r["start"].as_u64().unwrap_or(0),
            r["end"].as_u64().unwrap_or(0),
        );
        reported += e.saturating_sub(s);
        hit += overlap(s, e, t0, t1);
    }
    let precision = if reported == 0 {
        0.0
    } else {
        hit as f64 / reported as f64
    };
    (precision, hit as f64 / (t1 - t0).max(1) as f64, reported)
}

/// `(seq, start, end, t_cs)` from a state file.
fn read_truth(path: &str) -> anyhow::Result<(u64, u64, u64, u64)> {
    let t = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let f: Vec<u64> = t
        .split_whitespace()
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?;
    match f[..] {
        [seq, t0, t1, tc] => Ok((seq, t0, t1, tc)),
        [seq, t0, t1] => Ok((seq, t0, t1, 0)),
        _ => bail!("{path}: expected `SEQ START END [T_CS]`, got {t:?}"),
    }
}

fn score(args: &[String]) -> anyhow::Result<()> {
    let truth: String = arg(args, "--truth", String::new())?;
    let heat: String = arg(args, "--heat", String::new())?;
    let (_, t0, t1, _) = read_truth(&truth)?;
    let h: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&heat).with_context(|| format!("reading {heat}"))?,
    )
    .with_context(|| format!("parsing {heat}"))?;
    let regions = h["regions"]
        .as_array()
        .context("no regions array in the heat reply")?;
    let (precision, recall, reported) = score_regions(regions, t0, t1);
    println!("precision={precision:.3} recall={recall:.3} reported_bytes={reported}");
    Ok(())
}

/// One `heat` request on tierd's control socket (what `tierctl heat --top` sends).
fn query_heat(socket: &str, pid: i64, top: u64) -> anyhow::Result<serde_json::Value> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {socket}"))?;
    let req = serde_json::json!({"cmd": "heat", "pid": pid, "top_bytes": top});
    s.write_all(format!("{req}\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("parsing the reply")?;
    if v["ok"] != serde_json::Value::Bool(true) {
        bail!("tierd refused: {line}");
    }
    Ok(v["result"].clone())
}

/// Scores the heat picture `--after-ms` after each of `--moves` moves of a running
/// `hotset run --state FILE`, asking tierd directly (no process start in between,
/// which takes up to a second under TCG).
fn watch(args: &[String]) -> anyhow::Result<()> {
    let state: String = arg(args, "--state", String::new())?;
    let socket: String = arg(args, "--socket", "/run/tierd/tierd.sock".to_string())?;
    let pid: i64 = arg(args, "--pid", 0)?;
    let top: u64 = arg(args, "--top", 32 << 20)?;
    let after_ms: u64 = arg(args, "--after-ms", 1500)?;
    let moves: u32 = arg(args, "--moves", 5)?;
    let out_dir: String = arg(args, "--out-dir", String::new())?;
    let mut last = read_truth(&state)?.0;
    for _ in 0..moves {
        let waited = Instant::now();
        let (seq, t0, t1, t_cs) = loop {
            let t = read_truth(&state)?;
            if t.0 != last {
                break t;
            }
            anyhow::ensure!(
                waited.elapsed().as_secs() < 60,
                "hotset did not move in 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        last = seq;
        let due_cs = t_cs + after_ms / 10;
        let now = boottime_cs();
        if due_cs > now {
            std::thread::sleep(std::time::Duration::from_millis((due_cs - now) * 10));
        }
        let asked_ms = (boottime_cs() - t_cs) * 10;
        let heat = query_heat(&socket, pid, top)?;
        let answered_ms = (boottime_cs() - t_cs) * 10;
        if !out_dir.is_empty() {
            let path = format!("{out_dir}/heat-move{seq}.json");
            std::fs::write(&path, heat.to_string()).with_context(|| format!("writing {path}"))?;
        }
        let regions = heat["regions"].as_array().cloned().unwrap_or_default();
        let (p, r, reported) = score_regions(&regions, t0, t1);
        println!(
            "move seq={seq} precision={p:.3} recall={r:.3} reported_bytes={reported} \
             asked_after_ms={asked_ms} answered_after_ms={answered_ms}"
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("run") => run(&args[2..]),
        Some("score") => score(&args[2..]),
        Some("watch") => watch(&args[2..]),
        _ => bail!("usage: hotset run|score|watch ... (see the module doc)"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlap_of_ranges() {
        assert_eq!(super::overlap(0, 10, 5, 20), 5);
        assert_eq!(super::overlap(0, 10, 10, 20), 0);
        assert_eq!(super::overlap(3, 4, 0, 20), 1);
    }
}
