//! Helpers for the live-stream tests: real ffmpeg as a publisher (killed on drop), a Rust
//! publisher that pushes bytes in chosen splits (chunked or with a Content-Length), decoding
//! events back to MP4 bytes, and ffmpeg as the judge of whether a stream decodes.
#![allow(dead_code)]

use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Event, SseReader};

/// True when Debian's ffmpeg is on the PATH; tests that need it say `skipped` otherwise.
pub fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: ffmpeg not found (apt-get install ffmpeg)");
    }
    ok
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ffmpeg arguments for a live test source of `size` (`640x360`) at 30 fps with a 440 Hz
/// tone, H.264 + AAC, 1 s GOPs, as fragmented MP4.
pub fn lavfi_args(size: &str, secs: Option<f64>) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("testsrc2=size={size}:rate=30"));
    a.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    if let Some(t) = secs {
        a.push("-t".into());
        a.push(format!("{t}"));
    }
    a.extend(
        [
            "-f",
            "mp4",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    a
}

/// ffmpeg publishing a live test source to `url` (extra arguments go before the URL).
pub fn ffmpeg_publish(url: &str, size: &str, secs: Option<f64>, extra: &[&str]) -> Killed {
    let child = Command::new("ffmpeg")
        .args(lavfi_args(size, secs))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn ffmpeg");
    Killed(child)
}

pub fn b64(data: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .expect("base64")
}

/// The init segment of an `init` event.
pub fn init_segment(ev: &Event) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(&ev.data).expect("init JSON");
    b64(v["init"].as_str().expect("init field"))
}

/// (width, height) of an `init` event.
pub fn init_size(ev: &Event) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(&ev.data).expect("init JSON");
    (
        v["width"].as_u64().unwrap_or(0),
        v["height"].as_u64().unwrap_or(0),
    )
}

/// The sequence number in an event id.
pub fn seq(ev: &Event) -> u64 {
    ev.id
        .as_deref()
        .and_then(|id| id.split('.').next())
        .and_then(|s| s.parse().ok())
        .expect("event id")
}

/// Reads events until `stop` says so (the event that made it stop is included).
pub fn read_until(r: &mut SseReader, mut stop: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    while !stop(&events) {
        match r.next_event() {
            Some(e) => events.push(e),
            None => break,
        }
    }
    events
}

/// Whether ffmpeg decodes `mp4` (an init segment and fragments) with no error; the frame count
/// of its video on success.
pub fn ffmpeg_decode(mp4: &[u8], name: &str) -> Result<u64, String> {
    let path = std::env::temp_dir().join(format!("ssecast-{}-{name}.mp4", std::process::id()));
    std::fs::write(&path, mp4).map_err(|e| e.to_string())?;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&path)
        // Timestamps pass through as they are: a feed timed by its arrival is rightly of a
        // variable frame rate, which ffmpeg's constant-rate default would misjudge.
        .args([
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
        ])
        .args(["-f", "null", "-progress", "pipe:1", "-"])
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        return Err(format!("ffmpeg: {}: {stderr}", out.status));
    }
    let progress = String::from_utf8_lossy(&out.stdout);
    Ok(progress
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0))
}

/// How a Rust publisher delimits its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length,
    UntilClose,
}

/// A tiny deterministic random number generator (xorshift), so splits can be replayed by seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Opens a publish request for `path` with `framing` and extra header lines; returns the socket
/// for the body.
pub fn start_publish(
    addr: SocketAddr,
    path: &str,
    framing: Framing,
    len: usize,
    headers: &str,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body_header = match framing {
        Framing::Chunked => "Transfer-Encoding: chunked\r\n".to_string(),
        Framing::Length => format!("Content-Length: {len}\r\n"),
        Framing::UntilClose => String::new(),
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: test\r\n{body_header}{headers}\r\n"
    )
    .expect("send head");
    s
}

/// Writes `body` in pieces of random sizes from 1 byte to `max` (framed as `framing` says), then
/// ends the body.
pub fn send_body(s: &mut TcpStream, body: &[u8], framing: Framing, rng: &mut Rng, max: usize) {
    let mut at = 0;
    while at < body.len() {
        let n = (1 + rng.below(max)).min(body.len() - at);
        let piece = &body[at..at + n];
        at += n;
        let r = if framing == Framing::Chunked {
            let mut c = format!("{n:x}\r\n").into_bytes();
            c.extend_from_slice(piece);
            c.extend_from_slice(b"\r\n");
            s.write_all(&c)
        } else {
            s.write_all(piece)
        };
        if r.is_err() {
            return;
        }
    }
    match framing {
        Framing::Chunked => {
            let _ = s.write_all(b"0\r\n\r\n");
        }
        Framing::UntilClose => {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        Framing::Length => {}
    }
}

/// Pushes a whole body and returns the server's response.
pub fn push(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    framing: Framing,
    seed: u64,
    max: usize,
) -> String {
    let mut s = start_publish(addr, path, framing, body.len(), "");
    send_body(&mut s, body, framing, &mut Rng(seed), max);
    response(&mut s)
}

/// Everything the server answers until it closes (bounded by the read timeout).
pub fn response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}
