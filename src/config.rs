//! Command-line options: parses `ssecast [OPTIONS] [STREAM...]` into a [`Config`], with the help
//! text, the `[NAME=]SOURCE` stream arguments and the units (sizes like `4M`, durations like
//! `10s`). Pure: no I/O, so it is unit-tested.

use crate::source::live::IngestOptions;
use crate::stream::StreamName;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where RTMP publishers connect (`--rtmp`).
    pub rtmp: RtmpListen,
    /// The streams named on the command line; none plays the embedded sample as `sample`.
    pub streams: Vec<StreamSpec>,
    /// The key publishers must present; `None` accepts publishers on loopback only.
    pub publish_key: Option<String>,
    /// Time a publisher may send nothing before it is disconnected.
    pub publish_timeout: Duration,
    /// Bytes a viewer may have queued before it skips ahead to the next keyframe.
    pub client_queue: usize,
    /// How much recent video is kept for new and reconnecting viewers.
    pub backlog: Duration,
    /// Most connected viewers; `None` means derived from the file descriptor limit.
    pub max_clients: Option<usize>,
    /// Time a connection has to send its request head.
    pub head_timeout: Duration,
    /// Time a viewer may stay stuck behind before it is disconnected.
    pub stall_timeout: Duration,
    /// Playout speed, N× real time (for benchmarks).
    pub speed: u32,
    /// How often a summary line is logged.
    pub stats_every: Duration,
    /// Silence after which a stream's viewers get a keepalive comment.
    pub keepalive: Duration,
    /// Viewers that accept gzip get the compressed stream (`--compress auto`).
    pub compress: bool,
    /// How MPEG-TS and Annex B feeds are muxed (`--part`, `--fps`).
    pub ingest: IngestOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            rtmp: RtmpListen::Default,
            streams: Vec::new(),
            publish_key: None,
            publish_timeout: Duration::from_secs(10),
            client_queue: 4 << 20,
            backlog: Duration::from_secs(10),
            max_clients: None,
            head_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            speed: 1,
            stats_every: Duration::from_secs(60),
            keepalive: Duration::from_secs(15),
            compress: true,
            ingest: IngestOptions::default(),
        }
    }
}

/// The RTMP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtmpListen {
    /// `0.0.0.0:1935`, or none (with a warning) when that port is taken.
    Default,
    /// An address given with `--rtmp`: not being able to listen there is an error.
    Addr(SocketAddr),
    Off,
}

impl RtmpListen {
    /// The default address.
    pub const DEFAULT: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 1935);
}

/// Where a stream named on the command line comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fragmented MP4 played as a looping live channel.
    File(PathBuf),
    /// Standard input, a live feed.
    Stdin,
    /// Another ssecast's `/events/NAME` (an `http://` URL), relayed.
    Relay(String),
}

/// One `[NAME=]SOURCE` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: StreamName,
    pub source: Source,
}

