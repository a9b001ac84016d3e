//! Bad publishers: a body that is not fragmented MP4, a moov with no playable track, box sizes
//! that lie, a fragment over the size cap, a publisher that goes silent, garbage after valid
//! fragments and a reset in the middle of a fragment. Each gets the right status or a clean
//! close and a log line saying what was wrong; its viewers see `offline` and only whole, valid
//! fragments; everything else goes on.

mod util;

use ssecast::mp4::Movie;
use std::io::Write;
use std::time::Duration;
use util::live::*;
use util::{Event, SseReader, TestServer};

const BFRAMES: &[u8] = include_bytes!("bframes.mp4");

/// The file's init segment and its first `n` fragments.
fn head_of_file(n: usize) -> Vec<u8> {
    let m = Movie::parse(BFRAMES).unwrap();
    BFRAMES[..m.fragments[n - 1].range.end].to_vec()
}

fn init_len() -> usize {
    Movie::parse(BFRAMES).unwrap().fragments[0].range.start
}

/// Publishes `body` to `name` while a viewer watches; returns the response and, when the body
/// made the stream go live, what the viewer got up to and including its `offline`.
fn publish_bad(
    server: &TestServer,
    name: &str,
    body: &[u8],
    goes_live: bool,
) -> (String, Vec<Event>) {
    let mut viewer = SseReader::open(server.addr, &format!("/events/{name}"), "");
    let first = viewer.next_event().expect("first event");
    assert_eq!(first.event, "offline");
    let response = push(
        server.addr,
        &format!("/publish/{name}"),
        body,
        Framing::Length,
        5,
        1 << 16,
    );
    if !goes_live {
        return (response, Vec::new());
    }
    let events = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline")
    });
    assert_eq!(events.first().map(|e| e.event.as_str()), Some("init"));
    (response, events)
}

/// Every data event a viewer got is one of the file's fragments, byte for byte.
fn only_whole_fragments(events: &[Event]) -> usize {
    let m = Movie::parse(BFRAMES).unwrap();
    let mut n = 0;
    for e in events.iter().filter(|e| e.event == "data") {
        let bytes = b64(&e.data);
        assert!(
            m.fragments
                .iter()
                .any(|f| BFRAMES[f.range.clone()] == bytes[..]),
            "a data event that is not a whole fragment"
        );
        n += 1;
    }
    n
}

#[test]
fn bodies_that_cannot_be_played_get_415_400_or_413() {
    let server = TestServer::start(&[]);
    let (r, _) = publish_bad(
        &server,
        "text",
        b"this is not a video, it is just some text\n",
        false,
    );
    assert!(
        r.starts_with("HTTP/1.1 415") && r.contains("does not start like an MP4"),
        "{r}"
    );
    assert!(server
        .wait_log("publisher for text", Duration::from_secs(2))
        .is_some());

    // No playable track: the sample entries are renamed to codecs nobody knows.
    let mut unknown = BFRAMES[..init_len()].to_vec();
    for (from, to) in [(&b"avc1"[..], &b"xvc1"[..]), (b"mp4a", b"xp4a")] {
        let at = unknown
            .windows(4)
            .position(|w| w == from)
            .expect("sample entry");
        unknown[at..at + 4].copy_from_slice(to);
    }
    let (r, _) = publish_bad(&server, "unknown", &unknown, false);
    assert!(r.starts_with("HTTP/1.1 415"), "{r}");

    // A box whose size is smaller than its own header, after a valid fragment.
    let mut lying = head_of_file(1);
    lying.extend_from_slice(&[0, 0, 0, 4]);
    lying.extend_from_slice(b"moof");
    let (r, events) = publish_bad(&server, "lying", &lying, true);
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("less than its own header"),
        "{r}"
    );
    assert_eq!(only_whole_fragments(&events), 1);
    assert!(
        events.last().unwrap().data.contains("bad data"),
        "{events:?}"
    );

    // A fragment over the 16 MiB cap is refused as soon as its header says so.
    let mut big = BFRAMES[..init_len()].to_vec();
    big.extend_from_slice(&(17u32 << 20).to_be_bytes());
    big.extend_from_slice(b"moof");
    big.extend_from_slice(&[0; 64]);
    let (r, _) = publish_bad(&server, "big", &big, true);
    assert!(r.starts_with("HTTP/1.1 413") && r.contains("16 MiB"), "{r}");
    assert!(server
        .wait_log("over the 16 MiB cap", Duration::from_secs(2))
        .is_some());

    // Garbage after two good fragments: those two reach viewers, nothing after them.
    let mut garbage = head_of_file(2);
    garbage.extend_from_slice(b"garbage that is not a box at all");
    let (r, events) = publish_bad(&server, "garbage", &garbage, true);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(only_whole_fragments(&events), 2);
    let health = server.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        health.starts_with(b"HTTP/1.1 200"),
        "everything else goes on"
    );
}

#[test]
fn a_silent_publisher_times_out_and_a_reset_one_goes_offline() {
    let server = TestServer::start(&["--publish-timeout", "1s"]);
    let mut viewer = SseReader::open(server.addr, "/events/quiet", "");
    assert_eq!(
        viewer.next_event().unwrap().event,
        "offline",
        "not live yet"
    );
    // A chunked body that never ends: one chunk, then silence.
    let mut s = start_publish(server.addr, "/publish/quiet", Framing::Chunked, 0, "");
    let body = head_of_file(1);
    write!(s, "{:x}\r\n", body.len()).unwrap();
    s.write_all(&body).unwrap();
    s.write_all(b"\r\n").unwrap();
    let events = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline")
    });
    assert_eq!(only_whole_fragments(&events), 1);
    assert!(
        events.last().unwrap().data.contains("went silent"),
        "{events:?}"
    );
    let r = response(&mut s);
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(server
        .wait_log("sent nothing for", Duration::from_secs(2))
        .is_some());

    // A publisher reset in the middle of a fragment: viewers get the whole fragments only.
    let mut viewer = SseReader::open(server.addr, "/events/reset", "");
    let mut s = start_publish(server.addr, "/publish/reset", Framing::UntilClose, 0, "");
    let two = head_of_file(2);
    let cut = two.len() - 100;
    s.write_all(&two[..cut]).unwrap();
    let events = read_until(&mut viewer, |ev| ev.iter().any(|e| e.event == "data"));
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let mut events2 = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline")
    });
    events2.extend(events);
    assert_eq!(
        only_whole_fragments(&events2),
        1,
        "the cut fragment never reaches viewers"
    );
    let health = server.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(health.starts_with(b"HTTP/1.1 200"));
}
