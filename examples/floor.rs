//! The floor: the least work any server can do to push ssecast's stream to N loopback viewers,
//! used by `benches/compare.sh` to show how much of ssecast's cost is its own and how much is the
//! kernel's. It is not a server anyone should run: it never reads the request, answers every
//! connection with the same head, and at each fragment does one plain `write` of the same
//! pre-encoded event (the very bytes ssecast sends: same playout, same framing) to every socket,
//! with no event loop, no queue and no timers. A viewer whose write does not complete is dropped
//! and counted. The only wait is `poll(2)` on the listener until the next fragment is due.
//!
//! ```sh
//! cargo run --release --example floor -- --port 8081 [--speed N] [VIDEO]
//! ```

use ssecast::mp4::Movie;
use ssecast::source::playout::Playout;
use ssecast::stream::{Stream, StreamName, Welcome};
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n\
    retry: 2000\n\n";

fn main() {
    if let Err(e) = run() {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let (mut port, mut speed, mut video) = (8081u16, 1u32, None::<String>);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| io::Error::other(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--port" => port = value("--port")?.parse().map_err(io::Error::other)?,
            "--speed" => speed = value("--speed")?.parse().map_err(io::Error::other)?,
            "-h" | "--help" => {
                println!("usage: floor [--port P] [--speed N] [VIDEO]");
                return Ok(());
            }
            _ if !a.starts_with('-') => video = Some(a),
            _ => return Err(io::Error::other(format!("unknown option {a}"))),
        }
    }
    let data: Vec<u8> = match &video {
        Some(path) => std::fs::read(path)?,
        None => ssecast::source::file::SAMPLE.to_vec(),
    };
    let movie = Movie::parse(&data).map_err(io::Error::other)?;
    let init = movie.init.clone();
    let now = Instant::now();
    let mut playout = Playout::new(movie, now, speed.max(1));
    let name = StreamName::parse("floor").map_err(|e| io::Error::other(e.to_string()))?;
    let mut stream = Stream::new(name, Duration::from_secs(10) / speed.max(1), now);
    stream.start_session(playout.info().clone(), &init, playout.timescales(), now);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    eprintln!("floor: listening on http://127.0.0.1:{port}/events");

    let mut viewers: Vec<TcpStream> = Vec::new();
    let mut dropped = 0u64;
    loop {
        // Accept everything pending; each newcomer gets the head, init and the newest keyframe
        // fragment in one go, as in ssecast.
        loop {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nodelay(true);
                    let mut start = Vec::from(HEAD);
                    if let Welcome::Live { init, frames, .. } = stream.welcome(None) {
                        start.extend_from_slice(&init.bytes);
                        for f in frames {
                            start.extend_from_slice(&f.bytes);
                        }
                    }
                    if s.write_all(&start).is_ok() && s.set_nonblocking(true).is_ok() {
                        viewers.push(s);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("floor: accept: {e}");
                    break;
                }
            }
        }
        let now = Instant::now();
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        while let Some((bytes, keyframe)) = playout.poll(now, stream.sequence() + 1, &data) {
            let frame = stream.go_live(bytes, keyframe, now, wall_ms);
            let before = viewers.len();
            viewers.retain_mut(|s| matches!(s.write(&frame.bytes), Ok(n) if n == frame.len()));
            dropped += (before - viewers.len()) as u64;
            if before != viewers.len() {
                eprintln!("floor: {dropped} viewers dropped so far (short write or closed)");
            }
        }
        let wait = playout.next_due().saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}
