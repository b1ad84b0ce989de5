//! `[daemon]`: sockets, state tree, logging, and the control socket's connection limits.

use crate::{socket, Invalid};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Control socket (tierctl).
    pub socket: PathBuf,
    /// Octal permission bits of the control socket, as a string (`"0660"`).
    pub socket_mode: String,
    /// Group of the control socket (a name or a numeric gid); unset: root's group.
    pub socket_group: Option<String>,
    /// Control connections open at once, root's reserve included.
    pub max_connections: u32,
    /// Control connections open at once per non-root uid.
    pub max_connections_per_uid: u32,
    /// The last this-many of `max_connections` are only for root, so an operator can
    /// always run `tierctl status` while other users hold the rest.
    pub root_reserved_connections: u32,
    /// A control connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A request line must be complete this long after its first byte arrived.
    pub request_timeout_ms: u64,
    /// A reply the caller does not read within this long drops the connection.
    pub write_timeout_ms: u64,
    /// Root of the sysfs-style state tree.
    pub state_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace` (RUST_LOG overrides).
    pub log_level: String,
    /// Never move pages, even with several tiers.
    pub monitor_only: bool,
    /// Highest `manage --priority` a caller other than root may set (>= 0).
    pub max_priority_unprivileged: i32,
    /// Scopes added with `tierctl manage --cgroup/--unit/--comm`, kept across restarts
    /// (and reboots: not under `/run`).
    pub scopes_file: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from("/run/tierd/tierd.sock"),
            socket_mode: "0660".into(),
            socket_group: None,
            max_connections: 128,
            max_connections_per_uid: 16,
            root_reserved_connections: 8,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 5_000,
            write_timeout_ms: 5_000,
            state_dir: PathBuf::from("/run/tierd"),
            log_level: "info".into(),
            monitor_only: false,
            max_priority_unprivileged: 0,
            scopes_file: PathBuf::from("/var/lib/tierd/scopes.json"),
        }
    }
}

impl DaemonConfig {
    /// The control socket's mode as bits.
    pub fn socket_mode_bits(&self) -> Result<u32, Invalid> {
        socket::mode_bits("daemon.socket_mode", &self.socket_mode)
    }

    /// The control socket's group, resolved; `None` when unset.
    pub fn socket_gid(&self) -> Result<Option<u32>, Invalid> {
        self.socket_group
            .as_deref()
            .map(|g| socket::group_gid("daemon.socket_group", g))
            .transpose()
    }

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
        if !self.scopes_file.is_absolute() {
            return Err(Invalid::new(
                "daemon.scopes_file",
                "must be an absolute path",
            ));
        }
        if !self.state_dir.is_absolute() {
            return Err(Invalid::new("daemon.state_dir", "must be an absolute path"));
        }
        self.socket_mode_bits()?;
        self.socket_gid()?;
        if self.root_reserved_connections >= self.max_connections {
            return Err(Invalid::new(
                "daemon.root_reserved_connections",
                format!(
                    "{} leaves no connection for other users: must be below \
                     daemon.max_connections ({})",
                    self.root_reserved_connections, self.max_connections
                ),
            ));
        }
        if self.max_connections_per_uid == 0 {
            return Err(Invalid::new(
                "daemon.max_connections_per_uid",
                "must be at least 1",
            ));
        }
        for (key, ms) in [
            ("daemon.idle_timeout_ms", self.idle_timeout_ms),
            ("daemon.request_timeout_ms", self.request_timeout_ms),
            ("daemon.write_timeout_ms", self.write_timeout_ms),
        ] {
            if ms == 0 {
                return Err(Invalid::new(key, "must be at least 1 ms"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    fn refused(text: &str) -> String {
        Config::parse(text, Path::new("c")).unwrap_err().to_string()
    }

    #[test]
    fn connection_limits_are_checked() {
        let m = refused("[daemon]\nmax_connections = 8\nroot_reserved_connections = 8\n");
        assert!(
            m.starts_with("c:3: daemon.root_reserved_connections:"),
            "{m}"
        );
        let m = refused("[daemon]\nmax_connections_per_uid = 0\n");
        assert!(m.starts_with("c:2: daemon.max_connections_per_uid:"), "{m}");
        let m = refused("[daemon]\nrequest_timeout_ms = 0\n");
        assert!(m.starts_with("c:2: daemon.request_timeout_ms:"), "{m}");
    }

    #[test]
    fn socket_group_and_mode() {
        let c = Config::parse(
            "[daemon]\nsocket_group = \"root\"\nsocket_mode = \"0600\"\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.daemon.socket_gid().unwrap(), Some(0));
        assert_eq!(c.daemon.socket_mode_bits().unwrap(), 0o600);
        assert_eq!(Config::default().daemon.socket_gid().unwrap(), None);
        let m = refused("[daemon]\nsocket_group = \"tierd-no-such-group-x\"\n");
        assert!(
            m.starts_with("c:2: daemon.socket_group: no group named"),
            "{m}"
        );
        let m = refused("[daemon]\nsocket_mode = \"rw\"\n");
        assert!(m.starts_with("c:2: daemon.socket_mode:"), "{m}");
    }
}
