//! The SSE stream end to end over real loopback sockets: what one viewer receives is a valid
//! fragmented MP4 that keeps its timeline across loops (with no gap or overlap in any track for a
//! B-frame video), many viewers get identical frames, a stuck viewer neither slows the others nor
//! grows the server, and a reconnect resumes with no gap.

mod util;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ssecast::mp4::{fragment_times, Boxes, Movie};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use util::{wait_until, Event, SseReader, TestServer};

const SAMPLE: &[u8] = include_bytes!("../web/sample.mp4");

fn seq_of(ev: &Event) -> u64 {
    let id = ev.id.as_deref().expect("data event has an id");
    id.split('.')
        .next()
        .unwrap()
        .parse()
        .expect("numeric sequence")
}

fn next_data(r: &mut SseReader) -> Event {
    loop {
        let ev = r.next_event().expect("stream ended early");
        if ev.event == "data" {
            return ev;
        }
    }
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

#[test]
fn events_concatenate_to_a_valid_fmp4_across_loops() {
    let server = TestServer::start(&["--speed", "20"]);
    let mut r = SseReader::open(server.addr, "/events", "");
    assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.head);
    assert!(r.head.contains("Content-Type: text/event-stream\r\n"));
    assert!(r.head.contains("Cache-Control: no-cache\r\n"));
    assert!(r.head.contains("X-Accel-Buffering: no\r\n"));
    assert!(!r.head.contains("Content-Length") && !r.head.contains("chunked"));

    let init = r.next_event().expect("init event");
    assert_eq!(init.event, "init");
    assert_eq!(r.retry, Some(2000));
    assert!(init
        .data
        .contains(r#""mime":"video/mp4; codecs=\"avc1.4d401e,mp4a.40.2\"""#));
    let b64 = init.data.split("\"init\":\"").nth(1).unwrap();
    let init_bytes = STANDARD.decode(b64.split('"').next().unwrap()).unwrap();
    let source = Movie::parse(SAMPLE).unwrap();
    assert_eq!(init_bytes, source.init);

    let mut stream = init_bytes.clone();
    let mut last_seq = None;
    let mut last_times: Option<Vec<u64>> = None;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // 15 fragments at 20x: more than two passes over the 6-fragment sample.
    for _ in 0..15 {
        let ev = next_data(&mut r);
        let seq = seq_of(&ev);
        if let Some(prev) = last_seq {
            assert_eq!(seq, prev + 1, "sequence numbers have no gaps");
        }
        last_seq = Some(seq);
        let ms: u64 = ev
            .id
            .as_ref()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            ms + 5_000 > now_ms && ms < now_ms + 60_000,
            "id carries server time"
        );

        let frag = STANDARD.decode(&ev.data).expect("base64 payload");
        let boxes: Vec<_> = Boxes::new(&frag, 0..frag.len())
            .map(|b| b.unwrap().box_type)
            .collect();
        assert_eq!(boxes, vec![*b"moof", *b"mdat"], "one moof+mdat per event");
        // Apart from the rewritten tfdt/mfhd fields, it is a fragment of the source file.
        let src = source
            .fragments
            .iter()
            .find(|f| {
                f.range.len() == frag.len()
                    && SAMPLE[f.range.clone()].ends_with(&frag[frag.len() - 64..])
            })
            .expect("matches a source fragment");
        let differing = SAMPLE[src.range.clone()]
            .iter()
            .zip(&frag)
            .filter(|(a, b)| a != b)
            .count();
        assert!(differing <= 20, "{differing} bytes differ from the source");
        let (_, times) = fragment_times(&frag).unwrap();
        if let Some(prev) = &last_times {
            for (a, b) in prev.iter().zip(&times) {
                assert!(b > a, "decode time went backwards: {a} -> {b}");
            }
        }
        last_times = Some(times);
        stream.extend_from_slice(&frag);
    }
    let whole = Movie::parse(&stream).expect("init + fragments is a valid fragmented MP4");
    assert_eq!(whole.fragments.len(), 15);
    assert!(
        whole.fragments[0].keyframe,
        "a new viewer starts at a keyframe"
    );
}

/// A B-frame video whose audio starts before its first frame is shown (tests/make-bframes.sh):
/// every track of what a viewer receives runs on across loop points with no gap and no overlap,
/// as if the file were one long recording.
#[test]
fn b_frame_video_loops_with_every_track_continuous() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bframes.mp4");
    let server = TestServer::start(&["--speed", "20", path]);
    let mut r = SseReader::open(server.addr, "/events", "");
    let init = r.next_event().expect("init event");
    let b64 = init.data.split("\"init\":\"").nth(1).unwrap();
    let mut stream = STANDARD.decode(b64.split('"').next().unwrap()).unwrap();
    // 7 fragments of the 2-fragment video: at least two loop points.
    for _ in 0..7 {
        stream.extend(STANDARD.decode(next_data(&mut r).data).unwrap());
    }
    let whole = Movie::parse(&stream).expect("init + fragments is a valid fragmented MP4");
    for track in 0..whole.tracks.len() {
        let runs: Vec<_> = whole
            .fragments
            .iter()
            .flat_map(|f| &f.runs)
            .filter(|run| run.track == track)
            .collect();
        assert_eq!(runs.len(), 7);
        for w in runs.windows(2) {
            assert_eq!(
                w[0].decode_time + w[0].duration,
                w[1].decode_time,
                "track {track} has a gap or an overlap"
            );
        }
    }
}

