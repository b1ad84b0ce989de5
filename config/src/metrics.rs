//! `[metrics]`: the Prometheus endpoint.

use crate::Invalid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `host:port`; loopback by default so nothing is exposed without a decision.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(Invalid::new(
                "metrics.listen",
                format!("{:?} is not an ip:port address", self.listen),
            ));
        }
        Ok(())
    }
}
