//! `tierctl placement --pid PID [--range START-END]`.

use crate::client::{call, Failure};
use crate::output::{bytes, table};
use std::path::Path;
use tierd_api::{AddrRange, PlacementReply, Request};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    /// START-END, decimal or 0x-hex.
    #[arg(long)]
    range: Option<AddrRange>,
}

pub fn run(socket: &Path, json: bool, a: Args) -> Result<(), Failure> {
    let (p, v): (PlacementReply, _) = call(
        socket,
        &Request::Placement {
            pid: a.pid,
            range: a.range,
        },
    )?;
    if json {
        return super::print_json(&v);
    }
    let total: u64 = p.nodes.values().sum();
    let rows: Vec<Vec<String>> = p
        .nodes
        .iter()
        .map(|(n, b)| {
            vec![
                n.clone(),
                bytes(*b),
                format!("{:.1}%", 100.0 * *b as f64 / total.max(1) as f64),
            ]
        })
        .collect();
    table(&["NODE", "RESIDENT", "SHARE"], &rows);
    Ok(())
}
