//! Server-Sent Events framing: turns the stream's pieces (the response head, the `init` event,
//! each fragment's `data` event, `reset`, `offline` and keepalive) into complete, immutable byte
//! frames.
//!
//! A frame is encoded once and shared by reference (`Rc<Frame>`) by every client that sends it,
//! so the per-client cost of a fragment is a refcount and a slice in a `writev`. Its compressed
//! form (`deflate`) is made the same way: once, when the first viewer that asked for gzip needs
//! it, and then shared. Pure: no I/O.

pub mod deflate;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::cell::OnceCell;
use std::fmt::Write as _;
use std::rc::Rc;

/// What a frame is, for the queue policy and for resuming after `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Bytes that must always be delivered in order (HTTP response heads, `init`, `reset`,
    /// keepalive comments, whole non-stream responses).
    Control,
    /// One fragment's `data` event.
    Data {
        sequence: u64,
        live_ms: u64,
        keyframe: bool,
    },
}

/// A complete, immutable piece of output.
#[derive(Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// What a plain viewer is sent.
    pub bytes: Box<[u8]>,
    /// What a compressed viewer is sent, for an SSE event: the event deflated on its own
    /// ([`deflate::deflate_frame`]), made by the first compressed viewer that needs it.
    /// Streams without compressed viewers never fill it.
    deflated: OnceCell<Box<[u8]>>,
    /// Sent as it is to every viewer, compressed or not: HTTP responses and response heads,
    /// which are outside the compressed body.
    raw: bool,
}

impl Frame {
    /// HTTP bytes (a response, a response head), sent as they are to every client.
    pub fn control(bytes: impl Into<Box<[u8]>>) -> Rc<Frame> {
        Rc::new(Frame::new(FrameKind::Control, bytes.into(), true))
    }

    /// An SSE event every viewer must get (`init`, `reset`, `offline`, a keepalive): part of
    /// the body, so compressed for viewers that asked for it.
    pub fn event(bytes: impl Into<Box<[u8]>>) -> Rc<Frame> {
        Rc::new(Frame::new(FrameKind::Control, bytes.into(), false))
    }

    /// A fragment's `data` event whose bytes are already encoded (a relay passes on its
    /// upstream's event as it came).
    pub fn data(
        sequence: u64,
        live_ms: u64,
        keyframe: bool,
        bytes: impl Into<Box<[u8]>>,
    ) -> Rc<Frame> {
        let kind = FrameKind::Data {
            sequence,
            live_ms,
            keyframe,
        };
        Rc::new(Frame::new(kind, bytes.into(), false))
    }

    fn new(kind: FrameKind, bytes: Box<[u8]>, raw: bool) -> Frame {
        Frame {
            kind,
            bytes,
            deflated: OnceCell::new(),
            raw,
        }
    }

    /// Length of the plain form.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes a viewer is sent: the compressed form for one that asked for gzip (compressed
    /// now if no viewer needed it before), the plain form otherwise.
    pub fn wire(&self, compressed: bool) -> &[u8] {
        if compressed && !self.raw {
            self.deflated
                .get_or_init(|| deflate::deflate_frame(&self.bytes))
        } else {
            &self.bytes
        }
    }

    /// True once the compressed form exists (for tests and benches).
    pub fn is_deflated(&self) -> bool {
        self.deflated.get().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn is_keyframe(&self) -> bool {
        matches!(self.kind, FrameKind::Data { keyframe: true, .. })
    }

    pub fn sequence(&self) -> Option<u64> {
        match self.kind {
            FrameKind::Data { sequence, .. } => Some(sequence),
            FrameKind::Control => None,
        }
    }
}

/// The event id of a data frame: `<sequence>.<server time in ms when it went live>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    pub sequence: u64,
    pub live_ms: u64,
}

