//! Plain (non-fragmented) MP4 and QuickTime files fragmented in memory: [`parse_plain`] reads
//! the sample tables of every video and audio track (`tables`), cuts them into fragments (one per
//! GOP of the main video track, long GOPs cut further, the other tracks cut at the same times),
//! finds the audio lead-in passes after the first leave out, and writes an init segment whose
//! moov has `mvex`/`trex` and empty sample tables; [`render_plain`] writes one fragment (moof +
//! mdat) with the samples' bytes copied from the file. The file itself is never copied: what
//! stays in memory is the per-sample arrays.
//!
//! Edit lists and composition offsets are folded into each sample's composition offset (signed,
//! `trun` version 1), so the generated init segment needs no edit list and every player applies
//! the same timeline.

use super::boxes::{be16, be32, field, require_child, BoxRef, Boxes};
use super::codecs::{audio_children_at, audio_config};
use super::fragment::{Fragment, TrackRun};
use super::init::{parse_trak, Track, TrackKind};
use super::tables::{read_sample_table, SampleTable, TrackInfo};
use super::{Movie, Mp4Error};

/// A fragment of a video file starts at a keyframe once it is this long (in seconds, as a
/// fraction: 1/2), so files with very short GOPs do not turn into tiny fragments...
const MIN_FRAGMENT: (u64, u64) = (1, 2);
/// ...and is cut, at a frame that is not a keyframe, when it is this long (2 s), as short parts
/// of a live feed are.
const MAX_FRAGMENT: (u64, u64) = (2, 1);
/// Fragments of a file without video are cut every second.
const AUDIO_FRAGMENT: (u64, u64) = (1, 1);
/// A fragment is cut before its main track's samples exceed this many bytes.
const MAX_FRAGMENT_BYTES: u64 = 8 << 20;
/// Longest lead-in looked for, in samples (as for fragmented files).
const MAX_LEAD_IN_SAMPLES: u32 = 4096;
/// Most tracks a plain file may have.
const MAX_TRACKS: usize = 64;

/// Sample flags written into each `trun` row: a sync sample depends on no other; any other
/// sample depends on others and is not a sync sample.
const SYNC_FLAGS: u32 = 0x0200_0000;
const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// What a plain file's movie keeps besides its fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plain {
    /// Each track's samples, in the order of the movie's tracks.
    tables: Vec<SampleTable>,
    /// Per fragment, per run: the index of the run's first sample.
    firsts: Vec<Box<[u32]>>,
    /// Per track: the samples and ticks passes after the first leave out (see `LeadIn`).
    pub(super) lead_in: Vec<(u32, u64)>,
    /// Bytes of all samples.
    pub(super) bytes: u64,
}

impl Plain {
    /// Keeps the first `n` fragments (see `Movie::drop_unplayed`).
    pub(super) fn truncate(&mut self, n: usize) {
        self.firsts.truncate(n);
    }
}

/// Everything `Movie::parse` needs from a plain file.
pub(super) struct PlainMovie {
    pub(super) init: Vec<u8>,
    pub(super) tracks: Vec<Track>,
    pub(super) fragments: Vec<Fragment>,
    pub(super) main_track: usize,
    pub(super) plain: Plain,
}

/// A track the movie keeps: what `init` read, its `trak`, and its samples.
struct Kept {
    track: Track,
    trak: BoxRef,
    table: SampleTable,
}

