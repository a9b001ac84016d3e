//! The muxer and the TS demuxer against files ffmpeg wrote from the same elementary streams
//! (tests/ingest: an MPEG-TS, and the fragmented MP4 ffmpeg remuxes it into with `-c copy`).

use super::annexb::{AccessUnit, AnnexBSplitter};
use super::ts::{TsDemuxer, TsEvent, PACKET};
use super::*;
use crate::mp4::{read_box, Boxes, Movie, TrackKind};

const H264_TS: &[u8] = include_bytes!("../../tests/ingest/h264aac.ts");
const H264_MP4: &[u8] = include_bytes!("../../tests/ingest/h264aac.mp4");
const H265_TS: &[u8] = include_bytes!("../../tests/ingest/h265aac.ts");
const H265_MP4: &[u8] = include_bytes!("../../tests/ingest/h265aac.mp4");
const H264_ES: &[u8] = include_bytes!("../../tests/ingest/h264.264");

/// Demuxes and muxes `ts` fed in pieces of `piece` bytes.
fn mux_ts(ts: &[u8], piece: usize, part_ms: u64) -> (Vec<PushEvent>, TsDemuxer) {
    let mut demux = TsDemuxer::default();
    let mut mux = Muxer::new(part_ms * 1_000_000, None, false);
    let mut out = Vec::new();
    let mut sink = |e: TsEvent<'_>| match e {
        TsEvent::Tracks { video, audio } => {
            mux.set_tracks(video, audio, &mut out);
            Ok(())
        }
        TsEvent::Video { dts, pts, data } => mux.video(dts, pts, data, &mut out),
        TsEvent::Audio { config, pts, frame } => mux.audio(config, pts, frame, &mut out),
        TsEvent::VideoLost => {
            mux.skip_to_keyframe(&mut out);
            Ok(())
        }
    };
    for p in ts.chunks(piece) {
        demux.push(p, &mut sink).unwrap();
    }
    demux.finish(&mut sink).unwrap();
    mux.finish(&mut out);
    (out, demux)
}

/// A box's body found by a path of types from the start of `data` (any box of each type).
fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    fn walk<'a>(
        data: &'a [u8],
        range: std::ops::Range<usize>,
        path: &[&[u8; 4]],
    ) -> Option<&'a [u8]> {
        let (t, rest) = path.split_first()?;
        for b in Boxes::new(data, range).filter_map(Result::ok) {
            if &b.box_type != *t {
                continue;
            }
            if rest.is_empty() {
                return Some(&data[b.body..b.end]);
            }
            // Sample entries and stsd have fixed fields before their children.
            let skip = match *t {
                b"stsd" => 8,
                b"avc1" | b"hvc1" => 78,
                b"mp4a" | b"Opus" => 28,
                _ => 0,
            };
            if let Some(found) = walk(data, b.body + skip..b.end, rest) {
                return Some(found);
            }
        }
        None
    }
    walk(data, 0..data.len(), path)
}

