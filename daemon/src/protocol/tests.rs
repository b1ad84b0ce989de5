//! The protocol server in-process on a temp socket, on a fake two-tier machine (node 0
//! fast, node 1 slow) with a fake mover, driven by the Rust client. Children for the
//! multi-process cases are forked and only use the client library before `_exit`.

use super::Server;
use crate::heat::flags;
use crate::migrate::fake::FakeMover;
use crate::state::Daemon;
use crate::topology::fake::FakeTopology;
use memmap2::MmapMut;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tierd_client::layout::state;
use tierd_client::{Client, ClientError, HintKind};
use tierd_config::Config;

pub(super) const BLOCK: u64 = 64 << 10;

pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) path: PathBuf,
    pub(super) daemon: Arc<Daemon>,
    pub(super) server: Server,
    pub(super) mover: Arc<FakeMover>,
    /// Stops the heat tables' owner thread (the tiering loop's stand-in).
    heat_stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.daemon.shutdown.store(true, Ordering::SeqCst);
        self.heat_stop.store(true, Ordering::SeqCst);
    }
}

pub(super) fn fixture(edit: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sock");
    let mut cfg = Config::default();
    cfg.client.socket = path.clone();
    cfg.client.ring_entries = 1024;
    cfg.migrate.thp_aware = false;
    edit(&mut cfg);
    let topo = Arc::new(FakeTopology::new(&[
        (0, &[0], 1 << 30, 0),
        (1, &[], 4 << 30, 1),
    ]));
    // Every page of every process is present, on the slow node unless moved.
    let mover = Arc::new(FakeMover::new().default_node(1));
    let daemon = Daemon::new(cfg, None, topo, mover.clone()).unwrap();
    let heat_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let owner = daemon.heat.take_owner().unwrap();
    let (c, s) = (daemon.config(), heat_stop.clone());
    std::thread::spawn(move || owner.serve(c, s));
    let server = Server::start(&daemon, &path, 0o600).unwrap();
    Fixture {
        _dir: dir,
        path,
        daemon,
        server,
        mover,
        heat_stop,
    }
}

pub(super) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `blocks` blocks of touched anonymous memory, block-aligned (so blocks and heat
/// granules line up): the mapping and the base address.
pub(super) fn anon(blocks: u64) -> (MmapMut, u64) {
    let mut m = MmapMut::map_anon(((blocks + 1) * BLOCK) as usize).unwrap();
    m.fill(1);
    let base = (m.as_ptr() as u64).div_ceil(BLOCK) * BLOCK;
    (m, base)
}

fn flags_at(d: &Daemon, addr: u64) -> u8 {
    heat_of(d, move |t| {
        t.and_then(|t| t.cell(addr)).map_or(0, |c| c.flags())
    })
}

/// Reads this process's heat table on its owner's thread.
fn heat_of<R: Send + 'static>(
    d: &Daemon,
    f: impl FnOnce(Option<&crate::heat::HeatTable>) -> R + Send + 'static,
) -> R {
    let pid = std::process::id() as i32;
    d.heat
        .read(pid, Duration::from_secs(10), f)
        .expect("the heat owner answers")
}

#[test]
fn register_hint_and_read_placement_back() {
    let f = fixture(|_| {});
    let (_mem, base) = anon(64);
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 64 * BLOCK, BLOCK).unwrap();
    let r = c.region(region).unwrap();
    assert_eq!((r.nblocks(), r.block_size(), r.base()), (64, BLOCK, base));
    assert!(
        f.daemon.registry.get(std::process::id() as i32).is_some(),
        "a registering process becomes managed"
    );
    wait_until("first placement refresh", || c.placement(region, 63) == 1);

    assert_eq!(c.hint(region, HintKind::Access, &[0, 1, 2, 3]).unwrap(), 4);
    assert_eq!(c.hint(region, HintKind::Cold, &[20, 21]).unwrap(), 2);
    assert_eq!(c.hint(region, HintKind::PinFast, &[40]).unwrap(), 1);
    wait_until("hints applied", || r.stats().applied_entries >= 3);
    assert_ne!(flags_at(&f.daemon, base) & flags::CLIENT, 0);
    assert_eq!(
        flags_at(&f.daemon, base + 20 * BLOCK),
        flags::COLD | flags::CLIENT
    );
    assert_ne!(flags_at(&f.daemon, base + 40 * BLOCK) & flags::PIN_FAST, 0);
    let heat = heat_of(&f.daemon, move |t| {
        let t = t.expect("a heat table");
        t.heat_at(base, t.now_ms(Instant::now()))
    });
    assert!(heat > 0.5, "{heat}");

    // PREFETCH promotes at once: read back as the fast node.
    let t0 = Instant::now();
    c.hint_prefetch(region, &[10, 11, 12], 50).unwrap();
    wait_until("prefetched blocks on node 0", || {
        (10..13).all(|b| c.placement(region, b) == 0)
    });
    let latency = t0.elapsed();
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(c.placement(region, 13), 1, "neighbours stay");
    assert!(r.stats().promoted_blocks >= 3);
    // Bad block numbers are refused by the client; the daemon never sees them.
    assert!(matches!(
        c.hint(region, HintKind::Access, &[64]),
        Err(ClientError::BlockRange { .. })
    ));
    assert_eq!(c.placement(region, 64), -libc::ERANGE);
    assert_eq!(c.placement(region + 100, 0), -libc::EINVAL);
    assert_eq!(r.stats().rejected_entries, 0);

    c.unregister(region).unwrap();
    assert_eq!(r.stats().state, state::CLOSED);
    assert_eq!(flags_at(&f.daemon, base + 20 * BLOCK), 0, "hints forgotten");
    drop(c);
    wait_until("process unmanaged at disconnect", || {
        f.daemon.registry.get(std::process::id() as i32).is_none()
    });
}

