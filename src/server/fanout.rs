//! Applying what sources yield to their streams and handing the result to viewers: file
//! playouts releasing fragments on their clock, live feeds starting sessions, sending fragments
//! (shifted onto the stream's timeline) and ending, and keepalives. The fan-out walks one
//! stream's own viewers: a refcount and, for viewers not already behind, one vectored write each.
//!
//! Fragments of one stream that go live in the same loop turn are handed to each viewer
//! together, so each viewer gets one `writev` for the lot. With short parts (a frame each) and
//! many viewers the fan-out of one part can take longer than a part lasts; the parts that came in
//! meanwhile are then read in one go and go out in one write per viewer, so the cost of a turn
//! stays about one write per viewer however far behind it is: delay grows a little, nothing is
//! dropped, and the loop catches up instead of falling further behind.

use super::{Server, ServerError};
use crate::conn::Next;
use crate::mp4::shift_decode_times;
use crate::source::{Media, MediaEvent};
use crate::sse::{Frame, StreamInfo};
use crate::stream::timeline::Run;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Most fragments a file releases in one loop iteration (the playout re-anchors if it falls
/// further behind, so this only bounds a burst).
const MAX_RELEASES_PER_TICK: usize = 64;

/// Most fragments handed to viewers together: what one `writev` of a viewer's queue takes.
const MAX_BATCH: usize = 32;

/// Fragments of one stream that went live in this loop turn and are not yet handed to its
/// viewers (the buffer is kept, so the steady state allocates nothing).
#[derive(Debug, Default)]
pub(super) struct LiveBatch {
    stream: usize,
    frames: Vec<Rc<Frame>>,
}

/// What kind of frame a fan-out carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A fragment, under the queue's backpressure policy.
    Data,
    /// `init` of a new session: always delivered; viewers then wait for a keyframe.
    Init,
    /// `offline`: always delivered.
    Control,
    /// Only to viewers with nothing waiting.
    Keepalive,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Server {
    pub(super) fn release_fragments(&mut self, now: Instant) -> Result<(), ServerError> {
        for i in 0..self.files.len() {
            for n in 0..=MAX_RELEASES_PER_TICK {
                let file = &mut self.files[i];
                if now < file.playout.next_due() {
                    break;
                }
                if n == MAX_RELEASES_PER_TICK {
                    log::warn!("released {n} fragments of a file in one turn; the rest follow");
                    break;
                }
                file.video.check()?;
                let key = file.stream;
                let Some(stream) = self.shared.streams.get_mut(key) else {
                    break;
                };
                let Some((bytes, keyframe)) =
                    file.playout
                        .poll(now, stream.sequence() + 1, file.video.bytes())
                else {
                    break;
                };
                let frame = stream.go_live(bytes, keyframe, now, wall_ms());
                self.stats.fragments += 1;
                self.fan_out(key, std::slice::from_ref(&frame), Kind::Data, now);
                let file = &self.files[i];
                file.video.release(file.playout.released());
            }
        }
        Ok(())
    }

    /// Applies every event sources queued, and whatever the fan-outs queued in turn. Fragments
    /// of one stream in a row go to its viewers together; any other event first sends what came
    /// before it, so every viewer sees the events in order.
    pub(super) fn apply_media(&mut self, now: Instant) {
        while !self.shared.media.is_empty() {
            let batch = std::mem::take(&mut self.shared.media);
            for m in batch {
                let batched = &self.live_batch;
                if !batched.frames.is_empty()
                    && (batched.stream != m.stream
                        || batched.frames.len() == MAX_BATCH
                        || !matches!(
                            m.event,
                            MediaEvent::Fragment(_) | MediaEvent::RelayFragment(_)
                        ))
                {
                    self.send_live_batch(now);
                }
                self.apply(m, now);
            }
            self.send_live_batch(now);
        }
    }

    /// Hands the fragments collected in [`LiveBatch`] to their stream's viewers.
    fn send_live_batch(&mut self, now: Instant) {
        let mut frames = std::mem::take(&mut self.live_batch.frames);
        if !frames.is_empty() {
            self.stats.batched += frames.len() as u64 - 1;
            self.fan_out(self.live_batch.stream, &frames, Kind::Data, now);
            frames.clear();
        }
        self.live_batch.frames = frames;
    }

    /// Applies one event; a fragment goes live and joins the [`LiveBatch`] (which
    /// `apply_media` sends).
    fn apply(&mut self, m: Media, now: Instant) {
        let key = m.stream;
        let Some(stream) = self.shared.streams.get_mut(key) else {
            return;
        };
        match m.event {
            MediaEvent::Init(init) => {
                let (width, height) = init.resolution().unwrap_or((0, 0));
                let info = StreamInfo {
                    mime: init.mime(),
                    width,
                    height,
                    bitrate: 0,
                    duration_secs: 0.0,
                };
                log::info!(
                    "stream {} is live: {} | {width}x{height}{}",
                    stream.name,
                    info.mime,
                    if stream.sessions > 0 {
                        format!(" (session {}, timeline continues)", stream.sessions + 1)
                    } else {
                        String::new()
                    }
                );
                stream.publish_bytes += init.bytes.len() as u64;
                let timescales = init.tracks.iter().map(|t| t.timescale).collect();
                let frame = stream.start_session(info, &init.bytes, timescales, now);
                self.shared.streams.went_live(key);
                self.fan_out(key, std::slice::from_ref(&frame), Kind::Init, now);
            }
            MediaEvent::Fragment(mut f) => {
                stream.publish_bytes += f.bytes.len() as u64;
                if !stream.is_live() {
                    return;
                }
                let runs = Run::of(&f.fragment);
                let shifts = stream.place(&runs);
                if shifts.iter().any(|&s| s != 0)
                    && !shift_decode_times(&mut f.bytes, &f.fragment, shifts)
                {
                    log::warn!(
                        "stream {}: a 32-bit (version 0) tfdt wrapped; players will see time jump",
                        stream.name
                    );
                }
                let frame = stream.go_live(&f.bytes, f.fragment.keyframe, now, wall_ms());
                self.stats.fragments += 1;
                debug_assert!(
                    self.live_batch.frames.is_empty() || self.live_batch.stream == key,
                    "a batch holds one stream's fragments"
                );
                self.live_batch.stream = key;
                self.live_batch.frames.push(frame);
            }
            MediaEvent::End(reason) => self.end_source(key, &reason, now),
            MediaEvent::Offline(reason) => {
                if stream.is_live() {
                    log::info!("stream {} is offline: {reason}", stream.name);
                    let frame = stream.go_offline(&reason, now);
                    self.fan_out(key, std::slice::from_ref(&frame), Kind::Control, now);
                }
            }
            MediaEvent::RelayInit {
                frame,
                info,
                timescales,
            } => {
                log::info!("stream {} is live (relayed): {}", stream.name, info.mime);
                stream.start_relayed_session(Rc::clone(&frame), info, timescales, now);
                self.shared.streams.went_live(key);
                self.fan_out(key, std::slice::from_ref(&frame), Kind::Init, now);
            }
            MediaEvent::RelayFragment(frame) => {
                if !stream.is_live() {
                    return;
                }
                stream.publish_bytes += frame.len() as u64;
                stream.go_live_relayed(&frame, now);
                self.stats.fragments += 1;
                self.live_batch.stream = key;
                self.live_batch.frames.push(frame);
            }
        }
    }

    /// The stream's source stopped: it goes offline (its viewers are told and stay).
    pub(super) fn end_source(&mut self, key: usize, reason: &str, now: Instant) {
        let Some(stream) = self.shared.streams.get_mut(key) else {
            return;
        };
        stream.publisher = None;
        if stream.is_live() {
            log::info!("stream {} is offline: {reason}", stream.name);
            let frame = stream.go_offline(reason, now);
            self.fan_out(key, std::slice::from_ref(&frame), Kind::Control, now);
        }
        self.shared.streams.forget_if_unused(key, now);
    }

    /// Hands frames to every viewer of one stream: data fragments (one or a batch), or one
    /// control frame.
    pub(super) fn fan_out(&mut self, key: usize, frames: &[Rc<Frame>], kind: Kind, now: Instant) {
        debug_assert!(
            kind == Kind::Data || frames.len() == 1,
            "control frames go out one at a time"
        );
        let (Some(frame), Some(stream)) = (frames.first(), self.shared.streams.get_mut(key)) else {
            return;
        };
        stream.last_output = now;
        // The viewer keys are copied out so the connections can be reached while the registry
        // is lent to them; the buffer is kept, so the steady state allocates nothing.
        let mut keys = std::mem::take(&mut self.fanout_keys);
        keys.clear();
        keys.extend(stream.viewers.iter().map(|(_, &k)| k));
        let mut ctx = self.shared.ctx(now);
        for &k in &keys {
            let Some(conn) = self.conns.get_mut(k) else {
                continue;
            };
            let next = match kind {
                Kind::Data => conn.deliver(frames, &mut ctx),
                Kind::Init => conn.send_control(frame, true, &mut ctx),
                Kind::Control => conn.send_control(frame, false, &mut ctx),
                Kind::Keepalive => conn.keepalive(frame, &mut ctx),
            };
            match next {
                Next::Continue | Next::Hold(_) => {}
                Next::Again => self.again.push((k, conn.id)),
                Next::Close => self.to_close.push(k),
            }
        }
        self.fanout_keys = keys;
        let mut to_close = std::mem::take(&mut self.to_close);
        for k in to_close.drain(..) {
            self.close(k, now);
        }
        self.to_close = to_close;
    }

    /// Keepalive comments to the viewers of streams that were silent for a while.
    pub(super) fn keepalives(&mut self, now: Instant) {
        let after = self.keepalive_after;
        let due: Vec<usize> = self
            .shared
            .streams
            .iter()
            .filter(|(_, s)| !s.viewers.is_empty() && now >= s.last_output + after)
            .map(|(k, _)| k)
            .collect();
        let frame = Rc::clone(&self.keepalive);
        for key in due {
            self.fan_out(key, std::slice::from_ref(&frame), Kind::Keepalive, now);
        }
    }
}
