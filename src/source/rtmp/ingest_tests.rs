//! RTMP publishes played through the session and the adapter: ffmpeg's FLV of the H.264+AAC
//! test clip in pieces of every size, and the H.265+AAC clip as Enhanced RTMP (`hvc1`) tags.

use super::*;
use crate::source::rtmp::client::{flv_tags, PublishScript};
use crate::source::rtmp::RtmpSession;

const FLV: &[u8] = include_bytes!("../../../tests/ingest/h264aac.flv");
const MP4: &[u8] = include_bytes!("../../../tests/ingest/h264aac.mp4");

/// The FLV clip as a publish of `cam`.
fn flv_publish() -> Vec<u8> {
    let mut script = PublishScript::new("live", "cam", 4096);
    for (kind, ts, payload) in flv_tags(FLV) {
        script.tag(kind, ts, payload);
    }
    script.unpublish("cam");
    script.bytes
}

/// Plays `wire` (a publish of `cam`) in pieces of `piece` bytes.
fn play(wire: &[u8], piece: usize, part_ns: u64) -> Vec<PushEvent> {
    let mut session = RtmpSession::default();
    let mut ingest = RtmpIngest::new(part_ns);
    let mut out = Vec::new();
    for p in wire.chunks(piece) {
        session.feed(p).unwrap();
        while let Some(e) = session.poll_event() {
            if let RtmpEvent::Publish { name, .. } = &e {
                assert_eq!(name, "cam");
                session.accept_publish("cam");
            }
            ingest.on_event(e, &mut out).unwrap();
        }
    }
    out
}

#[test]
fn every_frame_arrives_with_the_files_codecs() {
    let movie = crate::mp4::Movie::parse(MP4).unwrap();
    let video_tags = flv_tags(FLV)
        .iter()
        .filter(|(k, _, p)| *k == 9 && p.get(1) == Some(&1))
        .count();
    for piece in [1, 700, 4096, 1 << 20] {
        let out = play(&flv_publish(), piece, 0);
        let inits: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                PushEvent::Init(i) => Some(i),
                PushEvent::Fragment(_) => None,
            })
            .collect();
        assert_eq!(inits.len(), 1, "piece {piece}");
        assert_eq!(inits[0].mime(), movie.mime());
        assert_eq!(inits[0].resolution(), movie.resolution());
        let frags: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                PushEvent::Fragment(f) => Some(f),
                PushEvent::Init(_) => None,
            })
            .collect();
        let video = inits[0].main_track;
        let frames: u32 = frags
            .iter()
            .flat_map(|f| &f.fragment.runs)
            .filter(|r| r.track == video)
            .map(|r| r.samples)
            .sum();
        assert_eq!(
            frames as usize, video_tags,
            "piece {piece}: one sample per tag"
        );
        assert!(frags[0].fragment.keyframe);
    }
}

fn inits(out: &[PushEvent]) -> Vec<&crate::mp4::InitSegment> {
    out.iter()
        .filter_map(|e| match e {
            PushEvent::Init(i) => Some(i),
            PushEvent::Fragment(_) => None,
        })
        .collect()
}

/// Samples of `track` over every fragment.
fn samples(out: &[PushEvent], track: usize) -> u32 {
    out.iter()
        .filter_map(|e| match e {
            PushEvent::Fragment(f) => Some(f),
            PushEvent::Init(_) => None,
        })
        .flat_map(|f| &f.fragment.runs)
        .filter(|r| r.track == track)
        .map(|r| r.samples)
        .sum()
}

