//! The MPEG-TS demuxer (ISO/IEC 13818-1) for publish bodies and standard input: 188-byte packets
//! arriving in arbitrary pieces, the PAT and the first program's PMT (CRC-checked), PES packets
//! reassembled across TS packets, PTS/DTS unwrapped past their 33-bit wrap, H.264/H.265 access
//! units (one per PES, as muxers write them), AAC frames split out of ADTS and Opus packets out
//! of their control headers (stream type 0x06 registered as `Opus`). A continuity
//! counter gap, a packet flagged with a transport error, or lost sync drops the PES it broke and
//! tells the caller, who skips video to the next keyframe. Sans-I/O: bytes in, [`TsEvent`]s out;
//! every length is checked against what is there, and PES packets have an explicit size cap.

use super::opus::{self, OpusHead};
use super::{AudioCodec, AudioConfig, VideoCodec};
use crate::source::push::{PushError, MAX_FRAGMENT};

pub const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// Most bytes skipped looking for sync before the feed is refused as not MPEG-TS.
const MAX_JUNK: usize = 16 * PACKET;
/// Largest PSI section (PAT, PMT).
const MAX_SECTION: usize = 1024 + 3;
/// Largest PES packet reassembled.
const MAX_PES: usize = MAX_FRAGMENT / 2;
const WRAP: i64 = 1 << 33;
const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// What the demuxer found.
#[derive(Debug)]
pub enum TsEvent<'a> {
    /// The program's streams (first, and whenever the PMT changes them).
    Tracks {
        video: Option<VideoCodec>,
        audio: bool,
    },
    /// A video access unit (Annex B), times in 90 kHz ticks.
    Video { dts: i64, pts: i64, data: &'a [u8] },
    /// One raw AAC frame or Opus packet.
    Audio {
        config: &'a AudioConfig,
        pts: i64,
        frame: &'a [u8],
    },
    /// Video data was lost: skip to the next keyframe.
    VideoLost,
}

#[derive(Debug, Default)]
struct Pes {
    buf: Vec<u8>,
    started: bool,
    /// Part of this PES was lost: it is dropped.
    broken: bool,
    cc: Option<u8>,
}

#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    cc: Option<u8>,
}

#[derive(Debug, Default)]
pub struct TsDemuxer {
    packet: Vec<u8>,
    offset: u64,
    junk: usize,
    good_run: u32,
    pat: Section,
    pmt_pid: Option<u16>,
    pmt: Section,
    video_pid: Option<u16>,
    video_codec: Option<VideoCodec>,
    audio_pid: Option<u16>,
    /// The Opus configuration when the audio stream is Opus (else it is ADTS).
    audio_opus: Option<AudioConfig>,
    video: Pes,
    audio: Pes,
    audio_config: Option<AudioConfig>,
    last_ts: Option<i64>,
    /// TS packets taken and packets (or PES) lost, for logs and tests.
    pub packets: u64,
    pub lost: u64,
}

type Sink<'s> = dyn FnMut(TsEvent<'_>) -> Result<(), PushError> + 's;

impl TsDemuxer {
    /// Takes `bytes`, handing each event to `sink` as it completes.
    pub fn push(&mut self, mut bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), PushError> {
        while !bytes.is_empty() {
            if self.packet.is_empty() {
                if bytes[0] != SYNC {
                    let skip = bytes.iter().position(|&b| b == SYNC).unwrap_or(bytes.len());
                    self.lose_sync(skip, sink)?;
                    bytes = &bytes[skip..];
                    continue;
                }
                if bytes.len() >= PACKET {
                    let (p, rest) = bytes.split_at(PACKET);
                    self.offset += PACKET as u64;
                    self.packet_in(p, sink)?;
                    bytes = rest;
                    continue;
                }
            }
            let n = (PACKET - self.packet.len()).min(bytes.len());
            self.packet.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.packet.len() == PACKET {
                self.offset += PACKET as u64;
                let p = std::mem::take(&mut self.packet);
                self.packet_in(&p, sink)?;
                self.packet = p;
                self.packet.clear();
            }
        }
        Ok(())
    }

