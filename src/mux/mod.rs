//! Our own fragmented-MP4 muxer, for feeds that are not MP4 already (MPEG-TS, H.264/H.265 Annex B
//! on a pipe): access units with timestamps in, the same two things every other source yields
//! out — a [`PushEvent::Init`] (ftyp+moov with `avcC`/`hvcC` built from the stream's parameter
//! sets and `mp4a`/`esds` from the AudioSpecificConfig or `Opus`/`dOps` from the Opus
//! configuration, run through [`InitSegment::parse`] so the codecs string and tracks come out
//! as for a publisher's own init) and
//! [`PushEvent::Fragment`]s (moof+mdat parsed with [`parse_fragment_at`]), so the stream and the
//! fan-out cannot tell the difference.
//!
//! Fragments are cut at every keyframe and, between keyframes, whenever the video gathered
//! reaches the part length (`--part`; 0 makes every frame its own fragment), so a live feed's
//! latency is a part, not a GOP. Audio is interleaved by time: a fragment carries the audio that
//! starts before its video ends. Composition offsets (B-frames) are kept. New parameter sets on a
//! keyframe (an encoder restarted with other settings) end the session and start a new one with
//! a new init. After lost data ([`Muxer::skip_to_keyframe`]) nothing goes out until the next
//! keyframe, so a viewer never gets a fragment that references what was lost.
//!
//! Sans-I/O: no clock and no sockets; times are 90 kHz ticks as MPEG-TS carries them.
//! `annexb` splits a bare elementary stream into access units, `ts` demuxes MPEG-TS, `params`
//! reads parameter sets and builds the decoder configuration records, `fmp4` writes the boxes.

pub mod annexb;
pub mod fmp4;
pub mod opus;
pub mod params;
pub mod ts;

use crate::mp4::{parse_fragment_at, InitSegment};
use crate::source::push::{media_ns, LiveFragment, PushError, PushEvent, MAX_FRAGMENT};
use annexb::{nal_units, NalKind};
use fmp4::{Entry, SampleRow, TrackSpec, TrafSpec};
use std::collections::VecDeque;

/// Ticks per second of MPEG-TS timestamps, and of the video tracks the muxer writes.
pub const TS_HZ: i64 = 90_000;
/// Video gathered before the init goes out without an audio track that never configured.
const AUDIO_WAIT: i64 = TS_HZ;
/// A jump in decode time beyond this (either way) starts a new session.
const MAX_JUMP: i64 = 10 * TS_HZ;
/// Most audio frames kept while waiting for the first keyframe.
const MAX_EARLY_AUDIO: usize = 256;
/// AAC frames carry 1024 samples.
const AAC_FRAME: u32 = 1024;

const VIDEO_ID: u32 = 1;
const AUDIO_ID: u32 = 2;

/// The video codec of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

/// The audio codec of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
    Opus,
}

/// An audio track's configuration: AAC from an ADTS header or an AudioSpecificConfig, Opus from
/// an MPEG-TS descriptor or an `OpusHead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    pub codec: AudioCodec,
    /// AAC: the AudioSpecificConfig (2 bytes from ADTS); Opus: the body of the `dOps` box.
    pub config: Vec<u8>,
    /// The track's timescale: AAC's sampling rate, 48 kHz for Opus.
    pub sample_rate: u32,
    pub channels: u16,
}

impl AudioConfig {
    /// Samples in `frame`, in the track's timescale (`None`: an Opus packet with no valid TOC).
    pub fn frame_duration(&self, frame: &[u8]) -> Option<u32> {
        match self.codec {
            AudioCodec::Aac => Some(AAC_FRAME),
            AudioCodec::Opus => opus::packet_duration(frame),
        }
    }
}

/// The parameter sets of the current video configuration, each NAL unit complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ParamSets {
    vps: Vec<Vec<u8>>,
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct HeldVideo {
    dts: i64,
    pts: i64,
    keyframe: bool,
    data: Vec<u8>,
}

