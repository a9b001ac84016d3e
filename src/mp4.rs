//! MP4 (ISO BMFF) parsing for fragmented files: splits a file into its init segment (ftyp+moov)
//! and its fragments (moof+mdat), reads what the player needs from the moov (tracks, timescales,
//! the MSE codecs string, picture size) and from each moof (per-track decode time, duration,
//! whether it starts with a keyframe), and rewrites a fragment's `tfdt` and `mfhd` so a looping
//! playout keeps its timeline increasing; for B-frame files without an edit list, passes after
//! the first also leave out the audio that starts before the first frame is shown, so every
//! track joins itself seamlessly at the loop point (see `LeadIn`).
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
    /// The `trex` sample defaults.
    defaults: SampleDefaults,
    /// The `trak` has an `edts` (edit list), which moves its presentation timeline.
    edit_list: bool,
}

/// What a sample is when its `trun` row leaves a field out: the `tfhd` defaults, else the
/// track's `trex` ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SampleDefaults {
    duration: u32,
    size: u32,
    flags: u32,
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
    /// When the run's first sample in presentation order is shown, relative to `decode_time`
    /// (the smallest decode offset plus composition offset; 0 without composition offsets).
    pub first_presented: i64,
    /// Offset of the `tfdt` decode time field, relative to the fragment start.
    tfdt_at: usize,
    tfdt_v1: bool,
    /// Offsets of the `traf` box and of its first `trun` box, relative to the fragment start.
    traf_at: usize,
    trun_at: Option<usize>,
    defaults: SampleDefaults,
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
    /// Offset of the `mdat` box and of its body, relative to the fragment start.
    mdat_at: usize,
    mdat_body_at: usize,
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
    /// What passes after the first leave out of the first fragment (see [`LeadIn`]), ordered
    /// from the last sample table in the fragment to the first.
    lead_in: Vec<LeadIn>,
}

/// Samples of one track at the start of the first fragment that every pass but the first leaves
/// out: the ones that end no later than the main track shows its first frame.
///
/// With B-frames a video's first frame is shown a few frame durations after its decode time 0,
/// and a file fragmented with `empty_moov` has no edit list to say so; its audio starts at 0 (ffmpeg
/// stretches the first audio sample back to 0). Looped as it is, the audio of a new pass would
/// start before the previous pass's last frames are shown; a browser starts a new coded frame
/// group for every track at that audio, replacing those frames and the ones decoded after them,
/// and the new pass has no frame to show there until its first one: a hole and lost frames at
/// every loop point. Without the lead-in, every track of a pass starts exactly where it ended on
/// the pass before, as if the file were one long recording, and audio and video stay in step.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeadIn {
    /// Index into the first fragment's `runs`.
    run: usize,
    /// Ticks of the left-out samples: the run's decode time moves on by this much.
    duration: u64,
    /// Offsets relative to the fragment start: the `traf` and `trun` boxes, the trun's sample
    /// count and data offset fields, and its first sample table row.
    traf_at: usize,
    trun_at: usize,
    count_at: usize,
    data_offset_at: usize,
    rows_at: usize,
    /// The trun's sample count and data offset without the left-out samples.
    count: u32,
    data_offset: i32,
    /// Bytes of sample table rows the left-out samples take.
    cut: usize,
}