#[test]
fn only_own_mapped_memory_can_be_registered() {
    let f = fixture(|_| {});
    let c = Client::connect(Some(&f.path)).unwrap();
    // Memory of another process: a child's mappings that are not mapped in ours.
    let mut child = std::process::Command::new("sleep")
        .arg("5")
        .spawn()
        .unwrap();
    // Until the child has exec'd, its maps are a copy of ours: retry for a while.
    let mut foreign = None;
    for _ in 0..200 {
        let theirs = crate::proc::maps::migratable_ranges(child.id() as i32, None).unwrap();
        let ours = crate::proc::maps::migratable_ranges(std::process::id() as i32, None).unwrap();
        foreign = theirs
            .into_iter()
            .find(|t| !ours.iter().any(|o| o.start < t.end && t.start < o.end));
        if foreign.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let foreign = foreign.expect("a mapping of the child that we do not have");
    let len = (foreign.end - foreign.start) / 4096 * 4096;
    let err = c.register(foreign.start, len, 4096).unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { errno, .. } if errno == libc::EFAULT),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Partly mapped: our mapping plus the page after it (unmapped on purpose).
    let m = MmapMut::map_anon(8 * 4096).unwrap();
    let base = m.as_ptr() as u64;
    // SAFETY: unmaps the last page of our own mapping, which nothing references.
    unsafe { libc::munmap((base + 7 * 4096) as *mut libc::c_void, 4096) };
    let err = c.register(base, 8 * 4096, 4096).unwrap_err();
    assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EFAULT));
    assert!(c.register(base, 7 * 4096, 4096).is_ok());
    // Misaligned / zero / odd block sizes.
    for (b, l, bs) in [(base + 1, 4096, 4096), (base, 0, 4096), (base, 4096, 1000)] {
        let err = c.register(b, l, bs).unwrap_err();
        assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EINVAL));
    }
    // The whole address space wraps around: refused, not overflowed.
    assert!(c.register(u64::MAX - 4095, 8192, 4096).is_err());
    std::mem::forget(m); // its last page is already unmapped
}

#[test]
fn per_uid_region_limit() {
    let f = fixture(|c| c.client.max_regions_per_uid = 2);
    let (_mem, base) = anon(4);
    let c = Client::connect(Some(&f.path)).unwrap();
    c.register(base, BLOCK, BLOCK).unwrap();
    let second = c.register(base + BLOCK, BLOCK, BLOCK).unwrap();
    let err = c.register(base + 2 * BLOCK, BLOCK, BLOCK).unwrap_err();
    assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EDQUOT));
    c.unregister(second).unwrap();
    c.register(base + 2 * BLOCK, BLOCK, BLOCK).unwrap();
}

#[test]
fn per_uid_registered_bytes_limit() {
    let f =
        fixture(|c| c.client.max_registered_bytes_per_uid = tierd_config::Amount::Bytes(3 * BLOCK));
    let (_mem, base) = anon(4);
    let c = Client::connect(Some(&f.path)).unwrap();
    let first = c.register(base, 2 * BLOCK, BLOCK).unwrap();
    let err = c.register(base + 2 * BLOCK, 2 * BLOCK, BLOCK).unwrap_err();
    assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EDQUOT));
    c.register(base + 2 * BLOCK, BLOCK, BLOCK).unwrap();
    c.unregister(first).unwrap();
    c.register(base, 2 * BLOCK, BLOCK).unwrap();
}

