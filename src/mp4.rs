//! MP4 (ISO BMFF) parsing for fragmented files: splits a file into its init segment (ftyp+moov)
//! and its fragments (moof+mdat), reads what the player needs from the moov (tracks, timescales,
//! the MSE codecs string, picture size) and from each moof (per-track decode time, duration,
//! whether it starts with a keyframe), and rewrites a fragment's `tfdt` and `mfhd` so a looping
//! playout keeps its timeline increasing.
//!
//! Pure: works on a byte slice, does no I/O and never panics on bad input. Every error names the
//! byte offset of the box it is about.

use std::fmt;
use std::ops::Range;

/// The ffmpeg command that turns an ordinary MP4 into the fragmented form ssecast plays.
pub const FIX_COMMAND: &str =
    "ffmpeg -i input.mp4 -c copy -movflags frag_keyframe+empty_moov+default_base_moof output.mp4";

/// Why a file could not be used. `offset` is where in the file the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mp4Error {
    /// Fewer bytes remain than a box header or a field needs.
    Truncated { offset: usize, what: &'static str },
    /// A box's size field is smaller than its header or runs past its parent.
    BadBoxSize {
        offset: usize,
        box_type: [u8; 4],
        size: u64,
    },
    /// The first box is not one an MP4 file starts with.
    NotMp4 { first: [u8; 4] },
    /// No `moov` box was found.
    NoMoov,
    /// A `moov` with sample tables but no `moof` fragments: a plain, non-fragmented MP4.
    NotFragmented,
    /// The `moov` holds no usable track.
    NoTracks { offset: usize },
    /// The file has an init segment but no fragments to play.
    NoFragments,
    /// A required child box is missing.
    MissingBox {
        offset: usize,
        parent: &'static str,
        child: &'static str,
    },
    /// A `moof` is not followed by its `mdat`.
    MoofWithoutMdat { offset: usize },
    /// A `mdat` that carries no sample bytes.
    EmptyMdat { offset: usize },
    /// A fragment refers to a track the `moov` does not describe.
    UnknownTrack { offset: usize, track_id: u32 },
    /// No fragment starts with a keyframe, so no viewer could ever start playing.
    NoKeyframe,
    /// The fragments add up to no time at all, so there is nothing to pace playout by.
    NoDuration,
    /// A track whose clock has 0 ticks per second.
    ZeroTimescale { offset: usize },
}

impl fmt::Display for Mp4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mp4Error::Truncated { offset, what } => {
                write!(f, "file is truncated at byte {offset}: {what} runs past the end")
            }
            Mp4Error::BadBoxSize {
                offset,
                box_type,
                size,
            } => write!(
                f,
                "box '{}' at byte {offset} has an impossible size {size}",
                fourcc(box_type)
            ),
            Mp4Error::NotMp4 { first } => write!(
                f,
                "not an MP4 file: it starts with '{}' where an MP4 starts with an 'ftyp' box",
                fourcc(first)
            ),
            Mp4Error::NoMoov => write!(
                f,
                "no 'moov' box (init segment) found; convert the file with: {FIX_COMMAND}"
            ),
            Mp4Error::NotFragmented => write!(
                f,
                "this MP4 is not fragmented (it has no 'moof' boxes); convert it with: {FIX_COMMAND}"
            ),
            Mp4Error::NoTracks { offset } => {
                write!(f, "the 'moov' box at byte {offset} holds no audio or video track")
            }
            Mp4Error::NoFragments => write!(
                f,
                "the file has an init segment but no fragments (moof+mdat); convert it with: {FIX_COMMAND}"
            ),
            Mp4Error::MissingBox {
                offset,
                parent,
                child,
            } => write!(
                f,
                "the '{parent}' box at byte {offset} has no '{child}' box inside it"
            ),
            Mp4Error::MoofWithoutMdat { offset } => {
                write!(f, "the 'moof' box at byte {offset} is not followed by an 'mdat' box")
            }
            Mp4Error::EmptyMdat { offset } => {
                write!(f, "the 'mdat' box at byte {offset} is empty")
            }
            Mp4Error::UnknownTrack { offset, track_id } => write!(
                f,
                "the fragment at byte {offset} refers to track {track_id}, which the 'moov' does not describe"
            ),
            Mp4Error::ZeroTimescale { offset } => {
                write!(f, "the 'mdhd' box at byte {offset} gives its track a timescale of 0")
            }
            Mp4Error::NoDuration => write!(
                f,
                "the fragments carry no sample durations, so the video has no length; convert with: {FIX_COMMAND}"
            ),
            Mp4Error::NoKeyframe => write!(
                f,
                "no fragment starts with a keyframe; re-encode or convert with: {FIX_COMMAND}"
            ),
        }
    }
}

impl std::error::Error for Mp4Error {}

fn fourcc(t: &[u8; 4]) -> String {
    t.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// One box: its type and where its header and body are in the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxRef {
    pub box_type: [u8; 4],
    pub start: usize,
    pub body: usize,
    pub end: usize,
}

impl BoxRef {
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// Iterates the boxes laid out back to back in `data[start..end]`.
pub struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    failed: bool,
}

impl<'a> Boxes<'a> {
    pub fn new(data: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(data.len());
        Boxes {
            data,
            pos: range.start,
            end,
            failed: false,
        }
    }

    /// The children of a box.
    pub fn children(data: &'a [u8], parent: &BoxRef) -> Self {
        Boxes::new(data, parent.body..parent.end)
    }
}

