//! The load generator (`ssecast-load`) against the real server, end to end: every client must
//! connect and receive a continuous stream, and the JSON report must carry latency, fan-out
//! spread and the steady-state server CPU. Also its exit statuses for a refused URL (1) and for a port nobody listens on (2).
//!
//! The server is another package's binary: `util::server_bin` finds it next to this test in
//! `target/<profile>/` (a `cargo test` at the workspace root builds it first) or takes
//! `$SSECAST_BIN`.

#[path = "../../../tests/util/mod.rs"]
mod util;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use util::TestServer;

fn load(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ssecast-load"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ssecast-load");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "ssecast-load ran for {:?}",
        started.elapsed()
    );
    out
}

fn json_report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.trim();
    assert_eq!(line.lines().count(), 1, "one JSON line expected: {stdout}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}"))
}

fn number(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn fifty_clients_receive_a_continuous_stream() {
    let server = TestServer::start(&["--speed", "4"]);
    let url = server.url("/events");
    let pid = server.child.id().to_string();
    let out = load(&[
        "--url",
        &url,
        "--clients",
        "50",
        "--ramp",
        "500",
        "--duration",
        "4",
        "--server-pid",
        &pid,
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let v = json_report(&out);

    assert_eq!(v["clients"], 50, "{v}");
    assert_eq!(v["connected"], 50, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["disconnected"], 0, "{v}");
    // 4 fragments per second for ~4 s, plus the catch-up keyframe: at least 10 per client.
    assert!(number(&v, "data_events") >= 50.0 * 10.0, "{v}");
    assert!(
        number(&v, "events") > number(&v, "data_events"),
        "init events: {v}"
    );
    assert!(
        number(&v, "payload_bytes") > 0.0 && number(&v, "mb_per_s") > 0.0,
        "{v}"
    );
    for key in ["gaps", "duplicates", "resets", "fell_behind"] {
        assert_eq!(v[key], 0, "{key}: {v}");
    }
    // The steady state: all 50 stream after 0.1 s, so it spans most of the 4 s window, and the
    // server's CPU time in it was read from /proc.
    let steady_s = number(&v, "steady_s");
    assert!((2.0..=4.0).contains(&steady_s), "steady_s: {v}");
    let steady_bytes = number(&v, "steady_payload_bytes");
    assert!(
        steady_bytes > 0.0 && steady_bytes < number(&v, "payload_bytes"),
        "steady bytes: {v}"
    );
    assert!(number(&v, "steady_server_cpu_s") > 0.0, "{v}");
    assert!(number(&v, "steady_server_cpu_s_per_gb") > 0.0, "{v}");

    let (p50, p99, max) = (
        number(&v, "latency_ms_p50"),
        number(&v, "latency_ms_p99"),
        number(&v, "latency_ms_max"),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "latency: {v}");
    assert!(
        max < 2000.0,
        "a live fragment took two seconds to arrive: {v}"
    );
    let (p50, p99, max) = (
        number(&v, "spread_ms_p50"),
        number(&v, "spread_ms_p99"),
        number(&v, "spread_ms_max"),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "spread: {v}");
    assert!(number(&v, "spread_ids_full") >= 10.0, "{v}");
    assert!(number(&v, "loadgen_cpu_s") >= 0.0, "{v}");
    assert!(
        stderr.contains("50 connected"),
        "human report on stderr: {stderr}"
    );
}

#[test]
fn gzip_clients_inflate_the_stream_and_see_it_at_media_size() {
    let server = TestServer::start(&["--speed", "4"]);
    let url = server.url("/events");
    let run = |gzip: bool| {
        let mut args = vec![
            "--url",
            &url,
            "--clients",
            "20",
            "--duration",
            "3",
            "--json",
        ];
        if gzip {
            args.push("--gzip");
        }
        let out = load(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_report(&out)
    };
    let (plain, gzip) = (run(false), run(true));
    for v in [&plain, &gzip] {
        assert_eq!(v["connected"], 20, "{v}");
        assert_eq!(v["disconnected"], 0, "{v}");
        assert_eq!(v["gaps"], 0, "{v}");
        assert!(number(v, "data_events") >= 20.0 * 6.0, "{v}");
    }
    let (p, g) = (
        number(&plain, "wire_per_media"),
        number(&gzip, "wire_per_media"),
    );
    assert!((1.33..1.40).contains(&p), "plain {p}: {plain}");
    assert!((0.99..1.03).contains(&g), "gzip {g}: {gzip}");
}

#[test]
fn non_loopback_url_is_a_setup_error() {
    let out = load(&["--url", "http://192.0.2.1:8080/events", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn nobody_listening_exits_with_2() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/events");
    let out = load(&["--url", &url, "--clients", "3", "--duration", "1", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_report(&out);
    assert_eq!(v["connected"], 0, "{v}");
    assert_eq!(v["failed_by_reason"]["refused"], 3, "{v}");
}
