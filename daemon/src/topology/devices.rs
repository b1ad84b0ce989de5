//! PCI devices near NUMA nodes: GPUs and NICs, and "the fast node nearest to GPU X".
//!
//! The devices come from hwloc's PCI locality (`hwloc::pci_devices`, read once at start;
//! an hwloc XML file in tests or through `HWLOC_XMLFILE`); this module is the pure part:
//! which class is a GPU or a NIC, how a GPU is named (PCI address or index), and which
//! fast node serves it. `tierctl tiers` lists the devices per node; the scope work calls
//! [`fast_node_near_gpu`] to place a scope that names its GPU.

use super::Topology;

/// What tierd cares about on the PCI bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// PCI class 0x03xx: VGA, XGA or 3D controller (NVIDIA data-centre GPUs are 0x0302).
    Gpu,
    /// PCI class 0x02xx: Ethernet, InfiniBand and other network controllers.
    Nic,
}

impl DeviceKind {
    /// The kind of a PCI class id (`0x0302`), or `None` for the rest of the bus.
    pub fn of_class(class_id: u16) -> Option<DeviceKind> {
        match class_id >> 8 {
            0x03 => Some(DeviceKind::Gpu),
            0x02 => Some(DeviceKind::Nic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Gpu => "gpu",
            DeviceKind::Nic => "nic",
        }
    }
}

/// One GPU or NIC and the NUMA nodes local to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    pub kind: DeviceKind,
    /// `dddd:bb:dd.f`, lower case.
    pub pci: String,
    pub class_id: u16,
    pub vendor_id: u16,
    pub device_id: u16,
    /// The device's name where hwloc knows it (`PCIDevice` info, from pci.ids).
    pub name: Option<String>,
    /// NUMA nodes of the device's first non-I/O ancestor (its package, usually).
    pub nodes: Vec<u32>,
}

/// How a scope names its GPU: a PCI address (`0000:17:00.0`, or `17:00.0` in domain 0)
/// or an index among the GPUs in PCI bus order (`CUDA_DEVICE_ORDER=PCI_BUS_ID`,
/// nvidia-smi's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRef {
    Pci(String),
    Index(usize),
}

impl GpuRef {
    /// `"3"` is an index, anything with a `:` a PCI address.
    pub fn parse(s: &str) -> GpuRef {
        let s = s.trim();
        match s.parse() {
            Ok(i) => GpuRef::Index(i),
            Err(_) if s.matches(':').count() == 1 => GpuRef::Pci(format!("0000:{s}")),
            Err(_) => GpuRef::Pci(s.to_string()),
        }
        .normalized()
    }

    fn normalized(self) -> GpuRef {
        match self {
            GpuRef::Pci(p) => GpuRef::Pci(p.to_ascii_lowercase()),
            i => i,
        }
    }
}

