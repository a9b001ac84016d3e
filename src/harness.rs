//! A fan-out harness: N real loopback viewers driven through the real `Connection` code (request
//! parsing, `deliver`, queue, `writev`) without the event loop, so the per-viewer cost of a
//! fragment can be benchmarked (benches/core.rs) and checked for allocations (tests/alloc.rs).
//! Not used by the server itself.

use crate::conn::{Connection, Next, Phase, Shared};
use crate::http::Responses;
use crate::mp4::Movie;
use crate::source::file::SAMPLE;
use crate::source::playout::Playout;
use crate::sse::Frame;
use crate::stream::{Registry, SourceKind, StreamName};
use mio::{Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub struct FanoutHarness {
    shared: Shared,
    playout: Playout,
    stream: usize,
    conns: Vec<Connection>,
    readers: Vec<TcpStream>,
    now: Instant,
}

impl FanoutHarness {
    /// Connects `n` viewers over loopback, each with a `client_queue`-byte queue, and takes
    /// every one through its `GET /events` into the streaming phase.
    pub fn new(n: usize, client_queue: usize) -> io::Result<FanoutHarness> {
        FanoutHarness::with_viewers(n, 0, client_queue)
    }

    /// Like [`FanoutHarness::new`] with `plain` viewers and then `compressed` ones, which ask
    /// for gzip.
    pub fn with_viewers(
        plain: usize,
        compressed: usize,
        client_queue: usize,
    ) -> io::Result<FanoutHarness> {
        let n = plain + compressed;
        let now = Instant::now();
        let movie = Movie::parse(SAMPLE).map_err(io::Error::other)?;
        let init = movie.init.clone();
        let playout = Playout::new(movie, now, 1);
        let mut streams = Registry::new(Duration::from_secs(10));
        let name = StreamName::parse("sample").map_err(|e| io::Error::other(e.to_string()))?;
        let stream = streams
            .add_configured(name, SourceKind::File, false, now)
            .ok_or_else(|| io::Error::other("no stream"))?;
        if let Some(s) = streams.get_mut(stream) {
            s.start_session(playout.info().clone(), &init, playout.timescales(), now);
        }
        let mut h = FanoutHarness {
            shared: Shared {
                poll: Poll::new()?,
                streams,
                responses: Responses::new(true),
                scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
                stall_timeout: Duration::from_secs(3600),
                publish_key: None,
                media: Vec::new(),
                metrics: crate::metrics::Metrics::new(now),
                ingest: crate::source::live::IngestOptions::default(),
            },
            playout,
            stream,
            conns: Vec::with_capacity(n),
            readers: Vec::with_capacity(n),
            now,
        };
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        for i in 0..n {
            let mut reader = TcpStream::connect(addr)?;
            let (server_side, _) = listener.accept()?;
            server_side.set_nonblocking(true)?;
            let mut socket = mio::net::TcpStream::from_std(server_side);
            let token = Token(i);
            h.shared
                .poll
                .registry()
                .register(&mut socket, token, Interest::READABLE)?;
            let request: &[u8] = if i < plain {
                b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n"
            } else {
                b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip\r\n\r\n"
            };
            reader.write_all(request)?;
            reader.set_nonblocking(true)?;
            let peer = std::net::Ipv4Addr::LOCALHOST.into();
            let mut conn = Connection::new(i as u64, token, socket, peer, client_queue, false, now);
            let mut ctx = h.shared.ctx(now);
            // The request is already in the socket's receive queue on loopback, but give it a
            // few tries rather than assume.
            for _ in 0..1000 {
                if conn.on_readable(&mut ctx) == Next::Close {
                    return Err(io::Error::other("viewer closed during setup"));
                }
                if conn.phase() == Phase::Stream {
                    break;
                }
                std::thread::yield_now();
            }
            if conn.phase() != Phase::Stream {
                return Err(io::Error::other("viewer never reached the stream"));
            }
            h.conns.push(conn);
            h.readers.push(reader);
        }
        h.drain_readers()?;
        Ok(h)
    }

    /// The next live fragment of the sample, encoded as the server would.
    pub fn next_fragment(&mut self) -> Rc<Frame> {
        loop {
            let due = self.playout.next_due();
            self.now = self.now.max(due);
            let Some(stream) = self.shared.streams.get_mut(self.stream) else {
                continue;
            };
            if let Some((bytes, keyframe)) =
                self.playout.poll(self.now, stream.sequence() + 1, SAMPLE)
            {
                return stream.go_live(bytes, keyframe, self.now, 0);
            }
        }
    }

    /// Offers `frame` to every viewer exactly as the server's fan-out does. Returns how many
    /// viewers would have been closed.
    pub fn deliver(&mut self, frame: &Rc<Frame>) -> usize {
        self.deliver_batch(std::slice::from_ref(frame))
    }

    /// Offers fragments that went live in the same loop turn to every viewer, as the server's
    /// fan-out does (each viewer then writes them with one `writev`). Returns how many viewers
    /// would have been closed.
    pub fn deliver_batch(&mut self, frames: &[Rc<Frame>]) -> usize {
        let mut ctx = self.shared.ctx(self.now);
        let mut closed = 0;
        for c in &mut self.conns {
            if c.deliver(frames, &mut ctx) == Next::Close {
                closed += 1;
            }
        }
        closed
    }

    /// Lets the viewers' write queues move on (as WRITABLE events would) and reads everything
    /// the viewers were sent. Returns the bytes read.
    pub fn drain_readers(&mut self) -> io::Result<usize> {
        let mut total = 0;
        let mut buf = vec![0u8; 256 * 1024];
        for _round in 0..10_000 {
            let mut progress = false;
            for r in &mut self.readers {
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => {
                            total += n;
                            progress = true;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            let mut ctx = self.shared.ctx(self.now);
            let mut pending = 0;
            for c in &mut self.conns {
                if c.pending() > 0 {
                    c.on_writable(&mut ctx);
                    pending += c.pending();
                }
            }
            if pending == 0 && !progress {
                return Ok(total);
            }
        }
        Ok(total)
    }

    /// Bytes still queued across all viewers.
    pub fn pending(&self) -> usize {
        self.conns.iter().map(Connection::pending).sum()
    }

    /// Fragments skipped across all viewers.
    pub fn skipped(&self) -> u64 {
        self.conns.iter().map(Connection::total_skipped).sum()
    }
}
