//! One function per request: checks the caller, calls into the state, shapes the reply.
//!
//! Every request that names a pid (`placement`, `migrate`, `manage`, `unmanage`,
//! `heat`) first pins that process and asks [`crate::access`] whether the caller may
//! touch it by the kernel's rule for move_pages(2); a refusal is a `permission_denied`
//! error that names the rule. `manage` priorities and `migrate` rates of callers other
//! than root are bounded by the per-user ceilings ([`crate::access::ceilings`]).

use super::caller::Caller;
use crate::access::process::{Process, ProcessError};
use crate::access::AccessError;
use crate::migrate::engine::{EngineError, Job};
use crate::migrate::MoveError;
use crate::proc::maps::MapsError;
use crate::proc::resident::ResidentError;
use crate::registry::RegistryError;
use crate::state::{Daemon, Mode};
use crate::topology::TopologyError;
use std::sync::atomic::Ordering;
use tierd_api::*;
use tierd_config::PolicyName;

pub fn handle(d: &Daemon, caller: &Caller, req: Request) -> Response {
    let r = match req {
        Request::Status => Ok(Response::ok(&crate::status::status(d))),
        Request::Tiers => d.tiers().map(|t| Response::ok(&t)).map_err(topo_err),
        Request::Placement { pid, range } => placement(d, caller, pid, range),
        Request::Migrate { pid, to, range } => migrate(d, caller, pid, to, range),
        Request::Manage {
            pid,
            policy,
            priority,
        } => manage(d, caller, pid, policy, priority),
        Request::Unmanage { pid } => unmanage(d, caller, pid),
        Request::Heat {
            pid,
            top_bytes,
            history,
        } => heat(d, caller, pid, top_bytes, history),
        Request::ConfigShow => Ok(Response::ok(&ConfigReply {
            path: d.config_path.as_ref().map(|p| p.display().to_string()),
            toml: d.config().to_toml(),
        })),
        Request::Reload => reload(d, caller),
        Request::Metrics => Ok(Response::ok(&MetricsReply {
            text: crate::ops::metrics::render(d),
        })),
        Request::ManageScope {
            name,
            cgroup,
            unit,
            comm,
            policy,
            priority,
            fast_budget,
            fast_min,
            gpu,
        } => super::scope::manage(
            d,
            caller,
            super::scope::ScopeRequest {
                name,
                cgroup,
                unit,
                comm,
                policy,
                priority,
                fast_budget,
                fast_min,
                gpu,
            },
        ),
        Request::UnmanageScope { name } => super::scope::unmanage(d, caller, name),
    };
    r.unwrap_or_else(|e| e)
}

type Reply = Result<Response, Response>;

fn err(kind: ErrorKind, msg: impl Into<String>) -> Response {
    Response::error(kind, msg)
}

fn topo_err(e: TopologyError) -> Response {
    match e {
        TopologyError::NoSuchNode(_) => err(ErrorKind::BadNode, e.to_string()),
        e => err(ErrorKind::Internal, e.to_string()),
    }
}

fn reg_err(e: RegistryError) -> Response {
    let kind = match e {
        RegistryError::NoSuchProcess(_) => ErrorKind::NoSuchProcess,
        RegistryError::NotManaged(_) => ErrorKind::NotManaged,
    };
    err(kind, e.to_string())
}

fn proc_err(e: ProcessError) -> Response {
    let kind = match e {
        ProcessError::NoSuchProcess(_) | ProcessError::Exited(_) | ProcessError::Reused { .. } => {
            ErrorKind::NoSuchProcess
        }
        ProcessError::Proc { .. } => ErrorKind::Internal,
        ProcessError::Resources { .. } => ErrorKind::Busy,
    };
    err(kind, e.to_string())
}

fn access_err(e: AccessError) -> Response {
    match e {
        AccessError::Process(e) => proc_err(e),
        e @ AccessError::Denied { .. } => err(ErrorKind::PermissionDenied, e.to_string()),
        e @ AccessError::Check { .. } => err(ErrorKind::Internal, e.to_string()),
    }
}

fn engine_err(e: EngineError) -> Response {
    let kind = match &e {
        EngineError::Maps(MapsError::NoSuchProcess(_))
        | EngineError::Move(MoveError::NoSuchProcess(_))
        | EngineError::Resident(ResidentError::NoSuchProcess(_)) => ErrorKind::NoSuchProcess,
        EngineError::Maps(MapsError::PermissionDenied(_))
        | EngineError::Move(MoveError::PermissionDenied(_))
        | EngineError::Resident(ResidentError::PermissionDenied(_)) => ErrorKind::PermissionDenied,
        EngineError::Maps(MapsError::NotMapped { .. }) => ErrorKind::NotMapped,
        EngineError::Move(MoveError::BadNode(_))
        | EngineError::Topology(TopologyError::NoSuchNode(_)) => ErrorKind::BadNode,
        _ => ErrorKind::Internal,
    };
    err(kind, e.to_string())
}

/// Pins `pid` and checks the kernel's access rule for the caller; the pinned process
/// is verified again after the work done by pid.
fn check_access(d: &Daemon, caller: &Caller, pid: i32) -> Result<Process, Response> {
    let target = Process::open(pid).map_err(proc_err)?;
    d.access
        .check(caller.process(), &target)
        .map_err(access_err)?;
    Ok(target)
}

/// Root (effective uid 0 in tierd's user namespace) is not bound by the ceilings.
fn caller_is_root(d: &Daemon, caller: &Caller) -> Result<bool, Response> {
    let c = caller.creds().map_err(proc_err)?;
    Ok(c.is_root(d.access.own_user_ns()))
}

