//! The bodies of the fuzz targets in `fuzz/`, kept in the library so the committed corpus is
//! replayed through exactly the same code by `cargo test` on stable Rust (tests/fuzz_corpus.rs).
//! Each function panics only when an invariant is broken, which is what a fuzzer reports.

use crate::http::chunked::ChunkedDecoder;
use crate::http::{HeadReader, Parsed, MAX_HEAD};
use crate::mp4::{
    parse_fragment_at, read_box, render_fragment, shift_decode_times, InitSegment, Movie, Mp4Error,
};
use crate::mux::ts::{TsDemuxer, TsEvent};
use crate::mux::Muxer;
use crate::source::live::{IngestOptions, LiveInput};
use crate::source::playout::Playout;
use crate::source::push::{PushEvent, PushParser, MAX_FRAGMENT, MAX_INIT};
use crate::source::rtmp::client::PublishScript;
use crate::source::rtmp::ingest::RtmpIngest;
use crate::source::rtmp::{RtmpEvent, RtmpSession};
use crate::source::MediaEvent;
use std::time::Instant;

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
        match reader.feed(piece, Some(b"key")) {
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
            Parsed::Done { body_at, .. } => {
                assert!(body_at <= piece.len(), "the body starts inside the piece");
                assert_eq!(reader.buffered(), 0, "a finished head frees its buffer");
                return;
            }
        }
    }
}

/// Parses `data` as a movie and, if it parses, derives everything the server would from it and
/// renders each fragment across loops; a plain file's written fragments must read back with its
/// generated init segment.
pub fn parse_and_render(data: &[u8]) {
    let Ok(movie) = Movie::parse(data) else {
        return;
    };
    let _ = movie.mime();
    let _ = movie.resolution();
    let _ = movie.duration_secs();
    let mut out = Vec::new();
    // What a plain file's fragments are read back with: its generated init segment.
    let init = movie.is_plain().then(|| {
        let ftyp_len = read_box(&movie.init, 0, movie.init.len()).map_or(0, |b| b.end);
        let (ftyp, moov) = movie.init.split_at(ftyp_len);
        InitSegment::parse(Some(ftyp), moov).expect("a generated init segment parses")
    });
    for i in 0..movie.fragments.len().min(64) {
        for loops in [0, 1, u64::from(u32::MAX)] {
            render_fragment(&movie, data, i, loops, 7, &mut out);
            let Some(init) = &init else {
                assert_eq!(out.len(), movie.fragments[i].range.len());
                continue;
            };
            // A written fragment reads back with the tracks and samples it was written from
            // (less a lead-in left out), unless its samples are all empty.
            match parse_fragment_at(&out, 0, init) {
                Ok(f) => {
                    let want = &movie.fragments[i].runs;
                    assert_eq!(f.runs.len(), want.len(), "fragment {i}");
                    for (got, want) in f.runs.iter().zip(want) {
                        assert_eq!(got.track, want.track);
                        assert!(got.samples <= want.samples && got.samples > 0);
                    }
                }
                Err(Mp4Error::EmptyMdat { .. }) => {}
                Err(e) => panic!("fragment {i} of pass {loops} does not read back: {e}"),
            }
        }
    }
    let t0 = Instant::now();
    let mut playout = Playout::new(movie, t0, 1);
    let mut now = t0;
    for seq in 0..16 {
        now = now.max(playout.next_due());
        assert!(
            playout.poll(now, seq, data).is_some(),
            "a due fragment is released"
        );
    }
}

