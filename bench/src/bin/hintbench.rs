//! hintbench: hint ingest rate from one client and PREFETCH → fast-placement latency,
//! against a running tierd (meant for the two-tier VM: `tests/vm/scenarios/protocol`).
//! Uses the `tierd-client` crate (the same code as the C library).
//!
//! ```text
//! hintbench [--socket PATH] [--tag NAME] [--phases ingest,prefetch] [--seconds S]
//!           [--batch BLOCKS] [--samples N] [--deadline-ms MS]
//! ```
//!
//! 1. Ingest: registers 4096 blocks of 16 KiB and sends ACCESS hints of `--batch`
//!    consecutive blocks per ring entry for `--seconds`, then waits for tierd to drain
//!    the ring. Prints blocks/s the client published, blocks/s tierd applied (first
//!    publish to last applied), and the blocks dropped on a full ring.
//! 2. Prefetch: registers `--samples` blocks of 64 KiB (small pages) bound to the
//!    slowest node and hinted COLD, then PREFETCHes them one at a time and polls the
//!    placement table (every 200 us) until the block reads back as the fast node. Prints p50 / p99 / max latency and the misses (not
//!    fast within one second).
//!
//! 3. Rawmove (only with `--phases rawmove`): the kernel's floor for phase 2, the same
//!    moves by the bench itself, one `move_pages(2)` per block, no tierd involved.
//! 4. Pool, security (only when named in `--phases`): a shared pool lands on the slow
//!    node and two connections map the same memory; registering memory mapped only in
//!    another process is refused with EFAULT.
//!
//! Every figure is a `RESULT key=value` line; exits 1 if a phase could not run.

use std::time::{Duration, Instant};
use tierd_client::{Client, HintKind};

struct Args {
    socket: Option<String>,
    /// Prefix of every RESULT key (e.g. the tierd configuration under test).
    tag: String,
    phases: String,
    seconds: f64,
    batch: u32,
    samples: u64,
    deadline_ms: u32,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        socket: None,
        tag: String::new(),
        phases: "ingest,prefetch".into(),
        seconds: 2.0,
        batch: 64,
        samples: 200,
        deadline_ms: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--socket" => a.socket = Some(v()?),
            "--tag" => a.tag = format!("{}.", v()?),
            "--phases" => a.phases = v()?,
            "--seconds" => a.seconds = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--batch" => a.batch = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--samples" => a.samples = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            "--deadline-ms" => a.deadline_ms = v()?.parse().map_err(|e| format!("{k}: {e}"))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.batch == 0 || a.batch > 4096 || a.samples == 0 {
        return Err("--batch must be 1..=4096 and --samples > 0".into());
    }
    Ok(a)
}

/// Page-aligned anonymous memory, touched.
fn alloc(bytes: usize) -> Result<&'static mut [u8], String> {
    // SAFETY: a fresh private anonymous mapping; leaked on purpose (lives until exit).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap {bytes}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `p` is valid for `bytes` bytes and nothing else refers to it.
    Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, bytes) })
}

