//! One request, one reply over the control socket.

use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use tierd_api::{ErrorReply, Request, Response};

/// Why a command failed; each maps to a documented exit code.
#[derive(Debug)]
pub enum Failure {
    /// The daemon is not reachable (exit 3).
    Connect(String),
    /// The daemon refused the request (exit per `ErrorKind::exit_code`).
    Refused(ErrorReply),
    /// Anything else (exit 1).
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Connect(_) => 3,
            Failure::Refused(e) => e.kind.exit_code(),
            Failure::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(m) | Failure::Other(m) => f.write_str(m),
            Failure::Refused(e) => write!(f, "{}", e.message),
        }
    }
}

/// Sends `req` and returns the raw `result` value.
pub fn call_value(socket: &Path, req: &Request) -> Result<serde_json::Value, Failure> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        Failure::Connect(format!(
            "cannot connect to tierd at {}: {e} (is tierd running? see `systemctl status tierd`)",
            socket.display()
        ))
    })?;
    let mut line = serde_json::to_vec(req).map_err(|e| Failure::Other(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| Failure::Other(format!("sending request: {e}")))?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .map_err(|e| Failure::Other(format!("reading reply: {e}")))?;
    match serde_json::from_str::<Response>(&reply) {
        Ok(Response::Ok { result, .. }) => Ok(result),
        Ok(Response::Err { error, .. }) => Err(Failure::Refused(error)),
        Err(e) => Err(Failure::Other(format!(
            "malformed reply from tierd: {e}: {reply:?}"
        ))),
    }
}

/// Sends `req` and decodes the result as `T`.
pub fn call<T: DeserializeOwned>(
    socket: &Path,
    req: &Request,
) -> Result<(T, serde_json::Value), Failure> {
    let v = call_value(socket, req)?;
    let t = serde_json::from_value(v.clone())
        .map_err(|e| Failure::Other(format!("unexpected reply shape: {e}")))?;
    Ok((t, v))
}