/// A client registers 16 TiB of reserved, never-touched address space (as a GPU
/// runtime's reservation) in 16 GiB blocks and hints all of it: tierd's heat table
/// gains no cell per granule of it (2^28 of them), its prefetch thread builds no list
/// of its 2^32 pages (it once did, in the background, until the test binary was
/// OOM-killed), and a second client of another daemon with the default limit is
/// refused such a region outright.
#[test]
fn a_huge_registered_reservation_costs_no_bookkeeping() {
    const RESERVED: u64 = 16 << 40;
    const HUGE_BLOCK: u64 = 16 << 30;
    let f = fixture(|c| {
        c.client.max_registered_bytes_per_uid = tierd_config::Amount::Bytes(RESERVED + BLOCK)
    });
    // SAFETY: a fresh PROT_NONE reservation nothing else refers to; unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (RESERVED + HUGE_BLOCK) as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let base = (p as u64).div_ceil(HUGE_BLOCK) * HUGE_BLOCK;
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, RESERVED, HUGE_BLOCK).unwrap();
    let r = c.region(region).unwrap();
    let blocks: Vec<u64> = (0..r.nblocks()).collect();
    assert_eq!(c.hint(region, HintKind::Access, &blocks).unwrap(), 1024);
    assert_eq!(c.hint(region, HintKind::PinFast, &blocks).unwrap(), 1024);
    assert_eq!(c.hint(region, HintKind::Cold, &blocks).unwrap(), 1024);
    wait_until("hints applied", || r.stats().applied_entries >= 3);
    let cells = heat_of(&f.daemon, |t| t.map_or(0, |t| t.len()));
    assert!(cells < 1024, "{cells} heat cells for 16 TiB never touched");
    // The PIN_FAST above asks the prefetch thread to promote 16 TiB, which cannot fit
    // the 1 GiB fast node: it is answered at once, so a small prefetch sent after it
    // (due later, so served after it in any case) lands within the wait.
    let (_small, small_base) = anon(1);
    let small = c.register(small_base, BLOCK, BLOCK).unwrap();
    c.hint_prefetch(small, &[0], 60_000).unwrap();
    wait_until("the prefetch thread got past 16 TiB", || {
        c.placement(small, 0) == 0
    });
    c.unregister(region).unwrap();
    drop(c);

    let g = fixture(|_| {});
    let c = Client::connect(Some(&g.path)).unwrap();
    let err = c.register(base, RESERVED, HUGE_BLOCK).unwrap_err();
    assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EDQUOT));
    // SAFETY: unmapping exactly the reservation made above.
    unsafe { libc::munmap(p, (RESERVED + HUGE_BLOCK) as usize) };
}

/// A bare connection to the fixture's client socket, for raw packets.
pub(super) fn raw_connection(f: &Fixture) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(&f.path).unwrap()).unwrap();
    fd
}

