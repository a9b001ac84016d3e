//! The FLV tag bodies RTMP carries in its audio (8) and video (9) messages: AVC (legacy FLV) and,
//! with Enhanced RTMP, HEVC (`hvc1`) video — the decoder configuration record or length-prefixed
//! NAL units with a composition time — and AAC audio (the AudioSpecificConfig or a raw frame),
//! legacy or as Enhanced RTMP (v2) `mp4a`, and Enhanced RTMP `Opus` (the `OpusHead` or a packet).
//! Pure: a message payload in, what it carries out.

/// A video codec the server can mux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Avc,
    Hevc,
}

/// What one audio or video message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag<'a> {
    /// `avcC` / `hvcC` contents: the decoder configuration record.
    VideoConfig { codec: VideoCodec, record: &'a [u8] },
    /// One access unit: length-prefixed NAL units, as an MP4 sample holds them.
    Video {
        codec: VideoCodec,
        keyframe: bool,
        /// Presentation minus decode time, in ms.
        cts: i32,
        data: &'a [u8],
    },
    /// The AAC AudioSpecificConfig.
    AudioConfig(&'a [u8]),
    /// One raw AAC frame.
    Audio(&'a [u8]),
    /// Enhanced RTMP Opus: the identification header (`OpusHead`).
    OpusConfig(&'a [u8]),
    /// One Opus packet.
    Opus(&'a [u8]),
    /// Nothing to mux (end of sequence, metadata, an empty tag).
    Skip,
    /// A codec the server cannot mux, named.
    Unsupported(String),
}

fn si24(b: &[u8]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

/// Reads a video message payload.
pub fn video(p: &[u8]) -> Tag<'_> {
    let Some(&b0) = p.first() else {
        return Tag::Skip;
    };
    if b0 & 0x80 != 0 {
        return enhanced_video(p);
    }
    let frame_type = b0 >> 4;
    if frame_type == 5 {
        return Tag::Skip; // video info / command frame
    }
    let codec = match b0 & 0x0f {
        7 => VideoCodec::Avc,
        // HEVC with codec id 12, as some encoders send it without Enhanced RTMP (same layout).
        12 => VideoCodec::Hevc,
        id => return Tag::Unsupported(format!("FLV video codec id {id}")),
    };
    if p.len() < 5 {
        return Tag::Skip;
    }
    match p[1] {
        0 => Tag::VideoConfig {
            codec,
            record: &p[5..],
        },
        1 => Tag::Video {
            codec,
            keyframe: frame_type == 1,
            cts: si24(&p[2..5]),
            data: &p[5..],
        },
        _ => Tag::Skip,
    }
}

/// Enhanced RTMP (v1): `[1 | frame type:3 | packet type:4] FourCC ...`.
fn enhanced_video(p: &[u8]) -> Tag<'_> {
    if p.len() < 5 {
        return Tag::Skip;
    }
    let frame_type = (p[0] >> 4) & 0x07;
    let packet_type = p[0] & 0x0f;
    let codec = match &p[1..5] {
        b"hvc1" => VideoCodec::Hevc,
        b"avc1" => VideoCodec::Avc,
        other => {
            return Tag::Unsupported(format!(
                "Enhanced RTMP video '{}'",
                String::from_utf8_lossy(other)
            ))
        }
    };
    let body = &p[5..];
    match packet_type {
        0 => Tag::VideoConfig {
            codec,
            record: body,
        },
        1 if body.len() >= 3 => Tag::Video {
            codec,
            keyframe: frame_type == 1,
            cts: si24(&body[..3]),
            data: &body[3..],
        },
        3 => Tag::Video {
            codec,
            keyframe: frame_type == 1,
            cts: 0,
            data: body,
        },
        _ => Tag::Skip,
    }
}

/// Reads an audio message payload.
pub fn audio(p: &[u8]) -> Tag<'_> {
    let Some(&b0) = p.first() else {
        return Tag::Skip;
    };
    match b0 >> 4 {
        10 => {}
        9 => return enhanced_audio(p),
        f => return Tag::Unsupported(format!("FLV sound format {f} (only AAC is muxed)")),
    }
    match p.get(1) {
        Some(0) => Tag::AudioConfig(&p[2..]),
        Some(1) => Tag::Audio(&p[2..]),
        _ => Tag::Skip,
    }
}

/// Enhanced RTMP (v2) audio: `[sound format 9 | packet type:4] FourCC ...`; a sequence start
/// carries the codec's configuration, coded frames one frame.
fn enhanced_audio(p: &[u8]) -> Tag<'_> {
    let packet_type = p[0] & 0x0f;
    if matches!(packet_type, 5 | 7) {
        return Tag::Unsupported("Enhanced RTMP multitrack or ModEx audio".into());
    }
    let Some(fourcc) = p.get(1..5) else {
        return Tag::Skip;
    };
    let body = &p[5..];
    match (fourcc, packet_type) {
        (b"Opus", 0) => Tag::OpusConfig(body),
        (b"Opus", 1) => Tag::Opus(body),
        (b"mp4a", 0) => Tag::AudioConfig(body),
        (b"mp4a", 1) => Tag::Audio(body),
        (b"Opus" | b"mp4a", _) => Tag::Skip,
        (other, _) => Tag::Unsupported(format!(
            "Enhanced RTMP audio '{}'",
            String::from_utf8_lossy(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_hevc_and_aac_tags() {
        assert_eq!(
            video(&[0x17, 0, 0, 0, 0, 1, 2]),
            Tag::VideoConfig {
                codec: VideoCodec::Avc,
                record: &[1, 2]
            }
        );
        assert_eq!(
            video(&[0x27, 1, 0xff, 0xff, 0xfe, 9]),
            Tag::Video {
                codec: VideoCodec::Avc,
                keyframe: false,
                cts: -2,
                data: &[9]
            }
        );
        assert_eq!(
            video(&[0x90, b'h', b'v', b'c', b'1', 7]),
            Tag::VideoConfig {
                codec: VideoCodec::Hevc,
                record: &[7]
            }
        );
        assert_eq!(
            video(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 40, 5]),
            Tag::Video {
                codec: VideoCodec::Hevc,
                keyframe: true,
                cts: 40,
                data: &[5]
            }
        );
        assert_eq!(
            video(&[0x93, b'h', b'v', b'c', b'1', 5]),
            Tag::Video {
                codec: VideoCodec::Hevc,
                keyframe: true,
                cts: 0,
                data: &[5]
            }
        );
        assert!(matches!(
            video(&[0x90, b'a', b'v', b'0', b'1']),
            Tag::Unsupported(_)
        ));
        assert!(
            matches!(video(&[0x12, 0]), Tag::Unsupported(_)),
            "Sorenson H.263"
        );
        assert_eq!(
            audio(&[0xaf, 0, 0x11, 0x90]),
            Tag::AudioConfig(&[0x11, 0x90])
        );
        assert_eq!(audio(&[0xaf, 1, 3]), Tag::Audio(&[3]));
        assert!(matches!(audio(&[0x2f, 1]), Tag::Unsupported(_)), "MP3");
        assert_eq!(audio(b"\x90Opus\x01\x02"), Tag::OpusConfig(&[1, 2]));
        assert_eq!(audio(b"\x91Opus\xfc"), Tag::Opus(&[0xfc]));
        assert_eq!(audio(b"\x92Opus"), Tag::Skip, "sequence end");
        assert_eq!(audio(b"\x90mp4a\x11\x90"), Tag::AudioConfig(&[0x11, 0x90]));
        assert_eq!(audio(b"\x91mp4a\x03"), Tag::Audio(&[3]));
        assert!(matches!(audio(b"\x91fLaC\x00"), Tag::Unsupported(_)));
        assert!(matches!(audio(b"\x95\x00Opus"), Tag::Unsupported(_)));
        assert_eq!(audio(b"\x91Op"), Tag::Skip);
        for short in [&[][..], &[0x17], &[0x17, 1, 0], &[0x91, b'h'], &[0xaf]] {
            let _ = video(short);
            let _ = audio(short);
        }
    }
}
