//! The event loop: one `mio::Poll`, the listener, the signal pipe, standard input and a slab of
//! connections keyed by token. It accepts (with a capacity gate and an EMFILE back-off),
//! dispatches readiness to connections, and runs the timers (file playouts, held publishers,
//! head timeouts, lingering closes, keepalives, publish timeouts) that set the poll timeout.
//! What sources yield is applied to streams and fanned out in `fanout`; the server's own
//! sources (stdin, relays, files) are in `sources`, the timeouts and housekeeping in `timers`.

mod fanout;
mod rtmp;
mod sources;
mod timers;

use crate::config::{Config, Source};
use crate::conn::{Connection, Next, Phase, Shared};
use crate::http::Responses;
use crate::mp4::Movie;
use crate::source::file::{FileSource, Video, VideoError};
use crate::source::relay::{RelaySource, RelayUrl};
use crate::source::stdin::StdinSource;
use crate::sse::{Frame, KEEPALIVE};
use crate::stream::{Publisher, Registry, SourceKind, StreamName};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use sources::add_file;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const STDIN: Token = Token(usize::MAX - 3);
/// Relays take the tokens from this one down, one each (slab keys never come near).
const RELAY_BASE: usize = usize::MAX - 16;
/// Most relays one server runs.
pub const MAX_RELAYS: usize = 4096;

