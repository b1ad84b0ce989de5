//! tierd's configuration: one TOML file, every key with a default.
//!
//! Each section lives in its own module and is `#[serde(default, deny_unknown_fields)]`:
//! a missing key takes its default, an unknown key is an error naming the file and line.
//! [`Config::load`] reads and validates; [`Config::load_default_or`] is what the daemon
//! uses: the default path missing means built-in defaults, an explicit path missing is
//! an error. Every key is documented in `docs/config.md`.

mod client;
mod daemon;
mod heat;
mod metrics;
mod migrate;
mod policy;
mod sampling;
mod scope;
mod socket;
mod topology;
pub mod units;

pub use client::{ClientConfig, PoolTier};
pub use daemon::DaemonConfig;
pub use heat::HeatConfig;
pub use metrics::MetricsConfig;
pub use migrate::MigrateConfig;
pub use policy::{PolicyConfig, PolicyName};
pub use sampling::{BackendKind, DamonConfig, SamplingConfig};
pub use scope::{check_gpu, ScopeConfig, Selector};
pub use topology::TopologyConfig;
pub use units::{Amount, Bytes};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the daemon looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/tierd/tierd.toml";

/// The example config shipped in `config/tierd.toml`, embedded so the docs and the
/// daemon's defaults cannot drift apart (a test checks they agree).
pub const EXAMPLE_TOML: &str = include_str!("../tierd.toml");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub migrate: MigrateConfig,
    pub sampling: SamplingConfig,
    pub heat: HeatConfig,
    pub policy: PolicyConfig,
    pub client: ClientConfig,
    pub metrics: MetricsConfig,
    pub topology: TopologyConfig,
    /// `[[scope]]` entries: groups of processes managed together.
    #[serde(rename = "scope", skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<ScopeConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}:{line}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
}

/// A semantic problem found by `validate`: the dotted key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(key: &str, reason: impl Into<String>) -> Invalid {
        Invalid {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
            reason: e.message().to_string(),
        })?;
        if let Err(bad) = cfg.validate() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: line_of_key(text, &bad.key),
                key: bad.key,
                reason: bad.reason,
            });
        }
        Ok(cfg)
    }

    /// Reads and validates a config file that must exist.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// `Some(path)`: that file must exist. `None`: [`DEFAULT_PATH`] if it exists, else
    /// built-in defaults. Returns the config and the path it came from.
    pub fn load_default_or(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        match path {
            Some(p) => Ok((Config::load(p)?, Some(p.to_path_buf()))),
            None => {
                let p = Path::new(DEFAULT_PATH);
                if p.exists() {
                    Ok((Config::load(p)?, Some(p.to_path_buf())))
                } else {
                    Ok((Config::default(), None))
                }
            }
        }
    }

    /// Cross-key checks that serde cannot express.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.daemon.validate()?;
        self.migrate.validate()?;
        self.sampling.validate()?;
        self.heat.validate()?;
        self.policy.validate()?;
        self.client.validate()?;
        self.metrics.validate()?;
        self.topology.validate()?;
        scope::validate(&self.scopes)?;
        Ok(())
    }

    /// The config as TOML text (what `tierctl config show` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Lines `key: old -> new` for every leaf that differs (used by reload); a key read
    /// only at start ([`RESTART_KEYS`]) gets ` (applies at the next start)` appended, so
    /// a reload does not look as if it applied it.
    pub fn diff(&self, new: &Config) -> Vec<String> {
        let (Ok(a), Ok(b)) = (toml::Value::try_from(self), toml::Value::try_from(new)) else {
            return vec!["(config could not be compared)".into()];
        };
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        for line in &mut out {
            let key = line.split(':').next().unwrap_or_default();
            if RESTART_KEYS.contains(&key) {
                line.push_str(" (applies at the next start)");
            }
        }
        out
    }
}

/// Keys tierd reads once at start (column *Reload* = restart in docs/config.md): a
/// reload that changes them is accepted, and they take effect when tierd restarts.
pub const RESTART_KEYS: &[&str] = &[
    "daemon.socket",
    "daemon.socket_mode",
    "daemon.socket_group",
    "daemon.log_level",
    "daemon.scopes_file",
    "policy.kernel_numa_balancing",
    "policy.kernel_numa_scan_period_min_ms",
    "policy.kernel_numa_scan_size_mb",
    "policy.kernel_numa_hot_threshold_ms",
    "policy.kernel_numa_promote_rate_limit_mbps",
    "client.enabled",
    "client.socket",
    "client.socket_mode",
    "client.socket_group",
    "metrics.enabled",
    "metrics.listen",
];

