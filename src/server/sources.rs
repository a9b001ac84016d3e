//! The server's own sources: standard input, relays pulling from other servers, and the files
//! from the command line registered as streams that are live from the start. Each reads its
//! input as its readiness or timers say and hands what it yields to `fanout`.

use super::Server;
use crate::mp4::Movie;
use crate::source::file::{FileSource, Video};
use crate::source::playout::Playout;
use crate::source::relay::RelayNext;
use crate::source::stdin::StdinNext;
use crate::stream::{Publisher, Registry, SourceKind, StreamName};
use std::time::Instant;

impl Server {
    pub(super) fn read_stdin(&mut self, now: Instant) {
        self.stdin_again = false;
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        match stdin.on_readable(now, &mut self.shared.media) {
            StdinNext::Continue => {}
            StdinNext::Again => self.stdin_again = true,
            StdinNext::Hold(t) => self.stdin_hold = Some(t),
            StdinNext::Ended => self.stdin = None,
        }
        self.apply_media(now);
    }

    pub(super) fn relay_ready(&mut self, i: usize, now: Instant) {
        let Some(relay) = self.relays.get_mut(i) else {
            return;
        };
        let next = relay.on_ready(
            self.shared.poll.registry(),
            &mut self.shared.scratch,
            now,
            &mut self.shared.media,
        );
        if next == RelayNext::Again {
            self.relays_again.push(i);
        }
        self.apply_media(now);
    }

    /// Relays whose back-off ended or whose upstream went silent, and reads that yielded.
    pub(super) fn relay_timers(&mut self, now: Instant) {
        for i in std::mem::take(&mut self.relays_again) {
            self.relay_ready(i, now);
        }
        for relay in &mut self.relays {
            if now >= relay.deadline() {
                relay.on_timer(self.shared.poll.registry(), now, &mut self.shared.media);
            }
        }
        self.apply_media(now);
    }
}

/// Registers a file as a configured stream that is live from the start.
pub(super) fn add_file(
    streams: &mut Registry,
    name: StreamName,
    video: Video,
    movie: Movie,
    speed: u32,
    fallback: bool,
    now: Instant,
) -> FileSource {
    let init = movie.init.clone();
    let playout = Playout::new(movie, now, speed);
    let key = streams
        .add_configured(name, SourceKind::File, fallback, now)
        .unwrap_or(usize::MAX);
    if let Some(s) = streams.get_mut(key) {
        s.publisher = Some(Publisher::Internal);
        s.start_session(playout.info().clone(), &init, playout.timescales(), now);
    }
    streams.went_live(key);
    FileSource {
        stream: key,
        video,
        playout,
    }
}
