//! Who may do what on the client socket, with real users: children forked from this
//! test (root) take a scratch uid and talk to the in-process server of
//! [`super::tests::fixture`]. Pools per uid, read-only for everyone but their creator
//! and charged to whoever touches them; the pool quota counted by holders; the
//! PIN_FAST quota and the per-uid prefetch budget; a region that ends with its
//! registering process (even while a child holds the socket) or when that process
//! changes credentials. Skipped when not root.

use super::tests::{anon, exit_code, fixture, fork_child, wait_until, Fixture, BLOCK};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tierd_client::wire::pool_flags::{READ_ONLY, SHARED};
use tierd_client::{Client, ClientError, HintKind};

const U1: u32 = 64_301;
const U2: u32 = 64_302;
/// `users`, a group every Debian system has, listed in `client.allowed_groups`.
const GROUP: u32 = 100;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The socket and its directory open to every user (mode bits only; the fixture binds
/// the socket 0600 in a private temp dir).
fn open_to_all(f: &Fixture) {
    let dir = f.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// Takes uid `uid` (gid = uid) with `groups`; raw syscalls (a fork child).
fn become_user(uid: u32, groups: &[u32]) -> bool {
    type L = libc::c_long;
    // SAFETY: raw syscalls on a slice we own.
    unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len() as L, groups.as_ptr()) == 0
            && libc::syscall(libc::SYS_setresgid, uid as L, uid as L, uid as L) == 0
            && libc::syscall(libc::SYS_setresuid, uid as L, uid as L, uid as L) == 0
    }
}

fn refused(r: Result<impl std::fmt::Debug, ClientError>, want: i32) -> bool {
    matches!(r, Err(ClientError::Refused { errno, .. }) if errno == want)
}

/// Maps `fd` shared with `prot`; the errno on failure.
fn map(fd: &OwnedFd, len: usize, prot: i32) -> Result<*mut u8, i32> {
    // SAFETY: a fresh shared mapping of a pool's memfd; leaked until the process exits.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(p.cast())
    }
}

