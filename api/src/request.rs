//! Requests: `{"cmd":"<name>", ...arguments}`.

use crate::AddrRange;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Daemon mode, backends, managed processes, counters.
    Status,
    /// Nodes and their tiers.
    Tiers,
    /// Resident bytes per node of a process (or of one range of it).
    Placement {
        pid: i32,
        #[serde(default)]
        range: Option<AddrRange>,
    },
    /// Move a process's pages (or one range of them) to a node, now.
    Migrate {
        pid: i32,
        to: u32,
        #[serde(default)]
        range: Option<AddrRange>,
    },
    /// Put a process under a policy.
    Manage {
        pid: i32,
        #[serde(default)]
        policy: Option<String>,
        #[serde(default)]
        priority: Option<i32>,
    },
    /// Stop managing a process (its pages stay where they are).
    Unmanage { pid: i32 },
    /// Hottest regions of a managed process.
    Heat {
        pid: i32,
        /// Only the hottest regions adding up to this many bytes.
        #[serde(default)]
        top_bytes: Option<u64>,
        /// Include the heat history (address x time) for heatmaps.
        #[serde(default)]
        history: bool,
    },
    /// The config in force, as TOML text.
    ConfigShow,
    /// Re-read the config file; a bad one is refused and the old one stays.
    Reload,
    /// Prometheus text exposition, as the metrics endpoint serves it.
    Metrics,
    /// Manage every process of a scope, present and future (root only): exactly one of
    /// `cgroup` (relative to the cgroup2 root), `unit`, `comm` (a regex). Kept across
    /// restarts in `daemon.scopes_file`.
    ManageScope {
        /// Unique name; unset: `<kind>:<value>` (`cgroup:/system.slice/vllm.service`).
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        cgroup: Option<String>,
        #[serde(default)]
        unit: Option<String>,
        #[serde(default)]
        comm: Option<String>,
        #[serde(default)]
        policy: Option<String>,
        #[serde(default)]
        priority: Option<i32>,
        /// Fast-tier cap: bytes (`"2GiB"`) or percent of the fast tier (`"25%"`).
        #[serde(default)]
        fast_budget: Option<String>,
        /// Guaranteed fast-tier share, same units.
        #[serde(default)]
        fast_min: Option<String>,
        /// The scope's GPU, by PCI address (`"0000:3b:00.0"`) or index (`"3"`): its
        /// fast tier becomes the fast node(s) near that GPU. An unknown GPU is refused.
        #[serde(default)]
        gpu: Option<String>,
    },
    /// Stop managing a scope added with `manage_scope` (its processes stay where they
    /// are); `name` as `status.scopes[].name` shows it.
    UnmanageScope { name: String },
}