/// Reads the plain file whose movie box is `moov`: every video and audio track with samples,
/// cut into fragments.
pub(super) fn parse_plain(data: &[u8], moov: &BoxRef) -> Result<PlainMovie, Mp4Error> {
    let mut kept: Vec<Kept> = Vec::new();
    let mut any_media = false;
    for trak in Boxes::children(data, moov) {
        let trak = trak?;
        if &trak.box_type != b"trak" {
            continue;
        }
        let track = parse_trak(data, &trak)?;
        if track.kind == TrackKind::Other {
            continue;
        }
        any_media = true;
        if track.codec.is_none() {
            return Err(Mp4Error::UnsupportedCodec {
                offset: trak.start,
                track_id: track.id,
                sample_entry: track.sample_entry,
            });
        }
        if kept.iter().any(|k| k.track.id == track.id) || kept.len() == MAX_TRACKS {
            return Err(Mp4Error::Unsupported {
                offset: trak.start,
                what: "two tracks with the same id, or more than 64 tracks",
            });
        }
        let movie_timescale = movie_timescale(data, moov)?;
        let mdia = require_child(data, &trak, "mdia", "trak")?;
        let minf = require_child(data, &mdia, "minf", "mdia")?;
        let stbl = require_child(data, &minf, "stbl", "minf")?;
        let info = TrackInfo {
            id: track.id,
            timescale: track.timescale,
            movie_timescale,
        };
        let table = read_sample_table(data, &trak, &stbl, &info)?;
        if table.len() > 0 {
            kept.push(Kept { track, trak, table });
        }
    }
    if kept.is_empty() {
        return Err(if any_media {
            Mp4Error::NoSamples { offset: moov.start }
        } else {
            Mp4Error::NoTracks { offset: moov.start }
        });
    }
    let main_track = kept
        .iter()
        .position(|k| k.track.kind == TrackKind::Video)
        .unwrap_or(0);
    let init = init_segment(data, &kept, movie_timescale(data, moov)?)?;
    let (tracks, tables): (Vec<Track>, Vec<SampleTable>) =
        kept.into_iter().map(|k| (k.track, k.table)).unzip();
    let cuts = cut_points(&tracks, &tables, main_track);
    let (fragments, firsts) = build_fragments(&tracks, &tables, main_track, &cuts);
    let lead_in = find_lead_in(&tracks, &tables, main_track, &fragments[0]);
    let bytes = tables.iter().map(|t| t.bytes).sum();
    Ok(PlainMovie {
        init,
        tracks,
        fragments,
        main_track,
        plain: Plain {
            tables,
            firsts,
            lead_in,
            bytes,
        },
    })
}

/// The movie's timescale, from its `mvhd`.
fn movie_timescale(data: &[u8], moov: &BoxRef) -> Result<u32, Mp4Error> {
    let mvhd = require_child(data, moov, "mvhd", "moov")?;
    let v = field(data.get(mvhd.body).copied(), mvhd.start, "the mvhd box")?;
    let at = mvhd.body + if v == 1 { 20 } else { 12 };
    field(be32(data, at), mvhd.start, "the mvhd box")
}

/// `a * b` compared with `c * d`, without overflow.
fn less(a: i128, b: u64, c: i128, d: u64) -> bool {
    a * i128::from(b) < c * i128::from(d)
}

/// Where fragments start: per track, the index of each fragment's first sample. The main track
/// is cut at its keyframes (or by length); every other track at its first sample that starts no
/// earlier than the main track's cut (decode times, with each edit list's move applied). The
/// last cut of each track is where its last fragment ends.
fn cut_points(tracks: &[Track], tables: &[SampleTable], main: usize) -> Vec<Vec<u32>> {
    let m = &tables[main];
    let ts = u64::from(tracks[main].timescale);
    let video = tracks[main].kind == TrackKind::Video;
    let (min, max) = if video {
        (MIN_FRAGMENT, MAX_FRAGMENT)
    } else {
        (AUDIO_FRAGMENT, AUDIO_FRAGMENT)
    };
    // In ticks: at least `min`, at most `max` seconds.
    let min_ticks = ts * min.0 / min.1;
    let max_ticks = ts * max.0 / max.1;
    // Each track's cuts end with where its last fragment ends.
    let mut main_cuts = vec![0u32];
    let mut cut_times = vec![0u64];
    let (mut start, mut dts, mut bytes) = (0u64, 0u64, 0u64);
    for i in 0..m.len() {
        let elapsed = dts - start;
        let cut = i > 0
            && (elapsed >= max_ticks
                || (elapsed >= min_ticks && m.is_sync(i))
                || bytes >= MAX_FRAGMENT_BYTES);
        if cut {
            main_cuts.push(i);
            cut_times.push(dts);
            start = dts;
            bytes = 0;
        }
        bytes += u64::from(m.sizes[i as usize]);
        dts += u64::from(m.durations[i as usize]);
    }
    main_cuts.push(m.len());
    let mut targets: Vec<i128> = cut_times
        .iter()
        .map(|&t| i128::from(t) + i128::from(m.shift))
        .collect();
    // Other tracks end where the main one is last shown: the loop is no longer than the
    // shortest track, so what a track has after that would only be replaced by the next pass.
    let last_shown = (0..m.len())
        .map(|i| m.presentation_offset(i))
        .max()
        .unwrap_or(0);
    targets.push(i128::from(dts) + i128::from(last_shown.max(m.shift)));
    tables
        .iter()
        .enumerate()
        .map(|(t, table)| {
            if t == main {
                return main_cuts.clone();
            }
            let tts = u64::from(tracks[t].timescale);
            let mut cuts = vec![0u32];
            let (mut i, mut dts) = (0u32, 0u64);
            for &target in &targets[1..] {
                while i < table.len()
                    && less(i128::from(dts) + i128::from(table.shift), ts, target, tts)
                {
                    dts += u64::from(table.durations[i as usize]);
                    i += 1;
                }
                cuts.push(i);
            }
            cuts
        })
        .collect()
}

