//! `migbench`: page-migration throughput as a ratio to `memcpy` between the same two
//! nodes, measured side by side in one run (issue 3's figure).
//!
//! Places `--mb` MiB on `--fast` (node0) and a same-sized buffer on `--slow` (node1),
//! then for each of `--reps` rounds: memcpy fast→slow and slow→fast, and move the fast
//! buffer's pages to the slow node and back with batched `move_pages(2)`
//! (`--batch` pages per call, tierd's default 1024) — or, with `--tierctl`, by asking
//! a running tierd (`tierctl --json migrate --pid SELF --to N --range A-B`). Checks the
//! pages' node after each move and the data's checksum at the end. Prints
//! `RESULT memcpy_gbps`, `migrate_gbps`, `ratio` (migrate / memcpy; target >= 0.5),
//! `moved_fraction`, `checksum_ok`; also `rep_movsq_copy_gbps` (fast→slow with the
//! kernel's copy_page instruction) and `ratio_to_rep_movsq`, which tell an emulator's
//! slow string copy apart from migration overhead.

use anyhow::{ensure, Context};
use clap::Parser;
use std::process::Command;
use std::time::Instant;
use tierd_bench::{mem, numa, report::Reporter, stats, sysfs, HUGE, PAGE};

/// Migration throughput vs memcpy between two NUMA nodes.
#[derive(Parser, Debug)]
struct Args {
    /// Buffer size, MiB.
    #[arg(long, default_value_t = 256)]
    mb: usize,
    /// The fast node.
    #[arg(long, default_value_t = 0)]
    fast: u32,
    /// The slow node.
    #[arg(long, default_value_t = 1)]
    slow: u32,
    /// Pages per move_pages(2) call.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Rounds; the medians are reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Back the buffers with transparent huge pages and move one address per 2 MiB
    /// (each huge page moves as one unit, as tierd's THP-aware engine does); default
    /// 4 KiB pages only (MADV_NOHUGEPAGE).
    #[arg(long)]
    thp: bool,
    /// Move through a running tierd with this tierctl binary instead of move_pages.
    #[arg(long)]
    tierctl: Option<String>,
    /// Prefix of the RESULT keys.
    #[arg(long, default_value = "")]
    tag: String,
}

