//! From an RTMP publisher's media to our muxer: the decoder configuration record (`avcC`/`hvcC`)
//! gives the NAL length size and the parameter sets, which go in front of every keyframe that
//! does not carry its own (so a changed configuration reaches the muxer as new parameter sets and
//! a new init); length-prefixed NAL units go to the muxer as they are, with no Annex B copy; ms
//! times become 90 kHz ticks; the AudioSpecificConfig becomes the AAC track's configuration and
//! an Enhanced RTMP `OpusHead` the Opus track's.
//! The muxer is made at the first media message, when the sequence headers that OBS and ffmpeg
//! send first have told which tracks there are; a track that configures later starts a new
//! session. Pure: events in, init segments and fragments out.

use super::flv::VideoCodec as FlvCodec;
use super::RtmpEvent;
use crate::mux::annexb::NalKind;
use crate::mux::opus::OpusHead;
use crate::mux::VideoCodec;
use crate::mux::{AudioCodec, AudioConfig, Muxer};
use crate::source::push::{PushError, PushEvent};

/// RTMP times are milliseconds; the muxer counts 90 kHz ticks.
const TICKS_PER_MS: i64 = 90;

/// A video configuration from a sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoConfig {
    codec: VideoCodec,
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    length_size: usize,
    /// Its parameter sets, each a whole NAL unit.
    params: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub struct RtmpIngest {
    part_ns: u64,
    mux: Option<Muxer>,
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    /// Access units whose NAL lengths did not add up (dropped), for the log.
    pub malformed: u64,
}

fn codec_of(c: FlvCodec) -> VideoCodec {
    match c {
        FlvCodec::Avc => VideoCodec::H264,
        FlvCodec::Hevc => VideoCodec::H265,
    }
}

impl RtmpIngest {
    /// An adapter cutting parts of `part_ns` (see [`Muxer::new`]).
    pub fn new(part_ns: u64) -> RtmpIngest {
        RtmpIngest {
            part_ns,
            mux: None,
            video: None,
            audio: None,
            malformed: 0,
        }
    }

    /// Takes one event of the session; media events yield init segments and fragments. Others
    /// (publish, metadata) are ignored here.
    pub fn on_event(
        &mut self,
        event: RtmpEvent,
        out: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        match event {
            RtmpEvent::VideoConfig { codec, record } => {
                let codec = codec_of(codec);
                let config = match codec {
                    VideoCodec::H264 => parse_avcc(&record),
                    VideoCodec::H265 => parse_hvcc(&record),
                }
                .ok_or_else(|| {
                    PushError::Malformed(format!(
                        "the publisher's {} decoder configuration record is malformed",
                        if codec == VideoCodec::H264 {
                            "avcC"
                        } else {
                            "hvcC"
                        }
                    ))
                })?;
                let tracks_change = self.video.as_ref().map(|v| v.codec) != Some(codec);
                self.video = Some(config);
                if tracks_change {
                    self.set_tracks(out);
                }
                Ok(())
            }
            RtmpEvent::AudioConfig(asc) if asc.is_empty() => {
                // ffmpeg's FLV muxer sends this when it copies AAC it has no configuration for
                // yet; a real one may follow.
                Ok(())
            }
            RtmpEvent::AudioConfig(asc) => {
                let config = parse_asc(&asc).ok_or_else(|| {
                    PushError::Malformed("the publisher's AudioSpecificConfig is malformed".into())
                })?;
                self.audio_config(config, out);
                Ok(())
            }
            RtmpEvent::OpusConfig(head) => {
                let head = OpusHead::parse(&head).ok_or_else(|| {
                    PushError::Malformed("the publisher's OpusHead is malformed".into())
                })?;
                self.audio_config(head.audio_config(), out);
                Ok(())
            }
            RtmpEvent::Video {
                codec,
                dts_ms,
                cts_ms,
                data,
                ..
            } => {
                let Some(config) = self.video.as_ref().filter(|v| v.codec == codec_of(codec))
                else {
                    return Ok(()); // no sequence header yet: nothing can be decoded
                };
                let Some(nals) = length_prefixed(&data, config.length_size) else {
                    self.malformed += 1;
                    return Ok(());
                };
                let dts = ms_ticks(dts_ms);
                let pts = dts + i64::from(cts_ms) * TICKS_PER_MS;
                let codec = config.codec;
                let key = nals.iter().any(|n| NalKind::of(codec, n) == NalKind::Key);
                let has_sps = nals.iter().any(|n| NalKind::of(codec, n) == NalKind::Sps);
                let params: &[Vec<u8>] = if key && !has_sps { &config.params } else { &[] };
                let size = data.len() + params.iter().map(|p| p.len() + 4).sum::<usize>();
                let all = params.iter().map(Vec::as_slice).chain(nals.iter().copied());
                let (part, audio) = (self.part_ns, self.audio.is_some());
                let mux = self
                    .mux
                    .get_or_insert_with(|| Muxer::new(part, Some(codec), audio));
                mux.video_nals(dts, pts, size, all, out)
            }
            RtmpEvent::Audio { dts_ms, data } => self.audio(AudioCodec::Aac, dts_ms, &data, out),
            RtmpEvent::Opus { dts_ms, data } => self.audio(AudioCodec::Opus, dts_ms, &data, out),
            RtmpEvent::Unpublish => {
                self.finish(out);
                Ok(())
            }
            RtmpEvent::Publish { .. } | RtmpEvent::Metadata(_) | RtmpEvent::Unsupported(_) => {
                Ok(())
            }
        }
    }

