//! Hostile connection loads against the real `tierd` binary on temporary sockets (on a
//! one-node host it runs in monitor-only mode), run as root on the host:
//!
//! - 1,000 idle connections held on each socket by 100 non-root uids in the sockets'
//!   group: the control socket admits up to its total less root's reserve and refuses
//!   the rest with a `busy` line, the client socket holds all 1,000, and root's
//!   `status` still answers (timed, printed);
//! - the per-uid cap refuses a user's (cap+1)th connection on each socket with a clear
//!   error (JSON `busy`; wire ERROR `EAGAIN`) while root still gets through;
//! - a slow writer (half a request line, then nothing) is cut at
//!   `daemon.request_timeout_ms` while other callers are answered, and a client that
//!   does not read its replies is dropped at `client.write_timeout_ms`;
//! - with `RLIMIT_NOFILE` lowered under tierd, connections are refused with "out of
//!   file descriptors" and the accept loop does not spin (tierd's CPU time over 3 s).
//!
//! Non-root callers are forked children that switch uid/gid and then use raw
//! syscalls only (no allocation), and report over a pipe.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tierd_api::{ErrorKind, Request, Response, StatusReply};
use tierd_client::wire;

#[path = "common/control.rs"]
mod control;
use control::Killed;

/// The sockets' group and the first test uid: unused ids, no passwd entries needed.
const GID: u32 = 40_000;
const UID0: u32 = 41_000;

struct Daemon {
    child: Killed,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    /// Starts tierd with `extra` appended to the `[daemon]` and `[client]` sections
    /// and `nofile` as its open-file limit; returns once `status` answers.
    fn start(daemon_extra: &str, client_extra: &str, nofile: u64) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        // Non-root callers must reach the sockets inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let cfg = d.join("tierd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[daemon]\nsocket = \"{d}/tierd.sock\"\nstate_dir = \"{d}/state\"\n\
                 socket_group = \"{GID}\"\n{daemon_extra}\n\
                 [client]\nsocket = \"{d}/client.sock\"\nsocket_group = \"{GID}\"\n\
                 {client_extra}\n\
                 [metrics]\nlisten = \"127.0.0.1:0\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        let log = d.join("tierd.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierd"));
        cmd.arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // Raising the hard limit needs CAP_SYS_RESOURCE, which a container may lack.
        let hard = nofile_limit(0).rlim_max;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: nofile.min(hard),
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let t = Daemon {
            child: Killed(cmd.spawn().unwrap()),
            dir,
            log,
        };
        let end = Instant::now() + Duration::from_secs(30);
        // Ready when status answers and main has installed its signal handlers (its
        // last step), so the test's limits do not hit start-up.
        while !(t.ctl().exists()
            && t.cli().exists()
            && t.try_call(&Request::Status).is_ok()
            && t.catches(libc::SIGTERM))
        {
            assert!(
                Instant::now() < end,
                "tierd did not start:\n{}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// Whether tierd has a handler for `sig` (SigCgt in /proc/PID/status).
    fn catches(&self, sig: i32) -> bool {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (sig - 1)) != 0)
    }

    fn ctl(&self) -> PathBuf {
        self.dir.path().join("tierd.sock")
    }

    fn cli(&self) -> PathBuf {
        self.dir.path().join("client.sock")
    }

    fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_call(&self, req: &Request) -> std::io::Result<Response> {
        self.held_call(req).map(|(r, _)| r)
    }