/// Longest lead-in looked for, in samples (1024-sample AAC frames at 48 kHz: 87 s).
const MAX_LEAD_IN_SAMPLES: u32 = 4096;

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
            lead_in: Vec::new(),
        };
        movie.lead_in = movie.find_lead_in(data)?;
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

    /// How much of `track` every pass after the first plays, in its timescale: its span without
    /// the lead-in those passes leave out.
    fn repeat_span(&self, track: usize) -> u64 {
        let skipped: u64 = self
            .lead_in
            .iter()
            .filter(|l| self.fragments[0].runs[l.run].track == track)
            .map(|l| l.duration)
            .sum();
        self.track_span(track).saturating_sub(skipped)
    }

    /// Ticks of `track` that passes after the first leave out at its start (see `LeadIn`), in
    /// its timescale: the audio a B-frame file without an edit list plays before its first
    /// frame is shown.
    pub fn lead_in_ticks(&self, track: usize) -> u64 {
        self.track_span(track) - self.repeat_span(track)
    }

    /// The loop period as (ticks, timescale): the shortest track span (without the lead-in that
    /// passes after the first leave out), so that on every loop each track's timeline moves on by
    /// the same time and no track ever gets a gap (a longer track overlaps its own tail by a few
    /// ms, which MSE handles by replacing the overlapped frames).
    pub fn loop_period(&self) -> (u64, u32) {
        self.period
    }

    fn compute_loop_period(&self) -> (u64, u32) {
        let mut best: Option<(u64, u32)> = None;
        for (i, t) in self.tracks.iter().enumerate() {
            let span = self.repeat_span(i);
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

    /// Finds the samples passes after the first leave out (see [`LeadIn`]). There are none unless
    /// the main track's first frame is shown after its decode time (composition offsets) and no
    /// track has an edit list, so every other file loops byte for byte as it always did. A track
    /// qualifies when its first run is in the first fragment and its first `trun` has a data
    /// offset, no composition offsets and no first-sample flags (audio as ffmpeg writes it); at
    /// least one of its samples always stays.
    fn find_lead_in(&self, data: &[u8]) -> Result<Vec<LeadIn>, Mp4Error> {
        let mut found = Vec::new();
        let Some(first) = self.fragments.first() else {
            return Ok(found);
        };
        let main_ts = u128::from(self.tracks[self.main_track].timescale);
        let shown = first
            .runs
            .iter()
            .find(|r| r.track == self.main_track)
            .and_then(|r| u64::try_from(r.first_presented).ok().map(|p| (r, p)));
        let Some((main_run, delay)) = shown else {
            return Ok(found);
        };
        if delay == 0 || self.tracks.iter().any(|t| t.edit_list) {
            return Ok(found);
        }
        // When the main track shows its first frame, in its ticks.
        let shown_at = u128::from(main_run.decode_time) + u128::from(delay);
        // Cutting rows moves every byte after them inside the moof, and other traf boxes (sdtp,
        // sbgp, subs, saiz/saio/senc) list samples or point into the moof: only moofs whose
        // trafs hold nothing but tfhd, tfdt and trun are touched.
        let moof = read_box(data, first.range.start, first.range.end)?;
        for traf in Boxes::children(data, &moof) {
            let traf = traf?;
            if &traf.box_type != b"traf" {
                continue;
            }
            for child in Boxes::children(data, &traf) {
                if !matches!(&child?.box_type, b"tfhd" | b"tfdt" | b"trun") {
                    return Ok(found);
                }
            }
        }
        for (i, run) in first.runs.iter().enumerate() {
            let earlier = first.runs[..i].iter().any(|r| r.track == run.track);
            // Only audio: a sample of any other track may be one a later sample depends on.
            if run.track == self.main_track
                || earlier
                || self.tracks[run.track].kind != TrackKind::Audio
            {
                continue;
            }
            let Some(trun_at) = run.trun_at else { continue };
            let trun = read_box(data, first.range.start + trun_at, first.range.end)?;
            let t = Trun::read(data, &trun)?;
            let Some(data_offset_at) = t.data_offset_at else {
                continue;
            };
            if t.flags & TRUN_CTO != 0 || t.first_sample_flags.is_some() {
                continue;
            }
            let ts = u128::from(self.tracks[run.track].timescale);
            let mut end = u128::from(run.decode_time);
            let (mut skipped, mut duration, mut bytes) = (0u32, 0u64, 0u64);
            // Bounded by MAX_LEAD_IN_SAMPLES whatever the sample count says.
            while skipped < t.count.saturating_sub(1).min(MAX_LEAD_IN_SAMPLES) {
                let sample = t.sample(data, skipped, &run.defaults)?;
                end += u128::from(sample.duration);
                if end * main_ts > shown_at * ts {
                    break;
                }
                skipped += 1;
                duration += u64::from(sample.duration);
                bytes += u64::from(sample.size);
            }
            if duration == 0 {
                continue;
            }
            // The data offset is signed; the left-out samples' bytes stay in the mdat, unused.
            let old_offset = field(be32(data, data_offset_at), trun.start, "the trun box")? as i32;
            let data_offset = i64::from(old_offset)
                .checked_add(i64::try_from(bytes).unwrap_or(i64::MAX))
                .and_then(|o| i32::try_from(o).ok());
            let Some(data_offset) = data_offset else {
                continue;
            };
            let base = first.range.start;
            found.push(LeadIn {
                run: i,
                duration,
                traf_at: run.traf_at,
                trun_at,
                count_at: trun.body + 4 - base,
                data_offset_at: data_offset_at - base,
                rows_at: t.rows_at - base,
                count: t.count - skipped,
                data_offset,
                cut: t.row_len * skipped as usize,
            });
        }
        // The fragment keeps its length: the moof shrinks by the rows cut and the mdat grows by
        // as much, so every box on the way must have a size field that can say so.
        let cut: usize = found.iter().map(|l| l.cut).sum();
        let frag = &data[first.range.clone()];
        let resizable = |at: usize, by: i64| box_size_after(frag, at, by).is_some();
        let fits = resizable(0, -(cut as i64))
            && found.iter().all(|l| {
                resizable(l.traf_at, -(l.cut as i64)) && resizable(l.trun_at, -(l.cut as i64))
            })
            && (be32(frag, first.mdat_at) == Some(0) || resizable(first.mdat_at, cut as i64));
        if !fits {
            found.clear();
        }
        found.sort_by_key(|l| std::cmp::Reverse(l.rows_at));
        Ok(found)
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
    let mut trex: Vec<(u32, SampleDefaults)> = Vec::new();
    if let Some(mvex) = find_child(data, moov, b"mvex")? {
        for b in Boxes::children(data, &mvex) {
            let b = b?;
            if &b.box_type == b"trex" {
                // version/flags(4) track_ID(4) default_sample_description_index(4)
                // default_sample_duration(4) default_sample_size(4) default_sample_flags(4)
                let read = |at| field(be32(data, b.body + at), b.start, "the trex box");
                let defaults = SampleDefaults {
                    duration: read(12)?,
                    size: read(16)?,
                    flags: read(20)?,
                };
                trex.push((read(4)?, defaults));
            }
        }
    }
    for trak in Boxes::children(data, moov) {
        let trak = trak?;
        if &trak.box_type != b"trak" {
            continue;
        }
        let mut track = parse_trak(data, &trak)?;
        if let Some(&(_, defaults)) = trex.iter().find(|t| t.0 == track.id) {
            track.defaults = defaults;
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
        defaults: SampleDefaults::default(),
        // Only a hint for the B-frame lead-in: a broken box after `mdia` (which used to be
        // ignored) must not turn a playable file into an error.
        edit_list: find_child(data, trak, b"edts").ok().flatten().is_some(),
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

/// `trun` flags: which optional fields the header and each sample table row carry.
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x004;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;
/// The row columns, in the order they are stored.
const TRUN_COLUMNS: [u32; 4] = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO];

/// A `trun` header and where its sample table is. Offsets are absolute in the buffer it was read
/// from. INVARIANT: the table (`count` rows of `row_len` bytes from `rows_at`) fits in the box.
struct Trun {
    start: usize,
    version: u8,
    flags: u32,
    count: u32,
    data_offset_at: Option<usize>,
    first_sample_flags: Option<u32>,
    rows_at: usize,
    row_len: usize,
}

/// One sample as its `trun` row, or the defaults for what the row leaves out, describe it.
struct Sample {
    duration: u32,
    size: u32,
    flags: u32,
    /// Presentation time minus decode time (unsigned in a version 0 `trun`, signed in version 1).
    composition_offset: i64,
}

impl Trun {
    fn read(data: &[u8], b: &BoxRef) -> Result<Trun, Mp4Error> {
        let version = field(data.get(b.body).copied(), b.start, "the trun box")?;
        let flags = field(be32(data, b.body), b.start, "the trun box")? & 0x00ff_ffff;
        let count = field(be32(data, b.body + 4), b.start, "the trun box")?;
        let mut at = b.body + 8;
        let mut data_offset_at = None;
        if flags & TRUN_DATA_OFFSET != 0 {
            data_offset_at = Some(at);
            at += 4;
        }
        let mut first_sample_flags = None;
        if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
            first_sample_flags = Some(field(be32(data, at), b.start, "the trun box")?);
            at += 4;
        }
        let row_len = TRUN_COLUMNS.iter().filter(|&&c| flags & c != 0).count() * 4;
        let table_end = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(row_len))
            .and_then(|n| n.checked_add(at))
            .ok_or(Mp4Error::Truncated {
                offset: b.start,
                what: "the trun box",
            })?;
        if table_end > b.end {
            return Err(Mp4Error::Truncated {
                offset: b.start,
                what: "the trun sample table",
            });
        }
        Ok(Trun {
            start: b.start,
            version,
            flags,
            count,
            data_offset_at,
            first_sample_flags,
            rows_at: at,
            row_len,
        })
    }

    /// Sample `i` (below `count`).
    fn sample(&self, data: &[u8], i: u32, defaults: &SampleDefaults) -> Result<Sample, Mp4Error> {
        let row = (i as usize)
            .checked_mul(self.row_len)
            .and_then(|n| n.checked_add(self.rows_at));
        let mut columns = [None; 4];
        let mut at = row;
        for (value, column) in columns.iter_mut().zip(TRUN_COLUMNS) {
            if self.flags & column != 0 {
                let v = at.and_then(|at| be32(data, at));
                *value = Some(field(v, self.start, "the trun box")?);
                at = at.and_then(|at| at.checked_add(4));
            }
        }
        let [duration, size, flags, offset] = columns;
        let flags = match (i, self.first_sample_flags) {
            (0, Some(first)) => first,
            _ => flags.unwrap_or(defaults.flags),
        };
        let composition_offset = match offset {
            None => 0,
            Some(o) if self.version == 0 => i64::from(o),
            Some(o) => i64::from(o as i32),
        };
        Ok(Sample {
            duration: duration.unwrap_or(defaults.duration),
            size: size.unwrap_or(defaults.size),
            flags,
            composition_offset,
        })
    }
}

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
        mdat_at: mdat.start - base,
        mdat_body_at: mdat.body - base,
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
    let mut defaults = tracks[track].defaults;
    // base_data_offset(8) sample_description_index(4) default_sample_duration(4)
    // default_sample_size(4) default_sample_flags(4), each there when its flag is set.
    let mut at = tfhd.body + 8;
    let optional: [(u32, usize, Option<&mut u32>); 5] = [
        (0x01, 8, None),
        (0x02, 4, None),
        (0x08, 4, Some(&mut defaults.duration)),
        (0x10, 4, Some(&mut defaults.size)),
        (0x20, 4, Some(&mut defaults.flags)),
    ];
    for (flag, len, value) in optional {
        if tfhd_flags & flag == 0 {
            continue;
        }
        if let Some(value) = value {
            *value = field(be32(data, at), tfhd.start, "the tfhd box")?;
        }
        at += len;
    }
    let tfdt = require_child(data, traf, "tfdt", "traf")?;
    let tfdt_v1 = field(data.get(tfdt.body).copied(), tfdt.start, "the tfdt box")? == 1;
    // The decode time is rewritten in place on every pass: it must lie inside the box.
    if tfdt.body + 4 + if tfdt_v1 { 8 } else { 4 } > tfdt.end {
        return Err(Mp4Error::Truncated {
            offset: tfdt.start,
            what: "the tfdt box",
        });
    }
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
    let mut first_presented: Option<i64> = None;
    let mut trun_at = None;
    for b in Boxes::children(data, traf) {
        let b = b?;
        if &b.box_type != b"trun" {
            continue;
        }
        let trun = Trun::read(data, &b)?;
        trun_at.get_or_insert(b.start - base);
        if trun.row_len == 0 {
            // Every sample takes the defaults: no table to walk (count may be 4 billion), and
            // with no composition offsets the first sample is the first shown.
            if trun.count > 0 {
                first_flags.get_or_insert(trun.first_sample_flags.unwrap_or(defaults.flags));
                first_presented.get_or_insert(i64::try_from(duration).unwrap_or(i64::MAX));
            }
            duration = duration
                .saturating_add(u64::from(trun.count).saturating_mul(u64::from(defaults.duration)));
            samples = samples.saturating_add(trun.count);
            continue;
        }
        // INVARIANT: the table fits in the box (Trun::read checks), so this loop is bounded by
        // the file's size.
        for i in 0..trun.count {
            let sample = trun.sample(data, i, &defaults)?;
            first_flags.get_or_insert(sample.flags);
            let shown = i64::try_from(duration)
                .unwrap_or(i64::MAX)
                .saturating_add(sample.composition_offset);
            first_presented = Some(first_presented.map_or(shown, |p| p.min(shown)));
            duration = duration.saturating_add(u64::from(sample.duration));
        }
        samples = samples.saturating_add(trun.count);
    }
    Ok(TrackRun {
        track,
        decode_time,
        duration,
        first_presented: first_presented.unwrap_or(0),
        tfdt_at: tfdt.body + 4 - base,
        tfdt_v1,
        traf_at: traf.start - base,
        trun_at,
        defaults,
        first_sample_sync: first_flags.is_some_and(|f| f & SAMPLE_IS_NON_SYNC == 0),
        samples,
    })
}

/// Writes `fragment`'s bytes into `out` with every track's decode time moved on by `loops` loop
/// periods and the `mfhd` sequence number set to `sequence`; on passes after the first (`loops`
/// above 0) the first fragment also leaves out its `LeadIn` samples. `out` always gets as many
/// bytes as the fragment has. Returns false when a 32-bit (version 0) `tfdt` could not hold the
/// new time and wrapped.
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
    let lead_in: &[LeadIn] = if loops > 0 && index == 0 {
        &movie.lead_in
    } else {
        &[]
    };
    let mut fits = true;
    if let Some(seq) = out.get_mut(frag.mfhd_seq_at..frag.mfhd_seq_at + 4) {
        seq.copy_from_slice(&sequence.to_be_bytes());
    }
    for (i, run) in frag.runs.iter().enumerate() {
        let ts = movie.tracks[run.track].timescale;
        let shift =
            u128::from(loops) * u128::from(period) * u128::from(ts) / u128::from(period_ts.max(1));
        let skipped = lead_in
            .iter()
            .find(|l| l.run == i)
            .map_or(0, |l| l.duration);
        let t = u128::from(run.decode_time) + shift + u128::from(skipped);
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
    leave_out_lead_in(out, lead_in, frag);
    fits
}

/// Takes the [`LeadIn`] samples out of a copy of the first fragment, in place and keeping its
/// length: each trun gets its new sample count and data offset and loses the rows of the left-out
/// samples, the boxes after each cut (the `mdat` header with them) move up, and the `mdat` grows
/// by the bytes cut, so every sample's data stays at the offset its trun gives. The left-out
/// samples' data stays in the `mdat`, unused. Works on the unchanged copy: all fields first, then
/// the moves.
fn leave_out_lead_in(out: &mut [u8], lead_in: &[LeadIn], frag: &Fragment) {
    if lead_in.is_empty() {
        return;
    }
    let mut total = 0;
    for l in lead_in {
        put32(out, l.count_at, l.count);
        put32(out, l.data_offset_at, l.data_offset as u32);
        resize_box(out, l.trun_at, -(l.cut as i64));
        resize_box(out, l.traf_at, -(l.cut as i64));
        total += l.cut;
    }
    resize_box(out, 0, -(total as i64));
    // INVARIANT: `lead_in` runs from the last table in the fragment to the first, so a move
    // never shifts bytes a later move still has to find at their original offset.
    let mut end = frag.mdat_body_at;
    for l in lead_in {
        let from = l.rows_at + l.cut;
        if from > end || end > out.len() {
            debug_assert!(false, "lead-in rows {from} past the mdat body at {end}");
            return;
        }
        out.copy_within(from..end, l.rows_at);
        end -= l.cut;
    }
    if let Some(mdat_at) = frag.mdat_at.checked_sub(total) {
        resize_box(out, mdat_at, total as i64);
    }
}

fn put32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(f) = buf.get_mut(at..at.saturating_add(4)) {
        f.copy_from_slice(&value.to_be_bytes());
    }
}

