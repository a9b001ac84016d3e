//! One client connection: the state machine from reading the request head, through a fixed
//! response, the live SSE stream (`view`) or a publish body (`publish`), to a lingering close. It
//! reads and writes its own socket and keeps its own poll interest right, but never touches the
//! connection slab or the timers: every handler returns a [`Next`] and the server acts on it.
//! Viewers and publishers register with their stream in the registry; what a publisher's feed
//! yields goes to the server as [`Media`] events, which it applies and fans out.

mod publish;
pub mod rtmp;
mod view;

use crate::http::{HeadReader, Parsed, Request, Responses, Route, Status};
use crate::metrics::Metrics;
use crate::queue::{ClientQueue, Drain};
use crate::source::live::{IngestOptions, LiveInput};
use crate::source::Media;
use crate::sse::Frame;
use crate::stream::Registry;
use mio::net::TcpStream;
use mio::{Interest, Poll, Registry as PollRegistry, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Most reads of input the connection should not be sending before it is treated as a flood.
const MAX_DISCARD_READS: usize = 16;

/// What the server should do with a connection after a handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Work remains (output to write, input to read) and the socket may still be ready: call
    /// the connection again soon.
    Again,
    /// A publisher ahead of real time: read it again at this instant, not before.
    Hold(Instant),
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
    /// Reading a publisher's body.
    Publish,
    /// Response sent and our side shut; discarding input until the peer closes (or a timeout), so
    /// the response is not destroyed by a reset.
    Linger,
}

/// What a handler may use besides the connection itself.
pub struct Ctx<'a> {
    pub poll: &'a PollRegistry,
    pub scratch: &'a mut [u8],
    pub now: Instant,
    pub streams: &'a mut Registry,
    pub responses: &'a Responses,
    pub stall_timeout: Duration,
    pub publish_key: Option<&'a [u8]>,
    /// What publishers' feeds yielded, for the server to apply.
    pub media: &'a mut Vec<Media>,
    pub metrics: &'a mut Metrics,
    /// How publish bodies that are not MP4 are muxed.
    pub ingest: IngestOptions,
}

/// What every handler needs besides the connection's own state, owned by whoever drives the
/// connections (the server, or the bench harness).
pub struct Shared {
    pub poll: Poll,
    pub streams: Registry,
    pub responses: Responses,
    /// One read buffer for every connection.
    pub scratch: Box<[u8]>,
    pub stall_timeout: Duration,
    pub publish_key: Option<Box<[u8]>>,
    pub media: Vec<Media>,
    pub metrics: Metrics,
    pub ingest: IngestOptions,
}

impl Shared {
    pub fn ctx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            poll: self.poll.registry(),
            scratch: &mut self.scratch,
            now,
            streams: &mut self.streams,
            responses: &self.responses,
            stall_timeout: self.stall_timeout,
            publish_key: self.publish_key.as_deref(),
            media: &mut self.media,
            metrics: &mut self.metrics,
            ingest: self.ingest,
        }
    }
}

/// Which stream a viewer watches: the registry key and its slot among the stream's viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerSlot {
    pub stream: usize,
    pub slot: usize,
}

pub struct Connection {
    /// Unique for the server's life, so timers for a reused slab key are told apart.
    pub id: u64,
    token: Token,
    socket: TcpStream,
    peer: IpAddr,
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
    /// Set while streaming to a viewer.
    viewer: Option<ViewerSlot>,
    /// Set while reading a publisher's body.
    publisher: Option<Box<LiveInput>>,
    body: publish::BodyState,
    /// A publisher that was refused or stopped may still be sending its body: input is
    /// discarded for as long as the linger lasts instead of being taken as a flood.
    draining_body: bool,
}

