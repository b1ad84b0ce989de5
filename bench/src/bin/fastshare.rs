//! `fastshare`: where one process's memory range sits over time, for the plots of
//! docs/benchmarks.md. bench/peers/arm.sh starts it beside every benchmark arm, on the
//! range the workload's `ready` line names, when it releases the workload; benchreport
//! draws what it wrote.
//!
//! Every `--every-ms` it asks `move_pages(2)` (nodes = NULL: a query, nothing moves)
//! for the node of every `--stride`-th page of `--range` in process `--pid`, and
//! appends `T N0=BYTES N1=BYTES ...` to `--out`: T = seconds since it started, BYTES =
//! sampled pages on that node × stride × page size. It ends, with status 0, when the
//! process is gone. At the default stride of 64 a 1 GiB range is 4096 queried pages a
//! sample, the scale of the workloads' own placement samplers; reading
//! /proc/PID/numa_maps instead walks every page table entry: in a trial boot on a
//! loaded host a sample took ~0.4 s (a 1 s loop ran every 1.4 s), too heavy beside the
//! arms it watches.

use anyhow::{bail, ensure, Context};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tierd_bench::{numa, PAGE};

/// Samples the node of a process's pages over time.
#[derive(Parser, Debug)]
struct Args {
    /// The process to watch.
    #[arg(long)]
    pid: i32,
    /// Its address range, START-END in hex (`0x7f0000000000-0x7f0028000000`).
    #[arg(long, value_parser = parse_range)]
    range: (u64, u64),
    /// File to append the samples to.
    #[arg(long)]
    out: PathBuf,
    /// Sampling period, ms.
    #[arg(long, default_value_t = 1000)]
    every_ms: u64,
    /// Query every this many pages.
    #[arg(long, default_value_t = 64)]
    stride: usize,
}

fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let hex = |x: &str| {
        let x = x.trim();
        let digits = x.strip_prefix("0x").unwrap_or(x);
        u64::from_str_radix(digits, 16).with_context(|| format!("{x:?} is not a hex address"))
    };
    let Some((a, b)) = s.split_once('-') else {
        bail!("range {s:?} is not START-END");
    };
    let (a, b) = (hex(a)?, hex(b)?);
    ensure!(a < b, "range {s:?} is empty or reversed");
    Ok((a, b))
}

/// One output line from the statuses of a query: bytes per node, nodes ascending.
fn line(t_s: f64, status: &[i32], bytes_per_sample: u64) -> String {
    let mut per_node = std::collections::BTreeMap::<i32, u64>::new();
    for &n in status.iter().filter(|&&n| n >= 0) {
        *per_node.entry(n).or_default() += bytes_per_sample;
    }
    let mut out = format!("{t_s:.2}");
    for (n, b) in per_node {
        out.push_str(&format!(" N{n}={b}"));
    }
    out
}

/// Samples until the process is gone (or `max` samples), writing one line each;
/// returns the number of samples.
fn sample(a: &Args, out: &mut impl Write, max: Option<u32>) -> anyhow::Result<u32> {
    let (start, end) = a.range;
    let step = (a.stride * PAGE) as u64;
    let pages: Vec<u64> = (start..end).step_by(step as usize).collect();
    let mut status = vec![0i32; pages.len()];
    writeln!(
        out,
        "# t_s N<node>=bytes (pid {}, {:#x}-{:#x}, every {}th page, every {} ms)",
        a.pid, start, end, a.stride, a.every_ms
    )?;
    let t0 = Instant::now();
    let period = Duration::from_millis(a.every_ms);
    let mut n = 0;
    while max.is_none_or(|m| n < m) {
        // An error is ESRCH or EINVAL: the process exited, or its memory went first.
        if numa::query_pid(a.pid, &pages, &mut status).is_err() || gone(a.pid) {
            break;
        }
        writeln!(out, "{}", line(t0.elapsed().as_secs_f64(), &status, step))?;
        n += 1;
        if let Some(wait) = (period * n).checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(n)
}

/// True when `pid` no longer exists or is a zombie.
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    ensure!(
        a.stride > 0 && a.every_ms > 0,
        "--stride and --every-ms must be positive"
    );
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .with_context(|| format!("opening {}", a.out.display()))?;
    sample(&a, &mut out, None).with_context(|| format!("writing {}", a.out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("0x1000-0x3000").unwrap(), (0x1000, 0x3000));
        assert_eq!(parse_range("7f00-7f80").unwrap(), (0x7f00, 0x7f80));
        assert!(parse_range("0x3000-0x1000").is_err());
        assert!(parse_range("0x1000").is_err());
        assert!(parse_range("zz-0x10").is_err());
    }

    #[test]
    fn lines_count_bytes_per_node() {
        assert_eq!(
            line(1.234, &[0, 1, 1, -2, -14], 4096),
            "1.23 N0=4096 N1=8192"
        );
        assert_eq!(line(0.0, &[-2, -2], 4096), "0.00");
    }

    fn args(pid: u32, buf: &[u8]) -> Args {
        let s = buf.as_ptr() as u64 & !(PAGE as u64 - 1);
        Args {
            pid: pid as i32,
            range: (s, buf.as_ptr() as u64 + buf.len() as u64),
            out: PathBuf::new(),
            every_ms: 10,
            stride: 4,
        }
    }

    #[test]
    fn samples_a_live_process() {
        let buf = vec![1u8; 4 << 20];
        let mut out = Vec::new();
        let n = sample(&args(std::process::id(), &buf), &mut out, Some(3)).unwrap();
        assert_eq!(n, 3);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("# t_s"), "{text}");
        // Every 4th page of 4 MiB, all resident on some node: 4 MiB in all.
        for l in &lines[1..] {
            let bytes: u64 = l
                .split_whitespace()
                .skip(1)
                .map(|w| w.split_once('=').unwrap().1.parse::<u64>().unwrap())
                .sum();
            assert!(
                (4 << 20..=(4 << 20) + 4 * PAGE as u64).contains(&bytes),
                "{l}"
            );
        }
        drop(buf);
    }

    #[test]
    fn stops_when_the_process_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let buf = vec![1u8; 1 << 20];
        let t = Instant::now();
        let mut out = Vec::new();
        // The child's address space does not hold our buffer: nothing resident there,
        // empty sample lines, until it exits (a zombie until reaped below).
        let n = sample(&args(child.id(), &buf), &mut out, Some(1000)).unwrap();
        assert!((5..1000).contains(&n), "{n}");
        assert!(t.elapsed() < Duration::from_secs(5));
        child.wait().unwrap();
    }
}
