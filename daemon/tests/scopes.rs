//! Scopes end to end against the real `tierd` binary, on temporary paths, with comm
//! scopes (no cgroup needed): a config scope manages a process started after tierd; a
//! runtime scope added over the control socket is kept in `daemon.scopes_file` and, after
//! a restart, manages its process again without any request; removing it drops the
//! process. Runs as root (a scope is root-only); as another user it checks the refusal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tierd_api::{ErrorKind, Request, Response, ScopeStatus, StatusReply};

#[path = "common/control.rs"]
mod control;
use control::{call, ok, Killed};

/// Writes `dir/tierd.toml`: sockets and state under `dir`, no client socket or metrics,
/// and `scope` (a `[[scope]]` table) appended. Returns its path.
fn write_config(dir: &Path, scope: &str) -> std::path::PathBuf {
    let cfg = dir.join("tierd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nsocket = \"{d}/tierd.sock\"\nstate_dir = \"{d}/state\"\n\
             scopes_file = \"{d}/lib/scopes.json\"\n\
             [client]\nenabled = false\n[metrics]\nenabled = false\n{scope}",
            d = dir.display()
        ),
    )
    .unwrap();
    cfg
}

fn start(dir: &Path) -> Killed {
    let cfg = write_config(
        dir,
        "[[scope]]\nname = \"cfg\"\ncomm = \"^tsc-cfg$\"\npriority = 2\n",
    );
    let _ = std::fs::remove_file(dir.join("tierd.sock"));
    let child = Command::new(env!("CARGO_BIN_EXE_tierd"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("tierd.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until("control socket", Duration::from_secs(30), || {
        dir.join("tierd.sock").exists()
    });
    Killed(child)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `sleep` whose command name is `name` (a copy of the binary under that name).
fn sleeper(dir: &Path, name: &str) -> Killed {
    let bin: PathBuf = dir.join(name);
    let sleep = Command::new("sh")
        .args(["-c", "command -v sleep"])
        .output()
        .unwrap();
    let src = String::from_utf8(sleep.stdout).unwrap();
    std::fs::copy(src.trim(), &bin).unwrap();
    Killed(Command::new(&bin).arg("60").spawn().unwrap())
}

/// The scope that manages `pid`, as `status` says.
fn scope_of(sock: &Path, pid: i32) -> Option<String> {
    let s: StatusReply = ok(sock, &Request::Status);
    s.managed.into_iter().find(|p| p.pid == pid)?.scope
}

#[test]
fn config_and_runtime_scopes_manage_new_processes_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("tierd.sock");
    let mut tierd = start(d);

    let cfg_proc = sleeper(d, "tsc-cfg");
    let cfg_pid = cfg_proc.0.id() as i32;
    let t0 = Instant::now();
    wait_until(
        "config scope adopts its process",
        Duration::from_secs(2),
        || scope_of(&sock, cfg_pid).as_deref() == Some("cfg"),
    );
    eprintln!("adopted after {:?}", t0.elapsed());

    let add = Request::ManageScope {
        name: Some("rt".into()),
        cgroup: None,
        unit: None,
        comm: Some("^tsc-rt$".into()),
        policy: Some("lru-tiered".into()),
        priority: Some(3),
        fast_budget: Some("25%".into()),
        fast_min: None,
        gpu: None,
    };
    if !nix::unistd::geteuid().is_root() {
        match call(&sock, &add) {
            Response::Err { error, .. } => assert_eq!(error.kind, ErrorKind::PermissionDenied),
            r => panic!("a scope added by a user other than root: {r:?}"),
        }
        return;
    }
    // Bad requests are refused, and tierd goes on.
    for (bad, want) in [
        (
            bad_scope(None, Some("/tierd-no-such-cgroup-x"), None, None),
            "no cgroup /tierd-no-such-cgroup-x",
        ),
        (
            bad_scope(Some("cfg"), None, Some("x"), None),
            "defined in the config file",
        ),
        (
            bad_scope(Some("g"), None, Some("x"), Some("0000:3b:00.0")),
            "no GPU 0000:3b:00.0 (GPUs: ",
        ),
        (
            bad_scope(Some("g"), None, Some("x"), Some("gpu0")),
            "neither an index",
        ),
    ] {
        match call(&sock, &bad) {
            Response::Err { error, .. } => {
                assert_eq!(error.kind, ErrorKind::BadRequest);
                assert!(error.message.contains(want), "{}", error.message);
            }
            r => panic!("accepted: {r:?}"),
        }
    }
    // Nothing of a refused scope was kept.
    let st: StatusReply = ok(&sock, &Request::Status);
    assert!(st.scopes.iter().all(|s| s.name != "g"), "{:?}", st.scopes);
    let rt_proc = sleeper(d, "tsc-rt");
    let rt_pid = rt_proc.0.id() as i32;
    let s: ScopeStatus = ok(&sock, &add);
    assert_eq!(
        (s.origin.as_str(), s.pids.clone()),
        ("runtime", vec![rt_pid])
    );
    assert_eq!(scope_of(&sock, rt_pid).as_deref(), Some("rt"));

    // Restart: no request, both processes managed again by their scopes.
    drop(tierd);
    tierd = start(d);
    wait_until(
        "scopes adopted again after a restart",
        Duration::from_secs(5),
        || {
            scope_of(&sock, rt_pid).as_deref() == Some("rt")
                && scope_of(&sock, cfg_pid).as_deref() == Some("cfg")
        },
    );
    let st: StatusReply = ok(&sock, &Request::Status);
    let p = st.managed.iter().find(|p| p.pid == rt_pid).unwrap();
    assert_eq!((p.policy.as_str(), p.priority), ("lru-tiered", 3));

    let s: ScopeStatus = ok(&sock, &Request::UnmanageScope { name: "rt".into() });
    assert!(!s.managed);
    wait_until(
        "process dropped with its scope",
        Duration::from_secs(5),
        || scope_of(&sock, rt_pid).is_none(),
    );
    let kept = std::fs::read_to_string(d.join("lib/scopes.json")).unwrap();
    assert!(!kept.contains("tsc-rt"), "{kept}");
    drop(tierd);
}

#[test]
fn a_config_scope_naming_a_gpu_the_machine_lacks_stops_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = write_config(
        d,
        "[[scope]]\nname = \"llm\"\ncomm = \"^x$\"\ngpu = \"0000:3b:00.0\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tierd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scope \"llm\": gpu \"0000:3b:00.0\": no GPU 0000:3b:00.0"),
        "{err}"
    );
}

/// A `manage_scope` request with only these fields set (the rest default), as the
/// refusal cases need.
fn bad_scope(
    name: Option<&str>,
    cgroup: Option<&str>,
    comm: Option<&str>,
    gpu: Option<&str>,
) -> Request {
    Request::ManageScope {
        name: name.map(Into::into),
        cgroup: cgroup.map(Into::into),
        unit: None,
        comm: comm.map(Into::into),
        policy: None,
        priority: None,
        fast_budget: None,
        fast_min: None,
        gpu: gpu.map(Into::into),
    }
}
