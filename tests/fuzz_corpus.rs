//! Replays the committed fuzz corpus (fuzz/corpus/<target>/*) through the same functions the
//! fuzz targets call, so every input the fuzzer ever kept is re-checked by `cargo test` on
//! stable Rust.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{} broke an invariant", path.display());
        n += 1;
    }
    n
}

#[test]
fn http_request_corpus() {
    let n = replay("http_request", ssecast::fuzzing::feed_in_pieces);
    assert!(n >= 10, "only {n} inputs");
}

#[test]
fn mp4_parse_corpus() {
    let n = replay("mp4_parse", ssecast::fuzzing::parse_and_render);
    assert!(n >= 5, "only {n} inputs");
}
