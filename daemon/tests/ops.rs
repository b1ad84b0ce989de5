//! End-to-end test of the operations endpoints against the real `tierd` binary, on
//! temporary paths (on a one-node host it runs in monitor-only mode):
//! systemd notification (READY/STATUS/RELOADING/STOPPING on a NOTIFY_SOCKET this test
//! binds; WATCHDOG=1 at half of WATCHDOG_USEC), the Prometheus endpoint parsed with a Prometheus text parser, the state
//! tree compared with the control socket's `status`/`tiers` replies (the JSON
//! `tierctl --json` prints), SIGHUP reload of a changed value, a broken config refused
//! with the old one kept and the managed process kept, and a clean stop.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tierd_api::{ConfigReply, Request, Response, StatusReply, TiersReply};

#[path = "common/control.rs"]
mod control;
use control::{call, ok, Killed};

struct Daemon {
    child: Killed,
    socket: PathBuf,
    state: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn call(&self, req: &Request) -> Response {
        call(&self.socket, req)
    }

    fn ok<T: serde::de::DeserializeOwned>(&self, req: &Request) -> T {
        ok(&self.socket, req)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.0.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.state.join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}; log:\n{}", self.log_text()))
            .trim_end()
            .to_string()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn config_toml(&self) -> String {
        let c: ConfigReply = self.ok(&Request::ConfigShow);
        c.toml
    }
}

fn config(dir: &Path, demote_watermark: &str) -> String {
    format!(
        "[daemon]\nsocket = \"{d}/tierd.sock\"\nstate_dir = \"{d}/state\"\n\
         [policy]\ndemote_watermark = \"{demote_watermark}\"\n\
         [client]\nenabled = false\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
        d = dir.display()
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Collects sd_notify datagrams; returns when one contains `want`.
fn wait_notify(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == want)) {
        assert!(Instant::now() < end, "no {want} among {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("openmetrics-text"),
        "{head}"
    );
    body.to_string()
}

fn sample_value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let x = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
    match x.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name}: not a scalar"),
    }
}