#[derive(Debug)]
pub struct Muxer {
    part: i64,
    codec: Option<VideoCodec>,
    audio_expected: bool,
    params: Option<ParamSets>,
    video_entry: Option<Entry>,
    audio: Option<AudioConfig>,
    /// The audio configuration changed: the next keyframe starts a new session.
    reinit: bool,
    init: Option<InitSegment>,
    /// Decode time (90 kHz) that is 0 on this session's tracks.
    base: Option<i64>,
    need_key: bool,
    held: Option<HeldVideo>,
    last_duration: u32,
    video_rows: Vec<SampleRow>,
    video_data: Vec<u8>,
    /// Decode time of each gathered video row (a gap after lost data breaks the sum).
    video_dts: Vec<i64>,
    /// Decode time where the part being gathered started.
    part_start: i64,
    audio_rows: Vec<SampleRow>,
    audio_data: Vec<u8>,
    audio_start: u64,
    audio_next: Option<u64>,
    early_audio: VecDeque<(i64, Vec<u8>)>,
    /// Cuts that came while the init waited for the audio track: (video rows, end time).
    deferred: Vec<(usize, i64)>,
    seq: u32,
    /// Access units dropped while waiting for a keyframe.
    pub skipped: u64,
}

impl Muxer {
    /// A muxer cutting parts of `part_ns` (0: one frame per fragment) for a feed with the given
    /// video codec (if any) and an audio track (AAC or Opus, if `audio`).
    pub fn new(part_ns: u64, codec: Option<VideoCodec>, audio: bool) -> Muxer {
        Muxer {
            part: (part_ns.min(60_000_000_000) as i64) * TS_HZ / 1_000_000_000,
            codec,
            audio_expected: audio,
            params: None,
            video_entry: None,
            audio: None,
            reinit: false,
            init: None,
            base: None,
            need_key: true,
            held: None,
            last_duration: 3000,
            video_rows: Vec::new(),
            video_data: Vec::new(),
            video_dts: Vec::new(),
            part_start: 0,
            audio_rows: Vec::new(),
            audio_data: Vec::new(),
            audio_start: 0,
            audio_next: None,
            early_audio: VecDeque::new(),
            deferred: Vec::new(),
            seq: 0,
            skipped: 0,
        }
    }

    /// The tracks the feed carries changed (a new PMT): the session ends and a new one starts
    /// at the next keyframe.
    pub fn set_tracks(&mut self, codec: Option<VideoCodec>, audio: bool, out: &mut Vec<PushEvent>) {
        if codec == self.codec && audio == self.audio_expected {
            return;
        }
        self.end_session(out);
        self.codec = codec;
        self.audio_expected = audio;
        self.params = None;
        self.video_entry = None;
        if !audio {
            self.audio = None;
        }
    }

    /// Video data was lost (the access unit being gathered upstream is dropped): what is here is
    /// complete and goes out, and nothing more until the next keyframe.
    pub fn skip_to_keyframe(&mut self, out: &mut Vec<PushEvent>) {
        if let Some(h) = self.held.take() {
            let d = self.last_duration;
            let end = h.dts + i64::from(d);
            self.push_held(h, d);
            self.part_start = end;
            if let Err(e) = self.cut(end, false, out) {
                log::warn!("dropping video before lost data: {e}");
            }
        }
        if !self.need_key {
            self.skipped += 1;
        }
        self.need_key = true;
    }

    /// The current init segment, once one went out.
    pub fn init(&self) -> Option<&InitSegment> {
        self.init.as_ref()
    }

    /// One video access unit in Annex B form (start codes between NAL units), with its decode
    /// and presentation times in 90 kHz ticks.
    pub fn video(
        &mut self,
        dts: i64,
        pts: i64,
        au: &[u8],
        out: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        self.video_nals(dts, pts, au.len() + 16, nal_units(au), out)
    }

