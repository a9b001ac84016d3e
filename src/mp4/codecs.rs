//! Sample entries: a track's picture size and its RFC 6381 codecs string (as MSE wants it in the
//! MIME type) from its first sample entry and the configuration box inside it (avcC, hvcC, vpcC,
//! av1C, esds), or from the entry's type alone for Opus, FLAC and AC-3. An entry the parser does
//! not know leaves the track without a codec; it is not an error.

use super::boxes::{be16, BoxRef, Boxes};
use super::error::fourcc;
use super::init::Track;
use super::Mp4Error;

/// Size of the fixed part of a visual / audio sample entry, before its child boxes.
const VISUAL_ENTRY_LEN: usize = 78;
const AUDIO_ENTRY_LEN: usize = 28;

/// Fills in `track`'s codec and picture size from its sample entry `entry`.
pub(super) fn describe_sample_entry(
    data: &[u8],
    entry: &BoxRef,
    track: &mut Track,
) -> Result<(), Mp4Error> {
    let t = &entry.box_type;
    let visual = matches!(
        t,
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"vp08" | b"vp09" | b"av01"
    );
    if visual {
        // reserved(6) data_reference_index(2) pre_defined/reserved(16) width(2) height(2)
        track.width = be16(data, entry.body + 24).unwrap_or(0);
        track.height = be16(data, entry.body + 26).unwrap_or(0);
        let children = entry.body + VISUAL_ENTRY_LEN..entry.end;
        for c in Boxes::new(data, children) {
            let c = c?;
            let body = data.get(c.body..c.end).unwrap_or(&[]);
            let codec = match &c.box_type {
                b"avcC" => avc_codec(t, body),
                b"hvcC" => hevc_codec(t, body),
                b"vpcC" => vp9_codec(t, body),
                b"av1C" => av1_codec(body),
                _ => None,
            };
            if codec.is_some() {
                track.codec = codec;
                break;
            }
        }
        if track.codec.is_none() && t == b"vp08" {
            track.codec = Some("vp8".to_string());
        }
        return Ok(());
    }
    match t {
        b"mp4a" => {
            let esds = audio_config(data, entry, b"esds")?;
            let body = esds.and_then(|c| data.get(c.body..c.end)).unwrap_or(&[]);
            track.codec = Some(esds_codec(body).unwrap_or_else(|| "mp4a.40.2".into()));
        }
        b"Opus" => track.codec = Some("opus".into()),
        b"fLaC" => track.codec = Some("flac".into()),
        b"ac-3" => track.codec = Some("ac-3".into()),
        b"ec-3" => track.codec = Some("ec-3".into()),
        _ => {}
    }
    Ok(())
}

/// Where an audio sample entry's child boxes start: after the 28 bytes of an ISO entry (version
/// 0), plus the 16 or 36 more a QuickTime sound description of version 1 or 2 has.
pub(super) fn audio_children_at(data: &[u8], entry: &BoxRef) -> usize {
    // reserved(6) data_reference_index(2), then the version.
    let extra = match be16(data, entry.body + 8) {
        Some(1) => 16,
        Some(2) => 36,
        _ => 0,
    };
    entry.body + AUDIO_ENTRY_LEN + extra
}

/// The configuration box `t` (`esds`, ...) of an audio sample entry: a child, or inside the
/// QuickTime `wave` box a `.mov` keeps it in.
pub(super) fn audio_config(
    data: &[u8],
    entry: &BoxRef,
    t: &[u8; 4],
) -> Result<Option<BoxRef>, Mp4Error> {
    for c in Boxes::new(data, audio_children_at(data, entry)..entry.end) {
        let c = c?;
        if &c.box_type == t {
            return Ok(Some(c));
        }
        if &c.box_type == b"wave" {
            for w in Boxes::children(data, &c) {
                let w = w?;
                if &w.box_type == t {
                    return Ok(Some(w));
                }
            }
        }
    }
    Ok(None)
}

