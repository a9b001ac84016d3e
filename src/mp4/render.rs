//! Rewriting fragments: [`render_fragment`] copies a file's fragment with its timeline moved on
//! by whole loops (and the lead-in left out after the first pass), [`shift_decode_times`] moves a
//! live fragment's decode times in place, and [`fragment_times`] reads the times back out.

use super::boxes::{be32, be64, field, put32, require_child, Boxes};
use super::fragment::Fragment;
use super::lead_in::{leave_out_lead_in, LeadIn};
use super::plain::render_plain;
use super::{Movie, Mp4Error};

/// Writes `fragment`'s bytes into `out` with every track's decode time moved on by `loops` loop
/// periods and the `mfhd` sequence number set to `sequence`; on passes after the first (`loops`
/// above 0) the first fragment also leaves out its `LeadIn` samples. For a fragmented file `out`
/// always gets as many bytes as the fragment has; for a plain one it gets a moof and mdat written
/// from the sample tables (see `plain`). Returns false when a 32-bit (version 0) `tfdt` could not
/// hold the new time and wrapped.
pub fn render_fragment(
    movie: &Movie,
    data: &[u8],
    index: usize,
    loops: u64,
    sequence: u32,
    out: &mut Vec<u8>,
) -> bool {
    if let Some(plain) = movie.plain() {
        render_plain(movie, plain, data, index, loops, sequence, out);
        return true;
    }
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
        fits &= write_decode_time(out, run.tfdt_at, run.tfdt_v1, t);
    }
    leave_out_lead_in(out, lead_in, frag);
    fits
}

/// Sets each track run's `tfdt` decode time in `bytes` (a fragment parsed by
/// [`parse_fragment_at`](super::parse_fragment_at), so the offsets match) to the decode time
/// parsed into `frag` plus `shift[run.track]` ticks, added modulo 2^64 so that a shift can also
/// move times back (a publisher whose clock is ahead of the stream), or plus nothing for a track
/// `shift` does not reach; as the new times come from `frag`, not from `bytes`, shifting again replaces the
/// earlier shift rather than adding to it. Returns false if a 32-bit (version 0) `tfdt` could
/// not hold the result (it wraps, as [`render_fragment`] does).
pub fn shift_decode_times(bytes: &mut [u8], frag: &Fragment, shift: &[u64]) -> bool {
    let mut fits = true;
    for run in &frag.runs {
        let by = shift.get(run.track).copied().unwrap_or(0);
        let t = u128::from(run.decode_time.wrapping_add(by));
        let at = frag.range.start.saturating_add(run.tfdt_at);
        fits &= write_decode_time(bytes, at, run.tfdt_v1, t);
    }
    fits
}

/// Writes decode time `t` into the `tfdt` field at `at`, 64 bits wide if `v1` (saturating) else
/// 32 (wrapping); false when it wrapped.
fn write_decode_time(buf: &mut [u8], at: usize, v1: bool, t: u128) -> bool {
    if v1 {
        let t = u64::try_from(t).unwrap_or(u64::MAX);
        if let Some(f) = buf.get_mut(at..at.saturating_add(8)) {
            f.copy_from_slice(&t.to_be_bytes());
        }
        true
    } else {
        put32(buf, at, (t & u128::from(u32::MAX)) as u32);
        t <= u128::from(u32::MAX)
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
    use crate::mp4::boxes::be64;
    use crate::mp4::testutil::*;
    use crate::mp4::{parse_fragment_at, InitSegment};

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
    fn shift_decode_times_round_trips_through_fragment_times() {
        let m = Movie::parse(SAMPLE).unwrap();
        let init = sample_init();
        for (i, whole) in m.fragments.iter().enumerate() {
            let mut bytes = styp();
            bytes.extend_from_slice(&SAMPLE[whole.range.clone()]);
            let original = bytes.clone();
            let f = parse_fragment_at(&bytes, styp().len(), &init).unwrap();
            let shift: Vec<u64> = init
                .tracks
                .iter()
                .map(|t| 7 * u64::from(t.timescale))
                .collect();
            assert!(shift_decode_times(&mut bytes, &f, &shift));
            let (seq, times) = fragment_times(&bytes).unwrap();
            assert_eq!(seq, fragment_times(&original).unwrap().0, "fragment {i}");
            let want: Vec<u64> = f
                .runs
                .iter()
                .map(|r| r.decode_time + shift[r.track])
                .collect();
            assert_eq!(times, want, "fragment {i}");
            let differing = bytes.iter().zip(&original).filter(|(a, b)| a != b).count();
            assert!(
                differing <= 2 * 8,
                "fragment {i}: {differing} bytes changed"
            );
            // The times come from `f`: shifting by nothing gives back the bytes as they came.
            assert!(shift_decode_times(&mut bytes, &f, &[]));
            assert_eq!(bytes, original, "fragment {i}");
        }
    }

    #[test]
    fn shift_decode_times_says_when_a_32_bit_tfdt_wraps() {
        let file = synthetic(&[TestTrack::bframe_video(), TestTrack::audio(2)], 2, false);
        // The audio's tfdt as version 0 (32 bits).
        let file = map_traf_children(&file, 2, |t, bytes| {
            if t == b"tfdt" {
                let time = be64(bytes, 12).unwrap();
                full_box(b"tfdt", 0, 0, &be(&[time as u32]))
            } else {
                bytes.to_vec()
            }
        });
        let m = Movie::parse(&file).unwrap();
        let init = InitSegment {
            bytes: m.init.clone(),
            tracks: m.tracks.clone(),
            main_track: m.main_track,
        };
        let mut bytes = file[m.fragments[1].range.clone()].to_vec();
        let f = parse_fragment_at(&bytes, 0, &init).unwrap();
        assert_eq!(f.runs[1].decode_time, 240);
        assert!(shift_decode_times(
            &mut bytes,
            &f,
            &[5, u64::from(u32::MAX) - 240]
        ));
        assert_eq!(
            fragment_times(&bytes).unwrap().1,
            [160 + 5, u64::from(u32::MAX)]
        );
        assert!(!shift_decode_times(&mut bytes, &f, &[u64::MAX, 1 << 32]));
        // Shifts are added modulo 2^64 (u64::MAX moves the 64-bit one back by 1); the 32-bit
        // one wraps.
        assert_eq!(fragment_times(&bytes).unwrap().1, [159, 240]);
    }
}