    /// One video access unit as its NAL units (an RTMP publisher's length-prefixed ones, with
    /// the parameter sets of its configuration record in front of a keyframe); `size` is about
    /// the bytes they take.
    pub fn video_nals<'a>(
        &mut self,
        dts: i64,
        pts: i64,
        size: usize,
        nals: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        let Some(codec) = self.codec else {
            return Ok(());
        };
        let mut sample = Vec::with_capacity(size);
        let mut keyframe = false;
        let mut has_slice = false;
        let mut sets = ParamSets::default();
        for nal in nals {
            match NalKind::of(codec, nal) {
                NalKind::Vps => sets.vps.push(nal.to_vec()),
                NalKind::Sps => sets.sps.push(nal.to_vec()),
                NalKind::Pps => sets.pps.push(nal.to_vec()),
                NalKind::Drop => {}
                kind => {
                    keyframe |= kind == NalKind::Key;
                    has_slice |= matches!(kind, NalKind::Key | NalKind::Slice);
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
            }
        }
        if !has_slice {
            // Parameter sets or delimiters alone: not a picture.
            return Ok(());
        }
        if keyframe && !sets.sps.is_empty() && !sets.pps.is_empty() {
            let same = self.params.as_ref() == Some(&sets);
            if !same {
                let entry = video_entry(codec, &sets)?;
                self.end_session(out);
                self.params = Some(sets);
                self.video_entry = Some(entry);
            }
        }
        if keyframe && self.reinit {
            self.end_session(out);
        }
        if let Some(h) = &self.held {
            if (dts - h.dts).abs() > MAX_JUMP {
                log::info!(
                    "video decode time jumped by {:.1} s: starting a new session",
                    (dts - h.dts) as f64 / TS_HZ as f64
                );
                self.end_session(out);
            }
        }
        if self.need_key && !(keyframe && self.video_entry.is_some()) {
            self.skipped += 1;
            return Ok(());
        }
        self.need_key = false;
        if self.base.is_none() {
            self.start_session(dts);
        }
        let mut cut = false;
        if let Some(h) = self.held.take() {
            let duration = if dts > h.dts {
                (dts - h.dts).min(MAX_JUMP) as u32
            } else {
                self.last_duration
            };
            self.last_duration = duration;
            self.push_held(h, duration);
            let span = dts - self.part_start;
            cut = keyframe || self.part == 0 || span >= self.part;
        }
        if self.video_data.len() + sample.len() > MAX_FRAGMENT / 2 {
            cut = true;
        }
        if cut {
            self.part_start = dts;
            self.cut(dts, false, out)?;
        }
        self.held = Some(HeldVideo {
            dts,
            pts,
            keyframe,
            data: sample,
        });
        Ok(())
    }

    /// One raw AAC frame (no ADTS header) or Opus packet with its presentation time in 90 kHz
    /// ticks.
    pub fn audio(
        &mut self,
        config: &AudioConfig,
        pts: i64,
        frame: &[u8],
        out: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        if !self.audio_expected || frame.is_empty() {
            return Ok(());
        }
        if self.audio.as_ref() != Some(config) {
            if self.audio.is_some() && self.init.is_some() {
                self.reinit = true;
                if self.codec.is_none() {
                    self.end_session(out);
                }
            }
            if self.init.is_none() || self.codec.is_none() {
                self.audio = Some(config.clone());
            } else {
                // The new configuration applies from the next session; until then its frames
                // cannot be written under the old sample entry.
                self.pending_audio_config(config);
                return Ok(());
            }
        }
        if self.codec.is_none() && self.base.is_none() {
            self.need_key = false;
            self.start_session(pts);
        }
        let Some(base) = self.base else {
            if self.early_audio.len() == MAX_EARLY_AUDIO {
                self.early_audio.pop_front();
            }
            self.early_audio.push_back((pts, frame.to_vec()));
            return Ok(());
        };
        self.push_audio(base, pts, frame);
        if self.codec.is_none() {
            let rate = i64::from(config.sample_rate.max(1));
            let span = (self.audio_next.unwrap_or(0) - self.audio_start) as i64 * TS_HZ / rate;
            if self.part == 0 || span >= self.part {
                let end = base + self.audio_next.unwrap_or(0) as i64 * TS_HZ / rate;
                self.cut(end, true, out)?;
            }
        }
        Ok(())
    }

    /// The feed ended: what is gathered goes out.
    pub fn finish(&mut self, out: &mut Vec<PushEvent>) {
        self.end_session(out);
    }

    fn pending_audio_config(&mut self, config: &AudioConfig) {
        self.reinit = true;
        self.early_audio.clear();
        self.audio = Some(config.clone());
        // Frames of the new configuration are dropped until the new session starts.
        self.audio_rows.clear();
        self.audio_data.clear();
        self.audio_next = None;
    }

    fn start_session(&mut self, base: i64) {
        self.base = Some(base);
        self.video_dts.clear();
        self.audio_next = None;
        self.audio_rows.clear();
        self.audio_data.clear();
        for (pts, frame) in std::mem::take(&mut self.early_audio) {
            if pts >= base {
                self.push_audio(base, pts, &frame);
            }
        }
    }

    /// Sends what is gathered, ends the session, and waits for a keyframe to start the next.
    fn end_session(&mut self, out: &mut Vec<PushEvent>) {
        if let Some(h) = self.held.take() {
            let d = self.last_duration;
            let end = h.dts + i64::from(d);
            self.push_held(h, d);
            if let Err(e) = self.cut(end, true, out) {
                log::warn!("dropping the last part of a session: {e}");
            }
        } else if !self.audio_rows.is_empty() && self.codec.is_none() {
            if let Some(base) = self.base {
                let rate = i64::from(self.audio.as_ref().map_or(1, |a| a.sample_rate.max(1)));
                let end = base + self.audio_next.unwrap_or(0) as i64 * TS_HZ / rate;
                let _ = self.cut(end, true, out);
            }
        }
        self.init = None;
        self.base = None;
        self.reinit = false;
        self.need_key = true;
        self.deferred.clear();
        self.video_rows.clear();
        self.video_dts.clear();
        self.video_data.clear();
        self.audio_rows.clear();
        self.audio_data.clear();
    }

