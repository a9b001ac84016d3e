//! The playout clock of a file stream: releases the movie's fragments in real time (or N× real
//! time) and loops at the end with the timeline moved on, so players never see time go
//! backwards. Each fragment is rendered once per pass (its `tfdt` and `mfhd` rewritten) into a
//! buffer the stream then encodes once for every viewer.
//!
//! Pure: time comes in as arguments and the file bytes come in as a slice, so pacing is tested
//! with an injected clock.

use crate::mp4::{render_fragment, Movie};
use crate::sse::StreamInfo;
use std::ops::Range;
use std::time::{Duration, Instant};

/// If the clock is this far past a fragment's release time (the process was stopped, or the
/// machine stalled), the timeline is re-anchored instead of bursting every missed fragment.
const MAX_LATENESS: Duration = Duration::from_secs(2);

pub struct Playout {
    movie: Movie,
    info: StreamInfo,
    speed: u32,
    /// Completed passes over the file.
    loops: u64,
    /// Index of the next fragment to release.
    next: usize,
    /// The instant the file's first fragment (loop 0) went, or would have gone, live.
    anchor: Instant,
    scratch: Vec<u8>,
    /// A 32-bit tfdt has wrapped (warned once).
    wrapped: bool,
    /// Where in the file the last fragment released came from.
    released: Range<usize>,
}