/// `avc1.PPCCLL` from an AVCDecoderConfigurationRecord.
fn avc_codec(entry: &[u8; 4], avcc: &[u8]) -> Option<String> {
    let p = avcc.get(1..4)?;
    Some(format!(
        "{}.{:02x}{:02x}{:02x}",
        fourcc(entry),
        p[0],
        p[1],
        p[2]
    ))
}

/// `hvc1.P.C.TL.B0...` from an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 annex E).
fn hevc_codec(entry: &[u8; 4], h: &[u8]) -> Option<String> {
    if h.len() < 13 {
        return None;
    }
    let space = ["", "A", "B", "C"][usize::from(h[1] >> 6)];
    let tier = if h[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = h[1] & 0x1f;
    let compat = u32::from_be_bytes([h[2], h[3], h[4], h[5]]).reverse_bits();
    let level = h[12];
    let mut s = format!(
        "{}.{space}{profile}.{compat:x}.{tier}{level}",
        fourcc(entry)
    );
    let constraints = &h[6..12];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:x}"));
    }
    Some(s)
}

/// `vp09.PP.LL.DD` from a VPCodecConfigurationRecord (full box).
fn vp9_codec(entry: &[u8; 4], v: &[u8]) -> Option<String> {
    let b = v.get(4..7)?;
    let name = if entry == b"vp08" { "vp08" } else { "vp09" };
    Some(format!("{name}.{:02}.{:02}.{:02}", b[0], b[1], b[2] >> 4))
}

/// `av01.P.LLT.DD` from an AV1CodecConfigurationRecord.
fn av1_codec(a: &[u8]) -> Option<String> {
    let b = a.get(1..3)?;
    let profile = b[0] >> 5;
    let level = b[0] & 0x1f;
    let tier = if b[1] & 0x80 != 0 { 'H' } else { 'M' };
    let high = b[1] & 0x40 != 0;
    let twelve = b[1] & 0x20 != 0;
    let depth = match (high, twelve) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// Reads one MPEG-4 descriptor header (tag and variable-length size) at `at`.
fn descriptor(d: &[u8], mut at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    at += 1;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = *d.get(at)?;
        at += 1;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Some((tag, at, len))
}

/// `mp4a.OO[.A]` from an esds box body (version/flags then an ES_Descriptor).
fn esds_codec(esds: &[u8]) -> Option<String> {
    let (tag, mut at, _) = descriptor(esds, 4)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *esds.get(at + 2)?;
    at += 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*esds.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, at, _) = descriptor(esds, at)?;
    if tag != 0x04 {
        return None;
    }
    let oti = *esds.get(at)?;
    if oti != 0x40 {
        return Some(format!("mp4a.{oti:02x}"));
    }
    // objectTypeIndication(1) streamType etc(4) maxBitrate(4) avgBitrate(4) = 13 bytes.
    let Some((0x05, dsi, _)) = descriptor(esds, at + 13) else {
        return Some("mp4a.40.2".into());
    };
    let b0 = *esds.get(dsi)?;
    let mut aot = b0 >> 3;
    if aot == 31 {
        let b1 = *esds.get(dsi + 1)?;
        aot = 32 + (((b0 & 0x07) << 3) | (b1 >> 5));
    }
    Some(format!("mp4a.40.{aot}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_strings_for_other_codecs() {
        let hvcc = [1u8, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        assert_eq!(
            hevc_codec(b"hvc1", &hvcc).as_deref(),
            Some("hvc1.1.6.L93.90")
        );
        assert_eq!(
            vp9_codec(b"vp09", &[1, 0, 0, 0, 0, 31, 0x80]).as_deref(),
            Some("vp09.00.31.08")
        );
        assert_eq!(
            av1_codec(&[0x81, 0x08, 0x0c]).as_deref(),
            Some("av01.0.08M.08")
        );
        // ES_Descriptor -> DecoderConfigDescriptor(0x40) -> DecoderSpecificInfo AOT 5 (HE-AAC)
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0, 1, 0, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0x05, 0x02, 0x28, 0x00,
        ];
        assert_eq!(esds_codec(&esds).as_deref(), Some("mp4a.40.5"));
    }
}
