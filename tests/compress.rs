//! Compressed SSE against the real server: a viewer that asks for gzip inflates its stream with a
//! standard decoder (flate2's `GzDecoder`) and gets exactly the bytes a plain viewer gets for the
//! same events: across loop points, after a `reset`, on a resume, and while offline; `curl
//! --compressed` shows events; `--compress off` and requests that do not accept gzip stay plain.

mod util;

use flate2::write::GzDecoder;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use util::TestServer;

/// A viewer reading the raw bytes of its stream: the head, the wire bytes, and the body as the
/// browser sees it (inflated when the response is gzip).
struct Viewer {
    socket: TcpStream,
    head: String,
    wire: usize,
    gz: Option<GzDecoder<Vec<u8>>>,
    plain: Vec<u8>,
    /// Where each complete event of the body ends.
    ends: Vec<usize>,
}

impl Viewer {
    fn open(addr: SocketAddr, path: &str, extra_headers: &str) -> Viewer {
        Self::connect(
            TcpStream::connect(addr).expect("connect"),
            path,
            extra_headers,
        )
    }

    fn connect(mut socket: TcpStream, path: &str, extra_headers: &str) -> Viewer {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            socket,
            "GET {path} HTTP/1.1\r\nHost: t\r\n{extra_headers}\r\n"
        )
        .unwrap();
        let mut v = Viewer {
            socket,
            head: String::new(),
            wire: 0,
            gz: None,
            plain: Vec::new(),
            ends: Vec::new(),
        };
        let mut raw = Vec::new();
        let mut buf = [0u8; 65536];
        let split = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = v.socket.read(&mut buf).expect("read head");
            assert!(n > 0, "closed before the end of the head");
            raw.extend_from_slice(&buf[..n]);
        };
        v.head = String::from_utf8(raw[..split].to_vec()).unwrap();
        if v.head.contains("Content-Encoding: gzip\r\n") {
            v.gz = Some(GzDecoder::new(Vec::new()));
        }
        v.take(&raw[split..]);
        v
    }

    fn take(&mut self, bytes: &[u8]) {
        self.wire += bytes.len();
        match &mut self.gz {
            Some(gz) => {
                gz.write_all(bytes).expect("valid gzip");
                gz.flush().expect("inflate");
            }
            None => self.plain.extend_from_slice(bytes),
        }
        let body = self.body();
        let mut at = self.ends.last().copied().unwrap_or(0);
        let mut found = Vec::new();
        while let Some(i) = body[at..].windows(2).position(|w| w == b"\n\n") {
            at += i + 2;
            found.push(at);
        }
        self.ends.extend(found);
    }

    /// What the browser would see so far.
    fn body(&self) -> &[u8] {
        match &self.gz {
            Some(gz) => gz.get_ref(),
            None => &self.plain,
        }
    }

    /// Complete events so far, each with its blank-line terminator.
    fn events(&self) -> Vec<&[u8]> {
        let body = self.body();
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let e = &body[start..end];
                start = end;
                e
            })
            .collect()
    }

    /// Reads until `done` holds for the events (at most 30 s).
    fn read_until(&mut self, mut done: impl FnMut(&[&[u8]]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = vec![0u8; 256 * 1024];
        while !done(&self.events()) {
            assert!(Instant::now() < deadline, "not done within 30 s");
            let n = self.socket.read(&mut buf).expect("read");
            assert!(n > 0, "the stream ended");
            self.take(&buf[..n]);
        }
    }
}

fn id_of(event: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(event).ok()?;
    text.lines().find_map(|l| l.strip_prefix("id: "))
}

