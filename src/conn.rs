//! One client connection: the state machine from reading the request head, through a fixed
//! response or the live SSE stream, to a lingering close. It reads and writes its own socket and
//! keeps its own poll interest right, but never touches the slab or the timers: every handler
//! returns a [`Next`] and the server acts on it.

use crate::http::{HeadReader, Parsed, Request, Responses, Route, Status};
use crate::playout::Playout;
use crate::queue::{ClientQueue, Drain};
use crate::sse::{Frame, KEEPALIVE};
use mio::net::TcpStream;
use mio::{Interest, Poll, Registry, Token};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Most reads of input the connection should not be sending before it is treated as a flood.
const MAX_DISCARD_READS: usize = 16;
/// Ring slots reserved for a viewer up front, so the steady state never grows the queue.
const VIEWER_QUEUE_SLOTS: usize = 8;

/// What the server should do with a connection after a handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Output remains and the socket may still be writable: call `on_writable` again soon.
    Again,
    Close,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a complete request head (under the head timeout).
    ReadHead,
    /// Sending a fixed response; the connection closes after it.
    Respond,
    /// Streaming SSE to a viewer.
    Stream,
    /// Response sent and our side shut; discarding input until the peer closes (or a timeout), so
    /// the response is not destroyed by a reset.
    Linger,
}

/// What a handler may use besides the connection itself.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub scratch: &'a mut [u8],
    pub now: Instant,
    pub playout: &'a Playout,
    pub responses: &'a Responses,
    pub stall_timeout: Duration,
}

/// What every handler needs besides the connection's own state, owned by whoever drives the
/// connections (the server, or the bench harness).
pub struct Shared {
    pub poll: Poll,
    pub playout: Playout,
    pub responses: Responses,
    /// One read buffer for every connection.
    pub scratch: Box<[u8]>,
    pub stall_timeout: Duration,
}

impl Shared {
    pub fn ctx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            registry: self.poll.registry(),
            scratch: &mut self.scratch,
            now,
            playout: &self.playout,
            responses: &self.responses,
            stall_timeout: self.stall_timeout,
        }
    }
}

pub struct Connection {
    /// Unique for the server's life, so timers for a reused slab key are told apart.
    pub id: u64,
    token: Token,
    socket: TcpStream,
    phase: Phase,
    queue: ClientQueue,
    /// A request head that arrived in pieces; empty (and unallocated) otherwise.
    head: HeadReader,
    writable_interest: bool,
    /// Accepted over the connection limit: whatever it asks, it gets 503.
    reject: bool,
    peer_closed: bool,
    /// Last time output moved (or there was none to move).
    last_progress: Instant,
}

impl Connection {
    pub fn new(
        id: u64,
        token: Token,
        socket: TcpStream,
        client_queue: usize,
        reject: bool,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            token,
            socket,
            phase: Phase::ReadHead,
            queue: ClientQueue::new(client_queue),
            head: HeadReader::default(),
            writable_interest: false,
            reject,
            peer_closed: false,
            last_progress: now,
        }
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes waiting to be written to this client.
    pub fn pending(&self) -> usize {
        self.queue.pending()
    }

    /// Fragments this viewer skipped because it was too slow.
    pub fn total_skipped(&self) -> u64 {
        self.queue.total_skipped
    }

    pub fn on_readable(&mut self, ctx: &mut Ctx<'_>) -> Next {
        match self.phase {
            Phase::ReadHead => self.read_head(ctx),
            Phase::Respond | Phase::Stream | Phase::Linger => self.discard_input(ctx),
        }
    }

    pub fn on_writable(&mut self, ctx: &mut Ctx<'_>) -> Next {
        match self.phase {
            Phase::Respond | Phase::Stream => self.flush(ctx),
            Phase::ReadHead | Phase::Linger => Next::Continue,
        }
    }

    /// Offers a new live fragment to a viewer.
    pub fn deliver(&mut self, frame: &Rc<Frame>, ctx: &mut Ctx<'_>) -> Next {
        if self.phase != Phase::Stream {
            return Next::Continue;
        }
        let idle = self.queue.is_empty();
        if !idle && ctx.now.saturating_duration_since(self.last_progress) > ctx.stall_timeout {
            log::info!(
                "disconnecting a viewer stuck for {}s with {} bytes unsent",
                ctx.stall_timeout.as_secs(),
                self.queue.pending()
            );
            return Next::Close;
        }
        self.queue.offer(frame);
        // A viewer with output already waiting has WRITABLE interest and drains on that event;
        // writing to it now would only return WouldBlock.
        if idle {
            self.flush(ctx)
        } else {
            Next::Continue
        }
    }

    /// Sends a keepalive comment to a viewer with nothing else waiting.
    pub fn keepalive(&mut self, frame: &Rc<Frame>, ctx: &mut Ctx<'_>) -> Next {
        if self.phase != Phase::Stream || !self.queue.is_empty() {
            return Next::Continue;
        }
        debug_assert_eq!(&*frame.bytes, KEEPALIVE, "keepalive frame expected");
        self.queue.push_control(Rc::clone(frame));
        self.flush(ctx)
    }

