//! The registry of streams by name: the ones named on the command line, and the ones that exist
//! because someone publishes or watches them. A name nobody publishes or watches is forgotten:
//! at once if it never went live (so a scanner walking `/events/a1…a99999` leaves nothing
//! behind), after [`FORGET_AFTER`] if it did (so a publisher that comes back within it continues
//! the same timeline and event ids). Also decides the default stream.

use super::{SourceKind, Stream, StreamName};
use slab::Slab;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a stream that was live is remembered after its last viewer and publisher left.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Registry {
    streams: Slab<Stream>,
    by_name: HashMap<StreamName, usize>,
    window: Duration,
    /// The first stream named on the command line: always the default.
    first_configured: Option<usize>,
    /// The embedded sample, the default while nothing is live when no stream was named.
    fallback: Option<usize>,
    next_live_order: u64,
}

impl Registry {
    /// A registry whose streams keep `window` of backlog.
    pub fn new(window: Duration) -> Registry {
        Registry {
            streams: Slab::new(),
            by_name: HashMap::new(),
            window,
            first_configured: None,
            fallback: None,
            next_live_order: 0,
        }
    }

    /// Adds a stream from the command line (or, with `fallback`, the embedded sample played
    /// when none is named). Returns its key, or `None` if the name is taken.
    pub fn add_configured(
        &mut self,
        name: StreamName,
        kind: SourceKind,
        fallback: bool,
        now: Instant,
    ) -> Option<usize> {
        if self.by_name.contains_key(&name) {
            return None;
        }
        let mut s = Stream::new(name, self.window, now);
        s.configured = true;
        s.kind = Some(kind);
        let key = self.insert(s);
        if fallback {
            self.fallback = Some(key);
        } else if self.first_configured.is_none() {
            self.first_configured = Some(key);
        }
        Some(key)
    }

    fn insert(&mut self, s: Stream) -> usize {
        let name = s.name;
        let key = self.streams.insert(s);
        self.by_name.insert(name, key);
        key
    }

    pub fn find(&self, name: &StreamName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The stream of this name, created (offline) if there is none.
    pub fn get_or_create(&mut self, name: StreamName, now: Instant) -> usize {
        match self.find(&name) {
            Some(k) => k,
            None => self.insert(Stream::new(name, self.window, now)),
        }
    }

    pub fn get(&self, key: usize) -> Option<&Stream> {
        self.streams.get(key)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Stream> {
        self.streams.get_mut(key)
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &Stream)> {
        self.streams.iter()
    }

    /// Notes that a stream just went live, for the choice of the default stream.
    pub fn went_live(&mut self, key: usize) {
        self.next_live_order += 1;
        if let Some(s) = self.streams.get_mut(key) {
            s.live_order = self.next_live_order;
        }
    }

    /// The stream at `/` and `/events`: the first one named on the command line; with none, the
    /// published stream that has been live longest, and the sample while nothing is.
    pub fn default_key(&self) -> Option<usize> {
        if self.first_configured.is_some() {
            return self.first_configured;
        }
        self.streams
            .iter()
            .filter(|(k, s)| s.is_live() && Some(*k) != self.fallback)
            .min_by_key(|(_, s)| s.live_order)
            .map(|(k, _)| k)
            .or(self.fallback)
    }

    /// Forgets the stream if nobody uses it any more and it never went live, or went offline
    /// more than [`FORGET_AFTER`] ago. Returns whether it was forgotten.
    pub fn forget_if_unused(&mut self, key: usize, now: Instant) -> bool {
        let Some(s) = self.streams.get(key) else {
            return false;
        };
        let expired =
            s.sessions == 0 || now.saturating_duration_since(s.changed_at) >= FORGET_AFTER;
        if !(s.is_unused() && !s.is_live() && expired) {
            return false;
        }
        let name = s.name;
        self.by_name.remove(&name);
        self.streams.remove(key);
        log::debug!("stream {name} forgotten");
        true
    }

    /// Forgets every stream [`forget_if_unused`](Self::forget_if_unused) would.
    pub fn sweep(&mut self, now: Instant) {
        let keys: Vec<usize> = self
            .streams
            .iter()
            .filter(|(_, s)| s.is_unused())
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            self.forget_if_unused(k, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::StreamInfo;

    fn name(s: &str) -> StreamName {
        StreamName::parse(s).unwrap()
    }

    fn info() -> StreamInfo {
        StreamInfo {
            mime: "video/mp4".into(),
            width: 1,
            height: 1,
            bitrate: 0,
            duration_secs: 0.0,
        }
    }

    #[test]
    fn unused_names_are_forgotten_and_configured_ones_are_not() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10));
        let file = r
            .add_configured(name("film"), SourceKind::File, false, t0)
            .unwrap();
        assert!(r
            .add_configured(name("film"), SourceKind::File, false, t0)
            .is_none());
        for i in 0..1000 {
            let k = r.get_or_create(name(&format!("a{i}")), t0);
            assert!(r.forget_if_unused(k, t0), "a name nobody uses goes at once");
        }
        assert_eq!(r.len(), 1);
        assert!(!r.forget_if_unused(file, t0 + FORGET_AFTER * 2));
        // A stream that was live is kept a while after its publisher left.
        let cam = r.get_or_create(name("cam"), t0);
        let s = r.get_mut(cam).unwrap();
        s.start_session(info(), b"init", vec![1000], t0);
        s.go_offline("publisher disconnected", t0);
        assert!(!r.forget_if_unused(cam, t0 + Duration::from_secs(1)));
        r.sweep(t0 + FORGET_AFTER);
        assert!(r.find(&name("cam")).is_none());
    }

    #[test]
    fn default_stream_rules() {
        let t0 = Instant::now();
        let mut r = Registry::new(Duration::from_secs(10));
        let sample = r
            .add_configured(name("sample"), SourceKind::File, true, t0)
            .unwrap();
        assert_eq!(r.default_key(), Some(sample));
        let a = r.get_or_create(name("a"), t0);
        let b = r.get_or_create(name("b"), t0);
        for k in [b, a] {
            r.get_mut(k)
                .unwrap()
                .start_session(info(), b"i", vec![1], t0);
            r.went_live(k);
        }
        assert_eq!(r.default_key(), Some(b), "live longest");
        r.get_mut(b).unwrap().go_offline("gone", t0);
        assert_eq!(r.default_key(), Some(a));
        r.get_mut(a).unwrap().go_offline("gone", t0);
        assert_eq!(r.default_key(), Some(sample));
        let mut r = Registry::new(Duration::from_secs(10));
        let cam = r
            .add_configured(name("cam"), SourceKind::Stdin, false, t0)
            .unwrap();
        r.add_configured(name("film"), SourceKind::File, false, t0)
            .unwrap();
        assert_eq!(r.default_key(), Some(cam), "the first stream named");
    }
}
