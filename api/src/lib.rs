//! The control protocol between `tierd` and `tierctl` (and any script).
//!
//! Framing: one JSON object per line over the Unix stream socket
//! (`/run/tierd/tierd.sock` by default). A client writes a [`Request`] line and reads
//! one [`Response`] line. JSON lines were chosen over a binary framing because the
//! socket is low-rate (operator commands) and every reply doubles as the stable
//! `--json` output of `tierctl`; `serde_json` does all the parsing.
//!
//! The reply payload types in [`reply`] are the documented contracts of
//! `docs/control-api.md`: fields may be added, never renamed or removed.

pub mod moves;
pub mod page;
pub mod range;
pub mod reply;
pub mod request;

pub use moves::{MoveCause, MoveCount};
pub use page::page_size;
pub use range::{AddrRange, RangeParseError};
pub use reply::*;
pub use request::Request;

use serde::{Deserialize, Serialize};

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/tierd/tierd.sock";

/// Largest request line the daemon accepts, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// One reply line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Response {
    Ok {
        ok: OkTrue,
        result: serde_json::Value,
    },
    Err {
        ok: OkFalse,
        error: ErrorReply,
    },
}

impl Response {
    pub fn ok<T: Serialize>(value: &T) -> Response {
        match serde_json::to_value(value) {
            Ok(result) => Response::Ok { ok: OkTrue, result },
            Err(e) => Response::error(ErrorKind::Internal, format!("cannot encode reply: {e}")),
        }
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Err {
            ok: OkFalse,
            error: ErrorReply {
                kind,
                message: message.into(),
            },
        }
    }
}

/// Serialises as `true` only; makes the untagged [`Response`] unambiguous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OkTrue;
/// Serialises as `false` only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OkFalse;

macro_rules! bool_marker {
    ($t:ident, $v:expr) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bool($v)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if bool::deserialize(d)? == $v {
                    Ok($t)
                } else {
                    Err(serde::de::Error::custom(concat!(
                        "expected ",
                        stringify!($v)
                    )))
                }
            }
        }
    };
}
bool_marker!(OkTrue, true);
bool_marker!(OkFalse, false);

/// Why a request failed; `kind` is stable for scripts, `message` is for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request line was not valid JSON or not a known command.
    BadRequest,
    /// No such process.
    NoSuchProcess,
    /// The process exists but the daemon (or the caller) may not touch it.
    PermissionDenied,
    /// The address range is not mapped in the process.
    NotMapped,
    /// The node does not exist or has no memory.
    BadNode,
    /// The operation is not possible in the daemon's current mode (e.g. monitor-only).
    Unsupported,
    /// The process is not managed (for unmanage, heat, ...).
    NotManaged,
    /// A config could not be applied.
    BadConfig,
    /// tierd refused the connection: a connection limit (`daemon.max_connections*`)
    /// or its descriptors ran out. Retry later; root keeps a reserve.
    Busy,
    /// Anything else; the message says what.
    Internal,
}

impl ErrorKind {
    /// `tierctl` exit code for this error (documented in docs/control-api.md).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::BadRequest | ErrorKind::BadConfig => 2,
            ErrorKind::Internal => 1,
            ErrorKind::Busy => 3,
            _ => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_error_lines_round_trip() {
        let ok = Response::ok(&serde_json::json!({"a": 1}));
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(line, r#"{"ok":true,"result":{"a":1}}"#);
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), ok);

        let err = Response::error(ErrorKind::NoSuchProcess, "no process 42");
        let line = serde_json::to_string(&err).unwrap();
        assert_eq!(
            line,
            r#"{"ok":false,"error":{"kind":"no_such_process","message":"no process 42"}}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), err);
    }

    /// `tierctl --json` prints what it decoded from tierd's reply: a float must come
    /// back bit for bit from the line tierd wrote, which serde_json's default parser
    /// does not guarantee (hence its `float_roundtrip` feature; found by fuzz/control).
    #[test]
    fn floats_survive_the_reply_line() {
        for x in [
            5.555555555555555e90,
            5.555555555555554e90,
            0.1 + 0.2,
            1e-300 / 3.0,
        ] {
            let line = serde_json::to_string(&Response::ok(&x)).unwrap();
            let back: Response = serde_json::from_str(&line).unwrap();
            assert_eq!(back, Response::ok(&x), "{x:e} -> {line}");
        }
    }
}