    fn audio_config(&mut self, config: AudioConfig, out: &mut Vec<PushEvent>) {
        let had = self.audio.is_some();
        self.audio = Some(config);
        if !had {
            self.set_tracks(out);
        }
    }

    /// One audio frame of `codec`: muxed if the configuration is of that codec (a frame of
    /// another is not decodable with it, and is dropped).
    fn audio(
        &mut self,
        codec: AudioCodec,
        dts_ms: u64,
        data: &[u8],
        out: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        let Some(config) = self.audio.as_ref().filter(|a| a.codec == codec) else {
            return Ok(());
        };
        let (part, codec) = (self.part_ns, self.video.as_ref().map(|v| v.codec));
        let mux = self
            .mux
            .get_or_insert_with(|| Muxer::new(part, codec, true));
        mux.audio(config, ms_ticks(dts_ms), data, out)
    }

    /// The feed ended: what the muxer holds goes out, and a new publish starts afresh.
    pub fn finish(&mut self, out: &mut Vec<PushEvent>) {
        if let Some(mut m) = self.mux.take() {
            m.finish(out);
        }
    }

    fn set_tracks(&mut self, out: &mut Vec<PushEvent>) {
        let codec = self.video.as_ref().map(|v| v.codec);
        let audio = self.audio.is_some();
        if let Some(m) = self.mux.as_mut() {
            m.set_tracks(codec, audio, out);
        }
    }
}

fn ms_ticks(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(TICKS_PER_MS)
}

/// The NAL units of a sample whose units each carry a `size`-byte length; `None` when the
/// lengths do not add up to the sample.
fn length_prefixed(mut data: &[u8], size: usize) -> Option<Vec<&[u8]>> {
    let mut nals = Vec::new();
    while !data.is_empty() {
        if data.len() < size {
            return None;
        }
        let n = data[..size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let rest = &data[size..];
        if n > rest.len() {
            return None;
        }
        if n > 0 {
            nals.push(&rest[..n]);
        }
        data = &rest[n..];
    }
    Some(nals)
}

/// Reads `count` NAL units, each with a 16-bit length, from `data` at `*at`.
fn read_units(data: &[u8], at: &mut usize, count: usize, into: &mut Vec<Vec<u8>>) -> Option<()> {
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes([*data.get(*at)?, *data.get(*at + 1)?]));
        let nal = data.get(*at + 2..*at + 2 + len)?;
        *at += 2 + len;
        if !nal.is_empty() {
            into.push(nal.to_vec());
        }
    }
    Some(())
}

