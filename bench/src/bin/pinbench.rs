//! pinbench: pinned memory (io_uring fixed buffers standing in for `cudaHostRegister`)
//! against a running tierd in the two-tier VM (`tests/vm/scenarios/protocol`).
//!
//! ```text
//! pinbench [--socket PATH] [--tag NAME] [--phases movepages,relocate] [--mib N]
//!          [--fast-slots N] [--slow-slots N] [--blocks N] [--hot N] [--seconds S]
//! ```
//!
//! 1. movepages: `--mib` MiB placed on the fast node and pinned with
//!    `IORING_REGISTER_BUFFERS`, then `move_pages` of every page to the slow node by the
//!    bench itself; the same for an unpinned buffer. Prints the pages each moved.
//! 2. relocate: one region of `--fast-slots` 64 KiB slots bound to the fast node then
//!    `--slow-slots` on the slow node, pinned with io_uring and registered with tierd
//!    as pinned (REGISTER_PINNED). `--blocks` logical blocks start in slow slots. Hot set
//!    A (the first `--hot` blocks) is hinted ACCESS every 10 ms while the bench serves
//!    tierd's relocation requests (copy, or re-point to a shadow; MOVED / DECLINED)
//!    until A is in fast slots; then hot set B (the next `--hot` blocks), which makes
//!    tierd demote A (re-points to A's shadows) to promote B. Prints the hot fraction
//!    on fast slots per phase, the copies and re-points, that every block's contents
//!    survived, that no page of the region changed node, and the kernel's
//!    `pgmigrate_*` deltas over the run (any attempt to move a pinned page fails and
//!    counts in `pgmigrate_fail`).
//!
//! Every figure is a `RESULT key=value` line; exits 1 if a phase could not run.

use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tierd_bench::mem::{Region, Thp};
use tierd_bench::pinpool::{Serve, SlotPool};
use tierd_bench::report::Reporter;
use tierd_bench::uring::PinnedBuffers;
use tierd_bench::{numa, sysfs, PAGE};
use tierd_client::{Client, HintKind};

const BLOCK: usize = 64 << 10;
const FAST: u32 = 0;
const SLOW: u32 = 1;

struct Args {
    socket: Option<String>,
    tag: String,
    phases: String,
    mib: usize,
    fast_slots: u32,
    slow_slots: u32,
    blocks: usize,
    hot: usize,
    seconds: f64,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        socket: None,
        tag: "pinned".into(),
        phases: "movepages,relocate".into(),
        mib: 16,
        fast_slots: 16,
        slow_slots: 48,
        blocks: 40,
        hot: 12,
        seconds: 30.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().with_context(|| format!("{k}: {v}"));
        match k.as_str() {
            "--socket" => a.socket = Some(v),
            "--tag" => a.tag = v,
            "--phases" => a.phases = v,
            "--mib" => a.mib = num(&v)? as usize,
            "--fast-slots" => a.fast_slots = num(&v)? as u32,
            "--slow-slots" => a.slow_slots = num(&v)? as u32,
            "--blocks" => a.blocks = num(&v)? as usize,
            "--hot" => a.hot = num(&v)? as usize,
            "--seconds" => a.seconds = v.parse().with_context(|| format!("{k}: {v}"))?,
            _ => bail!("unknown option {k}"),
        }
    }
    if a.blocks > (a.fast_slots + a.slow_slots) as usize || 2 * a.hot > a.blocks {
        bail!("--blocks must fit the slots and hold two hot sets");
    }
    Ok(a)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pinbench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let a = parse()?;
    let rep = Reporter::new(&a.tag);
    for phase in a.phases.split(',') {
        match phase {
            "movepages" => movepages(&a, &rep)?,
            "relocate" => relocate(&a, &rep)?,
            other => bail!("unknown phase {other}"),
        }
    }
    Ok(())
}

/// Pages of `r` the bench's own `move_pages` gets to the slow node.
fn moved_by_kernel(r: &Region) -> anyhow::Result<usize> {
    let pages = r.page_addrs(0, r.len());
    let mut status = vec![0i32; pages.len()];
    numa::move_to(&pages, SLOW, 512, &mut status).context("move_pages")
}

fn movepages(a: &Args, rep: &Reporter) -> anyhow::Result<()> {
    let len = a.mib << 20;
    let pinned = Region::place(len, Some(FAST), Thp::NoHuge)?;
    let _pin = PinnedBuffers::pin(pinned.base(), pinned.len()).context("io_uring pin")?;
    let plain = Region::place(len, Some(FAST), Thp::NoHuge)?;
    rep.result("uring_pages", len / PAGE);
    rep.result("uring_moved_pages", moved_by_kernel(&pinned)?);
    rep.result("plain_moved_pages", moved_by_kernel(&plain)?);
    Ok(())
}

/// Blocks of `set` whose slot is on the fast node.
fn on_fast(pool: &SlotPool, set: std::ops::Range<usize>) -> usize {
    set.filter(|&b| {
        pool.slot_of(b)
            .is_some_and(|s| pool.node_of(s) == FAST as i32)
    })
    .count()
}

struct Pinned<'a> {
    c: &'a Client,
    region: u32,
    mem: &'a mut Region,
    pool: SlotPool,
}