fn diff_values(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
            for k in keys {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => diff_values(&key, x, y, out),
                    (x, y) => {
                        let show =
                            |v: Option<&toml::Value>| v.map_or("(unset)".into(), |v| v.to_string());
                        out.push(format!("{key}: {} -> {}", show(x), show(y)))
                    }
                }
            }
        }
        _ if a != b => out.push(format!("{prefix}: {a} -> {b}")),
        _ => {}
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Best-effort line of a dotted key (`policy.interval_ms`): the line that assigns the
/// last component inside the right table; 0 when the key is not written (a default).
fn line_of_key(text: &str, dotted: &str) -> usize {
    let (table, leaf) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut in_table = table.is_empty();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_table = t.trim_matches(|c| c == '[' || c == ']').trim() == table;
            continue;
        }
        if in_table && t.split('=').next().map(str::trim) == Some(leaf) {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_the_defaults() {
        let parsed = Config::parse(EXAMPLE_TOML, Path::new("tierd.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let again = Config::parse(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = "[policy]\ninterval_ms = 100\nbogus = 1\n";
        let err = Config::parse(text, Path::new("/etc/t.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/t.toml:3:"), "{msg}");
        assert!(msg.contains("bogus"), "{msg}");
    }

    #[test]
    fn bad_value_is_refused_with_line() {
        let text = "[migrate]\n\nrate_limit_mbps = \"fast\"\n";
        let msg = Config::parse(text, Path::new("c")).unwrap_err().to_string();
        assert!(msg.starts_with("c:3:"), "{msg}");
    }

    #[test]
    fn semantic_error_names_key_and_line() {
        let text = "[policy]\ninterval_ms = 0\n";
        let msg = Config::parse(text, Path::new("c")).unwrap_err().to_string();
        assert!(msg.starts_with("c:2: policy.interval_ms:"), "{msg}");
    }

    /// `[section]\nkey = value` is refused with an error naming the key on line 2.
    fn assert_refused(section: &str, key: &str, value: &str) {
        let text = format!("[{section}]\n{key} = {value}\n");
        let msg = Config::parse(&text, Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with(&format!("c:2: {section}.{key}:")), "{msg}");
    }

    #[test]
    fn plan_horizon_out_of_range_is_refused() {
        for v in ["0", "49", "10001"] {
            assert_refused("policy", "plan_horizon_ms", v);
        }
        let ok = Config::parse("[policy]\nplan_horizon_ms = 250\n", Path::new("c")).unwrap();
        assert_eq!(ok.policy.plan_horizon_ms, 250);
    }

    #[test]
    fn kernel_numa_knobs_are_checked() {
        for (key, v) in [
            ("kernel_numa_scan_size_mb", "0"),
            ("kernel_numa_scan_size_mb", "2561"),
            ("kernel_numa_scan_period_min_ms", "0"),
            ("kernel_numa_hot_threshold_ms", "0"),
        ] {
            assert_refused("policy", key, v);
        }
        let text = "[policy]\nkernel_numa_balancing = 2\nkernel_numa_scan_period_min_ms = 100\n\
                    kernel_numa_scan_size_mb = 256\nkernel_numa_promote_rate_limit_mbps = 0\n";
        let ok = Config::parse(text, Path::new("c")).unwrap();
        assert_eq!(ok.policy.kernel_numa_scan_period_min_ms, Some(100));
        assert_eq!(ok.policy.kernel_numa_promote_rate_limit_mbps, Some(0));
    }

    #[test]
    fn hint_poll_ceiling_is_checked() {
        for v in ["0", "1001"] {
            assert_refused("client", "hint_poll_max_ms", v);
        }
        let ok = Config::parse("[client]\nhint_poll_max_ms = 1\n", Path::new("c")).unwrap();
        assert_eq!(ok.client.hint_poll_max_ms, 1);
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.toml");
        assert!(matches!(
            Config::load_default_or(Some(&p)),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn diff_lists_changed_leaves() {
        let a = Config::default();
        let mut b = a.clone();
        b.policy.interval_ms = 50;
        assert_eq!(
            a.diff(&b),
            vec!["policy.interval_ms: 200 -> 50".to_string()]
        );
        b.policy.kernel_numa_balancing = Some(2);
        b.daemon.log_level = "debug".into();
        assert_eq!(
            a.diff(&b),
            vec![
                "daemon.log_level: \"info\" -> \"debug\" (applies at the next start)".to_string(),
                "policy.interval_ms: 200 -> 50".to_string(),
                "policy.kernel_numa_balancing: (unset) -> 2 (applies at the next start)"
                    .to_string(),
            ]
        );
    }

    /// docs/config.md's *Reload* column and [`RESTART_KEYS`] say the same.
    #[test]
    fn restart_keys_match_the_reference() {
        let doc = include_str!("../../docs/config.md");
        let mut section = "";
        let mut documented = Vec::new();
        for line in doc.lines() {
            if let Some(h) = line.strip_prefix("## `[") {
                section = h.split(']').next().unwrap_or_default();
            } else if line.starts_with("## ") {
                section = "";
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() > 4 && cells[1].starts_with('`') && cells[3] == "restart" {
                documented.push(format!("{section}.{}", cells[1].trim_matches('`')));
            }
        }
        let mut want: Vec<String> = RESTART_KEYS.iter().map(|k| k.to_string()).collect();
        documented.sort();
        want.sort();
        assert_eq!(documented, want);
    }
}