/// The fragments the cuts make, with each run's first sample.
fn build_fragments(
    tracks: &[Track],
    tables: &[SampleTable],
    main: usize,
    cuts: &[Vec<u32>],
) -> (Vec<Fragment>, Vec<Box<[u32]>>) {
    let count = cuts[main].len() - 1;
    let mut fragments = Vec::with_capacity(count);
    let mut firsts = Vec::with_capacity(count);
    let mut dts = vec![0u64; tables.len()];
    for f in 0..count {
        let mut runs = Vec::new();
        let mut run_firsts = Vec::new();
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for (t, table) in tables.iter().enumerate() {
            let a = cuts[t][f];
            let b = cuts[t][f + 1];
            if a >= b {
                continue;
            }
            let mut duration = 0u64;
            let mut first_presented = i64::MAX;
            for i in a..b {
                let shown = i64::try_from(duration)
                    .unwrap_or(i64::MAX)
                    .saturating_add(table.presentation_offset(i));
                first_presented = first_presented.min(shown);
                duration += u64::from(table.durations[i as usize]);
                let at = table.offsets[i as usize];
                lo = lo.min(at);
                hi = hi.max(at + u64::from(table.sizes[i as usize]));
            }
            runs.push(TrackRun {
                track: t,
                decode_time: dts[t],
                duration,
                first_presented,
                tfdt_at: 0,
                tfdt_v1: true,
                traf_at: 0,
                trun_at: None,
                defaults: tracks[t].defaults,
                first_sample_sync: table.is_sync(a),
                samples: b - a,
            });
            run_firsts.push(a);
            dts[t] += duration;
        }
        let keyframe = tracks[main].kind != TrackKind::Video
            || runs
                .iter()
                .find(|r| r.track == main)
                .is_some_and(|r| r.first_sample_sync);
        // INVARIANT: every sample lies inside the file (tables checks), so these fit a usize.
        let range = lo.min(hi) as usize..hi as usize;
        fragments.push(Fragment {
            range,
            mfhd_seq_at: 0,
            mdat_at: 0,
            mdat_body_at: 0,
            runs,
            keyframe,
        });
        firsts.push(run_firsts.into_boxed_slice());
    }
    (fragments, firsts)
}

/// Per track, the samples at the start of the first fragment that passes after the first leave
/// out: audio that is over before the main track shows its first frame (an encoder's priming
/// samples, or the audio a B-frame video without an edit list has before its first picture), so
/// each track of a new pass starts where it ended on the one before. At least one sample of the
/// run always stays.
fn find_lead_in(
    tracks: &[Track],
    tables: &[SampleTable],
    main: usize,
    first: &Fragment,
) -> Vec<(u32, u64)> {
    let mut lead_in = vec![(0u32, 0u64); tracks.len()];
    let Some(main_run) = first.runs.iter().find(|r| r.track == main) else {
        return lead_in;
    };
    let main_ts = u64::from(tracks[main].timescale);
    let shown = i128::from(main_run.first_presented);
    for run in &first.runs {
        let t = run.track;
        if t == main || tracks[t].kind != TrackKind::Audio {
            continue;
        }
        let table = &tables[t];
        let ts = u64::from(tracks[t].timescale);
        let (mut skipped, mut ticks) = (0u32, 0u64);
        while skipped < run.samples.saturating_sub(1).min(MAX_LEAD_IN_SAMPLES) {
            let d = u64::from(table.durations[skipped as usize]);
            let end = i128::from(ticks + d) + i128::from(table.presentation_offset(skipped));
            // Over once the first frame shows: end / ts <= shown / main_ts.
            if less(shown, ts, end, main_ts) {
                break;
            }
            skipped += 1;
            ticks += d;
        }
        lead_in[t] = (skipped, ticks);
    }
    lead_in
}

