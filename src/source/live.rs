//! A live feed being read: what its first bytes say it is — fragmented MP4 (the box splitter),
//! MPEG-TS (the demuxer and our muxer) or H.264/H.265 Annex B (the access-unit splitter and our
//! muxer) — plus the pacer, fed either by reads (straight into the fragment being assembled for
//! MP4) or by bytes already in memory (`feed`). Used by the HTTP publish path and by standard
//! input; the only I/O is the `Read` it is handed, and the only clock the `now` it is given.

use super::pacing::{Pace, Pacer};
use super::push::{PushError, PushEvent, PushParser};
use super::{Media, MediaEvent};
use crate::mux::annexb::{AccessUnit, AnnexBSplitter};
use crate::mux::ts::{TsDemuxer, TsEvent, PACKET};
use crate::mux::{Muxer, TS_HZ};
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Most bytes asked for in one read.
pub const READ_MAX: usize = 256 * 1024;
/// Bytes read at once from a feed that is demuxed (copied into the demuxer).
const DEMUX_READ: usize = 64 * 1024;

/// How feeds that are not MP4 already are muxed (`--part`, `--fps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOptions {
    /// Longest stretch of video between fragment cuts (keyframes always cut); 0: every frame.
    pub part: Duration,
    /// Frame rate of a bare Annex B stream; `None` times its frames by their arrival.
    pub fps: Option<u32>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            part: Duration::from_millis(200),
            fps: None,
        }
    }
}

/// What the feed turned out to be.
#[derive(Debug)]
enum Feed {
    /// Too few bytes yet to tell.
    Sniff(Vec<u8>),
    Mp4(PushParser),
    Ts(Box<(TsDemuxer, Muxer)>),
    AnnexB(Box<AnnexBFeed>),
}

#[derive(Debug)]
struct AnnexBFeed {
    split: AnnexBSplitter,
    mux: Option<Muxer>,
    frames: u64,
    last_dts: Option<i64>,
    /// Frame duration (90 kHz) the stream's own SPS states, if it does.
    frame_ticks: Option<u32>,
}

/// Bytes needed to tell the kind of feed: a box header, or a TS packet and the next sync byte.
const SNIFF_LEN: usize = PACKET + 1;

#[derive(Debug)]
pub struct LiveInput {
    /// Registry key of the stream it feeds.
    pub stream: usize,
    feed: Feed,
    options: IngestOptions,
    /// Where times of a feed timed by arrival count from.
    epoch: Instant,
    scratch: Vec<u8>,
    pacer: Pacer,
    /// Not read until then: the feed is ahead of real time.
    pub held_until: Option<Instant>,
    /// The current hold was reported (so a timer for it exists).
    hold_reported: bool,
    pub last_input: Instant,
    pub bytes_in: u64,
    pub fragments: u64,
}

/// Whether a feed may be read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Free,
    /// Held until then: set a timer.
    Until(Instant),
    /// Still held, and the timer for it is already set.
    Still,
}

/// How a read went.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes were taken.
    Read(usize),
    /// The other side closed.
    Eof,
    WouldBlock,
}

impl LiveInput {
    pub fn new(stream: usize, now: Instant, options: IngestOptions) -> LiveInput {
        LiveInput {
            stream,
            feed: Feed::Sniff(Vec::new()),
            options,
            epoch: now,
            scratch: Vec::new(),
            pacer: Pacer::default(),
            held_until: None,
            hold_reported: false,
            last_input: now,
            bytes_in: 0,
            fragments: 0,
        }
    }

    /// Whether the feed is held back and must not be read before `now` reaches the hold.
    pub fn hold(&mut self, now: Instant) -> Hold {
        match self.held_until {
            Some(t) if now < t && self.hold_reported => Hold::Still,
            Some(t) if now < t => {
                self.hold_reported = true;
                Hold::Until(t)
            }
            _ => {
                self.held_until = None;
                self.hold_reported = false;
                Hold::Free
            }
        }
    }

    /// True when the feed may end here cleanly (no MP4 box or TS packet partly read).
    pub fn at_boundary(&self) -> bool {
        match &self.feed {
            Feed::Sniff(b) => b.is_empty(),
            Feed::Mp4(p) => p.at_boundary(),
            Feed::Ts(_) | Feed::AnnexB(_) => true,
        }
    }

