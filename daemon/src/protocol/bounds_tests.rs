//! What a client cannot make tierd spend or keep, with the in-process server of
//! [`super::tests::fixture`]: descriptors attached to its messages (closed at once,
//! however many), a reply's descriptor it has no room for (its registration undone),
//! and hint entries while the tiering loop is stuck (left in its ring). Each test
//! fails with the bound removed.

use super::tests::{anon, exit_code, fixture, fork_child, wait_until, BLOCK};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tierd_client::{Client, ClientError, HintKind};

/// Descriptors attached (`SCM_RIGHTS`) to client messages, where no request takes
/// any: one, 8 (more than the 4 the receive buffer once had room for) and 64, with a
/// `/dev/null` among pipes' write ends. tierd answers as without them and closes every
/// one (the pipes' read ends hang up once our copies are closed too); the connection
/// and the next client are served.
#[test]
fn descriptors_attached_to_client_messages_are_closed_and_ignored() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::{AsFd, OwnedFd, RawFd};
    use tierd_client::{sock, wire};
    let f = fixture(|_| {});
    let fd = super::tests::raw_connection(&f);
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let ask = |buf: &[u8], fds: &[RawFd]| {
        let rights = [ControlMessage::ScmRights(fds)];
        let iov = [std::io::IoSlice::new(buf)];
        sendmsg::<()>(fd.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None).unwrap();
        let mut rbuf = [0u8; wire::MAX_MESSAGE];
        let p = sock::recv(&fd, &mut rbuf)
            .unwrap()
            .expect("tierd kept the connection");
        assert!(p.fd.is_none() && !p.fds_lost);
        wire::Reply::decode(&rbuf[..p.len]).unwrap().1
    };
    let hung_up = |r: &OwnedFd| {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO) == Ok(1)
            && fds[0]
                .revents()
                .is_some_and(|e| e.contains(PollFlags::POLLHUP))
    };
    for (seq, n) in [(1u32, 1usize), (2, 8), (3, 64)] {
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..n).map(|_| nix::unistd::pipe().unwrap()).collect();
        let mut raw: Vec<RawFd> = pipes.iter().map(|p| p.1.as_raw_fd()).collect();
        if n > 1 {
            raw[n / 2] = devnull.as_raw_fd();
        }
        let advise = wire::Request::Advise {
            bytes: 4096,
            tier: 0,
        };
        assert!(matches!(
            ask(&advise.encode(seq), &raw),
            wire::Reply::Advice { node: 0, .. }
        ));
        let reads: Vec<OwnedFd> = pipes
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| n == 1 || i != n / 2)
            .map(|(_, (r, _w))| r)
            .collect();
        wait_until("tierd closed every descriptor it was sent", || {
            reads.iter().all(hung_up)
        });
    }
    // A malformed message with a descriptor: refused as without it, and closed.
    let (r, w) = nix::unistd::pipe().unwrap();
    let refused = ask(b"garbage", &[w.as_raw_fd()]);
    assert!(matches!(refused, wire::Reply::Error { errno, .. } if errno == libc::EPROTO));
    drop(w);
    wait_until("the malformed message's descriptor closed", || hung_up(&r));
    let c = Client::connect(Some(&f.path)).unwrap();
    assert!(c.advise(4096, 0).is_ok(), "the next client is served");
}

/// A client at its `RLIMIT_NOFILE` cannot take the shared memory of the region it
/// registers: the error says so with the numbers, the registration is undone (the one
/// region the quota allows is free again) and the next one, with room, succeeds.
#[test]
fn a_client_at_its_descriptor_limit_is_told_so() {
    let f = fixture(|c| c.client.max_regions_per_uid = 1);
    let path = f.path.clone();
    let child = fork_child(move || {
        let (_mem, base) = anon(1);
        let Ok(c) = Client::connect(Some(&path)) else {
            return false;
        };
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit we own.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let saved = lim;
        // The lowest free descriptor number as the limit: no new descriptor fits.
        // SAFETY: F_GETFD reads a descriptor's flags; no memory involved.
        let lowest = (0..).find(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0);
        lim.rlim_cur = lowest.unwrap_or(0) as u64;
        // SAFETY: setrlimit reads one rlimit we own.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        let err = c.register(base, BLOCK, BLOCK);
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
        let told = match &err {
            Err(e @ ClientError::DescriptorLimit { what, soft, .. }) => {
                let text = e.to_string();
                *what == "register"
                    && *soft == lim.rlim_cur
                    && e.errno() == libc::EMFILE
                    && text.contains("descriptor limit reached: raise RLIMIT_NOFILE")
                    && text.contains(&format!("soft {soft}"))
            }
            _ => false,
        };
        if !told {
            eprintln!("{err:?}");
        }
        told && c.register(base, BLOCK, BLOCK).is_ok()
    });
    assert_eq!(
        exit_code(child),
        0,
        "the child was told, and registered after"
    );
}

/// While the heat tables' owner is stuck, the hint poller stops taking entries once
/// [`super::poller::MAX_BACKLOG_ENTRIES`] wait for it: the rest stay in the client's
/// ring (the client sees ring-full drops), not in tierd's memory, and are taken once
/// the owner runs again.
#[test]
fn a_stalled_heat_owner_leaves_hints_in_the_rings() {
    use super::poller::{BUDGET, MAX_BACKLOG_ENTRIES};
    let f = fixture(|_| {});
    let (_mem, base) = anon(8);
    let c = Client::connect(Some(&f.path)).unwrap();
    let region = c.register(base, 8 * BLOCK, BLOCK).unwrap();
    let r = c.region(region).unwrap();
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s = stalled.clone();
    f.daemon.heat.edit(0, move |_| {
        while s.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let batch = vec![
        tierd_client::layout::HintEntry {
            kind: HintKind::Access as u16,
            region,
            nblocks: 1,
            ..Default::default()
        };
        256
    ];
    // Push for 300 ms after the poller took the cap's worth.
    let t0 = Instant::now();
    let mut since = None;
    while since.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(300)) {
        r.push(&batch);
        if since.is_none() && r.stats().applied_entries >= MAX_BACKLOG_ENTRIES as u64 {
            since = Some(Instant::now());
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", r.stats());
        std::thread::sleep(Duration::from_micros(200));
    }
    let st = r.stats();
    assert!(
        st.applied_entries <= (MAX_BACKLOG_ENTRIES + BUDGET) as u64,
        "the poller kept taking entries: {st:?}"
    );
    assert!(st.dropped_entries > 0, "{st:?}");
    assert_eq!(
        st.published_entries - st.applied_entries,
        1024,
        "a full ring"
    );
    stalled.store(false, Ordering::Release);
    wait_until("every entry taken and applied", || {
        let st = r.stats();
        st.published_entries == st.applied_entries
            && f.server.hub.hint_backlog.load(Ordering::Acquire) == 0
    });
}
