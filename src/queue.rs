//! A client's output queue: shared frames waiting to be written, capped in bytes, with the
//! slow-viewer policy (drop what has not started, skip to the next keyframe, say so with a
//! `reset` event) and the vectored write that drains it.
//!
//! A queue sends one form of every frame, plain or compressed (`Frame::wire`), and counts that
//! form's bytes everywhere: the cap, what is pending, how far into a frame it is.
//!
//! Pure policy plus a `Write` sink, so it is tested without sockets. The queue never copies frame
//! bytes and, once its ring has grown to the client's working depth, never allocates.

use crate::sse::{reset_frame, Frame};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Most slices handed to one `writev`.
const MAX_IOV: usize = 32;
/// Most `writev` calls in one drain before yielding back to the event loop.
const MAX_WRITES_PER_DRAIN: usize = 64;

/// What happened to a data frame offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// Not queued: the client is behind and waits for a keyframe.
    Skipped,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Everything queued was written.
    Empty,
    /// The socket would block; bytes remain.
    Blocked,
    /// The iteration cap was hit with bytes remaining and the socket still writable.
    Yielded,
}

#[derive(Debug)]
pub struct ClientQueue {
    frames: VecDeque<Rc<Frame>>,
    /// Bytes of `frames[0]` already written.
    offset: usize,
    /// Bytes queued and not yet written.
    pending: usize,
    cap: usize,
    /// Waiting for a keyframe after dropping frames.
    skipping: bool,
    /// Data frames dropped since the last `reset`.
    skipped: u64,
    /// Data frames dropped over the queue's life.
    pub total_skipped: u64,
    /// Sends the compressed form of every frame.
    compressed: bool,
}

impl ClientQueue {
    pub fn new(cap: usize) -> Self {
        ClientQueue {
            frames: VecDeque::new(),
            offset: 0,
            pending: 0,
            cap,
            skipping: false,
            skipped: 0,
            total_skipped: 0,
            compressed: false,
        }
    }

    /// Sends the compressed form of every frame from now on (a viewer that asked for gzip).
    pub fn send_compressed(&mut self) {
        debug_assert!(
            self.frames.is_empty(),
            "the form is chosen before anything is queued"
        );
        self.compressed = true;
    }

