//! One function per request: checks the caller, calls into the state, shapes the reply.

use crate::migrate::engine::{EngineError, Job};
use crate::migrate::MoveError;
use crate::proc::maps::MapsError;
use crate::proc::resident::ResidentError;
use crate::registry::{process_identity, RegistryError};
use crate::state::{Daemon, Mode};
use crate::topology::TopologyError;
use std::sync::atomic::Ordering;
use tierd_api::*;
use tierd_config::PolicyName;

/// Who is asking (from SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub pid: i32,
}

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
        Request::Unmanage { pid } => d
            .registry
            .unmanage(pid, caller.uid)
            .map(|p| {
                // The tiering loop forgets the heat table of a process no longer managed.
                d.journal.unmanaged(pid);
                Response::ok(&ManageReply {
                    pid,
                    policy: p.policy.as_str().into(),
                    priority: p.priority,
                    managed: false,
                })
            })
            .map_err(reg_err),
        Request::Heat {
            pid,
            top_bytes,
            history,
        } => heat(d, pid, top_bytes, history),
        Request::ConfigShow => Ok(Response::ok(&ConfigReply {
            path: d.config_path.as_ref().map(|p| p.display().to_string()),
            toml: d.config().to_toml(),
        })),
        Request::Reload => reload(d, caller),
        Request::Metrics => Ok(Response::ok(&MetricsReply {
            text: crate::ops::metrics::render(d),
        })),
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
        RegistryError::NotOwner { .. } => ErrorKind::PermissionDenied,
        RegistryError::NotManaged(_) => ErrorKind::NotManaged,
    };
    err(kind, e.to_string())
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

/// Root may touch any process; others only their own.
fn check_owner(caller: &Caller, pid: i32) -> Result<(), Response> {
    let (uid, _) = process_identity(pid).map_err(reg_err)?;
    if caller.uid != 0 && caller.uid != uid {
        return Err(err(
            ErrorKind::PermissionDenied,
            format!(
                "process {pid} belongs to uid {uid}; uid {} may not touch it",
                caller.uid
            ),
        ));
    }
    Ok(())
}

fn placement(d: &Daemon, caller: &Caller, pid: i32, range: Option<AddrRange>) -> Reply {
    check_owner(caller, pid)?;
    let per_node = d.engine.placement(pid, range).map_err(engine_err)?;
    Ok(Response::ok(&PlacementReply {
        pid,
        nodes: per_node
            .into_iter()
            .map(|(n, b)| (n.to_string(), b))
            .collect(),
    }))
}

fn migrate(d: &Daemon, caller: &Caller, pid: i32, to: u32, range: Option<AddrRange>) -> Reply {
    if let Mode::MonitorOnly(why) = d.mode() {
        return Err(err(
            ErrorKind::Unsupported,
            format!("tierd is in monitor-only mode ({why}): it moves no pages"),
        ));
    }
    d.topology().check_node(to).map_err(topo_err)?;
    check_owner(caller, pid)?;
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
    };
    let reply = d.engine.run(&job, None).map_err(engine_err)?;
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
    let p = d
        .registry
        .manage(pid, policy, priority.unwrap_or(0), caller.uid)
        .map_err(reg_err)?;
    d.journal.managed(pid, p.policy, p.priority);
    Ok(Response::ok(&ManageReply {
        pid,
        policy: p.policy.as_str().into(),
        priority: p.priority,
        managed: true,
    }))
}

/// How long `heat` waits for the tiering loop, which owns the heat tables.
const HEAT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn heat(d: &Daemon, pid: i32, top_bytes: Option<u64>, history: bool) -> Reply {
    if d.registry.get(pid).is_none() {
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