impl EventId {
    /// Parses `1234.1732400000123`. Both parts are required: the time is what tells a fragment
    /// of this run of the server from one of an earlier run with the same sequence number.
    pub fn parse(s: &str) -> Option<EventId> {
        let (seq, ms) = s.trim().split_once('.')?;
        Some(EventId {
            sequence: seq.parse().ok()?,
            live_ms: ms.parse().ok()?,
        })
    }

    /// True when `frame` is the fragment this id names.
    pub fn matches(&self, frame: &Frame) -> bool {
        match frame.kind {
            FrameKind::Data {
                sequence, live_ms, ..
            } => sequence == self.sequence && live_ms == self.live_ms,
            FrameKind::Control => false,
        }
    }
}

/// How long the browser waits before reconnecting, sent first on every stream.
pub const RETRY_MS: u32 = 2000;

/// The first bytes of every stream body, right after the response head.
pub const RETRY: &[u8] = b"retry: 2000\n\n";

/// The comment sent after a stretch of silence so proxies and browsers keep the stream open.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// Encodes one fragment as a complete `data` event, with a single allocation of exactly the
/// right size and base64 written straight into it.
pub fn data_frame(sequence: u64, live_ms: u64, keyframe: bool, fragment: &[u8]) -> Rc<Frame> {
    let mut head = String::with_capacity(64);
    // Writing to a String cannot fail.
    let _ = write!(head, "id: {sequence}.{live_ms}\nevent: data\ndata: ");
    let b64_len = base64::encoded_len(fragment.len(), true).unwrap_or(0);
    let mut bytes = vec![0u8; head.len() + b64_len + 2];
    bytes[..head.len()].copy_from_slice(head.as_bytes());
    let written = STANDARD
        .encode_slice(fragment, &mut bytes[head.len()..head.len() + b64_len])
        .unwrap_or(0);
    debug_assert_eq!(written, b64_len, "base64 length mismatch");
    let end = head.len() + written;
    bytes[end] = b'\n';
    bytes[end + 1] = b'\n';
    bytes.truncate(end + 2);
    Rc::new(Frame::new(
        FrameKind::Data {
            sequence,
            live_ms,
            keyframe,
        },
        bytes.into_boxed_slice(),
        false,
    ))
}

/// What the `init` event tells the player about the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub mime: String,
    pub width: u16,
    pub height: u16,
    pub bitrate: u64,
    pub duration_secs: f64,
}

/// The `init` event: the MIME type with codecs and the base64 init segment.
pub fn init_frame(info: &StreamInfo, init_segment: &[u8]) -> Rc<Frame> {
    let mut s = String::with_capacity(init_segment.len() * 4 / 3 + 256);
    s.push_str("event: init\ndata: {\"mime\":\"");
    json_escape(&info.mime, &mut s);
    s.push_str("\",\"init\":\"");
    STANDARD.encode_string(init_segment, &mut s);
    let _ = write!(
        s,
        "\",\"width\":{},\"height\":{},\"bitrate\":{},\"duration\":{:.3}}}\n\n",
        info.width, info.height, info.bitrate, info.duration_secs
    );
    Frame::event(s.into_bytes())
}

/// The `reset` event telling a viewer it skipped `skipped` fragments.
pub fn reset_frame(skipped: u64) -> Rc<Frame> {
    Frame::event(format!("event: reset\ndata: {{\"skipped\":{skipped}}}\n\n").into_bytes())
}

/// The `offline` event: the stream is not live (yet, or any more); viewers stay and wait.
pub fn offline_frame(reason: &str) -> Rc<Frame> {
    let mut s = String::from("event: offline\ndata: {\"reason\":\"");
    json_escape(reason, &mut s);
    s.push_str("\"}\n\n");
    Frame::event(s.into_bytes())
}