    /// One request on a new connection, and the connection (for tests that hold it).
    fn held_call(&self, req: &Request) -> std::io::Result<(Response, UnixStream)> {
        let mut s = UnixStream::connect(self.ctl())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        s.write_all(&line)?;
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply)?;
        let r = serde_json::from_str(&reply)
            .map_err(|e| std::io::Error::other(format!("{reply:?}: {e}")))?;
        Ok((r, s))
    }

    /// Root's `status`, and how long it took.
    fn timed_status(&self) -> Duration {
        let t = Instant::now();
        match self.try_call(&Request::Status) {
            Ok(Response::Ok { result, .. }) => {
                serde_json::from_value::<StatusReply>(result).unwrap();
            }
            other => panic!("status failed: {other:?}\n{}", self.log_text()),
        }
        t.elapsed()
    }

    /// user + system CPU time of the daemon so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the comm.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Resident memory of the daemon, KiB.
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    fn wait_connection_threads(&self, n: usize) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.connection_threads() != n {
            assert!(
                Instant::now() < end,
                "{} connection threads, not {n}",
                self.connection_threads()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Threads named `tierd-ctl-conn` / `tierd-client-conn` (cut to 15 bytes).
    fn connection_threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .filter(|c| c.starts_with("tierd-ctl-conn") || c.starts_with("tierd-client-co"))
            .count()
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .count()
    }
}

/// RLIMIT_NOFILE of `pid` (0: this process).
fn nofile_limit(pid: i32) -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit only reads into lim.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) };
    assert_eq!(rc, 0, "prlimit");
    lim
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A `sockaddr_un` for `path`, built before fork so the child need not allocate.
fn addr(path: &Path) -> libc::sockaddr_un {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < a.sun_path.len());
    for (d, s) in a.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    a
}

/// Raw syscalls for the forked children (no allocation after fork).
mod raw {
    use super::*;

