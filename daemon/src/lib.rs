//! tierd: keeps the hot pages of managed processes on fast memory and the cold ones on
//! the slower tiers (CXL).
//!
//! Data flows one way: [`sampling`] → [`heat`] → [`policy`] → [`migrate`], driven by
//! the [`tiering`] loop. [`control`] (tierctl) and [`protocol`] (inference clients) only
//! read [`state`] and send commands into that flow; [`ops`] exposes it to operators.
//! [`topology`] and [`migrate`] hide the kernel behind narrow traits so the policy is
//! testable without root. See `docs/architecture.md`.

pub mod access;
pub mod control;
pub mod heat;
pub mod kernel;
pub mod migrate;
pub mod ops;
pub mod persist;
pub mod policy;
pub mod proc;
pub mod protocol;
pub mod registry;
pub mod sampling;
pub mod scope;
pub mod sockets;
pub mod state;
pub mod status;
pub mod tiering;
pub mod topology;
pub mod vmstat;
