//! `tierctl manage --pid PID [--policy NAME] [--priority N]`, `tierctl unmanage --pid PID`.

use crate::client::{call, Failure};
use std::path::Path;
use tierd_api::{ManageReply, Request};

#[derive(clap::Args, Debug)]
pub struct ManageArgs {
    #[arg(long)]
    pid: i32,
    /// tpp (default), lru-tiered, static or off.
    #[arg(long)]
    policy: Option<String>,
    /// Higher wins the fast tier when it is short.
    #[arg(long)]
    priority: Option<i32>,
}

#[derive(clap::Args, Debug)]
pub struct UnmanageArgs {
    #[arg(long)]
    pid: i32,
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

pub fn manage(socket: &Path, json: bool, a: ManageArgs) -> Result<(), Failure> {
    let (m, v) = call(
        socket,
        &Request::Manage {
            pid: a.pid,
            policy: a.policy,
            priority: a.priority,
        },
    )?;
    show(json, m, v)
}

pub fn unmanage(socket: &Path, json: bool, a: UnmanageArgs) -> Result<(), Failure> {
    let (m, v) = call(socket, &Request::Unmanage { pid: a.pid })?;
    show(json, m, v)
}