    pub fn connect(a: &libc::sockaddr_un, ty: libc::c_int) -> RawFd {
        // SAFETY: plain syscalls on a fresh descriptor and a valid sockaddr_un.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return -1;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (a as *const libc::sockaddr_un).cast(), len) != 0 {
                libc::close(fd);
                return -1;
            }
            fd
        }
    }

    pub fn send(fd: RawFd, buf: &[u8]) -> isize {
        // SAFETY: buf is valid for its length.
        unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
    }

    /// Reads until a newline (stream) or one packet (seqpacket) into buf; bytes read.
    pub fn recv_reply(fd: RawFd, buf: &mut [u8], packet: bool) -> usize {
        let mut n = 0;
        while n < buf.len() {
            // SAFETY: the destination is the unused tail of buf.
            let r = unsafe { libc::recv(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n, 0) };
            if r <= 0 {
                break;
            }
            n += r as usize;
            if packet || buf[..n].contains(&b'\n') {
                break;
            }
        }
        n
    }

    /// Whether the daemon has already answered or closed `fd` (a refusal).
    pub fn answered(fd: RawFd) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: one byte into b, without waiting and without consuming it.
        let r = unsafe {
            libc::recv(
                fd,
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_PEEK,
            )
        };
        r >= 0
    }

    pub fn write_all(fd: RawFd, buf: &[u8]) {
        // SAFETY: buf is valid for its length; a short write to a pipe of <= PIPE_BUF
        // bytes does not happen.
        unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    }

    pub fn sleep_ms(ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// A forked child running as a non-root user.
struct UserChild {
    pid: libc::pid_t,
    out: std::fs::File,
}

impl UserChild {
    /// Forks; the child drops to `uid`:GID (with GID as its supplementary group when
    /// `in_group`, else none), runs `f` with the write end of its report pipe, then
    /// waits to be killed.
    fn spawn(uid: u32, in_group: bool, f: impl FnOnce(RawFd)) -> UserChild {
        let mut p = [0; 2];
        // SAFETY: pipe2 fills the two-int array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only makes syscalls (set*id, sockets, pipe writes, sleeps)
        // and ends in _exit or pause; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: as above; set*id on our own process.
            unsafe {
                // Outside the group: primary gid GID + 1 and no supplementary groups.
                let (gid, n) = if in_group { (GID, 1) } else { (GID + 1, 0) };
                if libc::setgroups(n, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0
                {
                    libc::_exit(3);
                }
                libc::close(p[0]);
                f(p[1]);
                loop {
                    libc::pause();
                }
            }
        }
        // SAFETY: p[1] is ours and no longer needed here; p[0] becomes the File.
        unsafe { libc::close(p[1]) };
        UserChild {
            pid,
            // SAFETY: p[0] is a pipe read end that nothing else owns.
            out: std::fs::File::from(unsafe { OwnedFd::from_raw_fd(p[0]) }),
        }
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.out.read_exact(&mut buf).expect("child report");
        buf
    }
}

impl Drop for UserChild {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
}

#[test]
fn sockets_get_the_configured_group_and_mode() {
    let t = Daemon::start(
        "socket_mode = \"0640\"\n",
        "socket_mode = \"0660\"\n",
        65_536,
    );
    let ctl = std::fs::metadata(t.ctl()).unwrap();
    let cli = std::fs::metadata(t.cli()).unwrap();
    assert_eq!((ctl.gid(), ctl.mode() & 0o777), (GID, 0o640));
    assert_eq!((cli.gid(), cli.mode() & 0o777), (GID, 0o660));
    // A user outside the group is refused by the kernel (EACCES); one in it connects.
    let a = addr(&t.cli());
    let mut outsider = UserChild::spawn(UID0, false, |out| {
        let ok = raw::connect(&a, libc::SOCK_SEQPACKET) >= 0;
        raw::write_all(out, &[ok as u8]);
    });
    let mut member = UserChild::spawn(UID0 + 1, true, |out| {
        let ok = raw::connect(&a, libc::SOCK_SEQPACKET) >= 0;
        raw::write_all(out, &[ok as u8]);
    });
    assert_eq!(
        outsider.read_exact(1),
        [0],
        "a user outside the group connected"
    );
    assert_eq!(
        member.read_exact(1),
        [1],
        "a member of the group could not connect"
    );
}

#[test]
fn a_thousand_idle_connections_per_socket_do_not_stop_status() {
    const USERS: u32 = 100;
    const PER_USER: u32 = 10;
    let t = Daemon::start("", "", 65_536);
    let (before_threads, before_rss) = (t.threads(), t.rss_kib());
    let quiet = {
        let mut v: Vec<Duration> = (0..20).map(|_| t.timed_status()).collect();
        v.sort();
        v
    };
    t.wait_connection_threads(0);
    let (ctl, cli) = (addr(&t.ctl()), addr(&t.cli()));
    let t0 = Instant::now();
    let mut children: Vec<UserChild> = (0..USERS)
        .map(|i| {
            UserChild::spawn(UID0 + i, true, |out| {
                let mut fds = [[-1; PER_USER as usize]; 2];
                let [c, k] = &mut fds;
                for (c, k) in c.iter_mut().zip(k) {
                    *c = raw::connect(&ctl, libc::SOCK_STREAM);
                    *k = raw::connect(&cli, libc::SOCK_SEQPACKET);
                }
                // Refused connections are answered within the 1 s linger.
                raw::sleep_ms(1500);
                let mut report = [0u8; 8];
                for (s, fds) in fds.iter().enumerate() {
                    let held = fds.iter().filter(|&&f| f >= 0 && !raw::answered(f)).count();
                    report[4 * s..4 * s + 4].copy_from_slice(&(held as u32).to_le_bytes());
                }
                raw::write_all(out, &report);
            })
        })
        .collect();
    let (mut held_ctl, mut held_cli) = (0, 0);
    for c in &mut children {
        let r = c.read_exact(8);
        held_ctl += u32_at(&r, 0);
        held_cli += u32_at(&r, 1);
    }
    let setup = t0.elapsed();
    // Under load: root's status, 50 times.
    let mut loaded: Vec<Duration> = (0..50).map(|_| t.timed_status()).collect();
    loaded.sort();
    // Another non-root user is refused on the full control socket, with a reason.
    let a = ctl;
    let mut late = UserChild::spawn(UID0 + USERS, true, |out| {
        let fd = raw::connect(&a, libc::SOCK_STREAM);
        raw::send(fd, b"{\"cmd\":\"status\"}\n");
        let mut buf = [0u8; 1024];
        let n = raw::recv_reply(fd, &mut buf, false);
        raw::write_all(out, &(n as u32).to_le_bytes());
        raw::write_all(out, &buf[..n]);
    });
    let n = u32_at(&late.read_exact(4), 0) as usize;
    let reply: Response = serde_json::from_slice(&late.read_exact(n)).unwrap();
    let Response::Err { error, .. } = reply else {
        panic!("a non-root caller got in past the reserve: {reply:?}");
    };
    assert_eq!(error.kind, ErrorKind::Busy);
    assert!(error.message.contains("root"), "{}", error.message);
    let (fds, threads, rss) = (t.open_fds(), t.threads(), t.rss_kib());
    eprintln!(
        "1,000 idle connections per socket from {USERS} uids (set up in {setup:?}): \
         control held {held_ctl}, client held {held_cli}; tierd fds {fds}, threads \
         {before_threads} -> {threads}, RSS {before_rss} -> {rss} KiB; root status p50 {:?} p99 {:?} max {:?} \
         (quiet: p50 {:?} max {:?})",
        percentile(&loaded, 0.5),
        percentile(&loaded, 0.99),
        loaded[loaded.len() - 1],
        percentile(&quiet, 0.5),
        quiet[quiet.len() - 1],
    );
    // Defaults: 128 control connections of which 8 are root's; client 1024 in total.
    assert_eq!(held_ctl, 120);
    assert_eq!(held_cli, USERS * PER_USER);
    assert!(
        loaded[loaded.len() - 1] < Duration::from_secs(1),
        "{loaded:?}"
    );
    let log = t.log_text();
    let refusals = log.matches("connection refused").count();
    assert!(
        (1..=3).contains(&refusals),
        "refusals are logged once per 10 s, got {refusals} lines"
    );
    drop(children);
    // The slots come back when the holders go: no connection thread is left.
    t.wait_connection_threads(0);
}

#[test]
fn the_per_uid_cap_refuses_the_next_connection_while_root_gets_through() {
    const CAP: usize = 4;
    let t = Daemon::start(
        &format!("max_connections_per_uid = {CAP}\n"),
        &format!("max_connections_per_uid = {CAP}\n"),
        65_536,
    );
    let (ctl, cli) = (addr(&t.ctl()), addr(&t.cli()));
    let advise = wire::Request::Advise {
        bytes: 4096,
        tier: 0,
    }
    .encode(7);
    let advise = advise.as_slice();
    let mut user = UserChild::spawn(UID0, true, |out| {
        let mut buf = [0u8; 2048];
        // CAP control connections that each get a status answered, then one more.
        let mut ok = 0u32;
        for _ in 0..CAP {
            let fd = raw::connect(&ctl, libc::SOCK_STREAM);
            raw::send(fd, b"{\"cmd\":\"status\"}\n");
            let n = raw::recv_reply(fd, &mut buf, false);
            if buf[..n].starts_with(b"{\"ok\":true") {
                ok += 1;
            }
        }
        let fd = raw::connect(&ctl, libc::SOCK_STREAM);
        raw::send(fd, b"{\"cmd\":\"status\"}\n");
        let n = raw::recv_reply(fd, &mut buf, false);
        raw::write_all(out, &ok.to_le_bytes());
        raw::write_all(out, &(n as u32).to_le_bytes());
        raw::write_all(out, &buf[..n]);
        // The same on the client socket, with ADVISE.
        let mut ok = 0u32;
        for _ in 0..CAP {
            let fd = raw::connect(&cli, libc::SOCK_SEQPACKET);
            raw::send(fd, advise);
            let n = raw::recv_reply(fd, &mut buf, true);
            if n >= 8 && buf[6] == 0x84 {
                ok += 1;
            }
        }
        let fd = raw::connect(&cli, libc::SOCK_SEQPACKET);
        raw::send(fd, advise);
        let n = raw::recv_reply(fd, &mut buf, true);
        raw::write_all(out, &ok.to_le_bytes());
        raw::write_all(out, &(n as u32).to_le_bytes());
        raw::write_all(out, &buf[..n]);
    });
    let head = user.read_exact(8);
    assert_eq!(u32_at(&head, 0), CAP as u32, "the user's first {CAP} calls");
    let line = user.read_exact(u32_at(&head, 1) as usize);
    let reply: Response = serde_json::from_slice(&line).unwrap();
    let Response::Err { error, .. } = reply else {
        panic!("connection {} was admitted: {reply:?}", CAP + 1);
    };
    assert_eq!(error.kind, ErrorKind::Busy);
    assert!(
        error
            .message
            .contains(&format!("daemon.max_connections_per_uid = {CAP}")),
        "{}",
        error.message
    );
    let head = user.read_exact(8);
    assert_eq!(
        u32_at(&head, 0),
        CAP as u32,
        "the user's first {CAP} clients"
    );
    let packet = user.read_exact(u32_at(&head, 1) as usize);
    let (seq, reply) = wire::Reply::decode(&packet).unwrap();
    assert_eq!(seq, 7, "the refusal answers the request");
    let wire::Reply::Error { errno, message } = reply else {
        panic!("client connection {} was admitted: {reply:?}", CAP + 1);
    };
    assert_eq!(errno, libc::EAGAIN);
    assert!(
        message.contains(&format!("client.max_connections_per_uid = {CAP}")),
        "{message}"
    );
    eprintln!("refused: {:?} / {message:?}", error.message);
    // Root is not held to the per-uid cap: more than CAP at once, all answered.
    let root: Vec<UnixStream> = (0..CAP + 2)
        .map(|_| UnixStream::connect(t.ctl()).unwrap())
        .collect();
    let took = t.timed_status();
    let client = tierd_client::Client::connect(Some(&t.cli())).unwrap();
    client.advise(4096, 0).unwrap();
    drop(root);
    eprintln!("root status while the user is at the cap: {took:?}");
}

#[test]
fn root_gets_in_when_idle_connections_fill_the_control_socket() {
    let t = Daemon::start(
        "max_connections = 16\nroot_reserved_connections = 2\n",
        "",
        65_536,
    );
    // Root's own idle connections (a leaky script) fill the socket, once the start-up
    // probes' threads have gone.
    t.wait_connection_threads(0);
    let idle: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(t.ctl()).unwrap())
        .collect();
    t.wait_connection_threads(16);
    // Not idle for a second yet: root is refused, with the reason.
    let first = t.try_call(&Request::Status);
    let Ok(Response::Err { error, .. }) = first else {
        panic!("a 17th connection at once: {first:?}");
    };
    assert_eq!(error.kind, ErrorKind::Busy);
    std::thread::sleep(Duration::from_millis(1200));
    let took = t.timed_status();
    // Exactly one idle connection was closed for it, with a line saying why.
    let mut evicted = Vec::new();
    for mut s in idle {
        s.set_nonblocking(true).unwrap();
        let mut out = String::new();
        if s.read_to_string(&mut out).is_ok() {
            evicted.push(out);
        }
    }
    eprintln!("root status with 16 idle connections open: {took:?}; evicted {evicted:?}");
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert!(evicted[0].contains("make room for root"), "{evicted:?}");
}

