//! The server's timers: head, response and linger timeouts, the twice-a-second housekeeping
//! (silent publishers, keepalives, forgetting unused streams) and the stats line.

use super::Server;
use crate::conn::Phase;
use crate::stream::Publisher;
use std::time::Instant;

impl Server {
    pub(super) fn expire_timers(&mut self, now: Instant) {
        while let Some(&(at, key, id)) = self.head_timers.front() {
            if at > now {
                break;
            }
            self.head_timers.pop_front();
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.id == id && conn.phase() == Phase::ReadHead {
                log::debug!("connection {id} sent no complete request in time");
                conn.head_timed_out(&self.shared.responses);
                self.shared.metrics.head_timeouts += 1;
                self.close(key, now);
            }
        }
        for (timers, phase) in [
            (&mut self.respond_timers, Phase::Respond),
            (&mut self.linger_timers, Phase::Linger),
        ] {
            while let Some(&(at, key, id)) = timers.front() {
                if at > now {
                    break;
                }
                timers.pop_front();
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.id == id && c.phase() == phase)
                {
                    if phase == Phase::Respond {
                        log::debug!("connection {id} did not take its response in time");
                    }
                    self.to_close.push(key);
                }
            }
        }
        self.close_pending(now);
    }

    pub(super) fn close_pending(&mut self, now: Instant) {
        let mut to_close = std::mem::take(&mut self.to_close);
        for key in to_close.drain(..) {
            self.close(key, now);
        }
        self.to_close = to_close;
        self.apply_media(now);
    }

    /// Silent publishers, keepalives, and forgetting streams nobody uses.
    pub(super) fn housekeeping(&mut self, now: Instant) {
        let publishers: Vec<(usize, u64)> = self
            .shared
            .streams
            .iter()
            .filter_map(|(_, s)| match s.publisher {
                Some(Publisher::Conn { key, id }) => Some((key, id)),
                _ => None,
            })
            .collect();
        for (key, id) in publishers {
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.id == id) else {
                continue;
            };
            let silent = conn
                .publish_idle_since()
                .is_some_and(|t| now.saturating_duration_since(t) >= self.publish_timeout);
            if silent {
                let mut ctx = self.shared.ctx(now);
                conn.publish_timed_out(&mut ctx);
                self.shared.metrics.publish_timeouts += 1;
                self.to_close.push(key);
            }
        }
        self.close_pending(now);
        self.rtmp_housekeeping(now);
        self.keepalives(now);
        self.shared.streams.sweep(now);
    }

    pub(super) fn log_stats(&self) {
        let (mut queued, mut skipped) = (0usize, self.stats.skipped);
        for (_, c) in &self.conns {
            queued += c.pending();
            skipped += c.total_skipped();
        }
        let live = self
            .shared
            .streams
            .iter()
            .filter(|(_, s)| s.is_live())
            .count();
        log::info!(
            "stats: {} viewers, {} connections, {} KiB queued, {} streams ({live} live), {} fragments live ({} batched with the one before), {} skipped by slow viewers",
            self.viewers,
            self.conns.len(),
            queued / 1024,
            self.shared.streams.len(),
            self.stats.fragments,
            self.stats.batched,
            skipped,
        );
    }
}