#[test]
fn pools_are_per_uid_read_only_for_others_and_charged_to_their_toucher() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = fixture(|c| {
        c.client.pool_tier = tierd_config::PoolTier::Fast;
        c.client.allowed_groups = vec!["users".into()];
    });
    open_to_all(&f);
    const LEN: usize = 1 << 20;
    let c = Client::connect(Some(&f.path)).unwrap();
    let p = c.pool_open("p", LEN as u64).unwrap();
    assert!(p.created && !p.read_only);
    let blocks = |fd: &OwnedFd| {
        std::fs::File::from(fd.try_clone().unwrap())
            .metadata()
            .unwrap()
            .blocks()
    };
    assert_eq!(blocks(&p.fd), 0, "tierd allocated none of the pool's pages");
    let m = map(&p.fd, LEN, libc::PROT_READ | libc::PROT_WRITE).unwrap();
    // SAFETY: inside the mapping.
    unsafe { m.write_volatile(7) };
    assert!(
        blocks(&p.fd) > 0,
        "the page is allocated by (and charged to) its toucher"
    );
    let s = c.pool_open_flags("s", LEN as u64, SHARED).unwrap();
    let sm = map(&s.fd, LEN, libc::PROT_READ | libc::PROT_WRITE).unwrap();
    // SAFETY: inside the mapping.
    unsafe { sm.copy_from_nonoverlapping(b"hello".as_ptr(), 5) };
    let ro = c
        .pool_open_flags("s", LEN as u64, SHARED | READ_ONLY)
        .unwrap();
    assert!(
        ro.read_only && !ro.created,
        "the creator may ask for read-only"
    );
    assert_eq!(
        map(&ro.fd, LEN, libc::PROT_READ | libc::PROT_WRITE),
        Err(libc::EACCES)
    );

    let path = f.path.clone();
    // Another uid: "p" is its own pool; the shared "s" is read-only and stays intact.
    let child = fork_child(move || {
        if !become_user(U1, &[GROUP]) {
            return false;
        }
        let c = Client::connect(Some(&path)).unwrap();
        let own = c.pool_open("p", LEN as u64).unwrap();
        let own_map = map(&own.fd, LEN, libc::PROT_READ).unwrap();
        // SAFETY: inside the mapping.
        let own_is_new = own.created && !own.read_only && unsafe { own_map.read_volatile() } == 0;
        let s = c.pool_open_flags("s", LEN as u64, SHARED).unwrap();
        let reopen_rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", s.fd.as_raw_fd()));
        let write_map = map(&s.fd, LEN, libc::PROT_READ | libc::PROT_WRITE);
        let rmap = map(&s.fd, LEN, libc::PROT_READ).unwrap();
        // SAFETY: MADV_REMOVE on our own read-only mapping: refused, nothing dropped.
        let remove = unsafe { libc::madvise(rmap.cast(), LEN, libc::MADV_REMOVE) };
        let remove_errno = nix::errno::Errno::last_raw();
        // SAFETY: inside the mapping.
        let hello = unsafe { std::slice::from_raw_parts(rmap, 5) } == b"hello";
        let shared_create = c.pool_open_flags("s2", 4096, SHARED).is_ok();
        own_is_new
            && s.read_only
            && !s.created
            && reopen_rw.is_err_and(|e| e.raw_os_error() == Some(libc::EACCES))
            && write_map == Err(libc::EACCES)
            && remove == -1
            && remove_errno == libc::EACCES
            && hello
            && shared_create
    });
    assert_eq!(
        exit_code(child),
        0,
        "uid {U1}: own namespace, read-only shared pool"
    );
    // SAFETY: inside the mapping.
    assert_eq!(
        unsafe { m.read_volatile() },
        7,
        "root's pool \"p\" untouched"
    );
    let path = f.path.clone();
    let child = fork_child(move || {
        if !become_user(U2, &[]) {
            return false;
        }
        let c = Client::connect(Some(&path)).unwrap();
        refused(c.pool_open_flags("s", 4096, SHARED), libc::EACCES)
            && refused(c.pool_open_flags("s3", 4096, SHARED), libc::EACCES)
            && c.pool_open("s3", 4096).is_ok()
    });
    assert_eq!(
        exit_code(child),
        0,
        "uid {U2}, in no allowed group: no shared pools"
    );
}

/// A pipe pair for a child to say it is ready and a parent to let it go.
struct Gate {
    ready: (OwnedFd, OwnedFd),
    go: (OwnedFd, OwnedFd),
    /// The test process: a child whose parent changed was abandoned (the test binary
    /// died; the child's own copy of `go`'s write end means it never reads EOF).
    parent: u32,
}

/// How long a child waits at [`Gate::arrive_and_wait`] or loops before it gives up.
const CHILD_PATIENCE: Duration = Duration::from_secs(30);

impl Gate {
    fn new() -> Gate {
        Gate {
            ready: nix::unistd::pipe().unwrap(),
            go: nix::unistd::pipe().unwrap(),
            parent: std::process::id(),
        }
    }
    /// In the child: says it is ready and waits to be let go; false when the parent did
    /// not let it go within [`CHILD_PATIENCE`] or is gone.
    fn arrive_and_wait(&self) -> bool {
        let _ = nix::unistd::write(&self.ready.1, b"r");
        let t0 = Instant::now();
        while !self.released_within(100) {
            if self.abandoned() || t0.elapsed() > CHILD_PATIENCE {
                return false;
            }
        }
        let mut b = [0u8];
        nix::unistd::read(self.go.0.as_raw_fd(), &mut b) == Ok(1)
    }
    /// In the parent (at most 20 s: a child that failed never arrives).
    fn wait_ready(&self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.ready.0.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::from(20_000u16)),
            Ok(1),
            "the child never got ready"
        );
        let mut b = [0u8];
        nix::unistd::read(self.ready.0.as_raw_fd(), &mut b).unwrap();
    }
    /// One step: the child's `arrive_and_wait` takes one byte.
    fn release(&self) {
        let _ = nix::unistd::write(&self.go.1, b"g");
    }
    /// In the child: whether the parent let it go within `ms` (without taking the byte).
    fn released_within(&self, ms: u16) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.go.0.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms)) == Ok(1)
    }
    /// In the child: the test process that forked it is gone.
    fn abandoned(&self) -> bool {
        std::os::unix::process::parent_id() != self.parent
    }
}

