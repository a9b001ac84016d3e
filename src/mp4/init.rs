//! The init segment: the tracks a `moov` describes (id, kind, timescale, codec, picture size,
//! `trex` sample defaults) and [`InitSegment`], an ftyp+moov parsed on its own as a live
//! publisher sends it. The sample entries' codecs strings are worked out in `codecs`; a whole file
//! is `movie`'s job.

use super::boxes::{be32, expect_box, field, find_child, require_child, BoxRef, Boxes};
use super::codecs::describe_sample_entry;
use super::error::NAMED_ENTRIES;
use super::Mp4Error;

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
    pub(super) defaults: SampleDefaults,
    /// The `trak` has an `edts` (edit list), which moves its presentation timeline.
    pub(super) edit_list: bool,
}

/// What a sample is when its `trun` row leaves a field out: the `tfhd` defaults, else the
/// track's `trex` ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SampleDefaults {
    pub(super) duration: u32,
    pub(super) size: u32,
    pub(super) flags: u32,
}

/// An init segment (ftyp + moov) parsed on its own, as a live publisher sends it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// ftyp (if any) followed by moov, exactly as received: the MSE initialization segment.
    pub bytes: Vec<u8>,
    pub tracks: Vec<Track>,
    /// The track that paces playout: the video track if there is one, else 0 (as in a `Movie`).
    pub main_track: usize,
}

impl InitSegment {
    /// Parses an init segment that came as separate boxes: `ftyp` is the whole ftyp box if one
    /// came, `moov` the whole moov box (header included); each must be exactly one box of its
    /// type. Error offsets count from the start of [`InitSegment::bytes`]. Unlike a file, an init
    /// segment must have a track a browser can play: video or audio in a codec the parser knows.
    pub fn parse(ftyp: Option<&[u8]>, moov: &[u8]) -> Result<InitSegment, Mp4Error> {
        let ftyp = match ftyp {
            Some(ftyp) => expect_box(ftyp, 0, b"ftyp", "an 'ftyp' box").map(|_| ftyp)?,
            None => &[],
        };
        let mut bytes = Vec::with_capacity(ftyp.len().saturating_add(moov.len()));
        bytes.extend_from_slice(ftyp);
        bytes.extend_from_slice(moov);
        let moov = expect_box(&bytes, ftyp.len(), b"moov", "a 'moov' box")?;
        let (tracks, main_track) = read_tracks(&bytes, &moov)?;
        let playable =
            |t: &Track| matches!(t.kind, TrackKind::Video | TrackKind::Audio) && t.codec.is_some();
        if !tracks.iter().any(playable) {
            let mut sample_entries = [*b"    "; NAMED_ENTRIES];
            for (entry, track) in sample_entries.iter_mut().zip(&tracks) {
                *entry = track.sample_entry;
            }
            return Err(Mp4Error::NoPlayableTrack {
                offset: moov.start,
                tracks: tracks.len(),
                sample_entries,
            });
        }
        Ok(InitSegment {
            bytes,
            tracks,
            main_track,
        })
    }

    /// The MSE MIME type with the codecs of every track the parser knows.
    pub fn mime(&self) -> String {
        mime(&self.tracks)
    }

    /// Picture size of the first video track, if any.
    pub fn resolution(&self) -> Option<(u16, u16)> {
        resolution(&self.tracks)
    }
}

/// The tracks of the `moov` box `moov` in `data`, and which one paces playout (the video track
/// if there is one, else the first): what a file and a live init segment both start from.
pub(super) fn read_tracks(data: &[u8], moov: &BoxRef) -> Result<(Vec<Track>, usize), Mp4Error> {
    let tracks = parse_moov(data, moov)?;
    let main_track = tracks
        .iter()
        .position(|t| t.kind == TrackKind::Video)
        .unwrap_or(0);
    Ok((tracks, main_track))
}

/// The MSE MIME type of `tracks`, with the codecs of every track the parser knows.
pub(super) fn mime(tracks: &[Track]) -> String {
    let has_video = tracks.iter().any(|t| t.kind == TrackKind::Video);
    let codecs: Vec<&str> = tracks.iter().filter_map(|t| t.codec.as_deref()).collect();
    let base = if has_video { "video/mp4" } else { "audio/mp4" };
    if codecs.is_empty() {
        base.to_string()
    } else {
        format!("{base}; codecs=\"{}\"", codecs.join(","))
    }
}

/// Picture size of the first video track of `tracks` that gives one.
pub(super) fn resolution(tracks: &[Track]) -> Option<(u16, u16)> {
    tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video && t.width > 0)
        .map(|t| (t.width, t.height))
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