/// Raw packets, as a buggy or hostile client would send them.
#[test]
fn malformed_and_oversized_messages_get_errors_and_the_connection_goes_on() {
    use tierd_client::{sock, wire};
    let f = fixture(|_| {});
    let fd = raw_connection(&f);
    let ask = |buf: &[u8]| {
        sock::send(&fd, buf, None).unwrap();
        let mut rbuf = [0u8; wire::MAX_MESSAGE];
        let p = sock::recv(&fd, &mut rbuf).unwrap().unwrap();
        wire::Reply::decode(&rbuf[..p.len]).unwrap().1
    };
    let errno = |r: wire::Reply| match r {
        wire::Reply::Error { errno, .. } => errno,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(errno(ask(b"garbage")), libc::EPROTO);
    assert_eq!(errno(ask(&[0xff; 600])), libc::EMSGSIZE);
    let good = wire::Request::Advise {
        bytes: 4096,
        tier: 0,
    }
    .encode(7);
    assert_eq!(
        errno(ask(&good[..good.len() - 3])),
        libc::EPROTO,
        "truncated"
    );
    let mut lying = good.clone();
    lying[12] = 0xff; // declared length larger than the packet
    assert_eq!(errno(ask(&lying)), libc::EPROTO);
    assert!(matches!(ask(&good), wire::Reply::Advice { node: 0, .. }));
    let slow = wire::Request::Advise {
        bytes: 4096,
        tier: -1,
    }
    .encode(8);
    assert!(matches!(
        ask(&slow),
        wire::Reply::Advice {
            node: 1,
            tier: 1,
            ..
        }
    ));
    let bad_tier = wire::Request::Advise {
        bytes: 4096,
        tier: 5,
    }
    .encode(9);
    assert_eq!(errno(ask(&bad_tier)), libc::EINVAL);
}

#[test]
fn corrupt_ring_drops_only_that_client() {
    let f = fixture(|_| {});
    let (_mem, base) = anon(16);
    let good = Client::connect(Some(&f.path)).unwrap();
    let bad = Client::connect(Some(&f.path)).unwrap();
    let rg = good.register(base, 8 * BLOCK, BLOCK).unwrap();
    let rb = bad.register(base + 8 * BLOCK, 8 * BLOCK, BLOCK).unwrap();
    let bad_region = bad.region(rb).unwrap();
    // An entry with a bogus kind and one out of range: rejected, client kept.
    bad_region.push(&[
        tierd_client::layout::HintEntry {
            kind: 99,
            region: rb,
            nblocks: 1,
            ..Default::default()
        },
        tierd_client::layout::HintEntry {
            kind: HintKind::Access as u16,
            region: rb,
            first_block: 7,
            nblocks: 2,
            ..Default::default()
        },
    ]);
    wait_until("bad entries rejected", || {
        bad_region.stats().rejected_entries == 2
    });
    assert!(bad_region.is_live());
    // Now corrupt the indices: tail far beyond head.
    bad_region.header().tail.store(1 << 40, Ordering::Release);
    wait_until("corrupt client dropped", || {
        bad_region.stats().state == state::CORRUPT
    });
    wait_until("its connection closed", || {
        f.server.hub.region(rb).is_none()
    });
    assert!(
        bad.advise(4096, 0).is_err(),
        "the dropped connection is closed"
    );
    // The other client is untouched.
    good.hint(rg, HintKind::Access, &[0]).unwrap();
    let g = good.region(rg).unwrap();
    wait_until("good client's hint applied", || {
        g.stats().applied_entries == 1
    });
    assert!(g.is_live());
    assert!(good.advise(4096, 0).is_ok());
}

/// How long a forked child may live: past it the kernel ends it (SIGALRM), wherever it
/// is stuck (a lock that fork copied while another thread held it, a parent that
/// failed before releasing it), so no test leaves a process behind.
pub(super) const CHILD_LIFETIME_S: u32 = 60;

/// How long [`exit_code`] waits for a child before killing it.
const CHILD_WAIT: Duration = Duration::from_secs(30);

/// Runs `f` in a forked child; returns the child's pid. The child exits 0 if `f`
/// returns true, 1 otherwise (or on panic), without running any destructor or test
/// harness code; it is ended after [`CHILD_LIFETIME_S`] in any case.
pub(super) fn fork_child(f: impl FnOnce() -> bool) -> nix::unistd::Pid {
    // SAFETY: the child only calls into the client library (malloc, sockets, mmap:
    // glibc keeps malloc usable after fork) and then _exit()s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // SAFETY: arms this process's real-time timer; no memory involved. A fork
            // child starts without one.
            unsafe { libc::alarm(CHILD_LIFETIME_S) };
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
            // SAFETY: _exit ends the child without unwinding into the harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    }
}

/// The exit code of child `pid`; a child still running after [`CHILD_WAIT`] is killed
/// and the test fails (a test must not block forever on a stuck child).
pub(super) fn exit_code(pid: nix::unistd::Pid) -> i32 {
    exit_code_within(pid, CHILD_WAIT)
}

fn exit_code_within(pid: nix::unistd::Pid, limit: Duration) -> i32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let t0 = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive => {}
            WaitStatus::Exited(_, c) => return c,
            other => panic!("child: {other:?}"),
        }
        if t0.elapsed() > limit {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            panic!("child {pid} still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A stuck child is killed and reported, not waited for forever; an idle child runs
/// out of its lifetime by itself.
#[test]
fn a_stuck_child_is_killed_not_waited_for() {
    let t0 = Instant::now();
    let stuck = fork_child(|| loop {
        // SAFETY: waits for a signal; no memory involved.
        unsafe { libc::pause() };
    });
    let waited = std::panic::catch_unwind(|| exit_code_within(stuck, Duration::from_millis(300)));
    assert!(waited.is_err(), "exit_code returned for a stuck child");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(
        nix::sys::signal::kill(stuck, None),
        Err(nix::errno::Errno::ESRCH),
        "killed and reaped"
    );
    // The lifetime: ended by SIGALRM (here after 1 s instead of CHILD_LIFETIME_S).
    let idle = fork_child(|| {
        // SAFETY: as in fork_child.
        unsafe { libc::alarm(1) };
        loop {
            // SAFETY: as above.
            unsafe { libc::pause() };
        }
    });
    assert!(matches!(
        nix::sys::wait::waitpid(idle, None).unwrap(),
        nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGALRM, _)
    ));
}

#[test]
fn pool_opened_by_two_processes_is_the_same_memory() {
    // The fast tier: node 0 is the host's real node, which the daemon's mbind needs.
    let f = fixture(|c| {
        c.client.max_pools_per_uid = 1;
        c.client.pool_tier = tierd_config::PoolTier::Fast;
    });
    let c = Client::connect(Some(&f.path)).unwrap();
    let pool = c.pool_open("prefix-a", 1 << 20).unwrap();
    assert!(pool.created);
    // SAFETY: a fresh shared pool nobody truncates (tierd sealed its size).
    let mut m = unsafe { MmapMut::map_mut(&std::fs::File::from(pool.fd)) }.unwrap();
    m[..5].copy_from_slice(b"hello");
    m[(1 << 20) - 1] = 42;
    let path = f.path.clone();
    let child = fork_child(move || {
        let Ok(c) = Client::connect(Some(&path)) else {
            return false;
        };
        let Ok(p) = c.pool_open("prefix-a", 1 << 20) else {
            return false;
        };
        // SAFETY: as above.
        let Ok(mut m) = (unsafe { MmapMut::map_mut(&std::fs::File::from(p.fd)) }) else {
            return false;
        };
        let same = !p.created && &m[..5] == b"hello" && m[(1 << 20) - 1] == 42;
        m[5] = b'!';
        same
    });
    assert_eq!(exit_code(child), 0, "the child saw the parent's bytes");
    assert_eq!(m[5], b'!', "and the parent sees the child's");
    // Per-uid pool limit, size limits, bigger-than-existing.
    let err = c.pool_open("prefix-b", 4096).unwrap_err();
    assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EDQUOT));
    let err = c.pool_open("prefix-a", 2 << 20).unwrap_err();
    assert!(matches!(err, ClientError::Refused { errno, .. } if errno == libc::EINVAL));
    drop(c);
    // In this in-process test the pool's holder is tierd's own process, which the holder
    // scan skips: the pool goes with its connection (permission_tests has the real case).
    wait_until("pool released with its last holder", || {
        let c = Client::connect(Some(&f.path)).unwrap();
        c.pool_open("prefix-b", 4096).is_ok()
    });
}

