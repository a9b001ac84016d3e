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
        (b"GET /no.pe HTTP/1.1\r\nHost: t\r\n\r\n", "404"),
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
    let out = String::from_utf8(server.raw(b"HEAD /no.pe HTTP/1.1\r\nHost: t\r\n\r\n")).unwrap();
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

#[test]
fn stream_pages_invalid_names_status_and_health() {
    let server = TestServer::start(&[]);
    let page = server.raw(b"GET /cam-1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8_lossy(&page);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("text/html"),
        "{text}"
    );
    for (req, want, why) in [
        (
            &b"GET /events/a.b HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            "400",
            "A-Z a-z 0-9 _ -",
        ),
        (
            b"GET /events/api HTTP/1.1\r\nHost: t\r\n\r\n",
            "404",
            "reserved",
        ),
        (
            b"POST /publish/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            "404",
            "reserved",
        ),
        (
            b"GET /publish/cam HTTP/1.1\r\nHost: t\r\n\r\n",
            "405",
            "Allow: POST, PUT",
        ),
    ] {
        let out = String::from_utf8_lossy(&server.raw(req)).to_string();
        assert!(status_line(out.as_bytes()).contains(want), "{out}");
        assert!(out.contains(why), "{out}");
    }
    let health = String::from_utf8_lossy(&server.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"))
        .to_string();
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("\r\n\r\nok\n"),
        "{health}"
    );
    let api = String::from_utf8_lossy(&server.raw(b"GET /api/streams HTTP/1.1\r\nHost: t\r\n\r\n"))
        .to_string();
    let body = api.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json[0]["name"], "sample");
    assert_eq!(json[0]["live"], true);
    assert_eq!(json[0]["default"], true);
    assert_eq!(json[0]["kind"], "file");
}

#[test]
fn a_scanner_walking_stream_names_leaves_nothing_behind() {
    let server = TestServer::start(&[]);
    for i in 0..300 {
        let req = format!("GET /events/a{i} HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut s = server.connect();
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0u8; 512];
        let n = s.read(&mut head).unwrap();
        let text = String::from_utf8_lossy(&head[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        if i == 0 {
            // A name that is not live is a stream that waits, saying so.
            let mut rest = text.to_string();
            while !rest.contains("event: offline") {
                let n = s.read(&mut head).unwrap();
                assert!(n > 0);
                rest.push_str(&String::from_utf8_lossy(&head[..n]));
            }
        }
    }
    // Every scan connection is closed by now or soon: the registry keeps only the sample.
    let only_sample = util::wait_until(Duration::from_secs(5), || {
        let api = server.raw(b"GET /api/streams HTTP/1.1\r\nHost: t\r\n\r\n");
        let api = String::from_utf8_lossy(&api);
        api.matches("\"name\"").count() == 1
    });
    assert!(only_sample, "names nobody watches are forgotten");
}
