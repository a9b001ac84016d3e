//! The parser's one error type, [`Mp4Error`]: every way a file, an init segment or a fragment can
//! be unusable, each naming the byte offset it is about, and the message a user sees for it.

use std::fmt;

/// The ffmpeg command that turns an ordinary MP4 into the fragmented form ssecast plays.
pub const FIX_COMMAND: &str =
    "ffmpeg -i input.mp4 -c copy -movflags frag_keyframe+empty_moov+default_base_moof output.mp4";

/// Why a file could not be used. `offset` is where in the file the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mp4Error {
    /// Fewer bytes remain than a box header or a field needs.
    Truncated { offset: usize, what: &'static str },
    /// A box's size field is smaller than its header or runs past its parent.
    BadBoxSize {
        offset: usize,
        box_type: [u8; 4],
        size: u64,
    },
    /// The first box is not one an MP4 file starts with.
    NotMp4 { first: [u8; 4] },
    /// No `moov` box was found.
    NoMoov,
    /// A `moov` with sample tables but no `moof` fragments: a plain, non-fragmented MP4.
    NotFragmented,
    /// The `moov` holds no usable track.
    NoTracks { offset: usize },
    /// The file has an init segment but no fragments to play.
    NoFragments,
    /// A required child box is missing.
    MissingBox {
        offset: usize,
        parent: &'static str,
        child: &'static str,
    },
    /// A `moof` is not followed by its `mdat`.
    MoofWithoutMdat { offset: usize },
    /// A `mdat` that carries no sample bytes.
    EmptyMdat { offset: usize },
    /// A fragment refers to a track the `moov` does not describe.
    UnknownTrack { offset: usize, track_id: u32 },
    /// No fragment starts with a keyframe, so no viewer could ever start playing.
    NoKeyframe,
    /// The fragments add up to no time at all, so there is nothing to pace playout by.
    NoDuration,
    /// A track whose clock has 0 ticks per second.
    ZeroTimescale { offset: usize },
    /// An init segment whose tracks are none of them video or audio in a codec the parser
    /// knows: `tracks` tracks, the first [`NAMED_ENTRIES`] of whose sample entries are listed.
    NoPlayableTrack {
        offset: usize,
        tracks: usize,
        sample_entries: [[u8; 4]; NAMED_ENTRIES],
    },
    /// A box other than the one that must come here.
    UnexpectedBox {
        offset: usize,
        found: [u8; 4],
        expected: &'static str,
    },
    /// Bytes after the box a piece must end with.
    TrailingBytes { offset: usize, len: usize },
    /// A plain file's video or audio track in a codec MSE cannot carry (or the parser does not
    /// know), by its sample entry.
    UnsupportedCodec {
        offset: usize,
        track_id: u32,
        sample_entry: [u8; 4],
    },
    /// A plain file's track has more samples than [`MAX_SAMPLES`](super::tables) allows.
    TooManySamples {
        offset: usize,
        track_id: u32,
        count: u64,
    },
    /// A sample table describes another number of samples than the track's `stsz` has.
    TableMismatch {
        offset: usize,
        track_id: u32,
        table: &'static str,
        says: u64,
        samples: u32,
    },
    /// A sample of no duration (numbered from 1).
    ZeroDuration {
        offset: usize,
        track_id: u32,
        sample: u32,
    },
    /// The sample sizes of a track add up to more bytes than the file has.
    SamplesExceedFile { offset: usize, track_id: u32 },
    /// A sample (numbered from 1) at byte `at` of `size` bytes ends past the end of the file.
    SampleOutsideFile {
        offset: usize,
        track_id: u32,
        sample: u32,
        at: u64,
        size: u32,
        file_len: u64,
    },
    /// 32-bit chunk offsets (`stco`) in a file whose samples lie past 4 GiB: they wrapped.
    NeedsCo64 { offset: usize, track_id: u32 },
    /// A file structure ssecast does not play, described by `what`.
    Unsupported { offset: usize, what: &'static str },
    /// A plain file whose tracks have no samples at all.
    NoSamples { offset: usize },
}

/// How many sample entries [`Mp4Error::NoPlayableTrack`] names.
pub const NAMED_ENTRIES: usize = 4;

impl fmt::Display for Mp4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mp4Error::Truncated { offset, what } => {
                write!(f, "file is truncated at byte {offset}: {what} runs past the end")
            }
            Mp4Error::BadBoxSize {
                offset,
                box_type,
                size,
            } => write!(
                f,
                "box '{}' at byte {offset} has an impossible size {size}",
                fourcc(box_type)
            ),
            Mp4Error::NotMp4 { first } => write!(
                f,
                "not an MP4 file: it starts with '{}' where an MP4 starts with an 'ftyp' box",
                fourcc(first)
            ),
            Mp4Error::NoMoov => write!(
                f,
                "no 'moov' box (init segment) found; convert the file with: {FIX_COMMAND}"
            ),
            Mp4Error::NotFragmented => write!(
                f,
                "this MP4 is not fragmented (it has no 'moof' boxes); convert it with: {FIX_COMMAND}"
            ),
            Mp4Error::NoTracks { offset } => {
                write!(f, "the 'moov' box at byte {offset} holds no audio or video track")
            }
            Mp4Error::NoFragments => write!(
                f,
                "the file has an init segment but no fragments (moof+mdat); convert it with: {FIX_COMMAND}"
            ),
            Mp4Error::MissingBox {
                offset,
                parent,
                child,
            } => write!(
                f,
                "the '{parent}' box at byte {offset} has no '{child}' box inside it"
            ),
            Mp4Error::MoofWithoutMdat { offset } => {
                write!(f, "the 'moof' box at byte {offset} is not followed by an 'mdat' box")
            }
            Mp4Error::EmptyMdat { offset } => {
                write!(f, "the 'mdat' box at byte {offset} is empty")
            }
            Mp4Error::UnknownTrack { offset, track_id } => write!(
                f,
                "the fragment at byte {offset} refers to track {track_id}, which the 'moov' does not describe"
            ),
            Mp4Error::ZeroTimescale { offset } => {
                write!(f, "the 'mdhd' box at byte {offset} gives its track a timescale of 0")
            }
            Mp4Error::NoDuration => write!(
                f,
                "the fragments carry no sample durations, so the video has no length; convert with: {FIX_COMMAND}"
            ),
            Mp4Error::NoKeyframe => write!(
                f,
                "no fragment starts with a keyframe; re-encode or convert with: {FIX_COMMAND}"
            ),
            Mp4Error::NoPlayableTrack {
                offset,
                tracks,
                sample_entries,
            } => {
                write!(
                    f,
                    "the 'moov' box at byte {offset} holds no video or audio track in a codec \
                     ssecast knows; its {tracks} track(s) have sample entries"
                )?;
                for (i, entry) in sample_entries.iter().take(*tracks).enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    if entry == b"    " {
                        write!(f, "{sep}(none)")?;
                    } else {
                        write!(f, "{sep}'{}'", fourcc(entry))?;
                    }
                }
                if *tracks > NAMED_ENTRIES {
                    write!(f, ", ...")?;
                }
                Ok(())
            }
            Mp4Error::UnexpectedBox {
                offset,
                found,
                expected,
            } => write!(
                f,
                "expected {expected} at byte {offset}, found a '{}' box",
                fourcc(found)
            ),
            Mp4Error::TrailingBytes { offset, len } => write!(
                f,
                "{len} unexpected bytes follow the last box, from byte {offset}"
            ),
            Mp4Error::UnsupportedCodec {
                offset,
                track_id,
                sample_entry,
            } => write!(
                f,
                "track {track_id} (the 'trak' box at byte {offset}) is in codec '{}', which \
                 browsers cannot play through Media Source Extensions; re-encode it, e.g. \
                 ffmpeg -i input -c:v libx264 -c:a aac output.mp4",
                fourcc(sample_entry)
            ),
            Mp4Error::TooManySamples {
                offset,
                track_id,
                count,
            } => write!(
                f,
                "the sample table at byte {offset} gives track {track_id} {count} samples, more \
                 than the {} ssecast plays",
                super::tables::MAX_SAMPLES
            ),
            Mp4Error::TableMismatch {
                offset,
                track_id,
                table,
                says,
                samples,
            } => write!(
                f,
                "the '{table}' box at byte {offset} does not agree with the track's {samples} \
                 samples (it describes {says}) in track {track_id}"
            ),
            Mp4Error::ZeroDuration {
                offset,
                track_id,
                sample,
            } => write!(
                f,
                "the 'stts' box at byte {offset} gives sample {sample} of track {track_id} no \
                 duration"
            ),
            Mp4Error::SamplesExceedFile { offset, track_id } => write!(
                f,
                "the sample sizes at byte {offset} add up to more bytes than the file has \
                 (track {track_id})"
            ),
            Mp4Error::SampleOutsideFile {
                offset,
                track_id,
                sample,
                at,
                size,
                file_len,
            } => write!(
                f,
                "the chunk offsets at byte {offset} put sample {sample} of track {track_id} \
                 ({size} bytes at byte {at}) past the end of the file ({file_len} bytes): \
                 the file is truncated or its sample table is wrong"
            ),
            Mp4Error::NeedsCo64 { offset, track_id } => write!(
                f,
                "the 32-bit chunk offsets ('stco') at byte {offset} of track {track_id} wrap \
                 around in a file over 4 GiB, where 64-bit ones ('co64') are needed; remux it \
                 with ffmpeg -i input -c copy output.mp4"
            ),
            Mp4Error::Unsupported { offset, what } => {
                write!(f, "the box at byte {offset} uses {what}, which ssecast does not play")
            }
            Mp4Error::NoSamples { offset } => write!(
                f,
                "the 'moov' box at byte {offset} describes tracks without any samples"
            ),
        }
    }
}

impl std::error::Error for Mp4Error {}

/// A four-character code as text, with `?` for bytes that are not printable ASCII.
pub(super) fn fourcc(t: &[u8; 4]) -> String {
    t.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}
