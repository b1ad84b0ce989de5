//! The control socket's JSON: tierd decodes a `Request` from every line a local client
//! sends (`serde_json::from_slice`, as daemon/src/control/server.rs), tierctl decodes a
//! `Response` from every line tierd answers, and `AddrRange` parses what a user types.
//! None may panic; whatever decodes re-encodes to a line that decodes to the same value
//! (the `--json` output of tierctl is a contract); a parsed range is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tierd_api::{AddrRange, Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<Request>(data) {
        let line = serde_json::to_vec(&req).expect("a Request encodes");
        let again: Request = serde_json::from_slice(&line).expect("an encoded Request decodes");
        assert_eq!(again, req);
    }
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let line = serde_json::to_vec(&resp).expect("a Response encodes");
        let again: Response = serde_json::from_slice(&line).expect("an encoded Response decodes");
        assert_eq!(again, resp);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = text.parse::<AddrRange>() {
            assert!(r.start < r.end && !r.is_empty());
            assert_eq!(r.to_string().parse::<AddrRange>(), Ok(r));
        }
    }
});
