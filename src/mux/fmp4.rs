//! Writes the fragmented MP4 the server plays: an init segment (ftyp + moov with one `trak` per
//! track, `avc1`/`hvc1`/`mp4a`/`Opus` sample entries and an `mvex`) and fragments (moof with one
//! `traf` per track, sample durations, sizes, flags and composition offsets in `trun`, then one
//! mdat). Pure byte building; what goes in was already checked by the muxer.

/// A sample ready to be written: its bytes are in the fragment's mdat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRow {
    pub duration: u32,
    pub size: u32,
    pub keyframe: bool,
    /// Presentation minus decode time, in the track's timescale.
    pub cto: i32,
}

/// One track's part of a fragment.
#[derive(Debug)]
pub struct TrafSpec<'a> {
    pub track_id: u32,
    pub decode_time: u64,
    pub rows: &'a [SampleRow],
    /// Whether to write per-sample flags and composition offsets (video).
    pub video: bool,
}

/// The sample entry of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `avc1`/`hvc1` with its configuration box (`avcC`/`hvcC`).
    Visual {
        fourcc: [u8; 4],
        config_box: [u8; 4],
        config: Vec<u8>,
        width: u16,
        height: u16,
    },
    /// `mp4a` with an esds around the AudioSpecificConfig.
    Aac {
        asc: Vec<u8>,
        channels: u16,
        sample_rate: u32,
    },
    /// `Opus` with its `dOps` (the body as [`super::opus::OpusHead::dops`] writes it).
    Opus { dops: Vec<u8>, channels: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSpec {
    pub id: u32,
    pub timescale: u32,
    pub entry: Entry,
}

/// Writes a box: `f` fills its body, the size is patched in afterwards.
pub fn mp4_box(out: &mut Vec<u8>, kind: &[u8; 4], f: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    f(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

fn full_box(out: &mut Vec<u8>, kind: &[u8; 4], vf: u32, f: impl FnOnce(&mut Vec<u8>)) {
    mp4_box(out, kind, |o| {
        o.extend_from_slice(&vf.to_be_bytes());
        f(o)
    });
}

fn u16be(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u32be(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The ftyp box of every init segment.
pub fn ftyp() -> Vec<u8> {
    let mut o = Vec::new();
    mp4_box(&mut o, b"ftyp", |o| {
        o.extend_from_slice(b"isom");
        u32be(o, 0x200);
        o.extend_from_slice(b"isomiso6iso2avc1mp41");
    });
    o
}

/// The moov box for `tracks`.
pub fn moov(tracks: &[TrackSpec]) -> Vec<u8> {
    let mut o = Vec::new();
    mp4_box(&mut o, b"moov", |o| {
        full_box(o, b"mvhd", 0, |o| {
            u32be(o, 0);
            u32be(o, 0);
            u32be(o, 1000);
            u32be(o, 0);
            u32be(o, 0x0001_0000);
            u16be(o, 0x0100);
            o.extend_from_slice(&[0; 10]);
            MATRIX.iter().for_each(|&m| u32be(o, m));
            o.extend_from_slice(&[0; 24]);
            u32be(o, tracks.len() as u32 + 1);
        });
        for t in tracks {
            trak(o, t);
        }
        mp4_box(o, b"mvex", |o| {
            for t in tracks {
                full_box(o, b"trex", 0, |o| {
                    u32be(o, t.id);
                    u32be(o, 1);
                    u32be(o, 0);
                    u32be(o, 0);
                    u32be(o, 0);
                });
            }
        });
    });
    o
}

fn trak(o: &mut Vec<u8>, t: &TrackSpec) {
    let (video, width, height) = match &t.entry {
        Entry::Visual { width, height, .. } => (true, *width, *height),
        Entry::Aac { .. } | Entry::Opus { .. } => (false, 0, 0),
    };
    mp4_box(o, b"trak", |o| {
        full_box(o, b"tkhd", 3, |o| {
            u32be(o, 0);
            u32be(o, 0);
            u32be(o, t.id);
            u32be(o, 0);
            u32be(o, 0);
            o.extend_from_slice(&[0; 8]);
            u16be(o, 0);
            u16be(o, 0);
            u16be(o, if video { 0 } else { 0x0100 });
            u16be(o, 0);
            MATRIX.iter().for_each(|&m| u32be(o, m));
            u32be(o, u32::from(width) << 16);
            u32be(o, u32::from(height) << 16);
        });
        mp4_box(o, b"mdia", |o| {
            full_box(o, b"mdhd", 0, |o| {
                u32be(o, 0);
                u32be(o, 0);
                u32be(o, t.timescale);
                u32be(o, 0);
                u16be(o, 0x55c4);
                u16be(o, 0);
            });
            full_box(o, b"hdlr", 0, |o| {
                u32be(o, 0);
                o.extend_from_slice(if video { b"vide" } else { b"soun" });
                o.extend_from_slice(&[0; 12]);
                o.extend_from_slice(if video {
                    b"VideoHandler\0"
                } else {
                    b"SoundHandler\0"
                });
            });
            mp4_box(o, b"minf", |o| {
                if video {
                    full_box(o, b"vmhd", 1, |o| o.extend_from_slice(&[0; 8]));
                } else {
                    full_box(o, b"smhd", 0, |o| o.extend_from_slice(&[0; 4]));
                }
                mp4_box(o, b"dinf", |o| {
                    full_box(o, b"dref", 0, |o| {
                        u32be(o, 1);
                        full_box(o, b"url ", 1, |_| {});
                    });
                });
                mp4_box(o, b"stbl", |o| {
                    full_box(o, b"stsd", 0, |o| {
                        u32be(o, 1);
                        sample_entry(o, t);
                    });
                    full_box(o, b"stts", 0, |o| u32be(o, 0));
                    full_box(o, b"stsc", 0, |o| u32be(o, 0));
                    full_box(o, b"stsz", 0, |o| o.extend_from_slice(&[0; 8]));
                    full_box(o, b"stco", 0, |o| u32be(o, 0));
                });
            });
        });
    });
}

fn sample_entry(o: &mut Vec<u8>, t: &TrackSpec) {
    match &t.entry {
        Entry::Visual {
            fourcc,
            config_box,
            config,
            width,
            height,
        } => mp4_box(o, fourcc, |o| {
            o.extend_from_slice(&[0; 6]);
            u16be(o, 1);
            o.extend_from_slice(&[0; 16]);
            u16be(o, *width);
            u16be(o, *height);
            u32be(o, 0x0048_0000);
            u32be(o, 0x0048_0000);
            u32be(o, 0);
            u16be(o, 1);
            o.extend_from_slice(&[0; 32]);
            u16be(o, 0x18);
            u16be(o, 0xffff);
            mp4_box(o, config_box, |o| o.extend_from_slice(config));
        }),
        Entry::Aac {
            asc,
            channels,
            sample_rate,
        } => mp4_box(o, b"mp4a", |o| {
            o.extend_from_slice(&[0; 6]);
            u16be(o, 1);
            o.extend_from_slice(&[0; 8]);
            u16be(o, *channels);
            u16be(o, 16);
            u32be(o, 0);
            u32be(o, sample_rate.min(&0xffff) << 16);
            full_box(o, b"esds", 0, |o| {
                let asc_len = asc.len().min(0x7f) as u8;
                // ES_Descriptor(3) { ES_ID, flags, DecoderConfigDescriptor(4) { oti 0x40,
                // audio stream, buffer/bitrates, DecoderSpecificInfo(5) { asc } },
                // SLConfigDescriptor(6) { predefined 2 } }
                o.extend_from_slice(&[3, 3 + 2 + 13 + 2 + asc_len + 3]);
                u16be(o, t.id as u16);
                o.push(0);
                o.extend_from_slice(&[4, 13 + 2 + asc_len, 0x40, 0x15, 0, 0, 0]);
                u32be(o, 0);
                u32be(o, 0);
                o.extend_from_slice(&[5, asc_len]);
                o.extend_from_slice(&asc[..usize::from(asc_len)]);
                o.extend_from_slice(&[6, 1, 2]);
            });
        }),
        Entry::Opus { dops, channels } => mp4_box(o, b"Opus", |o| {
            o.extend_from_slice(&[0; 6]);
            u16be(o, 1);
            o.extend_from_slice(&[0; 8]);
            u16be(o, *channels);
            u16be(o, 16);
            u32be(o, 0);
            u32be(o, super::opus::OPUS_HZ << 16);
            mp4_box(o, b"dOps", |o| o.extend_from_slice(dops));
        }),
    }
}

const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;
const KEY_FLAGS: u32 = 0x0200_0000;
const NON_KEY_FLAGS: u32 = 0x0101_0000;

/// A whole fragment: moof (sequence `seq`, one traf per non-empty spec) and the mdat holding
/// `data`, in which each traf's samples follow the previous traf's.
pub fn fragment(seq: u32, trafs: &[TrafSpec<'_>], data: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(data.len() + 256);
    let mut offset_fields = Vec::new();
    mp4_box(&mut o, b"moof", |o| {
        full_box(o, b"mfhd", 0, |o| u32be(o, seq));
        for t in trafs.iter().filter(|t| !t.rows.is_empty()) {
            mp4_box(o, b"traf", |o| {
                full_box(o, b"tfhd", 0x02_0000, |o| u32be(o, t.track_id));
                full_box(o, b"tfdt", 0x0100_0000, |o| {
                    o.extend_from_slice(&t.decode_time.to_be_bytes())
                });
                let flags = TRUN_DATA_OFFSET
                    | TRUN_DURATION
                    | TRUN_SIZE
                    | if t.video { TRUN_FLAGS | TRUN_CTO } else { 0 };
                let version = if t.video { 1u32 << 24 } else { 0 };
                full_box(o, b"trun", version | flags, |o| {
                    u32be(o, t.rows.len() as u32);
                    offset_fields.push(o.len());
                    u32be(o, 0);
                    for r in t.rows {
                        u32be(o, r.duration);
                        u32be(o, r.size);
                        if t.video {
                            u32be(o, if r.keyframe { KEY_FLAGS } else { NON_KEY_FLAGS });
                            o.extend_from_slice(&r.cto.to_be_bytes());
                        }
                    }
                });
            });
        }
    });
    let mut at = o.len() as u32 + 8;
    let non_empty = trafs.iter().filter(|t| !t.rows.is_empty());
    for (field, t) in offset_fields.into_iter().zip(non_empty) {
        o[field..field + 4].copy_from_slice(&at.to_be_bytes());
        at += t.rows.iter().map(|r| r.size).sum::<u32>();
    }
    mp4_box(&mut o, b"mdat", |o| o.extend_from_slice(data));
    o
}
