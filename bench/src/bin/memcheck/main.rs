//! `memcheck`: a workload that checks its memory continuously while others migrate it
//! (issue 18, "data integrity under migration"; tests/vm/scenarios/reliability/40-*).
//!
//! ```text
//! memcheck [--mb 256] [--huge | --nohuge] [--shared] [--pin MB] [--hot-mb 32]
//!          [--move-s 2] [--full-s 5] [--writes-per-pass 64] [--pause-ms 0]
//!          [--seconds S] [--tag T]
//! ```
//!
//! Maps `--mb` MiB (anonymous private memory, or with `--shared` a `MAP_SHARED`
//! mapping of a memfd as a shared pool is mapped), fills it with a pattern that encodes
//! each word's index and its 4 KiB block's generation (`pattern.rs`), prints
//! `range=START-END` (and `pinned=START-END`), then `ready`, and until `--seconds` pass
//! or SIGTERM arrives, in a loop:
//! (a) reads a hot window of `--hot-mb` MiB (a new random place every `--move-s` s) and
//!     verifies every word it reads;
//! (b) rewrites `--writes-per-pass` random 4 KiB blocks (half in the window) with a new
//!     generation, so writes race with whatever migrates the pages;
//! (c) every `--full-s` s verifies all of the memory and prints a `progress` line;
//! then sleeps `--pause-ms`.
//!
//! `--pin MB` registers the first MB MiB as an io_uring fixed buffer (a long-term pin,
//! `uring.rs`); rewrites of blocks there are done by the kernel through the pin
//! (`READ_FIXED`), and the pages' nodes are compared at the start and the end
//! (`pinned_pages_moved`). If io_uring cannot pin here, memcheck prints `pin unavailable:
//! REASON` and exits 77 before doing anything else.
//!
//! At the end: a last full verification, the first mismatches in detail (`MISMATCH ...`),
//! and `RESULT [<tag>.]mismatches=N`, `verified_words`, `rewrites`, `full_passes` (and
//! `pinned_rewrites`, `pinned_pages_moved` with `--pin`). Exit status 1 on any mismatch.

mod pattern;
mod uring;

use anyhow::Context;
use clap::Parser;
use memmap2::{Advice, MmapMut, MmapOptions};
use pattern::{Mismatch, BLOCK, BLOCK_WORDS};
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tierd_bench::numa;
use tierd_bench::report::Reporter;

/// Mismatches printed in detail (all are counted).
const SHOWN: usize = 20;

#[derive(Parser, Debug)]
#[command(about = "Checks its own memory continuously while it is migrated")]
struct Args {
    /// MiB of memory to fill and check.
    #[arg(long, default_value_t = 256)]
    mb: usize,
    /// Advise transparent huge pages (MADV_HUGEPAGE).
    #[arg(long, conflicts_with = "nohuge")]
    huge: bool,
    /// Forbid transparent huge pages (MADV_NOHUGEPAGE).
    #[arg(long)]
    nohuge: bool,
    /// A MAP_SHARED mapping of a memfd instead of private anonymous memory.
    #[arg(long)]
    shared: bool,
    /// MiB at the start of the memory to pin as an io_uring fixed buffer.
    #[arg(long = "pin", default_value_t = 0)]
    pin_mb: usize,
    /// MiB of the hot window verified on every pass.
    #[arg(long, default_value_t = 32)]
    hot_mb: usize,
    /// Seconds before the hot window jumps to a new random place.
    #[arg(long, default_value_t = 2.0)]
    move_s: f64,
    /// Seconds between verifications of all the memory.
    #[arg(long, default_value_t = 5.0)]
    full_s: f64,
    /// 4 KiB blocks rewritten with a new generation per pass.
    #[arg(long, default_value_t = 64)]
    writes_per_pass: usize,
    /// Milliseconds to sleep after each pass (leaves CPU to the movers on a small VM).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    /// Stop after this many seconds (0: at SIGTERM).
    #[arg(long, default_value_t = 0.0)]
    seconds: f64,
    /// Prefix of every RESULT key (`thp` prints `RESULT thp.mismatches=..`).
    #[arg(long, default_value = "")]
    tag: String,
    /// Seed of the random window places and rewrites.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// xorshift64*: reproducible with --seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// The checked memory: a private anonymous mapping or a shared memfd mapping.
struct Memory {
    map: MmapMut,
    _file: Option<File>,
}

impl Memory {
    fn new(len: usize, shared: bool) -> anyhow::Result<Memory> {
        if !shared {
            let map = MmapMut::map_anon(len).with_context(|| format!("mmap {len} bytes"))?;
            return Ok(Memory { map, _file: None });
        }
        // SAFETY: memfd_create with a NUL-terminated name; the fd is checked below.
        let fd = unsafe { libc::memfd_create(c"memcheck".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("memfd_create");
        }
        // SAFETY: a fresh fd from memfd_create, owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64).context("sizing the memfd")?;
        // SAFETY: the memfd is ours alone (no other process has it), so nothing else
        // changes or truncates it behind the mapping.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .context("mmap MAP_SHARED of the memfd")?;
        Ok(Memory {
            map,
            _file: Some(file),
        })
    }

    fn base(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    /// All the memory as words, borrowed afresh for each step: the kernel writes the
    /// pinned part behind the process's back (READ_FIXED), so no borrow spans a write.
    fn words(&self) -> &[u64] {
        // SAFETY: the mapping is page-aligned, its length a multiple of BLOCK, every bit
        // pattern is a valid u64, and it lives as long as self.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const u64, self.map.len() / 8) }
    }

    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in words(); &mut self makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr() as *mut u64, self.map.len() / 8)
        }
    }
}

