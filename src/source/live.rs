//! A live feed being read: the box splitter plus the pacer, fed either by reads straight into
//! the fragment being assembled (`read_from`) or by bytes already in memory (`feed`). Used by the
//! HTTP publish path and by standard input; the only I/O is the `Read` it is handed.

use super::pacing::{Pace, Pacer};
use super::push::{PushError, PushEvent, PushParser};
use super::{Media, MediaEvent};
use std::io::{self, Read};
use std::time::Instant;

/// Most bytes asked for in one read.
pub const READ_MAX: usize = 256 * 1024;

#[derive(Debug)]
pub struct LiveInput {
    /// Registry key of the stream it feeds.
    pub stream: usize,
    pub parser: PushParser,
    pacer: Pacer,
    /// Not read until then: the feed is ahead of real time.
    pub held_until: Option<Instant>,
    /// The current hold was reported (so a timer for it exists).
    hold_reported: bool,
    pub last_input: Instant,
    pub bytes_in: u64,
    pub fragments: u64,
}

/// Whether a feed may be read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Free,
    /// Held until then: set a timer.
    Until(Instant),
    /// Still held, and the timer for it is already set.
    Still,
}

/// How a read went.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes were taken.
    Read(usize),
    /// The other side closed.
    Eof,
    WouldBlock,
}

impl LiveInput {
    pub fn new(stream: usize, now: Instant) -> LiveInput {
        LiveInput {
            stream,
            parser: PushParser::default(),
            pacer: Pacer::default(),
            held_until: None,
            hold_reported: false,
            last_input: now,
            bytes_in: 0,
            fragments: 0,
        }
    }

    /// Whether the feed is held back and must not be read before `now` reaches the hold.
    pub fn hold(&mut self, now: Instant) -> Hold {
        match self.held_until {
            Some(t) if now < t && self.hold_reported => Hold::Still,
            Some(t) if now < t => {
                self.hold_reported = true;
                Hold::Until(t)
            }
            _ => {
                self.held_until = None;
                self.hold_reported = false;
                Hold::Free
            }
        }
    }

    /// Reads at most `max` bytes from `r` straight into the box being assembled.
    pub fn read_from<R: Read>(
        &mut self,
        r: &mut R,
        max: usize,
        now: Instant,
        out: &mut Vec<Media>,
    ) -> io::Result<Result<ReadOutcome, PushError>> {
        let want = self.parser.want().min(max).min(READ_MAX);
        let n = loop {
            match r.read(self.parser.spare(want)) {
                Ok(0) => return Ok(Ok(ReadOutcome::Eof)),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Ok(ReadOutcome::WouldBlock))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.took(n, now);
        Ok(match self.parser.commit(n) {
            Ok(Some(event)) => {
                self.on_event(event, now, out);
                Ok(ReadOutcome::Read(n))
            }
            Ok(None) => Ok(ReadOutcome::Read(n)),
            Err(e) => Err(e),
        })
    }

    /// Takes bytes already in memory.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<Media>,
    ) -> Result<(), PushError> {
        self.took(bytes.len(), now);
        let mut events = Vec::new();
        let r = self.parser.feed(bytes, |e| events.push(e));
        for e in events {
            self.on_event(e, now, out);
        }
        r
    }

    fn took(&mut self, n: usize, now: Instant) {
        self.bytes_in += n as u64;
        self.last_input = now;
    }

    fn on_event(&mut self, event: PushEvent, now: Instant, out: &mut Vec<Media>) {
        let event = match event {
            PushEvent::Init(init) => {
                // A new session has a clock of its own.
                self.pacer = Pacer::default();
                MediaEvent::Init(init)
            }
            PushEvent::Fragment(f) => {
                self.fragments += 1;
                if let Pace::HoldUntil(t) = self.pacer.on_fragment(now, f.media_ns) {
                    self.held_until = Some(t);
                }
                MediaEvent::Fragment(f)
            }
        };
        out.push(Media {
            stream: self.stream,
            event,
        });
    }
}