impl Iterator for Boxes<'_> {
    type Item = Result<BoxRef, Mp4Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let r = read_box(self.data, self.pos, self.end);
        match r {
            Ok(b) => self.pos = b.end,
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

/// Reads the box header at `pos`; the box must end by `end`.
pub fn read_box(data: &[u8], pos: usize, end: usize) -> Result<BoxRef, Mp4Error> {
    let truncated = Mp4Error::Truncated {
        offset: pos,
        what: "a box header",
    };
    if end.saturating_sub(pos) < 8 {
        return Err(truncated);
    }
    let size32 = be32(data, pos).ok_or(truncated.clone())?;
    let mut box_type = [0u8; 4];
    box_type.copy_from_slice(&data[pos + 4..pos + 8]);
    let (size, header) = match size32 {
        0 => ((end - pos) as u64, 8usize),
        1 => {
            if end - pos < 16 {
                return Err(truncated);
            }
            (be64(data, pos + 8).ok_or(truncated)?, 16)
        }
        n => (u64::from(n), 8),
    };
    let bad = Mp4Error::BadBoxSize {
        offset: pos,
        box_type,
        size,
    };
    if size < header as u64 {
        return Err(bad);
    }
    let box_end = match usize::try_from(size).ok().and_then(|s| pos.checked_add(s)) {
        Some(e) if e <= end => e,
        Some(_) if end == data.len() => {
            return Err(Mp4Error::Truncated {
                offset: pos,
                what: "a box",
            })
        }
        _ => return Err(bad),
    };
    Ok(BoxRef {
        box_type,
        start: pos,
        body: pos + header,
        end: box_end,
    })
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(d: &[u8], at: usize) -> Option<u64> {
    let b = d.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

fn find_child(data: &[u8], parent: &BoxRef, t: &[u8; 4]) -> Result<Option<BoxRef>, Mp4Error> {
    for b in Boxes::children(data, parent) {
        let b = b?;
        if &b.box_type == t {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

fn require_child(
    data: &[u8],
    parent: &BoxRef,
    t: &'static str,
    parent_name: &'static str,
) -> Result<BoxRef, Mp4Error> {
    let mut want = [0u8; 4];
    want.copy_from_slice(&t.as_bytes()[..4]);
    find_child(data, parent, &want)?.ok_or(Mp4Error::MissingBox {
        offset: parent.start,
        parent: parent_name,
        child: t,
    })
}

fn field<T>(v: Option<T>, offset: usize, what: &'static str) -> Result<T, Mp4Error> {
    v.ok_or(Mp4Error::Truncated { offset, what })
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

/// A track as described by the moov.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: u32,
    pub kind: TrackKind,
    pub timescale: u32,
    /// The RFC 6381 codecs string for this track's first sample entry, if the parser knows it.
    pub codec: Option<String>,
    /// The sample entry's four-character code (`avc1`, `mp4a`, ...).
    pub sample_entry: [u8; 4],
    pub width: u16,
    pub height: u16,
    default_duration: u32,
    default_flags: u32,
}

/// What one `traf` of a fragment says about its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    /// Index into [`Movie::tracks`].
    pub track: usize,
    /// Base media decode time from `tfdt`, in the track's timescale.
    pub decode_time: u64,
    /// Sum of the sample durations, in the track's timescale.
    pub duration: u64,
    /// Offset of the `tfdt` decode time field, relative to the fragment start.
    tfdt_at: usize,
    tfdt_v1: bool,
    pub first_sample_sync: bool,
    pub samples: u32,
}

/// One fragment: a `moof` and the `mdat` after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Byte range in the file, from the moof's first byte to the mdat's last.
    pub range: Range<usize>,
    /// Offset of the `mfhd` sequence number, relative to the fragment start.
    mfhd_seq_at: usize,
    pub runs: Vec<TrackRun>,
    /// True when the video track's first sample is a sync sample (or there is no video).
    pub keyframe: bool,
}

/// A parsed fragmented MP4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    /// ftyp (if any) followed by moov: the MSE initialization segment.
    pub init: Vec<u8>,
    pub tracks: Vec<Track>,
    pub fragments: Vec<Fragment>,
    /// The track that paces playout: the video track if there is one.
    pub main_track: usize,
    /// When each fragment starts, in main-track ticks from the first fragment (computed once).
    starts: Vec<u64>,
    /// The loop period (computed once, see `compute_loop_period`).
    period: (u64, u32),
}

impl Movie {
    /// Parses a whole file.
    pub fn parse(data: &[u8]) -> Result<Movie, Mp4Error> {
        let mut ftyp: Option<BoxRef> = None;
        let mut moov: Option<BoxRef> = None;
        let mut pending_moof: Option<BoxRef> = None;
        let mut moofs: Vec<(BoxRef, BoxRef)> = Vec::new();
        let mut first = true;
        for b in Boxes::new(data, 0..data.len()) {
            let b = match b {
                Ok(b) => b,
                Err(e) if first => {
                    let mut t = [0u8; 4];
                    if let Some(s) = data.get(4..8) {
                        t.copy_from_slice(s);
                    }
                    if !is_known_top_level(&t) {
                        return Err(Mp4Error::NotMp4 { first: t });
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if first && !is_known_top_level(&b.box_type) {
                return Err(Mp4Error::NotMp4 { first: b.box_type });
            }
            first = false;
            match &b.box_type {
                b"ftyp" if ftyp.is_none() => ftyp = Some(b),
                b"moov" if moov.is_none() => moov = Some(b),
                b"moof" => {
                    if let Some(m) = pending_moof.take() {
                        return Err(Mp4Error::MoofWithoutMdat { offset: m.start });
                    }
                    pending_moof = Some(b);
                }
                b"mdat" => {
                    if let Some(m) = pending_moof.take() {
                        if b.end == b.body {
                            return Err(Mp4Error::EmptyMdat { offset: b.start });
                        }
                        moofs.push((m, b));
                    }
                }
                _ => {}
            }
        }
        if first {
            return Err(Mp4Error::Truncated {
                offset: 0,
                what: "the first box",
            });
        }
        if let Some(m) = pending_moof {
            return Err(Mp4Error::MoofWithoutMdat { offset: m.start });
        }
        let moov = moov.ok_or(Mp4Error::NoMoov)?;
        let tracks = parse_moov(data, &moov)?;
        if moofs.is_empty() {
            if find_child(data, &moov, b"mvex")?.is_none() {
                return Err(Mp4Error::NotFragmented);
            }
            return Err(Mp4Error::NoFragments);
        }
        let main_track = tracks
            .iter()
            .position(|t| t.kind == TrackKind::Video)
            .unwrap_or(0);
        let mut fragments = Vec::with_capacity(moofs.len());
        for (moof, mdat) in moofs {
            fragments.push(parse_fragment(data, &moof, &mdat, &tracks, main_track)?);
        }
        if !fragments.iter().any(|f| f.keyframe) {
            return Err(Mp4Error::NoKeyframe);
        }
        let mut init = Vec::new();
        if let Some(f) = ftyp {
            init.extend_from_slice(&data[f.range()]);
        }
        init.extend_from_slice(&data[moov.range()]);
        let mut movie = Movie {
            init,
            tracks,
            fragments,
            main_track,
            starts: Vec::new(),
            period: (0, 1),
        };
        movie.period = movie.compute_loop_period();
        if movie.period.0 == 0 {
            return Err(Mp4Error::NoDuration);
        }
        movie.starts = movie.compute_starts();
        Ok(movie)
    }

    /// The MSE MIME type with the codecs of every track the parser knows.
    pub fn mime(&self) -> String {
        let has_video = self.tracks.iter().any(|t| t.kind == TrackKind::Video);
        let codecs: Vec<&str> = self
            .tracks
            .iter()
            .filter_map(|t| t.codec.as_deref())
            .collect();
        let base = if has_video { "video/mp4" } else { "audio/mp4" };
        if codecs.is_empty() {
            base.to_string()
        } else {
            format!("{base}; codecs=\"{}\"", codecs.join(","))
        }
    }

    /// Picture size of the first video track, if any.
    pub fn resolution(&self) -> Option<(u16, u16)> {
        self.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video && t.width > 0)
            .map(|t| (t.width, t.height))
    }

    /// Duration of `track` over the whole file, in its timescale: from the first fragment's
    /// decode time to the end of the last one.
    pub fn track_span(&self, track: usize) -> u64 {
        let mut first = None;
        let mut last_end = 0u64;
        for r in self.fragments.iter().flat_map(|f| &f.runs) {
            if r.track == track {
                first.get_or_insert(r.decode_time);
                last_end = last_end.max(r.decode_time.saturating_add(r.duration));
            }
        }
        first.map_or(0, |f| last_end.saturating_sub(f))
    }

    /// The loop period as (ticks, timescale): the shortest track span, so that on every loop each
    /// track's timeline moves on by the same time and no track ever gets a gap (a longer track
    /// overlaps its own tail by a few ms, which MSE handles by replacing the overlapped frames).
    pub fn loop_period(&self) -> (u64, u32) {
        self.period
    }

    fn compute_loop_period(&self) -> (u64, u32) {
        let mut best: Option<(u64, u32)> = None;
        for (i, t) in self.tracks.iter().enumerate() {
            let span = self.track_span(i);
            if span == 0 || t.timescale == 0 {
                continue;
            }
            let shorter = match best {
                None => true,
                Some((bs, bts)) => {
                    u128::from(span) * u128::from(bts) < u128::from(bs) * u128::from(t.timescale)
                }
            };
            if shorter {
                best = Some((span, t.timescale));
            }
        }
        let main = (
            self.track_span(self.main_track),
            self.tracks[self.main_track].timescale,
        );
        match best {
            // Tracks of very different lengths: a gap in the short one is unavoidable, so keep
            // the main track (which paces playout) gapless and its fragments in order.
            Some((s, ts))
                if u128::from(s) * u128::from(main.1) * 10
                    < u128::from(main.0) * u128::from(ts) * 9 =>
            {
                main
            }
            Some(b) => b,
            None => (0, 1),
        }
    }

    /// Total duration of the file in seconds.
    pub fn duration_secs(&self) -> f64 {
        let (ticks, ts) = self.loop_period();
        ticks as f64 / f64::from(ts)
    }

    /// Bytes of all fragments.
    pub fn fragment_bytes(&self) -> usize {
        self.fragments.iter().map(|f| f.range.len()).sum()
    }

    /// When fragment `i` starts relative to the first fragment, as (ticks, timescale) of the main
    /// track.
    pub fn fragment_start(&self, i: usize) -> (u64, u32) {
        let ts = self.tracks[self.main_track].timescale.max(1);
        (self.starts.get(i).copied().unwrap_or(0), ts)
    }

    /// Each fragment's start in main-track ticks: from its main-track run, or, for a fragment
    /// that carries only other tracks (one moof per track), from its first run converted to the
    /// main timescale; never earlier than the fragment before it.
    fn compute_starts(&self) -> Vec<u64> {
        let main_ts = u128::from(self.tracks[self.main_track].timescale.max(1));
        let bases: Vec<u64> = (0..self.tracks.len())
            .map(|t| self.first_decode_time(t))
            .collect();
        let mut prev = 0u64;
        self.fragments
            .iter()
            .map(|f| {
                let run = f
                    .runs
                    .iter()
                    .find(|r| r.track == self.main_track)
                    .or_else(|| f.runs.first());
                let t = run.map_or(prev, |r| {
                    let ticks = u128::from(r.decode_time.saturating_sub(bases[r.track]));
                    let ts = u128::from(self.tracks[r.track].timescale.max(1));
                    u64::try_from(ticks * main_ts / ts).unwrap_or(u64::MAX)
                });
                prev = prev.max(t);
                prev
            })
            .collect()
    }

    fn first_decode_time(&self, track: usize) -> u64 {
        self.fragments
            .iter()
            .flat_map(|f| &f.runs)
            .find(|r| r.track == track)
            .map_or(0, |r| r.decode_time)
    }
}

fn is_known_top_level(t: &[u8; 4]) -> bool {
    matches!(
        t,
        b"ftyp"
            | b"styp"
            | b"moov"
            | b"moof"
            | b"mdat"
            | b"free"
            | b"skip"
            | b"sidx"
            | b"wide"
            | b"uuid"
            | b"pdin"
            | b"meta"
            | b"prft"
            | b"emsg"
    )
}

fn parse_moov(data: &[u8], moov: &BoxRef) -> Result<Vec<Track>, Mp4Error> {
    let mut tracks = Vec::new();
    let mut trex: Vec<(u32, u32, u32)> = Vec::new();
    if let Some(mvex) = find_child(data, moov, b"mvex")? {
        for b in Boxes::children(data, &mvex) {
            let b = b?;
            if &b.box_type == b"trex" {
                // version/flags(4) track_ID(4) default_sample_description_index(4)
                // default_sample_duration(4) default_sample_size(4) default_sample_flags(4)
                let id = field(be32(data, b.body + 4), b.start, "the trex box")?;
                let dur = field(be32(data, b.body + 12), b.start, "the trex box")?;
                let flags = field(be32(data, b.body + 20), b.start, "the trex box")?;
                trex.push((id, dur, flags));
            }
        }
    }
    for trak in Boxes::children(data, moov) {
        let trak = trak?;
        if &trak.box_type != b"trak" {
            continue;
        }
        let mut track = parse_trak(data, &trak)?;
        if let Some(&(_, dur, flags)) = trex.iter().find(|t| t.0 == track.id) {
            track.default_duration = dur;
            track.default_flags = flags;
        }
        tracks.push(track);
    }
    if tracks.is_empty() {
        return Err(Mp4Error::NoTracks { offset: moov.start });
    }
    Ok(tracks)
}

fn parse_trak(data: &[u8], trak: &BoxRef) -> Result<Track, Mp4Error> {
    let tkhd = require_child(data, trak, "tkhd", "trak")?;
    let version = field(data.get(tkhd.body).copied(), tkhd.start, "the tkhd box")?;
    // track_ID follows version/flags and the creation/modification times (4 or 8 bytes each).
    let id_at = tkhd.body + if version == 1 { 20 } else { 12 };
    let id = field(be32(data, id_at), tkhd.start, "the tkhd box")?;
    let mdia = require_child(data, trak, "mdia", "trak")?;
    let mdhd = require_child(data, &mdia, "mdhd", "mdia")?;
    let v = field(data.get(mdhd.body).copied(), mdhd.start, "the mdhd box")?;
    let ts_at = mdhd.body + if v == 1 { 20 } else { 12 };
    let timescale = field(be32(data, ts_at), mdhd.start, "the mdhd box")?;
    if timescale == 0 {
        return Err(Mp4Error::ZeroTimescale { offset: mdhd.start });
    }
    let hdlr = require_child(data, &mdia, "hdlr", "mdia")?;
    let handler = data.get(hdlr.body + 8..hdlr.body + 12);
    let kind = match handler {
        Some(b"vide") => TrackKind::Video,
        Some(b"soun") => TrackKind::Audio,
        Some(_) => TrackKind::Other,
        None => {
            return Err(Mp4Error::Truncated {
                offset: hdlr.start,
                what: "the hdlr box",
            })
        }
    };
    let mut track = Track {
        id,
        kind,
        timescale,
        codec: None,
        sample_entry: *b"    ",
        width: 0,
        height: 0,
        default_duration: 0,
        default_flags: 0,
    };
    let stsd = find_child(data, &mdia, b"minf")?
        .map(|minf| find_child(data, &minf, b"stbl"))
        .transpose()?
        .flatten()
        .map(|stbl| find_child(data, &stbl, b"stsd"))
        .transpose()?
        .flatten();
    if let Some(stsd) = stsd {
        // version/flags(4) entry_count(4), then the sample entries.
        if let Some(entry) = Boxes::new(data, stsd.body + 8..stsd.end).next() {
            let entry = entry?;
            track.sample_entry = entry.box_type;
            describe_sample_entry(data, &entry, &mut track)?;
        }
    }
    Ok(track)
}

/// Size of the fixed part of a visual / audio sample entry, before its child boxes.
const VISUAL_ENTRY_LEN: usize = 78;
const AUDIO_ENTRY_LEN: usize = 28;

fn describe_sample_entry(data: &[u8], entry: &BoxRef, track: &mut Track) -> Result<(), Mp4Error> {
    let t = &entry.box_type;
    let visual = matches!(
        t,
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"vp08" | b"vp09" | b"av01"
    );
    if visual {
        // reserved(6) data_reference_index(2) pre_defined/reserved(16) width(2) height(2)
        track.width = be16(data, entry.body + 24).unwrap_or(0);
        track.height = be16(data, entry.body + 26).unwrap_or(0);
        let children = entry.body + VISUAL_ENTRY_LEN..entry.end;
        for c in Boxes::new(data, children) {
            let c = c?;
            let body = data.get(c.body..c.end).unwrap_or(&[]);
            let codec = match &c.box_type {
                b"avcC" => avc_codec(t, body),
                b"hvcC" => hevc_codec(t, body),
                b"vpcC" => vp9_codec(t, body),
                b"av1C" => av1_codec(body),
                _ => None,
            };
            if codec.is_some() {
                track.codec = codec;
                break;
            }
        }
        if track.codec.is_none() && t == b"vp08" {
            track.codec = Some("vp8".to_string());
        }
        return Ok(());
    }
    match t {
        b"mp4a" => {
            let children = entry.body + AUDIO_ENTRY_LEN..entry.end;
            for c in Boxes::new(data, children) {
                let c = c?;
                if &c.box_type == b"esds" {
                    let body = data.get(c.body..c.end).unwrap_or(&[]);
                    track.codec = Some(esds_codec(body).unwrap_or_else(|| "mp4a.40.2".into()));
                }
            }
            if track.codec.is_none() {
                track.codec = Some("mp4a.40.2".into());
            }
        }
        b"Opus" => track.codec = Some("opus".into()),
        b"fLaC" => track.codec = Some("flac".into()),
        b"ac-3" => track.codec = Some("ac-3".into()),
        b"ec-3" => track.codec = Some("ec-3".into()),
        _ => {}
    }
    Ok(())
}

/// `avc1.PPCCLL` from an AVCDecoderConfigurationRecord.
fn avc_codec(entry: &[u8; 4], avcc: &[u8]) -> Option<String> {
    let p = avcc.get(1..4)?;
    Some(format!(
        "{}.{:02x}{:02x}{:02x}",
        fourcc(entry),
        p[0],
        p[1],
        p[2]
    ))
}

/// `hvc1.P.C.TL.B0...` from an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 annex E).
fn hevc_codec(entry: &[u8; 4], h: &[u8]) -> Option<String> {
    if h.len() < 13 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(h[1] >> 6)];
    let tier = if h[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = h[1] & 0x1f;
    let compat = u32::from_be_bytes([h[2], h[3], h[4], h[5]]).reverse_bits();
    let level = h[12];
    let mut s = format!(
        "{}.{space}{profile}.{compat:x}.{tier}{level}",
        fourcc(entry)
    );
    let constraints = &h[6..12];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:x}"));
    }
    Some(s)
}

/// `vp09.PP.LL.DD` from a VPCodecConfigurationRecord (full box).
fn vp9_codec(entry: &[u8; 4], v: &[u8]) -> Option<String> {
    let b = v.get(4..7)?;
    let name = if entry == b"vp08" { "vp08" } else { "vp09" };
    Some(format!("{name}.{:02}.{:02}.{:02}", b[0], b[1], b[2] >> 4))
}

/// `av01.P.LLT.DD` from an AV1CodecConfigurationRecord.
fn av1_codec(a: &[u8]) -> Option<String> {
    let b = a.get(1..3)?;
    let profile = b[0] >> 5;
    let level = b[0] & 0x1f;
    let tier = if b[1] & 0x80 != 0 { 'H' } else { 'M' };
    let high = b[1] & 0x40 != 0;
    let twelve = b[1] & 0x20 != 0;
    let depth = match (high, twelve) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// Reads one MPEG-4 descriptor header (tag and variable-length size) at `at`.
fn descriptor(d: &[u8], mut at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    at += 1;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = *d.get(at)?;
        at += 1;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Some((tag, at, len))
}

/// `mp4a.OO[.A]` from an esds box body (version/flags then an ES_Descriptor).
fn esds_codec(esds: &[u8]) -> Option<String> {
    let (tag, mut at, _) = descriptor(esds, 4)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *esds.get(at + 2)?;
    at += 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*esds.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, at, _) = descriptor(esds, at)?;
    if tag != 0x04 {
        return None;
    }
    let oti = *esds.get(at)?;
    if oti != 0x40 {
        return Some(format!("mp4a.{oti:02x}"));
    }
    // objectTypeIndication(1) streamType etc(4) maxBitrate(4) avgBitrate(4) = 13 bytes.
    let Some((0x05, dsi, _)) = descriptor(esds, at + 13) else {
        return Some("mp4a.40.2".into());
    };
    let b0 = *esds.get(dsi)?;
    let mut aot = b0 >> 3;
    if aot == 31 {
        let b1 = *esds.get(dsi + 1)?;
        aot = 32 + (((b0 & 0x07) << 3) | (b1 >> 5));
    }
    Some(format!("mp4a.40.{aot}"))
}

const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

fn parse_fragment(
    data: &[u8],
    moof: &BoxRef,
    mdat: &BoxRef,
    tracks: &[Track],
    main_track: usize,
) -> Result<Fragment, Mp4Error> {
    let base = moof.start;
    let mfhd = require_child(data, moof, "mfhd", "moof")?;
    field(be32(data, mfhd.body + 4), mfhd.start, "the mfhd box")?;
    let mut runs = Vec::new();
    for traf in Boxes::children(data, moof) {
        let traf = traf?;
        if &traf.box_type != b"traf" {
            continue;
        }
        runs.push(parse_traf(data, &traf, base, tracks)?);
    }
    if runs.is_empty() {
        return Err(Mp4Error::MissingBox {
            offset: moof.start,
            parent: "moof",
            child: "traf",
        });
    }
    let has_video = tracks[main_track].kind == TrackKind::Video;
    let keyframe = !has_video
        || runs
            .iter()
            .find(|r| r.track == main_track)
            .is_some_and(|r| r.first_sample_sync);
    Ok(Fragment {
        range: moof.start..mdat.end,
        mfhd_seq_at: mfhd.body + 4 - base,
        runs,
        keyframe,
    })
}

fn parse_traf(
    data: &[u8],
    traf: &BoxRef,
    base: usize,
    tracks: &[Track],
) -> Result<TrackRun, Mp4Error> {
    let tfhd = require_child(data, traf, "tfhd", "traf")?;
    let tfhd_flags = field(be32(data, tfhd.body), tfhd.start, "the tfhd box")? & 0x00ff_ffff;
    let track_id = field(be32(data, tfhd.body + 4), tfhd.start, "the tfhd box")?;
    let track = tracks
        .iter()
        .position(|t| t.id == track_id)
        .ok_or(Mp4Error::UnknownTrack {
            offset: traf.start,
            track_id,
        })?;
    let mut at = tfhd.body + 8;
    if tfhd_flags & 0x01 != 0 {
        at += 8;
    }
    if tfhd_flags & 0x02 != 0 {
        at += 4;
    }
    let mut default_duration = tracks[track].default_duration;
    if tfhd_flags & 0x08 != 0 {
        default_duration = field(be32(data, at), tfhd.start, "the tfhd box")?;
        at += 4;
    }
    if tfhd_flags & 0x10 != 0 {
        at += 4;
    }
    let mut default_flags = tracks[track].default_flags;
    if tfhd_flags & 0x20 != 0 {
        default_flags = field(be32(data, at), tfhd.start, "the tfhd box")?;
    }
    let tfdt = require_child(data, traf, "tfdt", "traf")?;
    let tfdt_v1 = field(data.get(tfdt.body).copied(), tfdt.start, "the tfdt box")? == 1;
    let decode_time = if tfdt_v1 {
        field(be64(data, tfdt.body + 4), tfdt.start, "the tfdt box")?
    } else {
        u64::from(field(
            be32(data, tfdt.body + 4),
            tfdt.start,
            "the tfdt box",
        )?)
    };
    let mut duration = 0u64;
    let mut samples = 0u32;
    let mut first_flags: Option<u32> = None;
    for trun in Boxes::children(data, traf) {
        let trun = trun?;
        if &trun.box_type != b"trun" {
            continue;
        }
        let err = |_| Mp4Error::Truncated {
            offset: trun.start,
            what: "the trun box",
        };
        let flags = field(be32(data, trun.body), trun.start, "the trun box")? & 0x00ff_ffff;
        let count = field(be32(data, trun.body + 4), trun.start, "the trun box")?;
        let mut at = trun.body + 8;
        if flags & 0x01 != 0 {
            at += 4;
        }
        let mut first_sample_flags = None;
        if flags & 0x04 != 0 {
            first_sample_flags = Some(field(be32(data, at), trun.start, "the trun box")?);
            at += 4;
        }
        let per_sample = [0x100u32, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&f| flags & f != 0)
            .count()
            * 4;
        let table = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(per_sample))
            .and_then(|n| n.checked_add(at))
            .ok_or(Mp4Error::Truncated {
                offset: trun.start,
                what: "the trun box",
            })?;
        if table > trun.end {
            return Err(Mp4Error::Truncated {
                offset: trun.start,
                what: "the trun sample table",
            });
        }
        if per_sample == 0 {
            // Every sample takes the defaults: no table to walk (count may be 4 billion).
            if count > 0 && first_flags.is_none() {
                first_flags = Some(first_sample_flags.unwrap_or(default_flags));
            }
            duration = duration
                .saturating_add(u64::from(count).saturating_mul(u64::from(default_duration)));
            samples = samples.saturating_add(count);
            continue;
        }
        // INVARIANT: the table fits in the box (checked above), so this loop is bounded by the
        // file's size.
        for i in 0..count {
            let mut f = at;
            let sample_duration = if flags & 0x100 != 0 {
                let d = be32(data, f).ok_or(()).map_err(err)?;
                f += 4;
                d
            } else {
                default_duration
            };
            if flags & 0x200 != 0 {
                f += 4;
            }
            let sample_flags = if flags & 0x400 != 0 {
                be32(data, f).ok_or(()).map_err(err)?
            } else if i == 0 {
                first_sample_flags.unwrap_or(default_flags)
            } else {
                default_flags
            };
            if first_flags.is_none() {
                first_flags = Some(if i == 0 {
                    first_sample_flags.unwrap_or(sample_flags)
                } else {
                    sample_flags
                });
            }
            duration = duration.saturating_add(u64::from(sample_duration));
            at += per_sample;
        }
        samples = samples.saturating_add(count);
    }
    Ok(TrackRun {
        track,
        decode_time,
        duration,
        tfdt_at: tfdt.body + 4 - base,
        tfdt_v1,
        first_sample_sync: first_flags.is_some_and(|f| f & SAMPLE_IS_NON_SYNC == 0),
        samples,
    })
}

/// Writes `fragment`'s bytes into `out` with every track's decode time moved on by `loops` loop
/// periods and the `mfhd` sequence number set to `sequence`. Returns false when a 32-bit (version
/// 0) `tfdt` could not hold the new time and wrapped.
pub fn render_fragment(
    movie: &Movie,
    data: &[u8],
    index: usize,
    loops: u64,
    sequence: u32,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let Some(frag) = movie.fragments.get(index) else {
        return true;
    };
    let Some(bytes) = data.get(frag.range.clone()) else {
        return true;
    };
    out.extend_from_slice(bytes);
    let (period, period_ts) = movie.loop_period();
    let mut fits = true;
    if let Some(seq) = out.get_mut(frag.mfhd_seq_at..frag.mfhd_seq_at + 4) {
        seq.copy_from_slice(&sequence.to_be_bytes());
    }
    for run in &frag.runs {
        let ts = movie.tracks[run.track].timescale;
        let shift =
            u128::from(loops) * u128::from(period) * u128::from(ts) / u128::from(period_ts.max(1));
        let t = u128::from(run.decode_time) + shift;
        if run.tfdt_v1 {
            let t = u64::try_from(t).unwrap_or(u64::MAX);
            if let Some(f) = out.get_mut(run.tfdt_at..run.tfdt_at + 8) {
                f.copy_from_slice(&t.to_be_bytes());
            }
        } else {
            fits &= t <= u128::from(u32::MAX);
            let t = (t & u128::from(u32::MAX)) as u32;
            if let Some(f) = out.get_mut(run.tfdt_at..run.tfdt_at + 4) {
                f.copy_from_slice(&t.to_be_bytes());
            }
        }
    }
    fits
}

/// Reads a fragment's `mfhd` sequence number and each `tfdt` decode time back out of its bytes
/// (as rendered by [`render_fragment`]); for checks and tests.
pub fn fragment_times(bytes: &[u8]) -> Result<(u32, Vec<u64>), Mp4Error> {
    let mut moof = None;
    for b in Boxes::new(bytes, 0..bytes.len()) {
        let b = b?;
        if &b.box_type == b"moof" {
            moof = Some(b);
            break;
        }
    }
    let moof = moof.ok_or(Mp4Error::MissingBox {
        offset: 0,
        parent: "fragment",
        child: "moof",
    })?;
    let mfhd = require_child(bytes, &moof, "mfhd", "moof")?;
    let seq = field(be32(bytes, mfhd.body + 4), mfhd.start, "the mfhd box")?;
    let mut times = Vec::new();
    for traf in Boxes::children(bytes, &moof) {
        let traf = traf?;
        if &traf.box_type != b"traf" {
            continue;
        }
        let tfdt = require_child(bytes, &traf, "tfdt", "traf")?;
        let t = if bytes.get(tfdt.body) == Some(&1) {
            field(be64(bytes, tfdt.body + 4), tfdt.start, "the tfdt box")?
        } else {
            u64::from(field(
                be32(bytes, tfdt.body + 4),
                tfdt.start,
                "the tfdt box",
            )?)
        };
        times.push(t);
    }
    Ok((seq, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = include_bytes!("../web/sample.mp4");

    fn boxed(t: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(t);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn sample_splits_into_init_and_keyframe_fragments() {
        let m = Movie::parse(SAMPLE).expect("sample parses");
        assert_eq!(&m.init[4..8], b"ftyp");
        assert_eq!(m.fragments.len(), 6);
        assert!(m.fragments.iter().all(|f| f.keyframe));
        for f in &m.fragments {
            assert_eq!(&SAMPLE[f.range.start + 4..f.range.start + 8], b"moof");
            assert_eq!(f.runs.len(), 2);
        }
        // Fragments tile the file between the moov and the trailing mfra.
        for w in m.fragments.windows(2) {
            assert_eq!(w[0].range.end, w[1].range.start);
        }
        let init_len = m.init.len();
        assert_eq!(m.fragments[0].range.start, init_len);
    }

    #[test]
    fn sample_codecs_and_picture() {
        let m = Movie::parse(SAMPLE).expect("sample parses");
        assert_eq!(m.mime(), "video/mp4; codecs=\"avc1.4d401e,mp4a.40.2\"");
        assert_eq!(m.resolution(), Some((640, 360)));
        assert_eq!(m.tracks[m.main_track].kind, TrackKind::Video);
        assert_eq!(m.tracks[m.main_track].timescale, 12800);
        let secs = m.duration_secs();
        assert!((5.9..=6.1).contains(&secs), "duration {secs}");
    }

    #[test]
    fn sample_fragments_are_one_second_gops_back_to_back() {
        let m = Movie::parse(SAMPLE).expect("sample parses");
        let mut expected_start = 0;
        for (i, f) in m.fragments.iter().enumerate() {
            let run = f.runs.iter().find(|r| r.track == m.main_track).unwrap();
            assert_eq!(run.samples, 25, "fragment {i}");
            // 25 frames of 512 ticks; the first one is stretched by ffmpeg's audio priming.
            assert!(
                (12800..=13100).contains(&run.duration),
                "fragment {i}: {}",
                run.duration
            );
            assert_eq!(m.fragment_start(i), (expected_start, 12800), "fragment {i}");
            expected_start += run.duration;
        }
        // The loop is the shorter track (here the audio, by 4 µs), so neither track has a gap.
        let (period, ts) = m.loop_period();
        let period_secs = period as f64 / f64::from(ts);
        let video_secs = expected_start as f64 / 12800.0;
        assert!(period_secs <= video_secs && video_secs - period_secs < 0.001);
    }

    #[test]
    fn tfdt_rewrite_moves_time_on_by_whole_loops() {
        let m = Movie::parse(SAMPLE).expect("sample parses");
        let mut out = Vec::new();
        assert!(render_fragment(&m, SAMPLE, 0, 0, 1, &mut out));
        let (seq0, t0) = fragment_times(&out).unwrap();
        assert_eq!(seq0, 1);
        assert!(render_fragment(&m, SAMPLE, 0, 3, 19, &mut out));
        let (seq3, t3) = fragment_times(&out).unwrap();
        assert_eq!(seq3, 19);
        let (period, period_ts) = m.loop_period();
        for (i, run) in m.fragments[0].runs.iter().enumerate() {
            let ts = m.tracks[run.track].timescale;
            let want = 3 * period * u64::from(ts) / u64::from(period_ts);
            assert_eq!(t3[i] - t0[i], want, "track {i}");
        }
        // Only the rewritten fields differ from the source bytes.
        let src = &SAMPLE[m.fragments[0].range.clone()];
        assert_eq!(out.len(), src.len());
        let differing = out.iter().zip(src).filter(|(a, b)| a != b).count();
        assert!(differing <= 2 * 8 + 4, "{differing} bytes changed");
    }

    #[test]
    fn loop_never_leaves_a_gap_in_any_track() {
        let m = Movie::parse(SAMPLE).expect("sample parses");
        let mut out = Vec::new();
        let last = m.fragments.len() - 1;
        render_fragment(&m, SAMPLE, last, 0, 6, &mut out);
        let (_, end_times) = fragment_times(&out).unwrap();
        render_fragment(&m, SAMPLE, 0, 1, 7, &mut out);
        let (_, next_times) = fragment_times(&out).unwrap();
        for (i, run) in m.fragments[last].runs.iter().enumerate() {
            let end = end_times[i] + run.duration;
            assert!(
                next_times[i] <= end,
                "track {i}: gap {} > {end}",
                next_times[i]
            );
            let ts = u64::from(m.tracks[run.track].timescale);
            assert!(
                end - next_times[i] < ts / 10,
                "track {i}: overlap too large"
            );
        }
    }

    #[test]
    fn plain_mp4_is_refused_with_the_fix() {
        // ftyp + moov with an empty trak-less body but a sample table would be a plain file;
        // the simplest plain file is ftyp+moov(with trak)+mdat and no mvex.
        let moov = Movie::parse(SAMPLE).unwrap().init;
        let ftyp_len = u32::from_be_bytes([moov[0], moov[1], moov[2], moov[3]]) as usize;
        let mut file = moov[..ftyp_len].to_vec();
        // Rebuild the moov without mvex.
        let moov_box = read_box(&moov, ftyp_len, moov.len()).unwrap();
        let mut body = Vec::new();
        for c in Boxes::children(&moov, &moov_box) {
            let c = c.unwrap();
            if &c.box_type != b"mvex" {
                body.extend_from_slice(&moov[c.range()]);
            }
        }
        file.extend(boxed(b"moov", &body));
        file.extend(boxed(b"mdat", &[1, 2, 3]));
        let err = Movie::parse(&file).unwrap_err();
        assert_eq!(err, Mp4Error::NotFragmented);
        assert!(err
            .to_string()
            .contains("frag_keyframe+empty_moov+default_base_moof"));
    }

    #[test]
    fn not_mp4_is_named() {
        let err = Movie::parse(b"<html>hello this is not a video</html>").unwrap_err();
        assert!(matches!(err, Mp4Error::NotMp4 { .. }), "{err:?}");
        assert!(err.to_string().contains("not an MP4"));
        assert!(Movie::parse(b"").is_err());
        assert!(Movie::parse(b"\0\0").is_err());
    }

    #[test]
    fn truncated_file_names_the_offset() {
        let cut = &SAMPLE[..SAMPLE.len() / 2];
        let err = Movie::parse(cut).unwrap_err();
        match err {
            Mp4Error::Truncated { offset, .. } => assert!(offset > 1000 && offset < cut.len()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn lying_box_sizes_are_errors_not_panics() {
        let mut f = boxed(b"ftyp", b"isom\0\0\0\0");
        // size 1 with a 64-bit size larger than the file
        let mut big = 1u32.to_be_bytes().to_vec();
        big.extend_from_slice(b"moov");
        big.extend_from_slice(&u64::MAX.to_be_bytes());
        f.extend(&big);
        assert!(Movie::parse(&f).is_err());
        // size smaller than the header
        let mut small = boxed(b"ftyp", b"isom");
        small.extend_from_slice(&4u32.to_be_bytes());
        small.extend_from_slice(b"moov");
        assert!(matches!(
            Movie::parse(&small),
            Err(Mp4Error::BadBoxSize { offset: 12, .. })
        ));
        // size 0 (to end of file) on a moov with no tracks
        let mut zero = boxed(b"ftyp", b"isom");
        zero.extend_from_slice(&0u32.to_be_bytes());
        zero.extend_from_slice(b"moov");
        assert!(matches!(
            Movie::parse(&zero),
            Err(Mp4Error::NoTracks { .. })
        ));
    }

    #[test]
    fn empty_mdat_and_lonely_moof_are_errors() {
        let m = Movie::parse(SAMPLE).unwrap();
        let mut f = m.init.clone();
        let first = &m.fragments[0];
        let moof = read_box(SAMPLE, first.range.start, SAMPLE.len()).unwrap();
        f.extend_from_slice(&SAMPLE[moof.range()]);
        let at = f.len();
        f.extend(boxed(b"mdat", &[]));
        assert_eq!(Movie::parse(&f), Err(Mp4Error::EmptyMdat { offset: at }));
        f.truncate(at);
        assert!(matches!(
            Movie::parse(&f),
            Err(Mp4Error::MoofWithoutMdat { .. })
        ));
    }

    /// The sample with fragment 1 replaced by a fragment that carries only its audio track, as
    /// files with one moof per track have.
    fn with_audio_only_fragment() -> Vec<u8> {
        let m = Movie::parse(SAMPLE).unwrap();
        let f1 = &m.fragments[1];
        let moof = read_box(SAMPLE, f1.range.start, SAMPLE.len()).unwrap();
        let mut body = Vec::new();
        for c in Boxes::children(SAMPLE, &moof) {
            let c = c.unwrap();
            let is_video_traf = &c.box_type == b"traf" && {
                let tfhd = require_child(SAMPLE, &c, "tfhd", "traf").unwrap();
                be32(SAMPLE, tfhd.body + 4) == Some(m.tracks[m.main_track].id)
            };
            if !is_video_traf {
                body.extend_from_slice(&SAMPLE[c.range()]);
            }
        }
        let mut file = SAMPLE[..f1.range.start].to_vec();
        file.extend(boxed(b"moof", &body));
        file.extend_from_slice(&SAMPLE[moof.end..]);
        file
    }

    #[test]
    fn fragments_without_the_main_track_keep_their_place_in_time() {
        let file = with_audio_only_fragment();
        let m = Movie::parse(&file).unwrap();
        assert_eq!(m.fragments[1].runs.len(), 1);
        let starts: Vec<u64> = (0..m.fragments.len())
            .map(|i| m.fragment_start(i).0)
            .collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
        // The audio-only fragment starts about where the video of fragment 1 did (1 s).
        assert!((12_000..14_000).contains(&starts[1]), "{starts:?}");
    }

    #[test]
    fn a_trun_of_four_billion_default_samples_parses_at_once() {
        let m = Movie::parse(SAMPLE).unwrap();
        let first = m.fragments[0].range.start;
        let mut file = SAMPLE.to_vec();
        let moof = read_box(&file, first, file.len()).unwrap();
        let traf = Boxes::children(&file, &moof)
            .map(Result::unwrap)
            .find(|b| &b.box_type == b"traf")
            .unwrap();
        let trun = require_child(&file, &traf, "trun", "traf").unwrap();
        // flags: data offset only; no per-sample fields; 2^32 - 1 samples.
        file[trun.body..trun.body + 4].copy_from_slice(&1u32.to_be_bytes());
        file[trun.body + 4..trun.body + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        let parsed = Movie::parse(&file).unwrap();
        assert_eq!(parsed.fragments[0].runs[0].samples, u32::MAX);
    }

    #[test]
    fn zero_timescale_is_refused() {
        let mut file = SAMPLE.to_vec();
        let ftyp = read_box(&file, 0, file.len()).unwrap();
        let moov = read_box(&file, ftyp.end, file.len()).unwrap();
        let trak = Boxes::children(&file, &moov)
            .map(Result::unwrap)
            .find(|b| &b.box_type == b"trak")
            .unwrap();
        let mdia = require_child(&file, &trak, "mdia", "trak").unwrap();
        let mdhd = require_child(&file, &mdia, "mdhd", "mdia").unwrap();
        let at = mdhd.body + if file[mdhd.body] == 1 { 20 } else { 12 };
        file[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            Movie::parse(&file),
            Err(Mp4Error::ZeroTimescale { offset: mdhd.start })
        );
    }

    #[test]
    fn codec_strings_for_other_codecs() {
        let hvcc = [1u8, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        assert_eq!(
            hevc_codec(b"hvc1", &hvcc).as_deref(),
            Some("hvc1.1.6.L93.90")
        );
        assert_eq!(
            vp9_codec(b"vp09", &[1, 0, 0, 0, 0, 31, 0x80]).as_deref(),
            Some("vp09.00.31.08")
        );
        assert_eq!(
            av1_codec(&[0x81, 0x08, 0x0c]).as_deref(),
            Some("av01.0.08M.08")
        );
        // ES_Descriptor -> DecoderConfigDescriptor(0x40) -> DecoderSpecificInfo AOT 5 (HE-AAC)
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0, 1, 0, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0x05, 0x02, 0x28, 0x00,
        ];
        assert_eq!(esds_codec(&esds).as_deref(), Some("mp4a.40.5"));
    }
}
