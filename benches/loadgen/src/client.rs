//! One load-generating connection: connect, send the request, read the response head, then
//! de-chunk and inflate (if needed) and scan the SSE body, turning events into per-client counters and into
//! the shared latency and spread measurements. It owns its socket and per-stream state; the
//! event loop (`run.rs`) owns the slab, the timers and the shared read buffer. Nothing read from
//! the network can make it panic: every problem becomes an [`Outcome`].

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::chunked::ChunkedDecoder;
use crate::clock::{Clock, Now};
use crate::event_id::IdShape;
use crate::histogram::Histogram;
use crate::inflate::{InflateError, Inflater};
use crate::spread::SpreadTracker;
use crate::sse::{EventKind, SseEvent, SseScanner};

/// Largest response head accepted.
const HEAD_MAX: usize = 16 * 1024;
const HEADERS_MAX: usize = 32;
/// Reads of one socket per readiness event before the loop turns to other clients (fairness).
const READS_PER_TURN: usize = 8;

/// Measurements shared by all clients.
pub struct Recorder {
    pub clock: Clock,
    /// True during the measurement window; afterwards only the spread of ids already in flight
    /// is still recorded.
    pub measuring: bool,
    /// Clients that got a 200 head and are still open.
    pub streaming: u32,
    pub latency: Histogram,
    pub spread: SpreadTracker,
    pub expect_interval_us: Option<u64>,
    /// Payload bytes of every client so far (for the steady-state window).
    pub payload_bytes: u64,
    /// Bytes received by every client so far, as they came off the wire.
    pub wire_bytes: u64,
    /// Where gzip bodies are inflated, one client at a time.
    pub inflate_buf: Box<[u8]>,
}

/// Per-client counters (summed over all clients for the report).
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamStats {
    pub wire_bytes: u64,
    pub events: u64,
    pub data_events: u64,
    pub payload_bytes: u64,
    pub gaps: u64,
    /// Sequence numbers skipped by the gaps.
    pub missing: u64,
    pub duplicates: u64,
    pub resets: u64,
    pub stalls: u64,
}

impl StreamStats {
    pub fn add(&mut self, o: &StreamStats) {
        self.wire_bytes += o.wire_bytes;
        self.events += o.events;
        self.data_events += o.data_events;
        self.payload_bytes += o.payload_bytes;
        self.gaps += o.gaps;
        self.missing += o.missing;
        self.duplicates += o.duplicates;
        self.resets += o.resets;
        self.stalls += o.stalls;
    }

    pub fn fell_behind(&self) -> bool {
        self.gaps > 0 || self.resets > 0
    }
}

/// Why a client never got to stream.
#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    Timeout,
    Status(u16),
    BadHead,
    HeadTooLarge,
    ClosedBeforeHead,
}

impl Failure {
    pub fn label(&self) -> String {
        match self {
            Failure::Connect(e) => io_label(e),
            Failure::Timeout => "timeout".into(),
            Failure::Status(code) => format!("http_{code}"),
            Failure::BadHead => "bad_response_head".into(),
            Failure::HeadTooLarge => "response_head_too_large".into(),
            Failure::ClosedBeforeHead => "closed_before_head".into(),
        }
    }
}

/// Why a stream ended.
#[derive(Debug)]
pub enum End {
    /// The server closed the connection.
    Eof,
    /// A chunked body reached its last chunk.
    LastChunk,
    BadChunked,
    BadGzip(InflateError),
    Io(io::Error),
}

impl End {
    pub fn label(&self) -> String {
        match self {
            End::Eof => "closed_by_server".into(),
            End::LastChunk => "last_chunk".into(),
            End::BadChunked => "bad_chunked_encoding".into(),
            End::BadGzip(InflateError::Header) => "bad_gzip_header".into(),
            End::BadGzip(InflateError::Data) => "bad_gzip_data".into(),
            End::BadGzip(InflateError::Ended) => "gzip_stream_ended".into(),
            End::Io(e) => io_label(e),
        }
    }
}

