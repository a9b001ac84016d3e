//! Fragments: a `moof` and its `mdat` read into one [`TrackRun`] per `traf` (decode time,
//! duration, sample count, whether the first sample is a sync sample, where the fields a playout
//! rewrites are), the `trun` sample table reader the lead-in also uses, and
//! [`parse_fragment_at`] for a fragment a live publisher sends on its own. Finding fragments in
//! a whole file is `movie`'s job; rewriting them is `render`'s.

use super::boxes::{be32, be64, field, read_box, require_child, BoxRef, Boxes};
use super::init::{InitSegment, SampleDefaults, Track, TrackKind};
use super::Mp4Error;
use std::ops::Range;

/// What one `traf` of a fragment says about its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    /// Index into the tracks of the `Movie` or `InitSegment` the fragment was parsed with.
    pub track: usize,
    /// Base media decode time from `tfdt`, in the track's timescale.
    pub decode_time: u64,
    /// Sum of the sample durations, in the track's timescale.
    pub duration: u64,
    /// When the run's first sample in presentation order is shown, relative to `decode_time`
    /// (the smallest decode offset plus composition offset; 0 without composition offsets).
    pub first_presented: i64,
    /// Offset of the `tfdt` decode time field, relative to the fragment start.
    pub(super) tfdt_at: usize,
    pub(super) tfdt_v1: bool,
    /// Offsets of the `traf` box and of its first `trun` box, relative to the fragment start.
    pub(super) traf_at: usize,
    pub(super) trun_at: Option<usize>,
    pub(super) defaults: SampleDefaults,
    pub first_sample_sync: bool,
    pub samples: u32,
}

/// One fragment: a `moof` and the `mdat` after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Byte range in the buffer it was parsed from (the file, or the piece given to
    /// [`parse_fragment_at`]), from the moof's first byte to the mdat's last. For a fragment
    /// written from a plain file's sample tables: from its first sample's byte to its last's.
    pub range: Range<usize>,
    /// Offset of the `mfhd` sequence number, relative to the fragment start.
    pub(super) mfhd_seq_at: usize,
    /// Offset of the `mdat` box and of its body, relative to the fragment start.
    pub(super) mdat_at: usize,
    pub(super) mdat_body_at: usize,
    pub runs: Vec<TrackRun>,
    /// True when the video track's first sample is a sync sample (or there is no video).
    pub keyframe: bool,
}

const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// `trun` flags: which optional fields the header and each sample table row carry.
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x004;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
pub(super) const TRUN_CTO: u32 = 0x800;
/// The row columns, in the order they are stored.
const TRUN_COLUMNS: [u32; 4] = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO];

/// A `trun` header and where its sample table is. Offsets are absolute in the buffer it was read
/// from. INVARIANT: the table (`count` rows of `row_len` bytes from `rows_at`) fits in the box.
pub(super) struct Trun {
    start: usize,
    version: u8,
    pub(super) flags: u32,
    pub(super) count: u32,
    pub(super) data_offset_at: Option<usize>,
    pub(super) first_sample_flags: Option<u32>,
    pub(super) rows_at: usize,
    pub(super) row_len: usize,
}

/// One sample as its `trun` row, or the defaults for what the row leaves out, describe it.
pub(super) struct Sample {
    pub(super) duration: u32,
    pub(super) size: u32,
    flags: u32,
    /// Presentation time minus decode time (unsigned in a version 0 `trun`, signed in version 1).
    composition_offset: i64,
}

