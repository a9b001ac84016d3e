//! One RTMP publisher's connection: reads its socket into the sans-I/O [`RtmpSession`], answers
//! it, admits or refuses its publish (name, key, one publisher per name, as for HTTP), and turns
//! its media into fragments through [`RtmpIngest`] and the pacer of a [`LiveInput`], which holds
//! a publisher that runs ahead of real time by not reading it (TCP pushes back). Like an HTTP
//! [`Connection`](super::Connection) it never touches the slab or the timers: it returns a
//! [`Next`] and the server acts on it.

use super::publish::read_some;
use super::{Ctx, Next};
use crate::http::auth::constant_time_eq;
use crate::source::live::{Hold, LiveInput};
use crate::source::push::PushEvent;
use crate::source::rtmp::ingest::RtmpIngest;
use crate::source::rtmp::{split_key, RtmpEvent, RtmpSession};
use crate::source::{Media, MediaEvent};
use crate::stream::{Publisher, SourceKind, StreamName};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// Most reads of one publisher in one turn before other connections get theirs.
const MAX_READS: usize = 16;

/// Whether to go on taking the session's events.
enum Flow {
    Go,
    /// Stop for this turn: call again once the server applied what was said.
    Yield,
    Close,
}

pub struct RtmpConn {
    /// Unique for the server's life (shared with HTTP connections).
    pub id: u64,
    token: Token,
    socket: TcpStream,
    peer: SocketAddr,
    session: RtmpSession,
    ingest: RtmpIngest,
    /// The accepted publish: its stream, pacer and counters.
    input: Option<LiveInput>,
    /// The name it publishes (or asked to), for logs.
    name: String,
    /// When it connected or its last publish ended: it must publish within the head timeout.
    pub idle_since: Instant,
    /// A refusal was answered: close once it is written.
    closing: bool,
    wants_write: bool,
    pushes: Vec<PushEvent>,
    /// The last metadata logged (GStreamer repeats it at every keyframe).
    metadata: String,
}

