//! Fuzzes the publish path exactly as a connection drives it: an optional chunked body decoded
//! first, then the incremental box splitter fed in pieces (mixing reads straight into its buffer
//! and copies), and each fragment it yields retimed. What must never happen: a panic, a hang, a
//! fragment or init segment over the caps, or a buffer that grows out of proportion to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssecast::fuzzing::publish_in_pieces;

fuzz_target!(|data: &[u8]| {
    publish_in_pieces(data);
});