impl Trun {
    pub(super) fn read(data: &[u8], b: &BoxRef) -> Result<Trun, Mp4Error> {
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
    pub(super) fn sample(
        &self,
        data: &[u8],
        i: u32,
        defaults: &SampleDefaults,
    ) -> Result<Sample, Mp4Error> {
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

/// Parses one complete fragment held alone in `bytes`, as a live publisher sends it: optional
/// prefix boxes (`styp`, `sidx`, `prft`, `emsg`, `free`, `skip`) up to `moof_at`, then the `moof`
/// there and its `mdat` right after it, ending exactly at `bytes.len()`. The fragment's `range`
/// (moof to mdat, without the prefix) and every offset in it are into `bytes`, so
/// [`shift_decode_times`](super::shift_decode_times) can rewrite the buffer in place. The keyframe
/// rule is a `Movie`'s: the main track's first sample is a sync sample, or there is no video.
pub fn parse_fragment_at(
    bytes: &[u8],
    moof_at: usize,
    init: &InitSegment,
) -> Result<Fragment, Mp4Error> {
    if moof_at > bytes.len() {
        return Err(Mp4Error::Truncated {
            offset: bytes.len(),
            what: "the moof box",
        });
    }
    for b in Boxes::new(bytes, 0..moof_at) {
        let b = b?;
        if !matches!(
            &b.box_type,
            b"styp" | b"sidx" | b"prft" | b"emsg" | b"free" | b"skip"
        ) {
            return Err(Mp4Error::UnexpectedBox {
                offset: b.start,
                found: b.box_type,
                expected: "a 'moof' box or one that may come before it (styp, sidx, prft, emsg)",
            });
        }
    }
    let moof = read_box(bytes, moof_at, bytes.len())?;
    if &moof.box_type != b"moof" {
        return Err(Mp4Error::UnexpectedBox {
            offset: moof_at,
            found: moof.box_type,
            expected: "a 'moof' box",
        });
    }
    if moof.end == bytes.len() {
        return Err(Mp4Error::MoofWithoutMdat { offset: moof.start });
    }
    let mdat = read_box(bytes, moof.end, bytes.len())?;
    if &mdat.box_type != b"mdat" {
        return Err(Mp4Error::MoofWithoutMdat { offset: moof.start });
    }
    if mdat.end == mdat.body {
        return Err(Mp4Error::EmptyMdat { offset: mdat.start });
    }
    if mdat.end != bytes.len() {
        return Err(Mp4Error::TrailingBytes {
            offset: mdat.end,
            len: bytes.len() - mdat.end,
        });
    }
    parse_fragment(bytes, &moof, &mdat, &init.tracks, init.main_track)
}

/// Reads the fragment made of `moof` and the `mdat` after it, both boxes of `data`.
pub(super) fn parse_fragment(
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
    let has_video = tracks
        .get(main_track)
        .is_some_and(|t| t.kind == TrackKind::Video);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::testutil::*;
    use crate::mp4::Movie;

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

    /// `prefix` followed by fragment `i` of the sample, as a live publisher sends it.
    fn alone(m: &Movie, i: usize, prefix: &[u8]) -> Vec<u8> {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&SAMPLE[m.fragments[i].range.clone()]);
        bytes
    }

    #[test]
    fn each_fragment_alone_parses_as_in_the_movie() {
        let m = Movie::parse(SAMPLE).unwrap();
        let init = sample_init();
        for prefix in [
            Vec::new(),
            styp(),
            [styp(), boxed(b"prft", &[0; 24])].concat(),
        ] {
            for (i, whole) in m.fragments.iter().enumerate() {
                let bytes = alone(&m, i, &prefix);
                let f = parse_fragment_at(&bytes, prefix.len(), &init).unwrap();
                assert_eq!(f.range, prefix.len()..bytes.len(), "fragment {i}");
                assert_eq!(f.runs, whole.runs, "fragment {i}");
                assert_eq!(f.keyframe, whole.keyframe, "fragment {i}");
                assert_eq!(
                    (f.mfhd_seq_at, f.mdat_at, f.mdat_body_at),
                    (whole.mfhd_seq_at, whole.mdat_at, whole.mdat_body_at)
                );
            }
        }
    }

    #[test]
    fn a_fragment_whose_video_starts_on_a_non_sync_sample_is_no_keyframe() {
        let m = Movie::parse(SAMPLE).unwrap();
        let init = sample_init();
        let mut bytes = alone(&m, 1, &[]);
        let video = m.fragments[1]
            .runs
            .iter()
            .find(|r| r.track == m.main_track)
            .unwrap();
        let trun = read_box(&bytes, video.trun_at.unwrap(), bytes.len()).unwrap();
        let t = Trun::read(&bytes, &trun).unwrap();
        let first = t.sample(&bytes, 0, &video.defaults).unwrap();
        let flags_at = match t.first_sample_flags {
            Some(_) => t.data_offset_at.map_or(trun.body + 8, |at| at + 4),
            None => panic!("the sample's video trun has first-sample flags"),
        };
        assert_eq!(first.flags & SAMPLE_IS_NON_SYNC, 0);
        bytes[flags_at..flags_at + 4].copy_from_slice(&SAMPLE_IS_NON_SYNC.to_be_bytes());
        assert!(!parse_fragment_at(&bytes, 0, &init).unwrap().keyframe);
    }

    #[test]
    fn a_fragment_piece_must_be_prefix_moof_and_mdat_exactly() {
        let m = Movie::parse(SAMPLE).unwrap();
        let init = sample_init();
        let frag = alone(&m, 0, &styp());
        let at = styp().len();
        let moof_len = m.fragments[0].mdat_at;
        // moof_at inside the styp, past the end, or on the mdat.
        assert!(parse_fragment_at(&frag, at - 4, &init).is_err());
        assert_eq!(
            parse_fragment_at(&frag, frag.len() + 1, &init),
            Err(Mp4Error::Truncated {
                offset: frag.len(),
                what: "the moof box"
            })
        );
        assert!(matches!(
            parse_fragment_at(&frag, at + moof_len, &init),
            Err(Mp4Error::UnexpectedBox { offset, found, .. }) if offset == at && &found == b"moof"
        ));
        let no_moof = [&frag[..at], &frag[at + moof_len..]].concat();
        assert_eq!(
            parse_fragment_at(&no_moof, at, &init),
            Err(Mp4Error::UnexpectedBox {
                offset: at,
                found: *b"mdat",
                expected: "a 'moof' box"
            })
        );
        // A prefix box that has no business before a moof.
        let ftyp = sample_ftyp_moov().0;
        let with_ftyp = alone(&m, 0, ftyp);
        assert!(matches!(
            parse_fragment_at(&with_ftyp, ftyp.len(), &init),
            Err(Mp4Error::UnexpectedBox { offset: 0, found, .. }) if &found == b"ftyp"
        ));
        // Bytes after the mdat, a missing or empty mdat.
        let mut longer = frag.clone();
        longer.extend(boxed(b"free", &[]));
        assert_eq!(
            parse_fragment_at(&longer, at, &init),
            Err(Mp4Error::TrailingBytes {
                offset: frag.len(),
                len: 8
            })
        );
        let moof_only = &frag[..at + moof_len];
        assert_eq!(
            parse_fragment_at(moof_only, at, &init),
            Err(Mp4Error::MoofWithoutMdat { offset: at })
        );
        let mut empty = moof_only.to_vec();
        empty.extend(boxed(b"mdat", &[]));
        assert_eq!(
            parse_fragment_at(&empty, at, &init),
            Err(Mp4Error::EmptyMdat {
                offset: at + moof_len
            })
        );
        let mut free = moof_only.to_vec();
        free.extend(boxed(b"free", &[1]));
        assert_eq!(
            parse_fragment_at(&free, at, &init),
            Err(Mp4Error::MoofWithoutMdat { offset: at })
        );
    }

    #[test]
    fn cut_or_lying_fragment_pieces_are_errors_not_panics() {
        let m = Movie::parse(SAMPLE).unwrap();
        let init = sample_init();
        let frag = alone(&m, 2, &styp());
        let at = styp().len();
        for len in 0..frag.len() {
            assert!(parse_fragment_at(&frag[..len], at, &init).is_err(), "{len}");
        }
        // A moof size past the end of the piece.
        let mut big = frag.clone();
        big[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse_fragment_at(&big, at, &init),
            Err(Mp4Error::Truncated { offset, .. }) if offset == at
        ));
        // Every byte of the moof set to 0xff in turn.
        let mut bad = frag.clone();
        for i in at..at + m.fragments[2].mdat_at {
            let was = bad[i];
            bad[i] = 0xff;
            let _ = parse_fragment_at(&bad, at, &init);
            bad[i] = was;
        }
        // An init segment built by hand with no tracks and a main track past the end.
        let empty = InitSegment {
            bytes: Vec::new(),
            tracks: Vec::new(),
            main_track: 7,
        };
        assert!(matches!(
            parse_fragment_at(&frag, at, &empty),
            Err(Mp4Error::UnknownTrack { .. })
        ));
    }
}
