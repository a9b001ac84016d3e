//! Criterion benches for the hot paths: HTTP request parsing, SSE encoding of a fragment, MP4
//! splitting of the sample, the push parser a publisher's body goes through, and the per-viewer
//! cost of delivering one fragment (offer to the
//! queue + one vectored write to a real loopback socket), reported per viewer; and MPEG-TS
//! ingest: demux + mux of an H.264/AAC and an H.265/AAC transport stream into fragments.
//!
//! Run: `cargo bench --bench core` (add `-- --quick` for a fast pass).

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use ssecast::harness::FanoutHarness;
use ssecast::http::chunked::{encode, ChunkedDecoder};
use ssecast::http::parse_request;
use ssecast::mp4::Movie;
use ssecast::source::file::SAMPLE;
use ssecast::source::live::{IngestOptions, LiveInput};
use ssecast::source::push::{PushEvent, PushParser};
use ssecast::source::MediaEvent;
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
                let runs: Vec<Run> = f
                    .fragment
                    .runs
                    .iter()
                    .map(|r| Run {
                        track: r.track,
                        decode_time: r.decode_time,
                        duration: r.duration,
                    })
                    .collect();
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
    for &(label, payload) in &[("1KiB", 1024usize), ("sample_fragment", 0)] {
        for &n in &[100usize, 1000] {
            let mut h = FanoutHarness::new(n, 64 << 20).expect("harness");
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

criterion_group!(benches, http_parse, sse_encode, mp4_split, push_parse, ts_ingest, deliver);
criterion_main!(benches);