#[test]
fn a_slow_writer_is_cut_without_blocking_others() {
    let t = Daemon::start(
        "request_timeout_ms = 1000\n",
        "write_timeout_ms = 1000\n",
        65_536,
    );
    // Half a request, then nothing.
    let mut slow = UnixStream::connect(t.ctl()).unwrap();
    slow.write_all(b"{\"cmd\":\"sta").unwrap();
    let t0 = Instant::now();
    let mut others: Vec<Duration> = (0..10)
        .map(|_| {
            let d = t.timed_status();
            std::thread::sleep(Duration::from_millis(50));
            d
        })
        .collect();
    others.sort();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    let cut = t0.elapsed();
    let Ok(Response::Err { error, .. }) = serde_json::from_str::<Response>(&reply) else {
        panic!("slow writer: {reply:?}");
    };
    assert_eq!(error.kind, ErrorKind::BadRequest);
    assert!(
        error.message.contains("request_timeout_ms"),
        "{}",
        error.message
    );
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(10),
        "cut after {cut:?}"
    );
    assert!(
        others[others.len() - 1] < Duration::from_millis(900),
        "{others:?}"
    );

    // A client that sends requests and never reads the replies: once its receive
    // queue is full tierd cannot write, and drops it at client.write_timeout_ms.
    let fd = raw::connect(&addr(&t.cli()), libc::SOCK_SEQPACKET);
    assert!(fd >= 0);
    // SAFETY: fd is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = wire::Request::Advise {
        bytes: 4096,
        tier: 0,
    };
    // Send until both directions are full: sends fail for 300 ms in a row.
    let mut sent = 0u32;
    let t1 = Instant::now();
    let mut last_sent = Instant::now();
    while last_sent.elapsed() < Duration::from_millis(300) {
        assert!(t1.elapsed() < Duration::from_secs(10), "tierd kept reading");
        let buf = req.encode(sent + 1);
        // SAFETY: buf is valid for its length.
        let r = unsafe {
            libc::send(
                sock.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if r < 0 {
            std::thread::sleep(Duration::from_millis(10));
        } else {
            sent += 1;
            last_sent = Instant::now();
        }
    }
    std::thread::sleep(Duration::from_millis(2000));
    // Now read: the queued replies, then end of stream (tierd closed it).
    let mut replies = 0;
    let mut buf = [0u8; 1024];
    let closed = loop {
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 3000) } <= 0 {
            break false;
        }
        // tierd closing with our requests unread resets the connection, which a
        // seqpacket socket reports before the replies still queued.
        match tierd_client::sock::recv(&sock, &mut buf) {
            Ok(Some(_)) => replies += 1,
            Ok(None) | Err(nix::errno::Errno::ECONNRESET) => break true,
            Err(e) => panic!("non-reading client: {e}"),
        }
    };
    eprintln!(
        "slow writer cut after {cut:?} (others' status max {:?}); non-reading client: \
         {sent} requests sent, {replies} replies read, then dropped: {closed}",
        others[others.len() - 1]
    );
    assert!(closed, "tierd kept a client that does not read its replies");
    assert!(replies < sent, "{replies} of {sent}");
    // tierd goes on.
    t.timed_status();
}

