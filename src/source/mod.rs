//! Where streams come from. Every source yields the same two things — an init segment and
//! fragments with their media times — and the stream they feed does not know which kind it has:
//! `file` plays a fragmented MP4 as a looping channel (`playout` paces and renders it), `push`
//! splits a pushed feed (an HTTP publish body or standard input) into boxes, `live` reads such a
//! feed from a socket or pipe under `pacing`, `stdin` is the standard-input feed, and `relay`
//! pulls another ssecast's stream, events and ids as they are.

pub mod file;
pub mod live;
pub mod pacing;
pub mod playout;
pub mod push;
pub mod relay;
pub mod rtmp;
pub mod stdin;

use crate::mp4::InitSegment;
use crate::sse::{Frame, StreamInfo};
use push::{LiveFragment, PushError};
use std::rc::Rc;

/// What a live source (a publisher connection, standard input) tells its stream.
#[derive(Debug)]
pub enum MediaEvent {
    /// A session starts, or starts over with new settings.
    Init(InitSegment),
    Fragment(LiveFragment),
    /// The source stopped feeding the stream (finished, failed or went away).
    End(String),
    /// The stream is not live for now, but its source stays (a relay's origin went away).
    Offline(String),
    /// A relay's upstream (re)started: its `init` event as it came.
    RelayInit {
        frame: Rc<Frame>,
        info: StreamInfo,
        timescales: Vec<u32>,
    },
    /// A relay's upstream fragment, its event as it came (same id).
    RelayFragment(Rc<Frame>),
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