impl StreamSpec {
    /// `NAME=SOURCE`, or `SOURCE` alone: a file's name defaults to its stem, `-` to `live`. A
    /// path that contains `=` is taken whole unless what comes before the `=` is a valid name.
    pub fn parse(arg: &str) -> Result<StreamSpec, String> {
        let (name, source) = match arg.split_once('=') {
            Some((n, s)) if StreamName::parse(n).is_ok() => (Some(n), s),
            _ => (None, arg),
        };
        if source.is_empty() {
            return Err(format!("'{arg}': no source after the '='"));
        }
        let source = if source == "-" {
            Source::Stdin
        } else if source.starts_with("https://") {
            return Err(format!(
                "'{arg}': relays pull plain http:// (put TLS in front of the viewers, not \
                 between an edge and its origin)"
            ));
        } else if source.starts_with("http://") {
            Source::Relay(source.to_string())
        } else {
            Source::File(PathBuf::from(source))
        };
        let name = match (name, &source) {
            (Some(n), _) => n.to_string(),
            (None, Source::Stdin) => "live".to_string(),
            (None, Source::Relay(url)) => url
                .split('?')
                .next()
                .and_then(|u| u.rsplit('/').next())
                .filter(|last| *last != "events" && !last.contains(':'))
                .unwrap_or("")
                .to_string(),
            (None, Source::File(p)) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let name = StreamName::parse(&name).map_err(|e| {
            format!("'{arg}': '{name}' cannot be a stream name ({e}); name it: NAME={arg}")
        })?;
        Ok(StreamSpec { name, source })
    }
}

/// What the command line asks for.
// Made once at startup and matched right away: boxing the config would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

pub const HELP: &str = "\
ssecast: a small, fast live video server over Server-Sent Events.

Serves named live streams to browsers: files played as looping channels, standard input, and
feeds published over HTTP (ffmpeg, GStreamer). Open the printed URL in a browser to watch.

USAGE:
    ssecast [OPTIONS] [STREAM...]

ARGS:
    [STREAM...]  [NAME=]SOURCE, where SOURCE is
                   a fragmented MP4 file: played in real time as a looping channel; NAME
                     defaults to the file's stem (movie.mp4 -> movie). Make one with:
                     ffmpeg -i in.mp4 -c copy -movflags frag_keyframe+empty_moov+default_base_moof out.mp4
                   -: standard input, a live feed (fragmented MP4, MPEG-TS or H.264/H.265
                     Annex B, told apart by its first bytes); NAME defaults to live
                   http://HOST:PORT/events/NAME: another ssecast's stream, relayed (same
                     events, same ids); NAME defaults to the URL's last segment
                 Without any, the embedded 6 s test pattern plays as the stream 'sample'.
                 Any other name can be published over HTTP (below). A name is 1-64 of
                 A-Z a-z 0-9 _ - (events, publish, api, metrics, healthz are reserved).

OPTIONS:
    -l, --listen ADDR        Address and port to listen on [default: 0.0.0.0:8080]
                             (use [::]:8080 for IPv6, 127.0.0.1:0 for any free loopback port)
        --rtmp ADDR|off      Where RTMP publishers (OBS, ffmpeg -f flv, GStreamer rtmp2sink)
                             connect: rtmp://HOST:1935/live/NAME, key NAME?key=KEY. By
                             default 0.0.0.0:1935, skipped with a warning if that port is
                             taken; an address given here must work [default: 0.0.0.0:1935]
    -k, --publish-key KEY    Key publishers must present: Authorization: Bearer KEY, the
                             password of http://user:KEY@host/..., or ?key=KEY. Without it,
                             only publishers on this machine (loopback) are accepted
        --publish-timeout TIME  A publisher that sends nothing for this long is disconnected
                             and its stream goes offline [default: 10s]
    -q, --client-queue SIZE  Bytes one viewer may have waiting to be sent; a viewer that falls
                             further behind skips ahead to the next keyframe [default: 4M]
    -b, --backlog TIME       Recent video kept for new and reconnecting viewers; a viewer that
                             reconnects within it resumes with no gap [default: 10s]
    -m, --max-clients N      Most simultaneous connections (viewers and publishers); more get
                             503 [default: about 16/17 of the open-file limit]
        --head-timeout TIME  Time a client has to send its request [default: 10s]
        --stall-timeout TIME Time a viewer may stay stuck behind before it is disconnected
                             [default: 30s]
        --speed N            Play files N times faster than real time, for benchmarks
                             [default: 1]
        --part TIME          Longest fragment cut from an MPEG-TS or Annex B feed between
                             keyframes (each keyframe starts one), so latency is not a whole
                             GOP; 0 makes every frame a fragment [default: 200ms]
        --fps N              Frame rate of a bare H.264/H.265 stream on standard input; without
                             it frames are timed by their arrival
        --keepalive TIME     Send idle viewers (a stream offline, or between long fragments) a
                             comment after this much silence, so proxies and CDNs with a
                             shorter idle timeout keep the connection [default: 15s]
        --stats-every TIME   How often to log a summary line (viewers, connections, queued
                             bytes, skipped fragments) [default: 60s]
        --compress auto|off  auto: viewers that accept gzip get the stream compressed (each
                             event compressed once for all of them, about 3/4 of the plain
                             bytes); off: every viewer gets it plain [default: auto]
    -h, --help               Print this help
    -V, --version            Print the version

