//! `tierctl manage --pid PID | --cgroup PATH | --unit NAME | --comm REGEX [--policy NAME]
//! [--priority N] [--name NAME] [--fast-budget AMOUNT] [--fast-min AMOUNT] [--gpu GPU]`,
//! `tierctl unmanage --pid PID | --scope NAME | --cgroup PATH | --unit NAME | --comm REGEX`.
//! A cgroup, unit or comm makes a scope: every process in it, present and future.

use crate::client::{call, Failure};
use crate::output::opt;
use std::path::Path;
use tierd_api::{ManageReply, Request, ScopeStatus, StatusReply};

#[derive(clap::Args, Debug)]
pub struct ManageArgs {
    #[arg(long, required_unless_present_any = ["cgroup", "unit", "comm"],
          conflicts_with_all = ["cgroup", "unit", "comm", "name", "fast_budget", "fast_min", "gpu"])]
    pid: Option<i32>,
    /// Every process of this cgroup (and its sub-cgroups), relative to the cgroup2 root,
    /// e.g. /system.slice/vllm.service.
    #[arg(long, conflicts_with_all = ["unit", "comm"])]
    cgroup: Option<String>,
    /// Every process of this systemd unit (e.g. vllm.service; no suffix: .service).
    #[arg(long, conflicts_with = "comm")]
    unit: Option<String>,
    /// Every process whose command name matches this regex.
    #[arg(long)]
    comm: Option<String>,
    /// tpp (default), lru-tiered, static or off.
    #[arg(long)]
    policy: Option<String>,
    /// Higher wins the fast tier when it is short.
    #[arg(long)]
    priority: Option<i32>,
    /// A scope's name (default: KIND:VALUE, e.g. cgroup:/system.slice/vllm.service).
    #[arg(long)]
    name: Option<String>,
    /// A scope's cap on the fast tier: bytes (2GiB) or percent of the fast tier (25%).
    #[arg(long)]
    fast_budget: Option<String>,
    /// A scope's guaranteed share of the fast tier, same units.
    #[arg(long)]
    fast_min: Option<String>,
    /// A scope's GPU, by PCI address (0000:3b:00.0) or index in PCI bus order (3): its
    /// fast tier becomes the fast node(s) near that GPU (`tierctl tiers` lists them).
    #[arg(long)]
    gpu: Option<String>,
}

#[derive(clap::Args, Debug)]
#[group(id = "target", required = true, multiple = false)]
pub struct UnmanageArgs {
    #[arg(long)]
    pid: Option<i32>,
    /// A scope by name, as `tierctl status` lists it.
    #[arg(long)]
    scope: Option<String>,
    /// The runtime scope of this cgroup.
    #[arg(long)]
    cgroup: Option<String>,
    /// The runtime scope of this unit.
    #[arg(long)]
    unit: Option<String>,
    /// The runtime scope of this regex.
    #[arg(long)]
    comm: Option<String>,
}

fn show(json: bool, m: ManageReply, v: serde_json::Value) -> Result<(), Failure> {
    if json {
        return super::print_json(&v);
    }
    if m.managed {
        println!(
            "pid {} managed: policy {}, priority {}",
            m.pid, m.policy, m.priority
        );
    } else {
        println!("pid {} no longer managed", m.pid);
    }
    Ok(())
}

fn show_scope(json: bool, s: ScopeStatus, v: serde_json::Value) -> Result<(), Failure> {
    if json {
        return super::print_json(&v);
    }
    if !s.managed {
        println!("scope {} no longer managed", s.name);
        return Ok(());
    }
    println!(
        "scope {} ({} {}) managed: policy {}, priority {}, fast budget {}, processes: {}",
        s.name,
        s.kind,
        s.selector,
        s.policy,
        s.priority,
        opt(s.fast_budget_bytes.map(crate::output::bytes)),
        if s.pids.is_empty() {
            "none yet".to_string()
        } else {
            s.pids
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        }
    );
    if let Some(g) = &s.gpu {
        let nodes: Vec<String> = s.gpu_nodes.iter().map(u32::to_string).collect();
        println!(
            "  gpu {g}: fast node(s) {}",
            opt((!nodes.is_empty()).then(|| nodes.join(" ")))
        );
    }
    if let Some(p) = &s.problem {
        println!("  note: {p}");
    }
    Ok(())
}

pub fn manage(socket: &Path, json: bool, a: ManageArgs) -> Result<(), Failure> {
    if let Some(pid) = a.pid {
        let (m, v) = call(
            socket,
            &Request::Manage {
                pid,
                policy: a.policy,
                priority: a.priority,
            },
        )?;
        return show(json, m, v);
    }
    let (s, v) = call(
        socket,
        &Request::ManageScope {
            name: a.name,
            cgroup: a.cgroup,
            unit: a.unit,
            comm: a.comm,
            policy: a.policy,
            priority: a.priority,
            fast_budget: a.fast_budget,
            fast_min: a.fast_min,
            gpu: a.gpu,
        },
    )?;
    show_scope(json, s, v)
}

pub fn unmanage(socket: &Path, json: bool, a: UnmanageArgs) -> Result<(), Failure> {
    if let Some(pid) = a.pid {
        let (m, v) = call(socket, &Request::Unmanage { pid })?;
        return show(json, m, v);
    }
    let name = match (a.scope, a.cgroup, a.unit, a.comm) {
        (Some(n), ..) => n,
        (None, c, u, r) => {
            let (kind, value) = match (c, u, r) {
                (Some(c), _, _) => ("cgroup", c),
                (_, Some(u), _) => ("unit", u),
                (_, _, Some(r)) => ("comm", r),
                _ => return Err(Failure::Other("nothing to unmanage".into())),
            };
            // The runtime scope with this selector, whatever its name.
            let (st, _): (StatusReply, _) = call(socket, &Request::Status)?;
            st.scopes
                .into_iter()
                .find(|s| s.origin == "runtime" && s.kind == kind && s.selector == value)
                .map(|s| s.name)
                .unwrap_or(format!("{kind}:{value}"))
        }
    };
    let (s, v) = call(socket, &Request::UnmanageScope { name })?;
    show_scope(json, s, v)
}
