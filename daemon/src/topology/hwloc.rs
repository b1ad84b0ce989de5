//! Cross-check of the sysfs topology with hwloc (which also reads sysfs/ACPI, through
//! its own parser): a disagreement is logged, never fatal, since sysfs is the source of
//! truth for the kernel's tiers.

use super::Topology;
use hwlocality::object::types::ObjectType;
use hwlocality::Topology as Hwloc;

/// Differences between hwloc's NUMA nodes and ours, in words (empty = agree).
pub fn cross_check(ours: &Topology) -> Result<Vec<String>, String> {
    let hw = Hwloc::new().map_err(|e| format!("hwloc init: {e}"))?;
    let mut theirs: Vec<(u32, u64)> = hw
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|o| {
            let id = o.os_index()? as u32;
            let mem = o.attributes().and_then(|a| match a {
                hwlocality::object::attributes::ObjectAttributes::NUMANode(n) => {
                    n.local_memory().map(|m| m.get())
                }
                _ => None,
            });
            Some((id, mem.unwrap_or(0)))
        })
        .collect();
    theirs.sort_unstable();
    let mut diffs = Vec::new();
    let our_ids: Vec<u32> = ours.nodes.iter().map(|n| n.id).collect();
    let their_ids: Vec<u32> = theirs.iter().map(|t| t.0).collect();
    if our_ids != their_ids {
        diffs.push(format!("nodes: sysfs {our_ids:?}, hwloc {their_ids:?}"));
    }
    for (id, mem) in theirs {
        if let Some(n) = ours.node(id) {
            // hwloc reports MemTotal too; allow 5% for reservations.
            let (a, b) = (n.total_bytes as f64, mem as f64);
            if b > 0.0 && (a - b).abs() / a.max(b) > 0.05 {
                diffs.push(format!("node{id} memory: sysfs {a} bytes, hwloc {b} bytes"));
            }
        }
    }
    Ok(diffs)
}
