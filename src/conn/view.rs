//! The viewer side of a connection: joining a stream (response head, then `init` and the backlog
//! from the right point, or `offline`), taking live frames under the queue's backpressure
//! policy, keepalives, and the status JSON of `/api/streams`.

use super::{Connection, Ctx, Next, Phase, ViewerSlot};
use crate::http::responses::response;
use crate::http::Status;
use crate::sse::{EventId, Frame, KEEPALIVE};
use crate::stream::{StreamName, Welcome};
use std::rc::Rc;

/// Ring slots reserved for a viewer up front, so the steady state never grows the queue.
const VIEWER_QUEUE_SLOTS: usize = 8;

impl Connection {
    /// Starts streaming `stream` (the default stream for `None`) to this viewer, compressed
    /// when it accepts gzip (`gzip`) and the server offers it.
    pub(super) fn start_view(
        &mut self,
        stream: Option<StreamName>,
        last_event_id: Option<EventId>,
        gzip: bool,
        head_only: bool,
        ctx: &mut Ctx<'_>,
    ) -> Next {
        let compressed = gzip && ctx.responses.compresses();
        if head_only {
            let head = Rc::clone(ctx.responses.stream_head(compressed, true));
            return self.respond(head, ctx);
        }
        let key = match stream {
            Some(name) => Some(ctx.streams.get_or_create(name, ctx.now)),
            None => ctx.streams.default_key(),
        };
        let Some(s) = key.and_then(|k| ctx.streams.get_mut(k).map(|s| (k, s))) else {
            let r = ctx
                .responses
                .refusal(crate::http::Status::NotFound, "no such stream", false);
            return self.respond(r, ctx);
        };
        let (stream_key, s) = s;
        let slot = s.viewers.insert(self.token.0);
        self.viewer = Some(ViewerSlot {
            stream: stream_key,
            slot,
        });
        self.queue.reserve(VIEWER_QUEUE_SLOTS);
        if compressed {
            self.queue.send_compressed();
            s.compressed_viewers += 1;
        }
        self.queue
            .push_control(Rc::clone(ctx.responses.stream_head(compressed, false)));
        match s.welcome(last_event_id) {
            Welcome::Live {
                init,
                resumed,
                frames,
            } => {
                self.queue.push_control(Rc::clone(init));
                let mut started = false;
                for f in frames {
                    self.queue.offer(f);
                    started = true;
                }
                if !started && !resumed {
                    self.queue.wait_for_keyframe();
                }
                if last_event_id.is_some() {
                    log::debug!(
                        "viewer of {} reconnected: {}",
                        s.name,
                        if resumed {
                            "resumed"
                        } else {
                            "too old, starts live"
                        }
                    );
                }
            }
            Welcome::Offline(offline) => self.queue.push_control(Rc::clone(offline)),
        }
        self.phase = Phase::Stream;
        self.last_progress = ctx.now;
        self.flush(ctx)
    }

    /// Offers new live fragments (one, or several that went live in the same loop turn) to a
    /// viewer, then writes them together: one `writev` for the lot when it was idle.
    pub fn deliver(&mut self, frames: &[Rc<Frame>], ctx: &mut Ctx<'_>) -> Next {
        if self.phase != Phase::Stream {
            return Next::Continue;
        }
        let idle = self.queue.is_empty();
        if !idle && ctx.now.saturating_duration_since(self.last_progress) > ctx.stall_timeout {
            log::info!(
                "disconnecting a viewer stuck for {}s with {} bytes unsent",
                ctx.stall_timeout.as_secs(),
                self.queue.pending()
            );
            ctx.metrics.stalled += 1;
            return Next::Close;
        }
        let skipped_before = self.queue.total_skipped;
        for frame in frames {
            self.queue.offer(frame);
        }
        if self.queue.total_skipped != skipped_before {
            if let Some(s) = self.viewer.and_then(|v| ctx.streams.get_mut(v.stream)) {
                s.skipped += self.queue.total_skipped - skipped_before;
                s.viewers_skipped += u64::from(skipped_before == 0);
            }
        }
        // A viewer with output already waiting has WRITABLE interest and drains on that event;
        // writing to it now would only return WouldBlock.
        if idle {
            self.flush(ctx)
        } else {
            Next::Continue
        }
    }

    /// Sends a frame every viewer must get whatever its queue holds (`init`, `offline`); after
    /// an `init` the viewer takes nothing until a keyframe, so a new session never starts
    /// mid-GOP.
    pub fn send_control(
        &mut self,
        frame: &Rc<Frame>,
        new_session: bool,
        ctx: &mut Ctx<'_>,
    ) -> Next {
        if self.phase != Phase::Stream {
            return Next::Continue;
        }
        let idle = self.queue.is_empty();
        self.queue.push_control(Rc::clone(frame));
        if new_session {
            self.queue.wait_for_keyframe();
        }
        if idle {
            self.flush(ctx)
        } else {
            Next::Continue
        }
    }

    /// Sends a keepalive comment to a viewer with nothing else waiting.
    pub fn keepalive(&mut self, frame: &Rc<Frame>, ctx: &mut Ctx<'_>) -> Next {
        if self.phase != Phase::Stream || !self.queue.is_empty() {
            return Next::Continue;
        }
        debug_assert_eq!(&*frame.bytes, KEEPALIVE, "keepalive frame expected");
        self.queue.push_control(Rc::clone(frame));
        self.flush(ctx)
    }
}

/// `GET /api/streams` (every stream) or `/api/streams/NAME`: status JSON, 404 for a name
/// that is not a stream.
pub(super) fn status(ctx: &Ctx<'_>, name: Option<StreamName>, head_only: bool) -> Rc<Frame> {
    let only = match name {
        None => None,
        Some(n) => match ctx.streams.find(&n) {
            Some(k) => Some(k),
            None => {
                return ctx
                    .responses
                    .refusal(Status::NotFound, "no such stream", head_only)
            }
        },
    };
    let body = crate::metrics::status_json(ctx.streams, only, ctx.now);
    response(
        200,
        "OK",
        "application/json",
        "Access-Control-Allow-Origin: *\r\n",
        body.as_bytes(),
        head_only,
    )
}
