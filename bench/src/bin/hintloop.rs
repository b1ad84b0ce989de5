//! `hintloop [--socket PATH] [--mb N] [--block-kb K]`: a hinting client that outlives
//! tierd restarts, for the crash-and-restart VM scenario
//! (`tests/vm/scenarios/reliability/20-crash-restart.sh`).
//!
//! Maps N MiB (default 32) of anonymous memory, fills it with a pattern, registers it as
//! one region of K KiB blocks (default 64) and sends ACCESS hints for its first quarter
//! in a loop (one ring entry every millisecond), through the `tierd-client` crate with
//! its default reconnection. Prints, one line each, flushed:
//!
//! ```text
//! range=START-END region=ID checksum=X         once registered
//! connected=0|1 reconnects=N live=0|1 hinted=B  whenever connected/reconnects/live change
//! checksum=X connected=.. reconnects=.. live=.. applied=B   on SIGUSR1
//! ```
//!
//! `hinted` counts blocks the library accepted; `applied` is the current region's
//! `applied_blocks` (tierd's counter: it restarts at 0 after a reconnection). The data
//! must survive migration and restarts: compare the checksums. Exits on SIGTERM.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tierd_bench::mem::{checksum, fill, Region, Thp};
use tierd_client::{Client, HintKind};

static REPORT: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    REPORT.store(true, Ordering::SeqCst);
}

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value")),
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mb: usize = arg(&args, "--mb", 32)?;
    let block = arg::<u64>(&args, "--block-kb", 64)? << 10;
    let socket: Option<String> = args
        .iter()
        .position(|a| a == "--socket")
        .and_then(|i| args.get(i + 1).cloned());
    let len = mb << 20;
    anyhow::ensure!(
        block >= 4096 && (len as u64).is_multiple_of(block),
        "--mb must be a multiple of --block-kb"
    );
    // THP advised as the system default (`always`) would give: this client's memory is
    // migrated in the VM scenarios like any engine's.
    let mut mem = Region::place(len, None, Thp::Huge)?;
    fill(mem.words_mut(), 0x5a5a);
    // SAFETY: installing async-signal-safe handlers that only store to atomics.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let client = Client::connect(socket.as_deref().map(std::path::Path::new))?;
    let base = mem.base();
    let region = client.register(base, len as u64, block)?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "range={base:#x}-{:#x} region={region} checksum={:x}",
        base + len as u64,
        checksum(mem.words())
    )?;
    out.flush()?;
    let hot = (len as u64 / block / 4).max(1);
    let mut next = 0u64;
    let mut hinted = 0u64;
    let mut last = (true, 0u64, true);
    while !STOP.load(Ordering::SeqCst) {
        let n = 16.min(hot - next) as u32;
        hinted += client
            .hint_range(region, HintKind::Access, next, n, 0)
            .unwrap_or(0);
        next = (next + n as u64) % hot;
        let live = client.region(region).is_ok_and(|r| r.is_live());
        let now = (client.is_connected(), client.reconnects(), live);
        if now != last {
            writeln!(
                out,
                "connected={} reconnects={} live={} hinted={hinted}",
                now.0 as u8, now.1, now.2 as u8
            )?;
            out.flush()?;
            last = now;
        }
        if REPORT.swap(false, Ordering::SeqCst) {
            let applied = client
                .region(region)
                .map_or(0, |r| r.stats().applied_blocks);
            writeln!(
                out,
                "checksum={:x} connected={} reconnects={} live={} applied={applied}",
                checksum(mem.words()),
                now.0 as u8,
                now.1,
                now.2 as u8
            )?;
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
