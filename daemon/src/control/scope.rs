//! `manage_scope` / `unmanage_scope`: runtime scopes (`tierctl manage --cgroup PATH |
//! --unit NAME | --comm REGEX`, `tierctl unmanage --scope NAME`). Root only: a scope
//! takes in processes of any user, present and future. The scope watcher manages the
//! scope's processes at once ([`crate::scope::Scopes::add`] wakes it); the reply lists
//! them.

use super::caller::Caller;
use crate::scope::ScopeError;
use crate::state::Daemon;
use crate::topology::devices::GpuRef;
use std::time::{Duration, Instant};
use tierd_api::{ErrorKind, Response, ScopeStatus};
use tierd_config::{Amount, PolicyName, ScopeConfig};

type Reply = Result<Response, Response>;

/// How long the reply waits for the watcher to publish the new scope.
const PUBLISH_WAIT: Duration = Duration::from_secs(2);

fn err(kind: ErrorKind, msg: impl Into<String>) -> Response {
    Response::error(kind, msg)
}

fn scope_err(e: ScopeError) -> Response {
    let kind = match e {
        ScopeError::Invalid { .. } | ScopeError::InConfig { .. } => ErrorKind::BadRequest,
        ScopeError::NoSuchScope { .. } => ErrorKind::NotManaged,
    };
    err(kind, e.to_string())
}

fn root_only(caller: &Caller) -> Result<(), Response> {
    if caller.uid != 0 {
        return Err(err(
            ErrorKind::PermissionDenied,
            "only root may manage scopes (a scope takes in any user's processes)",
        ));
    }
    Ok(())
}

/// The fields of a `manage_scope` request.
pub struct ScopeRequest {
    pub name: Option<String>,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
    pub comm: Option<String>,
    pub policy: Option<String>,
    pub priority: Option<i32>,
    pub fast_budget: Option<String>,
    pub fast_min: Option<String>,
    pub gpu: Option<String>,
}

pub fn manage(d: &Daemon, caller: &Caller, r: ScopeRequest) -> Reply {
    root_only(caller)?;
    let bad = |m: String| err(ErrorKind::BadRequest, m);
    let amount = |key: &str, v: Option<String>| {
        v.map(|s| Amount::parse(&s).map_err(|m| bad(format!("{key}: {m}"))))
            .transpose()
    };
    let policy = r
        .policy
        .map(|p| PolicyName::parse(&p).map_err(bad))
        .transpose()?;
    let mut c = ScopeConfig {
        name: String::new(),
        cgroup: r.cgroup,
        unit: r.unit,
        comm: r.comm,
        policy,
        priority: r.priority.unwrap_or(0),
        fast_budget: amount("fast_budget", r.fast_budget)?,
        fast_min: amount("fast_min", r.fast_min)?,
        gpu: r.gpu,
    };
    // An unknown GPU is refused here, with the GPUs this machine has; nothing is added.
    if let Some(g) = &c.gpu {
        tierd_config::check_gpu(g).map_err(|m| bad(format!("scope {m}")))?;
        d.fast_nodes_near_gpu(&GpuRef::parse(g))
            .map_err(|e| bad(format!("scope gpu {g:?}: {e}")))?;
    }
    let selector = c.selector().map_err(|m| bad(format!("scope {m}")))?;
    c.name = r
        .name
        .unwrap_or_else(|| format!("{}:{}", selector.kind(), selector.value()));
    let cfg = d.config();
    let def = d.scopes.add(c, &cfg).map_err(scope_err)?;
    tracing::info!(scope = %def.name, kind = def.selector.kind(), selector = def.selector.value(), "runtime scope added");
    // The watcher runs a pass at once; wait for it so the reply lists the processes.
    let deadline = Instant::now() + PUBLISH_WAIT;
    loop {
        if let Some(s) = find(d, &def.name).filter(|s| s.selector == def.selector.value()) {
            return Ok(Response::ok(&s));
        }
        if Instant::now() >= deadline {
            return Err(err(
                ErrorKind::Internal,
                "scope added, but the scope watcher did not answer within 2 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status of scope `name` once the watcher has published it with this definition.
fn find(d: &Daemon, name: &str) -> Option<ScopeStatus> {
    crate::status::scopes(d)
        .into_iter()
        .find(|s| s.name == name && s.origin == "runtime")
}

pub fn unmanage(d: &Daemon, caller: &Caller, name: String) -> Reply {
    root_only(caller)?;
    let before = find(d, &name);
    let cfg = d.config();
    d.scopes.remove(&name, &cfg).map_err(scope_err)?;
    tracing::info!(scope = %name, "runtime scope removed");
    let mut s = before.unwrap_or(ScopeStatus {
        name,
        origin: "runtime".into(),
        psi_rate_factor: 1.0,
        ..Default::default()
    });
    s.managed = false;
    Ok(Response::ok(&s))
}