/// (sample sizes, sync flags, presentation times in seconds) of the video track, over all
/// fragments, read from each trun as written.
fn video_samples(frags: &[&[u8]], timescale: u32, track_id: u32) -> Vec<(u32, bool, f64)> {
    let mut out = Vec::new();
    for f in frags {
        let moof = read_box(f, 0, f.len()).unwrap();
        for traf in Boxes::children(f, &moof).filter_map(Result::ok) {
            if &traf.box_type != b"traf" {
                continue;
            }
            let kids: Vec<_> = Boxes::children(f, &traf).filter_map(Result::ok).collect();
            let tfhd = kids.iter().find(|b| &b.box_type == b"tfhd").unwrap();
            let be = |at: usize| u32::from_be_bytes(f[at..at + 4].try_into().unwrap());
            if be(tfhd.body + 4) != track_id {
                continue;
            }
            let tfhd_flags = be(tfhd.body) & 0xff_ffff;
            let mut at = tfhd.body + 8;
            let (mut def_dur, mut def_size, mut def_flags) = (0, 0, 0);
            for (flag, len) in [(1, 8), (2, 4), (8, 4), (0x10, 4), (0x20, 4)] {
                if tfhd_flags & flag != 0 {
                    match flag {
                        8 => def_dur = be(at),
                        0x10 => def_size = be(at),
                        0x20 => def_flags = be(at),
                        _ => {}
                    }
                    at += len;
                }
            }
            let tfdt = kids.iter().find(|b| &b.box_type == b"tfdt").unwrap();
            let mut t = if f[tfdt.body] == 1 {
                u64::from_be_bytes(f[tfdt.body + 4..tfdt.body + 12].try_into().unwrap())
            } else {
                u64::from(be(tfdt.body + 4))
            } as i64;
            let trun = kids.iter().find(|b| &b.box_type == b"trun").unwrap();
            let flags = be(trun.body) & 0xff_ffff;
            let n = be(trun.body + 4);
            let mut at = trun.body + 8;
            if flags & 1 != 0 {
                at += 4;
            }
            let mut first = None;
            if flags & 4 != 0 {
                first = Some(be(at));
                at += 4;
            }
            for i in 0..n {
                let mut row = |bit: u32, def: u32| {
                    if flags & bit != 0 {
                        at += 4;
                        be(at - 4)
                    } else {
                        def
                    }
                };
                let dur = row(0x100, def_dur);
                let size = row(0x200, def_size);
                let mut sflags = row(0x400, def_flags);
                if i == 0 {
                    sflags = first.unwrap_or(sflags);
                }
                let cto = row(0x800, 0) as i32;
                out.push((
                    size,
                    sflags & 0x1_0000 == 0,
                    (t + i64::from(cto)) as f64 / f64::from(timescale),
                ));
                t += i64::from(dur);
            }
        }
    }
    out
}

fn ours(events: &[PushEvent]) -> (InitSegment, Vec<&[u8]>) {
    let mut init = None;
    let mut frags = Vec::new();
    for e in events {
        match e {
            PushEvent::Init(i) => {
                assert!(init.is_none(), "one init");
                init = Some(i.clone());
            }
            PushEvent::Fragment(f) => frags.push(&f.bytes[..]),
        }
    }
    (init.expect("an init"), frags)
}

fn check_against_ffmpeg(ts: &[u8], mp4: &[u8], config: &'static [u8; 4], entry: &'static [u8; 4]) {
    let (events, demux) = mux_ts(ts, 1000, 200);
    assert_eq!(demux.lost, 0);
    let (init, frags) = ours(&events);
    let theirs = Movie::parse(mp4).unwrap();
    assert_eq!(init.mime(), theirs.mime(), "codecs strings");
    assert_eq!(init.resolution(), theirs.resolution());
    let path = |e: &'static [u8; 4], c: &'static [u8; 4]| {
        [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", e, c]
    };
    // The decoder configuration, field by field: for avcC the whole record; for hvcC the
    // profile/tier/level bytes, chroma format, bit depths, temporal layers, length size and
    // the parameter set arrays (ffmpeg also computes min_spatial_segmentation and
    // parallelismType from the VUI and PPS, which browsers do not use).
    let a = find(&init.bytes, &path(entry, config)).unwrap();
    let b = find(mp4, &path(entry, config)).unwrap();
    if config == b"avcC" {
        assert_eq!(a, b, "avcC");
    } else {
        assert_eq!(a[..13], b[..13], "hvcC profile_tier_level");
        assert_eq!(a[15..19], b[15..19], "hvcC chroma format and bit depths");
        assert_eq!(
            a[21] & 0x3f,
            b[21] & 0x3f,
            "hvcC layers, nesting, length size"
        );
        let arrays = |h: &[u8]| {
            let mut v = Vec::new();
            let mut at = 23;
            for _ in 0..h[22] {
                let kind = h[at] & 0x3f;
                let n = u16::from_be_bytes([h[at + 1], h[at + 2]]);
                at += 3;
                for _ in 0..n {
                    let len = usize::from(u16::from_be_bytes([h[at], h[at + 1]]));
                    v.push((kind, h[at + 2..at + 2 + len].to_vec()));
                    at += 2 + len;
                }
            }
            v.retain(|(k, _)| matches!(k, 32..=34));
            v
        };
        assert_eq!(arrays(a), arrays(b), "hvcC parameter sets");
    }
    // ffmpeg's remux of ADTS writes no DecoderSpecificInfo, so the AudioSpecificConfig is
    // checked against the stream (AAC-LC, 48 kHz, mono) and the timescale against ffmpeg's.
    let esds = find(&init.bytes, &path(b"mp4a", b"esds")).unwrap();
    assert!(
        esds.windows(4).any(|w| w == [5, 2, 0x11, 0x88]),
        "ASC in {esds:02x?}"
    );
    let ts_of = |kind| {
        theirs
            .tracks
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| (t.id, t.timescale))
            .unwrap()
    };
    let (their_id, their_scale) = ts_of(TrackKind::Video);
    let their_frags: Vec<&[u8]> = theirs
        .fragments
        .iter()
        .map(|f| &mp4[f.range.clone()])
        .collect();
    let mine = video_samples(&frags, TS_HZ as u32, VIDEO_ID);
    let them = video_samples(&their_frags, their_scale, their_id);
    assert_eq!(mine.len(), them.len(), "video samples");
    let first = (mine[0].2, them[0].2);
    for (i, (m, t)) in mine.iter().zip(&them).enumerate() {
        // ffmpeg keeps the in-band parameter sets in keyframes; the muxer moves them to the
        // sample entry only (hvc1/avc1), so keyframes are that much smaller.
        assert_eq!(m.1, t.1, "sample {i}: sync");
        if m.1 {
            assert!(
                m.0 < t.0 && t.0 - m.0 < 200,
                "keyframe {i}: {} vs {} bytes",
                m.0,
                t.0
            );
        } else if config == b"hvcC" {
            // ffmpeg splits H.265 at 3-byte start codes, so the zero byte of a 4-byte start
            // code after the access unit delimiter stays in its NAL unit: one byte more.
            assert!(t.0 - m.0 <= 1, "sample {i}: {} vs {} bytes", m.0, t.0);
        } else {
            assert_eq!(m.0, t.0, "sample {i}: size");
        }
        let (pm, pt) = (m.2 - first.0, t.2 - first.1);
        assert!((pm - pt).abs() < 0.002, "sample {i} shown at {pm} vs {pt}");
    }
    assert_eq!(
        theirs
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Audio)
            .unwrap()
            .timescale,
        init.tracks[1].timescale
    );
    let _ = ts_of(TrackKind::Audio);
}

