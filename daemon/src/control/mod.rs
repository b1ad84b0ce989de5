//! The control socket (`daemon.socket`): JSON lines from tierctl and scripts.
//!
//! One thread accepts ([`server`], under `daemon.max_connections*`); each admitted
//! connection gets a thread that reads request lines ([`lines`]: at most
//! `tierd_api::MAX_REQUEST_BYTES` each, `daemon.idle_timeout_ms` between requests,
//! `daemon.request_timeout_ms` for one) and answers each with one line. Handlers only
//! read state or call into the migration engine; a bad request gets an error reply and
//! the connection (and the daemon) go on.

mod caller;
mod handlers;
mod lines;
mod scope;
mod server;

pub use caller::{Caller, CallerError};
pub use handlers::handle;
pub use server::{bind, serve};
