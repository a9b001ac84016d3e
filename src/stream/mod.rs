//! A named stream and the registry of streams. A stream is what viewers of one name share,
//! whatever feeds it: the current init frame, the backlog, the sequence of event ids and the
//! timeline (both carried across publisher restarts), whether it is live, and its viewers.
//! Sources (a file playout, a publisher, standard input) hand it init segments and fragments;
//! it does not know which kind it has. Pure: no sockets; time comes in as arguments.

pub mod backlog;
pub mod name;
pub mod registry;
pub mod timeline;

use crate::sse::{data_frame, init_frame, offline_frame, EventId, Frame, StreamInfo};
use backlog::Backlog;
pub use name::{NameError, StreamName};
pub use registry::Registry;
use slab::Slab;
use std::rc::Rc;
use std::time::{Duration, Instant};
use timeline::{Run, Timeline};

/// What feeds a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A file from the command line (or the embedded sample), looping.
    File,
    /// Standard input.
    Stdin,
    /// An HTTP publisher (`POST`/`PUT /publish/NAME`).
    Http,
    /// Another ssecast's stream, pulled.
    Relay,
    /// An RTMP publisher (OBS, `ffmpeg -f flv`).
    Rtmp,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Stdin => "stdin",
            SourceKind::Http => "http",
            SourceKind::Relay => "relay",
            SourceKind::Rtmp => "rtmp",
        }
    }
}

/// Who publishes a stream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// The connection with this slab key and id.
    Conn { key: usize, id: u64 },
    /// The RTMP connection with this key (in the server's RTMP slab) and id.
    Rtmp { key: usize, id: u64 },
    /// A source the server runs itself (a file, standard input).
    Internal,
}

#[derive(Debug)]
pub struct Stream {
    pub name: StreamName,
    /// Given on the command line: never forgotten, never published over.
    pub configured: bool,
    /// What feeds it now, or fed it last.
    pub kind: Option<SourceKind>,
    pub publisher: Option<Publisher>,
    /// Connection keys of its viewers.
    pub viewers: Slab<usize>,
    /// The `init` frame of the current session; `None` until the first.
    init: Option<Rc<Frame>>,
    info: Option<StreamInfo>,
    /// Timescales of the current session's tracks.
    timescales: Vec<u32>,
    live: bool,
    /// The `offline` event new viewers get while the stream is not live.
    offline: Rc<Frame>,
    backlog: Backlog,
    /// Sequence number of the last fragment that went live (the first is 1).
    sequence: u64,
    timeline: Timeline,
    /// When it last went live or offline, and in which order streams went live (for the
    /// default stream).
    pub changed_at: Instant,
    pub live_order: u64,
    /// When its viewers were last sent anything (for keepalives).
    pub last_output: Instant,
    /// Counters for the status API, the metrics and logs, kept as things happen.
    pub fragments: u64,
    pub sessions: u64,
    /// Bytes written to its viewers.
    pub bytes_sent: u64,
    /// Fragments its viewers skipped, and viewers that ever skipped.
    pub skipped: u64,
    pub viewers_skipped: u64,
    /// Media bytes its publishers sent (init segments and fragments).
    pub publish_bytes: u64,
    /// When the last fragment went live.
    pub last_fragment_at: Option<Instant>,
    /// Fragment bytes since `rate_since`, and the bitrate measured over the last window.
    rate_bytes: u64,
    rate_since: Instant,
    bitrate: u64,
    /// Viewers that were sent the compressed (gzip) stream since the stream was created.
    pub compressed_viewers: u64,
}