// ---- The init segment ----

fn put_box(out: &mut Vec<u8>, t: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(t);
    body(out);
    let size = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

fn put_full_box(out: &mut Vec<u8>, t: &[u8; 4], vf: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_box(out, t, |out| {
        out.extend_from_slice(&vf.to_be_bytes());
        body(out);
    });
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Copies the box `b` with a plain 32-bit size: its header said how long it is where it was (a
/// size of 0 runs to the end of its parent), which need not hold where the copy goes.
fn copy_box(out: &mut Vec<u8>, data: &[u8], b: &BoxRef) {
    put_box(out, &b.box_type, |o| {
        o.extend_from_slice(&data[b.body..b.end])
    });
}

/// Copies the box `b` with the `len` bytes at `at` (from its body) set to zero, if they are in it.
fn copy_zeroed(out: &mut Vec<u8>, data: &[u8], b: &BoxRef, at: usize, len: usize) {
    let start = out.len();
    copy_box(out, data, b);
    let from = start + 8 + at;
    if let Some(f) = out.get_mut(from..from + len) {
        f.fill(0);
    }
}

/// ftyp + a moov describing the kept tracks with no samples and an `mvex`: an MSE init segment.
fn init_segment(data: &[u8], kept: &[Kept], movie_timescale: u32) -> Result<Vec<u8>, Mp4Error> {
    let mut out = Vec::new();
    put_box(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"isom");
        put32(o, 0x200);
        o.extend_from_slice(b"isomiso6mp41");
    });
    let mut moov = Vec::new();
    let next_id = kept
        .iter()
        .map(|k| k.track.id)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    put_full_box(&mut moov, b"mvhd", 0, |o| {
        // creation, modification, timescale, duration (0: unknown, as for a live stream),
        // rate 1.0, volume 1.0 and reserved(10), the unity matrix, pre_defined(24), next id.
        o.extend_from_slice(&[0; 8]);
        put32(o, movie_timescale.max(1));
        put32(o, 0);
        put32(o, 0x0001_0000);
        o.extend_from_slice(&[0x01, 0x00]);
        o.extend_from_slice(&[0; 10]);
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            put32(o, v);
        }
        o.extend_from_slice(&[0; 24]);
        put32(o, next_id);
    });
    for k in kept {
        write_trak(&mut moov, data, k)?;
    }
    put_box(&mut moov, b"mvex", |o| {
        for k in kept {
            put_full_box(o, b"trex", 0, |o| {
                for v in [k.track.id, 1, 0, 0, 0] {
                    put32(o, v);
                }
            });
        }
    });
    put_box(&mut out, b"moov", |o| o.extend_from_slice(&moov));
    Ok(out)
}

