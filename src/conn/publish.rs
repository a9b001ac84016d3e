//! The publisher side of a connection: admitting a `POST`/`PUT /publish/NAME` (credentials, one
//! publisher per name, `100 Continue`), then reading its body — chunked, with a Content-Length,
//! or until the connection ends — straight into the fragment being assembled, under the pacing
//! that holds a fast publisher to real time, until it ends, fails or goes away.

use super::{Connection, Ctx, Next, Phase};
use crate::http::chunked::ChunkedDecoder;
use crate::http::{Auth, Body, Publish, Status};
use crate::source::live::{Hold, LiveInput, ReadOutcome, READ_MAX};
use crate::source::push::PushError;
use crate::source::{Media, MediaEvent};
use crate::stream::{Publisher, SourceKind};
use std::io;
use std::rc::Rc;

/// Most reads of a publisher in one turn before other connections get theirs.
const MAX_BODY_READS: usize = 64;
/// Bytes read at once while chunk framing comes next; what follows the framing in the same read
/// is copied into the fragment, the rest of a chunk is read straight into it.
const FRAMING_READ: usize = 64;

/// How the rest of the body is delimited.
#[derive(Debug, Clone)]
pub(super) enum BodyState {
    Chunked(ChunkedDecoder),
    Length(u64),
    UntilClose,
}

impl Connection {
    /// Admits a publisher (or refuses it), then reads whatever of its body has come.
    pub(super) fn start_publish(
        &mut self,
        p: Publish,
        rest: std::ops::Range<usize>,
        ctx: &mut Ctx<'_>,
    ) -> Next {
        let name = p.stream;
        if let Err((status, why)) = self.admit(&p, ctx) {
            log::warn!(
                "publisher for {name} from {} refused with {}: {why}",
                self.peer,
                status.code()
            );
            self.draining_body = true;
            let r = ctx.responses.refusal(status, &why, false);
            return self.respond(r, ctx);
        }
        let key = ctx.streams.get_or_create(name, ctx.now);
        let Some(stream) = ctx.streams.get_mut(key) else {
            return Next::Close;
        };
        stream.publisher = Some(Publisher::Conn {
            key: self.token.0,
            id: self.id,
        });
        stream.kind = Some(SourceKind::Http);
        log::info!("publisher for {name} connected from {}", self.peer);
        self.body = match p.body {
            Body::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            Body::Length(n) => BodyState::Length(n),
            Body::UntilClose => BodyState::UntilClose,
        };
        self.publisher = Some(Box::new(LiveInput::new(key, ctx.now, ctx.ingest)));
        self.phase = Phase::Publish;
        if p.expect_continue {
            self.queue
                .push_control(Rc::clone(&ctx.responses.continue_100));
            if self.flush(ctx) == Next::Close {
                return Next::Close;
            }
        }
        // The bytes that came with the head.
        let (scratch, media) = (&*ctx.scratch, &mut *ctx.media);
        let now = ctx.now;
        if let Some(next) = self.take_body(&scratch[rest], now, media) {
            return self.end_publish(next, ctx);
        }
        self.read_body(ctx)
    }

    fn admit(&self, p: &Publish, ctx: &Ctx<'_>) -> Result<(), (Status, String)> {
        match (ctx.publish_key.is_some(), p.auth) {
            (true, Auth::Valid) => {}
            (true, Auth::Missing) => {
                return Err((
                    Status::Unauthorized,
                    "this server needs a publish key: Authorization: Bearer KEY, \
                     http://user:KEY@host/publish/NAME, or ?key=KEY"
                        .into(),
                ))
            }
            (true, Auth::Invalid) => return Err((Status::Forbidden, "wrong publish key".into())),
            (false, _) if self.peer.is_loopback() && !p.proxied => {}
            (false, _) if p.proxied => {
                return Err((
                    Status::Forbidden,
                    "this publish came through a proxy, so it may come from anywhere: start \
                     ssecast with --publish-key KEY and publish with the key"
                        .into(),
                ))
            }
            (false, _) => {
                return Err((
                    Status::Forbidden,
                    "publishing from another machine needs a key: start ssecast with \
                     --publish-key KEY and publish to http://user:KEY@host:port/publish/NAME \
                     (or add ?key=KEY)"
                        .into(),
                ))
            }
        }
        if let Some(s) = ctx.streams.find(&p.stream).and_then(|k| ctx.streams.get(k)) {
            if s.configured {
                return Err((
                    Status::Conflict,
                    format!(
                        "{} is a {} stream from the command line and cannot be published over",
                        p.stream,
                        s.kind.map_or("configured", |k| k.as_str())
                    ),
                ));
            }
            if s.publisher.is_some() {
                return Err((
                    Status::Conflict,
                    format!("{} already has a publisher", p.stream),
                ));
            }
        }
        Ok(())
    }

