//! The run's results: totals summed from the clients, and their two renderings — the
//! human-readable report (stderr) and the one-line JSON object (`--json`, stdout, formatted by
//! hand). It does no measuring of its own.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::client::StreamStats;
use crate::histogram::Histogram;
use crate::spread::SpreadTracker;

/// Counts summed over all clients.
#[derive(Debug, Default)]
pub struct Totals {
    pub connected: u64,
    /// Clients that never streamed, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Connected clients whose stream ended during the measurement window, by reason.
    pub disconnected: BTreeMap<String, u64>,
    pub stats: StreamStats,
    pub fell_behind: u64,
}

impl Totals {
    /// Adds the counters of a client that streamed.
    pub fn add_stream(&mut self, stats: &StreamStats) {
        self.stats.add(stats);
        if stats.fell_behind() {
            self.fell_behind += 1;
        }
    }

    pub fn fail(&mut self, reason: String, count: u64) {
        if count > 0 {
            *self.failed.entry(reason).or_default() += count;
        }
    }

    pub fn disconnect(&mut self, reason: String) {
        *self.disconnected.entry(reason).or_default() += 1;
    }
}

pub struct Report {
    pub url: String,
    pub clients: u32,
    pub ramp_per_s: f64,
    pub sources: u8,
    pub expect_interval_ms: Option<f64>,
    pub totals: Totals,
    pub latency: Histogram,
    pub spread: SpreadTracker,
    /// Length of the measurement window (shorter than asked when every client was gone early).
    pub seconds: f64,
    /// The steady state (every client streaming, none connecting), when the window reached one.
    pub steady: Option<Steady>,
    /// Wall time of the whole run (window, grace, teardown).
    pub elapsed_s: f64,
    pub cpu_s: f64,
}

/// What the steady-state part of the window saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steady {
    pub seconds: f64,
    pub payload_bytes: u64,
    /// Everything received in it, as it came off the wire.
    pub wire_bytes: u64,
    /// The server's CPU time in it, when its pids were given.
    pub server_cpu_s: Option<f64>,
}

impl Steady {
    pub fn server_cpu_s_per_gb(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.payload_bytes > 0).then(|| cpu / (self.payload_bytes as f64 / 1e9))
    }

    /// Server CPU seconds per GB of media (moof+mdat) delivered.
    pub fn server_cpu_s_per_media_gb(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        let media = media_bytes(self.payload_bytes);
        (media > 0.0).then(|| cpu / (media / 1e9))
    }
}

/// The bytes `payload` base64 characters encode (the media delivered; padding aside).
pub fn media_bytes(payload: u64) -> f64 {
    payload as f64 * 0.75
}

/// Bytes received per media byte; `None` before any media.
fn per_media(wire: u64, payload: u64) -> Option<f64> {
    let media = media_bytes(payload);
    (media > 0.0).then(|| wire as f64 / media)
}

struct Summary {
    p50: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
}

fn summary(h: &Histogram) -> Summary {
    Summary {
        p50: h.percentile(50.0),
        p99: h.percentile(99.0),
        max: h.max(),
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0))
}

fn json_ms(us: Option<u64>) -> String {
    us.map_or("null".into(), |us| format!("{:.3}", us as f64 / 1000.0))
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    ssecast::sse::json_escape(s, &mut out);
    out.push('"');
    out
}

