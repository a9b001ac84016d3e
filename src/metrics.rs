//! What the server tells about itself: the status JSON of `/api/streams` and the Prometheus text
//! of `/metrics`. Both are built from counters kept as things happen (per stream in
//! [`Stream`], server-wide in [`Metrics`]), so a request costs O(streams), never O(connections).
//! Pure apart from reading the process's own CPU time and RSS from `/proc/self`.

use crate::conn::Phase;
use crate::sse::json_escape;
use crate::stream::{Publisher, Registry, Stream};
use std::fmt::Write as _;
use std::time::Instant;

/// Server-wide counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub started: Instant,
    pub accepted: u64,
    /// Answered 503: over `--max-clients`.
    pub refused: u64,
    pub head_timeouts: u64,
    pub publish_timeouts: u64,
    /// Viewers disconnected after staying stuck for `--stall-timeout`.
    pub stalled: u64,
    /// Connections in each phase, in the order of [`PHASES`].
    pub phases: [usize; 5],
}

/// The phases connections are counted in, with their metric label.
pub const PHASES: [(Phase, &str); 5] = [
    (Phase::ReadHead, "read_head"),
    (Phase::Respond, "respond"),
    (Phase::Stream, "stream"),
    (Phase::Publish, "publish"),
    (Phase::Linger, "linger"),
];

impl Metrics {
    pub fn new(started: Instant) -> Metrics {
        Metrics {
            started,
            accepted: 0,
            refused: 0,
            head_timeouts: 0,
            publish_timeouts: 0,
            stalled: 0,
            phases: [0; 5],
        }
    }

    fn slot(phase: Phase) -> usize {
        PHASES.iter().position(|(p, _)| *p == phase).unwrap_or(0)
    }

    /// A connection entered `phase` (`from` the phase it left, `None` when it is new).
    pub fn moved(&mut self, from: Option<Phase>, to: Option<Phase>) {
        if let Some(f) = from {
            let s = &mut self.phases[Self::slot(f)];
            *s = s.saturating_sub(1);
        }
        if let Some(t) = to {
            self.phases[Self::slot(t)] += 1;
        }
    }
}

fn secs_since(now: Instant, t: Instant) -> f64 {
    now.saturating_duration_since(t).as_secs_f64()
}

/// One stream's status object.
fn stream_json(s: &Stream, default: bool, now: Instant, out: &mut String) {
    out.push_str("{\"name\":\"");
    json_escape(s.name.as_str(), out);
    let publishers = usize::from(matches!(
        s.publisher,
        Some(Publisher::Conn { .. } | Publisher::Rtmp { .. })
    ));
    let _ = write!(
        out,
        "\",\"kind\":\"{}\",\"live\":{},\"default\":{},\"viewers\":{},\"publishers\":{publishers},\
         \"fragments\":{},\"sessions\":{},\"bytes_sent\":{},\"skipped_fragments\":{},\
         \"viewers_skipped\":{},\"publish_bytes\":{},\"bitrate\":{},\"compressed_viewers\":{}",
        s.kind.map_or("none", |k| k.as_str()),
        s.is_live(),
        default,
        s.viewers.len(),
        s.fragments,
        s.sessions,
        s.bytes_sent,
        s.skipped,
        s.viewers_skipped,
        s.publish_bytes,
        s.bitrate(),
        s.compressed_viewers,
    );
    match s.last_fragment_at {
        Some(t) => {
            let _ = write!(out, ",\"seconds_since_fragment\":{:.3}", secs_since(now, t));
        }
        None => out.push_str(",\"seconds_since_fragment\":null"),
    }
    if s.is_live() {
        let _ = write!(out, ",\"uptime\":{:.3}", secs_since(now, s.changed_at));
    } else {
        out.push_str(",\"uptime\":0");
    }
    if let Some(info) = s.info() {
        out.push_str(",\"mime\":\"");
        json_escape(&info.mime, out);
        let codecs = info
            .mime
            .split_once("codecs=\"")
            .and_then(|(_, c)| c.split('"').next())
            .unwrap_or("");
        out.push_str("\",\"codecs\":\"");
        json_escape(codecs, out);
        let _ = write!(
            out,
            "\",\"width\":{},\"height\":{}",
            info.width, info.height
        );
    }
    out.push('}');
}

/// `GET /api/streams` (every stream) or `/api/streams/NAME` (`only`): JSON.
pub fn status_json(streams: &Registry, only: Option<usize>, now: Instant) -> String {
    let default = streams.default_key();
    let mut out = String::new();
    if let Some(key) = only {
        if let Some(s) = streams.get(key) {
            stream_json(s, Some(key) == default, now, &mut out);
        }
        out.push('\n');
        return out;
    }
    out.push('[');
    for (i, (key, s)) in streams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        stream_json(s, Some(key) == default, now, &mut out);
    }
    out.push_str("]\n");
    out
}

/// The process's CPU time in seconds and resident memory in bytes, from `/proc/self`.
fn process_usage() -> (f64, u64) {
    let cpu_ns: u64 = std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let rss_kib: u64 = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (cpu_ns as f64 / 1e9, rss_kib * 1024)
}

/// Writes one metric family: its help, its type and a sample per stream.
fn family(
    out: &mut String,
    streams: &Registry,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&Stream) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (_, s) in streams.iter() {
        // Stream names are A-Z a-z 0-9 _ -: nothing to escape in a label value.
        let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", s.name, value(s));
    }
}

