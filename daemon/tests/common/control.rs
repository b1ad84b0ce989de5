//! What every integration test needs to drive a real `tierd`: a child that is killed
//! and reaped when the test ends however it ends, and one request/reply on the control
//! socket. Included with `#[path]` by the tests under `daemon/tests/`.

#![allow(dead_code)] // each includer uses a different part

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::time::Duration;
use tierd_api::{Request, Response};

/// A child process killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request on a fresh control connection and its reply (30 s at most).
pub fn call(socket: &Path, req: &Request) -> Response {
    let mut s = UnixStream::connect(socket).expect("connect control socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut line = serde_json::to_vec(req).unwrap();
    line.push(b'\n');
    s.write_all(&line).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
}

/// [`call`], expecting success: the result as `T`.
pub fn ok<T: serde::de::DeserializeOwned>(socket: &Path, req: &Request) -> T {
    match call(socket, req) {
        Response::Ok { result, .. } => serde_json::from_value(result).unwrap(),
        Response::Err { error, .. } => panic!("{req:?} refused: {error:?}"),
    }
}
