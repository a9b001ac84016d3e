//! Test helpers shared by the parser's unit tests: the sample file, box builders, and synthetic
//! movies with B-frame video and ffmpeg-style audio for the lead-in and fragment tests.

use super::boxes::{be32, read_box, require_child, Boxes};
use super::InitSegment;

pub(super) const SAMPLE: &[u8] = include_bytes!("../../web/sample.mp4");

pub(super) fn boxed(t: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(t);
    v.extend_from_slice(body);
    v
}

// ---- B-frame lead-in: synthetic movies ----

/// A track of a synthetic movie: every fragment carries the same samples, each given as
/// (duration, size, composition offset), the first fragment after a `lead` sample if there
/// is one; `trun_flags` says which fields the trun has.
pub(super) struct TestTrack {
    pub(super) id: u32,
    pub(super) video: bool,
    pub(super) edit_list: bool,
    pub(super) trun_version: u8,
    pub(super) trun_flags: u32,
    pub(super) lead: Option<(u32, u32, i32)>,
    pub(super) samples: Vec<(u32, u32, i32)>,
}

impl TestTrack {
    /// Four 40-tick frames in decode order I P B B, decoded at 0, 40, 80 and 120 and shown at
    /// 80, 200, 120 and 160: the first frame shows at 80.
    pub(super) fn bframe_video() -> TestTrack {
        TestTrack {
            id: 1,
            video: true,
            edit_list: false,
            trun_version: 0,
            trun_flags: 0x001 | 0x100 | 0x200 | 0x800,
            lead: None,
            samples: vec![(40, 30, 80), (40, 20, 160), (40, 10, 40), (40, 11, 40)],
        }
    }

    /// Audio as ffmpeg writes it next to B-frame video: the first (priming) sample stretched
    /// back to 0, ending when the first frame shows, then 160 ticks of 20-tick frames in
    /// every fragment, in step with the frames shown.
    pub(super) fn audio(id: u32) -> TestTrack {
        TestTrack {
            id,
            video: false,
            edit_list: false,
            trun_version: 0,
            trun_flags: 0x001 | 0x100 | 0x200,
            lead: Some((80, 5, 0)),
            samples: (6..14).map(|size| (20, size, 0)).collect(),
        }
    }

    fn samples_in(&self, fragment: usize) -> Vec<(u32, u32, i32)> {
        let lead = self.lead.filter(|_| fragment == 0);
        lead.into_iter()
            .chain(self.samples.iter().copied())
            .collect()
    }

    /// Where fragment `f` starts on the track's timeline.
    fn start_of(&self, f: usize) -> u64 {
        let span: u64 = self.samples.iter().map(|s| u64::from(s.0)).sum();
        let lead = self.lead.map_or(0, |l| u64::from(l.0));
        if f == 0 {
            0
        } else {
            lead + span * f as u64
        }
    }

    /// The byte every sample of this track is filled with in fragment `f`.
    pub(super) fn fill(&self, f: usize, sample: usize) -> u8 {
        (self.id as u8) << 5 | (f as u8) << 4 | sample as u8
    }
}

pub(super) fn full_box(t: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut v = (flags | u32::from(version) << 24).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    boxed(t, &v)
}

