//! Soak: hundreds of viewers join and leave at random while the stream loops fast — some read
//! normally, some slowly, some never, some reset mid-frame, some reconnect with Last-Event-ID.
//! Afterwards the server must hold no leftover connections, descriptors or queued bytes, its
//! memory must be back near where it started, and it must still serve a new viewer.
//!
//! Bounded: about 45 s by default; set SSECAST_SOAK_SECS for a longer run.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use util::{SseReader, TestServer};

/// A small deterministic PRNG (xorshift64*), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Slow,
    Silent,
    Resetter,
}

struct Client {
    stream: TcpStream,
    kind: Kind,
    leave_at: Instant,
    read: usize,
}

fn open(addr: SocketAddr, rng: &mut Rng, now: Instant) -> Option<Client> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let resume = rng.below(4) == 0;
    let req = if resume {
        // Sometimes a plausible id, sometimes a stale one.
        format!(
            "GET /events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {}.0\r\n\r\n",
            rng.below(200)
        )
    } else {
        "GET /events HTTP/1.1\r\nHost: t\r\n\r\n".to_string()
    };
    stream.write_all(req.as_bytes()).ok()?;
    stream.set_nonblocking(true).ok()?;
    let kind = match rng.below(10) {
        0..=4 => Kind::Normal,
        5..=6 => Kind::Slow,
        7 => Kind::Silent,
        _ => Kind::Resetter,
    };
    let leave_at = now + Duration::from_millis(200 + rng.below(5000));
    Some(Client {
        stream,
        kind,
        leave_at,
        read: 0,
    })
}

fn worker(addr: SocketAddr, seed: u64, until: Instant, per_thread: usize) -> (u64, u64) {
    let mut rng = Rng(seed | 1);
    let mut clients: Vec<Client> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut opened, mut bytes) = (0u64, 0u64);
    while Instant::now() < until {
        let now = Instant::now();
        while clients.len() < per_thread {
            match open(addr, &mut rng, now) {
                Some(c) => {
                    clients.push(c);
                    opened += 1;
                }
                None => break,
            }
        }
        let mut i = 0;
        while i < clients.len() {
            let c = &mut clients[i];
            let budget = match c.kind {
                Kind::Normal => usize::MAX,
                Kind::Slow => 2048,
                Kind::Silent => 0,
                Kind::Resetter => 1 + (rng.below(50_000) as usize),
            };
            let mut gone = false;
            let mut took = 0;
            while took < budget {
                let want = buf.len().min(budget - took);
                match c.stream.read(&mut buf[..want]) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => took += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            c.read += took;
            bytes += took as u64;
            let leave = now >= c.leave_at || (c.kind == Kind::Resetter && c.read > 0);
            if gone || leave {
                let c = clients.swap_remove(i);
                if c.kind == Kind::Resetter || rng.below(3) == 0 {
                    let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                }
                drop(c);
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (opened, bytes)
}

#[test]
fn viewers_come_and_go_and_nothing_leaks() {
    let secs: u64 = std::env::var("SSECAST_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(45);
    let server = TestServer::start(&[
        "--speed",
        "10",
        "--client-queue",
        "256K",
        "--stall-timeout",
        "2s",
        "--stats-every",
        "1s",
    ]);
    // Warm up: one viewer through a full loop, so the backlog and allocator are at steady state.
    {
        let mut r = SseReader::open(server.addr, "/events", "");
        for _ in 0..12 {
            r.next_event().expect("warm-up events");
        }
    }
    assert!(server
        .wait_log(
            "stats: 0 viewers, 0 connections, 0 KiB queued",
            Duration::from_secs(10)
        )
        .is_some());
    let fds_before = server.open_fds();
    let rss_before = server.rss_kib();

    let until = Instant::now() + Duration::from_secs(secs);
    let addr = server.addr;
    let threads: Vec<_> = (0..6u64)
        .map(|t| std::thread::spawn(move || worker(addr, 0x9e37_79b9 * (t + 1), until, 50)))
        .collect();
    let mut peak_rss = 0;
    while Instant::now() < until {
        peak_rss = peak_rss.max(server.rss_kib());
        std::thread::sleep(Duration::from_millis(250));
    }
    let (mut opened, mut bytes) = (0, 0);
    for t in threads {
        let (o, b) = t.join().unwrap();
        opened += o;
        bytes += b;
    }
    eprintln!(
        "soak: {opened} connections over {secs}s, {} MB read, RSS {rss_before} KiB -> peak {peak_rss} KiB",
        bytes / 1_000_000
    );
    assert!(opened > 300, "only {opened} connections were made");

    // Everything is gone from the server's side.
    let settled = server.wait_log(
        "stats: 0 viewers, 0 connections, 0 KiB queued",
        Duration::from_secs(15),
    );
    assert!(
        settled.is_some(),
        "connections or queued bytes were left behind"
    );
    assert!(
        util::wait_until(Duration::from_secs(5), || server.open_fds() <= fds_before),
        "descriptors leaked: {} open, {fds_before} before",
        server.open_fds()
    );
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS did not come back: {rss_before} KiB before, {rss_after} KiB after"
    );

    // And it still serves.
    let mut r = SseReader::open(server.addr, "/events", "");
    assert_eq!(r.next_event().unwrap().event, "init");
    assert_eq!(r.next_event().unwrap().event, "data");
}
