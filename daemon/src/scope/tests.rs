use super::source::fake::FakeSource;
use super::*;

fn scopes() -> (Arc<FakeSource>, Scopes) {
    let src = Arc::new(FakeSource::default());
    (src.clone(), Scopes::with_source(src))
}

/// A machine without GPUs.
fn no_gpus(g: &GpuRef) -> Result<Vec<u32>, DeviceError> {
    Err(DeviceError::NoSuchGpu(g.to_string(), "none found".into()))
}

fn sleeper() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap()
}

#[test]
fn processes_entering_and_leaving_a_cgroup_scope_are_managed_and_dropped() {
    let (src, s) = scopes();
    let reg = Registry::default();
    let (mut a, mut b) = (sleeper(), sleeper());
    let (pa, pb) = (a.id() as i32, b.id() as i32);
    let mut cfg = Config::default();
    cfg.scopes.push(ScopeConfig {
        name: "svc".into(),
        cgroup: Some("/system.slice/svc.service".into()),
        priority: 4,
        policy: Some(PolicyName::LruTiered),
        ..Default::default()
    });
    let st = s.reconcile(&reg, &cfg, 0, &no_gpus);
    assert_eq!(st[0].pids, Vec::<i32>::new());
    assert!(
        st[0].problem.as_deref().unwrap().contains("no cgroup"),
        "{st:?}"
    );

    src.cgroups
        .lock()
        .unwrap()
        .insert("/system.slice/svc.service".into(), vec![pa]);
    let st = s.reconcile(&reg, &cfg, 0, &no_gpus);
    assert_eq!(st[0].pids, vec![pa]);
    let p = reg.get(pa).unwrap();
    assert_eq!(
        (p.policy, p.priority, p.scope.as_deref()),
        (PolicyName::LruTiered, 4, Some("svc"))
    );

    // A new process in the cgroup is adopted; one that left it is dropped.
    src.cgroups
        .lock()
        .unwrap()
        .insert("/system.slice/svc.service".into(), vec![pb]);
    let st = s.reconcile(&reg, &cfg, 0, &no_gpus);
    assert_eq!(st[0].pids, vec![pb]);
    assert!(reg.get(pa).is_none(), "left the scope");
    assert!(reg.get(pb).is_some());

    // A priority change in the config applies to the scope's processes.
    cfg.scopes[0].priority = 9;
    s.reconcile(&reg, &cfg, 0, &no_gpus);
    assert_eq!(reg.get(pb).unwrap().priority, 9);

    // The scope removed from the config: its processes are no longer managed.
    cfg.scopes.clear();
    assert!(s.reconcile(&reg, &cfg, 0, &no_gpus).is_empty());
    assert!(reg.all().is_empty());
    for c in [&mut a, &mut b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn a_process_managed_by_pid_is_left_alone_and_tierd_itself_is_never_managed() {
    let (src, s) = scopes();
    let reg = Registry::default();
    let mut a = sleeper();
    let pa = a.id() as i32;
    let me = std::process::id() as i32;
    reg.manage(pa, PolicyName::Off, 1).unwrap();
    src.comms.lock().unwrap().insert(pa, "sleep".into());
    src.comms.lock().unwrap().insert(me, "sleep-tierd".into());
    let mut cfg = Config::default();
    cfg.scopes.push(ScopeConfig {
        name: "sleepers".into(),
        comm: Some("^sleep".into()),
        ..Default::default()
    });
    let st = s.reconcile(&reg, &cfg, me, &no_gpus);
    assert!(st[0].pids.is_empty(), "{st:?}");
    let p = reg.get(pa).unwrap();
    assert_eq!((p.policy, p.scope.clone()), (PolicyName::Off, None));
    assert!(reg.get(me).is_none());
    a.kill().unwrap();
    a.wait().unwrap();
}

#[test]
fn runtime_scopes_are_checked_kept_in_the_file_and_removed() {
    let (src, s) = scopes();
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("scopes.json");
    s.enable_file(file.clone(), Vec::new());
    let mut cfg = Config::default();
    cfg.scopes.push(ScopeConfig {
        name: "fixed".into(),
        comm: Some("x".into()),
        ..Default::default()
    });
    let cg = |name: &str, path: &str| ScopeConfig {
        name: name.into(),
        cgroup: Some(path.into()),
        ..Default::default()
    };
    let e = s.add(cg("a", "/a"), &cfg).unwrap_err();
    assert!(e.to_string().contains("no cgroup /a"), "{e}");
    assert!(s
        .add(cg("a", "/a/../b"), &cfg)
        .unwrap_err()
        .to_string()
        .contains(".."));
    assert_eq!(
        s.add(cg("fixed", "/a"), &cfg).unwrap_err(),
        ScopeError::InConfig {
            name: "fixed".into()
        }
    );
    src.cgroups.lock().unwrap().insert("/a".into(), vec![]);
    s.add(cg("a", "/a"), &cfg).unwrap();
    assert_eq!(
        crate::persist::scopes::load(&file).unwrap(),
        vec![cg("a", "/a")]
    );
    let names: Vec<String> = s.defs(&cfg).iter().map(|d| d.name.to_string()).collect();
    assert_eq!(names, vec!["fixed", "a"]);

    // A restarted tierd loads the file.
    let (_, again) = scopes();
    again.enable_file(file.clone(), crate::persist::scopes::load(&file).unwrap());
    assert_eq!(again.defs(&cfg).len(), 2);

    assert!(s.remove("fixed", &cfg).is_err());
    s.remove("a", &cfg).unwrap();
    assert!(crate::persist::scopes::load(&file).unwrap().is_empty());
    assert!(matches!(
        s.remove("a", &cfg),
        Err(ScopeError::NoSuchScope { .. })
    ));
}

#[test]
fn a_scope_resolves_its_gpu_and_steps_its_own_psi_backoff_each_pass() {
    use std::time::{Duration, Instant};
    let (src, s) = scopes();
    let reg = Registry::default();
    let mut cfg = Config::default();
    cfg.migrate.psi_threshold_pct = 10.0;
    cfg.migrate.psi_min_rate_pct = 10.0;
    for (name, gpu) in [("llm", "0000:17:00.0"), ("lost", "7")] {
        cfg.scopes.push(ScopeConfig {
            name: name.into(),
            cgroup: Some(format!("/{name}")),
            gpu: Some(gpu.into()),
            ..Default::default()
        });
        src.cgroups
            .lock()
            .unwrap()
            .insert(format!("/{name}"), vec![]);
    }
    let gpus = |g: &GpuRef| match g {
        GpuRef::Pci(p) if p == "0000:17:00.0" => Ok(vec![0]),
        g => no_gpus(g),
    };
    let t0 = Instant::now();
    let pass = |secs: u64, pressure: Option<f64>| {
        match pressure {
            Some(p) => src.pressure.lock().unwrap().insert("/llm".into(), p),
            None => src.pressure.lock().unwrap().remove("/llm"),
        };
        s.reconcile_at(&reg, &cfg, 0, &gpus, t0 + Duration::from_secs(secs))
    };
    let st = pass(0, Some(35.0));
    assert_eq!(st[0].gpu_nodes, vec![0]);
    assert_eq!(st[0].problem, None);
    assert_eq!(st[1].gpu_nodes, Vec::<u32>::new());
    let why = st[1].problem.as_deref().unwrap();
    assert!(
        why.contains("gpu: no GPU 7") && why.contains("whole fast tier"),
        "{why}"
    );
    assert_eq!(
        (st[0].psi.pressure_pct, st[0].psi.factor()),
        (Some(35.0), 0.5)
    );
    assert_eq!(
        st[1].psi.factor(),
        1.0,
        "no memory.pressure read: no backoff"
    );
    assert_eq!(pass(1, Some(35.0))[0].psi.factor(), 0.25);
    assert_eq!(pass(2, Some(35.0))[0].psi.factor(), 0.125);
    // Pressure gone: recovers, doubling each second.
    assert_eq!(pass(3, Some(1.0))[0].psi.factor(), 0.25);
    assert_eq!(pass(4, None)[0].psi.factor(), 0.5);
    let st = pass(5, Some(0.0));
    assert_eq!(st[0].psi.factor(), 1.0);

    // status --json shows both under the scope.
    pass(6, Some(50.0));
    let st = s.states();
    let v = serde_json::to_value(crate::status::scope_status(&st[0], (None, None), 0)).unwrap();
    assert_eq!(v["gpu"], "0000:17:00.0");
    assert_eq!(v["gpu_nodes"], serde_json::json!([0]));
    assert_eq!(v["memory_pressure_some_avg10_pct"], 50.0);
    assert_eq!(v["psi_rate_factor"], 0.5);
}
