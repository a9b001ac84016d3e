//! Shared helpers for the integration tests: start the real `ssecast` binary on an ephemeral
//! loopback port, talk raw HTTP to it, read its SSE stream, and wait for conditions with bounded
//! timeouts (never sleep-and-hope). Also included by the load generator's test
//! (`benches/loadgen/tests/load.rs`), which is in another package and so finds the binary with
//! [`server_bin`].
#![allow(dead_code)]

pub mod live;
pub mod media;
pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Makes `cmd`'s process start with at most `n` open files (soft and hard limit).
pub fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running server process, killed on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub child: Child,
    /// Lines the server logged after it started listening.
    pub log: mpsc::Receiver<String>,
    /// Where it takes RTMP publishers (the helper passes `--rtmp off` unless ARGS ask for it).
    pub rtmp: Option<SocketAddr>,
}

impl TestServer {
    /// Starts `ssecast --listen 127.0.0.1:0 --rtmp off ARGS...` and waits (at most 20 s) for its
    /// "listening on" log line.
    pub fn start(args: &[&str]) -> TestServer {
        Self::start_with(args, |_| {})
    }

    /// Like [`start`](Self::start), letting the caller adjust the command (environment, limits).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> TestServer {
        let mut cmd = Command::new(server_bin());
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .args(["--rtmp", "off"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ssecast");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut rtmp = None;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                break None;
            };
            if let Some(rest) = line.split("RTMP publishing on rtmp://").nth(1) {
                rtmp = rest.split('/').next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or("");
                break addr.parse().ok();
            }
        };
        let mut server = TestServer {
            addr: "0.0.0.0:0".parse().unwrap(),
            child,
            log: rx,
            rtmp,
        };
        match addr {
            Some(addr) => server.addr = addr,
            None => {
                let status = server.child.try_wait();
                panic!("server did not log 'listening on' within 20 s (exit: {status:?})");
            }
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends raw bytes and returns everything the server sent back until it closed (bounded by a
    /// 10 s read timeout).
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).expect("send request");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// Resident set size of the server process in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Number of open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits (bounded) for a log line containing `needle` and returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ssecast` binary: the one cargo built for this test when the test belongs to the `ssecast`
/// package; from another workspace member, `$SSECAST_BIN` or the server next to this test's
/// `target/<profile>/deps/` directory, which a `cargo build` or `cargo test` at the workspace root
/// builds.
pub fn server_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_ssecast") {
        return bin.into();
    }
    let bin = match std::env::var_os("SSECAST_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => std::env::current_exe()
            .expect("path of the test binary")
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary is in target/<profile>/deps/")
            .join(format!("ssecast{}", std::env::consts::EXE_SUFFIX)),
    };
    assert!(
        bin.is_file(),
        "no server binary at {}: cargo builds it only when the run includes the ssecast package \
         (a plain `cargo test` or `cargo build` at the workspace root does); build it with \
         `cargo build -p ssecast` (same profile as this test) or set SSECAST_BIN to one",
        bin.display()
    );
    bin
}

/// Waits until `cond` is true, polling every 10 ms, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// One server-sent event as the browser would see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Reads an SSE response: the HTTP head, then events, from a blocking socket.
pub struct SseReader {
    reader: BufReader<TcpStream>,
    pub head: String,
    pub retry: Option<u64>,
}

impl SseReader {
    /// Sends `GET path` (with any extra header lines) and reads the response head.
    pub fn open(addr: SocketAddr, path: &str, extra_headers: &str) -> SseReader {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n"
        )
        .expect("send");
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read head");
            assert!(n > 0, "server closed before the end of the head: {head:?}");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
            assert!(
                head.len() < 8192 && head.starts_with("HTTP/1."),
                "no HTTP response head: {:?}",
                &head[..head.len().min(200)]
            );
        }
        SseReader {
            reader,
            head,
            retry: None,
        }
    }

    /// The next event (comments are skipped; `retry` is remembered). `None` when the stream ends.
    /// Panics if no event completes within 30 s or an event grows past 16 MiB.
    pub fn next_event(&mut self) -> Option<Event> {
        read_event(&mut self.reader, &mut self.retry)
    }

    /// The underlying socket (to stop reading, shut down, etc.).
    pub fn socket(&self) -> &TcpStream {
        self.reader.get_ref()
    }
}

/// Reads the next event of an SSE body from `reader` (any client: a socket, curl's output);
/// comments are skipped and a `retry` field is stored in `retry`. `None` when the body ends.
/// Panics if no event completes within 30 s or an event grows past 16 MiB.
pub fn read_event(reader: &mut impl BufRead, retry: &mut Option<u64>) -> Option<Event> {
    let mut ev = Event::default();
    let mut any = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline && ev.data.len() < 16 << 20,
            "no complete event within 30 s"
        );
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = line.trim_end_matches('\n');
        if line.is_empty() {
            if any {
                if ev.event.is_empty() {
                    ev.event = "message".into();
                }
                return Some(ev);
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => {
                ev.id = Some(value.to_string());
                any = true;
            }
            "event" => {
                ev.event = value.to_string();
                any = true;
            }
            "data" => {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                any = true;
            }
            "retry" => *retry = value.parse().ok(),
            _ => {}
        }
    }
}
