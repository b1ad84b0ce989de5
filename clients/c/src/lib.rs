//! `libtierd.so` / `libtierd.a`: the C API declared in `include/tierd.h`.
//!
//! The functions live in `tierd_client::ffi` (so Rust tests exercise them too); this
//! crate only links them into a C library. `#[no_mangle]` functions of a dependency are
//! exported from a cdylib and included in a staticlib, so a re-export is all it takes.

pub use tierd_client::ffi::*;
