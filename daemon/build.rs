//! Compiles every `ebpf/*.bpf.c` into `$OUT_DIR/<name>.bpf.o` with clang
//! (`-O2 -g -target bpf`, BTF kept for CO-RE). The objects are embedded in the
//! `tierd` binary by `src/sampling/bpf.rs` with `aya::include_bytes_aligned!`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let src = manifest.join("../ebpf");
    let clang = find_clang();
    println!("cargo:rerun-if-env-changed=TIERD_CLANG");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("reading {}: {e}", src.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in &entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".h") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    for path in entries.iter().filter(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".bpf.c"))
    }) {
        println!("cargo:rerun-if-changed={}", path.display());
        compile(&clang, &src, path, &out);
    }
}

/// `$TIERD_CLANG`, else clang-16, else clang; fails naming the Debian package.
fn find_clang() -> String {
    let candidates = match std::env::var("TIERD_CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-16".to_string(), "clang".to_string()],
    };
    for c in &candidates {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.clone();
        }
    }
    panic!(
        "tierd's BPF programs need clang with the BPF target; tried {candidates:?}. \
         Install the Debian package `clang-16` (and `libbpf-dev` for bpf/bpf_helpers.h): \
         apt-get install clang-16 libbpf-dev"
    );
}

fn compile(clang: &str, include: &Path, src: &Path, out: &Path) {
    let stem = src
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".c"))
        .expect("filtered on .bpf.c");
    let obj = out.join(format!("{stem}.o"));
    let arch_include = format!("/usr/include/{}-linux-gnu", multiarch());
    let status = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(&arch_include)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("running {clang}: {e}"));
    if !status.success() {
        panic!("{clang} failed to compile {} ({status})", src.display());
    }
}

/// The Debian multiarch triplet prefix holding `asm/types.h` for the host.
fn multiarch() -> &'static str {
    match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64",
        _ => "x86_64",
    }
}