/// AVCDecoderConfigurationRecord (ISO 14496-15 5.3.3.1): SPS and PPS.
fn parse_avcc(r: &[u8]) -> Option<VideoConfig> {
    if r.len() < 7 || r[0] != 1 {
        return None;
    }
    let length_size = usize::from(r[4] & 3) + 1;
    if length_size == 3 {
        return None;
    }
    let mut params = Vec::new();
    let mut at = 6;
    read_units(r, &mut at, usize::from(r[5] & 0x1f), &mut params)?;
    let pps = usize::from(*r.get(at)?);
    at += 1;
    read_units(r, &mut at, pps, &mut params)?;
    if params.is_empty() {
        return None;
    }
    Some(VideoConfig {
        codec: VideoCodec::H264,
        length_size,
        params,
    })
}

/// HEVCDecoderConfigurationRecord (ISO 14496-15 8.3.3.1): the VPS, SPS and PPS arrays.
fn parse_hvcc(r: &[u8]) -> Option<VideoConfig> {
    if r.len() < 23 || r[0] != 1 {
        return None;
    }
    let length_size = usize::from(r[21] & 3) + 1;
    if length_size == 3 {
        return None;
    }
    let mut params = Vec::new();
    let mut at = 23;
    for _ in 0..r[22] {
        let kind = *r.get(at)? & 0x3f;
        let count = usize::from(u16::from_be_bytes([*r.get(at + 1)?, *r.get(at + 2)?]));
        at += 3;
        let mut units = Vec::new();
        read_units(r, &mut at, count, &mut units)?;
        if matches!(kind, 32..=34) {
            params.extend(units);
        }
    }
    if params.is_empty() {
        return None;
    }
    Some(VideoConfig {
        codec: VideoCodec::H265,
        length_size,
        params,
    })
}