#[test]
fn two_hundred_viewers_receive_identical_frames() {
    let server = TestServer::start(&["--speed", "4"]);
    let mut probe = SseReader::open(server.addr, "/events", "");
    let first = seq_of(&next_data(&mut probe));
    // Fragments come every 250 ms; viewers connect now and all watch seq first+6 ..= first+8.
    let (lo, hi) = (first + 6, first + 8);
    let addr = server.addr;
    let threads: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let mut r = SseReader::open(addr, "/events", "");
                let mut seen = BTreeMap::new();
                loop {
                    let ev = next_data(&mut r);
                    let seq = seq_of(&ev);
                    if (lo..=hi).contains(&seq) {
                        seen.insert(seq, (ev.id.clone().unwrap(), hash(&ev.data)));
                    }
                    if seq >= hi {
                        return seen;
                    }
                }
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results[0].len(), 3, "viewer 0 saw {:?}", results[0].keys());
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &results[0], "viewer {i} got different frames");
    }
}

#[test]
fn stuck_viewers_do_not_delay_others_and_memory_stays_bounded() {
    let server = TestServer::start(&[
        "--speed",
        "100",
        "--client-queue",
        "256K",
        "--stall-timeout",
        "4s",
    ]);
    let mut fast = SseReader::open(server.addr, "/events", "");
    next_data(&mut fast);
    let rss_before = server.rss_kib();
    // Viewers that send their request and then never read a byte.
    let stuck: Vec<_> = (0..20)
        .map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&server.addr.into()).unwrap();
            let mut s: std::net::TcpStream = s.into();
            use std::io::Write;
            s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    // 100 fragments a second (~10 MB/s of SSE): the fast viewer must see every one, on time.
    let start = Instant::now();
    let mut last = seq_of(&next_data(&mut fast));
    let mut max_rss = 0;
    for _ in 0..300 {
        let ev = fast.next_event().expect("fast viewer stream");
        assert_ne!(ev.event, "reset", "the fast viewer never skips");
        if ev.event != "data" {
            continue;
        }
        let seq = seq_of(&ev);
        assert_eq!(seq, last + 1, "fast viewer has no gaps");
        last = seq;
        max_rss = max_rss.max(server.rss_kib());
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "300 fragments at 100/s took {took:?}: the fast viewer was held up"
    );
    // Without the cap the stuck viewers would pin every frame since they stopped (~25 MB here).
    let growth = max_rss.saturating_sub(rss_before);
    assert!(growth < 8 * 1024, "server RSS grew by {growth} KiB");
    // Stuck past --stall-timeout, they are disconnected.
    assert!(
        server
            .wait_log("disconnecting a viewer stuck", Duration::from_secs(15))
            .is_some(),
        "stuck viewers were not disconnected"
    );
    let fds_with_stuck = server.open_fds();
    assert!(
        wait_until(Duration::from_secs(15), || server.open_fds() + 15
            <= fds_with_stuck
            || server.open_fds() < 15),
        "stuck connections were not closed: {} fds open",
        server.open_fds()
    );
    drop(stuck);
}