impl Playout {
    /// A playout whose first fragment goes live at `start`.
    pub fn new(movie: Movie, start: Instant, speed: u32) -> Playout {
        let (w, h) = movie.resolution().unwrap_or((0, 0));
        let secs = movie.duration_secs();
        let bitrate = if secs > 0.0 {
            (movie.fragment_bytes() as f64 * 8.0 / secs) as u64
        } else {
            0
        };
        let info = StreamInfo {
            mime: movie.mime(),
            width: w,
            height: h,
            bitrate,
            duration_secs: secs,
        };
        Playout {
            movie,
            info,
            speed: speed.max(1),
            loops: 0,
            next: 0,
            anchor: start,
            scratch: Vec::new(),
            wrapped: false,
            released: 0..0,
        }
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    pub fn movie(&self) -> &Movie {
        &self.movie
    }

    /// Timescales of the movie's tracks.
    pub fn timescales(&self) -> Vec<u32> {
        self.movie.tracks.iter().map(|t| t.timescale).collect()
    }

    /// The bytes of the file the last released fragment was rendered from (see
    /// [`Fragment::range`](crate::mp4::Fragment)): done with until the next pass.
    pub fn released(&self) -> Range<usize> {
        self.released.clone()
    }

    /// Completed passes over the file.
    pub fn loops(&self) -> u64 {
        self.loops
    }

    /// Offset of fragment `index` of pass `loops` from the anchor, at the playout speed.
    fn offset(&self, loops: u64, index: usize) -> Duration {
        let (period, period_ts) = self.movie.loop_period();
        let (start, ts) = self.movie.fragment_start(index);
        let nanos = u128::from(loops) * u128::from(period) * 1_000_000_000
            / u128::from(period_ts.max(1))
            + u128::from(start) * 1_000_000_000 / u128::from(ts.max(1));
        let nanos = nanos / u128::from(self.speed);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When the next fragment goes live.
    pub fn next_due(&self) -> Instant {
        self.anchor + self.offset(self.loops, self.next)
    }

    /// Releases the next fragment if it is due at `now`: renders it from `data` (the bytes the
    /// movie was parsed from) with its loop's timeline and `sequence` in its `mfhd`, and returns
    /// the rendered bytes and whether it starts with a keyframe. Call until it returns `None`.
    pub fn poll(&mut self, now: Instant, sequence: u64, data: &[u8]) -> Option<(&[u8], bool)> {
        let due = self.next_due();
        if now < due {
            return None;
        }
        let late = now - due;
        if late > MAX_LATENESS {
            log::warn!(
                "playout is {:.1}s behind its clock; skipping ahead instead of bursting",
                late.as_secs_f64()
            );
            self.anchor += late;
        }
        let index = self.next;
        // mfhd sequence numbers are 32-bit; they only need to keep increasing within a session.
        let mfhd_seq = (sequence & u64::from(u32::MAX)) as u32;
        if !render_fragment(
            &self.movie,
            data,
            index,
            self.loops,
            mfhd_seq,
            &mut self.scratch,
        ) && !self.wrapped
        {
            self.wrapped = true;
            log::warn!(
                "the file's 32-bit (version 0) tfdt wrapped at loop {}: players will see time jump back",
                self.loops
            );
        }
        let keyframe = self.movie.fragments[index].keyframe;
        self.released = self.movie.fragments[index].range.clone();
        self.next += 1;
        if self.next == self.movie.fragments.len() {
            self.next = 0;
            self.loops += 1;
        }
        Some((&self.scratch, keyframe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::fragment_times;

    const SAMPLE: &[u8] = include_bytes!("../../web/sample.mp4");

    fn playout(start: Instant, speed: u32) -> Playout {
        let movie = Movie::parse(SAMPLE).unwrap();
        Playout::new(movie, start, speed)
    }

    /// When fragment `i` of the first pass starts, in media time.
    fn media(p: &Playout, i: usize) -> Duration {
        let (t, ts) = p.movie().fragment_start(i);
        Duration::from_nanos(t * 1_000_000_000 / u64::from(ts))
    }

    #[test]
    fn releases_fragments_at_their_media_time() {
        let t0 = Instant::now();
        let mut p = playout(t0, 1);
        let (bytes, keyframe) = p.poll(t0, 1, SAMPLE).unwrap();
        assert!(keyframe);
        assert_eq!(fragment_times(bytes).unwrap().0, 1);
        assert!(
            p.poll(t0, 2, SAMPLE).is_none(),
            "second fragment is not due yet"
        );
        let second = t0 + media(&p, 1);
        assert!(
            media(&p, 1) > Duration::from_millis(990),
            "fragments are about 1 s"
        );
        assert_eq!(p.next_due(), second);
        assert!(p
            .poll(second - Duration::from_millis(1), 2, SAMPLE)
            .is_none());
        let (bytes, _) = p.poll(second, 2, SAMPLE).unwrap();
        assert_eq!(fragment_times(bytes).unwrap().0, 2);
    }

    #[test]
    fn speed_divides_the_pace() {
        let t0 = Instant::now();
        let mut p = playout(t0, 4);
        p.poll(t0, 1, SAMPLE).unwrap();
        assert_eq!(p.next_due(), t0 + media(&p, 1) / 4);
    }

    #[test]
    fn loops_forever_with_increasing_times_and_sequence() {
        let t0 = Instant::now();
        let mut p = playout(t0, 1);
        let mut last_times: Option<Vec<u64>> = None;
        let mut now = t0;
        for n in 1..=20u64 {
            now = now.max(p.next_due());
            let (bytes, _) = p.poll(now, n, SAMPLE).expect("due");
            let (seq, times) = fragment_times(bytes).unwrap();
            assert_eq!(u64::from(seq), n);
            if let Some(prev) = &last_times {
                for (a, b) in prev.iter().zip(&times) {
                    assert!(b > a, "time went backwards at fragment {n}: {a} -> {b}");
                }
            }
            last_times = Some(times);
        }
        assert_eq!(p.loops(), 3);
        // 20 fragments are 3 passes of 6 plus 2: the 21st is due 3 loop periods plus the
        // media time of the sample's third fragment after the start.
        let (period, ts) = p.movie().loop_period();
        let loop_len = Duration::from_nanos(period * 1_000_000_000 / u64::from(ts));
        let want = loop_len * 3 + media(&p, 2);
        let got = p.next_due() - t0;
        assert!(
            got.abs_diff(want) < Duration::from_micros(1),
            "{got:?} vs {want:?}"
        );
    }

    #[test]
    fn a_stalled_clock_skips_ahead_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = playout(t0, 1);
        p.poll(t0, 1, SAMPLE).unwrap();
        let late = t0 + Duration::from_secs(60);
        assert!(p.poll(late, 2, SAMPLE).is_some());
        assert!(
            p.poll(late, 3, SAMPLE).is_none(),
            "no burst of missed fragments"
        );
        assert_eq!(p.next_due(), late + (media(&p, 2) - media(&p, 1)));
    }
}
