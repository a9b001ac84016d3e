//! A whole file as the looping player uses it ([`Movie`]): finds the init segment and the
//! fragments among the top-level boxes of a fragmented file, or has a plain one's sample tables
//! cut into fragments, and works out each track's span, the loop period and when each fragment
//! starts. The moov is read by `init`, each moof by `fragment`, a plain file by `plain`; the
//! B-frame lead-in of a fragmented file is found in `lead_in`.

use super::boxes::{find_child, BoxRef, Boxes};
use super::fragment::{parse_fragment, Fragment};
use super::init::{mime, read_tracks, resolution, Track, TrackKind};
use super::lead_in::LeadIn;
use super::plain::{parse_plain, Plain};
use super::Mp4Error;
use std::ops::Range;

/// While parsing, the bytes before the box being read are handed back (see
/// [`Movie::parse_releasing`]) in steps of at least this many.
const RELEASE_STEP: usize = 8 << 20;

/// Where a movie's fragments come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The file's own moof+mdat pairs, copied and retimed.
    Fragmented,
    /// Fragments written from a plain file's sample tables.
    Plain(Box<Plain>),
}

/// A parsed MP4: fragmented, or plain and fragmented in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movie {
    /// The MSE initialization segment: a fragmented file's ftyp (if any) and moov, or one
    /// generated for a plain file.
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
    pub(super) lead_in: Vec<LeadIn>,
    layout: Layout,
}

impl Movie {
    /// Parses a whole file.
    pub fn parse(data: &[u8]) -> Result<Movie, Mp4Error> {
        Movie::parse_releasing(data, &mut |_| {})
    }

    /// Parses a whole file, calling `release` with ranges of `data` that the parse is done with
    /// as it goes (in steps of several MiB), so a caller with the file mapped can give those
    /// pages back: the moofs of a fragmented file are spread over all of it.
    pub fn parse_releasing(
        data: &[u8],
        release: &mut dyn FnMut(Range<usize>),
    ) -> Result<Movie, Mp4Error> {
        let mut released = 0;
        let mut progress = |at: usize| {
            if at >= released + RELEASE_STEP {
                release(released..at);
                released = at;
            }
        };
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
            progress(b.start);
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
        if moofs.is_empty() {
            return Movie::from_plain(data, &moov);
        }
        let (tracks, main_track) = read_tracks(data, &moov)?;
        let mut released = 0;
        let mut fragments = Vec::with_capacity(moofs.len());
        for (moof, mdat) in moofs {
            fragments.push(parse_fragment(data, &moof, &mdat, &tracks, main_track)?);
            if moof.start >= released + RELEASE_STEP {
                release(released..moof.start);
                released = moof.start;
            }
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
            layout: Layout::Fragmented,
        };
        movie.lead_in = movie.find_lead_in(data)?;
        movie.period = movie.compute_loop_period();
        if movie.period.0 == 0 {
            return Err(Mp4Error::NoDuration);
        }
        movie.starts = movie.compute_starts();
        movie.drop_unplayed();
        Ok(movie)
    }

    /// A plain file (a moov with sample tables, no moofs), cut into fragments in memory; or, when
    /// its moov has an `mvex` but no samples, a fragmented file without fragments.
    fn from_plain(data: &[u8], moov: &BoxRef) -> Result<Movie, Mp4Error> {
        let p = match parse_plain(data, moov) {
            Err(Mp4Error::NoSamples { .. }) if find_child(data, moov, b"mvex")?.is_some() => {
                return Err(Mp4Error::NoFragments)
            }
            p => p?,
        };
        if !p.fragments[0].keyframe {
            return Err(Mp4Error::NoKeyframe);
        }
        let mut movie = Movie {
            init: p.init,
            tracks: p.tracks,
            fragments: p.fragments,
            main_track: p.main_track,
            starts: Vec::new(),
            period: (0, 1),
            lead_in: Vec::new(),
            layout: Layout::Plain(Box::new(p.plain)),
        };
        movie.period = movie.compute_loop_period();
        if movie.period.0 == 0 {
            return Err(Mp4Error::NoDuration);
        }
        movie.starts = movie.compute_starts();
        movie.drop_unplayed();
        Ok(movie)
    }

    /// True when the file was a plain (non-fragmented) one, fragmented in memory.
    pub fn is_plain(&self) -> bool {
        matches!(self.layout, Layout::Plain(_))
    }

    /// The plain file's sample tables, if it was one.
    pub(super) fn plain(&self) -> Option<&Plain> {
        match &self.layout {
            Layout::Plain(p) => Some(p),
            Layout::Fragmented => None,
        }
    }

    /// The MSE MIME type with the codecs of every track the parser knows.
    pub fn mime(&self) -> String {
        mime(&self.tracks)
    }

