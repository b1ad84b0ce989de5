//! Reconnection against a fake tierd: a thread that speaks the wire protocol on a Unix
//! socket and hands out real shared memory, which the test "kills" (closes every
//! connection) and starts again on the same path.

use super::*;
use crate::client::Client;
use crate::layout::{state, Geometry};
use crate::ring::Consumer;
use crate::shm::ShmView;
use crate::sock;
use crate::wire::{Reply, Request};
use memmap2::MmapRaw;
use nix::sys::socket::{
    accept4, bind, listen, shutdown, socket, AddressFamily, Backlog, Shutdown, SockFlag, SockType,
    UnixAddr,
};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A region the fake handed out: its id, what was registered, and its memory.
struct Given {
    id: u32,
    base: u64,
    len: u64,
    map: MmapRaw,
    geo: Geometry,
}

#[derive(Default)]
struct Seen {
    given: Vec<Given>,
    unregistered: Vec<u32>,
    conns: Vec<Arc<OwnedFd>>,
}

struct Fake {
    seen: Arc<Mutex<Seen>>,
    listener: Arc<OwnedFd>,
}

fn memfd(bytes: u64) -> OwnedFd {
    // SAFETY: memfd_create with a NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"tierd-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: memfd_create returned a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on the descriptor just created.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), bytes as i64) }, 0);
    fd
}

