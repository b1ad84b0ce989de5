//! The permission matrix against the real `tierd` binary: callers with chosen
//! credentials (a plain user, another user, root, a set-uid-root program's credentials,
//! a saved uid of 0, a user still holding permitted capabilities) send every control
//! request that names a pid (`placement`, `migrate`, `heat`, `manage`, `unmanage`) for
//! targets of every kind (root's process, each user's, a non-dumpable one, a set-uid
//! one, one with saved uid 0, one holding capabilities). Each reply must match the
//! kernel's own verdict for that caller and target: a child with the caller's exact
//! credentials calling move_pages(2) on the target. Also: the priority ceiling, the
//! refusal message, and the metrics counter. Needs root (skipped otherwise); callers and
//! targets are forked from this test and take their credentials with raw syscalls.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tierd_api::{ErrorKind, MetricsReply, Request, Response};

/// This binary's scratch uids ([`scratch`]).
const SCRATCH_UID_BASE: u32 = 64_200;

#[path = "common/control.rs"]
mod control;
use control::{call, Killed};

#[path = "common/scratch.rs"]
mod scratch;
use scratch::*;

/// Sends `reqs` on one control connection as `spec`; returns the replies. The child
/// only makes raw calls on buffers prepared here.
fn call_as(socket: &Path, spec: &Spec, reqs: &[Request]) -> Vec<Response> {
    let mut out = Vec::new();
    for r in reqs {
        out.extend(serde_json::to_vec(r).unwrap());
        out.push(b'\n');
    }
    // SAFETY: sockaddr_un is plain old data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr
        .sun_path
        .iter_mut()
        .zip(socket.as_os_str().as_encoded_bytes())
    {
        *d = *s as libc::c_char;
    }
    let want = reqs.len();
    let mut buf = vec![0u8; 4 << 20];
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let (rfd, wfd) = (rd.as_raw_fd(), wr.as_raw_fd());
    // SAFETY: the child makes raw syscalls on the buffers above, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: fork child; raw calls on our copies of `out`, `addr`, `buf`.
        unsafe {
            become_spec(spec);
            libc::close(rfd);
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(s, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
                libc::_exit(2);
            }
            if libc::write(s, out.as_ptr().cast(), out.len()) != out.len() as isize {
                libc::_exit(3);
            }
            let (mut got, mut lines) = (0usize, 0usize);
            while lines < want && got < buf.len() {
                let n = libc::read(s, buf.as_mut_ptr().add(got).cast(), buf.len() - got);
                if n <= 0 {
                    break;
                }
                lines += buf[got..got + n as usize]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                got += n as usize;
            }
            let mut off = 0;
            while off < got {
                let n = libc::write(wfd, buf.as_ptr().add(off).cast(), got - off);
                if n <= 0 {
                    libc::_exit(4);
                }
                off += n as usize;
            }
            libc::_exit(0)
        }
    }
    drop(wr);
    let mut text = String::new();
    BufReader::new(std::fs::File::from(rd))
        .lines()
        .for_each(|l| {
            text.push_str(&l.unwrap());
            text.push('\n');
        });
    let mut ws = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, &mut ws, 0) };
    assert_eq!(
        libc::WEXITSTATUS(ws),
        0,
        "{} could not talk to tierd",
        spec.name
    );
    let replies: Vec<Response> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(replies.len(), want, "{}: {text}", spec.name);
    replies
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Daemon {
    /// Killed with the test.
    _child: Killed,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = dir.join("tierd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[daemon]\nsocket = \"{d}/tierd.sock\"\nstate_dir = \"{d}/state\"\n\
                 [client]\nsocket = \"{d}/client.sock\"\nsocket_mode = \"0666\"\n\
                 [metrics]\nenabled = false\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = dir.join("tierd.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tierd"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let socket = dir.join("tierd.sock");
        wait_until("control socket", || UnixStream::connect(&socket).is_ok());
        // The socket's group would admit users in production; here, everyone.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        Daemon {
            _child: Killed(child),
            socket,
            log,
        }
    }

    fn call(&self, req: &Request) -> Response {
        call(&self.socket, req)
    }
}

fn denied(r: &Response) -> bool {
    matches!(r, Response::Err { error, .. } if error.kind == ErrorKind::PermissionDenied)
}