/// Most connections accepted per readiness event before other work gets a turn.
const ACCEPT_BATCH: usize = 256;
/// Back-off before accepting again after running out of file descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(200);
/// How long a closed response waits for the peer to close before giving up.
const LINGER: Duration = Duration::from_secs(2);
/// How often publishers are checked for silence, streams for being unused and keepalives due.
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Connections the kernel may hold for us while we are busy fanning out (the kernel caps it at
/// net.core.somaxconn). A crowd joining at once should wait in the queue, not be refused.
const LISTEN_BACKLOG: i32 = 4096;
/// Read buffer shared by every connection.
const SCRATCH: usize = 16 * 1024;

/// Connections kept at most for `max_clients` viewers: room to answer 503s and serve the page.
pub fn slab_cap(max_clients: usize) -> usize {
    max_clients.saturating_add(max_clients / 16 + 16)
}

/// The default `--max-clients` for `fd_limit` open files, so that `slab_cap` stays below the
/// limit (leaving `reserve` descriptors for everything else) and the 503 path, not EMFILE, is
/// what a crowd meets.
pub fn default_max_clients(fd_limit: u64, reserve: u64) -> usize {
    let usable = usize::try_from(fd_limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    (usable.saturating_sub(16) / 17 * 16).max(1)
}

/// A nonblocking listener with address reuse and a deep accept queue.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Why the server stopped or could not start.
#[derive(Debug)]
pub enum ServerError {
    Bind { addr: SocketAddr, source: io::Error },
    Io(io::Error),
    Video(VideoError),
    Stdin(io::Error),
    Relay(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Io(e) => write!(f, "event loop failed: {e}"),
            ServerError::Video(e) => write!(f, "{e}"),
            ServerError::Stdin(e) => write!(f, "cannot read standard input: {e}"),
            ServerError::Relay(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<VideoError> for ServerError {
    fn from(e: VideoError) -> Self {
        ServerError::Video(e)
    }
}

/// Counters for the periodic summary and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub accepted: u64,
    pub fragments: u64,
    /// Fragments that went to viewers in the same write as the one before them (the loop was
    /// behind by more than a fragment).
    pub batched: u64,
    pub skipped: u64,
}

pub struct Server {
    shared: Shared,
    listener: TcpListener,
    local_addr: SocketAddr,
    signals: Signals,
    conns: Slab<Connection>,
    files: Vec<FileSource>,
    stdin: Option<StdinSource>,
    relays: Vec<RelaySource>,
    /// Relays whose last read stopped before the socket would block.
    relays_again: Vec<usize>,
    /// Standard input is ahead of real time: read it again then.
    stdin_hold: Option<Instant>,
    stdin_again: bool,
    keepalive: Rc<Frame>,
    /// Silence after which a stream's viewers get a keepalive comment (`--keepalive`).
    keepalive_after: Duration,
    client_queue: usize,
    head_timeout: Duration,
    publish_timeout: Duration,
    stats_every: Duration,
    max_clients: usize,
    /// Connections kept at most: viewers plus room to answer 503 and serve the page.
    slab_cap: usize,
    /// Head and linger deadlines. Each list has one fixed delay, so pushing at the back keeps
    /// it sorted. Entries for connections that moved on are skipped when they come up.
    head_timers: VecDeque<(Instant, usize, u64)>,
    /// A fixed response must be taken within the head timeout too, or the slot is freed.
    respond_timers: VecDeque<(Instant, usize, u64)>,
    linger_timers: VecDeque<(Instant, usize, u64)>,
    /// Publishers held back until an instant (each its own, so a heap).
    hold_timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Connections to call again (output left or input to read) soon.
    again: Vec<(usize, u64)>,
    to_close: Vec<usize>,
    /// The viewer keys of the stream being fanned out to (kept for its capacity).
    fanout_keys: Vec<usize>,
    live_batch: fanout::LiveBatch,
    next_id: u64,
    viewers: usize,
    /// The listener may have connections waiting that were not accepted yet.
    listener_ready: bool,
    /// Accepting stopped at `slab_cap`; it resumes below 90% of it.
    at_capacity: bool,
    accept_paused_until: Option<Instant>,
    next_housekeeping: Instant,
    next_stats: Instant,
    stats: Stats,
    rtmp: rtmp::RtmpSide,
}

impl Server {
    /// Loads the streams, binds the listener and sets up the loop; the first fragments go live
    /// when `run` starts.
    pub fn new(cfg: &Config, max_clients: usize) -> Result<Server, ServerError> {
        let now = Instant::now();
        let poll = Poll::new().map_err(ServerError::Io)?;
        let mut streams = Registry::new(cfg.backlog / cfg.speed.max(1));
        let mut files = Vec::new();
        let mut stdin = None;
        let mut relays = Vec::new();
        for spec in &cfg.streams {
            match &spec.source {
                Source::File(path) => {
                    let (video, movie) = Video::open(path)?;
                    files.push(add_file(
                        &mut streams,
                        spec.name,
                        video,
                        movie,
                        cfg.speed,
                        false,
                        now,
                    ));
                }
                Source::Relay(url) => {
                    if relays.len() >= MAX_RELAYS {
                        return Err(ServerError::Relay(format!("at most {MAX_RELAYS} relays")));
                    }
                    let url = RelayUrl::parse(url).map_err(ServerError::Relay)?;
                    let key = streams
                        .add_configured(spec.name, SourceKind::Relay, false, now)
                        .ok_or_else(|| ServerError::Relay("duplicate name".into()))?;
                    if let Some(s) = streams.get_mut(key) {
                        s.publisher = Some(Publisher::Internal);
                    }
                    let token = Token(RELAY_BASE - relays.len());
                    relays.push(RelaySource::new(key, url, token, now));
                }
                Source::Stdin => {
                    let key = streams
                        .add_configured(spec.name, SourceKind::Stdin, false, now)
                        .ok_or_else(|| ServerError::Stdin(io::Error::other("duplicate name")))?;
                    if let Some(s) = streams.get_mut(key) {
                        s.publisher = Some(Publisher::Internal);
                    }
                    let source = StdinSource::open(key, poll.registry(), STDIN, now, cfg.ingest)
                        .map_err(ServerError::Stdin)?;
                    stdin = Some(source);
                }
            }
        }
        if cfg.streams.is_empty() {
            let video = Video::sample();
            let movie = Movie::parse(video.bytes()).map_err(|source| VideoError::Parse {
                path: video.name().to_path_buf(),
                source,
            })?;
            let name = StreamName::parse("sample")
                .map_err(|_| ServerError::Io(io::Error::other("sample name")))?;
            files.push(add_file(
                &mut streams,
                name,
                video,
                movie,
                cfg.speed,
                true,
                now,
            ));
        }
        let mut listener = bind(cfg.listen).map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(ServerError::Io)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(ServerError::Io)?;
        let rtmp = rtmp::RtmpSide::new(cfg.rtmp, poll.registry())?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Io)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(ServerError::Io)?;
        Ok(Server {
            shared: Shared {
                poll,
                streams,
                responses: Responses::new(cfg.compress),
                scratch: vec![0u8; SCRATCH].into_boxed_slice(),
                stall_timeout: cfg.stall_timeout,
                publish_key: cfg
                    .publish_key
                    .as_ref()
                    .map(|k| k.as_bytes().to_vec().into_boxed_slice()),
                media: Vec::new(),
                metrics: crate::metrics::Metrics::new(now),
                ingest: cfg.ingest,
            },
            listener,
            local_addr,
            signals,
            conns: Slab::new(),
            files,
            stdin,
            relays,
            relays_again: Vec::new(),
            stdin_hold: None,
            stdin_again: false,
            keepalive: Frame::event(KEEPALIVE),
            keepalive_after: cfg.keepalive,
            client_queue: cfg.client_queue,
            head_timeout: cfg.head_timeout,
            publish_timeout: cfg.publish_timeout,
            stats_every: cfg.stats_every,
            max_clients,
            slab_cap: slab_cap(max_clients),
            head_timers: VecDeque::new(),
            respond_timers: VecDeque::new(),
            linger_timers: VecDeque::new(),
            hold_timers: BinaryHeap::new(),
            again: Vec::new(),
            to_close: Vec::new(),
            fanout_keys: Vec::new(),
            live_batch: fanout::LiveBatch::default(),
            next_id: 0,
            viewers: 0,
            listener_ready: false,
            at_capacity: false,
            accept_paused_until: None,
            next_housekeeping: now + HOUSEKEEPING,
            next_stats: now + cfg.stats_every,
            stats: Stats::default(),
            rtmp,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where RTMP publishers connect, if anywhere.
    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.rtmp.addr
    }

    /// The streams, for the startup log.
    pub fn streams(&self) -> &Registry {
        &self.shared.streams
    }

    /// The relays, for the startup log.
    pub fn relays(&self) -> &[RelaySource] {
        &self.relays
    }

    /// The file streams, for the startup log.
    pub fn files(&self) -> &[FileSource] {
        &self.files
    }

    /// Runs until SIGINT or SIGTERM (`Ok`) or until a file becomes unreadable (`Err`).
    pub fn run(&mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = self.poll_timeout(now);
            match self.shared.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ServerError::Io(e)),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => {
                        self.listener_ready = true;
                        self.accept(now);
                    }
                    SIGNALS => {
                        if let Some(sig) = self.signals.pending().next() {
                            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                            log::info!(
                                "{name}: shutting down, closing {} connections ({} viewers)",
                                self.conns.len(),
                                self.viewers
                            );
                            return Ok(());
                        }
                    }
                    STDIN => self.read_stdin(now),
                    rtmp::RTMP_LISTENER => self.rtmp_accept(now),
                    Token(t) if t <= RELAY_BASE && RELAY_BASE - t < self.relays.len() => {
                        self.relay_ready(RELAY_BASE - t, now)
                    }
                    Token(t) if t >= rtmp::RTMP_BASE => self.rtmp_ready(t - rtmp::RTMP_BASE, now),
                    Token(key) => {
                        let readable = event.is_readable() || event.is_read_closed();
                        let writable = event.is_writable() || event.is_error();
                        self.connection_event(key, readable, writable, now);
                    }
                }
            }
            self.tick(now)?;
        }
    }

    /// The one rule for whether to accept now, used both to accept and to decide that the
    /// loop must not sleep (two different rules once made the loop spin near capacity).
    fn may_accept(&self) -> bool {
        self.listener_ready && self.accept_paused_until.is_none() && !self.at_capacity
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.again.is_empty()
            || self.stdin_again
            || !self.relays_again.is_empty()
            || !self.rtmp.again.is_empty()
            || self.may_accept()
        {
            return Duration::ZERO;
        }
        let mut next = self.next_stats.min(self.next_housekeeping);
        let relays = self.relays.iter().map(RelaySource::deadline);
        for t in self
            .files
            .iter()
            .map(|f| f.playout.next_due())
            .chain(relays)
            .chain(
                [
                    self.head_timers.front().map(|t| t.0),
                    self.respond_timers.front().map(|t| t.0),
                    self.linger_timers.front().map(|t| t.0),
                    self.hold_timers.peek().map(|t| t.0 .0),
                    self.stdin_hold,
                    self.accept_paused_until,
                    self.rtmp.next_due(),
                ]
                .into_iter()
                .flatten(),
            )
        {
            next = next.min(t);
        }
        // Round up to the next millisecond: epoll sleeps in whole ms, and waking a fraction
        // early would spin once before the fragment is due.
        next.saturating_duration_since(now) + Duration::from_micros(999)
    }

    fn accept(&mut self, now: Instant) {
        if !self.may_accept() {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            if self.conns.len() >= self.slab_cap {
                // INVARIANT: listener_ready stays true, so accepting resumes once connections
                // close below 90% of the cap (see `tick`).
                self.at_capacity = true;
                log::warn!(
                    "{} connections: not accepting more until some close",
                    self.conns.len()
                );
                return;
            }
            match self.listener.accept() {
                Ok((socket, peer)) => self.add_connection(socket, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::warn!(
                        "out of file descriptors with {} connections ({e}); pausing accepts for {} ms",
                        self.conns.len(),
                        ACCEPT_RETRY.as_millis()
                    );
                    self.accept_paused_until = Some(now + ACCEPT_RETRY);
                    return;
                }
                Err(e) => log::debug!("accept failed: {e}"),
            }
        }
        log::debug!("accepted {ACCEPT_BATCH} connections in one go; continuing next turn");
    }

    fn add_connection(&mut self, mut socket: mio::net::TcpStream, peer: SocketAddr, now: Instant) {
        let key = self.conns.vacant_key();
        let token = Token(key);
        if let Err(e) = self
            .shared
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            log::warn!("cannot register a connection from {peer}: {e}");
            return;
        }
        // Frames are written whole; Nagle would only delay a frame's last partial segment.
        let _ = socket.set_nodelay(true);
        let reject = self.conns.len() >= self.max_clients;
        self.shared.metrics.accepted += 1;
        self.shared.metrics.refused += u64::from(reject);
        self.shared.metrics.moved(None, Some(Phase::ReadHead));
        if reject {
            log::warn!(
                "connection limit of {} reached; answering {peer} with 503",
                self.max_clients
            );
        }
        self.next_id += 1;
        let id = self.next_id;
        let inserted = self.conns.insert(Connection::new(
            id,
            token,
            socket,
            peer.ip(),
            self.client_queue,
            reject,
            now,
        ));
        debug_assert_eq!(inserted, key, "the slab must use the key it promised");
        self.head_timers
            .push_back((now + self.head_timeout, key, id));
        self.stats.accepted += 1;
        log::debug!("connection {id} from {peer}");
    }

    fn connection_event(&mut self, key: usize, readable: bool, writable: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let before = conn.phase();
        let mut ctx = self.shared.ctx(now);
        let mut next = Next::Continue;
        if writable {
            next = conn.on_writable(&mut ctx);
        }
        if readable && next != Next::Close {
            let after_read = conn.on_readable(&mut ctx);
            if after_read != Next::Continue {
                next = after_read;
            }
        }
        self.settle(key, before, next, now);
        self.apply_media(now);
    }

    /// Acts on a handler's verdict and on the phase change it made.
    fn settle(&mut self, key: usize, before: Phase, next: Next, now: Instant) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let after = conn.phase();
        if before != after {
            self.shared.metrics.moved(Some(before), Some(after));
        }
        if before != Phase::Stream && after == Phase::Stream {
            self.viewers += 1;
            log::debug!("viewer {} joined ({} watching)", conn.id, self.viewers);
        }
        if before != Phase::Respond && after == Phase::Respond {
            self.respond_timers
                .push_back((now + self.head_timeout, key, conn.id));
        }
        if before != Phase::Linger && after == Phase::Linger {
            self.linger_timers.push_back((now + LINGER, key, conn.id));
        }
        match next {
            Next::Continue => {}
            Next::Again => self.again.push((key, conn.id)),
            Next::Hold(until) => self.hold_timers.push(Reverse((until, key, conn.id))),
            Next::Close => self.close(key, now),
        }
    }

    fn close(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        self.shared.metrics.moved(Some(conn.phase()), None);
        if conn.phase() == Phase::Stream {
            self.viewers -= 1;
            self.stats.skipped += conn.total_skipped();
            log::debug!("viewer {} left ({} watching)", conn.id, self.viewers);
        }
        if let Some(v) = conn.viewer() {
            if let Some(s) = self.shared.streams.get_mut(v.stream) {
                s.viewers.try_remove(v.slot);
            }
            self.shared.streams.forget_if_unused(v.stream, now);
        }
        if let Some(stream) = conn.publishing() {
            self.end_source(stream, "publisher disconnected", now);
        }
        // Dropping the socket closes it, which also removes it from the poll set.
    }

    fn tick(&mut self, now: Instant) -> Result<(), ServerError> {
        let again = std::mem::take(&mut self.again);
        for (key, id) in &again {
            if self.conns.get(*key).is_some_and(|c| c.id == *id) {
                self.connection_event(*key, true, true, now);
            }
        }
        while let Some(&Reverse((at, key, id))) = self.hold_timers.peek() {
            if at > now {
                break;
            }
            self.hold_timers.pop();
            if self.conns.get(key).is_some_and(|c| c.id == id) {
                self.connection_event(key, true, false, now);
            }
        }
        self.rtmp_timers(now);
        if self.stdin_again || self.stdin_hold.is_some_and(|t| now >= t) {
            self.stdin_hold = None;
            self.read_stdin(now);
        }
        self.release_fragments(now)?;
        self.relay_timers(now);
        self.expire_timers(now);
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.housekeeping(now);
        }
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
        }
        if self.at_capacity && self.conns.len() < self.slab_cap / 10 * 9 {
            self.at_capacity = false;
        }
        self.accept(now);
        if now >= self.next_stats {
            self.next_stats = now + self.stats_every;
            self.log_stats();
        }
        Ok(())
    }

    /// Connected viewers.
    pub fn viewers(&self) -> usize {
        self.viewers
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}