    /// The feed ended: a PES still being gathered goes out.
    pub fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), PushError> {
        self.end_pes(true, sink)?;
        self.end_pes(false, sink)
    }

    fn lose_sync(&mut self, skip: usize, sink: &mut Sink<'_>) -> Result<(), PushError> {
        self.junk += skip;
        self.good_run = 0;
        if self.junk > MAX_JUNK {
            return Err(PushError::Malformed(format!(
                "lost MPEG-TS sync: no 0x47 sync byte every 188 bytes for {} bytes, before byte \
                 {} of the feed",
                self.junk,
                self.offset + skip as u64
            )));
        }
        self.offset += skip as u64;
        self.lost += 1;
        self.video.broken |= self.video.started;
        self.audio.broken |= self.audio.started;
        self.video.cc = None;
        self.audio.cc = None;
        sink(TsEvent::VideoLost)
    }

    fn packet_in(&mut self, p: &[u8], sink: &mut Sink<'_>) -> Result<(), PushError> {
        debug_assert_eq!(p.len(), PACKET, "a whole packet");
        self.packets += 1;
        self.good_run += 1;
        if self.good_run >= 8 {
            self.junk = 0;
        }
        let error = p[1] & 0x80 != 0;
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0f;
        if pid == 0x1fff || afc & 1 == 0 {
            return Ok(());
        }
        let mut at = 4;
        let mut discontinuity = false;
        if afc == 3 {
            let len = usize::from(p[4]);
            if 5 + len > PACKET {
                return self.lost_packet(pid, sink);
            }
            discontinuity = len > 0 && p[5] & 0x80 != 0;
            at = 5 + len;
        }
        if error {
            return self.lost_packet(pid, sink);
        }
        let payload = &p[at..];
        if pid == 0 {
            return self.psi(true, pusi, cc, payload, sink);
        }
        if Some(pid) == self.pmt_pid {
            return self.psi(false, pusi, cc, payload, sink);
        }
        let video = Some(pid) == self.video_pid;
        if !video && Some(pid) != self.audio_pid {
            return Ok(());
        }
        let pes = if video {
            &mut self.video
        } else {
            &mut self.audio
        };
        match pes.cc {
            Some(last) if last == cc && !discontinuity => return Ok(()),
            Some(last) if (last + 1) & 0x0f != cc && !discontinuity => {
                pes.cc = Some(cc);
                return self.lost_packet(pid, sink);
            }
            _ => {}
        }
        pes.cc = Some(cc);
        if pusi {
            self.end_pes(video, sink)?;
            let pes = if video {
                &mut self.video
            } else {
                &mut self.audio
            };
            pes.started = true;
            pes.broken = false;
            pes.buf.clear();
        }
        let pes = if video {
            &mut self.video
        } else {
            &mut self.audio
        };
        if !pes.started || pes.broken {
            return Ok(());
        }
        if pes.buf.len() + payload.len() > MAX_PES {
            return Err(PushError::TooLarge(format!(
                "a PES packet on PID {pid} over {} MiB (at byte {} of the feed)",
                MAX_PES >> 20,
                self.offset - PACKET as u64
            )));
        }
        pes.buf.extend_from_slice(payload);
        // A PES with a length is complete when it is all there: no need to wait for the next.
        let len = pes
            .buf
            .get(4..6)
            .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        if len > 0 && pes.buf.len() >= 6 + len {
            self.end_pes(video, sink)?;
        }
        Ok(())
    }

    fn lost_packet(&mut self, pid: u16, sink: &mut Sink<'_>) -> Result<(), PushError> {
        self.lost += 1;
        if Some(pid) == self.video_pid {
            self.video.broken = true;
            return sink(TsEvent::VideoLost);
        }
        if Some(pid) == self.audio_pid {
            self.audio.broken = true;
        }
        if pid == 0 {
            self.pat.buf.clear();
        } else if Some(pid) == self.pmt_pid {
            self.pmt.buf.clear();
        }
        Ok(())
    }

    fn psi(
        &mut self,
        pat: bool,
        pusi: bool,
        cc: u8,
        payload: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), PushError> {
        let s = if pat { &mut self.pat } else { &mut self.pmt };
        if s.cc.is_some_and(|last| (last + 1) & 0x0f != cc) {
            s.buf.clear();
        }
        s.cc = Some(cc);
        let data = if pusi {
            let Some((&pointer, rest)) = payload.split_first() else {
                return Ok(());
            };
            s.buf.clear();
            rest.get(usize::from(pointer)..).unwrap_or(&[])
        } else if s.buf.is_empty() {
            return Ok(());
        } else {
            payload
        };
        s.buf
            .extend_from_slice(&data[..data.len().min(MAX_SECTION - s.buf.len())]);
        if s.buf.len() < 3 {
            return Ok(());
        }
        let len = 3 + (usize::from(s.buf[1] & 0x0f) << 8 | usize::from(s.buf[2]));
        if s.buf.len() < len {
            if s.buf.len() >= MAX_SECTION {
                s.buf.clear();
            }
            return Ok(());
        }
        let section = std::mem::take(&mut s.buf);
        let section = &section[..len];
        if len < 12 || crc32(section) != 0 {
            self.lost += 1;
            return Ok(());
        }
        if pat {
            self.read_pat(section);
            Ok(())
        } else {
            self.read_pmt(section, sink)
        }
    }

    fn read_pat(&mut self, s: &[u8]) {
        if s[0] != 0 {
            return;
        }
        let entries = &s[8..s.len() - 4];
        for e in entries.chunks_exact(4) {
            let program = u16::from_be_bytes([e[0], e[1]]);
            if program != 0 {
                let pid = (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]);
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt = Section::default();
                }
                return;
            }
        }
    }

    fn read_pmt(&mut self, s: &[u8], sink: &mut Sink<'_>) -> Result<(), PushError> {
        if s[0] != 2 {
            return Ok(());
        }
        let end = s.len() - 4;
        let info = usize::from(s[10] & 0x0f) << 8 | usize::from(s[11]);
        let mut at = 12 + info;
        let (mut video, mut audio) = (None, None);
        let mut opus_config = None;
        while at + 5 <= end {
            let kind = s[at];
            let pid = (u16::from(s[at + 1] & 0x1f) << 8) | u16::from(s[at + 2]);
            let es_info = usize::from(s[at + 3] & 0x0f) << 8 | usize::from(s[at + 4]);
            let descriptors = s.get(at + 5..(at + 5 + es_info).min(end)).unwrap_or(&[]);
            match kind {
                0x1b if video.is_none() => video = Some((pid, VideoCodec::H264)),
                0x24 if video.is_none() => video = Some((pid, VideoCodec::H265)),
                0x0f if audio.is_none() => audio = Some(pid),
                0x06 if audio.is_none() => {
                    if let Some(c) = opus_descriptors(descriptors) {
                        audio = Some(pid);
                        opus_config = Some(c);
                    }
                }
                _ => {}
            }
            at += 5 + es_info;
        }
        let video_pid = video.map(|v| v.0);
        let codec = video.map(|v| v.1);
        if video_pid == self.video_pid
            && codec == self.video_codec
            && audio == self.audio_pid
            && opus_config == self.audio_opus
        {
            return Ok(());
        }
        if video.is_none() && audio.is_none() {
            return Err(PushError::Unsupported(format!(
                "the MPEG-TS program (PMT before byte {}) has no H.264, H.265, AAC (ADTS) or Opus \
                 stream",
                self.offset
            )));
        }
        self.video_pid = video_pid;
        self.video_codec = codec;
        self.audio_pid = audio;
        self.audio_opus = opus_config;
        self.video = Pes::default();
        self.audio = Pes::default();
        sink(TsEvent::Tracks {
            video: codec,
            audio: audio.is_some(),
        })
    }

    fn unwrap_ts(&mut self, ts: i64) -> i64 {
        let v = match self.last_ts {
            None => ts,
            Some(last) => {
                let d = (ts - last.rem_euclid(WRAP)).rem_euclid(WRAP);
                let d = if d >= WRAP / 2 { d - WRAP } else { d };
                last + d
            }
        };
        self.last_ts = Some(v);
        v
    }

    fn end_pes(&mut self, video: bool, sink: &mut Sink<'_>) -> Result<(), PushError> {
        let pes = if video {
            &mut self.video
        } else {
            &mut self.audio
        };
        if !pes.started {
            return Ok(());
        }
        pes.started = false;
        let buf = std::mem::take(&mut pes.buf);
        if pes.broken {
            pes.buf = buf;
            return Ok(());
        }
        let r = self.pes_out(video, &buf, sink);
        let pes = if video {
            &mut self.video
        } else {
            &mut self.audio
        };
        pes.buf = buf;
        pes.buf.clear();
        r
    }

    fn pes_out(&mut self, video: bool, b: &[u8], sink: &mut Sink<'_>) -> Result<(), PushError> {
        if b.len() < 9 || b[0..3] != [0, 0, 1] || b[6] & 0xc0 != 0x80 {
            self.lost += 1;
            return if video {
                sink(TsEvent::VideoLost)
            } else {
                Ok(())
            };
        }
        let flags = b[7] >> 6;
        let payload_at = 9 + usize::from(b[8]);
        if payload_at > b.len() || flags & 2 == 0 || payload_at < 9 + 5 * usize::from(flags - 1) {
            self.lost += 1;
            return if video {
                sink(TsEvent::VideoLost)
            } else {
                Ok(())
            };
        }
        let mut end = b.len();
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if len > 0 {
            end = end.min(6 + len);
        }
        let payload = &b[payload_at.min(end)..end];
        let pts = self.unwrap_ts(read_ts(&b[9..14]));
        if video {
            let dts = if flags == 3 {
                self.unwrap_ts(read_ts(&b[14..19]))
            } else {
                pts
            };
            return sink(TsEvent::Video {
                dts,
                pts,
                data: payload,
            });
        }
        if self.audio_opus.is_some() {
            return self.opus(pts, payload, sink);
        }
        self.adts(pts, payload, sink)
    }

    /// A PES of Opus packets, each behind its control header; the first starts at `pts` and
    /// each next one where the one before ends.
    fn opus(&mut self, pts: i64, mut d: &[u8], sink: &mut Sink<'_>) -> Result<(), PushError> {
        let Some(config) = &self.audio_opus else {
            return Ok(());
        };
        let mut samples = 0i64;
        while !d.is_empty() {
            let Some((header, size, _, _)) = opus::control_header(d) else {
                self.lost += 1;
                return Ok(());
            };
            let Some(packet) = d.get(header..header + size) else {
                self.lost += 1;
                return Ok(());
            };
            sink(TsEvent::Audio {
                config,
                pts: pts + samples * super::TS_HZ / i64::from(opus::OPUS_HZ),
                frame: packet,
            })?;
            samples += i64::from(opus::packet_duration(packet).unwrap_or(0));
            d = &d[header + size..];
        }
        Ok(())
    }

    fn adts(&mut self, pts: i64, mut d: &[u8], sink: &mut Sink<'_>) -> Result<(), PushError> {
        let mut i = 0i64;
        while d.len() >= 7 {
            if d[0] != 0xff || d[1] & 0xf6 != 0xf0 {
                self.lost += 1;
                return Ok(());
            }
            let header = if d[1] & 1 == 1 { 7 } else { 9 };
            let profile = d[2] >> 6;
            let sfi = (d[2] >> 2) & 0x0f;
            let chan = ((d[2] & 1) << 2) | (d[3] >> 6);
            let len =
                (usize::from(d[3] & 3) << 11) | (usize::from(d[4]) << 3) | usize::from(d[5] >> 5);
            let blocks = (d[6] & 3) + 1;
            let Some(&rate) = AAC_SAMPLE_RATES.get(usize::from(sfi)) else {
                self.lost += 1;
                return Ok(());
            };
            if len < header || len > d.len() {
                self.lost += 1;
                return Ok(());
            }
            if blocks == 1 {
                let aot = profile + 1;
                let config = AudioConfig {
                    codec: AudioCodec::Aac,
                    config: vec![(aot << 3) | (sfi >> 1), ((sfi & 1) << 7) | (chan << 3)],
                    sample_rate: rate,
                    channels: if chan == 0 { 2 } else { u16::from(chan) },
                };
                if self.audio_config.as_ref() != Some(&config) {
                    self.audio_config = Some(config);
                }
                if let Some(config) = &self.audio_config {
                    sink(TsEvent::Audio {
                        config,
                        pts: pts + i * 1024 * super::TS_HZ / i64::from(rate),
                        frame: &d[header..len],
                    })?;
                }
            }
            i += i64::from(blocks);
            d = &d[len..];
        }
        Ok(())
    }
}

