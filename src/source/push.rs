//! The incremental box splitter for a pushed feed (an HTTP publish body or standard input):
//! fragmented MP4 arrives in arbitrary pieces and comes out as one init segment (ftyp+moov) and
//! then one complete fragment at a time (moof+mdat, with any `styp`/`prft`/`emsg` that came
//! just before it), each the moment its last byte arrives. `sidx`, `free`, `mfra` and other
//! boxes a live player has no use for are read and dropped.
//!
//! Sans-I/O, and made so a socket can be read straight into the fragment being assembled: the
//! caller asks how many bytes the current box still needs ([`PushParser::want`]), reads at most
//! that many into [`PushParser::spare`] and reports them with [`PushParser::commit`]. Reads never
//! run past the box they are for, so a finished fragment's buffer is handed on as it is, without
//! a copy. [`PushParser::feed`] is the same for bytes that are already in memory. Sizes are
//! checked against explicit caps before anything is allocated for them, and a box's buffer is
//! reserved up to [`RESERVE_AHEAD`] beyond what has arrived, so a publisher that announces a
//! 16 MiB box and sends nothing more holds 1 MiB, not 16.

use crate::mp4::{
    is_known_top_level, parse_fragment_at, read_box, Boxes, Fragment, InitSegment, Mp4Error,
};
use std::fmt;

/// Largest fragment (prefix boxes + moof + mdat) accepted from a publisher.
pub const MAX_FRAGMENT: usize = 16 << 20;
/// Most bytes reserved for a box beyond what has arrived of it: a box up to this size (nearly
/// every live fragment) is read into one allocation; a larger one grows as it arrives (doubling,
/// so at most one extra copy of what came).
pub const RESERVE_AHEAD: usize = 1 << 20;
/// Largest init segment (ftyp + moov) accepted.
pub const MAX_INIT: usize = 4 << 20;
/// Largest box kept in front of a fragment (styp, prft, emsg), and most bytes of them.
const MAX_PREFIX: usize = 64 * 1024;

