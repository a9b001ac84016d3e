//! Opus: packet durations from the TOC byte (RFC 6716 3.1), the `OpusHead` identification
//! header (RFC 7845 5.1, as Enhanced RTMP's sequence start carries it), the channel
//! configuration of an MPEG-TS Opus stream (ETSI TS 102 366 style DVB extension descriptor
//! 0x80, as ffmpeg writes it), the `opus_control_header` in front of every packet of an MPEG-TS
//! PES, and the body of the MP4 `dOps` box ("Encapsulation of Opus in ISO Base Media File
//! Format" 4.3.2). Pure parsing and byte building.

use super::{AudioCodec, AudioConfig};

/// Opus always decodes at 48 kHz; MP4 tracks of it use that timescale.
pub const OPUS_HZ: u32 = 48_000;
/// Longest packet RFC 6716 allows: 120 ms.
const MAX_PACKET: u32 = OPUS_HZ / 1000 * 120;

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte and, for code 3, the frame count
/// byte; `None` for an empty or malformed packet.
pub fn packet_duration(p: &[u8]) -> Option<u32> {
    let toc = *p.first()?;
    let config = toc >> 3;
    // 2.5, 5, 10, 20 ms for CELT (16..=31) in groups of 4; SILK (0..=11) 10, 20, 40, 60 ms;
    // hybrid (12..=15) 10, 20 ms.
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        12..=15 => [480, 960][usize::from(config & 1)],
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*p.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (frames > 0 && total <= MAX_PACKET).then_some(total)
}

/// The fields of an Opus identification header, as `dOps` carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_rate: u32,
    pub gain: i16,
    pub family: u8,
    /// For a family other than 0: stream count, coupled count, then one byte a channel.
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// Reads an `OpusHead` packet (little-endian fields, RFC 7845 5.1).
    pub fn parse(b: &[u8]) -> Option<OpusHead> {
        if b.len() < 19 || &b[..8] != b"OpusHead" || b[8] >> 4 != 0 {
            return None;
        }
        let channels = b[9];
        let family = b[18];
        if channels == 0 {
            return None;
        }
        let mapping = if family == 0 {
            if channels > 2 {
                return None;
            }
            Vec::new()
        } else {
            let m = b.get(19..21 + usize::from(channels))?;
            if m[0] == 0 || m[1] > m[0] {
                return None;
            }
            m.to_vec()
        };
        Some(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            input_rate: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            gain: i16::from_le_bytes([b[16], b[17]]),
            family,
            mapping,
        })
    }

    /// The configuration an MPEG-TS Opus stream's extension descriptor (tag 0x80) gives with
    /// its channel_config_code: 1 to 8 channels in Vorbis order (as ffmpeg reads it; no
    /// pre-skip, which MPEG-TS carries as trims instead). Other codes are not supported.
    pub fn from_ts_channel_config(code: u8) -> Option<OpusHead> {
        const STREAMS: [u8; 9] = [1, 1, 1, 2, 2, 3, 4, 4, 5];
        const COUPLED: [u8; 9] = [1, 0, 1, 1, 2, 2, 2, 3, 3];
        const MAP: [&[u8]; 8] = [
            &[0],
            &[0, 1],
            &[0, 2, 1],
            &[0, 1, 2, 3],
            &[0, 4, 1, 2, 3],
            &[0, 4, 1, 2, 3, 5],
            &[0, 4, 1, 2, 3, 5, 6],
            &[0, 6, 1, 2, 3, 4, 5, 7],
        ];
        if !(1..=8).contains(&code) {
            return None;
        }
        let n = usize::from(code);
        let (family, mapping) = if code <= 2 {
            (0, Vec::new())
        } else {
            let mut m = vec![STREAMS[n], COUPLED[n]];
            m.extend_from_slice(MAP[n - 1]);
            (1, m)
        };
        Some(OpusHead {
            channels: code,
            pre_skip: 0,
            input_rate: OPUS_HZ,
            gain: 0,
            family,
            mapping,
        })
    }

    /// The body of the `dOps` box (big-endian, version 0).
    pub fn dops(&self) -> Vec<u8> {
        let mut o = vec![0, self.channels];
        o.extend_from_slice(&self.pre_skip.to_be_bytes());
        o.extend_from_slice(&self.input_rate.to_be_bytes());
        o.extend_from_slice(&self.gain.to_be_bytes());
        o.push(self.family);
        if self.family != 0 {
            o.extend_from_slice(&self.mapping);
        }
        o
    }

    /// The muxer's audio configuration for this stream.
    pub fn audio_config(&self) -> AudioConfig {
        AudioConfig {
            codec: AudioCodec::Opus,
            config: self.dops(),
            sample_rate: OPUS_HZ,
            channels: u16::from(self.channels),
        }
    }
}

