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

#[test]
fn publish_corpus() {
    let n = replay("publish", ssecast::fuzzing::publish_in_pieces);
    assert!(n >= 10, "only {n} inputs");
}

/// The top-level boxes of an MP4 file, each as its bytes.
fn top_boxes(file: &[u8]) -> Vec<&[u8]> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at + 8 <= file.len() {
        let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(&file[at..at + size]);
        at += size;
    }
    boxes
}

/// Regenerates the publish seeds (`cargo test --test fuzz_corpus -- --ignored`): the two test
/// files cut to their init segment and one or two fragments, plain and chunked, with a few read
/// patterns, plus the shapes a live encoder sends (styp/prft before each fragment, a restart
/// with a second init segment, a 64-bit mdat size, trailing boxes to drop, a cut-off body).
#[test]
#[ignore = "writes into fuzz/corpus/publish"]
fn write_publish_seeds() {
    use ssecast::http::chunked::encode;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    let sample = read("web/sample.mp4");
    let bframes = read("tests/bframes.mp4");
    let (s, b) = (top_boxes(&sample), top_boxes(&bframes));
    let cat = |parts: &[&[u8]]| parts.concat();
    let styp: &[u8] = b"\0\0\0\x18stypmsdh\0\0\0\0msdhmsix";
    let prft: &[u8] = b"\0\0\0\x1cprft\0\0\0\0\0\0\0\x01\xe8\x8c\x2a\x3b\0\0\0\0\0\0\x10\0";
    let free: &[u8] = b"\0\0\0\x0cfreeabcd";
    let mut mdat64 = vec![0, 0, 0, 1];
    mdat64.extend_from_slice(b"mdat");
    mdat64.extend_from_slice(&(s[3].len() as u64 + 8).to_be_bytes());
    mdat64.extend_from_slice(&s[3][8..]);

    let sample_one = cat(&[s[0], s[1], s[2], s[3]]);
    let bframes_two = cat(&[b[0], b[1], b[2], b[3], b[4], b[5]]);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("sample", sample_one.clone()),
        ("bframes", bframes_two.clone()),
        (
            "sample-styp-prft",
            cat(&[s[0], s[1], styp, prft, s[2], s[3]]),
        ),
        ("sample-mdat64", cat(&[s[0], s[1], s[2], &mdat64])),
        (
            "bframes-two-init",
            cat(&[b[0], b[1], b[2], b[3], b[0], b[1], b[4], b[5]]),
        ),
        (
            "bframes-free-mfra",
            cat(&[b[0], free, b[1], b[2], b[3], free, b[6]]),
        ),
        ("sample-cut-moov", sample_one[..600].to_vec()),
        ("sample-cut-mdat", sample_one[..20_000].to_vec()),
    ];
    let dir = root.join("fuzz/corpus/publish");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: String, mode: u8, pattern: u8, body: &[u8]| {
        std::fs::write(dir.join(name), cat(&[&[mode, pattern], body])).unwrap();
    };
    for (name, body) in &bodies {
        for pattern in [0x00, 0x3f, 0xf1] {
            write(format!("seed-{name}-plain-{pattern:02x}"), 0, pattern, body);
        }
        write(
            format!("seed-{name}-chunked-4096"),
            1,
            0x27,
            &encode(body, 4096),
        );
    }
    write(
        "seed-sample-chunked-333".into(),
        3,
        0x9c,
        &encode(&sample_one, 333),
    );
    write(
        "seed-bframes-cut-chunked".into(),
        1,
        0x11,
        &encode(&bframes_two, 5000)[..30_000],
    );
}
