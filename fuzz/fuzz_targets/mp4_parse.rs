//! Fuzzes the MP4 parser and everything the playout does with a parsed movie (codecs string,
//! timing, rendering every fragment with a rewritten timeline). What must never happen: a panic,
//! a hang, or an allocation out of proportion to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssecast::fuzzing::parse_and_render;

fuzz_target!(|data: &[u8]| {
    parse_and_render(data);
});
