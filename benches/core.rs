//! Criterion benches for the hot paths: HTTP request parsing, SSE encoding of a fragment, its
//! compression (ours against two well-kept deflate crates), MP4 splitting of the sample, a plain
//! file's sample tables and the fragments written from them, the push parser a publisher's body
//! goes through, and the per-viewer
//! cost of delivering one fragment (offer to the
//! queue + one vectored write to a real loopback socket), reported per viewer; and MPEG-TS
//! ingest: demux + mux of an H.264/AAC and an H.265/AAC transport stream into fragments, and an
//! RTMP publish of the H.264/AAC clip through the session and its muxer adapter.
//!
//! Run: `cargo bench --bench core` (add `-- --quick` for a fast pass; `-- compress` for one group).

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use ssecast::harness::FanoutHarness;
use ssecast::http::chunked::{encode, ChunkedDecoder};
use ssecast::http::parse_request;
use ssecast::mp4::{render_fragment, Movie};
use ssecast::source::file::SAMPLE;
use ssecast::source::live::{IngestOptions, LiveInput};
use ssecast::source::push::{PushEvent, PushParser};
use ssecast::source::rtmp::client::{flv_tags, PublishScript};
use ssecast::source::rtmp::ingest::RtmpIngest;
use ssecast::source::rtmp::{RtmpEvent, RtmpSession};
use ssecast::source::MediaEvent;
use ssecast::sse::deflate::deflate_frame;
use ssecast::sse::{data_frame, StreamInfo};
use ssecast::stream::timeline::Run;
use ssecast::stream::{Stream, StreamName};
use std::time::{Duration, Instant};

fn http_parse(c: &mut Criterion) {
    let req: &[u8] = b"GET /events?last_event_id=1234.1732400000123 HTTP/1.1\r\n\
        Host: 192.168.1.20:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
        Accept: text/event-stream\r\nCache-Control: no-cache\r\nAccept-Encoding: gzip, deflate\r\n\
        Accept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\n\r\n";
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_request", |b| {
        b.iter(|| {
            let p = parse_request(black_box(req), None);
            assert!(matches!(p.0, Some(Ok(_))));
            p
        })
    });
    g.finish();
}

fn sse_encode(c: &mut Criterion) {
    let movie = Movie::parse(SAMPLE).expect("sample");
    let frag = &SAMPLE[movie.fragments[1].range.clone()];
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(frag.len() as u64));
    g.bench_function("encode_fragment", |b| {
        b.iter(|| data_frame(black_box(42), 1_732_400_000_123, true, black_box(frag)))
    });
    g.finish();
}

/// The compressed form of the sample's largest `data` event, made once per frame for every
/// compressed viewer: throughput is base64-and-SSE bytes in. Ours (Huffman-only) against
/// `miniz_oxide` in its Huffman-only mode and `flate2` at its fastest level (LZ77 + Huffman),
/// each ending with a full flush; the sizes go to stderr once.
fn compress(c: &mut Criterion) {
    use flate2::{Compress, Compression, FlushCompress};
    use miniz_oxide::deflate::core::{
        compress as miniz, create_comp_flags_from_zip_params, CompressionStrategy, CompressorOxide,
        TDEFLFlush,
    };
    let movie = Movie::parse(SAMPLE).expect("sample");
    let frag = movie
        .fragments
        .iter()
        .map(|f| &SAMPLE[f.range.clone()])
        .max_by_key(|f| f.len())
        .expect("fragments");
    let frame = data_frame(42, 1_732_400_000_123, true, frag);
    let input: &[u8] = &frame.bytes;
    let out_cap = input.len() + 1024;
    // Both keep one compressor and reset it per frame, so they are not charged for allocating
    // their state.
    let mut miniz_state = CompressorOxide::new(create_comp_flags_from_zip_params(
        1,
        -15,
        CompressionStrategy::HuffmanOnly as i32,
    ));
    let mut huffman_miniz = |out: &mut Vec<u8>| {
        miniz_state.reset();
        out.resize(out_cap, 0);
        let (_, _, n) = miniz(&mut miniz_state, input, out, TDEFLFlush::Full);
        out.truncate(n);
    };
    let mut flate2_state = Compress::new(Compression::fast(), false);
    let mut fast_flate2 = |out: &mut Vec<u8>| {
        flate2_state.reset();
        out.clear();
        flate2_state
            .compress_vec(input, out, FlushCompress::Full)
            .expect("deflate");
    };
    let mut out = Vec::with_capacity(out_cap);
    let sizes = [
        ("ours", deflate_frame(input).len()),
        ("miniz_oxide_huffman", {
            huffman_miniz(&mut out);
            out.len()
        }),
        ("flate2_fast", {
            fast_flate2(&mut out);
            out.len()
        }),
    ];
    for (name, n) in sizes {
        eprintln!(
            "compress/{name}: {} SSE bytes -> {n} ({:.4} per media byte)",
            input.len(),
            n as f64 / frag.len() as f64
        );
    }
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("ours", |b| b.iter(|| deflate_frame(black_box(input))));
    g.bench_function("miniz_oxide_huffman", |b| {
        b.iter(|| huffman_miniz(black_box(&mut out)))
    });
    g.bench_function("flate2_fast", |b| {
        b.iter(|| fast_flate2(black_box(&mut out)))
    });
    g.finish();
}