fn io_label(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => return "refused".into(),
        Some(libc::ECONNRESET) => return "reset".into(),
        Some(libc::ETIMEDOUT) => return "timeout".into(),
        Some(libc::EADDRNOTAVAIL) => return "no_free_source_port".into(),
        Some(libc::EMFILE | libc::ENFILE) => return "too_many_open_files".into(),
        _ => {}
    }
    format!("io_{:?}", e.kind()).to_ascii_lowercase()
}

/// What the event loop should do with a client after it handled a readiness event.
#[derive(Debug)]
pub enum Outcome {
    /// Wait for the next readiness event.
    Wait,
    /// The read cap was hit with data left: call [`Client::read_more`] after the other clients.
    ReadMore,
    Failed(Failure),
    Ended(End),
}

enum Phase {
    Connecting,
    Sending {
        written: usize,
    },
    Head {
        buf: Vec<u8>,
    },
    Body {
        chunked: Option<ChunkedDecoder>,
        /// Set for a `Content-Encoding: gzip` body (boxed: the inflater's window is 32 KiB).
        gzip: Option<Box<Inflater>>,
        scanner: SseScanner,
    },
}

/// Continuity checks and counters of one stream.
#[derive(Default)]
struct StreamTrack {
    stats: StreamStats,
    /// When the 200 head arrived (run clock, and wall clock for comparing with ids).
    start_us: u64,
    start_wall_us: u64,
    last_seq: Option<u64>,
    last_time_tag: Option<(u64, u64)>,
    /// A `reset` arrived: the next data event may jump ahead and is not live.
    reset_pending: bool,
    /// A data event arrived already: later ones are live (the first is the catch-up keyframe).
    live: bool,
    last_data_us: Option<u64>,
}

pub struct Client {
    stream: TcpStream,
    token: Token,
    phase: Phase,
    /// When the connect was started (run clock).
    pub started_us: u64,
    track: StreamTrack,
}

