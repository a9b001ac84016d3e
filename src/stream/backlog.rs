//! A stream's backlog: the frames that went live most recently, kept for new viewers (who start
//! at the newest keyframe) and reconnecting ones (who resume after their `Last-Event-ID`).
//!
//! A window in media time, never less than the newest keyframe and what followed it, under hard
//! caps in frames and bytes whatever the window says. Pure: time comes in as arguments.

use crate::sse::{EventId, Frame};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Hard caps on the backlog, whatever the window and even at the cost of its keyframe (a file
/// with keyframes minutes apart would otherwise keep a whole GOP in memory).
pub const MAX_BACKLOG_FRAMES: usize = 4096;
pub const MAX_BACKLOG_BYTES: usize = 64 << 20;

#[derive(Debug)]
pub struct Backlog {
    frames: VecDeque<(Instant, Rc<Frame>)>,
    /// Bytes and keyframes in `frames`, kept as it changes.
    bytes: usize,
    keyframes: usize,
    window: Duration,
}

impl Backlog {
    pub fn new(window: Duration) -> Backlog {
        Backlog {
            frames: VecDeque::new(),
            bytes: 0,
            keyframes: 0,
            window,
        }
    }

    /// Keeps a frame that went live at `now` and drops what fell out of the window.
    pub fn push(&mut self, now: Instant, frame: Rc<Frame>) {
        self.bytes += frame.len();
        self.keyframes += usize::from(frame.is_keyframe());
        self.frames.push_back((now, frame));
        self.trim(now);
    }

    /// Drops every frame (a stream that starts over with a new init segment, or goes offline).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.keyframes = 0;
    }

    /// Drops frames older than the window, keeping the newest keyframe and what follows it so a
    /// new viewer can start, unless the hard caps say otherwise.
    fn trim(&mut self, now: Instant) {
        while let Some((at, front)) = self.frames.front() {
            if self.frames.len() == 1 {
                break;
            }
            let old = now.saturating_duration_since(*at) > self.window;
            let over = self.frames.len() > MAX_BACKLOG_FRAMES || self.bytes > MAX_BACKLOG_BYTES;
            let later_key = self.keyframes > usize::from(front.is_keyframe());
            if !(over || (old && later_key)) {
                break;
            }
            self.bytes -= front.len();
            self.keyframes -= usize::from(front.is_keyframe());
            self.frames.pop_front();
        }
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes held by the frames.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What a viewer gets after `init`: with a `Last-Event-ID` still in the window, everything
    /// after it (no gap, `resumed` is true); otherwise the newest keyframe fragment and what
    /// followed it, or nothing when the backlog holds no keyframe (the viewer then waits for
    /// the next one).
    pub fn start_frames(&self, last: Option<EventId>) -> (bool, impl Iterator<Item = &Rc<Frame>>) {
        let resume_at = last.and_then(|id| {
            self.frames
                .iter()
                .position(|(_, f)| id.matches(f))
                .map(|i| i + 1)
        });
        let (resumed, from) = match resume_at {
            Some(i) => (true, i),
            None => (
                false,
                self.frames
                    .iter()
                    .rposition(|(_, f)| f.is_keyframe())
                    .unwrap_or(self.frames.len()),
            ),
        };
        (resumed, self.frames.iter().skip(from).map(|(_, f)| f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::data_frame;

    fn frames(b: &Backlog, last: Option<EventId>) -> (bool, Vec<u64>) {
        let (resumed, f) = b.start_frames(last);
        (resumed, f.filter_map(|f| f.sequence()).collect())
    }

    #[test]
    fn window_keeps_the_newest_gop_and_resume_has_no_gap() {
        let t0 = Instant::now();
        let mut b = Backlog::new(Duration::from_secs(3));
        for i in 1..=10u64 {
            let key = i % 4 == 1;
            b.push(t0 + Duration::from_secs(i), data_frame(i, 100, key, b"x"));
        }
        // Keyframes at 1, 5, 9; the window (3 s) reaches back to 7, the GOP from 9 is newest.
        assert_eq!(frames(&b, None), (false, vec![9, 10]));
        assert!(b.len() <= 4, "{}", b.len());
        let id = EventId {
            sequence: 8,
            live_ms: 100,
        };
        assert_eq!(frames(&b, Some(id)), (true, vec![9, 10]));
        let stale = EventId {
            sequence: 8,
            live_ms: 99,
        };
        assert!(!frames(&b, Some(stale)).0, "same sequence from another run");
        b.clear();
        assert!(b.is_empty() && b.bytes() == 0);
        assert_eq!(frames(&b, None), (false, vec![]));
    }

    #[test]
    fn hard_caps_win_over_keeping_a_keyframe() {
        let t0 = Instant::now();
        let mut b = Backlog::new(Duration::from_secs(3600));
        b.push(t0, data_frame(0, 0, true, b"k"));
        for i in 1..=(MAX_BACKLOG_FRAMES as u64 + 10) {
            b.push(t0, data_frame(i, 0, false, b"x"));
        }
        assert_eq!(b.len(), MAX_BACKLOG_FRAMES);
        assert_eq!(
            frames(&b, None).1.len(),
            0,
            "nothing to start a viewer with"
        );
    }
}