/// How long the bitrate is measured over before it is updated.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Stream {
    pub fn new(name: StreamName, window: Duration, now: Instant) -> Stream {
        Stream {
            name,
            configured: false,
            kind: None,
            publisher: None,
            viewers: Slab::new(),
            init: None,
            info: None,
            timescales: Vec::new(),
            live: false,
            offline: offline_frame("not live yet"),
            backlog: Backlog::new(window),
            sequence: 0,
            timeline: Timeline::default(),
            changed_at: now,
            live_order: 0,
            last_output: now,
            fragments: 0,
            sessions: 0,
            bytes_sent: 0,
            skipped: 0,
            viewers_skipped: 0,
            publish_bytes: 0,
            last_fragment_at: None,
            rate_bytes: 0,
            rate_since: now,
            bitrate: 0,
            compressed_viewers: 0,
        }
    }

    /// Bits per second of fragments over the last few seconds (a file's average bitrate until
    /// the first window has passed).
    pub fn bitrate(&self) -> u64 {
        if self.bitrate > 0 {
            self.bitrate
        } else {
            self.info.as_ref().map_or(0, |i| i.bitrate)
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn info(&self) -> Option<&StreamInfo> {
        self.info.as_ref()
    }

    /// The shared `init` frame of the current session.
    pub fn init_frame(&self) -> Option<&Rc<Frame>> {
        self.init.as_ref()
    }

    /// The `offline` frame new viewers get while the stream is not live.
    pub fn offline_frame(&self) -> &Rc<Frame> {
        &self.offline
    }

    /// Sequence number of the last fragment that went live.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// A session starts with a new init segment: the stream is live, its viewers get the
    /// returned `init` frame, and new viewers start from this session's fragments. The
    /// timeline goes on from where the last session ended.
    pub fn start_session(
        &mut self,
        info: StreamInfo,
        init_segment: &[u8],
        timescales: Vec<u32>,
        now: Instant,
    ) -> Rc<Frame> {
        let frame = init_frame(&info, init_segment);
        self.init = Some(Rc::clone(&frame));
        self.info = Some(info);
        self.timescales = timescales;
        self.timeline.start_session();
        self.backlog.clear();
        self.live = true;
        self.changed_at = now;
        self.sessions += 1;
        frame
    }

    /// A relayed session starts with the upstream's own `init` frame.
    pub fn start_relayed_session(
        &mut self,
        frame: Rc<Frame>,
        info: StreamInfo,
        timescales: Vec<u32>,
        now: Instant,
    ) {
        self.init = Some(frame);
        self.info = Some(info);
        self.timescales = timescales;
        self.backlog.clear();
        self.live = true;
        self.changed_at = now;
        self.sessions += 1;
    }

    /// A relayed fragment goes live with the upstream's event (and so its id) as it came.
    pub fn go_live_relayed(&mut self, frame: &Rc<Frame>, now: Instant) {
        self.sequence = frame.sequence().unwrap_or(self.sequence);
        self.fragments += 1;
        self.last_fragment_at = Some(now);
        self.backlog.push(now, Rc::clone(frame));
    }

    /// The per-track shifts (added modulo 2^64) that place a fragment of the current session
    /// with these runs on the stream's timeline.
    pub fn place(&mut self, runs: &[Run]) -> &[u64] {
        self.timeline.place(runs, &self.timescales)
    }

    /// A fragment goes live: encoded once into its `data` event (next sequence number, id time
    /// `wall_ms`), kept in the backlog, and returned for the fan-out.
    pub fn go_live(
        &mut self,
        fragment: &[u8],
        keyframe: bool,
        now: Instant,
        wall_ms: u64,
    ) -> Rc<Frame> {
        self.sequence += 1;
        self.fragments += 1;
        self.last_fragment_at = Some(now);
        self.rate_bytes += fragment.len() as u64;
        let elapsed = now.saturating_duration_since(self.rate_since);
        if elapsed >= RATE_WINDOW {
            self.bitrate = (self.rate_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.rate_bytes = 0;
            self.rate_since = now;
        }
        let frame = data_frame(self.sequence, wall_ms, keyframe, fragment);
        self.backlog.push(now, Rc::clone(&frame));
        frame
    }

    /// The stream stops being live: viewers get the returned `offline` event and stay.
    pub fn go_offline(&mut self, reason: &str, now: Instant) -> Rc<Frame> {
        self.live = false;
        self.bitrate = 0;
        self.rate_bytes = 0;
        self.rate_since = now;
        self.backlog.clear();
        self.changed_at = now;
        self.offline = offline_frame(reason);
        Rc::clone(&self.offline)
    }

    /// The frames a new viewer gets after the response head: `init` and the backlog from its
    /// starting point when live (`waits` when it must wait for a keyframe), else `offline`.
    pub fn welcome(&self, last: Option<EventId>) -> Welcome<'_> {
        match (&self.init, self.live) {
            (Some(init), true) => {
                let (resumed, frames) = self.backlog.start_frames(last);
                Welcome::Live {
                    init,
                    resumed,
                    frames: Box::new(frames),
                }
            }
            _ => Welcome::Offline(&self.offline),
        }
    }

    /// Nobody watches or publishes it and nothing on the command line names it.
    pub fn is_unused(&self) -> bool {
        !self.configured && self.publisher.is_none() && self.viewers.is_empty()
    }
}

/// What a new viewer of a stream is sent first.
pub enum Welcome<'a> {
    Live {
        init: &'a Rc<Frame>,
        /// The viewer's `Last-Event-ID` was found: `frames` follow it with no gap.
        resumed: bool,
        frames: Box<dyn Iterator<Item = &'a Rc<Frame>> + 'a>,
    },
    Offline(&'a Rc<Frame>),
}
