//! Fan-out spread: for each distinct event id, how long after the first client finished receiving
//! it the last one did. It only needs ids to be equal on every client, so it works against any
//! server. Timing and event ids come from the caller; this module does no I/O.
//!
//! Only clients that were already streaming when an id first arrived anywhere are counted for it,
//! so the catch-up fragment a newly joined client receives does not count as a slow delivery. An
//! id's spread goes into the `all` histogram when at least two clients received it, and into the
//! main (`full`) one when it also reached at least 90% of the clients that were streaming when it
//! first arrived — ids that only part of the clients got (during the ramp, or when clients fell
//! behind) would otherwise make the spread look better than it is.

use std::collections::HashMap;

use crate::histogram::Histogram;

/// Ids still in flight after this long are finalized (every client has had ample time).
pub const FINALIZE_AFTER_US: u64 = 30_000_000;

#[derive(Debug, Clone, Copy)]
struct InFlight {
    first_us: u64,
    last_us: u64,
    receipts: u32,
    /// Clients streaming when the id first arrived.
    eligible: u32,
}

/// Ids in flight and the histograms of the finished ones.
#[derive(Default)]
pub struct SpreadTracker {
    in_flight: HashMap<u64, InFlight>,
    /// Spread of ids that reached ≥ 90% of the eligible clients.
    pub full: Histogram,
    /// Spread of every id received by at least two clients.
    pub all: Histogram,
    /// Ids finalized, and how many of them reached ≥ 90% of the eligible clients.
    pub ids: u64,
    pub ids_full: u64,
}

impl SpreadTracker {
    /// A client that has been streaming since `stream_start_us` finished receiving the event
    /// with id hash `id` at `now_us`. `streaming` is the number of clients streaming now and
    /// `may_open` says whether an id not seen before may still be tracked (false once the
    /// measurement window is over).
    pub fn received(
        &mut self,
        id: u64,
        now_us: u64,
        stream_start_us: u64,
        streaming: u32,
        may_open: bool,
    ) {
        if let Some(entry) = self.in_flight.get_mut(&id) {
            if stream_start_us <= entry.first_us {
                entry.receipts = entry.receipts.saturating_add(1);
                entry.last_us = entry.last_us.max(now_us);
            }
        } else if may_open {
            self.in_flight.insert(
                id,
                InFlight {
                    first_us: now_us,
                    last_us: now_us,
                    receipts: 1,
                    eligible: streaming.max(1),
                },
            );
        }
    }

    /// Finalizes the ids first seen before `now_us − FINALIZE_AFTER_US`.
    pub fn finalize_old(&mut self, now_us: u64) {
        let cutoff = now_us.saturating_sub(FINALIZE_AFTER_US);
        self.finalize_where(|e| e.first_us < cutoff);
    }

    /// Finalizes every id still in flight (at the end of the run).
    pub fn finalize_all(&mut self) {
        self.finalize_where(|_| true);
    }

    /// True when every id in flight has been received by all the clients it can still reach
    /// (`streaming` is the number of clients streaming now): the run need not wait any longer.
    pub fn settled(&self, streaming: u32) -> bool {
        self.in_flight
            .values()
            .all(|e| e.receipts >= e.eligible.min(streaming))
    }

    fn finalize_where(&mut self, mut done: impl FnMut(&InFlight) -> bool) {
        let (all, full, ids, ids_full) = (
            &mut self.all,
            &mut self.full,
            &mut self.ids,
            &mut self.ids_full,
        );
        self.in_flight.retain(|_, e| {
            if !done(e) {
                return true;
            }
            *ids += 1;
            log::debug!(
                "spread: id first seen at {:.3} s reached {}/{} clients in {} us",
                e.first_us as f64 / 1e6,
                e.receipts,
                e.eligible,
                e.last_us - e.first_us
            );
            if e.receipts >= 2 {
                let spread = e.last_us - e.first_us;
                all.record(spread);
                if u64::from(e.receipts) * 10 >= u64::from(e.eligible) * 9 {
                    full.record(spread);
                    *ids_full += 1;
                }
            }
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_last_minus_first_receipt() {
        let mut t = SpreadTracker::default();
        for (client, at) in [1_000, 1_500, 4_000, 2_000].into_iter().enumerate() {
            t.received(42, at, client as u64, 4, true);
        }
        t.finalize_all();
        assert_eq!(t.full.count(), 1);
        assert_eq!(t.full.max(), Some(3_000));
        assert_eq!(t.all.max(), Some(3_000));
        assert_eq!((t.ids, t.ids_full), (1, 1));
    }

    #[test]
    fn clients_that_joined_later_do_not_count() {
        let mut t = SpreadTracker::default();
        t.received(7, 1_000, 0, 2, true);
        t.received(7, 1_200, 0, 2, true);
        // Joined at 1_100, after the id first arrived: its catch-up copy is not a slow delivery.
        t.received(7, 900_000, 1_100, 3, true);
        t.finalize_all();
        assert_eq!(t.full.max(), Some(200));
    }

    #[test]
    fn ids_that_reached_few_clients_only_count_in_all() {
        let mut t = SpreadTracker::default();
        t.received(1, 1_000, 0, 10, true);
        t.received(1, 5_000, 0, 10, true);
        t.finalize_all();
        assert_eq!(t.full.count(), 0);
        assert_eq!(t.all.max(), Some(4_000));
        assert_eq!((t.ids, t.ids_full), (1, 0));
    }

    #[test]
    fn old_ids_are_finalized_and_new_ones_kept() {
        let mut t = SpreadTracker::default();
        t.received(1, 0, 0, 1, true);
        t.received(2, 31_000_000, 0, 1, true);
        t.finalize_old(31_000_001);
        assert_eq!(t.ids, 1);
        assert!(t.settled(1));
        t.finalize_all();
        assert_eq!(t.ids, 2);
    }

    #[test]
    fn closed_window_opens_no_new_ids_but_completes_old_ones() {
        let mut t = SpreadTracker::default();
        t.received(1, 0, 0, 2, true);
        assert!(!t.settled(2));
        t.received(1, 50, 0, 2, false);
        t.received(2, 60, 0, 2, false);
        assert!(t.settled(2));
        t.finalize_all();
        assert_eq!((t.ids, t.ids_full), (1, 1));
        assert_eq!(t.full.max(), Some(50));
    }
}