/// Opens a nonblocking socket to `addr` (from `source`, port chosen by the kernel) and starts
/// connecting.
pub fn connect(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(source) = source {
        socket.bind(&source.into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl Client {
    /// Wraps a connecting socket and registers it for both directions.
    pub fn new(
        mut stream: TcpStream,
        token: Token,
        registry: &Registry,
        now_us: u64,
    ) -> io::Result<Client> {
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Client {
            stream,
            token,
            phase: Phase::Connecting,
            started_us: now_us,
            track: StreamTrack::default(),
        })
    }

    /// True once a 200 head arrived.
    pub fn is_streaming(&self) -> bool {
        matches!(self.phase, Phase::Body { .. })
    }

    pub fn stats(&self) -> &StreamStats {
        &self.track.stats
    }

    /// Handles a readiness event: finishes connecting, sends `request`, reads. `read_closed`
    /// says the peer has shut down its side, so reads must go on until EOF.
    pub fn on_ready(
        &mut self,
        read_closed: bool,
        request: &[u8],
        registry: &Registry,
        buf: &mut [u8],
        rec: &mut Recorder,
    ) -> Outcome {
        if let Phase::Connecting = self.phase {
            match self.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return Outcome::Failed(Failure::Connect(e)),
            }
            match self.stream.peer_addr() {
                Ok(_) => self.phase = Phase::Sending { written: 0 },
                // Spurious wakeup: still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Outcome::Wait,
                Err(e) => return Outcome::Failed(Failure::Connect(e)),
            }
        }
        if let Phase::Sending { written } = &mut self.phase {
            while *written < request.len() {
                match self.stream.write(&request[*written..]) {
                    Ok(0) => {
                        return Outcome::Failed(Failure::Connect(io::ErrorKind::WriteZero.into()))
                    }
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Outcome::Failed(Failure::Connect(e)),
                }
            }
            // Only reads from now on: stop being woken for writability.
            if let Err(e) = registry.reregister(&mut self.stream, self.token, Interest::READABLE) {
                return Outcome::Failed(Failure::Connect(e));
            }
            self.phase = Phase::Head { buf: Vec::new() };
        }
        self.read(read_closed, buf, rec)
    }

    /// Continues reading after [`Outcome::ReadMore`].
    pub fn read_more(&mut self, buf: &mut [u8], rec: &mut Recorder) -> Outcome {
        self.read(false, buf, rec)
    }

    fn read(&mut self, read_closed: bool, buf: &mut [u8], rec: &mut Recorder) -> Outcome {
        for _ in 0..READS_PER_TURN {
            match self.stream.read(buf) {
                Ok(0) if self.is_streaming() => return Outcome::Ended(End::Eof),
                Ok(0) => return Outcome::Failed(Failure::ClosedBeforeHead),
                Ok(n) => {
                    let now = rec.clock.now();
                    if let Some(outcome) = self.consume(&buf[..n], now, rec) {
                        return outcome;
                    }
                    // A short read drained the socket (epoll(7)): the next data brings a new
                    // edge, so the extra read that would return WouldBlock is skipped. Not when
                    // the peer closed, since that edge may already have been reported.
                    if n < buf.len() && !read_closed {
                        return Outcome::Wait;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.is_streaming() => return Outcome::Ended(End::Io(e)),
                Err(e) => return Outcome::Failed(Failure::Connect(e)),
            }
        }
        log::trace!("client {} hit the read cap, yielding", self.token.0);
        Outcome::ReadMore
    }

    /// Processes bytes just read. Returns an outcome when the client is done.
    fn consume(&mut self, data: &[u8], now: Now, rec: &mut Recorder) -> Option<Outcome> {
        if rec.measuring {
            self.track.stats.wire_bytes += data.len() as u64;
            rec.wire_bytes += data.len() as u64;
        }
        let Phase::Head { buf } = &mut self.phase else {
            return self.consume_body(data, now, rec);
        };
        // Parse in place when the whole head came in one read (the usual case).
        let buffered = !buf.is_empty();
        if buffered {
            buf.extend_from_slice(data);
        }
        let head: &[u8] = if buffered { buf } else { data };
        let (head_len, chunked, gzip) = match parse_head(head) {
            Err(failure) => return Some(Outcome::Failed(failure)),
            Ok(Some(parsed)) => parsed,
            Ok(None) if head.len() > HEAD_MAX => {
                return Some(Outcome::Failed(Failure::HeadTooLarge))
            }
            Ok(None) => {
                if !buffered {
                    buf.extend_from_slice(data);
                }
                return None;
            }
        };
        let buffered_rest = if buffered {
            std::mem::take(buf).split_off(head_len)
        } else {
            Vec::new()
        };
        let rest = if buffered {
            &buffered_rest[..]
        } else {
            &data[head_len..]
        };
        self.phase = Phase::Body {
            chunked: chunked.then(ChunkedDecoder::default),
            gzip: gzip.then(Box::default),
            scanner: SseScanner::default(),
        };
        self.track.start_us = now.mono_us;
        self.track.start_wall_us = now.wall_us;
        rec.streaming += 1;
        self.consume_body(rest, now, rec)
    }

    fn consume_body(&mut self, data: &[u8], now: Now, rec: &mut Recorder) -> Option<Outcome> {
        let Phase::Body {
            chunked,
            gzip,
            scanner,
        } = &mut self.phase
        else {
            return None;
        };
        let track = &mut self.track;
        let mut out = std::mem::take(&mut rec.inflate_buf);
        let mut gzip_error = None;
        // The body after de-chunking: inflated into the shared buffer when gzip, then scanned.
        let mut body = |bytes: &[u8], rec: &mut Recorder| match gzip {
            None => scanner.feed(bytes, |event| track.on_event(event, now, rec)),
            Some(inflater) if gzip_error.is_none() => {
                let fed = inflater.feed(bytes, &mut out, |plain| {
                    scanner.feed(plain, |event| track.on_event(event, now, rec))
                });
                gzip_error = fed.err();
            }
            Some(_) => {}
        };
        let outcome = match chunked {
            None => {
                body(data, rec);
                None
            }
            Some(decoder) => match decoder.feed(data, |payload| body(payload, rec)) {
                Ok(false) => None,
                Ok(true) => Some(Outcome::Ended(End::LastChunk)),
                Err(e) => {
                    log::debug!("client {}: bad chunked body: {e:?}", self.token.0);
                    Some(Outcome::Ended(End::BadChunked))
                }
            },
        };
        rec.inflate_buf = out;
        match gzip_error {
            Some(e) => {
                log::debug!("client {}: bad gzip body: {e:?}", self.token.0);
                Some(Outcome::Ended(End::BadGzip(e)))
            }
            None => outcome,
        }
    }
}

/// Parses a response head: `Ok(None)` when incomplete, else its length and whether the body is
/// chunked and gzip. Anything but 200 is a failure.
fn parse_head(head: &[u8]) -> Result<Option<(usize, bool, bool)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::BadHead),
    };
    match response.code {
        Some(200) => {}
        Some(code) => return Err(Failure::Status(code)),
        None => return Err(Failure::BadHead),
    }
    // The body is chunked when chunked is the last transfer coding.
    let chunked = response
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .last()
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    let gzip = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-encoding")
            && h.value.trim_ascii().eq_ignore_ascii_case(b"gzip")
    });
    Ok(Some((len, chunked, gzip)))
}

