//! Command line of `ssecast-load`: parsing (lexopt), the `--help` text, defaults, and the check
//! that the target URL is plain http:// to a loopback address. It produces a [`Config`] and never
//! touches the network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub const HELP: &str = "\
ssecast-load: open many Server-Sent Events connections to one URL and measure what they receive.

One process, one thread, one mio event loop. Works against ssecast or any other server speaking
the same SSE stream (close-delimited or chunked bodies).

USAGE:
    ssecast-load [OPTIONS]

OPTIONS:
    --url URL               Stream to load [default: http://127.0.0.1:8080/events]. Only http://
                            to a loopback host is accepted (127.0.0.0/8, [::1] or localhost):
                            this tool must not be pointed at other machines.
    --clients N             Connections to open [default: 100].
    --ramp R                Connections started per second [default: 1000].
    --duration SECS         Length of the measurement, from the first connect [default: 10].
                            Afterwards the run waits at most 2 s more so that events already
                            in flight reach every client (only the spread uses that), then
                            closes everything and prints the report. It stops sooner when
                            every client has failed or been disconnected.
    --sources K             Spread connections over source addresses 127.0.0.1 ..= 127.0.0.K
                            (IPv4 targets only), so more connections fit in the ephemeral port
                            range [default: enough for at most 20000 per address; max 254].
    --expect-interval-ms MS Expected time between data events (1000 / speed for ssecast's 1 s
                            fragments). Adds `stalls`: gaps between two data events of one
                            client longer than twice this.
    --server-pid PID        The server's process (repeat for several, e.g. nginx's master and
                            workers): adds the steady-state numbers below. Read from
                            /proc/PID/task/*/schedstat, so the server must be on this machine.
    --gzip                  Ask for a gzip body (Accept-Encoding: gzip) and inflate it to find
                            the events; wire bytes are counted as received, compressed.
    --json                  Also print the report as one JSON object line on stdout.
    -h, --help              Print this help.

REPORT (human-readable on stderr; with --json also on stdout):
    connected / failed      A client is connected once it got a 200 response head. Failures are
                            counted by reason (refused, timeout, http_503, not_started, ...).
    disconnected            Connected clients whose stream ended before the end of the run.
    events, data_events     Events dispatched as a browser would (those with data). Data events
                            are `event: data` or untyped `message` events; payload_bytes is the
                            length of their data lines, and mb_per_s is that per second
                            (1 MB = 10^6 bytes). Base64 is never decoded. media_bytes is what
                            that base64 encodes (3/4 of it: the moof+mdat bytes delivered), and
                            wire_per_media every byte received (heads, init events and gzip
                            framing included) per media byte: 1.333 plain, ~1.0 with --gzip.
    gaps, duplicates        From ids `<seq>.<ms>` (ssecast): a gap is a sequence jump > 1 that
                            was not announced by a `reset` event; a duplicate is a sequence
                            number not above the previous one. nchan ids `<time>:<tag>` are only
                            checked for duplicates; other ids only counted.
    resets, fell_behind     `reset` events (the server skipped frames for a slow client); clients
                            with any gap or reset fell behind.
    latency                 now − <ms> from the id, when the event's last byte arrives (same
                            host clock). Only events that went live after the connection's
                            response head arrived count; the first data event of a connection
                            and the first after a reset are left out too (catch-up, not live).
    spread                  Fan-out spread per event id: last client's arrival − first client's,
                            among clients already streaming when the id first arrived. `spread`
                            counts ids that reached >= 90% of those clients; `spread_all` counts
                            every id received by at least two clients.
    loadgen_cpu_s           CPU time (user + system) of this process: if it nears the elapsed
                            time, the load generator, not the server, was the bottleneck.
    steady_*                The steady state: from 1 s after every client is streaming to the
                            end of the window (connecting and closing are left out). steady_s,
                            steady_payload_bytes received in it and, with --server-pid, the
                            server's CPU time in it (steady_server_cpu_s, nanosecond-exact) and
                            that per GB of payload (steady_server_cpu_s_per_gb) and per GB of
                            media (steady_server_cpu_s_per_media_gb).

EXIT STATUS:
    0 at least one client connected; 1 bad arguments or setup error; 2 nobody could connect.
";

/// Connections per source address that the default `--sources` aims for (the ephemeral port
/// range holds ~28,000 per address).
const PER_SOURCE: u32 = 20_000;

/// The stream to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value: the URL's authority as written.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub clients: u32,
    pub ramp_per_s: f64,
    pub duration: Duration,
    pub sources: u8,
    pub expect_interval: Option<Duration>,
    pub server_pids: Vec<u32>,
    pub json: bool,
    /// Ask for and inflate a gzip body.
    pub gzip: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Config),
    Help,
}

pub fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;

    let mut url = String::from("http://127.0.0.1:8080/events");
    let mut clients: u32 = 100;
    let mut ramp_per_s: f64 = 1000.0;
    let mut duration_s: f64 = 10.0;
    let mut sources: Option<u32> = None;
    let mut expect_ms: Option<f64> = None;
    let mut server_pids = Vec::new();
    let mut json = false;
    let mut gzip = false;

    let mut parser = lexopt::Parser::from_args(args);
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Long("url") => url = parser.value().map_err(err)?.string().map_err(err)?,
            Long("clients") => clients = parser.value().map_err(err)?.parse().map_err(err)?,
            Long("ramp") => ramp_per_s = parser.value().map_err(err)?.parse().map_err(err)?,
            Long("duration") => duration_s = parser.value().map_err(err)?.parse().map_err(err)?,
            Long("sources") => sources = Some(parser.value().map_err(err)?.parse().map_err(err)?),
            Long("expect-interval-ms") => {
                expect_ms = Some(parser.value().map_err(err)?.parse().map_err(err)?)
            }
            Long("server-pid") => {
                let pid: u32 = parser.value().map_err(err)?.parse().map_err(err)?;
                if pid == 0 {
                    return Err("--server-pid must be a process id".into());
                }
                server_pids.push(pid);
            }
            Long("json") => json = true,
            Long("gzip") => gzip = true,
            Short('h') | Long("help") => return Ok(Command::Help),
            _ => return Err(err(arg.unexpected())),
        }
    }

    let target = parse_url(&url)?;
    if clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if !(ramp_per_s.is_finite() && ramp_per_s > 0.0) {
        return Err("--ramp must be a positive number of connections per second".into());
    }
    if !(duration_s.is_finite() && duration_s > 0.0 && duration_s <= 86_400.0) {
        return Err("--duration must be a positive number of seconds (at most a day)".into());
    }
    let sources = sources.unwrap_or(clients.div_ceil(PER_SOURCE).min(254));
    let sources = u8::try_from(sources)
        .ok()
        .filter(|&k| (1..=254).contains(&k))
        .ok_or("--sources must be between 1 and 254")?;
    let expect_interval = match expect_ms {
        None => None,
        Some(ms) if ms.is_finite() && ms > 0.0 => Some(Duration::from_secs_f64(ms / 1000.0)),
        Some(_) => return Err("--expect-interval-ms must be a positive number".into()),
    };
    Ok(Command::Run(Config {
        target,
        clients,
        ramp_per_s,
        duration: Duration::from_secs_f64(duration_s),
        sources,
        expect_interval,
        server_pids,
        json,
        gzip,
    }))
}

/// Parses `http://HOST[:PORT][/PATH][?QUERY]` and refuses any host that is not a loopback
/// address. Names other than `localhost` are refused rather than resolved.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
        .ok_or_else(|| format!("--url {url:?}: only http:// URLs are supported"))?;
    let rest = rest.split('#').next().unwrap_or("");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(format!("--url {url:?}: user info is not supported"));
    }
    let (host, port) = split_host_port(authority)
        .ok_or_else(|| format!("--url {url:?}: cannot read host and port"))?;
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| not_loopback(url, host))?
    };
    let loopback = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    };
    if !loopback {
        return Err(not_loopback(url, host));
    }
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "--url {url:?}: the path must not contain spaces or control characters"
        ));
    }
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        host: authority.to_string(),
        path,
    })
}

fn not_loopback(url: &str, host: &str) -> String {
    format!(
        "--url {url:?}: host {host:?} is not a loopback address; only 127.0.0.0/8, [::1] and \
         localhost are allowed"
    )
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (port 80 when absent).
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_config(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().map(|s| s.into()))? {
            Command::Run(c) => Ok(c),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn loopback_urls_are_accepted() {
        let t = parse_url("http://127.0.0.1:18080/events").unwrap();
        assert_eq!(t.addr, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:18080", "/events")
        );

        let t = parse_url("HTTP://127.1.2.3/sub?id=1#frag").unwrap();
        assert_eq!(t.addr, "127.1.2.3:80".parse().unwrap());
        assert_eq!(t.path, "/sub?id=1");

        let t = parse_url("http://[::1]:9000").unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str()), ("[::1]:9000", "/"));

        let t = parse_url("http://localhost:8080?x").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/?x");
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "http://10.0.0.1:8080/events",
            "http://0.0.0.0:8080/",
            "http://[::]:8080/",
            "http://[::ffff:8.8.8.8]/",
            "http://example.com/events",
            "http://localhost.example.com/",
            "http://128.0.0.1/",
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains("not a loopback address"), "{url}: {e}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:8080/events",
            "http://",
            "http://127.0.0.1:/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://user@127.0.0.1/",
            "http://[::1/",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn defaults_and_sources() {
        let c = run_config(&[]).unwrap();
        assert_eq!((c.clients, c.sources, c.json), (100, 1, false));
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(run_config(&["--clients", "50000"]).unwrap().sources, 3);
        assert_eq!(
            run_config(&["--clients", "5", "--sources", "7"])
                .unwrap()
                .sources,
            7
        );
        let c = run_config(&["--expect-interval-ms", "250", "--json"]).unwrap();
        assert_eq!(c.expect_interval, Some(Duration::from_millis(250)));
        assert!(c.json);
    }

    #[test]
    fn bad_arguments_are_errors() {
        for args in [
            &["--clients", "0"][..],
            &["--ramp", "0"],
            &["--duration", "-1"],
            &["--sources", "0"],
            &["--sources", "255"],
            &["--url", "http://192.168.1.1/"],
            &["--bogus"],
            &["--clients"],
        ] {
            assert!(run_config(args).is_err(), "{args:?}");
        }
        assert!(matches!(parse_args(["--help".into()]), Ok(Command::Help)));
    }
}