impl std::fmt::Display for GpuRef {
    /// An index as a number, an address as `dddd:bb:dd.f` (what [`GpuRef::parse`] reads).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuRef::Pci(p) => f.write_str(p),
            GpuRef::Index(i) => write!(f, "{i}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("no GPU {0} (GPUs: {1})")]
    NoSuchGpu(String, String),
    #[error("no node of the fastest tier for GPU {0}")]
    NoFastNode(String),
}

/// The GPUs in PCI bus order (what [`GpuRef::Index`] counts).
pub fn gpus(devices: &[PciDevice]) -> Vec<&PciDevice> {
    let mut g: Vec<&PciDevice> = devices
        .iter()
        .filter(|d| d.kind == DeviceKind::Gpu)
        .collect();
    g.sort_by(|a, b| a.pci.cmp(&b.pci));
    g
}

/// The devices local to `node`.
pub fn near_node(devices: &[PciDevice], node: u32) -> impl Iterator<Item = &PciDevice> {
    devices.iter().filter(move |d| d.nodes.contains(&node))
}

/// The fast node (tier 0) nearest to a GPU: a tier-0 node local to it (the lowest id if
/// several), else the tier-0 node nearest by SLIT distance to its first local node.
pub fn fast_node_near_gpu(
    devices: &[PciDevice],
    topo: &Topology,
    gpu: &GpuRef,
) -> Result<u32, DeviceError> {
    let nodes = fast_nodes_near_gpu(devices, topo, gpu)?;
    Ok(nodes[0])
}

/// The fast nodes (tier 0) near a GPU, never empty: every tier-0 node local to it (a
/// package split into several nodes, sub-NUMA clustering, has more than one), else the
/// tier-0 node nearest by SLIT distance to its first local node. A scope that names
/// its GPU has these as its fast tier.
pub fn fast_nodes_near_gpu(
    devices: &[PciDevice],
    topo: &Topology,
    gpu: &GpuRef,
) -> Result<Vec<u32>, DeviceError> {
    let all = gpus(devices);
    let found = match gpu {
        GpuRef::Index(i) => all.get(*i).copied(),
        GpuRef::Pci(p) => all.iter().copied().find(|d| &d.pci == p),
    };
    let name = || match gpu {
        GpuRef::Index(i) => format!("#{i}"),
        GpuRef::Pci(p) => p.clone(),
    };
    let Some(dev) = found else {
        let list: Vec<&str> = all.iter().map(|d| d.pci.as_str()).collect();
        let list = if list.is_empty() {
            "none found".to_string()
        } else {
            list.join(", ")
        };
        return Err(DeviceError::NoSuchGpu(name(), list));
    };
    let local: Vec<u32> = dev
        .nodes
        .iter()
        .copied()
        .filter(|&n| topo.node(n).is_some())
        .collect();
    let mut fast: Vec<u32> = local
        .iter()
        .copied()
        .filter(|&n| topo.tier_of(n) == Some(0))
        .collect();
    if !fast.is_empty() {
        fast.sort_unstable();
        return Ok(fast);
    }
    local
        .first()
        .and_then(|&n| topo.nearest_in_tier(n, 0))
        .or_else(|| topo.nodes_in_tier(0).map(|n| n.id).min())
        .map(|n| vec![n])
        .ok_or_else(|| DeviceError::NoFastNode(dev.pci.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_names() {
        assert_eq!(DeviceKind::of_class(0x0302), Some(DeviceKind::Gpu));
        assert_eq!(DeviceKind::of_class(0x0300), Some(DeviceKind::Gpu));
        assert_eq!(DeviceKind::of_class(0x0207), Some(DeviceKind::Nic));
        assert_eq!(
            DeviceKind::of_class(0x0680),
            None,
            "an NVSwitch is not a GPU"
        );
        assert_eq!(GpuRef::parse("3"), GpuRef::Index(3));
        assert_eq!(GpuRef::parse("17:00.0"), GpuRef::Pci("0000:17:00.0".into()));
        assert_eq!(
            GpuRef::parse("0000:9A:00.0"),
            GpuRef::Pci("0000:9a:00.0".into())
        );
    }

    #[test]
    fn a_gpu_local_only_to_a_slow_node_gets_the_nearest_fast_one() {
        use crate::topology::fake::FakeTopology;
        use crate::topology::TopologySource;
        // Node 3 (slow, CPU-less) is nearer to node 1 than to node 0.
        let mut topo = FakeTopology::new(&[
            (0, &[0], 1 << 30, 0),
            (1, &[1], 1 << 30, 0),
            (3, &[], 4 << 30, 1),
        ])
        .read()
        .unwrap();
        topo.nodes[2].distances = vec![30, 15, 10];
        let gpu = PciDevice {
            kind: DeviceKind::Gpu,
            pci: "0000:c1:00.0".into(),
            class_id: 0x0302,
            vendor_id: 0x10de,
            device_id: 0x2330,
            name: None,
            nodes: vec![3],
        };
        let n = fast_node_near_gpu(&[gpu], &topo, &GpuRef::Index(0)).unwrap();
        assert_eq!(n, 1);
        let e = fast_node_near_gpu(&[], &topo, &GpuRef::Index(0)).unwrap_err();
        assert_eq!(e.to_string(), "no GPU #0 (GPUs: none found)");
    }
}