    /// The head timeout expired: a best-effort 408, then the server closes the connection.
    pub fn head_timed_out(&mut self, responses: &Responses) {
        let _ = self
            .socket
            .write(&responses.error(Status::RequestTimeout, false).bytes);
    }

    fn read_head(&mut self, ctx: &mut Ctx<'_>) -> Next {
        loop {
            let n = match self.socket.read(ctx.scratch) {
                Ok(0) => return Next::Close,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return close_on(&e),
            };
            // The loop ends: the head reader answers Done once it holds more than MAX_HEAD.
            if let Parsed::Done(result) = self.head.feed(&ctx.scratch[..n]) {
                let next = self.start_response(result, ctx);
                if next == Next::Close {
                    return next;
                }
                // Edge-triggered: what came right behind the head (a FIN, pipelined bytes)
                // brings no new event, so it is handled now, exactly as if it came later.
                return match self.discard_input(ctx) {
                    Next::Continue => next,
                    other => other,
                };
            }
        }
    }

    fn start_response(&mut self, result: Result<Request, Status>, ctx: &mut Ctx<'_>) -> Next {
        let r = ctx.responses;
        let response = match result {
            Err(status) => {
                log::debug!("request refused with {}", status.code());
                r.error(status, false)
            }
            Ok(Request { head_only, .. }) if self.reject => r.error(Status::Unavailable, head_only),
            Ok(Request {
                route: Route::Refused(status),
                head_only,
            }) => {
                log::debug!("request refused with {}", status.code());
                r.error(status, head_only)
            }
            Ok(Request {
                route: Route::Asset(i),
                head_only,
            }) => match r.asset(i, head_only) {
                Some(f) => f,
                None => r.error(Status::NotFound, head_only),
            },
            Ok(Request {
                route: Route::NoContent,
                ..
            }) => r.no_content(),
            Ok(Request {
                route: Route::Events { .. },
                head_only: true,
            }) => &r.stream_head,
            Ok(Request {
                route: Route::Events { last_event_id },
                head_only: false,
            }) => {
                self.queue.reserve(VIEWER_QUEUE_SLOTS);
                self.queue.push_control(Rc::clone(&r.stream_head));
                self.queue.push_control(Rc::clone(ctx.playout.init_frame()));
                let (resumed, frames) = ctx.playout.start_frames(last_event_id);
                let mut started = false;
                for f in frames {
                    self.queue.offer(f);
                    started = true;
                }
                if !started && !resumed {
                    self.queue.wait_for_keyframe();
                }
                if last_event_id.is_some() {
                    log::debug!(
                        "viewer reconnected: {}",
                        if resumed {
                            "resumed"
                        } else {
                            "too old, starts live"
                        }
                    );
                }
                self.phase = Phase::Stream;
                self.last_progress = ctx.now;
                return self.flush(ctx);
            }
        };
        self.queue.push_control(Rc::clone(response));
        self.phase = Phase::Respond;
        self.flush(ctx)
    }

    fn discard_input(&mut self, ctx: &mut Ctx<'_>) -> Next {
        if self.peer_closed {
            return Next::Continue;
        }
        for _ in 0..MAX_DISCARD_READS {
            match self.socket.read(ctx.scratch) {
                Ok(0) => {
                    self.peer_closed = true;
                    // A client may half-close after its request and still read a fixed
                    // response; a viewer that shuts down its side is gone (nginx and Node
                    // treat it so too), whether the FIN came with the request or later.
                    return if self.phase == Phase::Respond {
                        Next::Continue
                    } else {
                        Next::Close
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return close_on(&e),
            }
        }
        log::debug!("closing a connection that keeps sending after its request");
        Next::Close
    }

    fn flush(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let before = self.queue.pending();
        let drained = self.queue.drain(&mut self.socket);
        if self.queue.pending() < before || self.queue.is_empty() {
            self.last_progress = ctx.now;
        }
        match drained {
            Ok(Drain::Empty) => {
                if self.phase == Phase::Respond {
                    if self.peer_closed {
                        return Next::Close;
                    }
                    let _ = self.socket.shutdown(Shutdown::Write);
                    self.phase = Phase::Linger;
                }
                self.set_write_interest(false, ctx.registry)
            }
            Ok(Drain::Blocked) => self.set_write_interest(true, ctx.registry),
            Ok(Drain::Yielded) => match self.set_write_interest(true, ctx.registry) {
                Next::Close => Next::Close,
                _ => Next::Again,
            },
            Err(e) => close_on(&e),
        }
    }

    fn set_write_interest(&mut self, want: bool, registry: &Registry) -> Next {
        if want == self.writable_interest {
            return Next::Continue;
        }
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match registry.reregister(&mut self.socket, self.token, interest) {
            Ok(()) => {
                self.writable_interest = want;
                Next::Continue
            }
            Err(e) => close_on(&e),
        }
    }
}

/// The one place socket errors are judged: a peer that went away is normal, anything else is
/// worth a log line. Either way the connection closes.
pub fn close_on(e: &io::Error) -> Next {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::WriteZero
        | io::ErrorKind::NotConnected => log::debug!("peer went away: {e}"),
        _ => log::info!("closing a connection after a socket error: {e}"),
    }
    Next::Close
}