fn write_trak(out: &mut Vec<u8>, data: &[u8], k: &Kept) -> Result<(), Mp4Error> {
    let tkhd = require_child(data, &k.trak, "tkhd", "trak")?;
    let mdia = require_child(data, &k.trak, "mdia", "trak")?;
    let mdhd = require_child(data, &mdia, "mdhd", "mdia")?;
    let hdlr = require_child(data, &mdia, "hdlr", "mdia")?;
    let minf = require_child(data, &mdia, "minf", "mdia")?;
    let stbl = require_child(data, &minf, "stbl", "minf")?;
    let stsd = require_child(data, &stbl, "stsd", "stbl")?;
    let mut trak = Vec::new();
    // The durations say how long the file is; a live stream has none.
    let v1 = data.get(tkhd.body) == Some(&1);
    copy_zeroed(
        &mut trak,
        data,
        &tkhd,
        if v1 { 28 } else { 20 },
        if v1 { 8 } else { 4 },
    );
    let mut media = Vec::new();
    let v1 = data.get(mdhd.body) == Some(&1);
    copy_zeroed(
        &mut media,
        data,
        &mdhd,
        if v1 { 24 } else { 16 },
        if v1 { 8 } else { 4 },
    );
    copy_box(&mut media, data, &hdlr);
    let mut info = Vec::new();
    for c in Boxes::children(data, &minf) {
        let c = c?;
        if &c.box_type != b"stbl" {
            copy_box(&mut info, data, &c);
        }
    }
    put_box(&mut info, b"stbl", |o| {
        write_stsd(o, data, &stsd, &k.track);
        for t in [b"stts", b"stsc", b"stco"] {
            put_full_box(o, t, 0, |o| put32(o, 0));
        }
        put_full_box(o, b"stsz", 0, |o| o.extend_from_slice(&[0; 8]));
    });
    put_box(&mut media, b"minf", |o| o.extend_from_slice(&info));
    put_box(&mut trak, b"mdia", |o| o.extend_from_slice(&media));
    put_box(out, b"trak", |o| o.extend_from_slice(&trak));
    Ok(())
}

/// The `stsd` with only the first sample entry (the only one samples may use), as it is but for a
/// QuickTime sound description, which is rewritten as an ISO one (version 0, its `esds` out of
/// the `wave` box) that browsers read.
fn write_stsd(out: &mut Vec<u8>, data: &[u8], stsd: &BoxRef, track: &Track) {
    let entry = Boxes::new(data, stsd.body + 8..stsd.end)
        .next()
        .and_then(Result::ok);
    put_full_box(out, b"stsd", 0, |o| {
        let Some(entry) = entry else {
            put32(o, 0);
            return;
        };
        put32(o, 1);
        let audio_entry = matches!(
            &entry.box_type,
            b"mp4a" | b"Opus" | b"fLaC" | b"ac-3" | b"ec-3"
        );
        let quicktime = track.kind == TrackKind::Audio
            && audio_entry
            && (be16(data, entry.body + 8).is_some_and(|v| v != 0)
                || audio_config(data, &entry, b"wave").ok().flatten().is_some());
        if !quicktime || entry.body + 28 > entry.end {
            copy_box(o, data, &entry);
            return;
        }
        put_box(o, &entry.box_type, |o| {
            let fixed = &data[entry.body..entry.body + 28];
            // reserved(6) data_reference_index(2), version 0, revision and vendor 0.
            o.extend_from_slice(&fixed[..8]);
            o.extend_from_slice(&[0; 8]);
            let v2 = be16(data, entry.body + 8) == Some(2);
            if v2 {
                // Version 2 keeps the real values elsewhere; the decoder reads its config.
                o.extend_from_slice(&[0, 2, 0, 16, 0, 0, 0, 0]);
                let rate = if track.timescale <= 0xffff {
                    track.timescale
                } else {
                    0
                };
                put32(o, rate << 16);
            } else {
                o.extend_from_slice(&fixed[16..28]);
            }
            let children = audio_children_at(data, &entry)..entry.end;
            for c in Boxes::new(data, children).map_while(Result::ok) {
                if &c.box_type == b"wave" {
                    for w in Boxes::children(data, &c).map_while(Result::ok) {
                        if matches!(&w.box_type, b"esds" | b"dOps" | b"dfLa" | b"dac3" | b"dec3") {
                            copy_box(o, data, &w);
                        }
                    }
                } else {
                    copy_box(o, data, &c);
                }
            }
        });
    });
}

// ---- Rendering ----

/// Bytes of a `trun` row: duration, size, flags, composition offset.
const ROW: usize = 16;
/// mfhd, and per traf its header, tfhd, tfdt and the trun's fixed part.
const MFHD_LEN: usize = 16;
const TRAF_FIXED: usize = 8 + 16 + 20 + 8 + 12;