/// A test that fails must not leave children waiting for it: every step released.
impl Drop for Gate {
    fn drop(&mut self) {
        let _ = nix::unistd::write(&self.go.1, b"gggg");
    }
}

#[test]
fn pool_quota_counts_holders_not_connections() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = fixture(|c| {
        c.client.pool_tier = tierd_config::PoolTier::Fast;
        c.client.max_pools_per_uid = 1;
    });
    open_to_all(&f);
    let gate = Gate::new();
    let path = f.path.clone();
    // The holder: creates its one pool, maps it, closes its connection, keeps the map.
    let holder = fork_child(|| {
        if !become_user(U1, &[]) {
            return false;
        }
        let c = Client::connect(Some(&path)).unwrap();
        let p = c.pool_open("q1", 4096).unwrap();
        let _m = map(&p.fd, 4096, libc::PROT_READ | libc::PROT_WRITE).unwrap();
        drop(p);
        drop(c);
        gate.arrive_and_wait()
    });
    gate.wait_ready();
    let path = f.path.clone();
    let second = || {
        let path = path.clone();
        fork_child(move || {
            // A fork of this process inherits the in-process tierd's descriptors, the
            // pools' among them: a real client has none of them.
            // SAFETY: closes descriptors this child does not use.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            if !become_user(U1, &[]) {
                return false;
            }
            let c = Client::connect(Some(&path)).unwrap();
            match c.pool_open("q2", 4096) {
                Ok(_) => true,
                Err(ClientError::Refused { errno, .. }) if errno == libc::EDQUOT => false,
                Err(e) => panic!("{e}"),
            }
        })
    };
    std::thread::sleep(super::pools::SWEEP_PERIOD);
    assert_eq!(
        exit_code(second()),
        1,
        "refused: the first pool is still mapped"
    );
    assert_eq!(f.server.hub.pools.lock().unwrap().count(U1), 1);
    gate.release();
    assert_eq!(exit_code(holder), 0);
    std::thread::sleep(super::pools::SWEEP_PERIOD);
    // Children other tests fork meanwhile inherit tierd's (in-process) descriptors for a
    // while: try until they are gone too.
    let t0 = std::time::Instant::now();
    loop {
        std::thread::sleep(super::pools::SWEEP_PERIOD);
        if exit_code(second()) == 0 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 30, "the first pool still counts");
    }
}

#[test]
fn pin_fast_quota_and_prefetch_budget_bind_users() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = fixture(|c| {
        c.client.max_pin_fast_bytes_per_uid = tierd_config::Bytes(4 * BLOCK);
        c.migrate.max_rate_mbps_per_uid = 1; // a 250 kB burst: under 4 blocks
    });
    open_to_all(&f);
    let gate = Gate::new();
    let path = f.path.clone();
    let child = fork_child(|| {
        if !become_user(U1, &[]) {
            return false;
        }
        let (_mem, base) = anon(64);
        let c = Client::connect(Some(&path)).unwrap();
        let r = c.register(base, 64 * BLOCK, BLOCK).unwrap();
        c.hint(r, HintKind::PinFast, &[0, 1, 2, 3]).unwrap();
        c.hint(r, HintKind::PinFast, &[2, 3, 4, 5]).unwrap(); // 6 > 4 blocks: ignored
        if !gate.arrive_and_wait() {
            return false;
        }
        // 8 blocks (512 KiB) every 20 ms, 25 MB/s, against a budget of 1 MB/s, until let
        // go (or given up: a child must end by itself when its test cannot go on).
        let (t0, mut i) = (Instant::now(), 0u64);
        loop {
            c.hint_range(r, HintKind::Prefetch, 8 + (i * 8) % 56, 8, 0)
                .unwrap();
            i += 1;
            if gate.released_within(20) {
                break true;
            }
            if gate.abandoned() || t0.elapsed() > CHILD_PATIENCE {
                break false;
            }
        }
    });
    gate.wait_ready();
    let ceil = &f.daemon.ceilings;
    wait_until("the second pin refused", || {
        ceil.counters.pin_refused_blocks.load(Ordering::Relaxed) == 4
    });
    assert_eq!(ceil.pinned_bytes(U1), 4 * BLOCK);
    gate.release();
    wait_until("prefetches past the budget skipped", || {
        ceil.counters
            .prefetch_throttled_blocks
            .load(Ordering::Relaxed)
            > 0
    });
    gate.release();
    assert_eq!(exit_code(child), 0);
    wait_until("pins released with the region", || {
        ceil.pinned_bytes(U1) == 0
    });
}

