//! Standard input as a live feed (`ssecast cam=-`): a pipe from an encoder — fragmented MP4,
//! MPEG-TS, or a bare H.264/H.265 stream (`rpicam-vid -t 0 --inline -o - | ssecast cam=-`),
//! told apart by its first bytes, read without blocking in the event loop, paced like any
//! publisher. When the pipe ends the stream goes offline and the server goes on serving.

use super::live::{Hold, IngestOptions, LiveInput, ReadOutcome, READ_MAX};
use super::{Media, MediaEvent};
use mio::unix::pipe::Receiver;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

/// Most reads in one turn before other work gets its own.
const MAX_READS: usize = 64;

/// What the event loop should do after standard input was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinNext {
    /// Wait for the next readiness event.
    Continue,
    /// More may be waiting: read again soon.
    Again,
    /// Ahead of real time: read again at this instant.
    Hold(Instant),
    /// The feed ended or failed (the stream was told); stop reading.
    Ended,
}

pub struct StdinSource {
    pub input: LiveInput,
    pipe: Receiver,
}

impl StdinSource {
    /// Standard input, set non-blocking and registered with the poll under `token`.
    pub fn open(
        stream: usize,
        registry: &Registry,
        token: Token,
        now: Instant,
        options: IngestOptions,
    ) -> io::Result<StdinSource> {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        let mut pipe = Receiver::from(fd);
        pipe.set_nonblocking(true)?;
        registry
            .register(&mut pipe, token, Interest::READABLE)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EPERM) {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "standard input is a regular file, not a pipe: pass the file's path \
                         instead of '-' to play it as a looping channel",
                    )
                } else {
                    e
                }
            })?;
        Ok(StdinSource {
            input: LiveInput::new(stream, now, options),
            pipe,
        })
    }

    /// Reads what standard input has, straight into the fragment being assembled.
    pub fn on_readable(&mut self, now: Instant, media: &mut Vec<Media>) -> StdinNext {
        for _ in 0..MAX_READS {
            match self.input.hold(now) {
                Hold::Free => {}
                Hold::Until(t) => return StdinNext::Hold(t),
                Hold::Still => return StdinNext::Continue,
            }
            let end = match self.input.read_from(&mut self.pipe, READ_MAX, now, media) {
                Ok(Ok(ReadOutcome::Read(_))) => continue,
                Ok(Ok(ReadOutcome::WouldBlock)) => return StdinNext::Continue,
                Ok(Ok(ReadOutcome::Eof)) if self.input.at_boundary() => {
                    self.input.finish(now, media);
                    log::info!(
                        "standard input ended ({} bytes, {} fragments)",
                        self.input.bytes_in,
                        self.input.fragments
                    );
                    "standard input ended".to_string()
                }
                Ok(Ok(ReadOutcome::Eof)) => {
                    log::warn!("standard input ended in the middle of a box");
                    "standard input ended".to_string()
                }
                Ok(Err(e)) => {
                    log::error!("standard input: {e}; no longer reading it");
                    MediaEvent::failed(&e).into_reason()
                }
                Err(e) => {
                    log::error!("reading standard input failed: {e}");
                    "standard input failed".to_string()
                }
            };
            media.push(Media {
                stream: self.input.stream,
                event: MediaEvent::End(end),
            });
            return StdinNext::Ended;
        }
        StdinNext::Again
    }
}