/// Feeds `data[2..]` to the publish path as a connection would: when `data[0]` is odd, as a
/// chunked body (its framing decoded first), otherwise as a plain body; in pieces whose sizes
/// cycle through a pattern picked by `data[1]`, alternating between reads straight into the
/// parser and copies of bytes already in memory. Every fragment that comes out must be shiftable
/// and under the caps; nothing may panic, and the parser's buffer must stay bounded.
pub fn publish_in_pieces(data: &[u8]) {
    let [mode, pattern, rest @ ..] = data else {
        return;
    };
    let sizes = [
        1 + usize::from(pattern & 0x0f),
        1 + usize::from(pattern >> 4) * 997,
        7,
    ];
    let mut body = Vec::new();
    if mode & 1 == 1 {
        let mut d = ChunkedDecoder::default();
        let mut at = 0;
        while at < rest.len() && !d.is_done() {
            let Ok(step) = d.step(&rest[at..]) else {
                return;
            };
            body.extend_from_slice(&rest[at..][step.data]);
            at += step.consumed;
        }
    } else {
        body.extend_from_slice(rest);
    }
    let mut parser = PushParser::default();
    let mut at = 0;
    let mut i = 0;
    let mut check = |event: PushEvent| match event {
        PushEvent::Init(init) => assert!(init.bytes.len() <= MAX_INIT * 2),
        PushEvent::Fragment(mut f) => {
            assert!(f.bytes.len() <= MAX_FRAGMENT, "fragment over the cap");
            let shifts = vec![u64::MAX / 3; 8];
            shift_decode_times(&mut f.bytes, &f.fragment, &shifts);
        }
    };
    while at < body.len() {
        let n = sizes[i % sizes.len()].min(body.len() - at);
        i += 1;
        let piece = &body[at..at + n];
        at += n;
        // One box at a time, never more than its capped size (plus a read of room).
        assert!(
            parser.buffered() <= MAX_FRAGMENT + MAX_INIT + 256 * 1024,
            "the parser holds {} bytes",
            parser.buffered()
        );
        if i % 2 == 0 {
            if parser.feed(piece, &mut check).is_err() {
                return;
            }
        } else {
            let mut piece = piece;
            while !piece.is_empty() {
                let take = parser.want().min(piece.len());
                parser.spare(take).copy_from_slice(&piece[..take]);
                piece = &piece[take..];
                match parser.commit(take) {
                    Ok(Some(e)) => check(e),
                    Ok(None) => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// Feeds `data[2..]` to the MPEG-TS demuxer and the muxer in pieces whose sizes cycle through a
/// pattern picked by `data[0]`; `data[1]` picks the part length (bit 0: `--part 0`) and whether
/// the bytes go through a [`LiveInput`] (bit 1: sniffed as MP4, MPEG-TS or Annex B, as a
/// publish body is) or straight to the demuxer. Every init must parse, every fragment must be
/// under the cap, shiftable, and the first fragment after an init must start with a keyframe;
/// nothing may panic.
pub fn ts_demux_in_pieces(data: &[u8]) {
    let [pattern, mode, rest @ ..] = data else {
        return;
    };
    let sizes = [
        1 + usize::from(pattern & 0x0f),
        1 + usize::from(pattern >> 4) * 181,
        188,
    ];
    let part_ns = if mode & 1 == 1 { 0 } else { 200_000_000 };
    let mut checker = MuxedChecker::default();
    let mut check = |e: &PushEvent| checker.check(e);
    let pieces = |mut at: usize| {
        let mut i = 0;
        std::iter::from_fn(move || {
            if at >= rest.len() {
                return None;
            }
            let n = sizes[i % sizes.len()].min(rest.len() - at);
            i += 1;
            at += n;
            Some(&rest[at - n..at])
        })
    };
    if mode & 2 == 2 {
        let now = Instant::now();
        let options = IngestOptions {
            part: std::time::Duration::from_nanos(part_ns),
            fps: None,
        };
        let mut input = LiveInput::new(0, now, options);
        let mut media = Vec::new();
        for piece in pieces(0) {
            if input.feed(piece, now, &mut media).is_err() {
                return;
            }
        }
        input.finish(now, &mut media);
        for m in media {
            match m.event {
                MediaEvent::Init(init) => check(&PushEvent::Init(init)),
                MediaEvent::Fragment(f) => check(&PushEvent::Fragment(f)),
                _ => {}
            }
        }
        return;
    }
    let mut demux = TsDemuxer::default();
    let mut mux = Muxer::new(part_ns, None, false);
    let mut out = Vec::new();
    let mut sink = |e: TsEvent<'_>| match e {
        TsEvent::Tracks { video, audio } => {
            mux.set_tracks(video, audio, &mut out);
            Ok(())
        }
        TsEvent::Video { dts, pts, data } => mux.video(dts, pts, data, &mut out),
        TsEvent::Audio { config, pts, frame } => mux.audio(config, pts, frame, &mut out),
        TsEvent::VideoLost => {
            mux.skip_to_keyframe(&mut out);
            Ok(())
        }
    };
    for piece in pieces(0) {
        if demux.push(piece, &mut sink).is_err() {
            break;
        }
    }
    let _ = demux.finish(&mut sink);
    mux.finish(&mut out);
    for e in &out {
        check(e);
    }
}

/// Most bytes an [`RtmpSession`] may hold between reads: partial messages and the one partial
/// chunk behind them (16 MiB, `chunk::MAX_PENDING`, headers included), unsent answers
/// (256 KiB, `MAX_OUTPUT`, checked after each read) and the handshake (1537 bytes), with room.
const RTMP_MAX_BUFFERED: usize = (16 << 20) + (512 << 10);

/// Feeds `data[2..]` to an RTMP session in pieces whose sizes cycle through a pattern picked by
/// `data[0]`, as a connection would after each `read`, and every event after an accepted
/// publish to an [`RtmpIngest`]. `data[1]` picks the mode: bit 0 accepts publishes (else each
/// is refused), bit 1 cuts parts of 0 (else 200 ms), bit 2 puts a valid handshake, `connect`
/// and `publish` (at a chunk size picked by bits 4–5) in front so the fuzzer starts at the
/// chunk and media layers, bit 3 makes the peer a slow reader (64 bytes of the answers taken
/// per read, else all of them). Nothing may panic; the session's buffers stay bounded; every
/// init and fragment is under the caps, fragments are shiftable and the first after an init is
/// a keyframe.
pub fn rtmp_in_pieces(data: &[u8]) {
    let [pattern, mode, rest @ ..] = data else {
        return;
    };
    let sizes = [
        1 + usize::from(pattern & 0x0f),
        1 + usize::from(pattern >> 4) * 1031,
        4096,
    ];
    let accept = mode & 1 == 1;
    let part_ns = if mode & 2 == 2 { 0 } else { 200_000_000 };
    let slow_reader = mode & 8 == 8;
    let mut wire = Vec::new();
    if mode & 4 == 4 {
        let chunk_size = [128, 4096, 1, 65536][usize::from((mode >> 4) & 3)];
        wire = PublishScript::new("live", "cam", chunk_size).bytes;
    }
    wire.extend_from_slice(rest);

    let mut checker = MuxedChecker::default();
    let mut check = |e: &PushEvent| checker.check(e);
    let mut session = RtmpSession::default();
    let mut ingest = RtmpIngest::new(part_ns);
    let mut publishing = false;
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    'feed: while at < wire.len() {
        let n = sizes[i % sizes.len()].min(wire.len() - at);
        i += 1;
        let piece = &wire[at..at + n];
        at += n;
        if session.feed(piece).is_err() {
            break;
        }
        assert!(
            session.buffered() <= RTMP_MAX_BUFFERED,
            "the session holds {} bytes",
            session.buffered()
        );
        while let Some(event) = session.poll_event() {
            match &event {
                RtmpEvent::Publish { name, .. } if accept => {
                    session.accept_publish(name);
                    publishing = true;
                }
                RtmpEvent::Publish { .. } => {
                    session.reject_publish("NetStream.Publish.BadName", "refused");
                }
                _ => {}
            }
            if !publishing {
                continue;
            }
            if matches!(event, RtmpEvent::Unpublish) {
                publishing = false;
            }
            if ingest.on_event(event, &mut out).is_err() {
                break 'feed;
            }
            for e in out.drain(..) {
                check(&e);
            }
        }
        // The connection writes what it can of the answers.
        let written = if slow_reader { 64 } else { usize::MAX };
        session.consumed(written.min(session.output().len()));
    }
    ingest.finish(&mut out);
    for e in &out {
        check(e);
    }
}

/// What every init and fragment our muxer makes must satisfy: under the caps, shiftable, and a
/// session (the fragments after an init) starting with a keyframe.
#[derive(Default)]
struct MuxedChecker {
    after_init: bool,
}

impl MuxedChecker {
    fn check(&mut self, e: &PushEvent) {
        match e {
            PushEvent::Init(init) => {
                assert!(init.bytes.len() <= MAX_INIT, "init over the cap");
                self.after_init = true;
            }
            PushEvent::Fragment(f) => {
                assert!(f.bytes.len() <= MAX_FRAGMENT, "fragment over the cap");
                if self.after_init {
                    assert!(f.fragment.keyframe, "a session starts with a keyframe");
                }
                self.after_init = false;
                let mut bytes = f.bytes.clone();
                shift_decode_times(&mut bytes, &f.fragment, &[u64::MAX / 3; 4]);
            }
        }
    }
}
