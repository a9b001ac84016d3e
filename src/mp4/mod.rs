//! MP4 (ISO BMFF) parsing for fragmented files: splits a file into its init segment (ftyp+moov)
//! and its fragments (moof+mdat), reads what the player needs from the moov (tracks, timescales,
//! the MSE codecs string, picture size) and from each moof (per-track decode time, duration,
//! whether it starts with a keyframe), and rewrites a fragment's `tfdt` and `mfhd` so a looping
//! playout keeps its timeline increasing; for B-frame files without an edit list, passes after
//! the first also leave out the audio that starts before the first frame is shown, so every
//! track joins itself seamlessly at the loop point (see `lead_in`). A live publisher's pieces
//! (an init segment, then one fragment at a time) are parsed with [`InitSegment::parse`] and
//! [`parse_fragment_at`] and retimed with [`shift_decode_times`].
//!
//! Pure: works on a byte slice, does no I/O and never panics on bad input. Every error names the
//! byte offset of the box it is about.
//!
//! Layout: `boxes` reads box headers and fields, `init` the moov's tracks, `codecs` their sample
//! entries, `fragment` a moof's track runs, `movie` a whole file, `lead_in` the B-frame lead-in a
//! looping file leaves out, and `render` writes a fragment's new timeline.

mod boxes;
mod codecs;
mod error;
mod fragment;
mod init;
mod lead_in;
mod movie;
mod plain;
mod render;
mod tables;
#[cfg(test)]
mod testutil;

pub use boxes::{read_box, BoxRef, Boxes};
pub use error::{Mp4Error, FIX_COMMAND, NAMED_ENTRIES};
pub use fragment::{parse_fragment_at, Fragment, TrackRun};
pub use init::{InitSegment, Track, TrackKind};
pub use movie::{is_known_top_level, Movie};
pub use render::{fragment_times, render_fragment, shift_decode_times};
