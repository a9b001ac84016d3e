//! A plain (non-fragmented) file's sample tables: one track's `stbl` (`stts`, `ctts`, `stsc`,
//! `stsz`/`stz2`, `stco`/`co64`, `stss`) and its edit list read into compact per-sample arrays
//! ([`SampleTable`], about 20 bytes a sample), with every count checked against its box and
//! against the other tables, every sample checked to lie inside the file, and the limits below.
//! Cutting the samples into fragments and writing them is `plain`'s job.

use super::boxes::{be32, be64, field, find_child, BoxRef};
use super::Mp4Error;

/// Most samples one track may have (about 77 hours of 60 fps video; 100 hours of 48 kHz AAC).
pub(super) const MAX_SAMPLES: u32 = 1 << 24;

/// One track's samples in decode order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SampleTable {
    pub(super) sizes: Vec<u32>,
    /// Absolute byte offset of each sample in the file. INVARIANT: `offsets[i] + sizes[i]` is at
    /// most the length of the buffer the table was read from.
    pub(super) offsets: Vec<u64>,
    /// Decode durations, in the track's timescale; never 0.
    pub(super) durations: Vec<u32>,
    /// Composition offsets (`ctts`); empty when the track has none.
    pub(super) ctos: Vec<i32>,
    /// Sync samples (`stss`), 0-based and increasing; `None` when every sample is one.
    pub(super) sync: Option<Vec<u32>>,
    /// Ticks the edit list moves presentation by (an initial empty edit, less the first edit's
    /// media time), added to every composition offset.
    pub(super) shift: i64,
    /// Sum of `sizes`.
    pub(super) bytes: u64,
}

impl SampleTable {
    pub(super) fn len(&self) -> u32 {
        // INVARIANT: at most MAX_SAMPLES samples.
        self.sizes.len() as u32
    }

    pub(super) fn is_sync(&self, i: u32) -> bool {
        self.sync
            .as_ref()
            .map_or(true, |s| s.binary_search(&i).is_ok())
    }

    /// Presentation time minus decode time of sample `i`, edit list included.
    pub(super) fn presentation_offset(&self, i: u32) -> i64 {
        let cto = self.ctos.get(i as usize).copied().unwrap_or(0);
        i64::from(cto).saturating_add(self.shift)
    }
}

/// A table box: its `count` entries of `entry_len` bytes start at `at`. INVARIANT: they fit in
/// the box.
struct Table {
    b: BoxRef,
    count: u32,
    at: usize,
    entry_len: usize,
}

impl Table {
    /// Reads the entry count `header` bytes into `b`'s body (after version/flags and any other
    /// fields); the entries follow it.
    fn read(
        data: &[u8],
        b: BoxRef,
        header: usize,
        entry_len: usize,
        what: &'static str,
    ) -> Result<Table, Mp4Error> {
        let count = field(be32(data, b.body + header), b.start, what)?;
        let at = b.body + header + 4;
        let fits = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(entry_len))
            .and_then(|n| n.checked_add(at))
            .is_some_and(|end| end <= b.end);
        if !fits {
            return Err(Mp4Error::Truncated {
                offset: b.start,
                what,
            });
        }
        Ok(Table {
            b,
            count,
            at,
            entry_len,
        })
    }

    /// Field `k` (4 bytes) of entry `i`.
    fn u32(&self, data: &[u8], i: u32, k: usize) -> u32 {
        let at = self.at + i as usize * self.entry_len + 4 * k;
        // INVARIANT: the entries fit in the box (checked by `read`), so this is always Some.
        be32(data, at).unwrap_or(0)
    }
}

/// What the parser knows about a track before its sample table: for error messages and the edit
/// list's units.
pub(super) struct TrackInfo {
    pub(super) id: u32,
    pub(super) timescale: u32,
    pub(super) movie_timescale: u32,
}

fn need(
    data: &[u8],
    parent: &BoxRef,
    t: &'static str,
    parent_name: &'static str,
) -> Result<BoxRef, Mp4Error> {
    super::boxes::require_child(data, parent, t, parent_name)
}