impl Fake {
    /// Listens on `path`; region ids start at `first_id`.
    fn start(path: &Path, first_id: u32) -> Fake {
        let _ = std::fs::remove_file(path);
        let l = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(l.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        listen(&l, Backlog::new(16).unwrap()).unwrap();
        let listener = Arc::new(l);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (l, s) = (listener.clone(), seen.clone());
        std::thread::spawn(move || {
            let next = Arc::new(Mutex::new(first_id));
            while let Ok(fd) = accept4(l.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                // SAFETY: accept4 returned a new descriptor nothing else owns.
                let conn = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
                s.lock().unwrap().conns.push(conn.clone());
                let (s, next) = (s.clone(), next.clone());
                std::thread::spawn(move || serve(&conn, &s, &next));
            }
        });
        Fake { seen, listener }
    }

    /// Dies: every connection and the listener shut down, as the kernel does for a
    /// killed process.
    fn kill(&self) {
        for c in &self.seen.lock().unwrap().conns {
            let _ = shutdown(c.as_raw_fd(), Shutdown::Both);
        }
        let _ = shutdown(self.listener.as_raw_fd(), Shutdown::Both);
    }

    fn registered(&self) -> Vec<(u32, u64, u64)> {
        let s = self.seen.lock().unwrap();
        s.given.iter().map(|g| (g.id, g.base, g.len)).collect()
    }

    /// The entries published so far in the ring of region `id`.
    fn entries(&self, id: u32) -> Vec<HintEntry> {
        let s = self.seen.lock().unwrap();
        let g = s.given.iter().find(|g| g.id == id).unwrap();
        // SAFETY: the mapping lives in `s` for the duration of the view.
        let v = unsafe { ShmView::from_raw(g.map.as_mut_ptr(), g.map.len(), g.geo) }.unwrap();
        let mut out = Vec::new();
        Consumer::new().drain(&v, id, 1024, &mut out).unwrap();
        out
    }
}

fn serve(conn: &OwnedFd, seen: &Mutex<Seen>, next: &Mutex<u32>) {
    let mut buf = vec![0u8; 4096];
    while let Ok(Some(p)) = sock::recv(conn, &mut buf) {
        let (seq, req) = Request::decode(&buf[..p.len]).unwrap();
        let (reply, fd) = match req {
            Request::Register {
                base,
                len,
                block_size,
            } => {
                let id = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let geo = Geometry::new(64, len / block_size, 4096).unwrap();
                let fd = memfd(geo.total_bytes);
                let map = MmapRaw::map_raw(&File::from(fd.try_clone().unwrap())).unwrap();
                // SAFETY: a fresh shared mapping of geo.total_bytes, kept in `seen`.
                let v = unsafe { ShmView::from_raw(map.as_mut_ptr(), map.len(), geo) }.unwrap();
                v.init_header(id, block_size, base);
                seen.lock().unwrap().given.push(Given {
                    id,
                    base,
                    len,
                    map,
                    geo,
                });
                let r = Reply::Registered {
                    region: id,
                    ring_entries: 64,
                    nblocks: geo.nblocks,
                    shm_bytes: geo.total_bytes,
                };
                (r, Some(fd))
            }
            Request::Unregister { region } => {
                seen.lock().unwrap().unregistered.push(region);
                (Reply::Done, None)
            }
            _ => (
                Reply::Error {
                    errno: libc::ENOSYS,
                    message: "fake".into(),
                },
                None,
            ),
        };
        let raw = fd.as_ref().map(|f| f.as_raw_fd());
        if sock::send(conn, &reply.encode(seq), raw).is_err() {
            return;
        }
    }
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn socket_path() -> (PathBuf, impl Drop) {
    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "tierd-reconnect-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    (dir.join("client.sock"), Dir(dir))
}

const BLOCK: u64 = 4096;

#[test]
fn a_restarted_tierd_gets_the_same_regions_under_the_same_ids() {
    let (path, _dir) = socket_path();
    let first = Fake::start(&path, 1);
    let c = Client::connect_with(
        Some(&path),
        Reconnect::Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
    )
    .unwrap();
    let (a, b) = (0x7000_0000_0000u64, 0x7100_0000_0000u64);
    assert_eq!(c.register(a, 16 * BLOCK, BLOCK).unwrap(), 1);
    assert_eq!(c.register(b, 32 * BLOCK, BLOCK).unwrap(), 2);
    c.hint(2, HintKind::PinFast, &[3, 4, 5, 9]).unwrap();
    c.hint(2, HintKind::Unpin, &[9]).unwrap();
    assert!(c.is_connected() && c.region(1).unwrap().is_live());
    let old = c.region(1).unwrap();

    // tierd dies: the header still says LIVE, the client must not believe it.
    first.kill();
    wait_for("disconnected", || !c.is_connected());
    assert_eq!(
        old.header().state.load(Ordering::Relaxed),
        state::LIVE,
        "a dead tierd leaves the header as it was"
    );
    assert!(!old.is_live());
    assert_eq!(old.stats().state, state::CLOSED);
    assert_eq!(
        c.hint(1, HintKind::Access, &[0, 1]).unwrap(),
        0,
        "nothing accepted"
    );
    assert!(
        c.register(a, BLOCK, BLOCK).is_err(),
        "calls fail while down"
    );

    // It comes back, numbering regions from 7 this time.
    let second = Fake::start(&path, 7);
    assert!(c.wait_connected(Duration::from_secs(10)));
    assert_eq!(c.reconnects(), 1);
    assert_eq!(
        second.registered(),
        vec![(7, a, 16 * BLOCK), (8, b, 32 * BLOCK)],
        "the same memory registered again, in id order"
    );
    // The application's ids still work, and entries carry the new connection's ids.
    let r1 = c.region(1).unwrap();
    assert!(r1.is_live() && r1.id() == 1 && r1.base() == a);
    assert!(!old.is_live(), "an old handle stays dead");
    assert_eq!(c.hint(1, HintKind::Access, &[0, 1]).unwrap(), 2);
    let e = second.entries(7);
    assert_eq!((e.len(), e[0].region, e[0].nblocks), (1, 7, 2));
    // PIN_FAST state replayed: blocks 3-5 (9 was unpinned).
    let pins = second.entries(8);
    assert_eq!(pins.len(), 1);
    assert_eq!(
        (
            pins[0].kind,
            pins[0].region,
            pins[0].first_block,
            pins[0].nblocks
        ),
        (HintKind::PinFast as u16, 8, 3, 3)
    );
    // A region registered now gets a fresh id, not one the application already holds.
    assert_eq!(c.register(0x7200_0000_0000, BLOCK, BLOCK).unwrap(), 9);
    c.unregister(1).unwrap();
    assert_eq!(second.seen.lock().unwrap().unregistered, vec![7]);
    assert!(c.region(1).is_err());

    // Down again: unregistering while down only forgets the region locally.
    second.kill();
    wait_for("disconnected again", || !c.is_connected());
    c.unregister(2).unwrap();
    let third = Fake::start(&path, 1);
    assert!(c.wait_connected(Duration::from_secs(10)));
    assert_eq!(c.reconnects(), 2);
    let got: Vec<u64> = third.registered().iter().map(|r| r.1).collect();
    assert_eq!(
        got,
        vec![0x7200_0000_0000],
        "only the region still registered"
    );
    drop(c); // joins the watcher
}

#[test]
fn never_stays_disconnected() {
    let (path, _dir) = socket_path();
    let first = Fake::start(&path, 1);
    let c = Client::connect_with(Some(&path), Reconnect::Never).unwrap();
    c.register(0x7000_0000_0000, BLOCK, BLOCK).unwrap();
    first.kill();
    wait_for("disconnected", || !c.is_connected());
    assert!(!c.region(1).unwrap().is_live());
    let second = Fake::start(&path, 1);
    assert!(!c.wait_connected(Duration::from_millis(300)));
    assert!(second.registered().is_empty());
}

#[test]
fn pins_are_kept_as_runs() {
    let p = PinSet::default();
    let e = |first, n| HintEntry {
        first_block: first,
        nblocks: n,
        ..HintEntry::default()
    };
    p.note(HintKind::Unpin, &[e(0, 4)], 200);
    assert!(p.runs().is_empty(), "unpinning nothing allocates nothing");
    p.note(HintKind::PinFast, &[e(60, 10), e(100, 1)], 200);
    p.note(HintKind::Access, &[e(0, 200)], 200);
    p.note(HintKind::Unpin, &[e(62, 2)], 200);
    assert_eq!(p.runs(), vec![(60, 2), (64, 6), (100, 1)]);
    let q = PinSet::default();
    q.copy_from(&p);
    assert_eq!(q.runs(), p.runs());
}