/// Copies `src` to `dst` with `rep movsq`, the instruction the kernel's `copy_page`
/// uses on x86-64 (X86_FEATURE_REP_GOOD): a reference for how fast the emulator runs
/// the kernel's copy loop, next to glibc's vectorised memcpy.
#[cfg(target_arch = "x86_64")]
fn copy_rep_movsq(dst: &mut [u64], src: &[u64]) {
    assert_eq!(dst.len(), src.len(), "copy_rep_movsq: lengths");
    // SAFETY: rep movsq copies rcx = src.len() u64 words from rsi = src to rdi = dst;
    // both slices hold that many words and do not overlap (distinct &/&mut borrows);
    // the direction flag is clear per the ABI; rcx/rsi/rdi are declared clobbered.
    unsafe {
        std::arch::asm!(
            "rep movsq",
            inout("rcx") src.len() => _,
            inout("rsi") src.as_ptr() => _,
            inout("rdi") dst.as_mut_ptr() => _,
            options(nostack, preserves_flags)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn copy_rep_movsq(dst: &mut [u64], src: &[u64]) {
    dst.copy_from_slice(src);
}

fn gbps(bytes: usize, s: f64) -> f64 {
    bytes as f64 / s.max(1e-9) / 1e9
}

/// This process's AnonHugePages from /proc/self/smaps_rollup, kB (0 if unknown).
fn anon_huge_kb() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Moves the region to `node` (one address per unit in `moves`); returns (seconds,
/// base pages of `all` found on node after).
fn move_region(
    a: &Args,
    r: &mem::Region,
    moves: &[u64],
    all: &[u64],
    node: u32,
) -> anyhow::Result<(f64, usize)> {
    let mut status = vec![0i32; moves.len()];
    let secs = match &a.tierctl {
        None => {
            let t = Instant::now();
            numa::move_to(moves, node, a.batch, &mut status).context("move_pages")?;
            t.elapsed().as_secs_f64()
        }
        Some(ctl) => {
            let range = format!("{:#x}-{:#x}", r.base(), r.base() + r.len() as u64);
            let pid = std::process::id().to_string();
            let out = Command::new(ctl)
                .args([
                    "--json",
                    "migrate",
                    "--pid",
                    &pid,
                    "--to",
                    &node.to_string(),
                    "--range",
                    &range,
                ])
                .output()
                .with_context(|| format!("running {ctl}"))?;
            ensure!(
                out.status.success(),
                "tierctl migrate failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).context("tierctl's JSON reply")?;
            v["seconds"]
                .as_f64()
                .context("no seconds in tierctl's reply")?
        }
    };
    let mut status = vec![0i32; all.len()];
    numa::query(all, &mut status).context("move_pages query")?;
    Ok((secs, numa::count_on(&status, node).0))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rep = Reporter::new(&a.tag);
    let len = a.mb << 20;
    let free = sysfs::node_meminfo(a.fast, "MemFree")?;
    ensure!(
        free as usize > len + (32 << 20),
        "node{} has {} MiB free, too little for {} MiB plus a 32 MiB margin (try --mb)",
        a.fast,
        free >> 20,
        a.mb
    );
    let mut fast = mem::Region::place(len, Some(a.fast), mem::Thp::from_flag(a.thp))
        .context("buffer on the fast node")?;
    let mut slow = mem::Region::place(len, Some(a.slow), mem::Thp::from_flag(a.thp))
        .context("buffer on the slow node")?;
    mem::fill(fast.words_mut(), 0x715e);
    let sum0 = mem::checksum(fast.words());
    let all_pages = fast.page_addrs(0, len);
    let unit = if a.thp { HUGE / PAGE } else { 1 };
    let pages: Vec<u64> = all_pages.iter().step_by(unit).copied().collect();
    let mut st = vec![0i32; all_pages.len()];
    numa::query(&all_pages, &mut st)?;
    let (on_fast, _, _) = numa::count_on(&st, a.fast);
    println!(
        "migbench: {} MiB, {} pages ({} move addresses), {on_fast} on node{} at start, batch {}, via {}, AnonHugePages {} kB",
        a.mb,
        all_pages.len(),
        pages.len(),
        a.fast,
        a.batch,
        a.tierctl.as_deref().unwrap_or("move_pages"),
        anon_huge_kb()
    );
    ensure!(
        on_fast * 100 >= all_pages.len() * 99,
        "only {on_fast} of {} pages on node{} at start",
        all_pages.len(),
        a.fast
    );

    let (mut cp, mut mv, mut rep_cp) = (Vec::new(), Vec::new(), Vec::new());
    let mut moved_min = 1.0f64;
    for round in 0..a.reps {
        let t = Instant::now();
        slow.bytes_mut().copy_from_slice(fast.bytes());
        let to_slow = gbps(len, t.elapsed().as_secs_f64());
        let t = Instant::now();
        fast.bytes_mut().copy_from_slice(slow.bytes());
        let to_fast = gbps(len, t.elapsed().as_secs_f64());
        let t = Instant::now();
        copy_rep_movsq(slow.words_mut(), fast.words());
        rep_cp.push(gbps(len, t.elapsed().as_secs_f64()));
        let (s1, n1) = move_region(&a, &fast, &pages, &all_pages, a.slow)?;
        let (s2, n2) = move_region(&a, &fast, &pages, &all_pages, a.fast)?;
        let (m1, m2) = (gbps(len, s1), gbps(len, s2));
        let frac = n1.min(n2) as f64 / all_pages.len() as f64;
        moved_min = moved_min.min(frac);
        println!(
            "round {round}: memcpy {to_slow:.3} GB/s to slow, {to_fast:.3} to fast; \
             migrate {m1:.3} GB/s to slow ({n1} pages there), {m2:.3} to fast ({n2})"
        );
        cp.extend([to_slow, to_fast]);
        mv.extend([m1, m2]);
    }
    let sum1 = mem::checksum(fast.words());
    let (c, m) = (stats::median(&cp), stats::median(&mv));
    rep.result("bytes", len);
    rep.result("page_bytes", PAGE);
    rep.result("memcpy_gbps", format!("{c:.3}"));
    rep.result("migrate_gbps", format!("{m:.3}"));
    let r = stats::median(&rep_cp);
    rep.result("rep_movsq_copy_gbps", format!("{r:.3}"));
    rep.ratio("ratio_to_rep_movsq", m / r.max(1e-9));
    rep.ratio("ratio", m / c.max(1e-9));
    rep.ratio("moved_fraction", moved_min);
    rep.result("checksum_ok", u8::from(sum0 == sum1));
    ensure!(sum0 == sum1, "checksum changed: {sum0:x} -> {sum1:x}");
    Ok(())
}
