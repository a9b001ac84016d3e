//! A live stream's timeline across publisher sessions: decode times only ever grow on a stream,
//! so when a publisher comes back (its clock starting over, or anywhere else) its fragments are
//! shifted, per track, to continue exactly where the last session ended. The first session is
//! left as it is, byte for byte.
//!
//! Pure: runs (track, decode time, duration) and timescales in, per-track shifts out.

use crate::mp4::Fragment;

const NS: u128 = 1_000_000_000;

/// One track run of a fragment, as far as the timeline cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub track: usize,
    pub decode_time: u64,
    pub duration: u64,
}

impl Run {
    /// The runs of a parsed fragment.
    pub fn of(f: &Fragment) -> Vec<Run> {
        f.runs
            .iter()
            .map(|r| Run {
                track: r.track,
                decode_time: r.decode_time,
                duration: r.duration,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Where everything delivered so far ends, in ns; `None` before the first fragment.
    end_ns: Option<u128>,
    /// The current session's shift per track, added modulo 2^64 (so it can move times back);
    /// `None` until its first fragment.
    shifts: Option<Vec<u64>>,
}

impl Timeline {
    /// A new publisher session begins: its first fragment decides its shifts.
    pub fn start_session(&mut self) {
        self.shifts = None;
    }

    /// The shifts (ticks, per track of the session's init segment, to be added modulo 2^64)
    /// that place this fragment's runs on the stream's timeline, and notes where it ends.
    pub fn place(&mut self, runs: &[Run], timescales: &[u32]) -> &[u64] {
        let shifts = match self.shifts.take() {
            Some(s) => s,
            None => self.session_shifts(runs, timescales),
        };
        for r in runs {
            let ts = u128::from(timescales.get(r.track).copied().unwrap_or(1).max(1));
            let shift = shifts.get(r.track).copied().unwrap_or(0);
            let end = u128::from(r.decode_time.wrapping_add(shift)) + u128::from(r.duration);
            let end_ns = end * NS / ts;
            self.end_ns = Some(self.end_ns.map_or(end_ns, |e| e.max(end_ns)));
        }
        self.shifts.insert(shifts)
    }

    fn session_shifts(&self, runs: &[Run], timescales: &[u32]) -> Vec<u64> {
        let Some(end_ns) = self.end_ns else {
            return vec![0; timescales.len()];
        };
        let ns = |r: &Run| {
            let ts = u128::from(timescales.get(r.track).copied().unwrap_or(1).max(1));
            u128::from(r.decode_time) * NS / ts
        };
        let base_ns = runs.iter().map(ns).min().unwrap_or(0);
        timescales
            .iter()
            .map(|&ts| {
                let ts = u128::from(ts.max(1));
                // Round the target up so a track never overlaps its own past.
                let target = (end_ns * ts).div_ceil(NS);
                let base = base_ns * ts / NS;
                (target as u64).wrapping_sub(base as u64)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(track: usize, decode_time: u64, duration: u64) -> Run {
        Run {
            track,
            decode_time,
            duration,
        }
    }

    #[test]
    fn first_session_is_untouched() {
        let mut t = Timeline::default();
        assert_eq!(
            t.place(
                &[run(0, 5000, 90_000), run(1, 0, 48_000)],
                &[90_000, 48_000]
            ),
            [0, 0]
        );
        assert_eq!(
            t.place(&[run(0, 95_000, 90_000)], &[90_000, 48_000]),
            [0, 0]
        );
    }

    #[test]
    fn a_restarted_publisher_continues_where_the_last_one_ended() {
        let mut t = Timeline::default();
        let ts = [90_000, 48_000];
        t.place(&[run(0, 0, 90_000), run(1, 0, 48_000)], &ts);
        t.place(&[run(0, 90_000, 90_000), run(1, 48_000, 48_000)], &ts);
        // Ends at 2 s. The new session starts its clock at 0 again, with other timescales.
        t.start_session();
        let ts2 = [15_360, 44_100];
        let s = t
            .place(&[run(0, 0, 15_360), run(1, 0, 44_100)], &ts2)
            .to_vec();
        assert_eq!(s, vec![2 * 15_360, 2 * 44_100]);
        // A third session whose clock is ahead (starts at 100 s): shifted back to 3 s.
        t.start_session();
        let s = t
            .place(
                &[
                    run(0, 100 * 90_000, 90_000),
                    run(1, 100 * 48_000 + 10, 48_000),
                ],
                &ts,
            )
            .to_vec();
        assert_eq!(s[0].wrapping_add(100 * 90_000), 3 * 90_000);
        assert_eq!(s[1].wrapping_add(100 * 48_000), 3 * 48_000);
        // Times within the session keep their spacing.
        let s2 = t.place(&[run(0, 101 * 90_000, 90_000)], &ts).to_vec();
        assert_eq!(s2, s);
    }

    #[test]
    fn end_is_the_latest_track() {
        let mut t = Timeline::default();
        // Audio runs 0.5 s longer than video.
        t.place(&[run(0, 0, 90_000), run(1, 0, 72_000)], &[90_000, 48_000]);
        t.start_session();
        let s = t.place(&[run(0, 0, 1)], &[90_000, 48_000]).to_vec();
        assert_eq!(s, vec![135_000, 72_000]);
    }
}