/// The H.265+AAC MPEG-TS clip, demuxed, as Enhanced RTMP: a `SequenceStart` with the hvcC of
/// its first keyframe's parameter sets, `CodedFrames` with composition times, and AAC. The
/// init must be the one the MPEG-TS path makes, and every picture must arrive.
#[test]
fn enhanced_rtmp_hevc() {
    use crate::mux::annexb::nal_units;
    use crate::mux::params::{hvcc, parse_hevc_sps};
    use crate::mux::ts::{TsDemuxer, TsEvent};
    const TS: &[u8] = include_bytes!("../../../tests/ingest/h265aac.ts");
    // (decode ms, 9 video / 8 audio, payload), in decode order.
    let mut tags: Vec<(i64, u8, Vec<u8>)> = Vec::new();
    let mut config = None;
    let mut asc = None;
    let mut demux = TsDemuxer::default();
    let mut on = |e: TsEvent<'_>| {
        match e {
            TsEvent::Video { dts, pts, data } => {
                let nals: Vec<&[u8]> = nal_units(data).collect();
                let kind = |n: &[u8]| NalKind::of(VideoCodec::H265, n);
                if config.is_none() {
                    let pick = |k| nals.iter().copied().filter(|n| kind(n) == k).collect();
                    let (vps, sps, pps): (Vec<_>, Vec<_>, Vec<_>) =
                        (pick(NalKind::Vps), pick(NalKind::Sps), pick(NalKind::Pps));
                    let parsed = parse_hevc_sps(sps[0]).unwrap();
                    config = Some(hvcc(&parsed, &vps, &sps, &pps));
                }
                let key = nals.iter().any(|n| kind(n) == NalKind::Key);
                let mut p = vec![0x80 | if key { 0x10 } else { 0x20 } | 1];
                p.extend_from_slice(b"hvc1");
                let cts = ((pts - dts) / 90) as i32;
                p.extend_from_slice(&cts.to_be_bytes()[1..]);
                for n in nals
                    .iter()
                    .filter(|n| !matches!(kind(n), NalKind::Vps | NalKind::Sps | NalKind::Pps))
                {
                    p.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    p.extend_from_slice(n);
                }
                tags.push((dts / 90, 9, p));
            }
            TsEvent::Audio {
                config: c,
                pts,
                frame,
            } => {
                asc.get_or_insert_with(|| c.config.clone());
                let mut p = vec![0xaf, 1];
                p.extend_from_slice(frame);
                tags.push((pts / 90, 8, p));
            }
            _ => {}
        }
        Ok(())
    };
    demux.push(TS, &mut on).unwrap();
    demux.finish(&mut on).unwrap();
    let pictures = tags.iter().filter(|t| t.1 == 9).count() as u32;
    tags.sort_by_key(|t| t.0);
    let t0 = tags[0].0;
    let mut script = PublishScript::new("live", "cam", 4096);
    let mut seq = vec![0x80 | 0x10];
    seq.extend_from_slice(b"hvc1");
    seq.extend_from_slice(&config.unwrap());
    script.tag(9, 0, &seq);
    let mut aac = vec![0xaf, 0];
    aac.extend_from_slice(&asc.unwrap());
    script.tag(8, 0, &aac);
    for (ms, kind, p) in &tags {
        script.tag(*kind, (ms - t0) as u32, p);
    }
    script.unpublish("cam");
    let out = play(&script.bytes, 1000, 0);
    let ours = inits(&out);
    assert_eq!(ours.len(), 1);
    // The MPEG-TS path's init for the same clip.
    let now = std::time::Instant::now();
    let mut input = crate::source::live::LiveInput::new(0, now, Default::default());
    let mut media = Vec::new();
    input.feed(TS, now, &mut media).unwrap();
    let theirs = media
        .iter()
        .find_map(|m| match &m.event {
            crate::source::MediaEvent::Init(i) => Some(i.mime()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ours[0].mime(), theirs);
    assert!(ours[0].mime().contains("hvc1.") && ours[0].mime().contains("mp4a.40.2"));
    assert_eq!(samples(&out, ours[0].main_track), pictures);
}

/// The H.264+Opus MPEG-TS clip, demuxed, as AVC tags and Enhanced RTMP (v2) Opus audio: a
/// `SequenceStart` with an `OpusHead`, then `CodedFrames`. The init must be the one the
/// MPEG-TS path makes (`avc1...,opus`), and every picture and Opus packet the MPEG-TS path
/// muxes must arrive.
#[test]
fn enhanced_rtmp_opus() {
    use crate::mux::annexb::nal_units;
    use crate::mux::params::{avcc, parse_avc_sps};
    use crate::mux::ts::{TsDemuxer, TsEvent};
    const TS: &[u8] = include_bytes!("../../../tests/ingest/h264opus.ts");
    let mut tags: Vec<(i64, u8, Vec<u8>)> = Vec::new();
    let mut config = None;
    let mut channels = None;
    let mut demux = TsDemuxer::default();
    let mut on = |e: TsEvent<'_>| {
        match e {
            TsEvent::Video { dts, pts, data } => {
                let nals: Vec<&[u8]> = nal_units(data).collect();
                let kind = |n: &[u8]| NalKind::of(VideoCodec::H264, n);
                if config.is_none() {
                    let pick = |k| -> Vec<&[u8]> {
                        nals.iter().copied().filter(|n| kind(n) == k).collect()
                    };
                    let (sps, pps) = (pick(NalKind::Sps), pick(NalKind::Pps));
                    let parsed = parse_avc_sps(sps[0]).unwrap();
                    config = Some(avcc(sps[0], &parsed, &pps));
                }
                let key = nals.iter().any(|n| kind(n) == NalKind::Key);
                let mut p = vec![if key { 0x17 } else { 0x27 }, 1];
                let cts = ((pts - dts) / 90) as i32;
                p.extend_from_slice(&cts.to_be_bytes()[1..]);
                for n in nals
                    .iter()
                    .filter(|n| !matches!(kind(n), NalKind::Sps | NalKind::Pps))
                {
                    p.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    p.extend_from_slice(n);
                }
                tags.push((dts / 90, 9, p));
            }
            TsEvent::Audio {
                config: c,
                pts,
                frame,
            } => {
                channels.get_or_insert(c.channels as u8);
                let mut p = vec![0x91];
                p.extend_from_slice(b"Opus");
                p.extend_from_slice(frame);
                tags.push((pts / 90, 8, p));
            }
            _ => {}
        }
        Ok(())
    };
    demux.push(TS, &mut on).unwrap();
    demux.finish(&mut on).unwrap();
    let packets = tags.iter().filter(|t| t.1 == 8).count();
    assert_eq!(packets, 51);
    tags.sort_by_key(|t| t.0);
    let t0 = tags[0].0;
    let mut script = PublishScript::new("live", "cam", 4096);
    let mut seq = vec![0x17, 0, 0, 0, 0];
    seq.extend_from_slice(&config.unwrap());
    script.tag(9, 0, &seq);
    // OpusHead: version 1, channels, no pre-skip, 48 kHz, gain 0, family 0.
    let mut head = vec![0x90];
    head.extend_from_slice(b"Opus");
    head.extend_from_slice(b"OpusHead");
    head.extend_from_slice(&[1, channels.unwrap(), 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    script.tag(8, 0, &head);
    for (ms, kind, p) in &tags {
        script.tag(*kind, (ms - t0) as u32, p);
    }
    script.unpublish("cam");
    let out = play(&script.bytes, 1000, 0);
    let ours = inits(&out);
    assert_eq!(ours.len(), 1);
    // The MPEG-TS path for the same clip.
    let now = std::time::Instant::now();
    let mut input = crate::source::live::LiveInput::new(0, now, Default::default());
    let mut media = Vec::new();
    input.feed(TS, now, &mut media).unwrap();
    input.finish(now, &mut media);
    let mut theirs = Vec::new();
    for m in media {
        match m.event {
            crate::source::MediaEvent::Init(i) => theirs.push(PushEvent::Init(i)),
            crate::source::MediaEvent::Fragment(f) => theirs.push(PushEvent::Fragment(f)),
            _ => {}
        }
    }
    let their_init = inits(&theirs)[0];
    assert_eq!(ours[0].mime(), their_init.mime());
    assert!(ours[0].mime().contains("avc1.") && ours[0].mime().ends_with(",opus\""));
    let audio = |i: &crate::mp4::InitSegment| i.tracks.iter().position(|t| t.id == 2).unwrap();
    assert_eq!(ours[0].bytes, their_init.bytes, "the same moov");
    assert_eq!(
        samples(&out, ours[0].main_track),
        samples(&theirs, their_init.main_track)
    );
    assert_eq!(samples(&out, audio(ours[0])), 50);
    assert_eq!(samples(&theirs, audio(their_init)), 50);
}
