//! Fuzzes the request reader exactly as a connection drives it: the input's first byte picks how
//! the rest is split into reads, and each read is fed to a `HeadReader`. What must never happen: a
//! panic, a buffer that grows past `MAX_HEAD` plus one read, or a reader that stays `Partial`
//! after more than `MAX_HEAD` bytes (which would let a client hold memory forever).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssecast::fuzzing::feed_in_pieces;

fuzz_target!(|data: &[u8]| {
    feed_in_pieces(data);
});