SIZE is bytes with an optional K, M or G suffix (powers of 1024): 512K, 4M.
TIME is a number with ms, s or m: 500ms, 10s, 2m (a bare number is seconds).

ENDPOINTS:
    GET /                   the viewer page for the default stream (the first STREAM; with
                            none, the first published stream that is live, else the sample)
    GET /NAME               the viewer page for stream NAME (waits while it is offline)
    GET /events[/NAME]      the live stream (text/event-stream)
    POST|PUT /publish/NAME  publish fragmented MP4 or MPEG-TS (chunked, Content-Length, or
                            until close; ffmpeg -f mpegts http://HOST:8080/publish/NAME):
      ffmpeg -re -i IN -c:v libx264 -c:a aac -f mp4 \\
        -movflags frag_keyframe+empty_moov+default_base_moof http://HOST:8080/publish/NAME
    rtmp://HOST:1935/APP/NAME  publish over RTMP: OBS (server rtmp://HOST/live, stream key
                            NAME, or NAME?key=KEY with --publish-key), ffmpeg -f flv, GStreamer
                            rtmp2sink; H.264/H.265 + AAC, muxed by ssecast
    GET /api/streams[/NAME] status JSON;  GET /metrics  Prometheus text;  GET /healthz  liveness

Logging goes to stderr; set RUST_LOG=debug for more, RUST_LOG=warn for less.
SIGINT or SIGTERM stops the server cleanly.
";