/// Reads the sample table `stbl` of the track `trak`.
pub(super) fn read_sample_table(
    data: &[u8],
    trak: &BoxRef,
    stbl: &BoxRef,
    info: &TrackInfo,
) -> Result<SampleTable, Mp4Error> {
    let track_id = info.id;
    let sizes = read_sizes(data, stbl, track_id)?;
    let count = sizes.len() as u32;
    let stts = need(data, stbl, "stts", "stbl")?;
    let durations = read_durations(data, stts, count, track_id)?;
    let ctos = match find_child(data, stbl, b"ctts")? {
        Some(ctts) => read_ctos(data, ctts, count, track_id)?,
        None => Vec::new(),
    };
    let sync = match find_child(data, stbl, b"stss")? {
        Some(stss) => Some(read_sync(data, stss, count, track_id)?),
        None => None,
    };
    let offsets = read_offsets(data, stbl, &sizes, track_id)?;
    let bytes = sizes.iter().map(|&s| u64::from(s)).sum();
    Ok(SampleTable {
        sizes,
        offsets,
        durations,
        ctos,
        sync,
        shift: edit_shift(data, trak, info)?,
        bytes,
    })
}

fn too_many(b: &BoxRef, track_id: u32, count: u64) -> Mp4Error {
    Mp4Error::TooManySamples {
        offset: b.start,
        track_id,
        count,
    }
}

fn mismatch(b: &BoxRef, track_id: u32, table: &'static str, says: u64, samples: u32) -> Mp4Error {
    Mp4Error::TableMismatch {
        offset: b.start,
        track_id,
        table,
        says,
        samples,
    }
}

/// `stsz` or `stz2`: every sample's size. Their sum may not exceed the file, which also bounds
/// what a constant size with a huge count would allocate.
fn read_sizes(data: &[u8], stbl: &BoxRef, track_id: u32) -> Result<Vec<u32>, Mp4Error> {
    let file_len = data.len() as u64;
    let exceeds = |b: &BoxRef| Mp4Error::SamplesExceedFile {
        offset: b.start,
        track_id,
    };
    if let Some(b) = find_child(data, stbl, b"stsz")? {
        let constant = field(be32(data, b.body + 4), b.start, "the stsz box")?;
        if constant != 0 {
            let count = field(be32(data, b.body + 8), b.start, "the stsz box")?;
            if count > MAX_SAMPLES {
                return Err(too_many(&b, track_id, count.into()));
            }
            if u64::from(count) * u64::from(constant) > file_len {
                return Err(exceeds(&b));
            }
            return Ok(vec![constant; count as usize]);
        }
        let t = Table::read(data, b, 8, 4, "the stsz box")?;
        if t.count > MAX_SAMPLES {
            return Err(too_many(&b, track_id, t.count.into()));
        }
        let sizes: Vec<u32> = (0..t.count).map(|i| t.u32(data, i, 0)).collect();
        if sizes.iter().map(|&s| u64::from(s)).sum::<u64>() > file_len {
            return Err(exceeds(&b));
        }
        return Ok(sizes);
    }
    let Some(b) = find_child(data, stbl, b"stz2")? else {
        return Err(Mp4Error::MissingBox {
            offset: stbl.start,
            parent: "stbl",
            child: "stsz",
        });
    };
    // version/flags(4) reserved(3) field_size(1) sample_count(4), then the packed sizes.
    let field_size = field(data.get(b.body + 7).copied(), b.start, "the stz2 box")?;
    let count = field(be32(data, b.body + 8), b.start, "the stz2 box")?;
    if count > MAX_SAMPLES {
        return Err(too_many(&b, track_id, count.into()));
    }
    let bits = match field_size {
        4 | 8 | 16 => u64::from(field_size),
        _ => {
            return Err(Mp4Error::Unsupported {
                offset: b.start,
                what: "an 'stz2' field size other than 4, 8 or 16",
            })
        }
    };
    let at = b.body + 12;
    let table_len = (u64::from(count) * bits).div_ceil(8);
    if table_len > (b.end - at) as u64 {
        return Err(Mp4Error::Truncated {
            offset: b.start,
            what: "the stz2 box",
        });
    }
    // INVARIANT: every byte read below lies in the table just checked.
    let sizes: Vec<u32> = (0..count as usize)
        .map(|i| match bits {
            4 => {
                let byte = data[at + i / 2];
                u32::from(if i % 2 == 0 { byte >> 4 } else { byte & 0x0f })
            }
            8 => u32::from(data[at + i]),
            _ => u32::from(u16::from_be_bytes([data[at + 2 * i], data[at + 2 * i + 1]])),
        })
        .collect();
    if sizes.iter().map(|&s| u64::from(s)).sum::<u64>() > file_len {
        return Err(exceeds(&b));
    }
    Ok(sizes)
}

