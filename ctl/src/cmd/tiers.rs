//! `tierctl tiers`.

use crate::client::{call, Failure};
use crate::output::{bytes, opt, table};
use std::path::Path;
use tierd_api::{Request, TiersReply};

pub fn run(socket: &Path, json: bool) -> Result<(), Failure> {
    let (t, v): (TiersReply, _) = call(socket, &Request::Tiers)?;
    if json {
        return super::print_json(&v);
    }
    let rows: Vec<Vec<String>> = t
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.to_string(),
                n.tier.to_string(),
                if n.tier_source.is_empty() {
                    "-".into()
                } else {
                    n.tier_source.clone()
                },
                opt(n.memory_tier.clone()),
                if n.cpus.is_empty() {
                    "-".into()
                } else {
                    format!("{}", n.cpus.len())
                },
                bytes(n.total_bytes),
                bytes(n.free_bytes),
                opt(n.read_latency_ns),
                opt(n.read_bandwidth_mbps),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "TIER",
            "FROM",
            "MEMORY_TIER",
            "CPUS",
            "TOTAL",
            "FREE",
            "READ_NS",
            "READ_MB/S",
        ],
        &rows,
    );
    for n in &t.nodes {
        for d in &n.devices {
            let gpu = d.gpu_index.map_or(String::new(), |i| format!(" #{i}"));
            println!(
                "node {}: {}{} {} [{:04x}:{:04x}]{}",
                n.node,
                d.kind,
                gpu,
                d.pci,
                d.vendor_id,
                d.device_id,
                d.name.as_deref().map_or(String::new(), |s| format!(" {s}"))
            );
        }
    }
    Ok(())
}