impl Connection {
    pub fn new(
        id: u64,
        token: Token,
        socket: TcpStream,
        peer: IpAddr,
        client_queue: usize,
        reject: bool,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            token,
            socket,
            peer,
            phase: Phase::ReadHead,
            queue: ClientQueue::new(client_queue),
            head: HeadReader::default(),
            writable_interest: false,
            reject,
            peer_closed: false,
            last_progress: now,
            viewer: None,
            publisher: None,
            body: publish::BodyState::UntilClose,
            draining_body: false,
        }
    }

    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The stream this connection watches, if it is a viewer.
    pub fn viewer(&self) -> Option<ViewerSlot> {
        self.viewer
    }

    /// Registry key of the stream this connection publishes, while it does.
    pub fn publishing(&self) -> Option<usize> {
        self.publisher.as_ref().map(|p| p.stream)
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
            Phase::Publish => self.read_body(ctx),
            Phase::Respond | Phase::Stream | Phase::Linger => self.discard_input(ctx),
        }
    }

    pub fn on_writable(&mut self, ctx: &mut Ctx<'_>) -> Next {
        match self.phase {
            Phase::Respond | Phase::Stream | Phase::Publish => self.flush(ctx),
            Phase::ReadHead | Phase::Linger => Next::Continue,
        }
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
            if let Parsed::Done { result, body_at } =
                self.head.feed(&ctx.scratch[..n], ctx.publish_key)
            {
                let next = self.start(result, body_at..n, ctx);
                if next == Next::Close || self.phase == Phase::Publish {
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

    /// Acts on a complete request head; `rest` is where in `ctx.scratch` the bytes after it are.
    fn start(
        &mut self,
        result: Result<Request, Status>,
        rest: std::ops::Range<usize>,
        ctx: &mut Ctx<'_>,
    ) -> Next {
        let r = ctx.responses;
        let response = match result {
            Err(status) => {
                log::debug!("request refused with {}", status.code());
                Rc::clone(r.error(status, false))
            }
            Ok(Request { head_only, .. }) if self.reject => {
                Rc::clone(r.error(Status::Unavailable, head_only))
            }
            Ok(Request {
                route: Route::Refused(status, why),
                head_only,
            }) => {
                log::debug!("request refused with {}: {why}", status.code());
                r.refusal(status, why, head_only)
            }
            Ok(Request {
                route: Route::Asset(i),
                head_only,
            }) => match r.asset(i, head_only) {
                Some(f) => Rc::clone(f),
                None => Rc::clone(r.error(Status::NotFound, head_only)),
            },
            Ok(Request {
                route: Route::Page(_),
                head_only,
            }) => Rc::clone(
                r.asset(0, head_only)
                    .unwrap_or(r.error(Status::NotFound, head_only)),
            ),
            Ok(Request {
                route: Route::NoContent,
                ..
            }) => Rc::clone(r.no_content()),
            Ok(Request {
                route: Route::Health,
                head_only,
            }) => crate::http::responses::response(
                200,
                "OK",
                "text/plain; charset=utf-8",
                "",
                b"ok\n",
                head_only,
            ),
            Ok(Request {
                route: Route::Streams(name),
                head_only,
            }) => view::status(ctx, name, head_only),
            Ok(Request {
                route: Route::Metrics,
                head_only,
            }) => crate::http::responses::response(
                200,
                "OK",
                "text/plain; version=0.0.4; charset=utf-8",
                "",
                crate::metrics::prometheus(ctx.streams, ctx.metrics, ctx.now).as_bytes(),
                head_only,
            ),
            Ok(Request {
                route:
                    Route::Events {
                        stream,
                        last_event_id,
                        gzip,
                    },
                head_only,
            }) => return self.start_view(stream, last_event_id, gzip, head_only, ctx),
            Ok(Request {
                route: Route::Publish(p),
                ..
            }) => return self.start_publish(p, rest, ctx),
        };
        self.respond(response, ctx)
    }

    /// Sends a fixed response; the connection closes after it.
    fn respond(&mut self, response: Rc<Frame>, ctx: &mut Ctx<'_>) -> Next {
        self.queue.push_control(response);
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
        if self.draining_body {
            return Next::Again;
        }
        log::debug!("closing a connection that keeps sending after its request");
        Next::Close
    }

    fn flush(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let before = self.queue.pending();
        let drained = self.queue.drain(&mut self.socket);
        let written = before.saturating_sub(self.queue.pending());
        if written > 0 || self.queue.is_empty() {
            self.last_progress = ctx.now;
        }
        if let Some(s) = self.viewer.and_then(|v| ctx.streams.get_mut(v.stream)) {
            s.bytes_sent += written as u64;
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
                self.set_write_interest(false, ctx.poll)
            }
            Ok(Drain::Blocked) => self.set_write_interest(true, ctx.poll),
            Ok(Drain::Yielded) => match self.set_write_interest(true, ctx.poll) {
                Next::Close => Next::Close,
                _ => Next::Again,
            },
            Err(e) => close_on(&e),
        }
    }

    fn set_write_interest(&mut self, want: bool, registry: &PollRegistry) -> Next {
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