#[test]
fn h264_aac_matches_ffmpeg_remux() {
    check_against_ffmpeg(H264_TS, H264_MP4, b"avcC", b"avc1");
}

#[test]
fn h265_aac_matches_ffmpeg_remux() {
    check_against_ffmpeg(H265_TS, H265_MP4, b"hvcC", b"hvc1");
}

#[test]
fn fragments_cut_at_keyframes_and_parts() {
    let (events, _) = mux_ts(H264_TS, 4096, 200);
    let (_, frags) = ours(&events);
    let frames: usize = events
        .iter()
        .filter_map(|e| match e {
            PushEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .map(|f| {
            let run = &f.fragment.runs[0];
            // 30 fps: a part of 200 ms is 6 frames; a GOP of 10 frames gives 6 + 4. The first
            // fragment waits for the audio track to configure, so it may hold more.
            assert!(
                run.samples <= 6 || f.media_ns == 0,
                "{} frames in a part",
                run.samples
            );
            run.samples as usize
        })
        .sum();
    assert_eq!(frames, 30);
    assert!(frags.len() >= 6);
    let keys = events
        .iter()
        .filter(|e| matches!(e, PushEvent::Fragment(f) if f.fragment.keyframe))
        .count();
    assert_eq!(keys, 3, "a keyframe every 10 frames");

    let (events, _) = mux_ts(H264_TS, 4096, 0);
    let fragments: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PushEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(fragments.len(), 30, "--part 0: one frame per fragment");
    assert!(fragments.iter().all(|f| f.fragment.runs[0].samples == 1));
    assert!(fragments.windows(2).all(|w| w[0].media_ns < w[1].media_ns));
}

#[test]
fn any_split_gives_the_same_fragments() {
    let bytes = |events: Vec<PushEvent>| -> Vec<Vec<u8>> {
        events
            .into_iter()
            .map(|e| match e {
                PushEvent::Init(i) => i.bytes,
                PushEvent::Fragment(f) => f.bytes,
            })
            .collect()
    };
    let whole = bytes(mux_ts(H264_TS, H264_TS.len(), 200).0);
    for piece in [1, 7, 187, 188, 189, 1316] {
        assert_eq!(
            bytes(mux_ts(H264_TS, piece, 200).0),
            whole,
            "pieces of {piece}"
        );
    }
}

/// `ts` with every PES's PTS and DTS moved on by `by` ticks, modulo 2^33.
fn shift_pts(ts: &[u8], by: i64) -> Vec<u8> {
    let mut out = ts.to_vec();
    for p in out.chunks_exact_mut(PACKET) {
        if p[1] & 0x40 == 0 || (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) < 0x20 {
            continue;
        }
        let mut at = 4;
        if (p[3] >> 4) & 3 == 3 {
            at = 5 + usize::from(p[4]);
        }
        let h = &mut p[at..];
        if h.len() < 19 || h[..3] != [0, 0, 1] || h[3] < 0xc0 {
            continue;
        }
        let flags = h[7] >> 6;
        for (i, at) in [9usize, 14].into_iter().enumerate() {
            if i == 1 && flags != 3 || flags & 2 == 0 {
                continue;
            }
            let b = &mut h[at..at + 5];
            let v = (i64::from(b[0] >> 1 & 7) << 30)
                | (i64::from(b[1]) << 22)
                | (i64::from(b[2] >> 1) << 15)
                | (i64::from(b[3]) << 7)
                | i64::from(b[4] >> 1);
            let v = (v + by).rem_euclid(1 << 33);
            b[0] = (b[0] & 0xf1) | (((v >> 30) as u8 & 7) << 1);
            b[1] = (v >> 22) as u8;
            b[2] = (((v >> 15) as u8) << 1) | 1;
            b[3] = (v >> 7) as u8;
            b[4] = ((v as u8) << 1) | 1;
        }
    }
    out
}

#[test]
fn pts_wrap_keeps_the_timeline() {
    let normal = mux_ts(H264_TS, 4096, 200).0;
    // The wrap lands half a second into the stream.
    let first = 126_000; // ffmpeg's mpegts starts at 1.4 s
    let wrapped = shift_pts(H264_TS, (1 << 33) - first - TS_HZ / 2);
    assert_ne!(wrapped, H264_TS);
    let shifted = mux_ts(&wrapped, 4096, 200).0;
    let times = |e: &[PushEvent]| -> Vec<(u64, usize)> {
        e.iter()
            .filter_map(|e| match e {
                PushEvent::Fragment(f) => Some((f.media_ns, f.bytes.len())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(times(&shifted), times(&normal));
}

/// The packets of `ts`, with the `n`th packet of `pid` left out.
fn drop_packet(ts: &[u8], pid: u16, n: usize) -> Vec<u8> {
    let mut seen = 0;
    let mut out = Vec::new();
    for p in ts.chunks_exact(PACKET) {
        if u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]) == pid {
            seen += 1;
            if seen == n + 1 {
                continue;
            }
        }
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn a_continuity_gap_skips_to_the_next_keyframe() {
    // ffmpeg's video PID is 0x100; a packet 45% in is inside the second GOP.
    let video_packets = H264_TS
        .chunks_exact(PACKET)
        .filter(|p| u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]) == 0x100)
        .count();
    let broken = drop_packet(H264_TS, 0x100, video_packets * 45 / 100);
    let (events, demux) = mux_ts(&broken, 4096, 0);
    assert!(demux.lost >= 1);
    let frags: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PushEvent::Fragment(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(
        frags.len() < 30 && frags.len() >= 20,
        "{} frames",
        frags.len()
    );
    // Every frame out decodes: after the gap the stream resumes at a keyframe, and the frames
    // between are gone (their media times jump).
    let gap = frags
        .windows(2)
        .position(|w| w[1].media_ns - w[0].media_ns > 40_000_000)
        .expect("a hole where frames were dropped");
    assert!(frags[gap + 1].fragment.keyframe, "resumes at a keyframe");
}

#[test]
fn annexb_access_units_from_ffmpeg() {
    let mut aus = Vec::new();
    let mut s = AnnexBSplitter::new(None);
    let mut take = |au: AccessUnit| {
        aus.push(au);
        Ok(())
    };
    for (i, p) in H264_ES.chunks(333).enumerate() {
        s.push(p, i as u64, &mut take).unwrap();
    }
    s.finish(&mut take).unwrap();
    assert_eq!(aus.len(), 30, "frames");
    assert_eq!(s.codec(), Some(VideoCodec::H264));
    let mut mux = Muxer::new(0, s.codec(), false);
    let mut out = Vec::new();
    for (i, au) in aus.iter().enumerate() {
        let t = i as i64 * 3000;
        mux.video(t, t, &au.data, &mut out).unwrap();
    }
    mux.finish(&mut out);
    let (init, frags) = ours(&out);
    assert_eq!(init.resolution(), Some((160, 90)));
    assert_eq!(frags.len(), 30);
}

#[test]
fn new_parameter_sets_start_a_new_session() {
    let mut mux = Muxer::new(200_000_000, Some(VideoCodec::H264), false);
    let mut out = Vec::new();
    let feed = |mux: &mut Muxer, es: &[u8], t0: i64, out: &mut Vec<PushEvent>| {
        let mut s = AnnexBSplitter::new(Some(VideoCodec::H264));
        let mut aus = Vec::new();
        s.push(es, 0, &mut |au| {
            aus.push(au);
            Ok(())
        })
        .unwrap();
        s.finish(&mut |au| {
            aus.push(au);
            Ok(())
        })
        .unwrap();
        for (i, au) in aus.iter().enumerate() {
            let t = t0 + i as i64 * 3000;
            mux.video(t, t, &au.data, out).unwrap();
        }
    };
    feed(&mut mux, H264_ES, 0, &mut out);
    let mut other = H264_ES.to_vec();
    // The same stream with another level in its SPS: a new configuration.
    let spss: Vec<usize> = other
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0, 0, 1, 0x67])
        .map(|(i, _)| i)
        .collect();
    assert_eq!(spss.len(), 3, "an SPS at every keyframe");
    for sps in spss {
        other[sps + 6] = 0x1f;
    }
    feed(&mut mux, &other, 90_000, &mut out);
    mux.finish(&mut out);
    let inits: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            PushEvent::Init(i) => Some(i.mime()),
            _ => None,
        })
        .collect();
    assert_eq!(inits.len(), 2);
    assert_ne!(inits[0], inits[1]);
    assert!(
        inits[1].contains("1f,") || inits[1].ends_with("1f\""),
        "{}",
        inits[1]
    );
}

const H264_OPUS_TS: &[u8] = include_bytes!("../../tests/ingest/h264opus.ts");

#[test]
fn h264_opus_ts_gives_an_opus_track_with_every_packet() {
    // ffmpeg -f lavfi -i testsrc2=size=160x90:rate=30 -f lavfi -i sine=frequency=440:
    // sample_rate=48000 -t 1 -c:v libx264 -preset ultrafast -g 30 -pix_fmt yuv420p
    // -c:a libopus -b:a 32k -ac 1 -y -f mpegts: 51 packets of 20 ms, 4815 bytes (ffprobe), a few
    // to a PES, the first with a start trim.
    for piece in [188, 1000, 7] {
        let (events, demux) = mux_ts(H264_OPUS_TS, piece, 200);
        assert_eq!(demux.lost, 0);
        let (init, frags) = ours(&events);
        let mime = init.mime();
        assert!(
            mime.contains("\"avc1.") && mime.ends_with(",opus\""),
            "{mime}"
        );
        let audio = init.tracks.iter().find(|t| t.id == AUDIO_ID).unwrap();
        assert_eq!(audio.timescale, 48000);
        let dops = find(
            &init.bytes,
            &[
                b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"Opus", b"dOps",
            ],
        );
        // Version 0, mono, no pre-skip (MPEG-TS trims instead), 48 kHz, gain 0, family 0.
        assert_eq!(dops, Some(&[0, 1, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0][..]));
        let samples = video_samples(&frags, 48000, AUDIO_ID);
        // Every packet but the first (115 bytes), which starts 6.5 ms before the first video
        // frame, where the session starts (as with AAC).
        assert_eq!(samples.len(), 50, "every Opus packet after the first");
        assert_eq!(samples.iter().map(|s| s.0).sum::<u32>(), 4815 - 115);
        assert_eq!(
            samples[..3].iter().map(|s| s.0).collect::<Vec<_>>(),
            [82, 78, 81]
        );
        // 20 ms each, back to back.
        for w in samples.windows(2) {
            assert!((w[1].2 - w[0].2 - 0.02).abs() < 1e-9, "{w:?}");
        }
        assert_eq!(video_samples(&frags, 90000, VIDEO_ID).len(), 30);
    }
}
