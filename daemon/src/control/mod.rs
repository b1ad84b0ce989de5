//! The control socket (`daemon.socket`): JSON lines from tierctl and scripts.
//!
//! One thread accepts; each connection gets a thread that reads request lines (at most
//! `tierd_api::MAX_REQUEST_BYTES` each, 60 s idle timeout) and answers each with one
//! line. Handlers only read state or call into the migration engine; a bad request gets
//! an error reply and the connection (and the daemon) go on.

mod caller;
mod handlers;
mod server;

pub use caller::{Caller, CallerError};
pub use handlers::handle;
pub use server::{bind, serve};
