//! `tierctl migrate --pid PID --to NODE [--range START-END]`.

use crate::client::{call, Failure};
use crate::output::bytes;
use std::path::Path;
use tierd_api::{AddrRange, MigrateReply, Request};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    /// Destination NUMA node.
    #[arg(long)]
    to: u32,
    /// START-END, decimal or 0x-hex.
    #[arg(long)]
    range: Option<AddrRange>,
}

pub fn run(socket: &Path, json: bool, a: Args) -> Result<(), Failure> {
    let req = Request::Migrate {
        pid: a.pid,
        to: a.to,
        range: a.range,
    };
    let (m, v): (MigrateReply, _) = call(socket, &req)?;
    if json {
        return super::print_json(&v);
    }
    println!(
        "moved {} of {} pages ({}) to node {} in {:.3}s ({:.0} MB/s)",
        m.moved_pages,
        m.requested_pages,
        bytes(m.bytes),
        a.to,
        m.seconds,
        m.bytes as f64 / 1e6 / m.seconds.max(1e-9)
    );
    if m.huge_pages > 0 {
        println!("  of which {} transparent huge pages", m.huge_pages);
    }
    if m.already_pages > 0 {
        println!("  already on node {}: {} pages", a.to, m.already_pages);
    }
    for (e, n) in &m.failed_pages {
        println!("  not moved: {n} pages {e}");
    }
    if let Some(s) = &m.stopped {
        println!("  stopped early: {s}");
    }
    Ok(())
}