    /// Picture size of the first video track, if any.
    pub fn resolution(&self) -> Option<(u16, u16)> {
        resolution(&self.tracks)
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
        let skipped: u64 = match &self.layout {
            Layout::Plain(p) => p.lead_in.get(track).map_or(0, |l| l.1),
            Layout::Fragmented => self
                .lead_in
                .iter()
                .filter(|l| self.fragments[0].runs[l.run].track == track)
                .map(|l| l.duration)
                .sum(),
        };
        self.track_span(track).saturating_sub(skipped)
    }

    /// Ticks of `track` that passes after the first leave out at its start (see `LeadIn`), in
    /// its timescale: the audio a B-frame file without an edit list plays before its first
    /// frame is shown.
    pub fn lead_in_ticks(&self, track: usize) -> u64 {
        self.track_span(track) - self.repeat_span(track)
    }

    /// The loop period as (ticks, timescale): the shortest span of the video and audio tracks
    /// (without the lead-in that passes after the first leave out), so that on every loop each
    /// track's timeline moves on by the same time and no track ever gets a gap (a longer track
    /// overlaps its own tail, which MSE handles by replacing the overlapped frames).
    pub fn loop_period(&self) -> (u64, u32) {
        self.period
    }

    /// The shortest repeat span of the audio and video tracks (of all tracks if there are none).
    ///
    /// This used to keep the main track's span when the shortest was under 90% of it, leaving
    /// the short track a hole at every loop point: a file joined from parts at 25 and 30 fps
    /// (`ffmpeg -f concat -c copy`) has video 1.2 s longer than its audio, and Chromium, whose
    /// buffered ranges are those all tracks have, stalled at the hole in the audio and froze the
    /// picture for 1.2 s at every loop point. What a longer track has past the shortest one's end
    /// could not be played through anyway; fragments that start there are left out instead
    /// (`drop_unplayed`).
    fn compute_loop_period(&self) -> (u64, u32) {
        let media = |t: &Track| matches!(t.kind, TrackKind::Video | TrackKind::Audio);
        let any_media = self.tracks.iter().any(media);
        let mut best: Option<(u64, u32)> = None;
        for (i, t) in self.tracks.iter().enumerate() {
            let span = self.repeat_span(i);
            if span == 0 || t.timescale == 0 || (any_media && !media(t)) {
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
        best.unwrap_or((0, 1))
    }

    /// Leaves out the fragments that start at or after the loop period (a longer track's tail
    /// that the next pass would replace before it could play), keeping at least the first.
    fn drop_unplayed(&mut self) {
        let (period, period_ts) = self.period;
        let main_ts = u128::from(self.tracks[self.main_track].timescale.max(1));
        let keep = self
            .starts
            .iter()
            .position(|&s| u128::from(s) * u128::from(period_ts) >= u128::from(period) * main_ts)
            .unwrap_or(self.starts.len())
            .max(1);
        self.fragments.truncate(keep);
        self.starts.truncate(keep);
        if let Layout::Plain(p) = &mut self.layout {
            p.truncate(keep);
        }
    }

    /// Total duration of the file in seconds.
    pub fn duration_secs(&self) -> f64 {
        let (ticks, ts) = self.loop_period();
        ticks as f64 / f64::from(ts)
    }

    /// Bytes of all fragments (of a plain file: of all its samples).
    pub fn fragment_bytes(&self) -> usize {
        match &self.layout {
            Layout::Plain(p) => usize::try_from(p.bytes).unwrap_or(usize::MAX),
            Layout::Fragmented => self.fragments.iter().map(|f| f.range.len()).sum(),
        }
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

/// Whether `t` is a box type an MP4 file can start with or hold at its top level.
pub fn is_known_top_level(t: &[u8; 4]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::{be32, require_child};
    use crate::mp4::testutil::*;
    use crate::mp4::*;

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
    fn a_moov_whose_tracks_have_no_samples_is_named() {
        // The sample's moov has empty sample tables: without its mvex it is a plain file with no
        // samples; with it, a fragmented file without fragments.
        let init = Movie::parse(SAMPLE).unwrap().init;
        let ftyp_len = u32::from_be_bytes([init[0], init[1], init[2], init[3]]) as usize;
        let moov_box = read_box(&init, ftyp_len, init.len()).unwrap();
        let mut body = Vec::new();
        for c in Boxes::children(&init, &moov_box) {
            let c = c.unwrap();
            if &c.box_type != b"mvex" {
                body.extend_from_slice(&init[c.range()]);
            }
        }
        let mut file = init[..ftyp_len].to_vec();
        file.extend(boxed(b"moov", &body));
        file.extend(boxed(b"mdat", &[1, 2, 3]));
        let err = Movie::parse(&file).unwrap_err();
        assert_eq!(err, Mp4Error::NoSamples { offset: ftyp_len });
        assert!(err.to_string().contains("without any samples"), "{err}");
        let mut file = init.clone();
        file.extend(boxed(b"mdat", &[1, 2, 3]));
        assert_eq!(Movie::parse(&file), Err(Mp4Error::NoFragments));
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
}
