//! `memhold --mb N [--huge] [--reserve-tb T]`: a test process for the VM scenarios.
//! Allocates N MiB (anonymous, optionally THP-advised), optionally beside a T TiB
//! `PROT_NONE`, `MAP_NORESERVE` reservation never touched (as GPU runtimes and
//! allocators reserve address space), fills the N MiB with a pattern, prints
//! `range=START-END checksum=X` and then, each time it receives SIGUSR1, re-reads the
//! memory and prints `checksum=X` again (data must survive migration). Exits on SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};

static CHECK: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    CHECK.store(true, Ordering::SeqCst);
}

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn checksum(buf: &[u64]) -> u64 {
    buf.iter().fold(0xcbf29ce484222325u64, |h, &w| {
        (h ^ w).wrapping_mul(0x100000001b3)
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mb: usize = args
        .iter()
        .position(|a| a == "--mb")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(256);
    let huge = args.iter().any(|a| a == "--huge");
    let reserve_tb: usize = args
        .iter()
        .position(|a| a == "--reserve-tb")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    if reserve_tb > 0 {
        // SAFETY: an anonymous PROT_NONE reservation, never accessed; kept until exit.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve_tb << 40,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        anyhow::ensure!(r != libc::MAP_FAILED, "reserving {reserve_tb} TiB failed");
    }
    let len = mb << 20;
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
    if huge {
        // SAFETY: p..p+len is the mapping created above.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
    }
    // SAFETY: the mapping is len bytes, readable and writable, and lives until exit.
    let buf = unsafe { std::slice::from_raw_parts_mut(p as *mut u64, len / 8) };
    for (i, w) in buf.iter_mut().enumerate() {
        *w = (i as u64).wrapping_mul(0x9e3779b97f4a7c15);
    }
    // SAFETY: installing async-signal-safe handlers that only store to atomics.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let start = p as u64;
    println!(
        "range={start:#x}-{:#x} checksum={:x}",
        start + len as u64,
        checksum(buf)
    );
    while !STOP.load(Ordering::SeqCst) {
        if CHECK.swap(false, Ordering::SeqCst) {
            println!("checksum={:x}", checksum(buf));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}