fn ingest(c: &Client, a: &Args) -> Result<(), String> {
    const BLOCK: u64 = 16 << 10;
    const N: u64 = 4096;
    let mem = alloc((N * BLOCK) as usize)?;
    mem.fill(1);
    let region = c
        .register(mem.as_ptr() as u64, N * BLOCK, BLOCK)
        .map_err(|e| format!("register: {e}"))?;
    let r = c.region(region).map_err(|e| e.to_string())?;
    let before = r.stats();
    let (mut published, mut calls, mut first) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let stop = Duration::from_secs_f64(a.seconds);
    while t0.elapsed() < stop {
        for _ in 0..1024 {
            published += c
                .hint_range(region, HintKind::Access, first, a.batch, 0)
                .map_err(|e| e.to_string())?;
            calls += 1;
            first = (first + a.batch as u64) % (N - a.batch as u64 + 1);
        }
    }
    let sent = t0.elapsed().as_secs_f64();
    // Wait for tierd to apply everything that made it into the ring.
    let wait = Instant::now();
    loop {
        let s = r.stats();
        if s.applied_entries + s.rejected_entries >= s.published_entries {
            break;
        }
        if wait.elapsed() > Duration::from_secs(30) {
            return Err("tierd did not drain the ring within 30 s".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let drained = t0.elapsed().as_secs_f64();
    let s = r.stats();
    let applied = s.applied_blocks - before.applied_blocks;
    println!("RESULT {}hint_batch_blocks={}", a.tag, a.batch);
    println!(
        "RESULT {}hint_calls_per_s={:.0}",
        a.tag,
        calls as f64 / sent
    );
    println!(
        "RESULT {}hint_published_blocks_per_s={:.0}",
        a.tag,
        published as f64 / sent
    );
    println!(
        "RESULT {}hint_applied_blocks_per_s={:.0}",
        a.tag,
        applied as f64 / drained
    );
    println!(
        "RESULT {}hint_applied_entries={}",
        a.tag,
        s.applied_entries - before.applied_entries
    );
    println!(
        "RESULT {}hint_dropped_blocks={}",
        a.tag,
        s.dropped_blocks - before.dropped_blocks
    );
    println!(
        "RESULT {}hint_rejected_entries={}",
        a.tag, s.rejected_entries
    );
    c.unregister(region).map_err(|e| e.to_string())?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn prefetch(c: &Client, a: &Args) -> Result<(), String> {
    const BLOCK: u64 = 64 << 10;
    let n = a.samples;
    let fast = c
        .advise(BLOCK, 0)
        .map_err(|e| format!("advise fast: {e}"))?;
    let slow = c
        .advise(n * BLOCK, -1)
        .map_err(|e| format!("advise slow: {e}"))?;
    if slow.node == fast.node {
        return Err(format!(
            "one tier only (node {}): nothing to prefetch from",
            fast.node
        ));
    }
    let mem = alloc((n * BLOCK) as usize)?;
    // SAFETY: our own fresh mapping.
    let rc = unsafe {
        tierd_client::ffi::tierd_bind_node(mem.as_mut_ptr().cast(), mem.len(), slow.node)
    };
    if rc < 0 {
        return Err(format!("bind to node {}: errno {}", slow.node, -rc));
    }
    // Small pages, so each block moves on its own (a THP would carry 32 blocks at once).
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(mem.as_mut_ptr().cast(), mem.len(), libc::MADV_NOHUGEPAGE) };
    mem.fill(2);
    let region = c
        .register(mem.as_ptr() as u64, n * BLOCK, BLOCK)
        .map_err(|e| format!("register: {e}"))?;
    // Cold until needed, as an engine marks blocks of idle sequences: keeps tierd's
    // sampling-driven policy from promoting them before they are prefetched.
    c.hint_range(region, HintKind::Cold, 0, n as u32, 0)
        .map_err(|e| e.to_string())?;
    // The first refresh shows where the blocks are.
    let t = Instant::now();
    while c.placement(region, n - 1) != slow.node {
        if t.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "block {} reads back as {} after 5 s, not slow node {}",
                n - 1,
                c.placement(region, n - 1),
                slow.node
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut lat_ms = Vec::with_capacity(n as usize);
    let (mut misses, mut skipped) = (0u64, 0u64);
    for b in 0..n {
        if c.placement(region, b) != slow.node {
            skipped += 1; // moved by someone else meanwhile: nothing to measure
            continue;
        }
        let t0 = Instant::now();
        c.hint_prefetch(region, &[b], a.deadline_ms)
            .map_err(|e| e.to_string())?;
        // Poll as an engine would before using the block; a busy spin would steal the
        // CPU tierd needs (the VM runs all vCPUs on one host thread).
        loop {
            if c.placement(region, b) == fast.node {
                lat_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if t0.elapsed() > Duration::from_secs(1) {
                misses += 1;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // Let the block settle before the next sample.
        std::thread::sleep(Duration::from_millis(2));
    }
    let s = c.region(region).map_err(|e| e.to_string())?.stats();
    lat_ms.sort_by(f64::total_cmp);
    println!("RESULT {}prefetch_samples={}", a.tag, n);
    println!("RESULT {}prefetch_misses={}", a.tag, misses);
    println!("RESULT {}prefetch_skipped={}", a.tag, skipped);
    println!(
        "RESULT {}prefetch_over_10ms={}",
        a.tag,
        lat_ms.iter().filter(|&&l| l > 10.0).count()
    );
    println!(
        "RESULT {}prefetch_deadline_missed={}",
        a.tag, s.deadline_missed
    );
    if !lat_ms.is_empty() {
        println!(
            "RESULT {}prefetch_p50_ms={:.2}",
            a.tag,
            percentile(&lat_ms, 0.50)
        );
        println!(
            "RESULT {}prefetch_p90_ms={:.2}",
            a.tag,
            percentile(&lat_ms, 0.90)
        );
        println!(
            "RESULT {}prefetch_p99_ms={:.2}",
            a.tag,
            percentile(&lat_ms, 0.99)
        );
        println!(
            "RESULT {}prefetch_max_ms={:.2}",
            a.tag,
            lat_ms[lat_ms.len() - 1]
        );
    }
    Ok(())
}

/// The kernel's floor for the prefetch phase: the same 64 KiB moves (small pages,
/// slow → fast) done by this process with one `move_pages(2)` call each, no tierd.
fn rawmove(c: &Client, a: &Args) -> Result<(), String> {
    const BLOCK: u64 = 64 << 10;
    let n = a.samples;
    let fast = c
        .advise(BLOCK, 0)
        .map_err(|e| format!("advise fast: {e}"))?;
    let slow = c
        .advise(n * BLOCK, -1)
        .map_err(|e| format!("advise slow: {e}"))?;
    let mem = alloc((n * BLOCK) as usize)?;
    // SAFETY: our own fresh mapping.
    let rc = unsafe {
        tierd_client::ffi::tierd_bind_node(mem.as_mut_ptr().cast(), mem.len(), slow.node)
    };
    if rc < 0 {
        return Err(format!("bind to node {}: errno {}", slow.node, -rc));
    }
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(mem.as_mut_ptr().cast(), mem.len(), libc::MADV_NOHUGEPAGE) };
    mem.fill(3);
    let per = (BLOCK / 4096) as usize;
    let mut lat_ms = Vec::with_capacity(n as usize);
    for b in 0..n as usize {
        let pages: Vec<*mut libc::c_void> = (0..per)
            .map(|i| mem[b * BLOCK as usize + i * 4096..].as_mut_ptr().cast())
            .collect();
        let nodes = vec![fast.node; per];
        let mut status = vec![0i32; per];
        let t0 = Instant::now();
        // SAFETY: arrays of `per` elements; pid 0 = this process.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_pages,
                0,
                per as libc::c_ulong,
                pages.as_ptr(),
                nodes.as_ptr(),
                status.as_mut_ptr(),
                2 as libc::c_int, // MPOL_MF_MOVE
            )
        };
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        if rc < 0 || status[0] != fast.node {
            return Err(format!(
                "move_pages block {b}: rc {rc}, status {}",
                status[0]
            ));
        }
        lat_ms.push(dt);
        std::thread::sleep(Duration::from_millis(2));
    }
    lat_ms.sort_by(f64::total_cmp);
    println!(
        "RESULT {}rawmove_p50_ms={:.2}",
        a.tag,
        percentile(&lat_ms, 0.50)
    );
    println!(
        "RESULT {}rawmove_p90_ms={:.2}",
        a.tag,
        percentile(&lat_ms, 0.90)
    );
    println!(
        "RESULT {}rawmove_p99_ms={:.2}",
        a.tag,
        percentile(&lat_ms, 0.99)
    );
    Ok(())
}

/// A shared pool lands on the slow tier (`client.pool_tier = "slow"`, the default), and
/// a second open, by a second connection, maps the same memory.
fn pool(c: &Client, a: &Args) -> Result<(), String> {
    let bytes = 16u64 << 20;
    let slow = c
        .advise(bytes, -1)
        .map_err(|e| format!("advise slow: {e}"))?;
    let p1 = c
        .pool_open("hintbench-pool", bytes)
        .map_err(|e| e.to_string())?;
    let c2 = Client::connect(a.socket.as_deref().map(std::path::Path::new))
        .map_err(|e| e.to_string())?;
    let p2 = c2
        .pool_open("hintbench-pool", bytes)
        .map_err(|e| e.to_string())?;
    let map = |fd: &std::os::fd::OwnedFd| {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of the pool's sealed memfd, leaked until exit.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(p as *mut u8)
    };
    let (Some(m1), Some(m2)) = (map(&p1.fd), map(&p2.fd)) else {
        return Err("mmap of the pool failed".into());
    };
    // SAFETY: both point to `bytes` of mapped memory.
    let same = unsafe {
        m1.add(12345).write_volatile(0x5a);
        m2.add(12345).read_volatile() == 0x5a
    };
    println!("RESULT {}pool_node={}", a.tag, p1.node);
    println!("RESULT {}pool_slow_node={}", a.tag, slow.node);
    println!("RESULT {}pool_shared={}", a.tag, same as u8);
    println!(
        "RESULT {}pool_second_open_created={}",
        a.tag, p2.created as u8
    );
    if !p1.created || p2.created || !same || p1.node != slow.node {
        return Err(format!(
            "pool: created {} / {}, shared {same}, node {} (slow node {})",
            p1.created, p2.created, p1.node, slow.node
        ));
    }
    Ok(())
}

/// Registering memory mapped in another process (not in ours) is refused with EFAULT.
fn security(c: &Client, a: &Args) -> Result<(), String> {
    let mut child = std::process::Command::new("sleep")
        .arg("10")
        .spawn()
        .map_err(|e| format!("spawning sleep: {e}"))?;
    let maps = |pid: u32| -> Vec<(u64, u64)> {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (r, _) = l.split_once(' ')?;
                let (s, e) = r.split_once('-')?;
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                ))
            })
            .collect()
    };
    // Until the child has exec'd, its maps are a copy of ours: retry for a while.
    let mut foreign = None;
    for _ in 0..200 {
        let (theirs, ours) = (maps(child.id()), maps(std::process::id()));
        foreign = theirs
            .into_iter()
            .find(|t| !ours.iter().any(|o| o.0 < t.1 && t.0 < o.1));
        if foreign.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let res = foreign.map(|(s, e)| c.register(s, (e - s) / 4096 * 4096, 4096));
    let _ = child.kill();
    let _ = child.wait();
    match res {
        None => Err("no mapping of the child that we lack".into()),
        Some(Err(tierd_client::ClientError::Refused { errno, .. })) if errno == libc::EFAULT => {
            println!("RESULT {}foreign_register_refused=1", a.tag);
            Ok(())
        }
        Some(other) => {
            println!("RESULT {}foreign_register_refused=0", a.tag);
            Err(format!(
                "registering another process's memory: {:?}",
                other.map_err(|e| e.to_string())
            ))
        }
    }
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hintbench: {e}");
            std::process::exit(2);
        }
    };
    let c = match Client::connect(a.socket.as_deref().map(std::path::Path::new)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hintbench: connect: {e}");
            std::process::exit(1);
        }
    };
    let mut ok = true;
    for (name, phase) in [
        ("ingest", ingest as fn(&Client, &Args) -> Result<(), String>),
        ("prefetch", prefetch),
        ("rawmove", rawmove),
        ("pool", pool),
        ("security", security),
    ] {
        if !a.phases.split(',').any(|p| p == name) {
            continue;
        }
        if let Err(e) = phase(&c, &a) {
            eprintln!("hintbench: {name}: {e}");
            ok = false;
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