/// Counters of one run.
#[derive(Default)]
struct Tally {
    verified_words: u64,
    mismatches: u64,
    rewrites: u64,
    pinned_rewrites: u64,
    full_passes: u64,
    shown: Vec<Mismatch>,
}

impl Tally {
    fn check(&mut self, mem: &Memory, first: usize, gens: &[u32]) {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let mut found = Vec::new();
        self.verified_words += pattern::verify(mem.words(), first, gens, &mut found);
        self.mismatches += found.len() as u64;
        for m in found {
            if self.shown.len() == SHOWN {
                break;
            }
            // Re-read: a mismatch that persists is lost data, one that does not was a
            // torn read (which this single-threaded workload cannot cause itself).
            let again = mem.words()[m.index as usize];
            let addr = mem.base() + m.index * 8;
            let mut node = [0i32];
            let page = [addr / 4096 * 4096];
            let _ = numa::query(&page, &mut node);
            let (eg, ei) = pattern::decode(m.expected);
            let (fg, fi) = pattern::decode(m.found);
            println!(
                "MISMATCH addr={addr:#x} word={} expected=gen:{eg},index:{ei} found={:#x} (gen:{fg},index:{fi}) reread={:#x} node={}",
                m.index, m.found, again, node[0]
            );
            self.shown.push(m);
        }
    }
}

/// Node of every page of `[base, base + len)`, as move_pages(2) reports it.
fn nodes_of(base: u64, len: usize) -> anyhow::Result<Vec<i32>> {
    let pages: Vec<u64> = (0..len / 4096).map(|i| base + (i * 4096) as u64).collect();
    let mut st = vec![0i32; pages.len()];
    numa::query(&pages, &mut st).context("move_pages query of the pinned pages")?;
    Ok(st)
}