#[test]
fn notify_metrics_state_tree_reload_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg_path = d.join("tierd.toml");
    std::fs::write(&cfg_path, config(d, "6%")).unwrap();
    let notify = UnixDatagram::bind(d.join("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = d.join("tierd.log");
    let child = Command::new(env!("CARGO_BIN_EXE_tierd"))
        .arg("--config")
        .arg(&cfg_path)
        .env("NOTIFY_SOCKET", d.join("notify.sock"))
        // A 400 ms watchdog: tierd must ping every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t = Daemon {
        child: Killed(child),
        socket: d.join("tierd.sock"),
        state: d.join("state"),
        log,
    };

    // READY=1 arrives with a STATUS line, after the control socket is up.
    let mut seen = Vec::new();
    wait_notify(&notify, &mut seen, "READY=1");
    assert!(t.socket.exists(), "READY=1 before the control socket");
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap().clone();
    assert!(ready.contains("STATUS="), "{ready}");
    let t0 = Instant::now();
    seen.clear();
    for _ in 0..3 {
        seen.retain(|m| !m.contains("WATCHDOG=1"));
        wait_notify(&notify, &mut seen, "WATCHDOG=1");
    }
    let per_ping = t0.elapsed() / 3;
    assert!(
        per_ping < Duration::from_millis(400),
        "WATCHDOG=1 every {per_ping:?}"
    );
    eprintln!("notify: READY with {ready:?}; WATCHDOG=1 every {per_ping:?}");

    let status: StatusReply = t.ok(&Request::Status);
    let tiers: TiersReply = t.ok(&Request::Tiers);
    if tiers.nodes.len() == 1 {
        assert_eq!(status.mode, "monitor-only", "one node means monitor-only");
    }
    assert!(
        ready.contains(&format!("STATUS={}", status.mode)),
        "{ready}"
    );

    // State tree agrees with status / tiers.
    wait_until("state tree", Duration::from_secs(5), || {
        t.state.join("mode").exists()
    });
    assert_eq!(t.read("mode"), status.mode);
    assert_eq!(t.read("version"), status.version);
    assert_eq!(t.read("clients/count"), "0");
    for n in &tiers.nodes {
        let nd = format!("nodes/{}", n.node);
        assert_eq!(t.read(&format!("{nd}/tier")), n.tier.to_string());
        assert_eq!(
            t.read(&format!("{nd}/total_bytes")),
            n.total_bytes.to_string()
        );
        let cpus: Vec<u32> = n.cpus.clone();
        assert_eq!(t.read(&format!("{nd}/cpus")), tierd::ops::tree::list(&cpus));
        // Free memory moves all the time; the tree is at most ~1 s old.
        let free: u64 = t.read(&format!("{nd}/free_bytes")).parse().unwrap();
        let diff = free.abs_diff(n.free_bytes);
        assert!(
            diff < n.total_bytes / 20,
            "node {} free {free} vs {}",
            n.node,
            n.free_bytes
        );
        let same_tier: Vec<u32> = tiers
            .nodes
            .iter()
            .filter(|m| m.tier == n.tier)
            .map(|m| m.node)
            .collect();
        assert_eq!(
            t.read(&format!("tiers/{}/nodes", n.tier)),
            tierd::ops::tree::list(&same_tier)
        );
    }

    // The kernel's migration counters since start, in status and in the tree.
    assert!(
        status.kernel_vmstat.contains_key("pgmigrate_success"),
        "{:?}",
        status.kernel_vmstat
    );
    assert!(
        !status.kernel_vmstat.contains_key("numa_hit"),
        "allocation counters are not exported"
    );
    wait_until("kernel_vmstat in the tree", Duration::from_secs(5), || {
        t.state.join("kernel_vmstat/pgmigrate_success").exists()
    });

    // Metrics: scraped over HTTP and parsed; the same text as the `metrics` command.
    let addr = t.read("metrics_address");
    let body = scrape(&addr);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).unwrap();
    let sample_lines = body.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        parsed.samples.len(),
        sample_lines,
        "every sample line parses"
    );
    assert!(parsed.samples.len() >= 15, "{body}");
    assert_eq!(
        sample_value(&parsed, "tierd_mode", &[("mode", status.mode.as_str())]),
        1.0
    );
    assert!(
        parsed
            .samples
            .iter()
            .any(|x| x.metric == "tierd_kernel_vmstat_total"
                && x.labels.get("counter") == Some("pgmigrate_success")),
        "{body}"
    );
    let n0 = &tiers.nodes[0];
    let node = n0.node.to_string();
    assert_eq!(
        sample_value(
            &parsed,
            "tierd_node_total_bytes",
            &[("node", node.as_str())]
        ),
        n0.total_bytes as f64
    );
    assert_eq!(sample_value(&parsed, "tierd_clients", &[]), 0.0);
    let via_socket: tierd_api::MetricsReply = t.ok(&Request::Metrics);
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        names(&via_socket.text),
        names(&body),
        "same families both ways"
    );

    // A managed process shows up in procs/ and survives reloads.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id() as i32;
    let _: tierd_api::ManageReply = t.ok(&Request::Manage {
        pid,
        policy: Some("off".into()),
        priority: None,
    });
    wait_until("procs/PID", Duration::from_secs(5), || {
        t.state.join(format!("procs/{pid}/policy")).exists()
    });
    assert_eq!(t.read(&format!("procs/{pid}/policy")), "off");

    // SIGHUP with a changed watermark: applied, RELOADING=1 then READY=1 again.
    assert!(t.config_toml().contains("demote_watermark = \"6%\""));
    std::fs::write(&cfg_path, config(d, "10%")).unwrap();
    seen.clear();
    t.signal(libc::SIGHUP);
    wait_notify(&notify, &mut seen, "RELOADING=1");
    wait_notify(&notify, &mut seen, "READY=1");
    wait_until("reload applied", Duration::from_secs(5), || {
        t.config_toml().contains("demote_watermark = \"10%\"")
    });
    wait_until("config_generation 1", Duration::from_secs(5), || {
        t.read("config_generation") == "1"
    });

    // A broken config is refused, by SIGHUP and by `reload`; the old one stays.
    std::fs::write(
        &cfg_path,
        "[policy]\ndemote_watermark = \"10%\"\nbogus_key = 1\n",
    )
    .unwrap();
    t.signal(libc::SIGHUP);
    match t.call(&Request::Reload) {
        Response::Err { error, .. } => {
            assert_eq!(error.kind, tierd_api::ErrorKind::BadConfig);
            assert!(error.message.contains("bogus_key"), "{}", error.message);
            assert!(
                error.message.contains(":3:"),
                "names the line: {}",
                error.message
            );
        }
        r => panic!("broken config accepted: {r:?}"),
    }
    wait_until("SIGHUP refusal logged", Duration::from_secs(5), || {
        t.log_text().contains("bad config refused")
    });
    let toml = t.config_toml();
    assert!(toml.contains("demote_watermark = \"10%\""), "{toml}");
    assert!(toml.contains("enabled = false"), "old config kept: {toml}");
    assert_eq!(t.read("config_generation"), "1");
    let status: StatusReply = t.ok(&Request::Status);
    assert!(
        status.managed.iter().any(|p| p.pid == pid),
        "managed process kept across reloads"
    );

    // The process exits: its procs/ entry goes away.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    wait_until("stale proc removed", Duration::from_secs(10), || {
        !t.state.join(format!("procs/{pid}")).exists()
    });

    // SIGTERM: STOPPING=1, clean exit, socket and tree removed.
    let mut t = t;
    seen.clear();
    t.signal(libc::SIGTERM);
    wait_notify(&notify, &mut seen, "STOPPING=1");
    let end = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = t.child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "tierd did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit {code:?}; log:\n{}", t.log_text());
    assert!(!t.socket.exists(), "socket removed");
    assert!(!t.state.join("mode").exists(), "state tree removed");
}
