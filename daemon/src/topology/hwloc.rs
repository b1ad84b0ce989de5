//! hwloc, read once at start: a cross-check of the sysfs topology (hwloc also reads
//! sysfs/ACPI, through its own parser: a disagreement is logged, never fatal, since sysfs
//! is the source of truth for the kernel's tiers), and the PCI locality of GPUs and NICs
//! ([`discover_devices`], or [`devices_from_xml`] for a saved topology).

use super::devices::{DeviceKind, PciDevice};
use super::Topology;
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::topology::builder::TypeFilter;
use hwlocality::Topology as Hwloc;
use std::path::Path;

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

/// The GPUs and NICs hwloc finds on this machine (its PCI locality; `HWLOC_XMLFILE`
/// makes hwloc read a saved topology instead). Read once at start.
pub fn discover_devices() -> Result<Vec<PciDevice>, String> {
    let hw = Hwloc::builder()
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(|e| format!("hwloc I/O filter: {e}"))?
        .build()
        .map_err(|e| format!("hwloc init: {e}"))?;
    Ok(pci_devices(&hw))
}

/// The GPUs and NICs of a saved hwloc XML topology (tests, and machines described by file).
pub fn devices_from_xml(path: &Path) -> Result<Vec<PciDevice>, String> {
    let hw = Hwloc::builder()
        .from_xml_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(|e| format!("hwloc I/O filter: {e}"))?
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(pci_devices(&hw))
}

/// GPUs and NICs of a loaded topology, each with the NUMA nodes of its first non-I/O
/// ancestor (the package or node the PCI host bridge hangs off).
pub fn pci_devices(hw: &Hwloc) -> Vec<PciDevice> {
    hw.pci_devices()
        .filter_map(|o| {
            let Some(ObjectAttributes::PCIDevice(p)) = o.attributes() else {
                return None;
            };
            let kind = DeviceKind::of_class(p.class_id())?;
            let nodes = o
                .first_non_io_ancestor()
                .and_then(|a| a.nodeset())
                .map(|ns| ns.iter_set().map(|i| usize::from(i) as u32).collect())
                .unwrap_or_default();
            Some(PciDevice {
                kind,
                pci: format!(
                    "{:04x}:{:02x}:{:02x}.{:x}",
                    p.domain(),
                    p.bus_id(),
                    p.bus_device(),
                    p.function()
                ),
                class_id: p.class_id(),
                vendor_id: p.vendor_id(),
                device_id: p.device_id(),
                name: o
                    .info("PCIDevice")
                    .map(|c| c.to_string_lossy().into_owned()),
                nodes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::devices::{fast_node_near_gpu, near_node, GpuRef};
    use crate::topology::fake::FakeTopology;
    use crate::topology::TopologySource;

    /// A hand-written 2-socket server (daemon/tests/data): node 0 on package 0, node 1
    /// and a CPU-less CXL node 2 on package 1; two H100s and a NIC per package, plus an
    /// AMD display controller on package 1.
    fn server() -> Vec<PciDevice> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hwloc-2socket-gpus.xml");
        devices_from_xml(&path).unwrap()
    }

    #[test]
    fn names_the_node_near_each_gpu() {
        let devs = server();
        let topo = FakeTopology::new(&[
            (0, &[0, 1], 64 << 30, 0),
            (1, &[2, 3], 64 << 30, 0),
            (2, &[], 128 << 30, 1),
        ])
        .read()
        .unwrap();
        let mut found = Vec::new();
        for (i, g) in crate::topology::devices::gpus(&devs).iter().enumerate() {
            let by_pci = fast_node_near_gpu(&devs, &topo, &GpuRef::parse(&g.pci)).unwrap();
            let by_index = fast_node_near_gpu(&devs, &topo, &GpuRef::Index(i)).unwrap();
            assert_eq!(by_pci, by_index);
            println!("GPU {i} {} ({:?}) is near node {by_pci}", g.pci, g.name);
            found.push((g.pci.as_str(), by_pci));
        }
        assert_eq!(
            found,
            vec![
                ("0000:17:00.0", 0),
                ("0000:18:00.0", 0),
                ("0000:97:00.0", 1),
                ("0000:98:00.0", 1),
                ("0000:99:00.0", 1),
            ],
            "package 1's GPUs get node 1, never the CPU-less slow node 2 beside it"
        );
        let e = fast_node_near_gpu(&devs, &topo, &GpuRef::parse("0000:3b:00.0")).unwrap_err();
        assert!(
            e.to_string()
                .contains("no GPU 0000:3b:00.0 (GPUs: 0000:17:00.0"),
            "{e}"
        );
    }

    #[test]
    fn lists_gpus_and_nics_per_node() {
        let devs = server();
        let near = |n| -> Vec<String> {
            near_node(&devs, n)
                .map(|d| format!("{} {}", d.kind.as_str(), d.pci))
                .collect()
        };
        assert_eq!(
            near(0),
            ["gpu 0000:17:00.0", "gpu 0000:18:00.0", "nic 0000:1a:00.0"]
        );
        assert_eq!(
            near(1),
            [
                "gpu 0000:97:00.0",
                "gpu 0000:98:00.0",
                "gpu 0000:99:00.0",
                "nic 0000:9a:00.0"
            ]
        );
        assert_eq!(near(2), near(1), "the CXL node hangs off package 1");
        let nic = devs.iter().find(|d| d.pci == "0000:1a:00.0").unwrap();
        assert_eq!((nic.vendor_id, nic.class_id), (0x15b3, 0x0207));
        assert_eq!(nic.name.as_deref(), Some("MT2910 Family [ConnectX-7]"));
    }
}