/// `stts`: (sample count, duration) runs expanded to one duration a sample; they must cover
/// exactly `count` samples, none of them lasting no time.
fn read_durations(
    data: &[u8],
    stts: BoxRef,
    count: u32,
    track_id: u32,
) -> Result<Vec<u32>, Mp4Error> {
    let t = Table::read(data, stts, 4, 8, "the stts box")?;
    let mut durations = Vec::new();
    let mut total = 0u64;
    for i in 0..t.count {
        let (n, delta) = (t.u32(data, i, 0), t.u32(data, i, 1));
        total += u64::from(n);
        if total > u64::from(count) {
            return Err(mismatch(&stts, track_id, "stts", total, count));
        }
        // Muxers that do not know how long the last sample is (ffmpeg, for variable frame
        // rates) write 0 for it; it gets the duration of the one before, as players give it.
        let last = total == u64::from(count) && n == 1;
        let delta = match durations.last() {
            Some(&before) if delta == 0 && last => before,
            _ => delta,
        };
        if delta == 0 && n > 0 {
            return Err(Mp4Error::ZeroDuration {
                offset: stts.start,
                track_id,
                sample: durations.len() as u32 + 1,
            });
        }
        // Bounded: `total` stays at most `count`, itself at most MAX_SAMPLES.
        durations.extend(std::iter::repeat(delta).take(n as usize));
    }
    if total != u64::from(count) {
        return Err(mismatch(&stts, track_id, "stts", total, count));
    }
    Ok(durations)
}

/// `ctts`: (sample count, offset) runs, signed in either version (as every player reads them).
fn read_ctos(data: &[u8], ctts: BoxRef, count: u32, track_id: u32) -> Result<Vec<i32>, Mp4Error> {
    let t = Table::read(data, ctts, 4, 8, "the ctts box")?;
    let mut ctos = Vec::new();
    let mut total = 0u64;
    for i in 0..t.count {
        let n = t.u32(data, i, 0);
        total += u64::from(n);
        if total > u64::from(count) {
            return Err(mismatch(&ctts, track_id, "ctts", total, count));
        }
        ctos.extend(std::iter::repeat(t.u32(data, i, 1) as i32).take(n as usize));
    }
    if total != u64::from(count) {
        return Err(mismatch(&ctts, track_id, "ctts", total, count));
    }
    Ok(ctos)
}

/// `stss`: the sync samples, numbered from 1 and increasing, returned from 0.
fn read_sync(data: &[u8], stss: BoxRef, count: u32, track_id: u32) -> Result<Vec<u32>, Mp4Error> {
    let t = Table::read(data, stss, 4, 4, "the stss box")?;
    let mut sync = Vec::new();
    let mut last = 0;
    for i in 0..t.count {
        let n = t.u32(data, i, 0);
        if n <= last || n > count {
            return Err(mismatch(&stss, track_id, "stss", n.into(), count));
        }
        last = n;
        sync.push(n - 1);
    }
    Ok(sync)
}