pub(super) fn be(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn test_trak(t: &TestTrack) -> Vec<u8> {
    // tkhd v0: times(8) track_ID; mdhd v0: times(8) timescale(4) duration(4) language(4).
    let mut trak = full_box(b"tkhd", 0, 3, &be(&[0, 0, t.id, 0, 0]));
    if t.edit_list {
        let elst = full_box(b"elst", 0, 0, &be(&[1, 0, 80, 0x0001_0000]));
        trak.extend(boxed(b"edts", &elst));
    }
    let mut mdia = full_box(b"mdhd", 0, 0, &be(&[0, 0, 1000, 0, 0]));
    let handler = if t.video { b"vide" } else { b"soun" };
    let mut hdlr = be(&[0]);
    hdlr.extend_from_slice(handler);
    hdlr.extend_from_slice(&[0; 13]);
    mdia.extend(full_box(b"hdlr", 0, 0, &hdlr));
    trak.extend(boxed(b"mdia", &mdia));
    boxed(b"trak", &trak)
}

/// ftyp, moov and `fragments` moof+mdat pairs of `tracks` (timescale 1000, the first track's
/// data first in each mdat); `large_mdat` writes the mdat headers with a 64-bit size.
pub(super) fn synthetic(tracks: &[TestTrack], fragments: usize, large_mdat: bool) -> Vec<u8> {
    let mut file = boxed(b"ftyp", b"isom\0\0\0\0");
    let mut moov = Vec::new();
    let mut mvex = Vec::new();
    for t in tracks {
        moov.extend(test_trak(t));
        let size = t.samples_in(0)[0].1;
        mvex.extend(full_box(b"trex", 0, 0, &be(&[t.id, 1, 0, size, 0])));
    }
    moov.extend(boxed(b"mvex", &mvex));
    file.extend(boxed(b"moov", &moov));
    for f in 0..fragments {
        let moof = |offsets: &[u32]| {
            let mut moof = full_box(b"mfhd", 0, 0, &be(&[f as u32 + 1]));
            for (t, &offset) in tracks.iter().zip(offsets) {
                let mut traf = full_box(b"tfhd", 0, 0x02_0000, &be(&[t.id]));
                traf.extend(full_box(b"tfdt", 1, 0, &t.start_of(f).to_be_bytes()));
                let samples = t.samples_in(f);
                let mut trun = be(&[samples.len() as u32]);
                if t.trun_flags & 0x001 != 0 {
                    trun.extend(be(&[offset]));
                }
                for &(duration, size, offset) in &samples {
                    let row = [(0x100, duration), (0x200, size), (0x800, offset as u32)];
                    for (flag, value) in row {
                        if t.trun_flags & flag != 0 {
                            trun.extend(be(&[value]));
                        }
                    }
                }
                traf.extend(full_box(b"trun", t.trun_version, t.trun_flags, &trun));
                moof.extend(boxed(b"traf", &traf));
            }
            boxed(b"moof", &moof)
        };
        let header = if large_mdat { 16 } else { 8 };
        let mut offsets = Vec::new();
        let mut at = moof(&vec![0; tracks.len()]).len() + header;
        let mut data = Vec::new();
        for t in tracks {
            offsets.push(at as u32);
            for (i, &(_, size, _)) in t.samples_in(f).iter().enumerate() {
                data.extend(std::iter::repeat(t.fill(f, i)).take(size as usize));
                at += size as usize;
            }
        }
        file.extend(moof(&offsets));
        if large_mdat {
            file.extend_from_slice(&1u32.to_be_bytes());
            file.extend_from_slice(b"mdat");
            file.extend_from_slice(&(data.len() as u64 + 16).to_be_bytes());
            file.extend(data);
        } else {
            file.extend(boxed(b"mdat", &data));
        }
    }
    file
}

/// `file` with every traf child of track `id` replaced by what `f` makes of it (type, bytes).
pub(super) fn map_traf_children(
    file: &[u8],
    id: u32,
    f: impl Fn(&[u8; 4], &[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for b in Boxes::new(file, 0..file.len()).map(Result::unwrap) {
        if &b.box_type != b"moof" {
            out.extend_from_slice(&file[b.range()]);
            continue;
        }
        let mut moof = Vec::new();
        for c in Boxes::children(file, &b).map(Result::unwrap) {
            let tfhd = require_child(file, &c, "tfhd", "traf");
            if !tfhd.is_ok_and(|t| be32(file, t.body + 4) == Some(id)) {
                moof.extend_from_slice(&file[c.range()]);
                continue;
            }
            let mut traf = Vec::new();
            for d in Boxes::children(file, &c).map(Result::unwrap) {
                traf.extend(f(&d.box_type, &file[d.range()]));
            }
            moof.extend(boxed(b"traf", &traf));
        }
        out.extend(boxed(b"moof", &moof));
    }
    out
}

/// The sample's ftyp and moov boxes, each as its own slice, as a live publisher sends them.
pub(super) fn sample_ftyp_moov() -> (&'static [u8], &'static [u8]) {
    let ftyp = read_box(SAMPLE, 0, SAMPLE.len()).unwrap();
    let moov = read_box(SAMPLE, ftyp.end, SAMPLE.len()).unwrap();
    assert_eq!((&ftyp.box_type, &moov.box_type), (b"ftyp", b"moov"));
    (&SAMPLE[ftyp.range()], &SAMPLE[moov.range()])
}

/// The sample's init segment parsed on its own.
pub(super) fn sample_init() -> InitSegment {
    let (ftyp, moov) = sample_ftyp_moov();
    InitSegment::parse(Some(ftyp), moov).unwrap()
}

/// An `styp` box as ffmpeg's DASH/CMAF muxers write before each fragment.
pub(super) fn styp() -> Vec<u8> {
    boxed(b"styp", b"msdh\0\0\0\0msdhmsix")
}
