//! `[daemon]`: sockets, state tree, logging.

use crate::Invalid;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Control socket (tierctl).
    pub socket: PathBuf,
    /// Root of the sysfs-style state tree.
    pub state_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace` (RUST_LOG overrides).
    pub log_level: String,
    /// Never move pages, even with several tiers.
    pub monitor_only: bool,
    /// Highest `manage --priority` a caller other than root may set (>= 0).
    pub max_priority_unprivileged: i32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from("/run/tierd/tierd.sock"),
            state_dir: PathBuf::from("/run/tierd"),
            log_level: "info".into(),
            monitor_only: false,
            max_priority_unprivileged: 0,
        }
    }
}

impl DaemonConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&self.log_level.as_str()) {
            return Err(Invalid::new(
                "daemon.log_level",
                format!("{:?} is not one of {LEVELS:?}", self.log_level),
            ));
        }
        if !self.socket.is_absolute() {
            return Err(Invalid::new("daemon.socket", "must be an absolute path"));
        }
        if self.max_priority_unprivileged < 0 {
            return Err(Invalid::new(
                "daemon.max_priority_unprivileged",
                format!(
                    "{} must be >= 0 (a registering client's process is managed at priority 0)",
                    self.max_priority_unprivileged
                ),
            ));
        }
        if !self.state_dir.is_absolute() {
            return Err(Invalid::new("daemon.state_dir", "must be an absolute path"));
        }
        Ok(())
    }
}
