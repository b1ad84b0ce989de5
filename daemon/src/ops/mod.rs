//! Operations endpoints: Prometheus metrics, the `/run/tierd` state tree, systemd
//! notification.

pub mod metrics;
