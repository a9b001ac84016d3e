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

#[test]
fn rtmp_corpus() {
    let n = replay("rtmp", ssecast::fuzzing::rtmp_in_pieces);
    assert!(n >= 10, "only {n} inputs");
}

/// Appends one message as a publisher that compresses its headers would: a type 1 header when
/// only the length or type changed from the last message on `csid`, type 2 when only the time
/// delta did, type 3 when nothing did (`last` holds the previous length, type and delta, or
/// `None` for a type 0 header); then type 3 continuation chunks.
fn compressed_message(
    out: &mut Vec<u8>,
    csid: u8,
    last: &mut Option<(usize, u8, u32, u32)>,
    type_id: u8,
    ts: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    match *last {
        None => {
            out.push(csid);
            out.extend_from_slice(&ts.to_be_bytes()[1..]);
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            out.push(type_id);
            out.extend_from_slice(&1u32.to_le_bytes());
            *last = Some((payload.len(), type_id, 0, ts));
        }
        Some((len, ty, delta, prev)) => {
            let d = ts.wrapping_sub(prev);
            if len != payload.len() || ty != type_id {
                out.push(0x40 | csid);
                out.extend_from_slice(&d.to_be_bytes()[1..]);
                out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
                out.push(type_id);
            } else if d != delta {
                out.push(0x80 | csid);
                out.extend_from_slice(&d.to_be_bytes()[1..]);
            } else {
                out.push(0xc0 | csid);
            }
            *last = Some((payload.len(), type_id, d, ts));
        }
    }
    for (i, piece) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.push(0xc0 | csid);
        }
        out.extend_from_slice(piece);
    }
}

