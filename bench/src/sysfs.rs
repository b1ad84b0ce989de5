//! Per-node memory figures from `/sys/devices/system/node/nodeN/meminfo`, the
//! kernel's migration counters from `/proc/vmstat`, and a file gate the VM scenarios
//! use to start a workload's measured phase.

use anyhow::Context;
use std::path::Path;
use std::time::Duration;

/// A field of nodeN/meminfo (`MemTotal`, `MemFree`, ...) in bytes.
pub fn node_meminfo(node: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/sys/devices/system/node/node{node}/meminfo");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_meminfo(&text, field).with_context(|| format!("{path}: no {field}"))
}

/// Parses `Node 0 MemFree:  123 kB` lines.
fn parse_meminfo(text: &str, field: &str) -> Option<u64> {
    let key = format!("{field}:");
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 4 && f[2] == key {
            f[3].parse::<u64>().ok().map(|kb| kb * 1024)
        } else {
            None
        }
    })
}

/// All counters of /proc/vmstat.
pub fn vmstat() -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let text = std::fs::read_to_string("/proc/vmstat").context("reading /proc/vmstat")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

/// Growth of counter `key` between two vmstat snapshots (0 if absent).
pub fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    key: &str,
) -> u64 {
    after
        .get(key)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(key).copied().unwrap_or(0))
}

/// Blocks until `path` exists (the scenario creates it once it has set up the mover).
pub fn wait_for_file(path: &Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn meminfo_line() {
        let t = "Node 0 MemTotal:  524288 kB\nNode 0 MemFree:   1000 kB\n";
        assert_eq!(super::parse_meminfo(t, "MemFree"), Some(1000 * 1024));
        assert_eq!(super::parse_meminfo(t, "Active"), None);
    }
}
