//! What tierd reads about a process from `/proc` and pidfds: its identity ([`pidfd`]),
//! its mappings ([`maps`]) and which of its pages are resident ([`resident`]).
//!
//! Called by the control socket, the client protocol, the migration engine and the
//! placement scan. Read-only: nothing here changes a process.

pub mod maps;
pub mod pidfd;
pub mod resident;
