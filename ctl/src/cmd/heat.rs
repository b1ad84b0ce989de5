//! `tierctl heat --pid PID [--top BYTES]`.

use crate::client::{call, Failure};
use crate::output::{bytes, opt, table};
use std::path::Path;
use tierd_api::{HeatReply, Request};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    /// Only the hottest regions adding up to this many bytes (e.g. 33554432 or 32MiB).
    #[arg(long, value_parser = parse_size)]
    top: Option<u64>,
}

/// Bytes as an integer or with a binary suffix (KiB, MiB, GiB; K, M, G).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 32MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        u => return Err(format!("unknown size unit {u:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub fn run(socket: &Path, json: bool, a: Args) -> Result<(), Failure> {
    let (h, v): (HeatReply, _) = call(
        socket,
        &Request::Heat {
            pid: a.pid,
            top_bytes: a.top,
            history: false,
        },
    )?;
    if json {
        return super::print_json(&v);
    }
    let rows: Vec<Vec<String>> = h
        .regions
        .iter()
        .map(|r| {
            vec![
                format!("{:#x}", r.start),
                format!("{:#x}", r.end),
                bytes(r.end - r.start),
                format!("{:.3}", r.heat),
                opt(r.node),
            ]
        })
        .collect();
    table(&["START", "END", "SIZE", "HEAT", "NODE"], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert!(super::parse_size("12 parsecs").is_err());
    }
}