fn requests(pid: i32) -> Vec<Request> {
    vec![
        Request::Placement { pid, range: None },
        Request::Migrate {
            pid,
            to: 0,
            range: None,
        },
        Request::Heat {
            pid,
            top_bytes: None,
            history: false,
        },
        Request::Manage {
            pid,
            policy: Some("off".into()),
            priority: Some(0),
        },
        Request::Unmanage { pid },
    ]
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn every_control_request_gets_the_kernels_verdict() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let targets: Vec<Scratch> = [ROOT, A, B, A_NODUMP, A_SETUID, A_SAVED_ROOT, A_CAPABLE]
        .into_iter()
        .map(Scratch::spawn)
        .collect();
    let callers = [A, B, ROOT, A_SETUID, A_SAVED_ROOT, A_CAPABLE];
    let names = ["placement", "migrate", "heat", "manage", "unmanage"];
    let (mut unauthorized_allowed, mut authorized_refused, mut cases) = (0, 0, 0);
    let mut table = Vec::new();
    for c in &callers {
        // Every target managed by root, so heat and unmanage have something to answer.
        for t in &targets {
            let r = d.call(&Request::Manage {
                pid: t.pid,
                policy: Some("off".into()),
                priority: None,
            });
            assert!(matches!(r, Response::Ok { .. }), "root manage: {r:?}");
        }
        let reqs: Vec<Request> = targets.iter().flat_map(|t| requests(t.pid)).collect();
        let replies = call_as(&d.socket, c, &reqs);
        for (t, rs) in targets.iter().zip(replies.chunks(names.len())) {
            let kernel = kernel_says(c, t.pid);
            let mut row = format!("{:>14} -> {:<14} kernel {:5}", c.name, t.spec.name, kernel);
            for (name, r) in names.iter().zip(rs) {
                cases += 1;
                let allowed = !denied(r);
                row.push_str(&format!(" {name}:{}", if allowed { "yes" } else { "no " }));
                if allowed && !kernel {
                    unauthorized_allowed += 1;
                    eprintln!("UNAUTHORIZED: {} {name} {}: {r:?}", c.name, t.spec.name);
                }
                if !allowed && kernel {
                    authorized_refused += 1;
                    eprintln!("REFUSED: {} {name} {}: {r:?}", c.name, t.spec.name);
                }
                if let (false, Response::Err { error, .. }) = (allowed, r) {
                    assert!(
                        error.message.contains("ptrace_may_access")
                            && error.message.contains("READ_REALCREDS"),
                        "the refusal names the rule: {}",
                        error.message
                    );
                }
            }
            table.push(row);
        }
    }
    eprintln!("{}", table.join("\n"));
    eprintln!(
        "RESULT cases={cases} unauthorized_allowed={unauthorized_allowed} \
         authorized_refused={authorized_refused}"
    );
    assert_eq!(cases, callers.len() * targets.len() * names.len());
    assert_eq!(unauthorized_allowed, 0);
    assert_eq!(authorized_refused, 0);

    let Response::Ok { result, .. } = d.call(&Request::Metrics) else {
        panic!("metrics");
    };
    let m: MetricsReply = serde_json::from_value(result).unwrap();
    let denials = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("tierd_access_denied_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no tierd_access_denied_total in {}", m.text));
    assert!(denials > 0.0, "{denials}");
    let log = std::fs::read_to_string(&d.log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn priority_above_the_ceiling_is_refused_to_users_only() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let own = Scratch::spawn(A);
    let manage = |priority| Request::Manage {
        pid: own.pid,
        policy: Some("off".into()),
        priority: Some(priority),
    };
    let r = call_as(&d.socket, &A, &[manage(0), manage(-3), manage(5)]);
    assert!(matches!(r[0], Response::Ok { .. }), "{:?}", r[0]);
    assert!(matches!(r[1], Response::Ok { .. }), "{:?}", r[1]);
    let Response::Err { error, .. } = &r[2] else {
        panic!("priority 5 accepted: {:?}", r[2]);
    };
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    assert!(
        error.message.contains("daemon.max_priority_unprivileged"),
        "{}",
        error.message
    );
    assert!(
        matches!(d.call(&manage(5)), Response::Ok { .. }),
        "root may"
    );
}
