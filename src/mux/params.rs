//! Parameter sets: what the muxer reads from H.264 SPS and H.265 VPS/SPS NAL units (picture size,
//! profile, tier, level, chroma format, bit depth) and the decoder configuration records it
//! builds from them (`avcC`, `hvcC`), as ISO/IEC 14496-15 lays them out. Pure and defensive: a
//! parameter set that ends early or holds absurd values is an error naming what, never a panic.

use std::fmt;

/// Largest parameter set kept (SPS/PPS/VPS are tens of bytes; 64 KiB is the record's own cap).
pub const MAX_PARAM_SET: usize = 4096;

/// Why a parameter set was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The RBSP of a NAL unit: its payload with the emulation-prevention bytes (`00 00 03`) removed.
pub fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads bits, most significant first, and Exp-Golomb codes.
pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8], what: &'static str) -> Bits<'a> {
        Bits { data, pos: 0, what }
    }

    fn short(&self) -> ParamError {
        ParamError(format!("{} ends early (at bit {})", self.what, self.pos))
    }

    pub fn bit(&mut self) -> Result<u32, ParamError> {
        let byte = *self.data.get(self.pos / 8).ok_or_else(|| self.short())?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    pub fn bits(&mut self, n: u32) -> Result<u32, ParamError> {
        debug_assert!(n <= 32, "at most 32 bits at once");
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), ParamError> {
        if self.pos + n > self.data.len() * 8 {
            return Err(self.short());
        }
        self.pos += n;
        Ok(())
    }

    /// ue(v); values over 2^31 are refused (no field the muxer reads is that large).
    pub fn ue(&mut self) -> Result<u32, ParamError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(ParamError(format!(
                    "{} has an Exp-Golomb code over 31 bits (at bit {})",
                    self.what, self.pos
                )));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    pub fn se(&mut self) -> Result<i64, ParamError> {
        let k = i64::from(self.ue()?);
        Ok(if k & 1 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// What an H.264 SPS says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvcSps {
    pub profile: u8,
    pub constraints: u8,
    pub level: u8,
    pub chroma_format: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    pub width: u32,
    pub height: u32,
    /// The frame duration in 90 kHz ticks from the VUI timing info, when the SPS has it.
    pub frame_ticks: Option<u32>,
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), ParamError> {
    if cond {
        Ok(())
    } else {
        Err(ParamError(what()))
    }
}

/// The cropped picture size, refused when the cropping is more than the picture or the size is
/// not one a decoder could have (0, or over 16384).
fn picture_size(
    codec: &str,
    width: Option<u64>,
    height: Option<u64>,
) -> Result<(u64, u64), ParamError> {
    let (Some(width), Some(height)) = (width, height) else {
        return Err(ParamError(format!(
            "the {codec} SPS crops more than the picture"
        )));
    };
    check(
        width <= 16384 && height <= 16384 && width > 0 && height > 0,
        || format!("the {codec} SPS says the picture is {width}x{height}"),
    )?;
    Ok((width, height))
}

/// Parses an H.264 SPS NAL unit (header byte included).
pub fn parse_avc_sps(nal: &[u8]) -> Result<AvcSps, ParamError> {
    check(nal.len() >= 4, || {
        format!("an H.264 SPS of {} bytes", nal.len())
    })?;
    let r = rbsp(&nal[1..]);
    let mut b = Bits::new(&r, "the H.264 SPS");
    let profile = b.bits(8)? as u8;
    let constraints = b.bits(8)? as u8;
    let level = b.bits(8)? as u8;
    b.ue()?;
    let (mut chroma_format, mut depth_l, mut depth_c) = (1, 8, 8);
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = b.ue()?;
        check(chroma_format <= 3, || {
            format!("the H.264 SPS has chroma_format_idc {chroma_format}")
        })?;
        if chroma_format == 3 {
            b.bit()?;
        }
        depth_l = 8 + b.ue()?.min(8);
        depth_c = 8 + b.ue()?.min(8);
        b.bit()?;
        if b.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + b.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    b.ue()?;
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            check(n <= 255, || {
                format!("the H.264 SPS has {n} reference frames in its POC cycle")
            })?;
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?;
    b.bit()?;
    let w_mbs = u64::from(b.ue()?) + 1;
    let h_units = u64::from(b.ue()?) + 1;
    let frame_mbs_only = u64::from(b.bit()?);
    if frame_mbs_only == 0 {
        b.bit()?;
    }
    b.bit()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? == 1 {
        cl = b.ue()?.into();
        cr = b.ue()?.into();
        ct = b.ue()?.into();
        cb = b.ue()?.into();
    }
    let (unit_x, unit_y) = match chroma_format {
        0 => (1, 2 - frame_mbs_only),
        1 => (2, 2 * (2 - frame_mbs_only)),
        2 => (2, 2 - frame_mbs_only),
        _ => (1, 2 - frame_mbs_only),
    };
    let (width, height) = picture_size(
        "H.264",
        (w_mbs * 16).checked_sub(unit_x * (cl + cr)),
        ((2 - frame_mbs_only) * h_units * 16).checked_sub(unit_y * (ct + cb)),
    )?;
    // An SPS cut short after the picture size still describes the picture: the VUI is optional.
    let frame_ticks = avc_vui_frame_ticks(&mut b).ok().flatten();
    Ok(AvcSps {
        profile,
        constraints,
        level,
        chroma_format,
        bit_depth_luma: depth_l,
        bit_depth_chroma: depth_c,
        width: width as u32,
        height: height as u32,
        frame_ticks,
    })
}

/// The frame duration (90 kHz) from an H.264 VUI's timing info, read from just after the
/// frame cropping fields.
fn avc_vui_frame_ticks(b: &mut Bits<'_>) -> Result<Option<u32>, ParamError> {
    if b.bit()? == 0 {
        return Ok(None);
    }
    if b.bit()? == 1 && b.bits(8)? == 255 {
        b.skip(32)?;
    }
    if b.bit()? == 1 {
        b.bit()?;
    }
    if b.bit()? == 1 {
        b.skip(4)?;
        if b.bit()? == 1 {
            b.skip(24)?;
        }
    }
    if b.bit()? == 1 {
        b.ue()?;
        b.ue()?;
    }
    if b.bit()? == 0 {
        return Ok(None);
    }
    let units = u64::from(b.bits(32)?);
    let scale = u64::from(b.bits(32)?);
    if units == 0 || scale == 0 {
        return Ok(None);
    }
    // A frame is two ticks of the field clock.
    let ticks = 90_000 * 2 * units / scale;
    Ok(u32::try_from(ticks)
        .ok()
        .filter(|&t| (90..=90_000).contains(&t)))
}

/// The AVCDecoderConfigurationRecord for `sps` and `pps` (one of each, as encoders send them).
pub fn avcc(sps_nal: &[u8], sps: &AvcSps, pps: &[&[u8]]) -> Vec<u8> {
    let mut r = vec![1, sps.profile, sps.constraints, sps.level, 0xff, 0xe1];
    r.extend_from_slice(&(sps_nal.len() as u16).to_be_bytes());
    r.extend_from_slice(sps_nal);
    r.push(pps.len() as u8);
    for p in pps {
        r.extend_from_slice(&(p.len() as u16).to_be_bytes());
        r.extend_from_slice(p);
    }
    if matches!(sps.profile, 100 | 110 | 122 | 144) {
        r.push(0xfc | sps.chroma_format as u8);
        r.push(0xf8 | (sps.bit_depth_luma - 8) as u8);
        r.push(0xf8 | (sps.bit_depth_chroma - 8) as u8);
        r.push(0);
    }
    r
}

/// What an H.265 SPS says: the general profile_tier_level bytes as they are, and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    /// general_profile_space(2) tier(1) profile_idc(5), compatibility flags(32),
    /// constraint flags(48), level_idc(8): the 12 bytes the hvcC copies.
    pub ptl: [u8; 12],
    pub max_sub_layers: u8,
    pub temporal_id_nested: bool,
    pub chroma_format: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    pub width: u32,
    pub height: u32,
}

/// Parses an H.265 SPS NAL unit (two header bytes included).
pub fn parse_hevc_sps(nal: &[u8]) -> Result<HevcSps, ParamError> {
    check(nal.len() >= 16, || {
        format!("an H.265 SPS of {} bytes", nal.len())
    })?;
    let r = rbsp(&nal[2..]);
    let mut b = Bits::new(&r, "the H.265 SPS");
    b.bits(4)?;
    let max_sub_layers_minus1 = b.bits(3)?;
    let nested = b.bit()? == 1;
    let mut ptl = [0u8; 12];
    for p in &mut ptl {
        *p = b.bits(8)? as u8;
    }
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((b.bit()?, b.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        b.skip(2 * (8 - max_sub_layers_minus1 as usize))?;
    }
    for (profile, level) in present {
        if profile == 1 {
            b.skip(88)?;
        }
        if level == 1 {
            b.skip(8)?;
        }
    }
    b.ue()?;
    let chroma_format = b.ue()?;
    check(chroma_format <= 3, || {
        format!("the H.265 SPS has chroma_format_idc {chroma_format}")
    })?;
    if chroma_format == 3 {
        b.bit()?;
    }
    let w = u64::from(b.ue()?);
    let h = u64::from(b.ue()?);
    let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
    if b.bit()? == 1 {
        cl = b.ue()?.into();
        cr = b.ue()?.into();
        ct = b.ue()?.into();
        cb = b.ue()?.into();
    }
    let (sub_w, sub_h) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (width, height) = picture_size(
        "H.265",
        w.checked_sub(sub_w * (cl + cr)),
        h.checked_sub(sub_h * (ct + cb)),
    )?;
    let depth_l = 8 + b.ue()?.min(8);
    let depth_c = 8 + b.ue()?.min(8);
    Ok(HevcSps {
        ptl,
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nested: nested,
        chroma_format,
        bit_depth_luma: depth_l,
        bit_depth_chroma: depth_c,
        width: width as u32,
        height: height as u32,
    })
}

/// The HEVCDecoderConfigurationRecord for the parameter sets (VPS, SPS, PPS, each complete).
pub fn hvcc(sps: &HevcSps, vps: &[&[u8]], sps_nals: &[&[u8]], pps: &[&[u8]]) -> Vec<u8> {
    let mut r = vec![1];
    r.extend_from_slice(&sps.ptl);
    r.extend_from_slice(&[
        0xf0,
        0x00,
        0xfc,
        0xfc | sps.chroma_format as u8,
        0xf8 | (sps.bit_depth_luma - 8) as u8,
        0xf8 | (sps.bit_depth_chroma - 8) as u8,
        0,
        0,
        (sps.max_sub_layers << 3) | (u8::from(sps.temporal_id_nested) << 2) | 3,
        3,
    ]);
    for (kind, nals) in [(32u8, vps), (33, sps_nals), (34, pps)] {
        r.push(0x80 | kind);
        r.extend_from_slice(&(nals.len() as u16).to_be_bytes());
        for n in nals {
            r.extend_from_slice(&(n.len() as u16).to_be_bytes());
            r.extend_from_slice(n);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]), [0, 0, 1, 0, 0, 0, 3]);
    }

    #[test]
    fn exp_golomb() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut b = Bits::new(&data, "test");
        assert_eq!(
            (b.ue().unwrap(), b.ue().unwrap(), b.ue().unwrap()),
            (0, 1, 2)
        );
        assert_eq!(b.ue().unwrap(), 3);
        assert!(b.ue().is_err(), "runs out");
    }

    #[test]
    fn x264_sps_640x360() {
        // x264 High profile 640x360 (cropped from 368).
        let sps = [
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
        ];
        let s = parse_avc_sps(&sps).unwrap();
        assert_eq!((s.profile, s.level, s.width, s.height), (100, 30, 640, 360));
        assert!(parse_avc_sps(&sps[..6]).is_err());
    }
}
