//! HTTP handling over real sockets: the page, error statuses (400/404/405/431), and the timeout
//! that closes connections which never finish their request head.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use util::TestServer;

fn status_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn serves_the_viewer_page() {
    let server = TestServer::start(&[]);
    let out = server.raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"));
    assert!(head.contains("Content-Type: text/html"));
    assert_eq!(body.as_bytes(), include_bytes!("../web/index.html"));
    let js = server.raw(b"GET /player.js HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(status_line(&js).contains("200"));
}

#[test]
fn error_statuses() {
    let server = TestServer::start(&[]);
    let cases: &[(&[u8], &str)] = &[
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
        (b"DELETE /events HTTP/1.1\r\nHost: t\r\n\r\n", "405"),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            "405",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
            "400",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (b"GET /../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
    ];
    for (req, want) in cases {
        let out = server.raw(req);
        let line = status_line(&out);
        assert!(
            line.contains(want),
            "{:?} -> {line:?}",
            String::from_utf8_lossy(req)
        );
    }
    let out = server.raw(b"PUT /events HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(String::from_utf8_lossy(&out).contains("Allow: GET, HEAD\r\n"));
    // A refused HEAD gets the head of the error response and no body.
    let out = String::from_utf8(server.raw(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n")).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "HEAD got a body: {out:?}");
}

#[test]
fn oversized_head_gets_431() {
    let server = TestServer::start(&[]);
    let mut req = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 10_000));
    req.extend_from_slice(b"\r\n\r\n");
    let out = server.raw(&req);
    assert!(status_line(&out).contains("431"), "{}", status_line(&out));
}

#[test]
fn unfinished_head_is_closed_after_the_timeout() {
    let server = TestServer::start(&["--head-timeout", "1s"]);
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("server closes the connection");
    let took = start.elapsed();
    assert!(status_line(&out).contains("408"), "{}", status_line(&out));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[test]
fn request_split_into_single_bytes_is_understood() {
    let server = TestServer::start(&[]);
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    for b in b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n" {
        s.write_all(&[*b]).unwrap();
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(status_line(&out).contains("200"), "{}", status_line(&out));
}