    /// Reads the body until the socket would block, the feed is held, or it ends.
    pub(super) fn read_body(&mut self, ctx: &mut Ctx<'_>) -> Next {
        for _ in 0..MAX_BODY_READS {
            let Some(input) = self.publisher.as_mut() else {
                return Next::Continue;
            };
            match input.hold(ctx.now) {
                Hold::Free => {}
                Hold::Until(t) => return Next::Hold(t),
                Hold::Still => return Next::Continue,
            }
            let step = match &mut self.body {
                BodyState::Length(0) => Some(Ended::Finished),
                BodyState::Chunked(d) if d.is_done() => Some(Ended::Finished),
                BodyState::Chunked(d) if d.data_left() == 0 => {
                    let n = FRAMING_READ.min(ctx.scratch.len());
                    match read_some(&mut self.socket, &mut ctx.scratch[..n]) {
                        Ok(Some(0)) => Some(Ended::Eof),
                        Ok(Some(n)) => {
                            let (scratch, media) = (&*ctx.scratch, &mut *ctx.media);
                            self.take_body(&scratch[..n], ctx.now, media)
                        }
                        Ok(None) => return Next::Continue,
                        Err(e) => return self.end_publish(Ended::Gone(e), ctx),
                    }
                }
                body => {
                    let limit = match body {
                        BodyState::Length(n) => *n,
                        BodyState::Chunked(d) => d.data_left(),
                        BodyState::UntilClose => u64::MAX,
                    };
                    let limit = usize::try_from(limit).unwrap_or(usize::MAX).min(READ_MAX);
                    match input.read_from(&mut self.socket, limit, ctx.now, ctx.media) {
                        Ok(Ok(ReadOutcome::Read(n))) => {
                            match body {
                                BodyState::Length(left) => *left -= n as u64,
                                BodyState::Chunked(d) => d.consume_data(n),
                                BodyState::UntilClose => {}
                            }
                            None
                        }
                        Ok(Ok(ReadOutcome::Eof)) => Some(Ended::Eof),
                        Ok(Ok(ReadOutcome::WouldBlock)) => return Next::Continue,
                        Ok(Err(e)) => Some(Ended::Bad(e)),
                        Err(e) => Some(Ended::Gone(e)),
                    }
                }
            };
            if let Some(ended) = step {
                return self.end_publish(ended, ctx);
            }
        }
        Next::Again
    }

    /// Takes body bytes already in memory (with any chunk framing in them).
    fn take_body(
        &mut self,
        mut bytes: &[u8],
        now: std::time::Instant,
        media: &mut Vec<Media>,
    ) -> Option<Ended> {
        let input = self.publisher.as_mut()?;
        while !bytes.is_empty() {
            let data = match &mut self.body {
                BodyState::Chunked(d) if d.is_done() => return Some(Ended::Finished),
                BodyState::Chunked(d) => match d.step(bytes) {
                    Ok(step) => {
                        let data = &bytes[step.data.clone()];
                        bytes = &bytes[step.consumed..];
                        data
                    }
                    Err(e) => return Some(Ended::Framing(e.to_string())),
                },
                BodyState::Length(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= n as u64;
                    let data = &bytes[..n];
                    bytes = if *left == 0 { &[] } else { &bytes[n..] };
                    data
                }
                BodyState::UntilClose => std::mem::take(&mut bytes),
            };
            if let Err(e) = input.feed(data, now, media) {
                return Some(Ended::Bad(e));
            }
        }
        match &self.body {
            BodyState::Chunked(d) if d.is_done() => Some(Ended::Finished),
            BodyState::Length(0) => Some(Ended::Finished),
            _ => None,
        }
    }

