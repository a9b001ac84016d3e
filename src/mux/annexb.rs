//! H.264/H.265 Annex B: NAL units between start codes (`00 00 01`, `00 00 00 01`), what kind each
//! is, and [`AnnexBSplitter`], which cuts a bare elementary stream arriving in arbitrary pieces
//! (a camera on a pipe: `rpicam-vid --inline -o -`) into access units: a new one starts at an
//! access unit delimiter, or at a parameter set, SEI or first slice of a picture after the
//! previous picture's slices. Sans-I/O; times are whatever the caller passes in.

use super::VideoCodec;
use crate::source::push::{PushError, MAX_FRAGMENT};

/// Where the next start code (its `00 00 01`) begins at or after `from`.
pub fn find_start(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 2 < data.len() {
        let c = data[i + 2];
        if c > 1 {
            i += 3;
        } else if c == 1 {
            if data[i] == 0 && data[i + 1] == 0 {
                return Some(i);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// The NAL units of Annex B `data`, without their start codes and trailing zero bytes.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = find_start(data, 0).map(|s| s + 3);
    std::iter::from_fn(move || loop {
        let start = at?;
        let next = find_start(data, start);
        at = next.map(|s| s + 3);
        let mut end = next.unwrap_or(data.len());
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            return Some(&data[start..end]);
        }
    })
}

/// What a NAL unit is to the muxer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalKind {
    Vps,
    Sps,
    Pps,
    Aud,
    /// A slice of a keyframe (H.264 IDR, H.265 IRAP).
    Key,
    /// A slice of another picture.
    Slice,
    /// Filler and the like: not written.
    Drop,
    /// SEI and the rest: kept in the sample.
    Other,
}

impl NalKind {
    pub fn of(codec: VideoCodec, nal: &[u8]) -> NalKind {
        let Some(&h) = nal.first() else {
            return NalKind::Drop;
        };
        match codec {
            VideoCodec::H264 => match h & 0x1f {
                7 => NalKind::Sps,
                8 => NalKind::Pps,
                9 => NalKind::Aud,
                5 => NalKind::Key,
                1..=4 => NalKind::Slice,
                0 | 12 => NalKind::Drop,
                _ => NalKind::Other,
            },
            VideoCodec::H265 => match (h >> 1) & 0x3f {
                32 => NalKind::Vps,
                33 => NalKind::Sps,
                34 => NalKind::Pps,
                35 => NalKind::Aud,
                16..=21 => NalKind::Key,
                0..=15 => NalKind::Slice,
                38 => NalKind::Drop,
                _ => NalKind::Other,
            },
        }
    }
}

/// Whether `nal` begins a new access unit after one that already has slices.
fn starts_picture(codec: VideoCodec, nal: &[u8], has_slices: bool) -> bool {
    let kind = NalKind::of(codec, nal);
    if kind == NalKind::Aud {
        return true;
    }
    if !has_slices {
        return false;
    }
    match codec {
        VideoCodec::H264 => match nal[0] & 0x1f {
            // first_mb_in_slice == 0: its ue(v) is the single bit 1.
            1..=5 => nal.get(1).is_some_and(|b| b & 0x80 != 0),
            6..=8 | 14..=18 => true,
            _ => false,
        },
        VideoCodec::H265 => match (nal[0] >> 1) & 0x3f {
            // first_slice_segment_in_pic_flag
            0..=31 => nal.get(2).is_some_and(|b| b & 0x80 != 0),
            32..=34 | 39 | 41..=44 | 48..=55 => true,
            _ => false,
        },
    }
}

/// Guesses the codec from the first NAL unit header of a stream.
pub fn guess_codec(nal: &[u8]) -> Option<VideoCodec> {
    let (&a, b) = nal.split_first()?;
    if a & 0x80 != 0 {
        return None;
    }
    let h265_type = (a >> 1) & 0x3f;
    if b.first() == Some(&1) && (32..=40).contains(&h265_type) {
        return Some(VideoCodec::H265);
    }
    match a & 0x1f {
        1..=23 => Some(VideoCodec::H264),
        _ => None,
    }
}

/// An access unit cut from the stream: Annex B bytes and when its first byte arrived.
#[derive(Debug)]
pub struct AccessUnit {
    pub data: Vec<u8>,
    pub arrival: u64,
}

/// Cuts an Annex B stream into access units (see the module's doc).
#[derive(Debug, Default)]
pub struct AnnexBSplitter {
    codec: Option<VideoCodec>,
    /// Bytes of the NAL unit being read (from its start code on), and a start code's worth more.
    buf: Vec<u8>,
    /// Where to go on looking for the next start code in `buf`.
    scan: usize,
    /// When the first byte of the NAL unit in `buf` arrived.
    nal_arrival: u64,
    au: Vec<u8>,
    au_arrival: u64,
    au_has_slices: bool,
    /// Bytes taken, for error messages.
    offset: u64,
    started: bool,
}

impl AnnexBSplitter {
    pub fn new(codec: Option<VideoCodec>) -> AnnexBSplitter {
        AnnexBSplitter {
            codec,
            ..AnnexBSplitter::default()
        }
    }

    pub fn codec(&self) -> Option<VideoCodec> {
        self.codec
    }

    /// Takes `bytes` that arrived at `now` (any unit, passed through to [`AccessUnit::arrival`]);
    /// hands each access unit completed to `on_au`.
    pub fn push(
        &mut self,
        bytes: &[u8],
        now: u64,
        on_au: &mut impl FnMut(AccessUnit) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        if self.buf.is_empty() {
            self.nal_arrival = now;
        }
        self.buf.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
        loop {
            if !self.started {
                match find_start(&self.buf, 0) {
                    Some(s) => {
                        self.buf.drain(..s);
                        self.started = true;
                        self.scan = 3;
                    }
                    None => {
                        if self.offset > 4096 {
                            return Err(PushError::Unsupported(format!(
                                "no Annex B start code in the first {} bytes of the feed",
                                self.offset
                            )));
                        }
                        return Ok(());
                    }
                }
            }
            let Some(next) = find_start(&self.buf, self.scan) else {
                self.scan = self.buf.len().saturating_sub(2).max(3);
                if self.buf.len() > MAX_FRAGMENT {
                    return Err(PushError::TooLarge(format!(
                        "a NAL unit over {} MiB (before byte {} of the feed)",
                        MAX_FRAGMENT >> 20,
                        self.offset
                    )));
                }
                return Ok(());
            };
            let nal_end = next;
            self.nal_done(nal_end, on_au)?;
            self.buf.drain(..nal_end);
            self.scan = 3;
            self.nal_arrival = now;
        }
    }

    /// The stream ended: the last access unit goes out.
    pub fn finish(
        &mut self,
        on_au: &mut impl FnMut(AccessUnit) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        if self.started && self.buf.len() > 3 {
            self.nal_done(self.buf.len(), on_au)?;
        }
        self.buf.clear();
        if !self.au.is_empty() {
            let data = std::mem::take(&mut self.au);
            on_au(AccessUnit {
                data,
                arrival: self.au_arrival,
            })?;
        }
        Ok(())
    }

    /// The NAL unit in `buf[..end]` (start code included) is complete.
    fn nal_done(
        &mut self,
        end: usize,
        on_au: &mut impl FnMut(AccessUnit) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        let nal = &self.buf[3..end];
        let nal = &nal[..nal.len() - nal.iter().rev().take_while(|&&b| b == 0).count()];
        if nal.is_empty() {
            return Ok(());
        }
        if self.codec.is_none() {
            self.codec = guess_codec(nal);
        }
        let Some(codec) = self.codec else {
            return Err(PushError::Unsupported(format!(
                "the feed starts like Annex B, but its first NAL unit header ({:02x}) is \
                 neither H.264 nor H.265 (before byte {})",
                nal[0], self.offset
            )));
        };
        if starts_picture(codec, nal, self.au_has_slices) && !self.au.is_empty() {
            let data = std::mem::take(&mut self.au);
            on_au(AccessUnit {
                data,
                arrival: self.au_arrival,
            })?;
            self.au_has_slices = false;
        }
        if self.au.is_empty() {
            self.au_arrival = self.nal_arrival;
        }
        if matches!(NalKind::of(codec, nal), NalKind::Key | NalKind::Slice) {
            self.au_has_slices = true;
        }
        if self.au.len() + nal.len() > MAX_FRAGMENT {
            return Err(PushError::TooLarge(format!(
                "an access unit over {} MiB (before byte {} of the feed)",
                MAX_FRAGMENT >> 20,
                self.offset
            )));
        }
        self.au.extend_from_slice(&[0, 0, 0, 1]);
        self.au.extend_from_slice(nal);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264_stream() -> Vec<u8> {
        // AUD, SPS, PPS, IDR slice, then AUD + a P slice, then a P slice with no AUD.
        let mut s = Vec::new();
        for nal in [
            &[0x09, 0xf0][..],
            &[0x67, 0x42, 0xc0, 0x1e, 0xab],
            &[0x68, 0xce, 0x3c, 0x80],
            &[0x65, 0x88, 0x84, 0x00, 0x00],
            &[0x09, 0xf0],
            &[0x41, 0x9a, 0x02],
            &[0x41, 0x9a, 0x04],
        ] {
            s.extend_from_slice(&[0, 0, 0, 1]);
            s.extend_from_slice(nal);
        }
        s
    }

    fn split(stream: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut s = AnnexBSplitter::new(None);
        let mut aus = Vec::new();
        let mut take = |au: AccessUnit| {
            aus.push(au.data);
            Ok(())
        };
        for (i, p) in stream.chunks(piece).enumerate() {
            s.push(p, i as u64, &mut take).unwrap();
        }
        s.finish(&mut take).unwrap();
        aus
    }

    #[test]
    fn access_units_at_auds_and_first_slices_in_any_split() {
        let stream = h264_stream();
        let whole = split(&stream, stream.len());
        assert_eq!(whole.len(), 3);
        assert_eq!(nal_units(&whole[0]).count(), 4);
        assert_eq!(nal_units(&whole[1]).count(), 2);
        assert_eq!(
            nal_units(&whole[2]).collect::<Vec<_>>(),
            [&[0x41, 0x9a, 0x04]]
        );
        for piece in 1..stream.len() {
            assert_eq!(split(&stream, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn codec_guess() {
        assert_eq!(guess_codec(&[0x09, 0xf0]), Some(VideoCodec::H264));
        assert_eq!(guess_codec(&[0x67, 0x64]), Some(VideoCodec::H264));
        assert_eq!(guess_codec(&[0x46, 0x01, 0x10]), Some(VideoCodec::H265));
        assert_eq!(guess_codec(&[0x40, 0x01, 0x0c]), Some(VideoCodec::H265));
        assert_eq!(guess_codec(&[0xff]), None);
    }

    #[test]
    fn three_byte_start_codes_and_trailing_zeros() {
        let data = [
            0, 0, 1, 0x09, 0xf0, 0, 0, 0, 0, 1, 0x65, 0x88, 0, 0, 1, 0x41, 0x9a,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(nals, [&[0x09, 0xf0][..], &[0x65, 0x88], &[0x41, 0x9a]]);
    }
}
