//! Gives the shared library its SONAME, `libtierd.so.N`, with N the `TIERD_SOVERSION`
//! of `include/tierd.h` (the one place the ABI version is written; the Makefile reads it
//! too and installs `libtierd.so.N` with the `.so` link beside it). Programs linked with
//! `-ltierd` then record `libtierd.so.N` as NEEDED, so an incompatible libtierd (a higher
//! N) never loads under them. Runs at every build of `tierd-c`; cargo reruns it when the
//! header changes.

use std::fs;

const HEADER: &str = "include/tierd.h";

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    let header = match fs::read_to_string(HEADER) {
        Ok(h) => h,
        Err(e) => panic!("reading {HEADER}: {e}"),
    };
    let Some(n) = soversion(&header) else {
        panic!("{HEADER}: no `#define TIERD_SOVERSION <number>`");
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtierd.so.{n}");
}

/// The number after `#define TIERD_SOVERSION`, if the header has one.
fn soversion(header: &str) -> Option<u32> {
    header.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#define"), Some("TIERD_SOVERSION"), Some(n)) => n.parse().ok(),
            _ => None,
        }
    })
}