/// The Opus configuration of a private-data stream (type 0x06) whose descriptors register it as
/// `Opus` (tag 0x05); the channels come from the DVB extension descriptor (0x7f) with tag 0x80,
/// stereo without one (as ffmpeg assumes).
fn opus_descriptors(mut d: &[u8]) -> Option<AudioConfig> {
    let (mut registered, mut channels) = (false, None);
    while d.len() >= 2 {
        let (tag, len) = (d[0], usize::from(d[1]));
        let Some(body) = d.get(2..2 + len) else {
            break;
        };
        match tag {
            0x05 if body.starts_with(b"Opus") => registered = true,
            0x7f if body.len() >= 2 && body[0] == 0x80 => channels = Some(body[1]),
            _ => {}
        }
        d = &d[2 + len..];
    }
    if !registered {
        return None;
    }
    let head = OpusHead::from_ts_channel_config(channels.unwrap_or(2));
    if head.is_none() {
        log::warn!(
            "MPEG-TS Opus channel configuration {:#04x} is not supported",
            channels.unwrap_or(0)
        );
    }
    Some(head?.audio_config())
}

/// A 33-bit PTS/DTS from its 5 bytes.
fn read_ts(b: &[u8]) -> i64 {
    (i64::from(b[0] >> 1 & 7) << 30)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

/// The MPEG-2 CRC-32 of `data`; over a whole section (its CRC included) it is 0.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}