fn json_map(map: &BTreeMap<String, u64>) -> String {
    let fields: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn reasons(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return String::new();
    }
    let list: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(" ({})", list.join(", "))
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.totals.failed.values().sum()
    }

    pub fn disconnected(&self) -> u64 {
        self.totals.disconnected.values().sum()
    }

    fn mb_per_s(&self, bytes: u64) -> f64 {
        if self.seconds > 0.0 {
            bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    pub fn human(&self) -> String {
        let t = &self.totals;
        let s = &t.stats;
        let latency = summary(&self.latency);
        let full = summary(&self.spread.full);
        let all = summary(&self.spread.all);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "ssecast-load: {} — {} clients, ramp {}/s, {} source address(es), {:.1} s window",
            self.url, self.clients, self.ramp_per_s, self.sources, self.seconds
        );
        let _ = writeln!(
            out,
            "  clients      {} connected, {} failed{}, {} disconnected early{}",
            t.connected,
            self.failed(),
            reasons(&t.failed),
            self.disconnected(),
            reasons(&t.disconnected),
        );
        let _ = writeln!(
            out,
            "  received     {} events ({} data), {:.1} MB payload ({:.1} MB on the wire): {:.2} MB/s",
            s.events,
            s.data_events,
            s.payload_bytes as f64 / 1e6,
            s.wire_bytes as f64 / 1e6,
            self.mb_per_s(s.payload_bytes),
        );
        if let Some(ratio) = per_media(s.wire_bytes, s.payload_bytes) {
            let _ = writeln!(
                out,
                "  media        {:.1} MB of moof+mdat: {ratio:.4} bytes on the wire per media byte",
                media_bytes(s.payload_bytes) / 1e6,
            );
        }
        let mut continuity = format!(
            "  continuity   {} gaps ({} events missing), {} duplicates, {} resets, {} clients fell behind",
            s.gaps, s.missing, s.duplicates, s.resets, t.fell_behind
        );
        if let Some(interval) = self.expect_interval_ms {
            let _ = write!(
                continuity,
                ", {} stalls (> {:.0} ms)",
                s.stalls,
                2.0 * interval
            );
        }
        let _ = writeln!(out, "{continuity}");
        let _ = writeln!(
            out,
            "  latency      p50 {}, p99 {}, max {} ({} live events)",
            ms(latency.p50),
            ms(latency.p99),
            ms(latency.max),
            self.latency.count()
        );
        let _ = writeln!(
            out,
            "  spread       p50 {}, p99 {}, max {} ({} of {} ids reached >= 90% of clients)",
            ms(full.p50),
            ms(full.p99),
            ms(full.max),
            self.spread.ids_full,
            self.spread.ids
        );
        let _ = writeln!(
            out,
            "  spread (all) p50 {}, p99 {}, max {} ({} ids received by >= 2 clients)",
            ms(all.p50),
            ms(all.p99),
            ms(all.max),
            self.spread.all.count()
        );
        let _ = writeln!(
            out,
            "  loadgen cpu  {:.2} s over {:.1} s = {:.0}% of one core",
            self.cpu_s,
            self.elapsed_s,
            100.0 * self.cpu_s / self.elapsed_s.max(1e-9)
        );
        match &self.steady {
            Some(st) => {
                let mut line = format!(
                    "  steady state {:.1} s (every client streaming): {:.2} MB/s",
                    st.seconds,
                    st.payload_bytes as f64 / 1e6 / st.seconds.max(1e-9)
                );
                if let (Some(cpu), Some(per_gb), Some(per_media_gb)) = (
                    st.server_cpu_s,
                    st.server_cpu_s_per_gb(),
                    st.server_cpu_s_per_media_gb(),
                ) {
                    let _ = write!(
                        line,
                        ", server CPU {cpu:.3} s = {per_gb:.3} s per GB ({per_media_gb:.3} per media GB)"
                    );
                }
                let _ = writeln!(out, "{line}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "  steady state none (the window ended before every client was streaming)"
                );
            }
        }
        out
    }

    pub fn json(&self) -> String {
        let t = &self.totals;
        let s = &t.stats;
        let latency = summary(&self.latency);
        let full = summary(&self.spread.full);
        let all = summary(&self.spread.all);
        let num = |v: Option<f64>, digits: usize| match v {
            Some(v) if v.is_finite() => format!("{v:.digits$}"),
            _ => "null".to_string(),
        };
        let mut fields = vec![
            ("url", json_string(&self.url)),
            ("clients", self.clients.to_string()),
            ("connected", t.connected.to_string()),
            ("failed", self.failed().to_string()),
            ("failed_by_reason", json_map(&t.failed)),
            ("disconnected", self.disconnected().to_string()),
            ("disconnected_by_reason", json_map(&t.disconnected)),
            ("events", s.events.to_string()),
            ("data_events", s.data_events.to_string()),
            ("payload_bytes", s.payload_bytes.to_string()),
            ("wire_bytes", s.wire_bytes.to_string()),
            (
                "media_bytes",
                format!("{:.0}", media_bytes(s.payload_bytes)),
            ),
            (
                "wire_per_media",
                num(per_media(s.wire_bytes, s.payload_bytes), 4),
            ),
            ("seconds", format!("{:.3}", self.seconds)),
            ("mb_per_s", format!("{:.3}", self.mb_per_s(s.payload_bytes))),
            ("gaps", s.gaps.to_string()),
            ("missing", s.missing.to_string()),
            ("duplicates", s.duplicates.to_string()),
            ("resets", s.resets.to_string()),
            ("fell_behind", t.fell_behind.to_string()),
            ("latency_samples", self.latency.count().to_string()),
            ("latency_ms_p50", json_ms(latency.p50)),
            ("latency_ms_p99", json_ms(latency.p99)),
            ("latency_ms_max", json_ms(latency.max)),
            ("spread_ids", self.spread.ids.to_string()),
            ("spread_ids_full", self.spread.ids_full.to_string()),
            ("spread_ms_p50", json_ms(full.p50)),
            ("spread_ms_p99", json_ms(full.p99)),
            ("spread_ms_max", json_ms(full.max)),
            ("spread_all_ms_p50", json_ms(all.p50)),
            ("spread_all_ms_p99", json_ms(all.p99)),
            ("spread_all_ms_max", json_ms(all.max)),
            ("elapsed_s", format!("{:.3}", self.elapsed_s)),
            ("loadgen_cpu_s", format!("{:.3}", self.cpu_s)),
        ];
        if self.expect_interval_ms.is_some() {
            fields.push(("stalls", s.stalls.to_string()));
        }
        let steady = self.steady.as_ref();
        fields.push(("steady_s", num(steady.map(|st| st.seconds), 3)));
        fields.push((
            "steady_payload_bytes",
            steady.map_or("null".to_string(), |st| st.payload_bytes.to_string()),
        ));
        fields.push((
            "steady_server_cpu_s",
            num(steady.and_then(|st| st.server_cpu_s), 6),
        ));
        fields.push((
            "steady_server_cpu_s_per_gb",
            num(steady.and_then(Steady::server_cpu_s_per_gb), 4),
        ));
        fields.push((
            "steady_server_cpu_s_per_media_gb",
            num(steady.and_then(Steady::server_cpu_s_per_media_gb), 4),
        ));
        fields.push((
            "steady_wire_per_media",
            num(
                steady.and_then(|st| per_media(st.wire_bytes, st.payload_bytes)),
                4,
            ),
        ));
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut totals = Totals {
            connected: 2,
            ..Totals::default()
        };
        totals.fail("refused".into(), 1);
        totals.fail("not_started".into(), 0);
        totals.add_stream(&StreamStats {
            events: 3,
            data_events: 2,
            payload_bytes: 2_000_000,
            resets: 1,
            ..StreamStats::default()
        });
        let mut latency = Histogram::default();
        latency.record(12_345);
        Report {
            url: "http://127.0.0.1:1/\"x\"".into(),
            clients: 3,
            ramp_per_s: 1000.0,
            sources: 1,
            expect_interval_ms: None,
            totals,
            latency,
            spread: SpreadTracker::default(),
            seconds: 2.0,
            steady: Some(Steady {
                seconds: 1.5,
                payload_bytes: 1_500_000_000,
                wire_bytes: 1_125_000_000,
                server_cpu_s: Some(0.375),
            }),
            elapsed_s: 3.0,
            cpu_s: 0.5,
        }
    }

    #[test]
    fn steady_state_is_reported_per_gb_or_as_null() {
        let r = report();
        let json = r.json();
        assert!(json.contains("\"steady_s\":1.500"), "{json}");
        assert!(
            json.contains("\"steady_payload_bytes\":1500000000"),
            "{json}"
        );
        assert!(
            json.contains("\"steady_server_cpu_s_per_gb\":0.2500"),
            "{json}"
        );
        assert!(
            r.human().contains("= 0.250 s per GB (0.333 per media GB)"),
            "{}",
            r.human()
        );
        assert!(
            json.contains("\"steady_server_cpu_s_per_media_gb\":0.3333"),
            "{json}"
        );
        assert!(json.contains("\"steady_wire_per_media\":1.0000"), "{json}");
        let none = Report {
            steady: None,
            ..report()
        };
        assert!(none.json().contains("\"steady_server_cpu_s_per_gb\":null"));
        assert!(none.human().contains("steady state none"));
        let no_pid = Report {
            steady: Some(Steady {
                server_cpu_s: None,
                ..r.steady.unwrap()
            }),
            ..report()
        };
        assert!(no_pid.json().contains("\"steady_server_cpu_s\":null"));
        assert!(no_pid.json().contains("\"steady_s\":1.500"));
    }

    #[test]
    fn json_has_the_documented_keys() {
        let json = report().json();
        assert!(json.starts_with('{') && json.ends_with('}') && !json.contains('\n'));
        for key in [
            "clients",
            "connected",
            "failed",
            "disconnected",
            "events",
            "data_events",
            "payload_bytes",
            "media_bytes",
            "wire_per_media",
            "seconds",
            "mb_per_s",
            "gaps",
            "duplicates",
            "resets",
            "fell_behind",
            "latency_ms_p50",
            "latency_ms_p99",
            "latency_ms_max",
            "spread_ms_p50",
            "spread_ms_p99",
            "spread_ms_max",
            "loadgen_cpu_s",
        ] {
            assert!(
                json.contains(&format!("\"{key}\":")),
                "{key} missing from {json}"
            );
        }
        assert!(json.contains("\"failed\":1,"));
        assert!(json.contains("\"failed_by_reason\":{\"refused\":1}"));
        assert!(json.contains("\"mb_per_s\":1.000"));
        assert!(
            json.contains("\"latency_ms_p50\":12.351") || json.contains("\"latency_ms_p50\":12.3")
        );
        assert!(json.contains("\"spread_ms_p50\":null"));
        assert!(json.contains("\"fell_behind\":1"));
        assert!(json.contains(r#""url":"http://127.0.0.1:1/\"x\"""#));
    }

    #[test]
    fn human_report_mentions_failures_and_rates() {
        let text = report().human();
        assert!(text.contains("2 connected, 1 failed (refused 1)"), "{text}");
        assert!(text.contains("1.00 MB/s"), "{text}");
        assert!(text.contains("1 clients fell behind"), "{text}");
    }
}
