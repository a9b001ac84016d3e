//! Fuzzes the MPEG-TS demuxer and the fMP4 muxer behind it (and, for some inputs, the sniffing
//! live input that picks MP4, MPEG-TS or Annex B) with arbitrary bytes in arbitrary splits.
//! What must never happen: a panic, a hang, an init or fragment over the caps, a fragment the
//! server's own MP4 parser cannot read or shift, or a session that does not start at a keyframe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssecast::fuzzing::ts_demux_in_pieces;

fuzz_target!(|data: &[u8]| {
    ts_demux_in_pieces(data);
});