    /// What the feed is, for logs: `fMP4`, `MPEG-TS`, `Annex B` or `unknown`.
    pub fn kind(&self) -> &'static str {
        match &self.feed {
            Feed::Sniff(_) => "unknown",
            Feed::Mp4(_) => "fMP4",
            Feed::Ts(_) => "MPEG-TS",
            Feed::AnnexB(_) => "Annex B",
        }
    }

    /// Reads at most `max` bytes from `r`: for MP4 straight into the box being assembled, for
    /// other feeds into a buffer the demuxer copies from.
    pub fn read_from<R: Read>(
        &mut self,
        r: &mut R,
        max: usize,
        now: Instant,
        out: &mut Vec<Media>,
    ) -> io::Result<Result<ReadOutcome, PushError>> {
        let Feed::Mp4(parser) = &mut self.feed else {
            let want = match &self.feed {
                Feed::Sniff(b) => SNIFF_LEN - b.len().min(SNIFF_LEN - 1),
                _ => DEMUX_READ,
            };
            let want = want.min(max).max(1);
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.resize(want, 0);
            let n = match read_once(r, &mut scratch) {
                Ok(Some(0)) => {
                    self.scratch = scratch;
                    return Ok(Ok(ReadOutcome::Eof));
                }
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.scratch = scratch;
                    return Ok(Ok(ReadOutcome::WouldBlock));
                }
                Err(e) => {
                    self.scratch = scratch;
                    return Err(e);
                }
            };
            let result = self.feed(&scratch[..n], now, out);
            self.scratch = scratch;
            return Ok(result.map(|()| ReadOutcome::Read(n)));
        };
        let want = parser.want().min(max).min(READ_MAX);
        let n = match read_once(r, parser.spare(want))? {
            Some(0) => return Ok(Ok(ReadOutcome::Eof)),
            Some(n) => n,
            None => return Ok(Ok(ReadOutcome::WouldBlock)),
        };
        self.took(n, now);
        let committed = match &mut self.feed {
            Feed::Mp4(parser) => parser.commit(n),
            _ => Ok(None),
        };
        Ok(match committed {
            Ok(Some(event)) => {
                self.on_event(event, now, out);
                Ok(ReadOutcome::Read(n))
            }
            Ok(None) => Ok(ReadOutcome::Read(n)),
            Err(e) => Err(e),
        })
    }

    /// Takes bytes already in memory.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Media>,
    ) -> Result<(), PushError> {
        self.took(bytes.len(), now);
        let mut events = Vec::new();
        let r = self.feed_events(bytes, now, &mut events);
        for e in events {
            self.on_event(e, now, out);
        }
        r
    }

    /// The feed ended cleanly: what a muxer still holds goes out.
    pub fn finish(&mut self, now: Instant, out: &mut Vec<Media>) {
        let mut events = Vec::new();
        let r = match &mut self.feed {
            Feed::Sniff(_) | Feed::Mp4(_) => Ok(()),
            Feed::Ts(t) => {
                let (demux, mux) = &mut **t;
                let r = demux.finish(&mut |e| ts_event(mux, e, &mut events));
                mux.finish(&mut events);
                r
            }
            Feed::AnnexB(a) => {
                let options = self.options;
                let AnnexBFeed {
                    split,
                    mux,
                    frames,
                    last_dts,
                    frame_ticks,
                } = &mut **a;
                let codec = split.codec();
                let r = split.finish(&mut |au| {
                    annexb_au(
                        codec,
                        mux,
                        (frames, last_dts, frame_ticks),
                        options,
                        au,
                        &mut events,
                    )
                });
                if let Some(m) = mux {
                    m.finish(&mut events);
                }
                r
            }
        };
        if let Err(e) = r {
            log::warn!("the end of the feed: {e}");
        }
        for e in events {
            self.on_event(e, now, out);
        }
    }

    fn feed_events(
        &mut self,
        bytes: &[u8],
        now: Instant,
        events: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        if let Feed::Sniff(head) = &mut self.feed {
            head.extend_from_slice(bytes);
            let Some(feed) = sniff(head, self.options) else {
                return Ok(());
            };
            let head = std::mem::take(head);
            self.feed = feed;
            log::debug!("the feed is {}", self.kind());
            return self.feed_events(&head, now, events);
        }
        let options = self.options;
        let at_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        match &mut self.feed {
            Feed::Sniff(_) => Ok(()),
            Feed::Mp4(parser) => parser.feed(bytes, |e| events.push(e)),
            Feed::Ts(t) => {
                let (demux, mux) = &mut **t;
                demux.push(bytes, &mut |e| ts_event(mux, e, events))
            }
            Feed::AnnexB(a) => {
                let AnnexBFeed {
                    split,
                    mux,
                    frames,
                    last_dts,
                    frame_ticks,
                } = &mut **a;
                let codec = split.codec();
                let mut on_au = |au: AccessUnit| {
                    annexb_au(
                        codec.or_else(|| guess_from(&au)),
                        mux,
                        (frames, last_dts, frame_ticks),
                        options,
                        au,
                        events,
                    )
                };
                split.push(bytes, at_ns, &mut on_au)
            }
        }
    }

    /// Takes what a feed demuxed and muxed elsewhere (an RTMP session) made of `bytes` bytes of
    /// input: counted, paced and passed on like the fragments of a feed read here.
    pub fn deliver(
        &mut self,
        bytes: usize,
        events: &mut Vec<PushEvent>,
        now: Instant,
        out: &mut Vec<Media>,
    ) {
        self.took(bytes, now);
        for e in events.drain(..) {
            self.on_event(e, now, out);
        }
    }

    fn took(&mut self, n: usize, now: Instant) {
        self.bytes_in += n as u64;
        self.last_input = now;
    }

    fn on_event(&mut self, event: PushEvent, now: Instant, out: &mut Vec<Media>) {
        let event = match event {
            PushEvent::Init(init) => {
                // A new session has a clock of its own.
                self.pacer = Pacer::default();
                MediaEvent::Init(init)
            }
            PushEvent::Fragment(f) => {
                self.fragments += 1;
                if let Pace::HoldUntil(t) = self.pacer.on_fragment(now, f.media_ns) {
                    self.held_until = Some(t);
                }
                MediaEvent::Fragment(f)
            }
        };
        out.push(Media {
            stream: self.stream,
            event,
        });
    }
}

