//! The client-socket decoders (tierd decodes requests from untrusted peers; clients
//! decode replies): never panic, never accept an oversized packet, and whatever they
//! accept re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tierd_client::wire::{Reply, Request, MAX_MESSAGE};

fuzz_target!(|data: &[u8]| {
    if let Ok((seq, req)) = Request::decode(data) {
        assert!(data.len() <= MAX_MESSAGE);
        assert_eq!(req.encode(seq), data);
    }
    if let Ok((seq, rep)) = Reply::decode(data) {
        assert!(data.len() <= MAX_MESSAGE);
        assert_eq!(rep.encode(seq), data);
    }
});