fn mp4_split(c: &mut Criterion) {
    let mut g = c.benchmark_group("mp4");
    g.throughput(Throughput::Bytes(SAMPLE.len() as u64));
    g.bench_function("parse_sample", |b| {
        b.iter(|| Movie::parse(black_box(SAMPLE)).expect("sample"))
    });
    g.finish();
}

/// A publisher's body through the push parser: reads of up to 64 KiB straight into the fragment
/// being assembled (as the connection does), and the same body chunk-encoded in 32 KiB chunks
/// (ffmpeg's) decoded first.
/// MPEG-TS in, fragments out, exactly as a publish body goes: sniffed by a `LiveInput`, fed in
/// 64 KiB reads, demuxed, muxed (200 ms parts) and each fragment parsed back.
fn ts_ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    for (name, ts) in [
        (
            "mpegts_h264_aac",
            &include_bytes!("../tests/ingest/h264aac.ts")[..],
        ),
        (
            "mpegts_h265_aac",
            &include_bytes!("../tests/ingest/h265aac.ts")[..],
        ),
    ] {
        g.throughput(Throughput::Bytes(ts.len() as u64));
        g.bench_function(name, |b| {
            let now = Instant::now();
            b.iter(|| {
                let mut input = LiveInput::new(0, now, IngestOptions::default());
                let mut media = Vec::new();
                for piece in black_box(ts).chunks(64 * 1024) {
                    input.feed(piece, now, &mut media).expect("MPEG-TS");
                }
                input.finish(now, &mut media);
                let fragments = media
                    .iter()
                    .filter(|m| matches!(m.event, MediaEvent::Fragment(_)))
                    .count();
                assert!(fragments >= 5);
            })
        });
    }
    g.finish();
}

/// An RTMP publish in, fragments out: the scripted publisher's bytes for the H.264+AAC FLV test
/// file (handshake, commands, media at a 4096-byte chunk size; built once) fed in 64 KiB reads
/// to an `RtmpSession`, its events to an `RtmpIngest` (200 ms parts), the answers taken.
fn rtmp_ingest(c: &mut Criterion) {
    let flv = include_bytes!("../tests/ingest/h264aac.flv");
    let mut script = PublishScript::new("live", "cam", 4096);
    for (kind, ts, payload) in flv_tags(flv) {
        script.tag(kind, ts, payload);
    }
    script.unpublish("cam");
    let wire = script.bytes;
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("rtmp_h264_aac", |b| {
        b.iter(|| {
            let mut session = RtmpSession::default();
            let mut ingest = RtmpIngest::new(200_000_000);
            let mut out = Vec::new();
            for piece in black_box(&wire).chunks(64 * 1024) {
                session.feed(piece).expect("RTMP");
                while let Some(e) = session.poll_event() {
                    if let RtmpEvent::Publish { name, .. } = &e {
                        session.accept_publish(name);
                    }
                    ingest.on_event(e, &mut out).expect("media");
                }
                session.consumed(session.output().len());
            }
            ingest.finish(&mut out);
            let fragments = out
                .iter()
                .filter(|e| matches!(e, PushEvent::Fragment(_)))
                .count();
            assert!(fragments >= 5);
        })
    });
    g.finish();
}

