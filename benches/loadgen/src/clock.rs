//! The run's clock: microseconds since the first connect (monotonic) and the matching wall-clock
//! time, both from one `Instant` read, so the hot path pays for one clock call per read.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A moment of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Microseconds since the run started (monotonic).
    pub mono_us: u64,
    /// Unix time in microseconds, derived from the monotonic clock and the wall clock at start
    /// (a wall-clock step during the run does not distort latencies).
    pub wall_us: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    wall_start_us: u64,
}

impl Clock {
    pub fn start() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Clock {
            start: Instant::now(),
            wall_start_us: wall,
        }
    }

    pub fn now(&self) -> Now {
        let mono_us = self.start.elapsed().as_micros() as u64;
        Now {
            mono_us,
            wall_us: self.wall_start_us + mono_us,
        }
    }
}