#[test]
fn out_of_descriptors_refuses_without_spinning() {
    out_of_descriptors(8);
}

/// A held control connection costs tierd two descriptors (the socket and the peer's
/// pidfd), so an odd number of spare ones runs out between the accept and the pidfd:
/// that connection must be refused with a reason too, not dropped.
#[test]
fn out_of_descriptors_between_accept_and_pidfd_is_refused_politely() {
    out_of_descriptors(9);
}

fn out_of_descriptors(spare: u64) {
    let t = Daemon::start("", "", 65_536);
    // Lower tierd's open-file limit to what it holds at rest plus a few. At rest: once
    // its start-up is over (the sampling backends load their BPF objects and DAMON
    // after the sockets answer, and keep those descriptors), i.e. the count has not
    // changed for a second; other threads open files now and then, so the least of
    // the last looks.
    let mut looks: Vec<u64> = Vec::new();
    let t0 = Instant::now();
    while looks.len() < 10
        || looks[looks.len() - 10..]
            .iter()
            .any(|&n| n != looks[looks.len() - 1])
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "tierd's descriptors never settle"
        );
        std::thread::sleep(Duration::from_millis(100));
        looks.push(t.open_fds() as u64);
    }
    let open = *looks[looks.len() - 10..].iter().min().unwrap();
    let lim = libc::rlimit {
        rlim_cur: open + spare,
        rlim_max: nofile_limit(t.pid()).rlim_max,
    };
    // SAFETY: prlimit on our child with a valid rlimit.
    let rc = unsafe { libc::prlimit(t.pid(), libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit");
    // Root's connections take the remaining descriptors (each is answered once and
    // then held) until one is refused.
    let mut held = Vec::new();
    let mut first_refusal = None;
    while first_refusal.is_none() {
        assert!(held.len() < 40, "40 connections and no refusal");
        let mut s = UnixStream::connect(t.ctl()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        match serde_json::from_str::<Response>(&line).unwrap() {
            Response::Ok { .. } => held.push(s),
            Response::Err { error, .. } => first_refusal = Some(error),
        }
    }
    let first_refusal = first_refusal.unwrap();
    assert_eq!(first_refusal.kind, ErrorKind::Busy);
    // ... and the next ones are refused, even root's, with a reason: five of them (each
    // waits out the accept back-off, up to 250 ms; a loaded host stretches that, so the
    // count, not the clock, ends the loop). A call may be served when one of tierd's
    // threads has just closed a file it held while the rest count was taken (on a
    // loaded host BPF loading can look settled): that connection is held too, so the
    // descriptors stay used up.
    let mut refused = 0;
    let mut served = 0;
    let mut messages = Vec::new();
    let cpu0 = t.cpu_time();
    let t0 = Instant::now();
    while refused < 5 && t0.elapsed() < Duration::from_secs(30) {
        match t.held_call(&Request::Status) {
            Ok((Response::Err { error, .. }, _)) if error.kind == ErrorKind::Busy => {
                refused += 1;
                if messages.is_empty() {
                    messages.push(error.message);
                }
            }
            Ok((Response::Ok { .. }, s)) => {
                served += 1;
                held.push(s);
            }
            other => messages.push(format!("{:?}", other.map(|(r, _)| r))),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refusing = t0.elapsed();
    // Plus connections left waiting in the backlog the whole time.
    let pending: Vec<UnixStream> = (0..20)
        .map(|_| {
            UnixStream::connect(t.ctl())
                .unwrap_or_else(|e| panic!("connect: {e}; tierd log:\n{}", t.log_text()))
        })
        .collect();
    let cpu_busy = t.cpu_time() - cpu0;
    let refusing_and_connecting = t0.elapsed();
    let t1 = Instant::now();
    let cpu1 = t.cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let cpu_pending = t.cpu_time() - cpu1;
    eprintln!(
        "out of descriptors after {} held connections: {refused} calls refused \
         ({served} served) in {refusing:?} ({messages:?}); tierd CPU \
         {cpu_busy:?} over {refusing_and_connecting:?} of refusals, {cpu_pending:?} over \
         {:?} with 20 connections pending",
        held.len(),
        t1.elapsed()
    );
    assert!(
        refused >= 5,
        "{refused} refused, {served} served; {messages:?}"
    );
    assert!(
        messages[0].contains("out of file descriptors"),
        "{messages:?}"
    );
    // Refusals are paced by the back-off: an accept loop spinning on EMFILE would
    // take a whole CPU; 20 % of the time is the bound (it was 600 ms in 3 s).
    assert!(
        cpu_busy < refusing_and_connecting / 5,
        "{cpu_busy:?} over {refusing_and_connecting:?}"
    );
    assert!(cpu_pending < Duration::from_millis(300), "{cpu_pending:?}");
    // One log line per burst of failures, not one per failure: a served call ends a
    // burst ("accept recovered"), so each one may start another.
    let log = t.log_text();
    let bursts = log.matches("accept failed").count();
    assert!(
        (1..=3 + served).contains(&bursts),
        "one log line per burst, got {bursts} with {refused} refused and {served} served"
    );
    // Descriptors come back: root is served again.
    drop(pending);
    drop(held);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Response::Ok { .. }) = t.try_call(&Request::Status) {
            break;
        }
        assert!(
            Instant::now() < end,
            "tierd did not recover:\n{}",
            t.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(t.log_text().contains("accept recovered"));
}