/// `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
pub fn prometheus(streams: &Registry, m: &Metrics, now: Instant) -> String {
    let mut out = String::with_capacity(4096);
    let f = &mut out;
    family(
        f,
        streams,
        "ssecast_stream_viewers",
        "gauge",
        "Viewers connected.",
        |s| s.viewers.len() as u64,
    );
    family(
        f,
        streams,
        "ssecast_stream_live",
        "gauge",
        "1 while the stream is live.",
        |s| u64::from(s.is_live()),
    );
    family(
        f,
        streams,
        "ssecast_stream_publishers",
        "gauge",
        "Publishers connected.",
        |s| {
            u64::from(matches!(
                s.publisher,
                Some(Publisher::Conn { .. } | Publisher::Rtmp { .. })
            ))
        },
    );
    family(
        f,
        streams,
        "ssecast_stream_bitrate_bits_per_second",
        "gauge",
        "Bitrate of the fragments over the last few seconds.",
        |s| s.bitrate(),
    );
    family(
        f,
        streams,
        "ssecast_stream_sent_bytes_total",
        "counter",
        "Bytes written to viewers.",
        |s| s.bytes_sent,
    );
    family(
        f,
        streams,
        "ssecast_stream_fragments_total",
        "counter",
        "Fragments that went live.",
        |s| s.fragments,
    );
    family(
        f,
        streams,
        "ssecast_stream_skipped_fragments_total",
        "counter",
        "Fragments slow viewers skipped.",
        |s| s.skipped,
    );
    family(
        f,
        streams,
        "ssecast_stream_skipping_viewers_total",
        "counter",
        "Viewers that skipped fragments at least once.",
        |s| s.viewers_skipped,
    );
    family(
        f,
        streams,
        "ssecast_stream_sessions_total",
        "counter",
        "Times the stream went live.",
        |s| s.sessions,
    );
    family(
        f,
        streams,
        "ssecast_stream_publish_bytes_total",
        "counter",
        "Media bytes received from publishers.",
        |s| s.publish_bytes,
    );
    let _ = writeln!(
        out,
        "# HELP ssecast_connections Open connections by phase.\n# TYPE ssecast_connections gauge"
    );
    for ((_, label), n) in PHASES.iter().zip(m.phases) {
        let _ = writeln!(out, "ssecast_connections{{phase=\"{label}\"}} {n}");
    }
    let counters = [
        (
            "ssecast_connections_accepted_total",
            "Connections accepted.",
            m.accepted,
        ),
        (
            "ssecast_connections_refused_total",
            "Connections answered 503 (over --max-clients).",
            m.refused,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP ssecast_connections_timed_out_total Connections closed by a timeout.\n\
         # TYPE ssecast_connections_timed_out_total counter\n\
         ssecast_connections_timed_out_total{{timeout=\"head\"}} {}\n\
         ssecast_connections_timed_out_total{{timeout=\"publish\"}} {}\n\
         ssecast_connections_timed_out_total{{timeout=\"stall\"}} {}",
        m.head_timeouts, m.publish_timeouts, m.stalled
    );
    let (cpu, rss) = process_usage();
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
         # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu:.6}\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n\
         # HELP ssecast_uptime_seconds Seconds since the server started.\n\
         # TYPE ssecast_uptime_seconds gauge\nssecast_uptime_seconds {:.3}",
        secs_since(now, m.started)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::StreamInfo;
    use crate::stream::{SourceKind, StreamName};
    use std::time::Duration;

    #[test]
    fn status_and_metrics_reflect_the_counters() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10));
        let k = r
            .add_configured(
                StreamName::parse("cam").unwrap(),
                SourceKind::Stdin,
                false,
                t0,
            )
            .unwrap();
        let s = r.get_mut(k).unwrap();
        let info = StreamInfo {
            mime: "video/mp4; codecs=\"avc1.42c01e\"".into(),
            width: 320,
            height: 240,
            bitrate: 0,
            duration_secs: 0.0,
        };
        s.start_session(info, b"init", vec![90_000], t0);
        s.go_live(&[0; 1000], true, t0, 1);
        s.go_live(&[0; 1000], false, t0 + Duration::from_secs(6), 2);
        s.viewers.insert(7);
        s.bytes_sent = 12345;
        let json = status_json(&r, None, t0 + Duration::from_secs(7));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["name"], "cam");
        assert_eq!(v[0]["kind"], "stdin");
        assert_eq!(v[0]["viewers"], 1);
        assert_eq!(v[0]["fragments"], 2);
        assert_eq!(v[0]["codecs"], "avc1.42c01e");
        assert_eq!(v[0]["bytes_sent"], 12345);
        assert_eq!(v[0]["bitrate"], 2000 * 8 / 6);
        assert!((v[0]["seconds_since_fragment"].as_f64().unwrap() - 1.0).abs() < 1e-6);
        let one: serde_json::Value = serde_json::from_str(&status_json(&r, Some(k), t0)).unwrap();
        assert_eq!(one["name"], "cam");
        let mut m = Metrics::new(t0);
        m.moved(None, Some(Phase::ReadHead));
        m.moved(Some(Phase::ReadHead), Some(Phase::Stream));
        m.accepted = 3;
        let text = prometheus(&r, &m, t0);
        assert!(text.contains("ssecast_stream_viewers{stream=\"cam\"} 1\n"));
        assert!(text.contains("ssecast_stream_sent_bytes_total{stream=\"cam\"} 12345\n"));
        assert!(text.contains("ssecast_connections{phase=\"stream\"} 1\n"));
        assert!(text.contains("ssecast_connections{phase=\"read_head\"} 0\n"));
        assert!(text.contains("ssecast_connections_accepted_total 3\n"));
        assert!(text.contains("process_resident_memory_bytes "));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    }
}
