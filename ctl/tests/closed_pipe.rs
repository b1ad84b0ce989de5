//! `tierctl ... | head -1`: a reader that goes away ends tierctl quietly (SIGPIPE, as
//! other command-line tools), not with a Rust panic on EPIPE.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_pipe_ends_tierctl_without_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tierctl"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before tierctl writes: every write sees a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