/// The AAC AudioSpecificConfig (ISO 14496-3 1.6.2.1): its sampling rate and channels.
pub fn parse_asc(asc: &[u8]) -> Option<AudioConfig> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    if asc.len() < 2 {
        return None;
    }
    let bits = asc
        .iter()
        .take(8)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        << (8 * (8 - asc.len().min(8)));
    let mut at = 0u32;
    let mut take = |n: u32| {
        let v = (bits >> (64 - at - n)) & ((1 << n) - 1);
        at += n;
        v as u32
    };
    let object = take(5);
    if object == 31 {
        take(6);
    }
    let index = take(4);
    let sample_rate = if index == 15 {
        if asc.len() < 5 {
            return None;
        }
        take(24)
    } else {
        *RATES.get(index as usize)?
    };
    let channels = match take(4) {
        0 => 2, // given in a program config element; stereo is what players assume
        7 => 8,
        c @ 1..=6 => c as u16,
        _ => return None,
    };
    if sample_rate == 0 {
        return None;
    }
    Some(AudioConfig {
        codec: AudioCodec::Aac,
        config: asc.to_vec(),
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asc_rates_and_channels() {
        // AAC-LC, 44.1 kHz, stereo: ffmpeg's usual 0x12 0x10.
        let c = parse_asc(&[0x12, 0x10]).unwrap();
        assert_eq!((c.sample_rate, c.channels), (44100, 2));
        // AAC-LC, 48 kHz, mono.
        let c = parse_asc(&[0x11, 0x88]).unwrap();
        assert_eq!((c.sample_rate, c.channels), (48000, 1));
        // An explicit 24-bit rate (index 15): 0x13 then 0x80 + 24 bits of 22050, channel 2.
        let rate = 22050u32;
        let v: u64 = (2 << 35) | (15 << 31) | (u64::from(rate) << 7) | (2 << 3);
        let bytes = v.to_be_bytes()[3..8].to_vec();
        let c = parse_asc(&bytes).unwrap();
        assert_eq!((c.sample_rate, c.channels), (22050, 2));
        assert!(parse_asc(&[0x12]).is_none());
        assert!(
            parse_asc(&[0x16, 0x90]).is_none(),
            "rate index 13 is reserved"
        );
    }

    #[test]
    fn avcc_records() {
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac];
        let pps = [0x68, 0xee, 0x3c, 0x80];
        let mut r = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 5];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, 4]);
        r.extend_from_slice(&pps);
        let c = parse_avcc(&r).unwrap();
        assert_eq!(c.length_size, 4);
        assert_eq!(c.params, vec![sps.to_vec(), pps.to_vec()]);
        for cut in 0..r.len() - 1 {
            assert!(parse_avcc(&r[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn hvcc_records_keep_parameter_sets_only() {
        let mut r = vec![1];
        r.extend_from_slice(&[0; 20]);
        r.push(0x0f); // lengthSizeMinusOne = 3
        r.push(4); // arrays
        for (kind, nal) in [
            (32u8, vec![0x40, 0x01, 0xaa]),
            (33, vec![0x42, 0x01, 0xbb]),
            (34, vec![0x44, 0x01, 0xcc]),
            (39, vec![0x4e, 0x01, 0xdd]), // SEI: not a parameter set
        ] {
            r.extend_from_slice(&[0x80 | kind, 0, 1, 0, nal.len() as u8]);
            r.extend_from_slice(&nal);
        }
        let c = parse_hvcc(&r).unwrap();
        assert_eq!(c.length_size, 4);
        assert_eq!(c.params.len(), 3);
        assert_eq!(c.params[2], vec![0x44, 0x01, 0xcc]);
        assert!(parse_hvcc(&r[..r.len() - 1]).is_none());
    }

    #[test]
    fn length_prefixes_must_add_up() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x06];
        let nals = length_prefixed(&data, 4).unwrap();
        assert_eq!(nals, vec![&[0x65, 1][..], &[0x06][..]]);
        assert!(length_prefixed(&data[..10], 4).is_none());
        assert!(length_prefixed(&[0, 0, 0, 9, 1], 4).is_none());
        assert_eq!(length_prefixed(&[1, 0x41], 1).unwrap(), vec![&[0x41][..]]);
    }

    #[test]
    fn media_before_its_sequence_header_is_ignored() {
        let mut ingest = RtmpIngest::new(0);
        let mut out = Vec::new();
        ingest
            .on_event(
                RtmpEvent::Video {
                    codec: FlvCodec::Avc,
                    keyframe: true,
                    dts_ms: 0,
                    cts_ms: 0,
                    data: vec![0, 0, 0, 1, 0x65],
                },
                &mut out,
            )
            .unwrap();
        assert!(out.is_empty());
        let bad = ingest.on_event(
            RtmpEvent::VideoConfig {
                codec: FlvCodec::Avc,
                record: vec![1, 2, 3],
            },
            &mut out,
        );
        assert!(matches!(bad, Err(PushError::Malformed(_))));
    }

    #[test]
    fn opus_head_configures_and_aac_frames_do_not_mux_with_it() {
        let mut ingest = RtmpIngest::new(0);
        let mut out = Vec::new();
        let bad = ingest.on_event(RtmpEvent::OpusConfig(b"OpusHea".to_vec()), &mut out);
        assert!(matches!(bad, Err(PushError::Malformed(_))));
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0x38, 1, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        ingest
            .on_event(RtmpEvent::OpusConfig(head), &mut out)
            .unwrap();
        let config = ingest.audio.clone().unwrap();
        assert_eq!(config.codec, AudioCodec::Opus);
        assert_eq!(config.config, [0, 2, 1, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        let aac = RtmpEvent::Audio {
            dts_ms: 0,
            data: vec![1, 2, 3],
        };
        ingest.on_event(aac, &mut out).unwrap();
        assert!(ingest.mux.is_none(), "an AAC frame is not muxed as Opus");
        for i in 0..60 {
            let opus = RtmpEvent::Opus {
                dts_ms: i * 20,
                data: vec![0xfc, 1, 2],
            };
            ingest.on_event(opus, &mut out).unwrap();
        }
        ingest.finish(&mut out);
        let PushEvent::Init(init) = &out[0] else {
            panic!("an init first: {out:?}")
        };
        assert_eq!(init.mime(), "audio/mp4; codecs=\"opus\"");
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod through_the_session;