#[test]
fn client_killed_mid_write_does_not_disturb_another() {
    let f = fixture(|_| {});
    let (_mem, base) = anon(8);
    let path = f.path.clone();
    let child = fork_child(move || {
        let (_m, base) = anon(8);
        let Ok(c) = Client::connect(Some(&path)) else {
            return false;
        };
        let Ok(r) = c.register(base, 8 * BLOCK, BLOCK) else {
            return false;
        };
        // Until killed; 30 s at most if the test failed before killing it.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            let _ = c.hint(r, HintKind::Access, &[0, 1, 2, 3, 4, 5, 6, 7]);
        }
        false
    });
    wait_until("child registered and hinting", || {
        f.server.hub.regions().iter().any(|r| {
            r.owner.pid == child.as_raw()
                && r.header().applied_entries.load(Ordering::Relaxed) > 100
        })
    });
    nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(matches!(
        nix::sys::wait::waitpid(child, None).unwrap(),
        nix::sys::wait::WaitStatus::Signaled(..)
    ));
    wait_until("child's regions gone", || {
        f.server
            .hub
            .regions()
            .iter()
            .all(|r| r.owner.pid != child.as_raw())
    });
    let c = Client::connect(Some(&f.path)).unwrap();
    let r = c.register(base, 8 * BLOCK, BLOCK).unwrap();
    c.hint(r, HintKind::Access, &[1]).unwrap();
    let reg = c.region(r).unwrap();
    wait_until("survivor's hint applied", || {
        reg.stats().applied_entries == 1
    });
    assert_eq!(f.daemon.clients.load(Ordering::Relaxed), 1);
}