#[test]
fn reconnect_with_last_event_id_resumes_without_a_gap() {
    let server = TestServer::start(&["--speed", "10"]);
    let mut a = SseReader::open(server.addr, "/events", "");
    let mut last = next_data(&mut a);
    for _ in 0..2 {
        last = next_data(&mut a);
    }
    let last_id = last.id.clone().unwrap();
    let last_seq = seq_of(&last);
    drop(a);
    // Let the stream move on while "A" is away.
    let mut watcher = SseReader::open(server.addr, "/events", "");
    while seq_of(&next_data(&mut watcher)) < last_seq + 3 {}

    let mut by_header = SseReader::open(
        server.addr,
        "/events",
        &format!("Last-Event-ID: {last_id}\r\n"),
    );
    assert_eq!(by_header.next_event().unwrap().event, "init");
    assert_eq!(
        seq_of(&next_data(&mut by_header)),
        last_seq + 1,
        "resumes right after"
    );
    assert_eq!(seq_of(&next_data(&mut by_header)), last_seq + 2);

    let mut by_query =
        SseReader::open(server.addr, &format!("/events?last_event_id={last_id}"), "");
    assert_eq!(seq_of(&next_data(&mut by_query)), last_seq + 1);

    // An id the server never sent starts at the live edge like a new viewer.
    let live = seq_of(&next_data(&mut watcher));
    let mut stale = SseReader::open(server.addr, "/events", "Last-Event-ID: 3.12345\r\n");
    let got = seq_of(&next_data(&mut stale));
    assert!(
        got >= live,
        "stale id started at {got}, live edge was {live}"
    );
}

#[test]
fn head_request_on_the_stream_gets_headers_only() {
    let server = TestServer::start(&[]);
    let out = server.raw(b"HEAD /events HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("text/event-stream"));
    assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");
    let mut s = server.connect();
    use std::io::Write;
    s.write_all(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).unwrap();
    assert!(String::from_utf8(body).unwrap().ends_with("\r\n\r\n"));
}

#[test]
fn fragments_larger_than_the_client_queue_still_reach_every_viewer() {
    // The sample's frames are 63-78 KB of SSE each; the queue holds at most 64 KiB.
    let server = TestServer::start(&["--speed", "10", "--client-queue", "64K"]);
    let mut r = SseReader::open(server.addr, "/events", "");
    assert_eq!(r.next_event().unwrap().event, "init");
    let mut last = None;
    let mut big = 0;
    for _ in 0..12 {
        let ev = r.next_event().expect("stream");
        assert_eq!(ev.event, "data", "a reader that keeps up never skips");
        let seq = seq_of(&ev);
        if let Some(prev) = last {
            assert_eq!(seq, prev + 1);
        }
        last = Some(seq);
        if ev.data.len() > 64 * 1024 {
            big += 1;
        }
    }
    assert!(big > 0, "the test needs frames larger than the queue");
}

/// `--keepalive 1s`: a viewer of a stream that is not live gets `: keepalive` comments about a
/// second apart (with the default 15 s none would come within this test's bound).
#[test]
fn keepalives_come_as_often_as_asked() {
    use std::io::{BufRead, BufReader, Write};
    let server = TestServer::start(&["--keepalive", "1s"]);
    let mut s = server.connect();
    s.write_all(b"GET /events/quiet HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let started = std::time::Instant::now();
    let mut keepalives = 0;
    let mut line = String::new();
    while keepalives < 2 {
        line.clear();
        let n = r.read_line(&mut line).unwrap_or(0);
        assert!(n > 0, "the stream ended");
        keepalives += usize::from(line == ": keepalive\n");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "two keepalives did not come within 8 s"
        );
    }
}
