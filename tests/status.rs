//! The status API and the metrics over real sockets: values checked through a run with two
//! streams, viewers joining and leaving and a publisher coming and going; the metrics text is
//! parsed by a real Prometheus parser (the `prometheus_client` Python package) when present.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::live::*;
use util::{SseReader, TestServer};

const BFRAMES: &[u8] = include_bytes!("bframes.mp4");

fn get(server: &TestServer, path: &str) -> (String, String) {
    let out = server.raw(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn streams(server: &TestServer) -> serde_json::Value {
    serde_json::from_str(&get(server, "/api/streams").1).expect("status JSON")
}

fn stream<'a>(all: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stream {name} in {all}"))
}

/// The value of one sample line of the metrics text.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

#[test]
fn status_and_metrics_follow_viewers_and_publishers() {
    let server = TestServer::start(&["film=tests/bframes.mp4"]);
    let mut film: Vec<SseReader> = (0..3)
        .map(|_| SseReader::open(server.addr, "/events/film", ""))
        .collect();
    let mut cam: Vec<SseReader> = (0..2)
        .map(|_| SseReader::open(server.addr, "/events/cam", ""))
        .collect();
    for r in film.iter_mut() {
        assert_eq!(r.next_event().unwrap().event, "init");
    }
    for r in cam.iter_mut() {
        assert_eq!(r.next_event().unwrap().event, "offline");
    }
    let all = streams(&server);
    let f = stream(&all, "film");
    assert_eq!(
        (f["kind"].as_str(), f["live"].as_bool()),
        (Some("file"), Some(true))
    );
    assert_eq!(f["viewers"], 3);
    assert_eq!(f["default"], true);
    assert_eq!(
        (f["width"].as_u64(), f["height"].as_u64()),
        (Some(320), Some(180))
    );
    let c = stream(&all, "cam");
    assert_eq!(
        (c["live"].as_bool(), c["viewers"].as_u64()),
        (Some(false), Some(2))
    );
    let (head, text) = get(&server, "/metrics");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(
        metric(&text, "ssecast_stream_viewers{stream=\"film\"}"),
        3.0
    );
    assert_eq!(metric(&text, "ssecast_stream_viewers{stream=\"cam\"}"), 2.0);
    assert_eq!(metric(&text, "ssecast_connections{phase=\"stream\"}"), 5.0);
    assert!(metric(&text, "ssecast_stream_sent_bytes_total{stream=\"film\"}") > 0.0);
    assert!(metric(&text, "ssecast_connections_accepted_total") >= 6.0);

    // A publisher comes: cam goes live and counts what it sent.
    let mut p = start_publish(server.addr, "/publish/cam", Framing::Chunked, 0, "");
    let movie = ssecast::mp4::Movie::parse(BFRAMES).unwrap();
    let first = &BFRAMES[..movie.fragments[0].range.end];
    write!(p, "{:x}\r\n", first.len()).unwrap();
    p.write_all(first).unwrap();
    p.write_all(b"\r\n").unwrap();
    for r in cam.iter_mut() {
        let got = read_until(r, |ev| ev.iter().any(|e| e.event == "data"));
        assert_eq!(got[0].event, "init");
    }
    let c = streams(&server);
    let c = stream(&c, "cam");
    assert_eq!(
        (c["kind"].as_str(), c["live"].as_bool()),
        (Some("http"), Some(true))
    );
    assert_eq!(
        (c["publishers"].as_u64(), c["fragments"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(c["publish_bytes"].as_u64(), Some(first.len() as u64));
    assert!(c["seconds_since_fragment"].as_f64().unwrap() < 5.0);
    let text = get(&server, "/metrics").1;
    assert_eq!(
        metric(&text, "ssecast_stream_publishers{stream=\"cam\"}"),
        1.0
    );
    assert_eq!(metric(&text, "ssecast_connections{phase=\"publish\"}"), 1.0);

    // A viewer leaves, the publisher goes.
    drop(film.pop());
    drop(p);
    assert!(util::wait_until(Duration::from_secs(5), || {
        let all = streams(&server);
        stream(&all, "film")["viewers"] == 2 && stream(&all, "cam")["live"] == false
    }));
    let one: serde_json::Value = serde_json::from_str(&get(&server, "/api/streams/cam").1).unwrap();
    assert_eq!(
        (one["name"].as_str(), one["sessions"].as_u64()),
        (Some("cam"), Some(1))
    );
    assert_eq!(one["publishers"], 0);
    let (head, _) = get(&server, "/api/streams/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let text = get(&server, "/metrics").1;
    assert_eq!(metric(&text, "ssecast_stream_live{stream=\"cam\"}"), 0.0);
    assert_eq!(metric(&text, "ssecast_connections{phase=\"stream\"}"), 4.0);
    assert!(metric(&text, "process_resident_memory_bytes") > 1e6);
    parse_with_prometheus_client(&text);
}

/// Parses the metrics text with the Prometheus project's Python client, when it is installed
/// (Debian: python3-prometheus-client, which .ci/run installs).
fn parse_with_prometheus_client(text: &str) {
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        families = list(parse(sys.stdin.read()))\n\
        print(len(families), sum(len(f.samples) for f in families))\n";
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!(
            "skipped: the prometheus_client parser (python3-prometheus-client) is not installed"
        );
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = String::from_utf8_lossy(&out.stdout);
    let families: usize = counts.split_whitespace().next().unwrap().parse().unwrap();
    assert!(families >= 15, "{counts}");
}