fn rewrite(
    mem: &mut Memory,
    pin: &mut Option<uring::PinnedBuffer>,
    gens: &mut [u32],
    b: usize,
    t: &mut Tally,
    staging: &mut [u64],
) -> anyhow::Result<()> {
    gens[b] += 1;
    let addr = mem.base() + (b * BLOCK) as u64;
    match pin.as_mut().filter(|p| p.contains(addr, BLOCK)) {
        Some(p) => {
            pattern::write_block(staging, b, gens[b]);
            // SAFETY: viewing BLOCK_WORDS u64 as BLOCK bytes of the same buffer.
            let bytes = unsafe { std::slice::from_raw_parts(staging.as_ptr() as *const u8, BLOCK) };
            p.write(addr, bytes)?;
            t.pinned_rewrites += 1;
        }
        None => {
            let w = &mut mem.words_mut()[b * BLOCK_WORDS..(b + 1) * BLOCK_WORDS];
            pattern::write_block(w, b, gens[b]);
        }
    }
    t.rewrites += 1;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.mb > 0 && a.hot_mb > 0, "--mb and --hot-mb must be > 0");
    anyhow::ensure!(a.pin_mb <= a.mb, "--pin must not exceed --mb");
    let len = a.mb << 20;
    let nblocks = len / BLOCK;
    let hot_blocks = ((a.hot_mb << 20) / BLOCK).min(nblocks);
    let pin_blocks = (a.pin_mb << 20) / BLOCK;

    let mut mem = Memory::new(len, a.shared)?;
    if a.huge {
        mem.map
            .advise(Advice::HugePage)
            .context("madvise(MADV_HUGEPAGE)")?;
    } else if a.nohuge {
        mem.map
            .advise(Advice::NoHugePage)
            .context("madvise(MADV_NOHUGEPAGE)")?;
    }
    let mut gens = vec![1u32; nblocks];
    for (b, w) in mem.words_mut().chunks_mut(BLOCK_WORDS).enumerate() {
        pattern::write_block(w, b, 1);
    }
    let mut pin = None;
    if pin_blocks > 0 {
        match uring::PinnedBuffer::register(mem.map.as_mut_ptr(), pin_blocks * BLOCK) {
            Ok(p) => pin = Some(p),
            Err(e) => {
                println!("pin unavailable: {e:#}");
                std::process::exit(77);
            }
        }
    }
    let pin_nodes = if pin.is_some() {
        nodes_of(mem.base(), pin_blocks * BLOCK)?
    } else {
        Vec::new()
    };
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    println!("range={:#x}-{:#x}", mem.base(), mem.base() + len as u64);
    if pin.is_some() {
        println!(
            "pinned={:#x}-{:#x}",
            mem.base(),
            mem.base() + (pin_blocks * BLOCK) as u64
        );
    }
    println!("ready");

    let mut rng = Rng(a.seed.max(1));
    let mut t = Tally::default();
    let mut staging = vec![0u64; BLOCK_WORDS];
    let started = Instant::now();
    let deadline = (a.seconds > 0.0).then(|| started + Duration::from_secs_f64(a.seconds));
    let move_every = Duration::from_secs_f64(a.move_s.max(0.01));
    let full_every = Duration::from_secs_f64(a.full_s.max(0.01));
    let (mut next_move, mut next_full) = (started, started + full_every);
    let mut window = 0;
    while !STOP.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        let now = Instant::now();
        if now >= next_move {
            window = rng.below(nblocks - hot_blocks + 1);
            next_move = now + move_every;
        }
        t.check(&mem, window, &gens[window..window + hot_blocks]);
        for i in 0..a.writes_per_pass {
            let b = if i % 2 == 0 {
                window + rng.below(hot_blocks)
            } else {
                rng.below(nblocks)
            };
            rewrite(&mut mem, &mut pin, &mut gens, b, &mut t, &mut staging)?;
        }
        if pin_blocks > 0 {
            for _ in 0..a.writes_per_pass.div_ceil(4) {
                let b = rng.below(pin_blocks);
                rewrite(&mut mem, &mut pin, &mut gens, b, &mut t, &mut staging)?;
            }
        }
        if Instant::now() >= next_full {
            t.check(&mem, 0, &gens);
            t.full_passes += 1;
            next_full = Instant::now() + full_every;
            println!(
                "progress t_s={:.1} verified_words={} mismatches={} rewrites={} pinned_rewrites={} full_passes={}",
                started.elapsed().as_secs_f64(),
                t.verified_words,
                t.mismatches,
                t.rewrites,
                t.pinned_rewrites,
                t.full_passes
            );
        }
        if a.pause_ms > 0 {
            std::thread::sleep(Duration::from_millis(a.pause_ms));
        }
    }
    t.check(&mem, 0, &gens);
    t.full_passes += 1;

    let r = Reporter::new(&a.tag);
    r.result("mismatches", t.mismatches);
    r.result("verified_words", t.verified_words);
    r.result("rewrites", t.rewrites);
    r.result("full_passes", t.full_passes);
    r.result("seconds", format!("{:.1}", started.elapsed().as_secs_f64()));
    if pin.is_some() {
        let now = nodes_of(mem.base(), pin_blocks * BLOCK)?;
        let moved = pin_nodes.iter().zip(&now).filter(|(a, b)| a != b).count();
        let on = |n: i32| now.iter().filter(|&&s| s == n).count();
        println!("pinned pages now: node0 {} node1 {}", on(0), on(1));
        r.result("pinned_rewrites", t.pinned_rewrites);
        r.result("pinned_pages_moved", moved);
    }
    // The pin goes before the memory it pins.
    drop(pin);
    if t.mismatches > 0 {
        eprintln!(
            "memcheck: {} words did not hold what was written",
            t.mismatches
        );
        std::process::exit(1);
    }
    Ok(())
}