    /// True when this queue sends compressed frames.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Length of the form of `frame` this queue sends.
    fn wire_len(&self, frame: &Frame) -> usize {
        frame.wire(self.compressed).len()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// True while the client is behind and waiting for a keyframe.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// Makes room for `n` frames up front so the steady state never grows the ring.
    pub fn reserve(&mut self, n: usize) {
        self.frames.reserve(n);
    }

    /// Makes the queue take nothing until a keyframe comes (a new viewer with no keyframe to
    /// start from must not begin in the middle of a GOP).
    pub fn wait_for_keyframe(&mut self) {
        self.skipping = true;
    }

    /// Queues a frame that must be delivered whatever the cap (response heads, `init`).
    pub fn push_control(&mut self, frame: Rc<Frame>) {
        if frame.is_empty() {
            return;
        }
        self.pending += self.wire_len(&frame);
        self.frames.push_back(frame);
    }

    /// Offers a data frame under the backpressure policy.
    ///
    /// INVARIANT: a partly written frame (`offset > 0`) is never dropped, so the client's byte
    /// stream is always whole SSE events.
    pub fn offer(&mut self, frame: &Rc<Frame>) -> Offer {
        if !self.skipping && self.fits(frame) {
            self.pending += self.wire_len(frame);
            self.frames.push_back(Rc::clone(frame));
            return Offer::Queued;
        }
        if !self.skipping {
            self.drop_unstarted();
            self.skipping = true;
        }
        if frame.is_keyframe() && self.fits(frame) {
            // Waiting without having dropped anything (a new session) needs no reset.
            if self.skipped > 0 {
                let reset = reset_frame(self.skipped);
                self.pending += self.wire_len(&reset);
                self.frames.push_back(reset);
            }
            self.pending += self.wire_len(frame);
            self.frames.push_back(Rc::clone(frame));
            self.skipping = false;
            self.skipped = 0;
            return Offer::Queued;
        }
        self.skipped += 1;
        self.total_skipped += 1;
        Offer::Skipped
    }

    /// A frame fits under the cap, or the queue holds no data frame at all: a fragment larger
    /// than the cap still reaches a viewer that has caught up, so a file with big fragments
    /// never starves everyone.
    fn fits(&self, frame: &Frame) -> bool {
        self.pending + self.wire_len(frame) <= self.cap
            || self.frames.iter().all(|f| f.sequence().is_none())
    }

    /// Drops every data frame not yet started, counting them as skipped.
    ///
    /// INVARIANT: control frames (the response head, `init`, earlier `reset`s, keepalives) and a
    /// partly written frame are kept, in order, so the client always gets a valid response and
    /// whole SSE events.
    fn drop_unstarted(&mut self) {
        let started = usize::from(self.offset > 0);
        let (mut index, mut bytes, mut count) = (0, 0, 0u64);
        let compressed = self.compressed;
        self.frames.retain(|f| {
            let keep = index < started || f.sequence().is_none();
            index += 1;
            if !keep {
                bytes += f.wire(compressed).len();
                count += 1;
            }
            keep
        });
        self.pending -= bytes;
        self.skipped += count;
        self.total_skipped += count;
    }

    /// Writes as much as the sink takes, many frames per vectored write.
    pub fn drain<W: Write>(&mut self, sink: &mut W) -> io::Result<Drain> {
        for _ in 0..MAX_WRITES_PER_DRAIN {
            if self.frames.is_empty() {
                return Ok(Drain::Empty);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, f) in self.frames.iter().take(MAX_IOV).enumerate() {
                let start = if i == 0 { self.offset } else { 0 };
                slices[n] = IoSlice::new(&f.wire(self.compressed)[start..]);
                n += 1;
            }
            match sink.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drain::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.frames.is_empty() {
            Ok(Drain::Empty)
        } else {
            log::debug!("drain hit its cap of {MAX_WRITES_PER_DRAIN} writes");
            Ok(Drain::Yielded)
        }
    }

    fn advance(&mut self, mut written: usize) {
        self.pending -= written;
        while written > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = front.wire(self.compressed).len() - self.offset;
            if written >= left {
                written -= left;
                self.offset = 0;
                self.frames.pop_front();
            } else {
                self.offset += written;
                written = 0;
            }
        }
    }

    /// Drops everything (the client is going away).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.offset = 0;
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::data_frame;

    /// A sink that takes at most `budget` bytes, then would block.
    struct Sink {
        out: Vec<u8>,
        budget: usize,
        writes: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.writes += 1;
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.budget);
                self.out.extend_from_slice(&b[..take]);
                self.budget -= take;
                n += take;
                if self.budget == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sink(budget: usize) -> Sink {
        Sink {
            out: Vec::new(),
            budget,
            writes: 0,
        }
    }

    fn frame(seq: u64, key: bool, len: usize) -> Rc<Frame> {
        data_frame(seq, 1000 + seq, key, &vec![seq as u8; len])
    }

    fn events(bytes: &[u8]) -> Vec<String> {
        std::str::from_utf8(bytes)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.lines().next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn fast_client_gets_everything_in_one_write_per_frame() {
        let mut q = ClientQueue::new(1 << 20);
        let mut s = sink(usize::MAX);
        for seq in 1..=5 {
            assert_eq!(q.offer(&frame(seq, seq == 1, 100)), Offer::Queued);
            assert_eq!(q.drain(&mut s).unwrap(), Drain::Empty);
        }
        assert_eq!(s.writes, 5);
        let ids = events(&s.out);
        assert_eq!(
            ids,
            (1..=5)
                .map(|s| format!("id: {s}.{}", 1000 + s))
                .collect::<Vec<_>>()
        );
        assert!(q.is_empty());
    }

    #[test]
    fn several_frames_go_out_in_one_vectored_write() {
        let mut q = ClientQueue::new(1 << 20);
        for seq in 1..=4 {
            q.offer(&frame(seq, true, 50));
        }
        let mut s = sink(usize::MAX);
        q.drain(&mut s).unwrap();
        assert_eq!(s.writes, 1);
        assert_eq!(events(&s.out).len(), 4);
    }

    #[test]
    fn over_cap_drops_unstarted_and_resumes_at_keyframe_with_reset() {
        let one = frame(1, true, 300).len();
        let mut q = ClientQueue::new(one * 3);
        for seq in 1..=3 {
            assert_eq!(q.offer(&frame(seq, seq == 1, 300)), Offer::Queued);
        }
        // The fourth does not fit: everything unstarted goes, and non-keyframes are skipped.
        assert_eq!(q.offer(&frame(4, false, 300)), Offer::Skipped);
        assert!(q.is_skipping());
        assert_eq!(q.pending(), 0);
        assert_eq!(q.offer(&frame(5, false, 300)), Offer::Skipped);
        assert_eq!(q.offer(&frame(6, true, 300)), Offer::Queued);
        assert!(!q.is_skipping());
        let mut s = sink(usize::MAX);
        q.drain(&mut s).unwrap();
        let text = String::from_utf8(s.out).unwrap();
        assert!(
            text.starts_with("event: reset\ndata: {\"skipped\":5}\n\nid: 6."),
            "{text}"
        );
        assert_eq!(q.total_skipped, 5);
    }

    #[test]
    fn partly_written_frame_is_always_finished() {
        let one = frame(1, true, 300).len();
        let mut q = ClientQueue::new(one * 2);
        q.offer(&frame(1, true, 300));
        q.offer(&frame(2, true, 300));
        let mut s = sink(one / 2);
        assert_eq!(q.drain(&mut s).unwrap(), Drain::Blocked);
        // Over the cap: frame 2 is dropped, frame 1's second half stays.
        assert_eq!(q.offer(&frame(3, false, 300)), Offer::Skipped);
        assert_eq!(q.pending(), one - one / 2);
        assert_eq!(q.offer(&frame(4, true, 300)), Offer::Queued);
        s.budget = usize::MAX;
        assert_eq!(q.drain(&mut s).unwrap(), Drain::Empty);
        let ids = events(&s.out);
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids[0].starts_with("id: 1."));
        assert_eq!(ids[1], "event: reset");
        assert!(ids[2].starts_with("id: 4."));
        // Every byte of frame 1 went out exactly once.
        assert_eq!(&s.out[..one], &*frame(1, true, 300).bytes);
    }

    #[test]
    fn a_keyframe_larger_than_the_cap_still_reaches_a_caught_up_viewer() {
        let mut q = ClientQueue::new(100);
        q.push_control(Frame::control(&b"HTTP/1.1 200 OK\r\n\r\n"[..]));
        assert_eq!(q.offer(&frame(1, true, 300)), Offer::Queued);
        // Halfway through the oversized frame, the next ones are skipped until it is out.
        let mut s = sink(200);
        assert_eq!(q.drain(&mut s).unwrap(), Drain::Blocked);
        assert_eq!(q.offer(&frame(2, true, 300)), Offer::Skipped);
        s.budget = usize::MAX;
        assert_eq!(q.drain(&mut s).unwrap(), Drain::Empty);
        assert_eq!(q.offer(&frame(3, true, 300)), Offer::Queued);
        assert_eq!(q.total_skipped, 1);
    }

    #[test]
    fn a_viewer_waiting_for_a_keyframe_starts_at_one() {
        let mut q = ClientQueue::new(1 << 20);
        q.wait_for_keyframe();
        assert_eq!(q.offer(&frame(1, false, 10)), Offer::Skipped);
        assert_eq!(q.offer(&frame(2, true, 10)), Offer::Queued);
        let mut s = sink(usize::MAX);
        q.drain(&mut s).unwrap();
        assert!(String::from_utf8(s.out).unwrap().contains("\n\nid: 2."));
    }

    #[test]
    fn response_head_and_init_are_never_dropped() {
        let mut q = ClientQueue::new(1000);
        q.push_control(Frame::control(&b"HTTP/1.1 200 OK\r\n\r\n"[..]));
        q.push_control(Frame::event(&b"event: init\ndata: {}\n\n"[..]));
        assert_eq!(q.offer(&frame(1, true, 600)), Offer::Queued);
        assert_eq!(q.offer(&frame(2, false, 600)), Offer::Skipped);
        assert_eq!(q.offer(&frame(3, true, 600)), Offer::Queued);
        let mut s = sink(usize::MAX);
        q.drain(&mut s).unwrap();
        let text = String::from_utf8(s.out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n\r\nevent: init\ndata: {}\n\nevent: reset\ndata: {\"skipped\":2}\n\nid: 3."),
            "{text}"
        );
    }

    #[test]
    fn never_reading_client_stays_bounded() {
        let cap = 10_000;
        let mut q = ClientQueue::new(cap);
        let mut s = sink(0);
        for seq in 1..=1000 {
            q.offer(&frame(seq, seq % 5 == 1, 500));
            let _ = q.drain(&mut s);
            assert!(q.pending() <= cap + 64, "pending {}", q.pending());
        }
        assert!(q.total_skipped > 900);
    }

    #[test]
    fn control_frames_ignore_the_cap_and_keep_order() {
        let mut q = ClientQueue::new(10);
        q.push_control(Frame::control(&b"HTTP/1.1 200 OK\r\n\r\n"[..]));
        q.push_control(Frame::event(&b"retry: 2000\n\n"[..]));
        let mut s = sink(usize::MAX);
        q.drain(&mut s).unwrap();
        assert_eq!(s.out, b"HTTP/1.1 200 OK\r\n\r\nretry: 2000\n\n");
    }

    /// Inflates a compressed viewer's body (after its gzip header) as a browser would.
    fn inflate(body: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzDecoder::new(Vec::new());
        gz.write_all(body).unwrap();
        gz.flush().unwrap();
        gz.get_ref().clone()
    }

    #[test]
    fn a_compressed_queue_sends_the_same_events_and_counts_wire_bytes() {
        use crate::sse::deflate::GZIP_HEADER;
        let frames: Vec<_> = (1..=4).map(|seq| frame(seq, seq == 1, 3000)).collect();
        let mut plain = ClientQueue::new(1 << 20);
        let mut gz = ClientQueue::new(1 << 20);
        gz.send_compressed();
        assert!(gz.is_compressed() && !plain.is_compressed());
        gz.push_control(Frame::control(GZIP_HEADER));
        let keepalive = Frame::event(crate::sse::KEEPALIVE);
        for q in [&mut plain, &mut gz] {
            q.push_control(Rc::clone(&keepalive));
            for f in &frames {
                q.offer(f);
            }
        }
        let wire: usize = frames.iter().map(|f| f.wire(true).len()).sum();
        assert_eq!(
            gz.pending(),
            GZIP_HEADER.len() + keepalive.wire(true).len() + wire
        );
        assert!(gz.pending() * 4 < plain.pending() * 3 + 200, "about 3/4");
        // Each frame's compressed form was made once and is shared.
        assert!(frames.iter().all(|f| f.is_deflated()));
        let (mut a, mut b) = (sink(usize::MAX), sink(usize::MAX));
        plain.drain(&mut a).unwrap();
        gz.drain(&mut b).unwrap();
        assert_eq!(inflate(&b.out), a.out);
    }

    #[test]
    fn a_compressed_queue_caps_wire_bytes_and_resumes_with_a_compressed_reset() {
        let one = frame(1, true, 3000).wire(true).len();
        let cap = one * 3 + 64;
        assert!(frame(1, true, 3000).len() * 3 > cap);
        let mut q = ClientQueue::new(cap);
        q.send_compressed();
        q.push_control(Frame::control(crate::sse::deflate::GZIP_HEADER));
        // Three compressed frames fit where three plain ones (4/3 larger) would not.
        for seq in 1..=3 {
            assert_eq!(q.offer(&frame(seq, seq == 1, 3000)), Offer::Queued, "{seq}");
        }
        let mut s = sink(one / 2);
        assert_eq!(q.drain(&mut s).unwrap(), Drain::Blocked);
        assert_eq!(q.offer(&frame(4, false, 3000)), Offer::Skipped);
        assert_eq!(q.offer(&frame(5, true, 3000)), Offer::Queued);
        s.budget = usize::MAX;
        assert_eq!(q.drain(&mut s).unwrap(), Drain::Empty);
        assert!(q.is_empty());
        let text = String::from_utf8(inflate(&s.out)).unwrap();
        let ids = events(text.as_bytes());
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids[0].starts_with("id: 1."));
        assert_eq!(ids[1], "event: reset");
        assert!(text.contains("{\"skipped\":3}"), "{text}");
        assert!(ids[2].starts_with("id: 5."));
    }

    #[test]
    fn errors_other_than_would_block_surface() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = ClientQueue::new(1000);
        q.offer(&frame(1, true, 10));
        assert_eq!(
            q.drain(&mut Broken).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