/// Where the size field of the box at `at` is, whether it is the 64-bit one, and what it would say
/// with the box `by` bytes longer; `None` when the box has no size to change (size 0: "to the
/// end") or the new size would not fit its field or its header.
fn box_size_after(buf: &[u8], at: usize, by: i64) -> Option<(usize, bool, u64)> {
    let (field_at, wide, size, header) = match be32(buf, at)? {
        0 => return None,
        1 => {
            let field_at = at.checked_add(8)?;
            (field_at, true, be64(buf, field_at)?, 16)
        }
        n => (at, false, u64::from(n), 8),
    };
    let new = i128::from(size) + i128::from(by);
    let max = if wide {
        i128::from(u64::MAX)
    } else {
        i128::from(u32::MAX)
    };
    if new < header || new > max {
        return None;
    }
    Some((field_at, wide, u64::try_from(new).ok()?))
}

/// Makes the box at `at` `by` bytes longer (or shorter) in its size field, if it can say so.
fn resize_box(buf: &mut [u8], at: usize, by: i64) {
    match box_size_after(buf, at, by) {
        Some((field_at, true, size)) => {
            if let Some(f) = buf.get_mut(field_at..field_at + 8) {
                f.copy_from_slice(&size.to_be_bytes());
            }
        }
        Some((field_at, false, size)) => put32(buf, field_at, size as u32),
        None => {}
    }
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

    // ---- B-frame lead-in: synthetic movies ----

    /// A track of a synthetic movie: every fragment carries the same samples, each given as
    /// (duration, size, composition offset), the first fragment after a `lead` sample if there
    /// is one; `trun_flags` says which fields the trun has.
    struct TestTrack {
        id: u32,
        video: bool,
        edit_list: bool,
        trun_version: u8,
        trun_flags: u32,
        lead: Option<(u32, u32, i32)>,
        samples: Vec<(u32, u32, i32)>,
    }

    impl TestTrack {
        /// Four 40-tick frames in decode order I P B B, decoded at 0, 40, 80 and 120 and shown at
        /// 80, 200, 120 and 160: the first frame shows at 80.
        fn bframe_video() -> TestTrack {
            TestTrack {
                id: 1,
                video: true,
                edit_list: false,
                trun_version: 0,
                trun_flags: 0x001 | 0x100 | 0x200 | 0x800,
                lead: None,
                samples: vec![(40, 30, 80), (40, 20, 160), (40, 10, 40), (40, 11, 40)],
            }
        }

        /// Audio as ffmpeg writes it next to B-frame video: the first (priming) sample stretched
        /// back to 0, ending when the first frame shows, then 160 ticks of 20-tick frames in
        /// every fragment, in step with the frames shown.
        fn audio(id: u32) -> TestTrack {
            TestTrack {
                id,
                video: false,
                edit_list: false,
                trun_version: 0,
                trun_flags: 0x001 | 0x100 | 0x200,
                lead: Some((80, 5, 0)),
                samples: (6..14).map(|size| (20, size, 0)).collect(),
            }
        }

        fn samples_in(&self, fragment: usize) -> Vec<(u32, u32, i32)> {
            let lead = self.lead.filter(|_| fragment == 0);
            lead.into_iter()
                .chain(self.samples.iter().copied())
                .collect()
        }

        /// Where fragment `f` starts on the track's timeline.
        fn start_of(&self, f: usize) -> u64 {
            let span: u64 = self.samples.iter().map(|s| u64::from(s.0)).sum();
            let lead = self.lead.map_or(0, |l| u64::from(l.0));
            if f == 0 {
                0
            } else {
                lead + span * f as u64
            }
        }

        /// The byte every sample of this track is filled with in fragment `f`.
        fn fill(&self, f: usize, sample: usize) -> u8 {
            (self.id as u8) << 5 | (f as u8) << 4 | sample as u8
        }
    }

    fn full_box(t: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut v = (flags | u32::from(version) << 24).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        boxed(t, &v)
    }

    fn be(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn test_trak(t: &TestTrack) -> Vec<u8> {
        // tkhd v0: times(8) track_ID; mdhd v0: times(8) timescale(4) duration(4) language(4).
        let mut trak = full_box(b"tkhd", 0, 3, &be(&[0, 0, t.id, 0, 0]));
        if t.edit_list {
            let elst = full_box(b"elst", 0, 0, &be(&[1, 0, 80, 0x0001_0000]));
            trak.extend(boxed(b"edts", &elst));
        }
        let mut mdia = full_box(b"mdhd", 0, 0, &be(&[0, 0, 1000, 0, 0]));
        let handler = if t.video { b"vide" } else { b"soun" };
        let mut hdlr = be(&[0]);
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0; 13]);
        mdia.extend(full_box(b"hdlr", 0, 0, &hdlr));
        trak.extend(boxed(b"mdia", &mdia));
        boxed(b"trak", &trak)
    }

    /// ftyp, moov and `fragments` moof+mdat pairs of `tracks` (timescale 1000, the first track's
    /// data first in each mdat); `large_mdat` writes the mdat headers with a 64-bit size.
    fn synthetic(tracks: &[TestTrack], fragments: usize, large_mdat: bool) -> Vec<u8> {
        let mut file = boxed(b"ftyp", b"isom\0\0\0\0");
        let mut moov = Vec::new();
        let mut mvex = Vec::new();
        for t in tracks {
            moov.extend(test_trak(t));
            let size = t.samples_in(0)[0].1;
            mvex.extend(full_box(b"trex", 0, 0, &be(&[t.id, 1, 0, size, 0])));
        }
        moov.extend(boxed(b"mvex", &mvex));
        file.extend(boxed(b"moov", &moov));
        for f in 0..fragments {
            let moof = |offsets: &[u32]| {
                let mut moof = full_box(b"mfhd", 0, 0, &be(&[f as u32 + 1]));
                for (t, &offset) in tracks.iter().zip(offsets) {
                    let mut traf = full_box(b"tfhd", 0, 0x02_0000, &be(&[t.id]));
                    traf.extend(full_box(b"tfdt", 1, 0, &t.start_of(f).to_be_bytes()));
                    let samples = t.samples_in(f);
                    let mut trun = be(&[samples.len() as u32]);
                    if t.trun_flags & 0x001 != 0 {
                        trun.extend(be(&[offset]));
                    }
                    for &(duration, size, offset) in &samples {
                        let row = [(0x100, duration), (0x200, size), (0x800, offset as u32)];
                        for (flag, value) in row {
                            if t.trun_flags & flag != 0 {
                                trun.extend(be(&[value]));
                            }
                        }
                    }
                    traf.extend(full_box(b"trun", t.trun_version, t.trun_flags, &trun));
                    moof.extend(boxed(b"traf", &traf));
                }
                boxed(b"moof", &moof)
            };
            let header = if large_mdat { 16 } else { 8 };
            let mut offsets = Vec::new();
            let mut at = moof(&vec![0; tracks.len()]).len() + header;
            let mut data = Vec::new();
            for t in tracks {
                offsets.push(at as u32);
                for (i, &(_, size, _)) in t.samples_in(f).iter().enumerate() {
                    data.extend(std::iter::repeat(t.fill(f, i)).take(size as usize));
                    at += size as usize;
                }
            }
            file.extend(moof(&offsets));
            if large_mdat {
                file.extend_from_slice(&1u32.to_be_bytes());
                file.extend_from_slice(b"mdat");
                file.extend_from_slice(&(data.len() as u64 + 16).to_be_bytes());
                file.extend(data);
            } else {
                file.extend(boxed(b"mdat", &data));
            }
        }
        file
    }

    /// What a rendered fragment says about track `id`: its decode time, sample count, and the
    /// bytes of its first sample (found through the trun's data offset, from the moof start).
    fn run_of(fragment: &[u8], id: u32) -> (u64, u32, Vec<u8>) {
        let moof = read_box(fragment, 0, fragment.len()).unwrap();
        assert_eq!(&moof.box_type, b"moof");
        for traf in Boxes::children(fragment, &moof).map(Result::unwrap) {
            if &traf.box_type != b"traf" {
                continue;
            }
            let tfhd = require_child(fragment, &traf, "tfhd", "traf").unwrap();
            if be32(fragment, tfhd.body + 4) != Some(id) {
                continue;
            }
            let tfdt = require_child(fragment, &traf, "tfdt", "traf").unwrap();
            let trun = require_child(fragment, &traf, "trun", "traf").unwrap();
            let t = Trun::read(fragment, &trun).unwrap();
            let first = t.sample(fragment, 0, &SampleDefaults::default()).unwrap();
            let at = be32(fragment, t.data_offset_at.unwrap()).unwrap() as usize;
            let bytes = fragment[at..at + first.size as usize].to_vec();
            return (be64(fragment, tfdt.body + 4).unwrap(), t.count, bytes);
        }
        panic!("no traf for track {id}");
    }

    fn render(m: &Movie, file: &[u8], index: usize, loops: u64) -> Vec<u8> {
        let mut out = Vec::new();
        render_fragment(m, file, index, loops, 9, &mut out);
        assert_eq!(out.len(), m.fragments[index].range.len());
        out
    }

    /// The init segment followed by fragments `0..n` of `passes` passes, as a viewer gets them.
    fn played(m: &Movie, file: &[u8], passes: u64) -> Vec<u8> {
        let mut stream = m.init.clone();
        for loops in 0..passes {
            for i in 0..m.fragments.len() {
                stream.extend(render(m, file, i, loops));
            }
        }
        stream
    }

    /// Checks that every track of `stream` runs on with no gap and no overlap.
    fn assert_tracks_continuous(stream: &[u8]) {
        let whole = Movie::parse(stream).expect("the played stream parses");
        for track in 0..whole.tracks.len() {
            let runs: Vec<&TrackRun> = whole
                .fragments
                .iter()
                .flat_map(|f| &f.runs)
                .filter(|r| r.track == track)
                .collect();
            for w in runs.windows(2) {
                assert_eq!(
                    w[0].decode_time + w[0].duration,
                    w[1].decode_time,
                    "track {track}"
                );
            }
        }
    }

    #[test]
    fn lead_in_before_the_first_shown_frame_is_left_out_after_the_first_pass() {
        let tracks = [TestTrack::bframe_video(), TestTrack::audio(2)];
        let file = synthetic(&tracks, 2, false);
        let m = Movie::parse(&file).unwrap();
        assert_eq!(m.fragments[0].runs[0].first_presented, 80);
        assert_eq!(m.lead_in_ticks(1), 80, "the stretched priming sample");
        assert_eq!(m.lead_in_ticks(0), 0, "the video is never cut");
        // Both tracks play 320 ticks a pass once the audio's lead-in is gone.
        assert_eq!(m.loop_period(), (320, 1000));

        // The first pass is the file as it is.
        let first = render(&m, &file, 0, 0);
        let src = &file[m.fragments[0].range.clone()];
        let differing = first.iter().zip(src).filter(|(a, b)| a != b).count();
        assert!(
            differing <= 4,
            "{differing} bytes changed on the first pass"
        );
        assert_eq!(run_of(&first, 2), (0, 9, vec![tracks[1].fill(0, 0); 5]));

        // Later passes: the audio starts when the first frame shows, at its second sample.
        let again = render(&m, &file, 0, 3);
        assert_eq!(
            run_of(&again, 2),
            (3 * 320 + 80, 8, vec![tracks[1].fill(0, 1); 6])
        );
        assert_eq!(
            run_of(&again, 1),
            (3 * 320, 4, vec![tracks[0].fill(0, 0); 30])
        );
        let mdat_at = m.fragments[0].mdat_at;
        assert_eq!(
            &again[mdat_at - 8 + 4..mdat_at - 8 + 8],
            b"mdat",
            "moved up"
        );
        assert_eq!(
            again[m.fragments[0].mdat_body_at..],
            src[m.fragments[0].mdat_body_at..],
            "the sample data stays where it was"
        );
        // Only the first fragment has a lead-in.
        let second = render(&m, &file, 1, 3);
        assert_eq!(
            run_of(&second, 2),
            (3 * 320 + 240, 8, vec![tracks[1].fill(1, 0); 6])
        );

        let stream = played(&m, &file, 3);
        assert_tracks_continuous(&stream[..]);
    }

    #[test]
    fn lead_in_of_two_tracks_and_a_64_bit_mdat() {
        let tracks = [
            TestTrack::bframe_video(),
            TestTrack::audio(2),
            TestTrack::audio(3),
        ];
        let file = synthetic(&tracks, 2, true);
        let m = Movie::parse(&file).unwrap();
        assert_eq!((m.lead_in_ticks(1), m.lead_in_ticks(2)), (80, 80));
        let again = render(&m, &file, 0, 1);
        assert_eq!(run_of(&again, 2), (400, 8, vec![tracks[1].fill(0, 1); 6]));
        assert_eq!(run_of(&again, 3), (400, 8, vec![tracks[2].fill(0, 1); 6]));
        assert_eq!(run_of(&again, 1), (320, 4, vec![tracks[0].fill(0, 0); 30]));
        let mdat = read_box(&again, m.fragments[0].mdat_at - 16, again.len()).unwrap();
        assert_eq!((&mdat.box_type, mdat.end), (b"mdat", again.len()));
        assert_tracks_continuous(&played(&m, &file, 3));
    }

    #[test]
    fn an_mdat_to_the_end_of_the_file_needs_no_new_size() {
        let tracks = [TestTrack::bframe_video(), TestTrack::audio(2)];
        let mut file = synthetic(&tracks, 1, false);
        let m = Movie::parse(&file).unwrap();
        let mdat_at = m.fragments[0].range.start + m.fragments[0].mdat_at;
        file[mdat_at..mdat_at + 4].copy_from_slice(&0u32.to_be_bytes());
        let m = Movie::parse(&file).unwrap();
        assert_eq!(m.lead_in_ticks(1), 80);
        let again = render(&m, &file, 0, 1);
        assert_eq!(run_of(&again, 2), (240, 8, vec![tracks[1].fill(0, 1); 6]));
        let mut stream = m.init.clone();
        stream.extend(&again);
        assert_eq!(Movie::parse(&stream).unwrap().fragments.len(), 1);
    }

    /// Movies whose loop must stay byte for byte what it was before lead-ins were left out.
    fn assert_no_lead_in(tracks: &[TestTrack]) {
        let file = synthetic(tracks, 2, false);
        let m = Movie::parse(&file).unwrap();
        assert!(m.lead_in.is_empty());
        for i in 0..2 {
            let src = &file[m.fragments[i].range.clone()];
            let out = render(&m, &file, i, 5);
            let differing = out.iter().zip(src).filter(|(a, b)| a != b).count();
            assert!(
                differing <= 4 + 2 * 8,
                "fragment {i}: {differing} bytes changed"
            );
        }
    }

    #[test]
    fn files_with_an_edit_list_or_no_composition_offsets_keep_their_lead_in() {
        let mut video = TestTrack::bframe_video();
        video.edit_list = true;
        assert_no_lead_in(&[video, TestTrack::audio(2)]);
        let mut audio = TestTrack::audio(2);
        audio.edit_list = true;
        assert_no_lead_in(&[TestTrack::bframe_video(), audio]);
        let mut video = TestTrack::bframe_video();
        video.trun_flags &= !0x800;
        assert_no_lead_in(&[video, TestTrack::audio(2)]);
        // Offsets that show the first frame at its decode time (signed, version 1).
        let mut video = TestTrack::bframe_video();
        video.trun_version = 1;
        video.samples = vec![(40, 30, 0), (40, 20, 80), (40, 10, -40), (40, 11, -40)];
        assert_no_lead_in(&[video, TestTrack::audio(2)]);
    }

    #[test]
    fn lead_in_is_kept_when_the_trun_cannot_lose_it() {
        // No data offset to move on, first-sample flags that would pass to another sample,
        // composition offsets on the audio, or a single sample.
        for (flags, samples) in [
            (0x100 | 0x200, None),
            (0x001 | 0x004 | 0x100 | 0x200, None),
            (0x001 | 0x100 | 0x200 | 0x800, None),
            (0x001 | 0x100 | 0x200, Some(vec![])),
        ] {
            let mut audio = TestTrack::audio(2);
            audio.trun_flags = flags;
            if let Some(samples) = samples {
                audio.samples = samples;
            }
            let mut file = synthetic(&[TestTrack::bframe_video(), audio], 2, false);
            if flags & 0x004 != 0 {
                // The builder sets the flag but writes no field for it.
                file = with_first_sample_flags(&file);
            }
            let m = Movie::parse(&file).unwrap();
            assert!(m.lead_in.is_empty(), "trun flags {flags:#x}");
        }
    }

    /// `file` with every traf child of track `id` replaced by what `f` makes of it (type, bytes).
    fn map_traf_children(file: &[u8], id: u32, f: impl Fn(&[u8; 4], &[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for b in Boxes::new(file, 0..file.len()).map(Result::unwrap) {
            if &b.box_type != b"moof" {
                out.extend_from_slice(&file[b.range()]);
                continue;
            }
            let mut moof = Vec::new();
            for c in Boxes::children(file, &b).map(Result::unwrap) {
                let tfhd = require_child(file, &c, "tfhd", "traf");
                if !tfhd.is_ok_and(|t| be32(file, t.body + 4) == Some(id)) {
                    moof.extend_from_slice(&file[c.range()]);
                    continue;
                }
                let mut traf = Vec::new();
                for d in Boxes::children(file, &c).map(Result::unwrap) {
                    traf.extend(f(&d.box_type, &file[d.range()]));
                }
                moof.extend(boxed(b"traf", &traf));
            }
            out.extend(boxed(b"moof", &moof));
        }
        out
    }

    #[test]
    fn only_audio_in_plain_trafs_loses_its_lead_in() {
        // A second video track shaped like the audio: its first sample may be a keyframe.
        let mut other = TestTrack::audio(2);
        other.video = true;
        assert!(
            Movie::parse(&synthetic(&[TestTrack::bframe_video(), other], 2, false))
                .unwrap()
                .lead_in
                .is_empty()
        );
        // An sdtp (one entry per sample) in the audio traf would no longer match its trun.
        let file = synthetic(&[TestTrack::bframe_video(), TestTrack::audio(2)], 2, false);
        assert!(!Movie::parse(&file).unwrap().lead_in.is_empty());
        let with_sdtp = map_traf_children(&file, 2, |t, bytes| {
            let mut v = bytes.to_vec();
            if t == b"trun" {
                v.extend(full_box(b"sdtp", 0, 0, &[0x20; 9]));
            }
            v
        });
        assert!(Movie::parse(&with_sdtp).unwrap().lead_in.is_empty());
    }

    #[test]
    fn a_tfdt_too_short_for_its_version_is_an_error() {
        let file = synthetic(&[TestTrack::bframe_video(), TestTrack::audio(2)], 2, false);
        // Version 1 says 8 bytes of decode time; only 4 follow.
        let short = map_traf_children(&file, 2, |t, bytes| {
            if t == b"tfdt" {
                full_box(b"tfdt", 1, 0, &[0, 0, 0, 0])
            } else {
                bytes.to_vec()
            }
        });
        let e = Movie::parse(&short).unwrap_err().to_string();
        assert!(e.contains("tfdt"), "{e}");
    }

    /// `file` with the audio trun of every fragment given first-sample flags (0 = sync).
    fn with_first_sample_flags(file: &[u8]) -> Vec<u8> {
        map_traf_children(file, 2, |t, bytes| {
            if t != b"trun" {
                return bytes.to_vec();
            }
            // After the 8-byte header: version/flags(4) count(4) data offset(4), then the
            // first-sample flags go in.
            let mut body = bytes[8..20].to_vec();
            body.extend_from_slice(&0u32.to_be_bytes());
            body.extend_from_slice(&bytes[20..]);
            boxed(b"trun", &body)
        })
    }

    #[test]
    fn signed_composition_offsets_of_version_1_truns() {
        let mut video = TestTrack::bframe_video();
        video.trun_version = 1;
        video.samples = vec![(40, 30, 120), (40, 20, 200), (40, 10, -40), (40, 11, 80)];
        let file = synthetic(&[video, TestTrack::audio(2)], 2, false);
        let m = Movie::parse(&file).unwrap();
        // Shown at 120, 240, 40 and 200: the B-frame at 80 - 40 is the first one shown.
        assert_eq!(m.fragments[0].runs[0].first_presented, 40);
        assert!(m.lead_in.is_empty(), "no audio sample ends by 40");
    }

    #[test]
    fn lead_in_walk_is_bounded_and_lying_truns_are_errors() {
        // Four billion default samples of 0 ticks: the walk stops at its cap.
        let mut audio = TestTrack::audio(2);
        audio.trun_flags = 0x001;
        audio.lead = None;
        audio.samples = vec![(0, 5, 0)];
        let mut file = synthetic(&[TestTrack::bframe_video(), audio], 2, false);
        let m = Movie::parse(&file).unwrap();
        let run = &m.fragments[0].runs[1];
        let trun_at = m.fragments[0].range.start + run.trun_at.unwrap();
        file[trun_at + 12..trun_at + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        let m = Movie::parse(&file).unwrap();
        assert_eq!(m.fragments[0].runs[1].samples, u32::MAX);
        assert!(m.lead_in.is_empty(), "samples of no time are no lead-in");
        // A trun whose table runs past its box is refused with its offset.
        let file = synthetic(&[TestTrack::bframe_video(), TestTrack::audio(2)], 2, false);
        let m = Movie::parse(&file).unwrap();
        let trun_at = m.fragments[0].range.start + m.fragments[0].runs[1].trun_at.unwrap();
        let mut bad = file.clone();
        bad[trun_at + 12..trun_at + 16].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(
            Movie::parse(&bad),
            Err(Mp4Error::Truncated {
                offset: trun_at,
                what: "the trun sample table"
            })
        );
    }

    // ---- B-frame lead-in: the committed test file (tests/make-bframes.sh) ----

    const BFRAMES: &[u8] = include_bytes!("../tests/bframes.mp4");

    #[test]
    fn bframes_file_loops_with_every_track_continuous_and_in_step() {
        let m = Movie::parse(BFRAMES).unwrap();
        let video = m.main_track;
        let audio = 1 - video;
        let (v_ts, a_ts) = (12800u64, 48000u64);
        assert_eq!(u64::from(m.tracks[video].timescale), v_ts);
        assert_eq!(u64::from(m.tracks[audio].timescale), a_ts);
        // Two frames of composition delay: the first frame shows at 80 ms; the audio's first
        // (priming) sample was stretched back to 0 and is the lead-in.
        assert_eq!(m.fragments[0].runs[video].first_presented, 1024);
        assert_eq!(m.lead_in_ticks(audio), 3840);
        assert_eq!(m.loop_period(), (2 * v_ts, v_ts as u32), "2 s a pass");

        let stream = played(&m, BFRAMES, 3);
        assert_tracks_continuous(&stream);
        // Every pass after the first starts its audio when its first frame shows (in step as
        // in the file), and only fragment 0's audio changes.
        let whole = Movie::parse(&stream).unwrap();
        for pass in 1..3 {
            let f = &whole.fragments[pass * m.fragments.len()];
            let v = &f.runs[video];
            let a = &f.runs[audio];
            let shown = (v.decode_time as i64 + v.first_presented) as u64;
            assert_eq!(shown * a_ts, a.decode_time * v_ts, "pass {pass}");
            assert_eq!(a.samples + 1, m.fragments[0].runs[audio].samples);
        }
    }
}