/// Why a feed was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// Not fragmented MP4 at all, or a kind of MP4 that cannot be played live (415).
    Unsupported(String),
    /// A box or fragment over the size caps (413).
    TooLarge(String),
    /// Broken MP4: sizes that lie, boxes out of order, a moov or moof that does not parse (400).
    Malformed(String),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Unsupported(m) | PushError::TooLarge(m) | PushError::Malformed(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for PushError {}

/// A complete fragment from the feed.
#[derive(Debug)]
pub struct LiveFragment {
    /// Prefix boxes, moof and mdat, exactly as received.
    pub bytes: Vec<u8>,
    pub fragment: Fragment,
    /// When it starts on the feed's own clock (the main track's decode time), in ns.
    pub media_ns: u64,
}

/// What a completed box produced.
#[derive(Debug)]
pub enum PushEvent {
    /// A new init segment: a session starts (again, when the feed changes its settings).
    Init(InitSegment),
    Fragment(LiveFragment),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a box header: `need` is 8, or 16 once a 64-bit size is announced.
    Header { need: usize },
    /// Reading a box body; `keep` is false for boxes that are dropped.
    Body {
        box_type: [u8; 4],
        left: u64,
        keep: bool,
    },
}

#[derive(Debug)]
pub struct PushParser {
    state: State,
    /// The fragment (or init segment) being assembled; `buf[..filled]` holds received bytes
    /// and anything after is zeroed room for the next read.
    buf: Vec<u8>,
    filled: usize,
    /// Where the box being read starts in `buf`.
    box_start: usize,
    /// Where the moof of the fragment being assembled starts, once one has come.
    moof_at: Option<usize>,
    /// The ftyp box, kept until its moov comes.
    ftyp: Option<Vec<u8>>,
    init: Option<InitSegment>,
    /// Bytes taken so far, for error messages.
    offset: u64,
    /// Once an error was returned, every later call returns it again.
    failed: Option<PushError>,
}

impl Default for PushParser {
    fn default() -> Self {
        PushParser {
            state: State::Header { need: 8 },
            buf: Vec::new(),
            filled: 0,
            box_start: 0,
            moof_at: None,
            ftyp: None,
            init: None,
            offset: 0,
            failed: None,
        }
    }
}

fn fourcc(t: &[u8; 4]) -> String {
    t.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

fn mp4_error(e: &Mp4Error, at: u64) -> PushError {
    PushError::Malformed(format!("{e} (box at byte {at} of the feed)"))
}

impl PushParser {
    /// The current init segment, once one has come.
    pub fn init(&self) -> Option<&InitSegment> {
        self.init.as_ref()
    }

    /// Bytes held for the box or fragment being assembled (its buffer's capacity).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes taken so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// True when no box is partly read: the feed may end here cleanly.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Header { need: 8 } && self.filled == self.box_start
    }

    /// Bytes the current box still needs (at least 1): a read should ask for no more.
    pub fn want(&self) -> usize {
        match self.state {
            State::Header { need } => need - (self.filled - self.box_start),
            State::Body { left, .. } => usize::try_from(left).unwrap_or(usize::MAX).max(1),
        }
    }

    /// Room for the next read: `n` bytes (at most [`want`](Self::want)), zeroed.
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.want());
        if self.buf.len() < self.filled + n {
            self.buf.resize(self.filled + n, 0);
        }
        &mut self.buf[self.filled..self.filled + n]
    }

    /// Takes `n` bytes just written into [`spare`](Self::spare). Returns what they completed.
    pub fn commit(&mut self, n: usize) -> Result<Option<PushEvent>, PushError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        debug_assert!(n <= self.want(), "a read past the current box");
        let n = n.min(self.want()).min(self.buf.len() - self.filled);
        self.offset += n as u64;
        match self.state {
            State::Header { need } => {
                self.filled += n;
                if self.filled - self.box_start < need {
                    return Ok(None);
                }
                self.header_done().map_err(|e| self.fail(e))
            }
            State::Body {
                box_type,
                left,
                keep,
            } => {
                if keep {
                    self.filled += n;
                }
                let left = left - n as u64;
                self.state = State::Body {
                    box_type,
                    left,
                    keep,
                };
                if left > 0 {
                    return Ok(None);
                }
                self.body_done(box_type, keep).map_err(|e| self.fail(e))
            }
        }
    }

    /// Takes bytes that are already in memory (copying them once), handing each event to
    /// `on_event` as it completes.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(PushEvent),
    ) -> Result<(), PushError> {
        while !bytes.is_empty() {
            let n = self.want().min(bytes.len()).min(256 * 1024);
            self.spare(n).copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if let Some(event) = self.commit(n)? {
                on_event(event);
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: PushError) -> PushError {
        self.failed = Some(e.clone());
        self.buf = Vec::new();
        self.filled = 0;
        self.box_start = 0;
        e
    }

    fn header_done(&mut self) -> Result<Option<PushEvent>, PushError> {
        let h = &self.buf[self.box_start..self.filled];
        let at = self.offset - h.len() as u64;
        let mut box_type = [0u8; 4];
        box_type.copy_from_slice(&h[4..8]);
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (size, header) = match size32 {
            1 if h.len() < 16 => {
                self.state = State::Header { need: 16 };
                return Ok(None);
            }
            1 => {
                let mut s = [0u8; 8];
                s.copy_from_slice(&h[8..16]);
                (u64::from_be_bytes(s), 16u64)
            }
            0 => {
                return Err(PushError::Malformed(format!(
                    "the '{}' box at byte {at} has size 0 (\"to the end of the file\"), which a \
                     live feed cannot have",
                    fourcc(&box_type)
                )))
            }
            n => (u64::from(n), 8u64),
        };
        if size < header {
            return Err(PushError::Malformed(format!(
                "the '{}' box at byte {at} says it is {size} bytes, less than its own header",
                fourcc(&box_type)
            )));
        }
        if self.init.is_none() && self.ftyp.is_none() && at == 0 && !is_known_top_level(&box_type) {
            return Err(PushError::Unsupported(format!(
                "the feed does not start like an MP4 file (first box '{}'), MPEG-TS or H.264/H.265 \
                 Annex B; send fragmented MP4 (ffmpeg: -f mp4 -movflags \
                 frag_keyframe+empty_moov+default_base_moof) or MPEG-TS (ffmpeg: -f mpegts)",
                fourcc(&box_type)
            )));
        }
        if matches!(&box_type, b"ftyp" | b"moov") && self.moof_at.is_none() && self.box_start > 0 {
            // Prefix boxes (a styp) kept for a fragment that never came: a new init segment
            // follows instead, so they are dropped.
            let header = self.filled - self.box_start;
            self.buf.copy_within(self.box_start..self.filled, 0);
            self.box_start = 0;
            self.filled = header;
        }
        let keep = self.admit(&box_type, size, at)?;
        if !keep {
            // The header is not part of anything kept.
            self.filled = self.box_start;
        } else if box_type == *b"moof" {
            self.moof_at = Some(self.box_start);
        }
        let left = size - header;
        self.state = State::Body {
            box_type,
            left,
            keep,
        };
        if left == 0 {
            return self.body_done(box_type, keep);
        }
        if keep {
            // One allocation for the whole box (sized by a length already checked against the
            // caps) when it is at most RESERVE_AHEAD; the body is then read straight into it.
            let rest = (self.box_start + size as usize).saturating_sub(self.buf.len());
            self.buf.reserve(rest.min(RESERVE_AHEAD));
        }
        Ok(None)
    }

    /// Decides what a box whose header just arrived is: kept (part of the init or the
    /// fragment) or dropped; refuses boxes that are out of place or too large.
    fn admit(&self, t: &[u8; 4], size: u64, at: u64) -> Result<bool, PushError> {
        let name = fourcc(t);
        let pending = self.box_start as u64;
        let too_large = |what: &str, cap: usize| {
            PushError::TooLarge(format!(
                "{what} at byte {at} would be {} bytes, over the {} MiB cap",
                pending + size,
                cap >> 20
            ))
        };
        match t {
            b"ftyp" | b"moov" => {
                if self.moof_at.is_some() || pending > 0 {
                    return Err(PushError::Malformed(format!(
                        "a '{name}' box at byte {at} in the middle of a fragment"
                    )));
                }
                if size > MAX_INIT as u64 {
                    return Err(too_large("the init segment", MAX_INIT));
                }
                Ok(true)
            }
            b"styp" | b"prft" | b"emsg" => {
                if self.init.is_none() || self.moof_at.is_some() {
                    return Ok(false);
                }
                Ok(pending + size <= MAX_PREFIX as u64)
            }
            b"moof" => {
                if self.init.is_none() {
                    return Err(PushError::Malformed(format!(
                        "a fragment (moof at byte {at}) before the init segment (ftyp+moov)"
                    )));
                }
                if self.moof_at.is_some() {
                    return Err(PushError::Malformed(format!(
                        "a moof at byte {at} right after another moof, without its mdat"
                    )));
                }
                if pending + size > MAX_FRAGMENT as u64 {
                    return Err(too_large("a fragment", MAX_FRAGMENT));
                }
                Ok(true)
            }
            b"mdat" => {
                if self.init.is_none() {
                    return Err(PushError::Unsupported(format!(
                        "media data (mdat at byte {at}) before any moov: this is a plain MP4, not a \
                         fragmented one (ffmpeg: -movflags frag_keyframe+empty_moov+default_base_moof)"
                    )));
                }
                if self.moof_at.is_none() {
                    return Err(PushError::Malformed(format!(
                        "an mdat at byte {at} with no moof before it"
                    )));
                }
                if pending + size > MAX_FRAGMENT as u64 {
                    return Err(too_large("a fragment", MAX_FRAGMENT));
                }
                Ok(true)
            }
            _ if self.moof_at.is_some() => Err(PushError::Malformed(format!(
                "a '{name}' box at byte {at} between a moof and its mdat"
            ))),
            _ => Ok(false),
        }
    }

    fn body_done(&mut self, t: [u8; 4], keep: bool) -> Result<Option<PushEvent>, PushError> {
        let at = self.offset - (self.filled - self.box_start) as u64;
        self.state = State::Header { need: 8 };
        if !keep {
            self.filled = self.box_start;
            return Ok(None);
        }
        match &t {
            b"ftyp" => {
                self.ftyp = Some(self.take_box());
                Ok(None)
            }
            b"moov" => {
                let moov = self.take_box();
                let init =
                    InitSegment::parse(self.ftyp.as_deref(), &moov).map_err(|e| match e {
                        Mp4Error::NotFragmented
                        | Mp4Error::NoTracks { .. }
                        | Mp4Error::NoPlayableTrack { .. } => {
                            PushError::Unsupported(format!("{e} (moov at byte {at} of the feed)"))
                        }
                        e => mp4_error(&e, at),
                    })?;
                if !has_mvex(&moov) {
                    return Err(PushError::Unsupported(format!(
                        "the moov at byte {at} of the feed describes a plain MP4 (no mvex), not \
                         a fragmented one; publish with ffmpeg's -f mp4 -movflags \
                         frag_keyframe+empty_moov+default_base_moof"
                    )));
                }
                self.ftyp = None;
                self.init = Some(init.clone());
                Ok(Some(PushEvent::Init(init)))
            }
            b"mdat" => {
                let Some(moof_at) = self.moof_at.take() else {
                    return Err(PushError::Malformed("an mdat without its moof".into()));
                };
                let mut bytes = std::mem::take(&mut self.buf);
                bytes.truncate(self.filled);
                self.filled = 0;
                self.box_start = 0;
                let start = self.offset - bytes.len() as u64;
                let Some(init) = &self.init else {
                    return Err(PushError::Malformed(
                        "a fragment before the init segment".into(),
                    ));
                };
                let fragment = parse_fragment_at(&bytes, moof_at, init)
                    .map_err(|e| mp4_error(&e, start + moof_at as u64))?;
                let media_ns = media_ns(&fragment, init);
                Ok(Some(PushEvent::Fragment(LiveFragment {
                    bytes,
                    fragment,
                    media_ns,
                })))
            }
            // styp, prft, emsg, moof: kept in front of the mdat to come.
            _ => {
                self.box_start = self.filled;
                Ok(None)
            }
        }
    }

    /// The box just completed, out of the buffer.
    fn take_box(&mut self) -> Vec<u8> {
        let b = self.buf[self.box_start..self.filled].to_vec();
        self.buf.clear();
        self.filled = 0;
        self.box_start = 0;
        b
    }
}

/// When a fragment starts on its feed's clock, in ns: the main track's decode time (or the
/// first run's, for a fragment without it).
pub(crate) fn media_ns(f: &Fragment, init: &InitSegment) -> u64 {
    let run = f
        .runs
        .iter()
        .find(|r| r.track == init.main_track)
        .or_else(|| f.runs.first());
    run.map_or(0, |r| {
        let ts = init.tracks.get(r.track).map_or(1, |t| t.timescale.max(1));
        u64::try_from(u128::from(r.decode_time) * 1_000_000_000 / u128::from(ts))
            .unwrap_or(u64::MAX)
    })
}

/// Whether a moov box (alone in `moov`) announces fragments with an `mvex`.
fn has_mvex(moov: &[u8]) -> bool {
    let Ok(b) = read_box(moov, 0, moov.len()) else {
        return false;
    };
    Boxes::children(moov, &b).any(|c| c.is_ok_and(|c| &c.box_type == b"mvex"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::Movie;

    const SAMPLE: &[u8] = include_bytes!("../../web/sample.mp4");

    fn boxed(t: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(t);
        b.extend_from_slice(body);
        b
    }

    /// Runs `feed` through the zero-copy path in reads of `split` bytes.
    fn split(feed: &[u8], split: usize) -> (Vec<PushEvent>, Result<(), PushError>) {
        let mut p = PushParser::default();
        let mut events = Vec::new();
        let mut at = 0;
        while at < feed.len() {
            let n = p.want().min(split).min(feed.len() - at);
            p.spare(n).copy_from_slice(&feed[at..at + n]);
            at += n;
            match p.commit(n) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => {}
                Err(e) => return (events, Err(e)),
            }
        }
        (events, Ok(()))
    }

    fn fragments(events: &[PushEvent]) -> Vec<&[u8]> {
        events
            .iter()
            .filter_map(|e| match e {
                PushEvent::Fragment(f) => Some(&f.bytes[..]),
                PushEvent::Init(_) => None,
            })
            .collect()
    }

    #[test]
    fn every_split_gives_the_init_and_the_original_fragments() {
        let movie = Movie::parse(SAMPLE).unwrap();
        let want: Vec<&[u8]> = movie
            .fragments
            .iter()
            .map(|f| &SAMPLE[f.range.clone()])
            .collect();
        for n in [1, 3, 8, 9, 100, 4096, 1 << 20] {
            let (events, r) = split(SAMPLE, n);
            r.unwrap();
            let PushEvent::Init(init) = &events[0] else {
                panic!("init first")
            };
            assert_eq!(init.bytes, movie.init, "split {n}");
            assert_eq!(fragments(&events), want, "split {n}");
        }
        let mut p = PushParser::default();
        let mut copied = 0;
        p.feed(SAMPLE, |e| {
            copied += usize::from(matches!(e, PushEvent::Fragment(_)))
        })
        .unwrap();
        assert_eq!(copied, want.len());
        assert!(p.at_boundary());
    }

    #[test]
    fn prefix_boxes_travel_with_their_fragment_and_index_boxes_are_dropped() {
        let movie = Movie::parse(SAMPLE).unwrap();
        let first = movie.fragments[0].range.clone();
        let styp = boxed(b"styp", b"msdhmsdh");
        let prft = boxed(b"prft", &[0; 16]);
        let mut feed = SAMPLE[..first.start].to_vec();
        feed.extend(boxed(b"free", &[1; 20]));
        feed.extend(boxed(b"sidx", &[2; 40]));
        feed.extend(&styp);
        feed.extend(&prft);
        feed.extend(&SAMPLE[first.clone()]);
        feed.extend(boxed(b"mfra", &[3; 1000]));
        let (events, r) = split(&feed, 5);
        r.unwrap();
        let got = fragments(&events);
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0][..styp.len()], &styp[..]);
        assert_eq!(&got[0][styp.len() + prft.len()..], &SAMPLE[first]);
        let PushEvent::Fragment(f) = &events[1] else {
            panic!()
        };
        assert!(f.fragment.keyframe);
        assert_eq!(f.media_ns, 0);
    }

    #[test]
    fn a_second_init_starts_a_new_session() {
        let movie = Movie::parse(SAMPLE).unwrap();
        let mut feed = SAMPLE[..movie.fragments[1].range.end].to_vec();
        // An encoder that restarts after writing a styp for a fragment it never sent.
        feed.extend(boxed(b"styp", b"msdhmsdh"));
        feed.extend_from_slice(&SAMPLE[..movie.fragments[1].range.end]);
        let (events, r) = split(&feed, 777);
        r.unwrap();
        let kinds: Vec<bool> = events
            .iter()
            .map(|e| matches!(e, PushEvent::Init(_)))
            .collect();
        assert_eq!(kinds, [true, false, false, true, false, false]);
    }

    #[test]
    fn bad_feeds_are_refused_with_the_right_kind_of_error() {
        let init_end = Movie::parse(SAMPLE).unwrap().fragments[0].range.start;
        let init = &SAMPLE[..init_end];
        let err = |feed: &[u8]| split(feed, 13).1.unwrap_err();
        assert!(matches!(
            err(b"hello world, not a video"),
            PushError::Unsupported(_)
        ));
        assert!(
            matches!(err(&[0x47; 400]), PushError::Unsupported(_)),
            "MPEG-TS"
        );
        let mut plain = init.to_vec();
        plain.extend(boxed(b"mdat", &[0; 10]));
        assert!(
            matches!(err(&plain), PushError::Malformed(_)),
            "mdat without moof"
        );
        assert!(matches!(
            err(&boxed(b"mdat", &[0; 10])),
            PushError::Unsupported(_)
        ));
        assert!(matches!(
            err(&boxed(b"moof", &[0; 10])),
            PushError::Malformed(_)
        ));
        let mut lie = init.to_vec();
        lie.extend([0, 0, 0, 3]);
        lie.extend(b"moof");
        assert!(matches!(err(&lie), PushError::Malformed(_)));
        let mut zero = init.to_vec();
        zero.extend([0, 0, 0, 0]);
        zero.extend(b"mdat");
        assert!(matches!(err(&zero), PushError::Malformed(_)));
        let mut big = init.to_vec();
        big.extend(((MAX_FRAGMENT + 1) as u32).to_be_bytes());
        big.extend(b"moof");
        assert!(matches!(err(&big), PushError::TooLarge(_)));
        let mut wide = init.to_vec();
        wide.extend([0, 0, 0, 1]);
        wide.extend(b"mdat");
        wide.extend(u64::MAX.to_be_bytes());
        assert!(
            matches!(err(&wide), PushError::Malformed(_)),
            "mdat before moof"
        );
        let mut huge_init = vec![0, 0, 0, 1];
        huge_init.extend(b"moov");
        huge_init.extend(u64::MAX.to_be_bytes());
        assert!(matches!(err(&huge_init), PushError::TooLarge(_)));
        // After an error every call fails the same way and the buffer is gone.
        let mut p = PushParser::default();
        assert!(p.feed(b"not a video at all", |_| {}).is_err());
        assert!(p.feed(SAMPLE, |_| {}).is_err());
    }

    #[test]
    fn a_dropped_box_of_any_claimed_size_is_read_in_bounded_pieces() {
        let init_end = Movie::parse(SAMPLE).unwrap().fragments[0].range.start;
        let mut feed = SAMPLE[..init_end].to_vec();
        feed.extend([0, 0, 0, 1]);
        feed.extend(b"free");
        feed.extend((1u64 << 40).to_be_bytes());
        let mut p = PushParser::default();
        p.feed(&feed, |_| {}).unwrap();
        for _ in 0..100 {
            let n = p.want().min(64 * 1024);
            p.spare(n);
            p.commit(n).unwrap();
        }
        assert!(p.buf.capacity() < 1 << 20, "{}", p.buf.capacity());
    }

    /// A kept box announced at the fragment cap holds only what came of it plus the reserve.
    #[test]
    fn an_announced_box_reserves_a_bounded_amount_ahead() {
        let init_end = Movie::parse(SAMPLE).unwrap().fragments[0].range.start;
        let mut feed = SAMPLE[..init_end].to_vec();
        let size = (MAX_FRAGMENT - 64) as u32;
        feed.extend(size.to_be_bytes());
        feed.extend(b"moof");
        let mut p = PushParser::default();
        p.feed(&feed, |_| {}).unwrap();
        assert!(
            p.buffered() <= init_end + RESERVE_AHEAD + 64,
            "{}",
            p.buffered()
        );
        // As it arrives, the buffer grows with it, never far beyond it.
        let mut got = 0;
        while got < 4 << 20 {
            let n = p.want().min(256 * 1024);
            p.spare(n);
            p.commit(n).unwrap();
            got += n;
            assert!(
                p.buffered() <= 2 * (init_end + got) + RESERVE_AHEAD,
                "{}",
                p.buffered()
            );
        }
    }
}
