//! Where streams come from. Every source yields the same two things — an init segment and
//! fragments with their media times — and the stream they feed does not know which kind it has:
//! `file` plays a fragmented MP4 as a looping channel (`playout` paces and renders it), `push`
//! splits a pushed feed (an HTTP publish body or standard input) into boxes, `live` reads such a
//! feed from a socket or pipe under `pacing`, and `stdin` is the standard-input feed.

pub mod file;
pub mod live;
pub mod pacing;
pub mod playout;
pub mod push;
pub mod stdin;

use crate::mp4::InitSegment;
use push::{LiveFragment, PushError};

/// What a live source (a publisher connection, standard input) tells its stream.
#[derive(Debug)]
pub enum MediaEvent {
    /// A session starts, or starts over with new settings.
    Init(InitSegment),
    Fragment(LiveFragment),
    /// The source stopped feeding the stream (finished, failed or went away).
    End(String),
}

/// A [`MediaEvent`] for the stream with this registry key.
#[derive(Debug)]
pub struct Media {
    pub stream: usize,
    pub event: MediaEvent,
}

impl MediaEvent {
    /// The event that ends a feed after `e`.
    pub fn failed(e: &PushError) -> MediaEvent {
        MediaEvent::End(format!("the publisher sent bad data: {e}"))
    }

    /// The reason of an `End`, empty for other events.
    pub fn into_reason(self) -> String {
        match self {
            MediaEvent::End(r) => r,
            _ => String::new(),
        }
    }
}