/// One read into `buf`: `Some(n)` (0 at the end), `None` when it would block.
fn read_once<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// What the first bytes of a feed say it is, once there are enough of them to tell: an Annex B
/// start code whose NAL unit is not an MP4 box type, a TS sync byte with another one a packet
/// later, else MP4 (whose splitter refuses anything that is not a box).
fn sniff(head: &[u8], options: IngestOptions) -> Option<Feed> {
    let part_ns = u64::try_from(options.part.as_nanos()).unwrap_or(u64::MAX);
    if head.first() == Some(&0x47) {
        if head.len() < SNIFF_LEN {
            return None;
        }
        if head[PACKET] == 0x47 {
            let mux = Muxer::new(part_ns, None, false);
            return Some(Feed::Ts(Box::new((TsDemuxer::default(), mux))));
        }
    }
    if head.len() < 8 {
        return None;
    }
    let box_like = head[4..8]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b' ');
    let start_code = head[..3] == [0, 0, 1] || head[..4] == [0, 0, 0, 1];
    if start_code && !box_like {
        return Some(Feed::AnnexB(Box::new(AnnexBFeed {
            split: AnnexBSplitter::new(None),
            mux: None,
            frames: 0,
            last_dts: None,
            frame_ticks: None,
        })));
    }
    Some(Feed::Mp4(PushParser::default()))
}

fn guess_from(au: &AccessUnit) -> Option<crate::mux::VideoCodec> {
    crate::mux::annexb::nal_units(&au.data)
        .next()
        .and_then(crate::mux::annexb::guess_codec)
}

fn ts_event(mux: &mut Muxer, e: TsEvent<'_>, out: &mut Vec<PushEvent>) -> Result<(), PushError> {
    match e {
        TsEvent::Tracks { video, audio } => {
            mux.set_tracks(video, audio, out);
            Ok(())
        }
        TsEvent::Video { dts, pts, data } => mux.video(dts, pts, data, out),
        TsEvent::Audio { config, pts, frame } => mux.audio(config, pts, frame, out),
        TsEvent::VideoLost => {
            mux.skip_to_keyframe(out);
            Ok(())
        }
    }
}

/// Times an Annex B access unit and muxes it: frame number over `--fps`; else its arrival,
/// spread to at least the frame duration its SPS states (or 1 ms), so frames that came in one
/// burst (a pipe that filled before it was read) still get increasing, even times.
fn annexb_au(
    codec: Option<crate::mux::VideoCodec>,
    mux: &mut Option<Muxer>,
    (frames, last_dts, frame_ticks): (&mut u64, &mut Option<i64>, &mut Option<u32>),
    options: IngestOptions,
    au: AccessUnit,
    out: &mut Vec<PushEvent>,
) -> Result<(), PushError> {
    use crate::mux::annexb::{nal_units, NalKind};
    use crate::mux::VideoCodec;
    let Some(codec) = codec else {
        return Ok(());
    };
    let part_ns = u64::try_from(options.part.as_nanos()).unwrap_or(u64::MAX);
    let mux = mux.get_or_insert_with(|| Muxer::new(part_ns, Some(codec), false));
    if codec == VideoCodec::H264 && options.fps.is_none() {
        let sps = nal_units(&au.data).find(|n| NalKind::of(codec, n) == NalKind::Sps);
        if let Some(sps) = sps.and_then(|n| crate::mux::params::parse_avc_sps(n).ok()) {
            *frame_ticks = sps.frame_ticks;
        }
    }
    let dts = match options.fps {
        Some(fps) => (*frames as i64) * TS_HZ / i64::from(fps.max(1)),
        None => {
            let t = i64::try_from(u128::from(au.arrival) * TS_HZ as u128 / 1_000_000_000)
                .unwrap_or(i64::MAX / 2);
            let step = i64::from(frame_ticks.unwrap_or(90));
            last_dts.map_or(t, |last| t.max(last + step))
        }
    };
    *frames += 1;
    *last_dts = Some(dts);
    mux.video(dts, dts, &au.data, out)
}