/// Regenerates the RTMP seeds (`cargo test --test fuzz_corpus -- --ignored`): publishes of the
/// H.264+AAC FLV test file played by the scripted publisher, whole and cut short, with chunk
/// sizes changed mid-stream (1, 128, 4096, 65536), all four chunk header types, extended
/// timestamps, two- and three-byte chunk stream ids, bytes flipped, and the hostile shapes: a
/// 16 MiB message on a 128-byte chunk size, chunk sizes 0 and 2^31, continuation chunks on
/// unknown chunk streams, AMF garbage; plus media-only bodies behind the target's own publish
/// prefix (mode bit 2). Each is capped at 64 KiB.
#[test]
#[ignore = "writes into fuzz/corpus/rtmp"]
fn write_rtmp_seeds() {
    use ssecast::source::rtmp::client::{flv_tags, PublishScript};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let flv = std::fs::read(root.join("tests/ingest/h264aac.flv")).unwrap();
    let tags = flv_tags(&flv);
    let play = |chunk_size: usize, tags: &[(u8, u32, &[u8])]| {
        let mut s = PublishScript::new("live", "cam", chunk_size);
        for &(kind, ts, payload) in tags {
            s.tag(kind, ts, payload);
        }
        s
    };
    let whole = |chunk_size: usize| {
        let mut s = play(chunk_size, &tags);
        s.unpublish("cam");
        s.bytes
    };
    // Chunk sizes changed between tags.
    let mut resized = PublishScript::new("live", "cam", 128);
    for (i, &(kind, ts, payload)) in tags.iter().enumerate() {
        if i % 7 == 3 {
            resized.set_chunk_size([1, 128, 4096, 65536][i / 7 % 4]);
        }
        resized.tag(kind, ts, payload);
    }
    resized.unpublish("cam");
    // Header types 1, 2 and 3 (the audio tags repeat their size and delta) on the two-byte
    // chunk stream id 64 + 6 (audio) and three-byte id 64 + 7 + 256 (video).
    let mut compressed = PublishScript::new("live", "cam", 4096).bytes;
    let (mut audio, mut video) = (None, None);
    for &(kind, ts, payload) in &tags {
        let (head, last): (&[u8], _) = match kind {
            8 => (&[0x00, 6], &mut audio),
            _ => (&[0x01, 7, 1], &mut video),
        };
        let mut m = Vec::new();
        compressed_message(&mut m, 0, last, kind, ts, payload, 4096);
        // Put the long chunk stream id in each chunk's basic header (csid 0 or 1 + its bytes).
        let fmt_csid = head[0];
        let mut at = 0;
        let mut left = payload.len();
        let mut first = true;
        while at < m.len() {
            let fmt = m[at] & 0xc0;
            compressed.push(fmt | fmt_csid);
            compressed.extend_from_slice(&head[1..]);
            at += 1;
            let header = if first {
                [11, 7, 3, 0][usize::from(fmt >> 6)]
            } else {
                0
            };
            let n = header + left.min(4096);
            compressed.extend_from_slice(&m[at..at + n]);
            at += n;
            left -= left.min(4096);
            first = false;
        }
    }
    // Times past 2^24 ms: extended timestamps on every chunk.
    let late: Vec<(u8, u32, &[u8])> = tags
        .iter()
        .map(|&(k, ts, p)| (k, ts + 0x00ff_fff0, p))
        .collect();
    let mut extended = play(4096, &late);
    extended.unpublish("cam");
    let mut flipped = whole(4096);
    for i in (4000..flipped.len()).step_by(3_001) {
        flipped[i] ^= 0x5a;
    }
    let hostile = |tail: &[u8]| {
        let mut s = play(128, &tags[..4]).bytes;
        s.extend_from_slice(tail);
        s
    };
    let huge = [
        0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0, 0x17, 1, 0, 0, 0,
    ];
    let mut garbage_amf = PublishScript::new("live", "cam", 128);
    garbage_amf.command(0, "connect", &[]);
    let mut g = garbage_amf.bytes;
    g.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 9, 20, 0, 0, 0, 0]);
    g.extend_from_slice(&[0x02, 0xff, 0xff, b'x', 0x03, 0x00, 0x00, 0x0a, 0x08]);
    g.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 6, 20, 0, 0, 0, 0]);
    g.extend_from_slice(&[0x0a, 0x7f, 0xff, 0xff, 0xff, 0x05]);
    let mut unknown = hostile(&[0xc9, 1, 2, 3, 0x41, 0, 0, 0, 0, 0, 4, 9]);
    unknown.extend(std::iter::repeat_n(0u8, 64));
    let mut many = play(128, &tags[..4]).bytes;
    for csid in 0..70u8 {
        many.extend_from_slice(&[0x00, csid, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0]);
        many.extend_from_slice(&[0x17; 128]);
    }
    let script = whole(4096);
    let bodies: Vec<(&str, u8, Vec<u8>)> = vec![
        ("whole-4096", 1, script.clone()),
        ("whole-128", 1, whole(128)),
        ("whole-65536", 3, whole(65536)),
        ("whole-1", 1, whole(1)),
        ("whole-rejected", 0, script.clone()),
        ("cut-in-handshake", 1, script[..2_000].to_vec()),
        ("cut-in-commands", 1, script[..3_300].to_vec()),
        ("cut-in-media", 3, script[..20_000].to_vec()),
        ("resized", 1, resized.bytes),
        ("header-types", 1, compressed),
        ("extended-ts", 1, extended.bytes),
        ("flipped", 1, flipped),
        ("huge-message", 1, hostile(&huge)),
        (
            "chunk-size-0",
            1,
            hostile(&[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        (
            "chunk-size-2-31",
            1,
            hostile(&[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x80, 0, 0, 0]),
        ),
        ("unknown-csid", 1, unknown),
        ("many-csids", 1, many),
        ("amf-garbage", 1, g),
    ];
    // Media only, behind the target's own prefix at 4096 (mode bits 4-5 = 1, bit 2 set).
    let prefix = PublishScript::new("live", "cam", 4096).bytes.len();
    let media = whole(4096)[prefix..].to_vec();
    let dir = root.join("fuzz/corpus/rtmp");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: String, pattern: u8, mode: u8, body: &[u8]| {
        let mut data = vec![pattern, mode];
        data.extend_from_slice(&body[..body.len().min(64 * 1024 - 2)]);
        std::fs::write(dir.join(name), data).unwrap();
    };
    for (name, mode, body) in &bodies {
        for pattern in [0x00, 0x3f, 0xf1] {
            write(format!("seed-{name}-{pattern:02x}"), pattern, *mode, body);
        }
    }
    write("seed-media-behind-prefix".into(), 0x27, 0x15, &media);
    write("seed-media-behind-prefix-slow".into(), 0x03, 0x1f, &media);
    write(
        "seed-media-cut-behind-prefix".into(),
        0x81,
        0x17,
        &media[..9_000],
    );
    write(
        "seed-garbage-behind-prefix".into(),
        0x00,
        0x05,
        &[0xc3; 300],
    );
}