impl RtmpConn {
    pub fn new(id: u64, token: Token, socket: TcpStream, peer: SocketAddr, now: Instant) -> Self {
        RtmpConn {
            id,
            token,
            socket,
            peer,
            session: RtmpSession::default(),
            ingest: RtmpIngest::new(0),
            input: None,
            name: String::new(),
            idle_since: now,
            closing: false,
            wants_write: false,
            pushes: Vec::new(),
            metadata: String::new(),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Registry key of the stream it publishes, while it does.
    pub fn publishing(&self) -> Option<usize> {
        self.input.as_ref().map(|i| i.stream)
    }

    /// When it last sent anything while publishing, unless it is held back on purpose.
    pub fn publish_idle_since(&self) -> Option<Instant> {
        let i = self.input.as_ref()?;
        match i.held_until {
            Some(_) => None,
            None => Some(i.last_input),
        }
    }

    /// Reads what has come (unless the feed is held), acts on it and writes the answers.
    pub fn on_ready(&mut self, ctx: &mut Ctx<'_>) -> Next {
        let mut next = Next::Continue;
        // Events left from the turn before (an unpublish had to reach its stream first).
        match self.events(ctx) {
            Flow::Go => {}
            Flow::Yield => return self.finish_turn(Next::Again, ctx),
            Flow::Close => return Next::Close,
        }
        for i in 0..=MAX_READS {
            if self.closing {
                break;
            }
            if i == MAX_READS {
                next = Next::Again;
                break;
            }
            if let Some(input) = self.input.as_mut() {
                match input.hold(ctx.now) {
                    Hold::Free => {}
                    Hold::Until(t) => {
                        next = Next::Hold(t);
                        break;
                    }
                    Hold::Still => break,
                }
            }
            let n = match read_some(&mut self.socket, ctx.scratch) {
                Ok(Some(0)) => {
                    // What it said before it hung up (a refusal, say) still goes out if it can.
                    let _ = self.flush(ctx);
                    self.end("publisher disconnected", true, ctx);
                    return Next::Close;
                }
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    log::info!("RTMP connection from {} failed: {e}", self.peer);
                    self.end("publisher disconnected", false, ctx);
                    return Next::Close;
                }
            };
            if let Err(e) = self.session.feed(&ctx.scratch[..n]) {
                log::warn!(
                    "RTMP connection from {}{}: {e}; closing",
                    self.peer,
                    self.about()
                );
                self.end(
                    &format!("the publisher broke the RTMP protocol: {e}"),
                    false,
                    ctx,
                );
                return Next::Close;
            }
            let flow = self.events(ctx);
            if let Some(input) = self.input.as_mut() {
                input.deliver(n, &mut self.pushes, ctx.now, ctx.media);
            }
            match flow {
                Flow::Go => {}
                Flow::Yield => {
                    next = Next::Again;
                    break;
                }
                Flow::Close => return Next::Close,
            }
        }
        self.finish_turn(next, ctx)
    }

    /// Writes the answers; closes once a refusal is out.
    fn finish_turn(&mut self, next: Next, ctx: &mut Ctx<'_>) -> Next {
        if self.flush(ctx) == Next::Close {
            self.end("publisher disconnected", false, ctx);
            return Next::Close;
        }
        if self.closing && self.session.output().is_empty() {
            return Next::Close;
        }
        next
    }

    /// " for NAME" once it asked for a name, for logs.
    fn about(&self) -> String {
        if self.name.is_empty() {
            String::new()
        } else {
            format!(" (publishing {})", self.name)
        }
    }

    /// Acts on the session's events. After an unpublish it stops (`Yield`): the stream must
    /// hear of it before a publish that came right behind is admitted.
    fn events(&mut self, ctx: &mut Ctx<'_>) -> Flow {
        while let Some(event) = self.session.poll_event() {
            if self.closing {
                break;
            }
            match event {
                RtmpEvent::Publish { app, name } => self.publish(&app, &name, ctx),
                RtmpEvent::Metadata(summary) if summary != self.metadata => {
                    log::info!("RTMP {}: metadata {summary}", self.name);
                    self.metadata = summary;
                }
                RtmpEvent::Metadata(_) => {}
                RtmpEvent::Unsupported(what) => log::warn!(
                    "RTMP publisher for {} sends {what}, which ssecast cannot mux: it is dropped",
                    self.name
                ),
                RtmpEvent::Unpublish => {
                    if let Some(mut input) = self.input.take() {
                        self.ingest.finish(&mut self.pushes);
                        input.deliver(0, &mut self.pushes, ctx.now, ctx.media);
                        log::info!(
                            "RTMP publisher for {} finished ({} bytes, {} fragments)",
                            self.name,
                            input.bytes_in,
                            input.fragments
                        );
                        ctx.media.push(Media {
                            stream: input.stream,
                            event: MediaEvent::End("publisher finished".into()),
                        });
                        self.idle_since = ctx.now;
                    }
                    self.session.end_publish();
                    return Flow::Yield;
                }
                media => {
                    let Some(input) = self.input.as_mut() else {
                        continue;
                    };
                    if let Err(e) = self.ingest.on_event(media, &mut self.pushes) {
                        log::warn!("RTMP publisher for {}: {e}; closing", self.name);
                        self.pushes.clear();
                        let stream = input.stream;
                        self.input = None;
                        ctx.media.push(Media {
                            stream,
                            event: MediaEvent::failed(&e),
                        });
                        return Flow::Close;
                    }
                    input.deliver(0, &mut self.pushes, ctx.now, ctx.media);
                }
            }
        }
        Flow::Go
    }

    /// Admits the publish of `name` (`NAME?key=KEY`), or refuses it and closes.
    fn publish(&mut self, app: &str, name: &str, ctx: &mut Ctx<'_>) {
        let (bare, key) = split_key(name);
        self.name = bare.to_string();
        let refused = match self.admit(bare, key, ctx) {
            Ok(stream) => {
                let key = ctx.streams.get_or_create(stream, ctx.now);
                if let Some(s) = ctx.streams.get_mut(key) {
                    s.publisher = Some(Publisher::Rtmp {
                        key: self.token.0,
                        id: self.id,
                    });
                    s.kind = Some(SourceKind::Rtmp);
                }
                self.ingest =
                    RtmpIngest::new(u64::try_from(ctx.ingest.part.as_nanos()).unwrap_or(u64::MAX));
                self.input = Some(LiveInput::new(key, ctx.now, ctx.ingest));
                self.session.accept_publish(bare);
                log::info!(
                    "RTMP publisher for {bare} connected from {} (app '{app}')",
                    self.peer
                );
                return;
            }
            Err(refused) => refused,
        };
        let (code, why) = refused;
        log::warn!(
            "RTMP publisher for {bare} from {} refused: {why}",
            self.peer
        );
        self.session.reject_publish(code, &why);
        self.closing = true;
    }

    fn admit(
        &self,
        name: &str,
        key: Option<&str>,
        ctx: &Ctx<'_>,
    ) -> Result<StreamName, (&'static str, String)> {
        const BAD_NAME: &str = "NetStream.Publish.BadName";
        const DENIED: &str = "NetStream.Publish.Denied";
        let stream = StreamName::parse(name).map_err(|e| (BAD_NAME, format!("'{name}': {e}")))?;
        match (ctx.publish_key, key) {
            (Some(want), Some(got)) if constant_time_eq(want, got.as_bytes()) => {}
            (Some(_), Some(_)) => return Err((DENIED, "wrong publish key".into())),
            (Some(_), None) => {
                return Err((
                    DENIED,
                    "this server needs a publish key: use the stream key NAME?key=KEY".into(),
                ))
            }
            (None, _) if self.peer.ip().is_loopback() => {}
            (None, _) => {
                return Err((
                    DENIED,
                    "publishing from another machine needs a key: start ssecast with \
                     --publish-key KEY and use the stream key NAME?key=KEY"
                        .into(),
                ))
            }
        }
        if let Some(s) = ctx.streams.find(&stream).and_then(|k| ctx.streams.get(k)) {
            if s.configured {
                return Err((
                    BAD_NAME,
                    format!(
                        "{name} is a {} stream from the command line and cannot be published over",
                        s.kind.map_or("configured", |k| k.as_str())
                    ),
                ));
            }
            if s.publisher.is_some() {
                return Err((BAD_NAME, format!("{name} already has a publisher")));
            }
        }
        Ok(stream)
    }

    /// Writes what the session has to say; asks for writability while some is left.
    fn flush(&mut self, ctx: &mut Ctx<'_>) -> Next {
        while !self.session.output().is_empty() {
            match self.socket.write(self.session.output()) {
                Ok(0) => return Next::Close,
                Ok(n) => self.session.consumed(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        let want = !self.session.output().is_empty();
        if want != self.wants_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if ctx
                .poll
                .reregister(&mut self.socket, self.token, interest)
                .is_err()
            {
                return Next::Close;
            }
            self.wants_write = want;
        }
        Next::Continue
    }

    /// The connection ends: a publish in progress ends with it (what the muxer holds goes out
    /// when the publisher closed cleanly) and its stream goes offline.
    pub fn end(&mut self, reason: &str, clean: bool, ctx: &mut Ctx<'_>) {
        let Some(mut input) = self.input.take() else {
            return;
        };
        if clean {
            self.ingest.finish(&mut self.pushes);
            input.deliver(0, &mut self.pushes, ctx.now, ctx.media);
        }
        self.pushes.clear();
        log::info!(
            "RTMP publisher for {} ended: {reason} ({} bytes, {} fragments)",
            self.name,
            input.bytes_in,
            input.fragments
        );
        ctx.media.push(Media {
            stream: input.stream,
            event: MediaEvent::End(reason.to_string()),
        });
    }
}