fn seq_of(event: &[u8]) -> u64 {
    id_of(event)
        .and_then(|id| id.split('.').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn data_count(events: &[&[u8]]) -> usize {
    events.iter().filter(|e| id_of(e).is_some()).count()
}

const GZIP: &str = "Accept-Encoding: gzip, deflate, br\r\n";

#[test]
fn a_compressed_stream_inflates_to_the_plain_bytes_across_loop_points_and_resumes() {
    let server = TestServer::start(&["--speed", "10"]);
    let mut plain = Viewer::open(server.addr, "/events", "");
    let mut gz = Viewer::open(server.addr, "/events", GZIP);
    assert!(!plain.head.contains("Content-Encoding"), "{}", plain.head);
    assert!(plain.head.contains("Vary: Accept-Encoding\r\n"));
    for h in [
        "Content-Encoding: gzip\r\n",
        "Vary: Accept-Encoding\r\n",
        "Cache-Control: no-cache, no-transform\r\n",
        "Content-Type: text/event-stream\r\n",
    ] {
        assert!(gz.head.contains(h), "{h} in {}", gz.head);
    }
    // The sample is 6 fragments a loop: 20 fragments cross three loop points.
    gz.read_until(|e| data_count(e) >= 20);
    let last = seq_of(gz.events().last().unwrap());
    plain.read_until(|e| e.last().is_some_and(|e| seq_of(e) >= last));

    let (p, g) = (plain.events(), gz.events());
    assert_eq!(g[0], b"retry: 2000\n\n");
    assert_eq!(p[..2], g[..2], "the same retry line and init event");
    let by_id: HashMap<&str, &[u8]> = p.iter().filter_map(|e| Some((id_of(e)?, *e))).collect();
    let common = g
        .iter()
        .filter(|e| id_of(e).is_some_and(|id| by_id.contains_key(id)))
        .count();
    assert!(common >= 18, "only {common} events in common");
    for e in g.iter().filter(|e| id_of(e).is_some()) {
        if let Some(plain_event) = by_id.get(id_of(e).unwrap()) {
            assert_eq!(plain_event, e, "event {:?}", id_of(e));
        }
    }
    let ratio = gz.wire as f64 / gz.body().len() as f64;
    assert!(
        ratio < 0.77,
        "{} wire bytes for {} of SSE: {ratio}",
        gz.wire,
        gz.body().len()
    );

    // A compressed viewer resuming after an event gets the plain viewer's next events.
    let datas: Vec<&[u8]> = p.iter().copied().filter(|e| id_of(e).is_some()).collect();
    let resume_at = datas[datas.len() - 6];
    let mut resumed = Viewer::open(
        server.addr,
        "/events",
        &format!("{GZIP}Last-Event-ID: {}\r\n", id_of(resume_at).unwrap()),
    );
    resumed.read_until(|e| data_count(e) >= 3);
    let r = resumed.events();
    assert_eq!(r[1], p[1], "init");
    assert_eq!(&r[2..5], &datas[datas.len() - 5..datas.len() - 2], "no gap");
}

#[test]
fn a_slow_compressed_viewer_skips_with_a_compressed_reset_and_the_plain_bytes() {
    let server = TestServer::start(&["--speed", "100", "--client-queue", "64K"]);
    let mut plain = Viewer::open(server.addr, "/events", "");
    plain.read_until(|e| data_count(e) >= 1);
    let reference = std::thread::spawn({
        move || {
            plain.read_until(|e| data_count(e) >= 400);
            plain
                .events()
                .iter()
                .map(|e| e.to_vec())
                .collect::<Vec<_>>()
        }
    });
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&server.addr.into()).unwrap();
    let mut slow = Viewer::connect(s.into(), "/events", GZIP);
    assert!(slow.gz.is_some());
    // Not reading for a while: 100 fragments a second overflow a 64 KiB queue at once.
    std::thread::sleep(Duration::from_millis(1500));
    slow.read_until(|e| {
        e.iter().any(|e| e.starts_with(b"event: reset\n"))
            && e.last().is_some_and(|e| id_of(e).is_some())
    });
    let plain = reference.join().unwrap();
    let by_id: HashMap<&str, &[u8]> = plain
        .iter()
        .filter_map(|e| Some((id_of(e)?, e.as_slice())))
        .collect();
    let events = slow.events();
    let reset = events
        .iter()
        .position(|e| e.starts_with(b"event: reset\n"))
        .unwrap();
    let text = std::str::from_utf8(events[reset]).unwrap();
    assert!(
        text.starts_with("event: reset\ndata: {\"skipped\":"),
        "{text}"
    );
    let mut checked = 0;
    for e in events.iter().filter(|e| id_of(e).is_some()) {
        let plain_event = by_id
            .get(id_of(e).unwrap())
            .expect("a fragment the plain viewer got");
        assert_eq!(plain_event, e);
        checked += 1;
    }
    assert!(checked >= 2, "{checked}");
}

#[test]
fn offline_streams_and_refusals_are_compressed_or_plain_as_they_should_be() {
    let server = TestServer::start(&[]);
    let mut gz = Viewer::open(server.addr, "/events/cam", GZIP);
    gz.read_until(|e| e.len() >= 2);
    assert!(gz.gz.is_some());
    assert_eq!(
        gz.events()[..2],
        [
            &b"retry: 2000\n\n"[..],
            b"event: offline\ndata: {\"reason\":\"not live yet\"}\n\n"
        ]
    );
    // Errors are never compressed.
    let out = server.raw(format!("GET /no.pe HTTP/1.1\r\nHost: t\r\n{GZIP}\r\n").as_bytes());
    assert!(out.ends_with(b"404 Not Found\n"));
    // HEAD says what GET would.
    let out = server.raw(format!("HEAD /events HTTP/1.1\r\nHost: t\r\n{GZIP}\r\n").as_bytes());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Content-Encoding: gzip\r\n") && text.ends_with("\r\n\r\n"));
    // Counted per stream in the status JSON.
    let _gz2 = Viewer::open(server.addr, "/events", "Accept-Encoding: gzip\r\n");
    let _plain = Viewer::open(server.addr, "/events", "Accept-Encoding: gzip;q=0\r\n");
    let json = server.raw(b"GET /api/streams HTTP/1.1\r\nHost: t\r\n\r\n");
    let json = String::from_utf8(json).unwrap();
    assert!(json.contains("\"compressed_viewers\":1"), "{json}");
}

#[test]
fn compress_off_serves_everyone_plain() {
    let server = TestServer::start(&["--compress", "off"]);
    let mut v = Viewer::open(server.addr, "/events", GZIP);
    assert!(!v.head.contains("Content-Encoding") && !v.head.contains("Vary"));
    v.read_until(|e| data_count(e) >= 1);
    assert!(v.body().starts_with(b"retry: 2000\n\nevent: init\n"));
}

#[test]
fn plain_requests_get_plain_bodies() {
    let server = TestServer::start(&[]);
    for headers in [
        "",
        "Accept-Encoding: identity\r\n",
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: deflate\r\n",
        "Accept-Encoding: br\r\n",
        "Accept-Encoding: *;q=0\r\n",
        "Accept-Encoding: gzip;q=nope\r\n",
    ] {
        let mut v = Viewer::open(server.addr, "/events", headers);
        assert!(v.gz.is_none(), "{headers:?}: {}", v.head);
        v.read_until(|e| data_count(e) >= 1);
        assert!(
            v.body().starts_with(b"retry: 2000\n\nevent: init\n"),
            "{headers:?}"
        );
    }
}

#[test]
fn curl_compressed_shows_events() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let server = TestServer::start(&["--speed", "4"]);
    let curl = |compressed: bool| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sN", "-D", "-", "--max-time", "3"]);
        if compressed {
            c.arg("--compressed");
        }
        let out = c.arg(server.url("/events")).output().expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = curl(true);
    assert!(
        out.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{out}"
    );
    assert!(
        out.contains("retry: 2000\n\nevent: init\ndata: {\"mime\""),
        "{out:.300}"
    );
    assert!(out.contains("\nevent: data\ndata: "), "{out:.300}");
    let out = curl(false);
    assert!(!out.to_ascii_lowercase().contains("content-encoding"));
    assert!(out.contains("\nevent: data\ndata: "));
}
