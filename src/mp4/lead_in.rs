//! The B-frame lead-in of a looping file ([`LeadIn`]): finding the audio samples that passes
//! after the first leave out of the first fragment, and cutting them out of a rendered copy of
//! it in place. Rendering the rest of a fragment is `render`'s job.

use super::boxes::{be32, box_size_after, field, put32, read_box, resize_box, Boxes};
use super::fragment::{Fragment, Trun, TRUN_CTO};
use super::init::TrackKind;
use super::{Movie, Mp4Error};

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
pub(super) struct LeadIn {
    /// Index into the first fragment's `runs`.
    pub(super) run: usize,
    /// Ticks of the left-out samples: the run's decode time moves on by this much.
    pub(super) duration: u64,
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
    /// Finds the samples passes after the first leave out (see [`LeadIn`]). There are none unless
    /// the main track's first frame is shown after its decode time (composition offsets) and no
    /// track has an edit list, so every other file loops byte for byte as it always did. A track
    /// qualifies when its first run is in the first fragment and its first `trun` has a data
    /// offset, no composition offsets and no first-sample flags (audio as ffmpeg writes it); at
    /// least one of its samples always stays.
    pub(super) fn find_lead_in(&self, data: &[u8]) -> Result<Vec<LeadIn>, Mp4Error> {
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

/// Takes the [`LeadIn`] samples out of a copy of the first fragment, in place and keeping its
/// length: each trun gets its new sample count and data offset and loses the rows of the left-out
/// samples, the boxes after each cut (the `mdat` header with them) move up, and the `mdat` grows
/// by the bytes cut, so every sample's data stays at the offset its trun gives. The left-out
/// samples' data stays in the `mdat`, unused. Works on the unchanged copy: all fields first, then
/// the moves.
pub(super) fn leave_out_lead_in(out: &mut [u8], lead_in: &[LeadIn], frag: &Fragment) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::{be64, require_child};
    use crate::mp4::init::SampleDefaults;
    use crate::mp4::testutil::*;
    use crate::mp4::*;

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

    const BFRAMES: &[u8] = include_bytes!("../../tests/bframes.mp4");

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