#[test]
fn region_ends_with_its_process_even_while_a_child_holds_the_socket() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = fixture(|_| {});
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let path = f.path.clone();
    let parent = fork_child(move || {
        let (_mem, base) = anon(4);
        let c = Client::connect(Some(&path)).unwrap();
        c.register(base, 4 * BLOCK, BLOCK).unwrap();
        // The grandchild inherits the socket and outlives us.
        // SAFETY: the grandchild only pauses until killed.
        let g = unsafe { libc::fork() };
        if g == 0 {
            loop {
                // SAFETY: no memory involved.
                unsafe { libc::pause() };
            }
        }
        let _ = nix::unistd::write(&wr, &g.to_le_bytes());
        std::mem::forget(c); // exit without closing anything
        true
    });
    assert_eq!(exit_code(parent), 0);
    let mut b = [0u8; 4];
    nix::unistd::read(rd.as_raw_fd(), &mut b).unwrap();
    let grandchild = i32::from_le_bytes(b);
    wait_until("the region ended with its process", || {
        f.server.hub.regions().is_empty()
    });
    // SAFETY: kill and reap nothing of ours but the grandchild (reparented to init or us).
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
}

#[test]
fn a_peer_that_changes_credentials_is_no_longer_served() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let f = fixture(|_| {});
    open_to_all(&f);
    let gate = Gate::new();
    let path = f.path.clone();
    let child = fork_child(|| {
        let (_mem, base) = anon(4);
        let c = Client::connect(Some(&path)).unwrap();
        c.register(base, 2 * BLOCK, BLOCK).unwrap();
        if !become_user(U1, &[]) {
            return false;
        }
        let r = c.register(base + 2 * BLOCK, BLOCK, BLOCK);
        if !gate.arrive_and_wait() {
            return false;
        }
        match r {
            Ok(_) => false,
            Err(ClientError::Refused { errno, message }) => {
                errno == libc::ESRCH && message.contains("changed its credentials")
            }
            // The refresher may have ended the connection first.
            Err(e) => matches!(e, ClientError::Closed) || e.errno() == libc::EPIPE,
        }
    });
    gate.wait_ready();
    wait_until("the region of the changed peer ended", || {
        f.server.hub.regions().is_empty()
    });
    gate.release();
    assert_eq!(exit_code(child), 0);
}

/// A child whose test process died (here: a middle process that exits without letting
/// it go) gives up by itself instead of waiting forever.
#[test]
fn an_abandoned_child_gives_up_by_itself() {
    let (verdict_rd, verdict_wr) = nix::unistd::pipe().unwrap();
    let middle = fork_child(|| {
        let gate = Gate::new();
        fork_child(|| {
            let released = gate.arrive_and_wait();
            let _ = nix::unistd::write(&verdict_wr, if released { b"r" } else { b"a" });
            true
        });
        gate.wait_ready();
        std::mem::forget(gate); // its Drop would let the child go
        true
    });
    drop(verdict_wr);
    assert_eq!(exit_code(middle), 0);
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(verdict_rd.as_fd(), PollFlags::POLLIN)];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(5_000u16)),
        Ok(1),
        "no verdict"
    );
    let mut b = [0u8];
    nix::unistd::read(verdict_rd.as_raw_fd(), &mut b).unwrap();
    assert_eq!(&b, b"a", "the abandoned child was let go?");
}
