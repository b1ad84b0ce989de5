//! Client side of tierd's shared-memory protocol, and the one definition of what crosses
//! the process boundary.
//!
//! An inference engine connects to tierd's client socket, registers the address ranges
//! of its KV cache as *regions* of fixed-size blocks, and receives one shared-memory file
//! per region holding a hint ring (engine → tierd) and a placement table (tierd → engine).
//! Hints cost one ring write and never block; placement read-back is one atomic load.
//!
//! - [`layout`]: the `#[repr(C)]` shared-memory header and ring entry, sizes asserted;
//! - [`shm`] + [`ring`]: bounds-checked views of a mapping and the SPSC ring on top;
//! - [`wire`] + [`sock`]: the socket messages and their fd-carrying packets;
//! - [`client`]: the Rust API, [`reconnect`]: its reconnection after tierd restarts;
//!   [`ffi`]: the same as the C API of `tierd.h`.
//!
//! The daemon depends on this crate for `layout`, `shm`, `ring` and `wire`, so the two
//! sides cannot drift apart. The byte-level description is `docs/protocol.md`.

pub mod client;
pub mod ffi;
pub mod layout;
pub mod reconnect;
pub mod ring;
pub mod shm;
pub mod sock;
pub mod wire;

pub use client::{Client, ClientError, Reconnect, Region, RegionStats};
pub use layout::HintKind;