fn placement(d: &Daemon, caller: &Caller, pid: i32, range: Option<AddrRange>) -> Reply {
    let target = check_access(d, caller, pid)?;
    let per_node = d.engine.placement(pid, range).map_err(engine_err)?;
    target.verify().map_err(proc_err)?;
    Ok(Response::ok(&PlacementReply {
        pid,
        nodes: per_node
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect(),
    }))
}

fn migrate(d: &Daemon, caller: &Caller, pid: i32, to: u32, range: Option<AddrRange>) -> Reply {
    // Permission first: a refused caller learns nothing about the target or the node.
    let target = check_access(d, caller, pid)?;
    if let Mode::MonitorOnly(why) = d.mode() {
        return Err(err(
            ErrorKind::Unsupported,
            format!("tierd is in monitor-only mode ({why}): it moves no pages"),
        ));
    }
    d.topology().check_node(to).map_err(topo_err)?;
    let bucket = if caller_is_root(d, caller)? {
        None
    } else {
        d.ceilings
            .bucket(caller.uid, d.config().migrate.max_rate_mbps_per_uid)
    };
    // Only the resident pages of the range: its cost follows resident memory.
    let ranges = match range {
        Some(r) => Some(d.engine.resident(pid, Some(r)).map_err(engine_err)?),
        None => None,
    };
    let job = Job {
        pid,
        ranges,
        to,
        min_free_bytes: 0,
        cause: tierd_api::MoveCause::Migrate,
    };
    let reply = d.engine.run(&job, bucket.as_deref()).map_err(engine_err)?;
    target.verify().map_err(proc_err)?;
    Ok(Response::ok(&reply))
}

fn manage(
    d: &Daemon,
    caller: &Caller,
    pid: i32,
    policy: Option<String>,
    priority: Option<i32>,
) -> Reply {
    let cfg = d.config();
    let policy = match policy {
        Some(name) => PolicyName::parse(&name).map_err(|m| err(ErrorKind::BadRequest, m))?,
        None => cfg.policy.default_policy,
    };
    let priority = priority.unwrap_or(0);
    let target = check_access(d, caller, pid)?;
    d.ceilings
        .priority(
            priority,
            caller_is_root(d, caller)?,
            cfg.daemon.max_priority_unprivileged,
        )
        .map_err(|m| err(ErrorKind::PermissionDenied, m))?;
    let p = d.registry.manage(pid, policy, priority).map_err(reg_err)?;
    if target.verify().is_err() {
        // The pid was reused between the check and the registry's own pidfd.
        let _ = d.registry.unmanage(pid);
        return Err(err(
            ErrorKind::NoSuchProcess,
            format!("process {pid} exited"),
        ));
    }
    d.journal.managed(pid, p.policy, p.priority);
    Ok(Response::ok(&ManageReply {
        pid,
        policy: p.policy.as_str().into(),
        priority: p.priority,
        managed: true,
    }))
}

/// Unmanage a live process the caller may touch, or the stale entry of one that exited
/// (nothing left to protect; the tiering loop would reap it anyway).
fn unmanage(d: &Daemon, caller: &Caller, pid: i32) -> Reply {
    let stale = d.registry.get(pid).is_some_and(|p| p.pidfd.exited());
    if !stale {
        match Process::open(pid) {
            Ok(target) => d
                .access
                .check(caller.process(), &target)
                .map_err(access_err)?,
            Err(_) if d.registry.get(pid).is_some() => {}
            Err(e) => return Err(proc_err(e)),
        }
    }
    let p = d.registry.unmanage(pid).map_err(reg_err)?;
    // The tiering loop forgets the heat table of a process no longer managed.
    d.journal.unmanaged(pid);
    Ok(Response::ok(&ManageReply {
        pid,
        policy: p.policy.as_str().into(),
        priority: p.priority,
        managed: false,
    }))
}

/// How long `heat` waits for the tiering loop, which owns the heat tables.
const HEAT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn heat(d: &Daemon, caller: &Caller, pid: i32, top_bytes: Option<u64>, history: bool) -> Reply {
    let target = check_access(d, caller, pid)?;
    if d.registry.get(pid).is_none_or(|p| p.pidfd.exited()) {
        return Err(err(
            ErrorKind::NotManaged,
            format!("process {pid} is not managed: tierctl manage --pid {pid} first"),
        ));
    }
    let read = d.heat.read(pid, HEAT_READ_TIMEOUT, move |t| match t {
        Some(t) => {
            let now = t.now_ms(std::time::Instant::now());
            (
                t.regions(now, top_bytes),
                if history {
                    t.history().to_vec()
                } else {
                    Vec::new()
                },
            )
        }
        None => (Vec::new(), Vec::new()),
    });
    let Some((regions, hist)) = read else {
        return Err(err(
            ErrorKind::Internal,
            "the tiering loop did not answer within 2 s; try again",
        ));
    };
    target.verify().map_err(proc_err)?;
    Ok(Response::ok(&HeatReply {
        pid,
        regions,
        history: hist,
    }))
}

fn reload(d: &Daemon, caller: &Caller) -> Reply {
    if caller.uid != 0 {
        return Err(err(
            ErrorKind::PermissionDenied,
            "only root may reload the config",
        ));
    }
    let gen = d.generation.load(Ordering::SeqCst);
    match d.reload() {
        Ok(r) => Ok(Response::ok(&r)),
        Err(e) => {
            tracing::warn!(error = %e, generation = gen, "reload refused; keeping the old config");
            Err(err(
                ErrorKind::BadConfig,
                format!("{e}; the old config stays in force"),
            ))
        }
    }
}