    /// The publisher's feed ends: the stream is told, and the connection answers (when it can)
    /// and closes.
    fn end_publish(&mut self, ended: Ended, ctx: &mut Ctx<'_>) -> Next {
        let Some(mut input) = self.publisher.take() else {
            return Next::Close;
        };
        if matches!(ended, Ended::Finished | Ended::Eof) {
            input.finish(ctx.now, ctx.media);
        }
        let name = ctx
            .streams
            .get(input.stream)
            .map_or_else(String::new, |s| s.name.to_string());
        let summary = format!("{} bytes, {} fragments", input.bytes_in, input.fragments);
        if matches!(ended, Ended::Eof) {
            self.peer_closed = true;
        }
        let clean = input.at_boundary()
            && match ended {
                Ended::Finished => true,
                Ended::Eof => matches!(self.body, BodyState::UntilClose),
                _ => false,
            };
        let (reason, status, why) = match ended {
            Ended::Finished | Ended::Eof if clean => {
                log::info!("publisher for {name} finished ({summary})");
                ("publisher finished".to_string(), None, String::new())
            }
            Ended::Finished | Ended::Eof => {
                let why = if matches!(ended, Ended::Finished) {
                    "the body ended in the middle of a box".to_string()
                } else {
                    "the publisher disconnected in the middle of the body".to_string()
                };
                log::info!("publisher for {name}: {why} ({summary})");
                (
                    "publisher disconnected".to_string(),
                    Some(Status::BadRequest),
                    why,
                )
            }
            Ended::Gone(e) => {
                log::info!("publisher for {name} went away: {e} ({summary})");
                ctx.media.push(Media {
                    stream: input.stream,
                    event: MediaEvent::End("publisher disconnected".into()),
                });
                return Next::Close;
            }
            Ended::Framing(e) => {
                log::warn!("publisher for {name}: {e}; closing ({summary})");
                (
                    "the publisher sent a broken body".to_string(),
                    Some(Status::BadRequest),
                    e,
                )
            }
            Ended::Bad(e) => {
                log::warn!("publisher for {name}: {e}; closing ({summary})");
                let status = match e {
                    PushError::Unsupported(_) => Status::UnsupportedMediaType,
                    PushError::TooLarge(_) => Status::PayloadTooLarge,
                    PushError::Malformed(_) => Status::BadRequest,
                };
                let event = MediaEvent::failed(&e);
                let MediaEvent::End(reason) = event else {
                    return Next::Close;
                };
                (reason, Some(status), e.to_string())
            }
        };
        ctx.media.push(Media {
            stream: input.stream,
            event: MediaEvent::End(reason),
        });
        let response = match status {
            None => crate::http::responses::response(
                200,
                "OK",
                "text/plain; charset=utf-8",
                "",
                format!("published {name}: {summary}\n").as_bytes(),
                false,
            ),
            Some(s) => {
                self.draining_body = true;
                ctx.responses.refusal(s, &why, false)
            }
        };
        self.respond(response, ctx)
    }

    /// The publish timeout expired: a best-effort 408; the server then closes the connection.
    pub fn publish_timed_out(&mut self, ctx: &mut Ctx<'_>) -> Option<usize> {
        let input = self.publisher.take()?;
        log::warn!(
            "publisher from {} sent nothing for {:.0} s; closing",
            self.peer,
            ctx.now
                .saturating_duration_since(input.last_input)
                .as_secs_f64()
        );
        ctx.media.push(Media {
            stream: input.stream,
            event: MediaEvent::End("the publisher went silent".into()),
        });
        let r = ctx.responses.error(Status::RequestTimeout, false);
        let _ = io::Write::write(&mut self.socket, &r.bytes);
        Some(input.stream)
    }

    /// When the publisher last sent anything, unless it is held back on purpose.
    pub fn publish_idle_since(&self) -> Option<std::time::Instant> {
        let p = self.publisher.as_ref()?;
        match p.held_until {
            Some(_) => None,
            None => Some(p.last_input),
        }
    }
}

/// Why a publisher's feed ended.
#[derive(Debug)]
enum Ended {
    /// The body is complete.
    Finished,
    /// The peer closed its side.
    Eof,
    /// A socket error.
    Gone(io::Error),
    Framing(String),
    Bad(PushError),
}

/// One read into `buf`: `Some(n)` (0 at the end), `None` when it would block.
pub(super) fn read_some(
    socket: &mut mio::net::TcpStream,
    buf: &mut [u8],
) -> io::Result<Option<usize>> {
    use std::io::Read;
    loop {
        match socket.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