/// Appends `v` to `out` escaped for the inside of a JSON string.
pub fn json_escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_data_line(frame: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(frame).unwrap();
        let line = text.lines().find(|l| l.starts_with("data: ")).unwrap();
        STANDARD.decode(&line[6..]).unwrap()
    }

    #[test]
    fn data_frame_is_one_event_with_id_and_base64() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let f = data_frame(42, 1_732_400_000_123, true, &payload);
        let text = std::str::from_utf8(&f.bytes).unwrap();
        assert!(text.starts_with("id: 42.1732400000123\nevent: data\ndata: "));
        assert!(text.ends_with("\n\n"));
        assert_eq!(text.matches('\n').count(), 4, "exactly one event");
        assert_eq!(decode_data_line(&f.bytes), payload);
        assert_eq!(f.sequence(), Some(42));
        assert!(f.is_keyframe());
    }

    #[test]
    fn data_frame_of_every_small_length_round_trips() {
        for n in 0..10 {
            let payload = vec![0xabu8; n];
            let f = data_frame(1, 2, false, &payload);
            assert_eq!(decode_data_line(&f.bytes), payload, "length {n}");
            assert!(!f.is_keyframe());
        }
    }

    #[test]
    fn init_frame_carries_retry_mime_and_segment() {
        let info = StreamInfo {
            mime: "video/mp4; codecs=\"avc1.4d401e,mp4a.40.2\"".into(),
            width: 640,
            height: 360,
            bitrate: 400_000,
            duration_secs: 6.0,
        };
        let f = init_frame(&info, b"\0ftypmoov");
        let text = std::str::from_utf8(&f.bytes).unwrap();
        assert!(text.starts_with("event: init\ndata: {"));
        assert!(text.contains(r#""mime":"video/mp4; codecs=\"avc1.4d401e,mp4a.40.2\"""#));
        assert!(text.contains(&format!("\"init\":\"{}\"", STANDARD.encode(b"\0ftypmoov"))));
        assert!(text.contains("\"width\":640,\"height\":360"));
        assert!(text.ends_with("}\n\n"));
    }

    #[test]
    fn reset_and_keepalive_are_well_formed() {
        let r = reset_frame(3);
        assert_eq!(&*r.bytes, b"event: reset\ndata: {\"skipped\":3}\n\n");
        assert!(KEEPALIVE.starts_with(b":") && KEEPALIVE.ends_with(b"\n\n"));
        assert_eq!(RETRY, format!("retry: {RETRY_MS}\n\n").as_bytes());
        let o = offline_frame("publisher \"x\" left");
        assert_eq!(
            &*o.bytes,
            &b"event: offline\ndata: {\"reason\":\"publisher \\\"x\\\" left\"}\n\n"[..]
        );
    }

    #[test]
    fn events_are_compressed_once_and_http_bytes_never() {
        let f = data_frame(1, 2, true, &[7u8; 3000]);
        assert!(
            !f.is_deflated(),
            "nothing is compressed until a viewer needs it"
        );
        assert_eq!(f.wire(false), &*f.bytes);
        let first = f.wire(true).as_ptr();
        assert!(f.is_deflated() && f.wire(true).len() < f.len());
        assert_eq!(f.wire(true).as_ptr(), first, "made once, then shared");
        let keepalive = Frame::event(KEEPALIVE);
        assert_ne!(keepalive.wire(true), KEEPALIVE);
        let head = Frame::control(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        assert_eq!(head.wire(true), &*head.bytes);
        assert!(!head.is_deflated());
    }

    #[test]
    fn event_ids_parse_and_match() {
        let f = data_frame(7, 99, true, b"x");
        assert!(EventId::parse("7.99").unwrap().matches(&f));
        assert!(EventId::parse(" 7.99 ").unwrap().matches(&f));
        assert_eq!(EventId::parse("7"), None, "the time part is required");
        assert!(!EventId::parse("7.98").unwrap().matches(&f));
        assert!(!EventId::parse("8.99").unwrap().matches(&f));
        assert_eq!(EventId::parse("x.1"), None);
        assert_eq!(EventId::parse(""), None);
        assert_eq!(EventId::parse("1.2.3"), None);
    }
}
