//! Holds a publisher to real time by its own timestamps, so one that sends faster than real time
//! (a file pushed without `-re`, `cat file.mp4 |`) cannot fill memory or run the stream ahead.
//!
//! The rule: the first fragment of a session anchors media time to the clock. A fragment whose
//! media time is more than [`MAX_LEAD`] ahead of the clock since the anchor makes the source stop
//! reading until it is only `MAX_LEAD` ahead, so TCP (or the pipe) pushes back on the sender.
//! Fragments are never held back themselves: each goes live the moment it is complete. A
//! real-time encoder is never ahead, and one that stalls and then bursts to catch up is behind
//! its anchor, so neither is ever paused. Timestamps that jump by more than [`MAX_JUMP`] either
//! way (a restarted clock, a long stall) re-anchor instead of pausing for that long.
//!
//! Pure: the clock is passed in.

use std::time::{Duration, Instant};

/// How far ahead of real time a publisher may run before it is no longer read.
pub const MAX_LEAD: Duration = Duration::from_secs(2);
/// A jump in media time (against the clock) larger than this re-anchors.
pub const MAX_JUMP: Duration = Duration::from_secs(30);

/// What the source should do after a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Keep reading.
    Go,
    /// Stop reading until this instant.
    HoldUntil(Instant),
}

#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// (clock, media ns) at the anchor.
    anchor: Option<(Instant, u64)>,
    /// Times the anchor was reset by a jump.
    pub reanchored: u64,
}

impl Pacer {
    /// A fragment starting at `media_ns` (its own timeline, in nanoseconds) was received at
    /// `now`.
    pub fn on_fragment(&mut self, now: Instant, media_ns: u64) -> Pace {
        let Some((at, media0)) = self.anchor else {
            self.anchor = Some((now, media_ns));
            return Pace::Go;
        };
        let wall = now.saturating_duration_since(at);
        let media = Duration::from_nanos(media_ns.saturating_sub(media0));
        let jumped_back = media_ns < media0;
        if jumped_back || media > wall + MAX_JUMP || wall > media + MAX_JUMP {
            self.anchor = Some((now, media_ns));
            self.reanchored += 1;
            return Pace::Go;
        }
        if media > wall + MAX_LEAD {
            Pace::HoldUntil(at + (media - MAX_LEAD))
        } else {
            Pace::Go
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_real_time_source_is_never_held() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i * 200 + (i % 3) * 40);
            assert_eq!(
                p.on_fragment(now, 5 * S + i * S / 5),
                Pace::Go,
                "fragment {i}"
            );
        }
    }

    #[test]
    fn a_fast_source_is_held_to_real_time_plus_the_lead() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        // All of 10 s of media arrives at once.
        let mut holds = Vec::new();
        for i in 0..=10u64 {
            holds.push(p.on_fragment(t0, i * S));
        }
        assert!(holds[..=2].iter().all(|h| *h == Pace::Go));
        assert_eq!(holds[3], Pace::HoldUntil(t0 + Duration::from_secs(1)));
        assert_eq!(holds[10], Pace::HoldUntil(t0 + Duration::from_secs(8)));
    }

    #[test]
    fn a_burst_after_a_stall_is_not_held() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        p.on_fragment(t0, 0);
        // Nothing for 5 s, then 5 s of media at once: it catches up, never ahead.
        let later = t0 + Duration::from_secs(5);
        for i in 1..=5 {
            assert_eq!(p.on_fragment(later, i * S), Pace::Go);
        }
        assert_eq!(
            p.on_fragment(later, 8 * S),
            Pace::HoldUntil(t0 + Duration::from_secs(6))
        );
    }

    #[test]
    fn jumps_reanchor() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        p.on_fragment(t0, 1000 * S);
        assert_eq!(p.on_fragment(t0, 5000 * S), Pace::Go, "forward jump");
        assert_eq!(p.on_fragment(t0, 10 * S), Pace::Go, "backward jump");
        assert_eq!(p.reanchored, 2);
        assert_eq!(
            p.on_fragment(t0, 13 * S),
            Pace::HoldUntil(t0 + Duration::from_secs(1))
        );
    }
}