/// Reads one `trak`: id, kind, timescale, and codec and picture size from its first sample entry.
pub(super) fn parse_trak(data: &[u8], trak: &BoxRef) -> Result<Track, Mp4Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::testutil::*;
    use crate::mp4::{read_box, Movie};

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
    fn init_segment_alone_reads_as_the_movie_does() {
        let m = Movie::parse(SAMPLE).unwrap();
        let (ftyp, moov) = sample_ftyp_moov();
        let init = InitSegment::parse(Some(ftyp), moov).unwrap();
        assert_eq!(init.bytes, m.init);
        assert_eq!(init.tracks, m.tracks);
        assert_eq!(init.main_track, m.main_track);
        assert_eq!(init.mime(), m.mime());
        assert_eq!(init.resolution(), Some((640, 360)));
        assert_eq!(init.tracks[init.main_track].kind, TrackKind::Video);
        assert_eq!(&init.tracks[init.main_track].sample_entry, b"avc1");
        // Without an ftyp the init segment is the moov alone, with the same tracks.
        let bare = InitSegment::parse(None, moov).unwrap();
        assert_eq!(bare.bytes, moov);
        assert_eq!(
            (bare.tracks, bare.main_track),
            (init.tracks, init.main_track)
        );
    }

    #[test]
    fn init_segment_without_a_playable_track_names_what_it_found() {
        let (ftyp, moov) = sample_ftyp_moov();
        let mut unknown = moov.to_vec();
        for (from, to) in [(b"avc1", b"xvc1"), (b"mp4a", b"xp4a")] {
            let at = unknown.windows(4).position(|w| w == from).unwrap();
            unknown[at..at + 4].copy_from_slice(to);
        }
        let err = InitSegment::parse(Some(ftyp), &unknown).unwrap_err();
        assert_eq!(
            err,
            Mp4Error::NoPlayableTrack {
                offset: ftyp.len(),
                tracks: 2,
                sample_entries: [*b"xvc1", *b"xp4a", *b"    ", *b"    "],
            }
        );
        let text = err.to_string();
        assert!(text.contains("'xvc1', 'xp4a'"), "{text}");
        // A file with the same moov still parses: a looping file was never refused for it.
        let mut file = SAMPLE.to_vec();
        file[ftyp.len()..ftyp.len() + moov.len()].copy_from_slice(&unknown);
        assert!(Movie::parse(&file).unwrap().tracks[0].codec.is_none());
        // No trak at all.
        assert_eq!(
            InitSegment::parse(None, &boxed(b"moov", &[])),
            Err(Mp4Error::NoTracks { offset: 0 })
        );
    }

    #[test]
    fn init_segment_refuses_a_zero_timescale() {
        let (ftyp, moov) = sample_ftyp_moov();
        let mut moov = moov.to_vec();
        let moov_box = read_box(&moov, 0, moov.len()).unwrap();
        let trak = Boxes::children(&moov, &moov_box)
            .map(Result::unwrap)
            .find(|b| &b.box_type == b"trak")
            .unwrap();
        let mdia = require_child(&moov, &trak, "mdia", "trak").unwrap();
        let mdhd = require_child(&moov, &mdia, "mdhd", "mdia").unwrap();
        let at = mdhd.body + if moov[mdhd.body] == 1 { 20 } else { 12 };
        moov[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            InitSegment::parse(Some(ftyp), &moov),
            Err(Mp4Error::ZeroTimescale {
                offset: ftyp.len() + mdhd.start
            })
        );
    }

    #[test]
    fn init_segment_pieces_must_be_exactly_their_box() {
        let (ftyp, moov) = sample_ftyp_moov();
        assert_eq!(
            InitSegment::parse(Some(moov), moov),
            Err(Mp4Error::UnexpectedBox {
                offset: 0,
                found: *b"moov",
                expected: "an 'ftyp' box"
            })
        );
        assert!(matches!(
            InitSegment::parse(None, ftyp),
            Err(Mp4Error::UnexpectedBox { found, .. }) if &found == b"ftyp"
        ));
        let mut longer = moov.to_vec();
        longer.extend_from_slice(&[0; 3]);
        assert_eq!(
            InitSegment::parse(Some(ftyp), &longer),
            Err(Mp4Error::TrailingBytes {
                offset: ftyp.len() + moov.len(),
                len: 3
            })
        );
        assert!(InitSegment::parse(Some(&[]), moov).is_err());
    }

    #[test]
    fn cut_or_corrupted_init_segments_are_errors_not_panics() {
        let (ftyp, moov) = sample_ftyp_moov();
        for len in 0..moov.len() {
            assert!(
                InitSegment::parse(Some(ftyp), &moov[..len]).is_err(),
                "{len}"
            );
        }
        for len in 0..ftyp.len() {
            assert!(
                InitSegment::parse(Some(&ftyp[..len]), moov).is_err(),
                "{len}"
            );
        }
        // Every byte set to 0xff in turn: lying sizes, counts and versions everywhere.
        let mut bad = moov.to_vec();
        for at in 0..bad.len() {
            let was = bad[at];
            bad[at] = 0xff;
            let _ = InitSegment::parse(None, &bad);
            bad[at] = was;
        }
    }
}