/// One `opus_control_header` at the start of `d`: (header length, packet length, start trim,
/// end trim). `None` when it is not one or is cut short.
pub fn control_header(d: &[u8]) -> Option<(usize, usize, u16, u16)> {
    if d.len() < 2 || u16::from_be_bytes([d[0], d[1]]) & 0xffe0 != 0x7fe0 {
        return None;
    }
    let flags = d[1];
    let mut at = 2;
    let mut size = 0usize;
    loop {
        let b = *d.get(at)?;
        at += 1;
        size += usize::from(b);
        if b != 0xff {
            break;
        }
    }
    let u16_at = |at: &mut usize| -> Option<u16> {
        let v = u16::from_be_bytes([*d.get(*at)?, *d.get(*at + 1)?]);
        *at += 2;
        Some(v)
    };
    let start_trim = if flags & 0x10 != 0 {
        u16_at(&mut at)? & 0x1fff
    } else {
        0
    };
    let end_trim = if flags & 0x08 != 0 {
        u16_at(&mut at)? & 0x1fff
    } else {
        0
    };
    if flags & 0x04 != 0 {
        let len = usize::from(*d.get(at)?);
        at += 1 + len;
    }
    (at <= d.len()).then_some((at, size, start_trim, end_trim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        // config 0..=11 SILK 10/20/40/60 ms, 12..=15 hybrid 10/20, 16..=31 CELT 2.5/5/10/20.
        let one = |config: u8| packet_duration(&[config << 3]).unwrap();
        assert_eq!([one(0), one(1), one(2), one(3)], [480, 960, 1920, 2880]);
        assert_eq!([one(11), one(12), one(13), one(15)], [2880, 480, 960, 960]);
        assert_eq!([one(16), one(17), one(18), one(19)], [120, 240, 480, 960]);
        assert_eq!(one(31), 960);
        // Code 1 and 2: two frames; code 3: the count in the next byte.
        assert_eq!(packet_duration(&[(31 << 3) | 1]), Some(1920));
        assert_eq!(packet_duration(&[(31 << 3) | 2, 0]), Some(1920));
        assert_eq!(packet_duration(&[(16 << 3) | 3, 0x80 | 5]), Some(600));
        assert_eq!(packet_duration(&[(31 << 3) | 3, 6]), Some(5760));
        assert_eq!(packet_duration(&[(31 << 3) | 3, 7]), None, "over 120 ms");
        assert_eq!(packet_duration(&[(31 << 3) | 3, 0]), None, "no frames");
        assert_eq!(packet_duration(&[(31 << 3) | 3]), None, "count missing");
        assert_eq!(packet_duration(&[]), None);
    }

    #[test]
    fn control_headers() {
        // A 100-byte packet, no trims.
        assert_eq!(control_header(&[0x7f, 0xe0, 100]), Some((3, 100, 0, 0)));
        // 255 needs a 0xff then 0; 600 is 0xff 0xff 90.
        assert_eq!(control_header(&[0x7f, 0xe0, 0xff, 0]), Some((4, 255, 0, 0)));
        assert_eq!(
            control_header(&[0x7f, 0xe0, 0xff, 0xff, 90]),
            Some((5, 600, 0, 0))
        );
        // Start and end trims (13 bits each) and a control extension of 2 bytes.
        let h = [0x7f, 0xfc, 20, 0xe1, 0x38, 0x00, 0x10, 2, 9, 9];
        assert_eq!(control_header(&h), Some((10, 20, 312, 16)));
        assert_eq!(control_header(&h[..9]), None, "extension cut");
        assert_eq!(control_header(&[0x7f, 0xf0, 20, 1]), None, "trim cut");
        assert_eq!(control_header(&[0x7f, 0xe0, 0xff]), None, "size cut");
        assert_eq!(control_header(&[0x7f, 0xc0, 3]), None, "bad prefix");
        assert_eq!(control_header(&[0xff, 0xf1, 3]), None, "ADTS");
    }

    #[test]
    fn opus_head_and_dops() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0xfe, 0xff, 0]);
        let h = OpusHead::parse(&head).unwrap();
        assert_eq!(
            h,
            OpusHead {
                channels: 2,
                pre_skip: 312,
                input_rate: 48000,
                gain: -2,
                family: 0,
                mapping: Vec::new(),
            }
        );
        assert_eq!(
            h.dops(),
            [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0xff, 0xfe, 0]
        );
        for cut in 0..head.len() {
            assert!(OpusHead::parse(&head[..cut]).is_none(), "cut at {cut}");
        }
        let mut bad = head.clone();
        bad[0] = b'o';
        assert!(OpusHead::parse(&bad).is_none());
        // Family 1, 6 channels (5.1): stream count 4, coupled 2, the mapping table.
        let mut six = b"OpusHead".to_vec();
        six.extend_from_slice(&[1, 6, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 1, 4, 2]);
        six.extend_from_slice(&[0, 4, 1, 2, 3, 5]);
        let h = OpusHead::parse(&six).unwrap();
        assert_eq!(h.mapping, [4, 2, 0, 4, 1, 2, 3, 5]);
        assert_eq!(
            h.dops(),
            [0, 6, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 1, 4, 2, 0, 4, 1, 2, 3, 5]
        );
        assert_eq!(h, OpusHead::from_ts_channel_config(6).unwrap());
        assert!(OpusHead::parse(&six[..six.len() - 1]).is_none());
        let c = OpusHead::from_ts_channel_config(1).unwrap().audio_config();
        assert_eq!(
            (c.codec, c.sample_rate, c.channels),
            (AudioCodec::Opus, 48000, 1)
        );
        assert_eq!(c.config, [0, 1, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        assert!(OpusHead::from_ts_channel_config(0).is_none());
        assert!(OpusHead::from_ts_channel_config(0x81).is_none());
    }
}