impl StreamTrack {
    fn on_event(&mut self, event: &SseEvent, now: Now, rec: &mut Recorder) {
        if !rec.measuring {
            // After the window: only let ids already in flight reach their last clients.
            if let Some(id) = event.id {
                rec.spread
                    .received(id.hash, now.mono_us, self.start_us, rec.streaming, false);
            }
            return;
        }
        let stats = &mut self.stats;
        stats.events += 1;
        match event.kind {
            EventKind::Data | EventKind::Message => {}
            EventKind::Reset => {
                stats.resets += 1;
                self.reset_pending = true;
                return;
            }
            EventKind::Init | EventKind::Other => return,
        }
        stats.data_events += 1;
        stats.payload_bytes += event.data_bytes;
        rec.payload_bytes += event.data_bytes;
        if let (Some(expected), Some(last)) = (rec.expect_interval_us, self.last_data_us) {
            if now.mono_us.saturating_sub(last) > 2 * expected {
                stats.stalls += 1;
            }
        }
        self.last_data_us = Some(now.mono_us);

        let mut fresh = true;
        if let Some(id) = event.id {
            match id.shape {
                IdShape::SeqMillis { seq, millis } => {
                    match self.last_seq {
                        Some(last) if seq <= last => {
                            stats.duplicates += 1;
                            fresh = false;
                        }
                        Some(last) if seq > last + 1 && !self.reset_pending => {
                            stats.gaps += 1;
                            stats.missing += seq - last - 1;
                        }
                        _ => {}
                    }
                    if fresh {
                        self.last_seq = Some(seq);
                        // Only events that went live after this client connected: the backlog
                        // a new viewer gets first (a whole GOP of parts) is not delivery latency.
                        let sent_us = millis.saturating_mul(1000);
                        if self.live && !self.reset_pending && sent_us >= self.start_wall_us {
                            rec.latency.record(now.wall_us.saturating_sub(sent_us));
                        }
                    }
                }
                IdShape::TimeTag { time, tag } => {
                    if self.last_time_tag.is_some_and(|last| (time, tag) <= last) {
                        stats.duplicates += 1;
                        fresh = false;
                    } else {
                        self.last_time_tag = Some((time, tag));
                    }
                }
                IdShape::Opaque => {}
            }
            if fresh {
                rec.spread
                    .received(id.hash, now.mono_us, self.start_us, rec.streaming, true);
            }
        }
        self.live = true;
        self.reset_pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::IdBuilder;

    fn recorder() -> Recorder {
        Recorder {
            clock: Clock::start(),
            measuring: true,
            streaming: 1,
            latency: Histogram::default(),
            spread: SpreadTracker::default(),
            expect_interval_us: Some(1_000_000),
            payload_bytes: 0,
            wire_bytes: 0,
            inflate_buf: vec![0u8; 1024].into_boxed_slice(),
        }
    }

    fn data(id: &str) -> SseEvent {
        let mut b = IdBuilder::default();
        b.push(id.as_bytes());
        SseEvent {
            kind: EventKind::Data,
            id: Some(b.finish()),
            data_bytes: 100,
            data_lines: 1,
        }
    }

    fn at(ms: u64) -> Now {
        Now {
            mono_us: ms * 1000,
            wall_us: ms * 1000,
        }
    }

    #[test]
    fn gaps_duplicates_resets_and_latency() {
        let mut rec = recorder();
        let mut t = StreamTrack::default();
        t.on_event(&data("1.0"), at(900), &mut rec); // catch-up: no latency
        t.on_event(&data("2.1000"), at(1_005), &mut rec);
        t.on_event(&data("2.1000"), at(1_006), &mut rec); // duplicate
        t.on_event(&data("5.4000"), at(4_010), &mut rec); // gap of 2
        let reset = SseEvent {
            kind: EventKind::Reset,
            id: None,
            data_bytes: 13,
            data_lines: 1,
        };
        t.on_event(&reset, at(4_100), &mut rec);
        t.on_event(&data("9.8000"), at(8_500), &mut rec); // announced jump, not live
        let s = t.stats;
        assert_eq!((s.events, s.data_events, s.payload_bytes), (6, 5, 500));
        assert_eq!((s.gaps, s.missing, s.duplicates, s.resets), (1, 2, 1, 1));
        assert_eq!(s.stalls, 2); // 1_006 -> 4_010 and 4_010 -> 8_500
        assert!(s.fell_behind());
        assert_eq!(rec.latency.count(), 2);
        assert_eq!(rec.latency.max(), Some(10_000));
    }

    #[test]
    fn latency_counts_only_events_that_went_live_after_the_connect() {
        let mut rec = recorder();
        let mut t = StreamTrack {
            start_wall_us: 1_000_000,
            ..StreamTrack::default()
        };
        // The backlog: a keyframe and the parts after it, all from before the connect.
        for (i, ms) in [(1, 700), (2, 733), (3, 766), (4, 999)] {
            t.on_event(&data(&format!("{i}.{ms}")), at(1_001), &mut rec);
        }
        assert_eq!(rec.latency.count(), 0);
        t.on_event(&data("5.1000"), at(1_004), &mut rec);
        assert_eq!(rec.latency.count(), 1);
        assert_eq!(rec.latency.max(), Some(4_000));
    }

    #[test]
    fn nchan_ids_are_checked_for_duplicates_only() {
        let mut rec = recorder();
        let mut t = StreamTrack::default();
        for id in [
            "1700000000:0",
            "1700000000:1",
            "1700000003:0",
            "1700000000:1",
        ] {
            t.on_event(&data(id), at(1), &mut rec);
        }
        assert_eq!((t.stats.gaps, t.stats.duplicates), (0, 1));
        assert_eq!(rec.latency.count(), 0);
    }

    #[test]
    fn heads_are_parsed() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 1\n";
        assert_eq!(
            parse_head(plain).unwrap(),
            Some((plain.len() - 9, false, false))
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
        assert_eq!(
            parse_head(chunked).unwrap(),
            Some((chunked.len(), true, false))
        );
        let gzip = b"HTTP/1.1 200 OK\r\nContent-Encoding: GZIP\r\n\r\n";
        assert_eq!(parse_head(gzip).unwrap(), Some((gzip.len(), false, true)));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nX: y").unwrap(), None);
        assert!(matches!(
            parse_head(b"HTTP/1.1 503 Busy\r\n\r\n"),
            Err(Failure::Status(503))
        ));
        assert!(matches!(
            parse_head(b"garbage\r\n\r\n"),
            Err(Failure::BadHead)
        ));
    }
}