fn push_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("push");
    g.throughput(Throughput::Bytes(SAMPLE.len() as u64));
    let split = |body: &[u8]| {
        let mut p = PushParser::default();
        let mut fragments = 0;
        let mut at = 0;
        while at < body.len() {
            let n = p.want().min(64 * 1024).min(body.len() - at);
            // Stands for the read(2) into the parser's buffer.
            p.spare(n).copy_from_slice(&body[at..at + n]);
            at += n;
            if let Ok(Some(PushEvent::Fragment(_))) = p.commit(n) {
                fragments += 1;
            }
        }
        fragments
    };
    g.bench_function("split_sample", |b| {
        b.iter(|| assert_eq!(split(black_box(SAMPLE)), 6))
    });
    let chunked = encode(SAMPLE, 32 * 1024);
    g.bench_function("dechunk_and_split_sample", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::default();
            let mut p = PushParser::default();
            let mut at = 0;
            let mut fragments = 0;
            while at < chunked.len() && !d.is_done() {
                let step = d.step(&chunked[at..]).expect("chunked");
                let data = &chunked[at..][step.data];
                at += step.consumed;
                let _ = p.feed(data, |e| {
                    fragments += usize::from(matches!(e, PushEvent::Fragment(_)))
                });
            }
            assert_eq!(fragments, 6);
        })
    });
    // From the last byte of a fragment arriving to its SSE frame being ready for the first
    // viewer's write: the box completes, the moof is parsed, the fragment is placed on the
    // stream's timeline, base64-encoded once and kept in the backlog. The fan-out follows
    // (deliver_per_viewer below).
    let movie = Movie::parse(SAMPLE).expect("sample");
    let end = movie.fragments[1].range.end;
    let now = Instant::now();
    let name = StreamName::parse("bench").expect("name");
    let mut stream = Stream::new(name, Duration::from_secs(10), now);
    let info = StreamInfo {
        mime: movie.mime(),
        width: 640,
        height: 360,
        bitrate: 0,
        duration_secs: 0.0,
    };
    let timescales = movie.tracks.iter().map(|t| t.timescale).collect();
    stream.start_session(info, &movie.init, timescales, now);
    g.throughput(Throughput::Bytes(movie.fragments[1].range.len() as u64));
    g.bench_function("last_byte_to_frame", |b| {
        b.iter_batched(
            || {
                let mut p = PushParser::default();
                p.feed(&SAMPLE[..end - 1], |_| {}).expect("sample");
                p
            },
            |mut p| {
                p.spare(1)[0] = SAMPLE[end - 1];
                let Ok(Some(PushEvent::Fragment(f))) = p.commit(1) else {
                    panic!("a fragment")
                };
                let runs = Run::of(&f.fragment);
                black_box(stream.place(&runs));
                stream.go_live(&f.bytes, f.fragment.keyframe, now, 0)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Per-viewer cost of one fragment: measured over `n` viewers, reported per viewer.
fn deliver(c: &mut Criterion) {
    let mut g = c.benchmark_group("deliver_per_viewer");
    g.measurement_time(Duration::from_secs(4));
    for &(label, payload) in &[
        ("1KiB", 1024usize),
        ("sample_fragment", 0),
        ("sample_fragment_gzip", 0),
    ] {
        for &n in &[100usize, 1000] {
            // The gzip case: every viewer asked for gzip, so each gets the compressed form (made
            // by the first, before the timing of the others starts to matter).
            let compressed = if label.ends_with("gzip") { n } else { 0 };
            let mut h =
                FanoutHarness::with_viewers(n - compressed, compressed, 64 << 20).expect("harness");
            let frame = if payload == 0 {
                h.next_fragment()
            } else {
                data_frame(1, 0, true, &vec![7u8; payload])
            };
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        black_box(h.deliver(&frame));
                        spent += t.elapsed();
                        h.drain_readers().expect("drain");
                    }
                    spent
                })
            });
        }
    }
    g.finish();
}

fn bx(t: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(t);
    v.extend_from_slice(body);
    v
}

fn full(t: &[u8; 4], values: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = std::iter::once(0u32)
        .chain(values.iter().copied())
        .flat_map(u32::to_be_bytes)
        .collect();
    bx(t, &body)
}

