//! Just enough MP4 box parsing for the peer: split a fragmented MP4 into its init segment and its
//! fragments (moof + mdat), with each fragment's duration taken from its first track run. It does
//! not validate codecs or rewrite tfdt (ssecast's own `mp4` module does that).

use std::collections::HashMap;

/// One top-level or child box: its type and byte ranges within the file.
#[derive(Clone, Copy)]
struct BoxRef {
    kind: [u8; 4],
    start: usize,
    payload: usize,
    end: usize,
}

pub struct Fragment {
    pub data: Vec<u8>,
    pub seconds: f64,
}

pub struct Video {
    pub init: Vec<u8>,
    pub fragments: Vec<Fragment>,
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn boxes(d: &[u8], start: usize, end: usize) -> Vec<BoxRef> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos + 8 <= end {
        let Some(size32) = be32(d, pos) else { break };
        let kind = [d[pos + 4], d[pos + 5], d[pos + 6], d[pos + 7]];
        let (size, header) = match size32 {
            1 => match d.get(pos + 8..pos + 16) {
                Some(b) => (u64::from_be_bytes(b.try_into().unwrap()) as usize, 16),
                None => break,
            },
            0 => (end - pos, 8),
            n => (n as usize, 8),
        };
        if size < header || pos + size > end {
            break;
        }
        out.push(BoxRef {
            kind,
            start: pos,
            payload: pos + header,
            end: pos + size,
        });
        pos += size;
    }
    out
}

fn child(d: &[u8], parent: BoxRef, kind: &[u8; 4]) -> Option<BoxRef> {
    boxes(d, parent.payload, parent.end)
        .into_iter()
        .find(|b| &b.kind == kind)
}

struct TrackInfo {
    timescales: HashMap<u32, u32>,
    trex_durations: HashMap<u32, u32>,
}

fn track_info(d: &[u8], moov: BoxRef) -> TrackInfo {
    let mut info = TrackInfo {
        timescales: HashMap::new(),
        trex_durations: HashMap::new(),
    };
    for b in boxes(d, moov.payload, moov.end) {
        match &b.kind {
            b"trak" => {
                let tkhd = child(d, b, b"tkhd");
                let mdhd = child(d, b, b"mdia").and_then(|m| child(d, m, b"mdhd"));
                let (Some(tkhd), Some(mdhd)) = (tkhd, mdhd) else {
                    continue;
                };
                let id_at = tkhd.payload + if d[tkhd.payload] == 1 { 20 } else { 12 };
                let ts_at = mdhd.payload + if d[mdhd.payload] == 1 { 20 } else { 12 };
                if let (Some(id), Some(ts)) = (be32(d, id_at), be32(d, ts_at)) {
                    info.timescales.insert(id, ts);
                }
            }
            b"mvex" => {
                for t in boxes(d, b.payload, b.end) {
                    if &t.kind == b"trex" {
                        if let (Some(id), Some(dur)) =
                            (be32(d, t.payload + 4), be32(d, t.payload + 12))
                        {
                            info.trex_durations.insert(id, dur);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// Duration of the fragment's first track run (the video track in ffmpeg's output).
fn fragment_seconds(d: &[u8], moof: BoxRef, info: &TrackInfo) -> Option<f64> {
    let traf = child(d, moof, b"traf")?;
    let tfhd = child(d, traf, b"tfhd")?;
    let flags = be32(d, tfhd.payload)? & 0xff_ffff;
    let track_id = be32(d, tfhd.payload + 4)?;
    let mut off = tfhd.payload + 8;
    if flags & 0x01 != 0 {
        off += 8;
    }
    if flags & 0x02 != 0 {
        off += 4;
    }
    let mut default = info.trex_durations.get(&track_id).copied().unwrap_or(0);
    if flags & 0x08 != 0 {
        default = be32(d, off)?;
    }
    let mut total: u64 = 0;
    for trun in boxes(d, traf.payload, traf.end) {
        if &trun.kind != b"trun" {
            continue;
        }
        let tflags = be32(d, trun.payload)? & 0xff_ffff;
        let count = be32(d, trun.payload + 4)?;
        let mut p = trun.payload + 8;
        if tflags & 0x01 != 0 {
            p += 4;
        }
        if tflags & 0x04 != 0 {
            p += 4;
        }
        let per_sample = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&bit| tflags & bit != 0)
            .count()
            * 4;
        for _ in 0..count {
            total += u64::from(if tflags & 0x100 != 0 {
                be32(d, p)?
            } else {
                default
            });
            p += per_sample;
        }
    }
    let timescale = *info.timescales.get(&track_id)?;
    (timescale != 0 && total != 0).then(|| total as f64 / f64::from(timescale))
}

pub fn split(d: &[u8]) -> Result<Video, String> {
    let top = boxes(d, 0, d.len());
    let moov = top.iter().find(|b| &b.kind == b"moov").copied();
    let first_moof = top.iter().find(|b| &b.kind == b"moof").copied();
    let (Some(moov), Some(first_moof)) = (moov, first_moof) else {
        return Err("not a fragmented MP4 (need moov + moof); remux with \
                    ffmpeg -movflags frag_keyframe+empty_moov+default_base_moof"
            .into());
    };
    let info = track_info(d, moov);
    let mut ranges: Vec<(BoxRef, usize)> = Vec::new();
    let mut current: Option<(BoxRef, usize)> = None;
    for b in top {
        match &b.kind {
            b"moof" => {
                ranges.extend(current.take());
                current = Some((b, b.end));
            }
            b"mdat" => {
                if let Some(c) = current.as_mut() {
                    c.1 = b.end;
                }
            }
            b"mfra" | b"moov" => ranges.extend(current.take()),
            _ => {}
        }
    }
    ranges.extend(current);
    let fragments = ranges
        .into_iter()
        .map(|(moof, end)| Fragment {
            data: d[moof.start..end].to_vec(),
            seconds: fragment_seconds(d, moof, &info).unwrap_or(1.0),
        })
        .collect();
    Ok(Video {
        init: d[..first_moof.start].to_vec(),
        fragments,
    })
}
