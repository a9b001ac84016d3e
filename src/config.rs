//! Command-line options: parses `ssecast [OPTIONS] [VIDEO]` into a [`Config`], with the help text
//! and the units (sizes like `4M`, durations like `10s`). Pure: no I/O, so it is unit-tested.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// The fragmented MP4 to play; `None` plays the embedded sample.
    pub video: Option<PathBuf>,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            video: None,
            client_queue: 4 << 20,
            backlog: Duration::from_secs(10),
            max_clients: None,
            head_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            speed: 1,
            stats_every: Duration::from_secs(60),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

pub const HELP: &str = "\
ssecast: a small, fast live video server over Server-Sent Events.

Plays a fragmented MP4 in real time as a looping live channel and pushes it to every
connected browser. Open the printed URL in a browser to watch.

USAGE:
    ssecast [OPTIONS] [VIDEO]

ARGS:
    [VIDEO]    A fragmented MP4 file (moof+mdat fragments, each starting with a keyframe).
               Without it, ssecast plays its embedded 6 s test pattern. Convert any MP4 with:
               ffmpeg -i in.mp4 -c copy -movflags frag_keyframe+empty_moov+default_base_moof out.mp4

OPTIONS:
    -l, --listen ADDR        Address and port to listen on [default: 0.0.0.0:8080]
                             (use [::]:8080 for IPv6, 127.0.0.1:0 for any free loopback port)
    -q, --client-queue SIZE  Bytes one viewer may have waiting to be sent; a viewer that falls
                             further behind skips ahead to the next keyframe [default: 4M]
    -b, --backlog TIME       Recent video kept for new and reconnecting viewers; a viewer that
                             reconnects within it resumes with no gap [default: 10s]
    -m, --max-clients N      Most simultaneous viewers; more get 503 [default: about 16/17 of
                             the open-file limit, so connections never run into it]
        --head-timeout TIME  Time a client has to send its request [default: 10s]
        --stall-timeout TIME Time a viewer may stay stuck behind before it is disconnected
                             [default: 30s]
        --speed N            Play N times faster than real time, for benchmarks [default: 1]
        --stats-every TIME   How often to log a summary line (viewers, connections, queued
                             bytes, skipped fragments) [default: 60s]
    -h, --help               Print this help
    -V, --version            Print the version

SIZE is bytes with an optional K, M or G suffix (powers of 1024): 512K, 4M.
TIME is a number with ms, s or m: 500ms, 10s, 2m (a bare number is seconds).

ENDPOINTS:
    GET /          the viewer page
    GET /events    the live stream (text/event-stream)

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
            Short('l') | Long("listen") => {
                let v = string_value(&mut parser, "--listen")?;
                cfg.listen = v
                    .parse()
                    .map_err(|_| format!("--listen: '{v}' is not an address like 0.0.0.0:8080"))?;
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
            Long("stats-every") => {
                let v = string_value(&mut parser, "--stats-every")?;
                cfg.stats_every = parse_duration(&v).map_err(|e| format!("--stats-every: {e}"))?;
                if cfg.stats_every.is_zero() {
                    return Err("--stats-every: must be more than 0".into());
                }
            }
            Value(v) if cfg.video.is_none() => cfg.video = Some(PathBuf::from(v)),
            Value(v) => {
                return Err(format!(
                    "unexpected argument '{}': only one VIDEO can be given",
                    v.to_string_lossy()
                ))
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
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
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
        assert_eq!(c.video, Some(PathBuf::from("movie.mp4")));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["-V"]), Ok(Command::Version));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(run(&["--listen", "nope"]).unwrap_err().contains("--listen"));
        assert!(run(&["--client-queue", "12Q"])
            .unwrap_err()
            .contains("--client-queue"));
        assert!(run(&["--client-queue", "1K"])
            .unwrap_err()
            .contains("at least"));
        assert!(run(&["--max-clients", "0"]).is_err());
        assert!(run(&["--max-clients", "18446744073709551615"]).is_err());
        assert!(run(&["--speed", "0"]).is_err());
        assert!(run(&["--bogus"]).unwrap_err().contains("bogus"));
        assert!(run(&["a.mp4", "b.mp4"])
            .unwrap_err()
            .contains("only one VIDEO"));
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