/// A plain MP4 as a camera writes one, `secs` seconds long: 25 fps H.264-like video (frames of
/// `frame_bytes`, a keyframe every second, no B-frames) and 48 kHz AAC-like audio (1024-sample
/// frames of 200 bytes), interleaved a second at a time, the moov at the end. The sample bytes
/// are filler; only the tables matter to the parser and the copy to the renderer.
fn plain_mp4(secs: u32, frame_bytes: u32) -> Vec<u8> {
    let (frames, audio_per_sec, audio_bytes) = (25 * secs, 47u32, 200u32);
    let mut file = bx(b"ftyp", b"isom\0\0\x02\0isomiso2avc1mp41");
    let mdat_at = file.len();
    let payload = u64::from(secs) * u64::from(25 * frame_bytes + audio_per_sec * audio_bytes);
    file.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
    file.extend_from_slice(b"mdat");
    file.resize(file.len() + payload as usize, 0x5a);
    let (mut v_chunks, mut a_chunks) = (Vec::new(), Vec::new());
    let mut at = (mdat_at + 8) as u32;
    for _ in 0..secs {
        v_chunks.push(at);
        at += 25 * frame_bytes;
        a_chunks.push(at);
        at += audio_per_sec * audio_bytes;
    }
    let stbl = |entry: Vec<u8>,
                count: u32,
                delta: u32,
                size: u32,
                per_chunk: u32,
                chunks: &[u32],
                sync: Option<Vec<u32>>| {
        let mut b = bx(
            b"stsd",
            &[&[0u8; 4][..], &1u32.to_be_bytes(), &entry].concat(),
        );
        b.extend(full(b"stts", &[1, count, delta]));
        if let Some(sync) = sync {
            b.extend(full(b"stss", &[&[sync.len() as u32][..], &sync].concat()));
        }
        b.extend(full(b"stsc", &[1, 1, per_chunk, 1]));
        b.extend(full(b"stsz", &[size, count]));
        b.extend(full(
            b"stco",
            &[&[chunks.len() as u32][..], chunks].concat(),
        ));
        bx(b"stbl", &b)
    };
    let trak = |id: u32, handler: &[u8; 4], timescale: u32, stbl: Vec<u8>| {
        let tkhd = full(
            b"tkhd",
            &[
                0,
                0,
                id,
                0,
                0,
                0,
                0,
                0,
                0,
                0x0001_0000,
                0,
                0,
                0,
                0x0001_0000,
                0,
                0,
                0,
                0x4000_0000,
                0,
                0,
            ],
        );
        let mdhd = full(b"mdhd", &[0, 0, timescale, 0, 0x55c4_0000]);
        let hdlr = bx(b"hdlr", &[&[0u8; 8][..], handler, &[0u8; 13]].concat());
        let minf = bx(b"minf", &[bx(b"dinf", &full(b"dref", &[0])), stbl].concat());
        bx(
            b"trak",
            &[tkhd, bx(b"mdia", &[mdhd, hdlr, minf].concat())].concat(),
        )
    };
    let mut avc1 = vec![0u8; 6];
    avc1.extend_from_slice(&1u16.to_be_bytes());
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&320u16.to_be_bytes());
    avc1.extend_from_slice(&180u16.to_be_bytes());
    avc1.extend_from_slice(&[0, 0x48, 0, 0, 0, 0x48, 0, 0, 0, 0, 0, 0, 0, 1]);
    avc1.extend_from_slice(&[0; 32]);
    avc1.extend_from_slice(&[0, 0x18, 0xff, 0xff]);
    avc1.extend(bx(b"avcC", &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe0, 0]));
    let mut mp4a = vec![0u8; 6];
    mp4a.extend_from_slice(&1u16.to_be_bytes());
    mp4a.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 16, 0, 0, 0, 0, 0xbb, 0x80, 0, 0,
    ]);
    let sync = (0..secs).map(|s| s * 25 + 1).collect();
    let video = stbl(
        bx(b"avc1", &avc1),
        frames,
        512,
        frame_bytes,
        25,
        &v_chunks,
        Some(sync),
    );
    let audio = stbl(
        bx(b"mp4a", &mp4a),
        audio_per_sec * secs,
        1024,
        audio_bytes,
        audio_per_sec,
        &a_chunks,
        None,
    );
    let mvhd = full(
        b"mvhd",
        &[
            0,
            0,
            1000,
            0,
            0x0001_0000,
            0x0100_0000,
            0,
            0,
            0x0001_0000,
            0,
            0,
            0,
            0x0001_0000,
            0,
            0,
            0,
            0x4000_0000,
            0,
            0,
            0,
            0,
            0,
            0,
            3,
        ],
    );
    let moov = [
        mvhd,
        trak(1, b"vide", 12800, video),
        trak(2, b"soun", 48000, audio),
    ]
    .concat();
    file.extend(bx(b"moov", &moov));
    file
}

/// A plain file's sample tables read and cut into fragments: a 2-hour file (180,000 video and
/// 338,400 audio samples; small samples, as only the tables count), and the writing of one
/// fragment (moof from the tables, the samples' bytes copied) of a 4 Mbit/s file.
fn plain_mp4_bench(c: &mut Criterion) {
    let long = plain_mp4(7200, 16);
    let mut g = c.benchmark_group("plain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_2h_tables", |b| {
        b.iter(|| Movie::parse(black_box(&long)).expect("plain file"))
    });
    let file = plain_mp4(20, 20_000);
    let movie = Movie::parse(&file).expect("plain file");
    let mut out = Vec::new();
    render_fragment(&movie, &file, 3, 1, 7, &mut out);
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.sample_size(50);
    g.bench_function("render_fragment_500KB", |b| {
        b.iter(|| render_fragment(&movie, black_box(&file), 3, 1, 7, &mut out))
    });
    g.finish();
}

criterion_group!(
    benches,
    http_parse,
    sse_encode,
    compress,
    mp4_split,
    plain_mp4_bench,
    push_parse,
    ts_ingest,
    rtmp_ingest,
    deliver
);
criterion_main!(benches);
