//! `clients/c/include/tierd.h` states the same constants as the Rust layout, exports
//! every function `ffi.rs` defines, and compiles (when gcc is installed).

use std::path::Path;
use tierd_client::layout::{ENTRY_BYTES, HEADER_BYTES, MAGIC, VERSION};
use tierd_client::HintKind;

fn header() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../c/include/tierd.h");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn define(h: &str, name: &str) -> String {
    h.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("#define") && w.next() == Some(name))
                .then(|| w.next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("tierd.h lacks #define {name}"))
}

#[test]
fn constants_match_the_rust_layout() {
    let h = header();
    let kinds = [
        ("TIERD_HINT_ACCESS", HintKind::Access),
        ("TIERD_HINT_PREFETCH", HintKind::Prefetch),
        ("TIERD_HINT_COLD", HintKind::Cold),
        ("TIERD_HINT_FREE", HintKind::Free),
        ("TIERD_HINT_PIN_FAST", HintKind::PinFast),
        ("TIERD_HINT_UNPIN", HintKind::Unpin),
        ("TIERD_HINT_RELOCATED", HintKind::Relocated),
        ("TIERD_HINT_MOVED", HintKind::Moved),
        ("TIERD_HINT_DECLINED", HintKind::Declined),
        ("TIERD_HINT_WRITTEN", HintKind::Written),
    ];
    for (name, k) in kinds {
        assert_eq!(define(&h, name), (k as u16).to_string(), "{name}");
    }
    assert_eq!(
        define(&h, "TIERD_SHM_HEADER_BYTES"),
        HEADER_BYTES.to_string()
    );
    assert_eq!(define(&h, "TIERD_SHM_ENTRY_BYTES"), ENTRY_BYTES.to_string());
    assert_eq!(define(&h, "TIERD_SHM_VERSION"), VERSION.to_string());
    assert_eq!(
        define(&h, "TIERD_SHM_MAGIC"),
        format!("{MAGIC:#x}ULL"),
        "magic"
    );
}

#[test]
fn every_exported_function_is_declared() {
    let h = header();
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi.rs")).unwrap();
    let exported: Vec<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub unsafe extern \"C\" fn "))
        .map(|l| l.split('(').next().unwrap_or(""))
        .collect();
    assert!(exported.len() >= 7, "{exported:?}");
    for f in exported {
        assert!(h.contains(&format!("{f}(")), "tierd.h does not declare {f}");
    }
}

#[test]
fn header_compiles_as_c_and_cxx() {
    let inc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../c/include");
    for (cc, std) in [("gcc", "-std=c11"), ("g++", "-std=c++17")] {
        let lang = if cc == "gcc" { "c" } else { "c++" };
        let out = std::process::Command::new(cc)
            .args([std, "-Wall", "-Werror", "-fsyntax-only", "-x", lang])
            .arg("-I")
            .arg(&inc)
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                use std::io::Write;
                ch.stdin.take().expect("piped").write_all(
                    b"#include <tierd.h>\nint main(void) { return TIERD_HINT_ACCESS - 1; }\n",
                )?;
                ch.wait_with_output()
            })
            .unwrap_or_else(|e| panic!("{cc} is needed to check tierd.h: {e}"));
        assert!(
            out.status.success(),
            "{cc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
