//! Fuzzes the RTMP publishing session (handshake, chunk stream, AMF commands, FLV tags) and the
//! adapter to the fMP4 muxer behind it with arbitrary bytes in arbitrary splits, some behind a
//! valid handshake and publish. What must never happen: a panic, a hang, buffers that grow
//! past their caps, an init or fragment over the caps, a fragment the server cannot shift, or
//! a session that does not start at a keyframe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssecast::fuzzing::rtmp_in_pieces;

fuzz_target!(|data: &[u8]| {
    rtmp_in_pieces(data);
});