    fn push_held(&mut self, h: HeldVideo, duration: u32) {
        if self.video_rows.is_empty() {
            self.part_start = h.dts;
        }
        self.video_dts.push(h.dts);
        let cto = (h.pts - h.dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        self.video_rows.push(SampleRow {
            duration,
            size: h.data.len() as u32,
            keyframe: h.keyframe,
            cto,
        });
        self.video_data.extend_from_slice(&h.data);
    }

    fn push_audio(&mut self, base: i64, pts: i64, frame: &[u8]) {
        let Some(config) = &self.audio else {
            return;
        };
        let rate = i64::from(config.sample_rate.max(1));
        let rel = pts - base;
        if rel < 0 {
            return;
        }
        let Some(duration) = config.frame_duration(frame) else {
            return;
        };
        let mut ticks = (rel * rate / TS_HZ) as u64;
        let frame_len = u64::from(duration);
        if let Some(next) = self.audio_next {
            if ticks.abs_diff(next) < frame_len / 2 || self.audio_rows.is_empty() && ticks < next {
                ticks = next;
            } else if ticks < next {
                // Overlaps the frame before: a duplicate or a clock step back.
                return;
            } else if let Some(last) = self.audio_rows.last_mut() {
                // A hole: the frame before is stretched over it, keeping the track contiguous.
                last.duration += (ticks - next) as u32;
            }
        }
        if self.audio_rows.is_empty() {
            self.audio_start = ticks;
        }
        self.audio_rows.push(SampleRow {
            duration,
            size: frame.len() as u32,
            keyframe: true,
            cto: 0,
        });
        self.audio_data.extend_from_slice(frame);
        self.audio_next = Some(ticks + frame_len);
    }

    /// Cuts a fragment of the gathered video and of the audio that starts before `end` (90 kHz);
    /// sends the init first when the session has none yet. Without `force`, waits while an
    /// expected audio track has not configured yet (for up to [`AUDIO_WAIT`]), remembering
    /// where each cut would have been so the fragments come out as they would have.
    fn cut(&mut self, end: i64, force: bool, out: &mut Vec<PushEvent>) -> Result<(), PushError> {
        let Some(base) = self.base else {
            return Ok(());
        };
        if self.init.is_none() {
            let waiting = self.audio_expected && self.audio.is_none();
            if waiting && !force && end - base < AUDIO_WAIT {
                self.deferred.push((self.video_rows.len(), end));
                return Ok(());
            }
            if self.video_rows.is_empty() && self.audio_rows.is_empty() {
                return Ok(());
            }
            let init = self.build_init()?;
            out.push(PushEvent::Init(init.clone()));
            self.init = Some(init);
        }
        let mut taken = 0;
        for (rows, at) in std::mem::take(&mut self.deferred) {
            self.emit(rows - taken, at, false, out)?;
            taken = rows;
        }
        let rows = self.video_rows.len();
        self.emit(rows, end, force, out)
    }

    /// Writes a fragment of the first `video` gathered video rows and the audio that starts
    /// before `end` (all of it with `all_audio`).
    fn emit(
        &mut self,
        video: usize,
        end: i64,
        all_audio: bool,
        out: &mut Vec<PushEvent>,
    ) -> Result<(), PushError> {
        let (Some(init), Some(base)) = (&self.init, self.base) else {
            return Ok(());
        };
        let has_audio = init.tracks.iter().any(|t| t.id == AUDIO_ID);
        let has_video = init.tracks.iter().any(|t| t.id == VIDEO_ID);
        let (rows_a, bytes_a) = if has_audio {
            let rate = i64::from(self.audio.as_ref().map_or(1, |a| a.sample_rate.max(1)));
            let end_ticks = ((end - base).max(0) * rate / TS_HZ) as u64;
            let mut t = self.audio_start;
            let mut n = 0;
            let mut bytes = 0usize;
            for r in &self.audio_rows {
                if t >= end_ticks && !all_audio {
                    break;
                }
                t += u64::from(r.duration);
                n += 1;
                bytes += r.size as usize;
            }
            (n, bytes)
        } else {
            (0, 0)
        };
        let video = video.min(self.video_rows.len());
        let video_rows: Vec<SampleRow> = self.video_rows.drain(..video).collect();
        let video_bytes: usize = video_rows.iter().map(|r| r.size as usize).sum();
        let mut data: Vec<u8> = self.video_data.drain(..video_bytes).collect();
        let video_time = self
            .video_dts
            .first()
            .map_or(0, |&d| (d - base).max(0) as u64);
        self.video_dts.drain(..video);
        let video_rows = if has_video { video_rows } else { Vec::new() };
        if !has_video {
            data.clear();
        }
        if video_rows.is_empty() && rows_a == 0 {
            return Ok(());
        }
        let audio_rows: Vec<SampleRow> = self.audio_rows.drain(..rows_a).collect();
        data.extend(self.audio_data.drain(..bytes_a));
        let audio_time = self.audio_start;
        self.audio_start += audio_rows
            .iter()
            .map(|r| u64::from(r.duration))
            .sum::<u64>();
        self.seq = self.seq.wrapping_add(1);
        let trafs = [
            TrafSpec {
                track_id: VIDEO_ID,
                decode_time: video_time,
                rows: &video_rows,
                video: true,
            },
            TrafSpec {
                track_id: AUDIO_ID,
                decode_time: audio_time,
                rows: &audio_rows,
                video: false,
            },
        ];
        let bytes = fmp4::fragment(self.seq, &trafs, &data);
        let fragment = parse_fragment_at(&bytes, 0, init).map_err(|e| {
            PushError::Malformed(format!("the muxer wrote a fragment it cannot read: {e}"))
        })?;
        let media_ns = media_ns(&fragment, init);
        out.push(PushEvent::Fragment(LiveFragment {
            bytes,
            fragment,
            media_ns,
        }));
        Ok(())
    }

    fn build_init(&self) -> Result<InitSegment, PushError> {
        let mut tracks = Vec::new();
        if let (Some(_), Some(entry)) = (self.codec, &self.video_entry) {
            tracks.push(TrackSpec {
                id: VIDEO_ID,
                timescale: TS_HZ as u32,
                entry: entry.clone(),
            });
        }
        if let Some(a) = self.audio.as_ref().filter(|_| self.audio_expected) {
            tracks.push(TrackSpec {
                id: AUDIO_ID,
                timescale: a.sample_rate,
                entry: match a.codec {
                    AudioCodec::Aac => Entry::Aac {
                        asc: a.config.clone(),
                        channels: a.channels,
                        sample_rate: a.sample_rate,
                    },
                    AudioCodec::Opus => Entry::Opus {
                        dops: a.config.clone(),
                        channels: a.channels,
                    },
                },
            });
        }
        InitSegment::parse(Some(&fmp4::ftyp()), &fmp4::moov(&tracks)).map_err(|e| {
            PushError::Unsupported(format!("the muxer's init segment does not parse: {e}"))
        })
    }
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

/// The sample entry for a video configuration.
fn video_entry(codec: VideoCodec, sets: &ParamSets) -> Result<Entry, PushError> {
    let bad = |e: params::ParamError| PushError::Malformed(format!("{e}"));
    for s in sets.vps.iter().chain(&sets.sps).chain(&sets.pps) {
        if s.len() > params::MAX_PARAM_SET {
            return Err(PushError::TooLarge(format!(
                "a parameter set of {} bytes, over the {} byte cap",
                s.len(),
                params::MAX_PARAM_SET
            )));
        }
    }
    Ok(match codec {
        VideoCodec::H264 => {
            let sps = params::parse_avc_sps(&sets.sps[0]).map_err(bad)?;
            Entry::Visual {
                fourcc: *b"avc1",
                config_box: *b"avcC",
                config: params::avcc(&sets.sps[0], &sps, &refs(&sets.pps)),
                width: sps.width as u16,
                height: sps.height as u16,
            }
        }
        VideoCodec::H265 => {
            let sps = params::parse_hevc_sps(&sets.sps[0]).map_err(bad)?;
            if sets.vps.is_empty() {
                return Err(PushError::Malformed(
                    "an H.265 keyframe with an SPS but no VPS".into(),
                ));
            }
            Entry::Visual {
                fourcc: *b"hvc1",
                config_box: *b"hvcC",
                config: params::hvcc(&sps, &refs(&sets.vps), &refs(&sets.sps), &refs(&sets.pps)),
                width: sps.width as u16,
                height: sps.height as u16,
            }
        }
    })
}

#[cfg(test)]
mod tests;