/// Writes fragment `index` of pass `loops` of the plain movie `movie` into `out`: a moof whose
/// trafs have every track's decode time moved on by `loops` loop periods (and, after the first
/// pass, the lead-in left out), with `sequence` in its `mfhd`, then an mdat with the samples'
/// bytes copied from `data`.
pub(super) fn render_plain(
    movie: &Movie,
    plain: &Plain,
    data: &[u8],
    index: usize,
    loops: u64,
    sequence: u32,
    out: &mut Vec<u8>,
) {
    out.clear();
    let (Some(frag), Some(firsts)) = (movie.fragments.get(index), plain.firsts.get(index)) else {
        return;
    };
    let (period, period_ts) = movie.loop_period();
    // (run, first sample, count, ticks skipped, bytes)
    let mut runs = Vec::with_capacity(frag.runs.len());
    let mut moof_len = 8 + MFHD_LEN;
    let mut mdat_len = 0u64;
    for (run, &first) in frag.runs.iter().zip(firsts.iter()) {
        let table = &plain.tables[run.track];
        let (skip, skipped) = if loops > 0 && index == 0 {
            plain.lead_in[run.track]
        } else {
            (0, 0)
        };
        let (a, b) = (first + skip.min(run.samples - 1), first + run.samples);
        let bytes: u64 = table.sizes[a as usize..b as usize]
            .iter()
            .map(|&s| u64::from(s))
            .sum();
        moof_len += TRAF_FIXED + ROW * (b - a) as usize;
        mdat_len += bytes;
        runs.push((run, a, b, skipped));
    }
    let wide = mdat_len + 8 > u64::from(u32::MAX);
    let mdat_header = if wide { 16 } else { 8 };
    out.reserve(moof_len + mdat_header + mdat_len as usize);
    put_box(out, b"moof", |o| {
        put_full_box(o, b"mfhd", 0, |o| put32(o, sequence));
        let mut data_offset = (moof_len + mdat_header) as u64;
        for &(run, a, b, skipped) in &runs {
            let table = &plain.tables[run.track];
            let track = &movie.tracks[run.track];
            let shift = u128::from(loops) * u128::from(period) * u128::from(track.timescale)
                / u128::from(period_ts.max(1));
            let t = u128::from(run.decode_time) + shift + u128::from(skipped);
            put_box(o, b"traf", |o| {
                // default-base-is-moof: data offsets count from the moof.
                put_full_box(o, b"tfhd", 0x02_0000, |o| put32(o, track.id));
                put_full_box(o, b"tfdt", 0x0100_0000, |o| {
                    o.extend_from_slice(&u64::try_from(t).unwrap_or(u64::MAX).to_be_bytes())
                });
                // Version 1 (signed offsets); data offset, duration, size, flags, offset.
                put_full_box(o, b"trun", 0x0100_0f01, |o| {
                    put32(o, b - a);
                    put32(o, i32::try_from(data_offset).unwrap_or(i32::MAX) as u32);
                    for i in a..b {
                        let size = table.sizes[i as usize];
                        put32(o, table.durations[i as usize]);
                        put32(o, size);
                        put32(
                            o,
                            if table.is_sync(i) {
                                SYNC_FLAGS
                            } else {
                                NON_SYNC_FLAGS
                            },
                        );
                        let cto = table.presentation_offset(i);
                        let cto = cto.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
                        put32(o, cto as u32);
                        data_offset += u64::from(size);
                    }
                });
            });
        }
    });
    debug_assert_eq!(out.len(), moof_len, "the moof is as long as worked out");
    if wide {
        put32(out, 1);
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(mdat_len + 16).to_be_bytes());
    } else {
        put32(out, (mdat_len + 8) as u32);
        out.extend_from_slice(b"mdat");
    }
    for &(run, a, b, _) in &runs {
        let table = &plain.tables[run.track];
        // Samples that follow each other in the file are copied in one piece.
        let mut i = a;
        while i < b {
            let start = table.offsets[i as usize];
            let mut end = start + u64::from(table.sizes[i as usize]);
            i += 1;
            while i < b && table.offsets[i as usize] == end {
                end += u64::from(table.sizes[i as usize]);
                i += 1;
            }
            // INVARIANT: every sample lies inside `data` (tables checks it).
            match data.get(start as usize..end as usize) {
                Some(bytes) => out.extend_from_slice(bytes),
                None => {
                    debug_assert!(false, "sample bytes {start}..{end} outside the file");
                    out.resize(out.len() + (end - start) as usize, 0);
                }
            }
        }
    }
}
