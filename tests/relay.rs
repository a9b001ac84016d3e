//! Relays over loopback: an origin, an edge pulling from it and an edge pulling from that edge.
//! Viewers on the edges get byte-identical events (same ids) to viewers on the origin; when the
//! origin restarts the edges reconnect and go on; a viewer whose edge dies resumes on another
//! edge by `Last-Event-ID` with no gap; an upstream that is not ssecast, or sends garbage or a
//! huge event, ends the pull with a log line while the edge keeps serving.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;
use util::live::*;
use util::{Event, SseReader, TestServer};

fn data_after_init(r: &mut SseReader, n: usize) -> Vec<Event> {
    let events = read_until(r, |ev| ev.iter().filter(|e| e.event == "data").count() >= n);
    assert!(events.iter().any(|e| e.event == "init"), "{events:?}");
    events.into_iter().filter(|e| e.event == "data").collect()
}

#[test]
fn edges_pass_on_the_origins_events_byte_for_byte() {
    let origin = TestServer::start(&["--speed", "4"]);
    let edge = TestServer::start(&[&format!("cam={}", origin.url("/events/sample"))]);
    let edge2 = TestServer::start(&[&format!("cam={}", edge.url("/events/cam"))]);
    assert!(edge
        .wait_log("stream cam is live (relayed)", Duration::from_secs(10))
        .is_some());
    assert!(edge2
        .wait_log("stream cam is live (relayed)", Duration::from_secs(10))
        .is_some());
    let mut reference = SseReader::open(origin.addr, "/events/sample", "");
    let mut viewers: Vec<SseReader> = (0..200)
        .map(|i| {
            let server = if i % 2 == 0 { &edge } else { &edge2 };
            SseReader::open(server.addr, "/events/cam", "")
        })
        .collect();
    let by_id: HashMap<String, String> = data_after_init(&mut reference, 8)
        .into_iter()
        .map(|e| (e.id.unwrap(), e.data))
        .collect();
    for (i, v) in viewers.iter_mut().enumerate() {
        let got = data_after_init(v, 3);
        let seqs: Vec<u64> = got.iter().map(seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "viewer {i}: {seqs:?}"
        );
        for e in got {
            let id = e.id.clone().unwrap();
            if let Some(data) = by_id.get(&id) {
                assert!(
                    *data == e.data,
                    "viewer {i}: event {id} differs from the origin's"
                );
            }
        }
    }
    let status =
        String::from_utf8_lossy(&edge2.raw(b"GET /api/streams/cam HTTP/1.1\r\nHost: t\r\n\r\n"))
            .to_string();
    assert!(status.contains("\"kind\":\"relay\""), "{status}");
}

#[test]
fn edges_ride_out_an_origin_restart_and_viewers_resume_on_another_edge() {
    let origin = TestServer::start(&["--speed", "4"]);
    let port = origin.addr.port();
    let url = origin.url("/events/sample");
    let edge_a = TestServer::start(&[&format!("cam={url}")]);
    let edge_b = TestServer::start(&[&format!("cam={url}")]);
    let mut viewer = SseReader::open(edge_a.addr, "/events/cam", "");
    let seen = data_after_init(&mut viewer, 2);
    let last = seen.last().unwrap().id.clone().unwrap();
    // Edge A dies: its viewer resumes on edge B right after the last event it had.
    drop(viewer);
    drop(edge_a);
    let mut moved = SseReader::open(
        edge_b.addr,
        "/events/cam",
        &format!("Last-Event-ID: {last}\r\n"),
    );
    let next = data_after_init(&mut moved, 1);
    let (s_last, s_next) = (
        last.split('.').next().unwrap().parse::<u64>().unwrap(),
        seq(&next[0]),
    );
    assert_eq!(s_next, s_last + 1, "resumed with no gap after {last}");
    // The origin restarts on the same port: edge B's viewer sees offline, then the new stream.
    drop(origin);
    let offline = read_until(&mut moved, |ev| {
        ev.last().is_some_and(|e| e.event == "offline")
    });
    assert!(
        offline.last().unwrap().data.contains("origin"),
        "{offline:?}"
    );
    let _origin = TestServer::start(&["--listen", &format!("127.0.0.1:{port}"), "--speed", "4"]);
    let after = data_after_init(&mut moved, 2);
    assert_eq!(after.len(), 2);
    assert!(edge_b
        .wait_log("relay from", Duration::from_secs(1))
        .is_some());
}

/// A fake upstream that answers every connection with `response`.
fn fake_origin(response: Vec<u8>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(20) {
            let Ok(mut s) = s else { break };
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let _ = s.write_all(&response);
        }
    });
    addr
}

#[test]
fn hostile_upstreams_end_the_pull_and_nothing_grows() {
    let sample = include_bytes!("../web/sample.mp4");
    let movie = ssecast::mp4::Movie::parse(sample).unwrap();
    use base64::Engine;
    let init = base64::engine::general_purpose::STANDARD.encode(&movie.init);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("html", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>".to_vec(), "not an event stream"),
        ("garbage", b"\x16\x03\x01 garbage garbage\r\n\r\n".to_vec(), "did not answer with HTTP"),
        ("missing", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(), "answered 404"),
        ("huge", {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: init\ndata: {{\"mime\":\"video/mp4\",\"init\":\"{init}\"}}\n\nid: 1.1\nevent: data\ndata: "
            )
            .into_bytes();
            r.extend(std::iter::repeat_n(b'A', 26 << 20));
            r
        }, "over 24 MiB"),
        ("notmp4", format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: init\ndata: {{\"mime\":\"video/mp4\",\"init\":\"{init}\"}}\n\nid: 1.1\nevent: data\ndata: aGVsbG8=\n\n"
        ).into_bytes(), "holds no moof"),
    ];
    for (name, response, why) in cases {
        let addr = fake_origin(response);
        let edge = TestServer::start(&[&format!("cam=http://{addr}/events/cam")]);
        let line = edge.wait_log("relay from", Duration::from_secs(10));
        assert!(
            line.as_deref().is_some_and(|l| l.contains(why)),
            "{name}: {line:?}"
        );
        let mut viewer = SseReader::open(edge.addr, "/events/cam", "");
        let first = viewer.next_event().unwrap();
        assert!(
            matches!(first.event.as_str(), "offline" | "init"),
            "{name}: {first:?}"
        );
        assert!(
            edge.rss_kib() < 96 * 1024,
            "{name}: RSS {} KiB",
            edge.rss_kib()
        );
        let health = edge.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(health.starts_with(b"HTTP/1.1 200"), "{name}");
    }
}
