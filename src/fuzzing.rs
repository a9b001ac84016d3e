//! The bodies of the fuzz targets in `fuzz/`, kept in the library so the committed corpus is
//! replayed through exactly the same code by `cargo test` on stable Rust (tests/fuzz_corpus.rs).
//! Each function panics only when an invariant is broken, which is what a fuzzer reports.

use crate::http::{HeadReader, Parsed, MAX_HEAD};
use crate::mp4::{render_fragment, Movie};
use crate::playout::Playout;
use std::time::{Duration, Instant};

/// Feeds `data[1..]` to a [`HeadReader`] in reads whose sizes cycle through a pattern picked by
/// `data[0]`, as a connection would after each `read`.
pub fn feed_in_pieces(data: &[u8]) {
    let Some((&pattern, rest)) = data.split_first() else {
        return;
    };
    let sizes = [
        1 + usize::from(pattern & 0x0f),
        1 + usize::from(pattern >> 4) * 97,
        1,
    ];
    let mut reader = HeadReader::default();
    let mut at = 0;
    let mut i = 0;
    let mut fed_since_start = 0;
    while at < rest.len() {
        let n = sizes[i % sizes.len()].min(rest.len() - at);
        i += 1;
        let piece = &rest[at..at + n];
        at += n;
        fed_since_start += n;
        match reader.feed(piece) {
            Parsed::Partial => {
                assert!(
                    reader.buffered() <= MAX_HEAD + n,
                    "head buffer grew to {}",
                    reader.buffered()
                );
                assert!(
                    fed_since_start <= MAX_HEAD + n,
                    "still partial after {fed_since_start} bytes"
                );
            }
            // Like a connection, stop at the first verdict: the rest is never read.
            Parsed::Done(_) => {
                assert_eq!(reader.buffered(), 0, "a finished head frees its buffer");
                return;
            }
        }
    }
}

/// Parses `data` as a movie and, if it parses, derives everything the server would from it and
/// renders each fragment across two loops.
pub fn parse_and_render(data: &[u8]) {
    let Ok(movie) = Movie::parse(data) else {
        return;
    };
    let _ = movie.mime();
    let _ = movie.resolution();
    let _ = movie.duration_secs();
    let mut out = Vec::new();
    for i in 0..movie.fragments.len().min(64) {
        for loops in [0, 1, u64::from(u32::MAX)] {
            render_fragment(&movie, data, i, loops, 7, &mut out);
            assert_eq!(out.len(), movie.fragments[i].range.len());
        }
    }
    let t0 = Instant::now();
    let mut playout = Playout::new(movie, t0, Duration::from_secs(10), 1);
    let mut now = t0;
    for _ in 0..16 {
        now = now.max(playout.next_due());
        assert!(
            playout.poll(now, 0, data).is_some(),
            "a due fragment is released"
        );
    }
}
