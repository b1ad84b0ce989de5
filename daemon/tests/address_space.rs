//! tierd's cost follows resident memory, not reserved address space (issue 18): the
//! real `tierd` binary manages a process that holds a 16 TiB `PROT_NONE`,
//! `MAP_NORESERVE` reservation beside 64 MiB of touched memory, as GPU runtimes do.
//! tierd's RSS stays small, `status` answers within a second throughout, and
//! `placement` reports the 64 MiB. Before placement scans walked only resident pages,
//! tierd queried a page per 64 KiB granule of the reservation (2^28 of them: gigabytes
//! of address and status arrays) and the OOM killer ended it.
//!
//! On a one-node host tierd runs in monitor-only mode, which still scans placement
//! when a process becomes managed and every 5 s after.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tierd_api::{PlacementReply, Request, StatusReply};

#[path = "common/control.rs"]
mod control;
use control::{ok, Killed};

const RESERVED: usize = 16 << 40;
const TOUCHED: usize = 64 << 20;

/// A forked child holding the reservation and the touched memory until killed; its
/// pid. After fork only raw syscalls and plain stores run in the child.
fn holder() -> libc::pid_t {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a two-int array we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fork(2); the child below calls only async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: anonymous mappings of our own; writes stay inside the touched one;
        // write/pause/_exit are async-signal-safe.
        unsafe {
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
            let r = libc::mmap(
                std::ptr::null_mut(),
                RESERVED,
                libc::PROT_NONE,
                flags,
                -1,
                0,
            );
            let t = libc::mmap(
                std::ptr::null_mut(),
                TOUCHED,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            );
            if r == libc::MAP_FAILED || t == libc::MAP_FAILED {
                libc::_exit(1);
            }
            let mut off = 0;
            while off < TOUCHED {
                *(t as *mut u8).add(off) = 1;
                off += 4096;
            }
            libc::write(fds[1], b"r".as_ptr() as *const libc::c_void, 1);
            loop {
                libc::pause();
            }
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into our buffer from the pipe's read end.
    let n = unsafe { libc::read(fds[0], b.as_mut_ptr() as *mut libc::c_void, 1) };
    assert_eq!(n, 1, "holder did not start");
    pid
}

fn rss_kib(pid: u32) -> u64 {
    let mut s = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut s))
        .expect("tierd status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_16_tib_reservation_costs_tierd_what_its_resident_pages_cost() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("tierd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nsocket = \"{d}/tierd.sock\"\nstate_dir = \"{d}/state\"\n\
             [client]\nenabled = false\n[metrics]\nenabled = false\n",
            d = d.display()
        ),
    )
    .unwrap();
    let socket = d.join("tierd.sock");
    let log = std::fs::File::create(d.join("tierd.log")).unwrap();
    let tierd = Killed(
        Command::new(env!("CARGO_BIN_EXE_tierd"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < end, "tierd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = holder();
    let _holder = Forked(pid);
    let before_kib = rss_kib(tierd.0.id());
    let _: serde_json::Value = ok(
        &socket,
        &Request::Manage {
            pid,
            policy: None,
            priority: None,
        },
    );
    // Status stays quick while tierd scans; the monitor-only rescan comes every 5 s.
    let mut worst = Duration::ZERO;
    let mut peak_kib = 0;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(7) {
        let t = Instant::now();
        let s: StatusReply = ok(&socket, &Request::Status);
        worst = worst.max(t.elapsed());
        assert!(s.managed.iter().any(|p| p.pid == pid));
        peak_kib = peak_kib.max(rss_kib(tierd.0.id()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let placed: PlacementReply = ok(&socket, &Request::Placement { pid, range: None });
    let bytes: u64 = placed.nodes.values().sum();
    println!(
        "tierd RSS {before_kib} KiB before, peak {peak_kib} KiB; status worst {worst:?}; \
         placement {bytes} bytes"
    );
    assert!(worst < Duration::from_secs(1), "status took {worst:?}");
    assert!(
        peak_kib < before_kib + 64 * 1024,
        "tierd grew from {before_kib} to {peak_kib} KiB"
    );
    assert!(
        (TOUCHED as u64..TOUCHED as u64 + (1 << 20)).contains(&bytes),
        "placement found {bytes} bytes"
    );
}

/// A forked child, killed and reaped on drop.
struct Forked(libc::pid_t);

impl Drop for Forked {
    fn drop(&mut self) {
        // SAFETY: kill and reap our own forked child; no memory is involved.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}