/// Where each sample is: chunks from `stco`/`co64`, samples per chunk from `stsc`, each sample
/// right after the one before it in its chunk. Every sample must lie inside the file, and the
/// chunks must hold exactly the samples `stsz` counts.
fn read_offsets(
    data: &[u8],
    stbl: &BoxRef,
    sizes: &[u32],
    track_id: u32,
) -> Result<Vec<u64>, Mp4Error> {
    let count = sizes.len() as u32;
    let (chunks, wide) = match find_child(data, stbl, b"co64")? {
        Some(b) => (Table::read(data, b, 4, 8, "the co64 box")?, true),
        None => (
            Table::read(
                data,
                need(data, stbl, "stco", "stbl")?,
                4,
                4,
                "the stco box",
            )?,
            false,
        ),
    };
    let stsc_box = need(data, stbl, "stsc", "stbl")?;
    let stsc = Table::read(data, stsc_box, 4, 12, "the stsc box")?;
    let file_len = data.len() as u64;
    let mut offsets = Vec::with_capacity(sizes.len());
    let mut entry = 0u32;
    let mut prev_end = 0u64;
    for chunk in 0..chunks.count {
        // stsc entries give the first chunk (from 1) each run of chunks starts at.
        while entry + 1 < stsc.count && stsc.u32(data, entry + 1, 0) <= chunk + 1 {
            entry += 1;
        }
        if stsc.count == 0 || stsc.u32(data, entry, 0) > chunk + 1 {
            return Err(mismatch(&stsc_box, track_id, "stsc", chunk.into(), count));
        }
        if stsc.u32(data, entry, 2) != 1 {
            return Err(Mp4Error::Unsupported {
                offset: stsc_box.start,
                what: "samples that use a sample description other than the first",
            });
        }
        let mut at = if wide {
            let hi = chunks.u32(data, chunk, 0);
            let lo = chunks.u32(data, chunk, 1);
            (u64::from(hi) << 32) | u64::from(lo)
        } else {
            u64::from(chunks.u32(data, chunk, 0))
        };
        if !wide && wrapped_past_4gib(prev_end, at, file_len) {
            return Err(Mp4Error::NeedsCo64 {
                offset: chunks.b.start,
                track_id,
            });
        }
        let per_chunk = stsc.u32(data, entry, 1);
        let left = count - offsets.len() as u32;
        if per_chunk > left {
            return Err(mismatch(
                &stsc_box,
                track_id,
                "stsc",
                offsets.len() as u64 + u64::from(per_chunk),
                count,
            ));
        }
        for _ in 0..per_chunk {
            let i = offsets.len();
            let size = u64::from(sizes[i]);
            if at.checked_add(size).map_or(true, |end| end > file_len) {
                return Err(Mp4Error::SampleOutsideFile {
                    offset: chunks.b.start,
                    track_id,
                    sample: i as u32 + 1,
                    at,
                    size: sizes[i],
                    file_len,
                });
            }
            offsets.push(at);
            at += size;
        }
        prev_end = at;
    }
    if offsets.len() as u32 != count {
        let says = offsets.len() as u64;
        return Err(mismatch(&chunks.b, track_id, "stco", says, count));
    }
    Ok(offsets)
}

/// Whether a 32-bit chunk offset `at` that follows a chunk ending at `prev_end` can only be a
/// wrapped one: in a file longer than 4 GiB, a chunk offset that goes back to below where the
/// chunk before ended (muxers write chunks in file order) means the real offset did not fit.
fn wrapped_past_4gib(prev_end: u64, at: u64, file_len: u64) -> bool {
    file_len > u64::from(u32::MAX) && at < prev_end
}

/// The edit list's move of the presentation timeline, in track ticks: initial empty edits delay
/// it by their duration (in the movie's timescale), and the first edit with media starts at its
/// media time. Later edits (cuts within the track) are not applied.
fn edit_shift(data: &[u8], trak: &BoxRef, info: &TrackInfo) -> Result<i64, Mp4Error> {
    let Some(edts) = find_child(data, trak, b"edts")? else {
        return Ok(0);
    };
    let Some(elst) = find_child(data, &edts, b"elst")? else {
        return Ok(0);
    };
    let version = field(data.get(elst.body).copied(), elst.start, "the elst box")?;
    let entry_len = if version == 1 { 20 } else { 12 };
    let t = Table::read(data, elst, 4, entry_len, "the elst box")?;
    let mut delay = 0i128;
    for i in 0..t.count {
        let at = t.at + i as usize * entry_len;
        let (duration, media_time) = if version == 1 {
            let d = field(be64(data, at), elst.start, "the elst box")?;
            let m = field(be64(data, at + 8), elst.start, "the elst box")? as i64;
            (d, m)
        } else {
            let d = field(be32(data, at), elst.start, "the elst box")?;
            let m = field(be32(data, at + 4), elst.start, "the elst box")? as i32;
            (u64::from(d), i64::from(m))
        };
        if media_time == -1 {
            delay += i128::from(duration) * i128::from(info.timescale)
                / i128::from(info.movie_timescale.max(1));
            continue;
        }
        let shift = delay - i128::from(media_time);
        // An edit that moves a track by more than a day is nonsense; ignore it rather than let
        // it overflow the arithmetic later.
        let day = 86_400 * i128::from(info.timescale);
        return Ok(if shift.abs() > day { 0 } else { shift as i64 });
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backwards_chunks_in_a_file_over_4_gib_wrapped() {
        let big = 5 << 30;
        assert!(wrapped_past_4gib(4_000_000_000, 1000, big));
        assert!(!wrapped_past_4gib(1000, 4_000_000_000, big));
        assert!(!wrapped_past_4gib(4_000_000_000, 1000, 1 << 30));
    }
}