impl Pinned<'_> {
    fn slot_bytes(&mut self, s: u64) -> &mut [u8] {
        let off = s as usize * BLOCK;
        &mut self.mem.bytes_mut()[off..off + BLOCK]
    }

    /// Serves every outstanding relocation request. Returns the requests seen.
    fn serve(&mut self) -> anyhow::Result<usize> {
        let r = self.c.region(self.region)?;
        let mut reqs = Vec::new();
        r.relocations(&mut reqs);
        for &(slot, node) in &reqs {
            match self.pool.serve(slot, node) {
                Serve::Copy { from, to } => {
                    let (f, t) = (from as usize * BLOCK, to as usize * BLOCK);
                    self.mem.bytes_mut().copy_within(f..f + BLOCK, t);
                    self.c.moved(self.region, from, to, 1)?;
                }
                Serve::Repoint { from, to } => {
                    self.c.moved(self.region, from, to, 1)?;
                }
                Serve::Decline => {
                    self.c.declined(self.region, &[slot])?;
                }
            }
        }
        Ok(reqs.len())
    }

    /// Hints ACCESS on the slots of `set` and serves requests every 10 ms until the
    /// whole set is on fast slots or `limit` passes. Returns the time it took.
    fn heat_until_fast(
        &mut self,
        set: std::ops::Range<usize>,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            let slots: Vec<u64> = set.clone().filter_map(|b| self.pool.slot_of(b)).collect();
            self.c.hint(self.region, HintKind::Access, &slots)?;
            self.serve()?;
            if on_fast(&self.pool, set.clone()) == set.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(t0.elapsed())
    }
}

fn relocate(a: &Args, rep: &Reporter) -> anyhow::Result<()> {
    let (nf, ns) = (a.fast_slots as usize, a.slow_slots as usize);
    // Lay the slots out per node: the first nf on the fast node, the rest on the slow one.
    let mut mem = Region::place_runs(&[(FAST, nf * BLOCK), (SLOW, ns * BLOCK)], Thp::NoHuge)?;
    let base = mem.base();
    let pages = mem.page_addrs(0, mem.len());
    let mut before = vec![0i32; pages.len()];
    numa::query(&pages, &mut before)?;
    let expect = |i: usize| if i * PAGE < nf * BLOCK { FAST } else { SLOW } as i32;
    let laid_out = (0..pages.len()).filter(|&i| before[i] == expect(i)).count();
    rep.result("layout_pages_ok", format!("{laid_out}/{}", pages.len()));
    let _pin = PinnedBuffers::pin(base, mem.len()).context("io_uring pin")?;

    let vm0 = sysfs::vmstat()?;
    let c = Client::connect(a.socket.as_deref().map(std::path::Path::new))
        .context("connecting to tierd")?;
    let layout = [(FAST as i32, a.fast_slots), (SLOW as i32, a.slow_slots)];
    let region = c
        .register_pinned(base, mem.len() as u64, BLOCK as u64, &layout)
        .context("REGISTER_PINNED")?;
    let mut p = Pinned {
        c: &c,
        region,
        pool: SlotPool::new(&layout, a.blocks),
        mem: &mut mem,
    };
    // Every block starts on the slow node, filled with its own number.
    for b in 0..a.blocks {
        let s = p
            .pool
            .allocate(b, SLOW as i32)
            .context("no slow slot for a new block")?;
        p.slot_bytes(s).fill(b as u8 + 1);
        c.hint(region, HintKind::Written, &[s])?;
    }
    let limit = Duration::from_secs_f64(a.seconds);
    let set_a = 0..a.hot;
    let set_b = a.hot..2 * a.hot;
    let ta = p.heat_until_fast(set_a.clone(), limit)?;
    rep.result(
        "hot_a_fast",
        format!("{}/{}", on_fast(&p.pool, set_a.clone()), a.hot),
    );
    rep.result("hot_a_ms", ta.as_millis());
    let tb = p.heat_until_fast(set_b.clone(), limit)?;
    rep.result(
        "hot_b_fast",
        format!("{}/{}", on_fast(&p.pool, set_b.clone()), a.hot),
    );
    rep.result("hot_b_ms", tb.as_millis());
    // Let the last acknowledgements reach tierd before reading its counters.
    std::thread::sleep(Duration::from_millis(300));
    let intact = (0..a.blocks)
        .filter(|&b| {
            let s = p.pool.slot_of(b).expect("every block has a slot");
            p.slot_bytes(s).iter().all(|&x| x == b as u8 + 1)
        })
        .count();
    rep.result("blocks_intact", format!("{intact}/{}", a.blocks));
    rep.result("copies", p.pool.copies);
    rep.result("copied_bytes", p.pool.copies * BLOCK as u64);
    rep.result("repoints", p.pool.repoints);
    rep.result("avoided_bytes", p.pool.repoints * BLOCK as u64);
    rep.result("declines", p.pool.declines);
    let mut after = vec![0i32; pages.len()];
    numa::query(&pages, &mut after)?;
    let changed = (0..pages.len()).filter(|&i| after[i] != before[i]).count();
    rep.result("pages_changed_node", changed);
    let vm1 = sysfs::vmstat()?;
    for k in ["pgmigrate_success", "pgmigrate_fail"] {
        rep.result(k, sysfs::delta(&vm0, &vm1, k));
    }
    c.unregister(region)?;
    Ok(())
}