#[test]
fn unmovable_blocks_become_relocation_requests() {
    let f = fixture(|_| {});
    let (_mem, base) = anon(8);
    // Block 5 is pinned: move_pages returns EBUSY for its pages.
    for off in (0..BLOCK).step_by(4096) {
        f.mover.pin(base + 5 * BLOCK + off);
    }
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 8 * BLOCK, BLOCK).unwrap();
    let r = c.region(region).unwrap();
    c.hint(region, HintKind::PinFast, &[4, 5]).unwrap();
    wait_until("block 4 promoted", || c.placement(region, 4) == 0);
    let mut want = Vec::new();
    wait_until("relocation request for block 5", || {
        want.clear();
        r.relocations(&mut want) == 1
    });
    assert_eq!(want, vec![(5, 0)]);
    assert_eq!(c.placement(region, 5), 1);
    c.relocated(region, &[5]).unwrap();
    want.clear();
    assert_eq!(r.relocations(&mut want), 0);
    wait_until("relocated block treated as free", || {
        flags_at(&f.daemon, base + 5 * BLOCK) & flags::FREE != 0
    });
}

#[test]
fn recycle_drops_only_the_named_blocks() {
    let f = fixture(|_| {});
    let c = Client::connect(Some(&f.path)).unwrap();
    let words = (BLOCK / 8) as usize;
    let check = |m: &[u64], base_word: usize| {
        for b in 0..8usize {
            let w = &m[base_word + b * words..base_word + (b + 1) * words];
            let want = if (2..5).contains(&b) { 0 } else { 7 };
            assert!(w.iter().all(|&x| x == want), "block {b}: want {want}");
        }
    };
    // Private anonymous memory: MADV_DONTNEED.
    let (mut mem, base) = anon(8);
    let region = c.register(base, 8 * BLOCK, BLOCK).unwrap();
    // SAFETY: a plain u64 view of our own page-aligned mapping.
    let all =
        unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u64>(), mem.len() / 8) };
    all.fill(7);
    // SAFETY: blocks 2..5 are dead in this test and not pinned.
    assert_eq!(unsafe { c.recycle(region, &[4, 2, 3]) }.unwrap(), 3 * BLOCK);
    check(all, ((base - mem.as_ptr() as u64) / 8) as usize);
    // SAFETY: as above; out-of-region blocks are refused before anything is dropped.
    assert!(matches!(
        unsafe { c.recycle(region, &[1, 8]) },
        Err(ClientError::BlockRange { block: 8, .. })
    ));
    assert_eq!(all[((base - mem.as_ptr() as u64) / 8) as usize + words], 7);

    // Shared memory (a memfd, as pools are): MADV_REMOVE frees the pages themselves.
    let fd = nix::sys::memfd::memfd_create(c"recycle", nix::sys::memfd::MemFdCreateFlag::empty())
        .unwrap();
    let file = std::fs::File::from(fd);
    file.set_len(8 * BLOCK).unwrap();
    // SAFETY: a fresh memfd only this test maps.
    let mut shared = unsafe { MmapMut::map_mut(&file) }.unwrap();
    let base = shared.as_ptr() as u64;
    let region = c.register(base, 8 * BLOCK, BLOCK).unwrap();
    // SAFETY: as above.
    let all = unsafe {
        std::slice::from_raw_parts_mut(shared.as_mut_ptr().cast::<u64>(), shared.len() / 8)
    };
    all.fill(7);
    // SAFETY: as above.
    unsafe { c.recycle(region, &[2, 3, 4]) }.unwrap();
    check(all, 0);
}

#[test]
fn hinting_processes_leave_sampling_unless_configured() {
    for keep in [false, true] {
        let f = fixture(|c| c.client.sample_hinting_processes = keep);
        let (_mem, base) = anon(4);
        let c = Client::connect(Some(&f.path)).unwrap();
        let region = c.register(base, 4 * BLOCK, BLOCK).unwrap();
        let pid = std::process::id() as i32;
        let p = f.daemon.registry.get(pid).unwrap();
        assert!(
            f.daemon.sampled(&p, Instant::now()),
            "sampled until it hints"
        );
        c.hint(region, HintKind::Access, &[0]).unwrap();
        let r = c.region(region).unwrap();
        wait_until("hint applied", || r.stats().applied_entries >= 1);
        assert_eq!(f.daemon.sampled(&p, Instant::now()), keep);
        let later = Instant::now() + Duration::from_millis(crate::state::HINT_QUIET_MS + 1);
        assert!(f.daemon.sampled(&p, later), "sampled again once quiet");
    }
}
