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

#[test]
fn ts_demux_corpus() {
    let n = replay("ts_demux", ssecast::fuzzing::ts_demux_in_pieces);
    assert!(n >= 10, "only {n} inputs");
}

/// Regenerates the TS seeds (`cargo test --test fuzz_corpus -- --ignored`): the MPEG-TS and
/// Annex B test files cut short, with packets dropped (continuity gaps), bytes flipped and sync
/// lost, each with a few read patterns and modes.
#[test]
#[ignore = "writes into fuzz/corpus/ts_demux"]
fn write_ts_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    let h264 = read("tests/ingest/h264aac.ts");
    let h265 = read("tests/ingest/h265aac.ts");
    let es = read("tests/ingest/h264.264");
    let cut = |d: &[u8], n: usize| d[..n.min(d.len())].to_vec();
    let mut dropped = cut(&h264, 30_080);
    dropped.drain(188 * 40..188 * 41);
    let mut flipped = cut(&h265, 30_080);
    for i in (500..flipped.len()).step_by(2_000) {
        flipped[i] ^= 0x5a;
    }
    let mut unsynced = cut(&h264, 20_000);
    unsynced.insert(188 * 30 + 5, 0x47);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("h264aac", cut(&h264, 30_080)),
        ("h265aac", cut(&h265, 30_080)),
        ("h264-dropped", dropped),
        ("h265-flipped", flipped),
        ("h264-unsynced", unsynced),
        ("annexb", cut(&es, 20_000)),
    ];
    let dir = root.join("fuzz/corpus/ts_demux");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body) in &bodies {
        for (pattern, mode) in [(0x00, 0), (0x3f, 1), (0xf1, 2), (0x27, 3)] {
            let mut data = vec![pattern, mode];
            data.extend_from_slice(body);
            std::fs::write(dir.join(format!("seed-{name}-{pattern:02x}-{mode}")), data).unwrap();
        }
    }
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