/// Parses the arguments after the program name.
pub fn parse_args<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut cfg = Config::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('k') | Long("publish-key") => {
                let v = string_value(&mut parser, "--publish-key")?;
                if v.is_empty() || v.len() > 512 || v.bytes().any(|b| b.is_ascii_control()) {
                    return Err("--publish-key: must be 1 to 512 printable characters".into());
                }
                cfg.publish_key = Some(v);
            }
            Long("publish-timeout") => {
                let v = string_value(&mut parser, "--publish-timeout")?;
                cfg.publish_timeout =
                    parse_duration(&v).map_err(|e| format!("--publish-timeout: {e}"))?;
                if cfg.publish_timeout.is_zero() {
                    return Err("--publish-timeout: must be more than 0".into());
                }
            }
            Short('l') | Long("listen") => {
                let v = string_value(&mut parser, "--listen")?;
                cfg.listen = v
                    .parse()
                    .map_err(|_| format!("--listen: '{v}' is not an address like 0.0.0.0:8080"))?;
            }
            Long("rtmp") => {
                let v = string_value(&mut parser, "--rtmp")?;
                cfg.rtmp = if v == "off" {
                    RtmpListen::Off
                } else {
                    RtmpListen::Addr(v.parse().map_err(|_| {
                        format!("--rtmp: '{v}' is not an address like 0.0.0.0:1935, or off")
                    })?)
                };
            }
            Short('q') | Long("client-queue") => {
                let v = string_value(&mut parser, "--client-queue")?;
                cfg.client_queue = parse_size(&v).map_err(|e| format!("--client-queue: {e}"))?;
                if cfg.client_queue < 64 * 1024 {
                    return Err("--client-queue: must be at least 64K".into());
                }
            }
            Short('b') | Long("backlog") => {
                let v = string_value(&mut parser, "--backlog")?;
                cfg.backlog = parse_duration(&v).map_err(|e| format!("--backlog: {e}"))?;
            }
            Short('m') | Long("max-clients") => {
                let v = string_value(&mut parser, "--max-clients")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--max-clients: '{v}' is not a number"))?;
                if !(1..=10_000_000).contains(&n) {
                    return Err("--max-clients: must be from 1 to 10000000".into());
                }
                cfg.max_clients = Some(n);
            }
            Long("head-timeout") => {
                let v = string_value(&mut parser, "--head-timeout")?;
                cfg.head_timeout =
                    parse_duration(&v).map_err(|e| format!("--head-timeout: {e}"))?;
                if cfg.head_timeout.is_zero() {
                    return Err("--head-timeout: must be more than 0".into());
                }
            }
            Long("stall-timeout") => {
                let v = string_value(&mut parser, "--stall-timeout")?;
                cfg.stall_timeout =
                    parse_duration(&v).map_err(|e| format!("--stall-timeout: {e}"))?;
                if cfg.stall_timeout.is_zero() {
                    return Err("--stall-timeout: must be more than 0".into());
                }
            }
            Long("speed") => {
                let v = string_value(&mut parser, "--speed")?;
                cfg.speed = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=1000).contains(&n))
                    .ok_or_else(|| {
                        format!("--speed: '{v}' is not a whole number from 1 to 1000")
                    })?;
            }
            Long("part") => {
                let v = string_value(&mut parser, "--part")?;
                cfg.ingest.part = parse_duration(&v).map_err(|e| format!("--part: {e}"))?;
                if cfg.ingest.part > Duration::from_secs(10) {
                    return Err("--part: at most 10s".into());
                }
            }
            Long("fps") => {
                let v = string_value(&mut parser, "--fps")?;
                cfg.ingest.fps = Some(
                    v.parse()
                        .ok()
                        .filter(|&n| (1..=1000).contains(&n))
                        .ok_or_else(|| {
                            format!("--fps: '{v}' is not a whole number from 1 to 1000")
                        })?,
                );
            }
            Long("keepalive") => {
                let v = string_value(&mut parser, "--keepalive")?;
                cfg.keepalive = parse_duration(&v).map_err(|e| format!("--keepalive: {e}"))?;
                if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&cfg.keepalive) {
                    return Err("--keepalive: from 1s to 1h".into());
                }
            }
            Long("stats-every") => {
                let v = string_value(&mut parser, "--stats-every")?;
                cfg.stats_every = parse_duration(&v).map_err(|e| format!("--stats-every: {e}"))?;
                if cfg.stats_every.is_zero() {
                    return Err("--stats-every: must be more than 0".into());
                }
            }
            Long("compress") => {
                let v = string_value(&mut parser, "--compress")?;
                cfg.compress = match v.as_str() {
                    "auto" => true,
                    "off" => false,
                    _ => return Err(format!("--compress: '{v}' is not auto or off")),
                };
            }
            Value(v) => {
                let arg = v
                    .into_string()
                    .map_err(|v| format!("'{}': not valid UTF-8", v.to_string_lossy()))?;
                let spec = StreamSpec::parse(&arg)?;
                if cfg.streams.iter().any(|s| s.name == spec.name) {
                    return Err(format!(
                        "two streams are named '{}'; name them: NAME=SOURCE",
                        spec.name
                    ));
                }
                if spec.source == Source::Stdin
                    && cfg.streams.iter().any(|s| s.source == Source::Stdin)
                {
                    return Err("standard input ('-') can feed only one stream".into());
                }
                cfg.streams.push(spec);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Command::Run(cfg))
}

fn string_value(parser: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{name}: value is not valid UTF-8"))
}

/// `512K`, `4M`, `1G`, `65536`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size like 512K or 4M"))
}

/// `500ms`, `10s`, `2m`, `10` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not a time like 500ms, 10s or 2m");
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().copied())? {
            Command::Run(c) => Ok(c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn part_and_fps() {
        let c = run(&["--part", "0", "--fps", "25", "cam=-"]).unwrap();
        assert_eq!(c.ingest.part, Duration::ZERO);
        assert_eq!(c.ingest.fps, Some(25));
        let c = run(&["--part", "500ms"]).unwrap();
        assert_eq!(c.ingest.part, Duration::from_millis(500));
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.rtmp, RtmpListen::Default);
    }

    #[test]
    fn keepalive() {
        assert_eq!(
            run(&["--keepalive", "5s"]).unwrap().keepalive,
            Duration::from_secs(5)
        );
        assert!(run(&["--keepalive", "0"])
            .unwrap_err()
            .contains("--keepalive"));
        assert!(run(&["--keepalive", "2h"]).is_err());
    }

    #[test]
    fn rtmp_listener() {
        assert_eq!(run(&["--rtmp", "off"]).unwrap().rtmp, RtmpListen::Off);
        assert_eq!(
            run(&["--rtmp", "127.0.0.1:0"]).unwrap().rtmp,
            RtmpListen::Addr("127.0.0.1:0".parse().unwrap())
        );
        let e = run(&["--rtmp", "1935"]).unwrap_err();
        assert!(e.contains("--rtmp") && e.contains("off"), "{e}");
    }

    #[test]
    fn every_option() {
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "-q",
            "512K",
            "--backlog",
            "30s",
            "--max-clients",
            "100",
            "--head-timeout",
            "500ms",
            "--stall-timeout",
            "2m",
            "--speed",
            "8",
            "--compress",
            "off",
            "movie.mp4",
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        assert_eq!(c.client_queue, 512 * 1024);
        assert_eq!(c.backlog, Duration::from_secs(30));
        assert_eq!(c.max_clients, Some(100));
        assert_eq!(c.head_timeout, Duration::from_millis(500));
        assert_eq!(c.stall_timeout, Duration::from_secs(120));
        assert_eq!(c.speed, 8);
        assert!(!c.compress);
        assert!(run(&["--compress", "auto"]).unwrap().compress);
        assert_eq!(c.ingest, IngestOptions::default());
        assert_eq!(
            c.streams,
            vec![StreamSpec {
                name: StreamName::parse("movie").unwrap(),
                source: Source::File(PathBuf::from("movie.mp4"))
            }]
        );
    }

    #[test]
    fn streams_with_and_without_names() {
        let c = run(&["--publish-key", "s3cret", "a.mp4", "cam=-", "b=dir/x=y.mp4"]).unwrap();
        let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "cam", "b"]);
        assert!(run(&["dir/x=y.mp4"])
            .unwrap_err()
            .contains("NAME=dir/x=y.mp4"));
        assert_eq!(c.streams[1].source, Source::Stdin);
        assert_eq!(
            c.streams[2].source,
            Source::File(PathBuf::from("dir/x=y.mp4"))
        );
        assert_eq!(c.publish_key.as_deref(), Some("s3cret"));
        assert_eq!(run(&["-"]).unwrap().streams[0].name.as_str(), "live");
        let relay = run(&["http://origin:8080/events/cam"]).unwrap();
        assert_eq!(relay.streams[0].name.as_str(), "cam");
        assert_eq!(
            relay.streams[0].source,
            Source::Relay("http://origin:8080/events/cam".into())
        );
        assert!(run(&["http://origin:8080/events"])
            .unwrap_err()
            .contains("NAME="));
        assert!(run(&["tv=https://origin/events/tv"])
            .unwrap_err()
            .contains("http://"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["-V"]), Ok(Command::Version));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(run(&["--listen", "nope"]).unwrap_err().contains("--listen"));
        assert!(run(&["--compress", "gzip"])
            .unwrap_err()
            .contains("not auto or off"));
        assert!(run(&["--client-queue", "12Q"])
            .unwrap_err()
            .contains("--client-queue"));
        assert!(run(&["--client-queue", "1K"])
            .unwrap_err()
            .contains("at least"));
        assert!(run(&["--max-clients", "0"]).is_err());
        assert!(run(&["--max-clients", "18446744073709551615"]).is_err());
        assert!(run(&["--speed", "0"]).is_err());
        assert!(run(&["--part", "11s"]).unwrap_err().contains("--part"));
        assert!(run(&["--fps", "0"]).unwrap_err().contains("--fps"));
        assert!(run(&["--bogus"]).unwrap_err().contains("bogus"));
        assert!(run(&["a.mp4", "x/a.mp4"])
            .unwrap_err()
            .contains("two streams are named 'a'"));
        assert!(run(&["-", "b=-"]).unwrap_err().contains("only one stream"));
        assert!(run(&["my movie.mp4"])
            .unwrap_err()
            .contains("NAME=my movie.mp4"));
        assert!(run(&["events.mp4"]).unwrap_err().contains("reserved"));
        assert!(run(&["cam="]).unwrap_err().contains("no source"));
        assert!(run(&["--publish-key", ""]).is_err());
        assert!(run(&["--publish-timeout", "0"]).is_err());
        assert!(run(&["--listen"]).is_err());
    }

    #[test]
    fn units() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("99999999999999999999G").is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("-1s").is_err());
    }
}
