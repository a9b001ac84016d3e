//! Incremental Server-Sent Events scanner: finds event boundaries, `id:` and `event:` values and
//! the length of `data:` lines in a byte stream that may be split anywhere. It never stores or
//! decodes data (a 70 KB base64 line is only measured, with `memchr`); the only bytes it keeps are
//! the first few of an id or event name. Memory per client is fixed (~150 bytes). No I/O.
//!
//! Line ends are LF or CRLF everywhere, and a lone CR also ends field-name, `id`, `event` and
//! empty lines, as the WHATWG format allows. Inside `data:` and comment lines only LF is looked
//! for (a lone CR there is counted as data): no server sends one, and it keeps the hot loop a
//! single `memchr`.

use crate::event_id::{EventId, IdBuilder};
use crate::sys::find_byte;

/// The event type, from the `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// No `event:` field (or an empty one): the browser's default `message`.
    Message,
    /// `event: data` — one video fragment (ssecast).
    Data,
    /// `event: init` — the init segment and MIME type (ssecast).
    Init,
    /// `event: reset` — the server skipped frames for this client because it fell behind.
    Reset,
    Other,
}

/// One dispatched event (an event that carried at least one `data:` line, as in a browser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent {
    pub kind: EventKind,
    /// This event's own `id:` field, if it had one (the inherited last-event-id is not used).
    pub id: Option<EventId>,
    /// Sum of the lengths of the `data:` values (without the field name, the optional space
    /// after the colon, and line ends).
    pub data_bytes: u64,
    pub data_lines: u32,
}

/// Longest field name told apart; longer ones are unknown fields and are skipped.
const NAME_MAX: usize = 8;
/// Longest event name told apart; longer ones are [`EventKind::Other`].
const KIND_MAX: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    Id,
    Event,
    /// `retry:`, comments and unknown fields.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Start,
    /// Reading the field name (kept in `name`).
    Name,
    /// Just after the colon: one leading space is not part of the value.
    ValueStart(Field),
    Value(Field),
}

/// Per-connection scanner state.
#[derive(Clone)]
pub struct SseScanner {
    line: Line,
    /// The previous line ended with CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    name: [u8; NAME_MAX],
    /// Bytes of the field name seen (may exceed `NAME_MAX`; only the first ones are kept).
    name_len: usize,
    kind_name: [u8; KIND_MAX],
    kind_len: usize,
    id: IdBuilder,
    /// Length of the current data line so far.
    line_data: u64,
    /// The current data line's counted bytes end with CR (which is part of a CRLF if LF
    /// follows).
    data_cr: bool,
    // The event being assembled.
    kind: EventKind,
    event_id: Option<EventId>,
    data_bytes: u64,
    data_lines: u32,
}

impl Default for SseScanner {
    fn default() -> Self {
        SseScanner {
            line: Line::Start,
            after_cr: false,
            name: [0; NAME_MAX],
            name_len: 0,
            kind_name: [0; KIND_MAX],
            kind_len: 0,
            id: IdBuilder::default(),
            line_data: 0,
            data_cr: false,
            kind: EventKind::Message,
            event_id: None,
            data_bytes: 0,
            data_lines: 0,
        }
    }
}

impl SseScanner {
    /// Scans the next bytes of the stream, calling `on_event` for every event that ends in them.
    pub fn feed(&mut self, input: &[u8], mut on_event: impl FnMut(&SseEvent)) {
        let mut i = 0;
        while i < input.len() {
            if self.after_cr {
                self.after_cr = false;
                if input[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match self.line {
                Line::Value(field @ (Field::Data | Field::Ignored)) => {
                    let rest = &input[i..];
                    match find_byte(b'\n', rest) {
                        None => {
                            if field == Field::Data {
                                self.line_data += rest.len() as u64;
                                self.data_cr = rest.last() == Some(&b'\r');
                            }
                            i = input.len();
                        }
                        Some(end) => {
                            if field == Field::Data {
                                let crlf = if end > 0 {
                                    rest[end - 1] == b'\r'
                                } else {
                                    self.data_cr
                                };
                                // INVARIANT: `crlf` means a CR was counted in `line_data`.
                                self.line_data = self.line_data + end as u64 - u64::from(crlf);
                            }
                            i += end + 1;
                            self.end_line(&mut on_event);
                        }
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' || b == b'\r' {
                        self.after_cr = b == b'\r';
                        self.end_line(&mut on_event);
                    } else {
                        self.short_line_byte(b);
                    }
                }
            }
        }
    }

    /// One byte (not a line end) of a line that is not in the bulk-scanned part of a data or
    /// ignored line.
    fn short_line_byte(&mut self, b: u8) {
        match self.line {
            Line::Start if b == b':' => self.line = Line::Value(Field::Ignored),
            Line::Start => {
                self.name[0] = b;
                self.name_len = 1;
                self.line = Line::Name;
            }
            Line::Name if b == b':' => {
                let field = self.field();
                self.start_value(field);
            }
            Line::Name => {
                if let Some(slot) = self.name.get_mut(self.name_len) {
                    *slot = b;
                }
                self.name_len = self.name_len.saturating_add(1);
            }
            Line::ValueStart(field) => {
                self.line = Line::Value(field);
                if b != b' ' {
                    self.value_byte(field, b);
                }
            }
            Line::Value(field) => self.value_byte(field, b),
        }
    }

    fn value_byte(&mut self, field: Field, b: u8) {
        match field {
            Field::Data => self.line_data += 1,
            Field::Id => self.id.push(&[b]),
            Field::Event => {
                if let Some(slot) = self.kind_name.get_mut(self.kind_len) {
                    *slot = b;
                }
                self.kind_len = self.kind_len.saturating_add(1);
            }
            Field::Ignored => {}
        }
    }

    fn field(&self) -> Field {
        match self.name.get(..self.name_len) {
            Some(b"data") => Field::Data,
            Some(b"id") => Field::Id,
            Some(b"event") => Field::Event,
            _ => Field::Ignored,
        }
    }

    fn start_value(&mut self, field: Field) {
        match field {
            Field::Data => {
                self.line_data = 0;
                self.data_cr = false;
            }
            Field::Id => self.id = IdBuilder::default(),
            Field::Event => self.kind_len = 0,
            Field::Ignored => {}
        }
        self.line = Line::ValueStart(field);
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(&SseEvent)) {
        let field = match self.line {
            Line::Start => {
                self.dispatch(on_event);
                return;
            }
            Line::Name => {
                // A line without a colon is a field with an empty value.
                let field = self.field();
                self.start_value(field);
                field
            }
            Line::ValueStart(field) | Line::Value(field) => field,
        };
        match field {
            Field::Data => {
                self.data_lines = self.data_lines.saturating_add(1);
                self.data_bytes += self.line_data;
            }
            Field::Id => self.event_id = Some(self.id.finish()),
            Field::Event => {
                self.kind = match self.kind_name.get(..self.kind_len) {
                    Some(b"") => EventKind::Message,
                    Some(b"data") => EventKind::Data,
                    Some(b"init") => EventKind::Init,
                    Some(b"reset") => EventKind::Reset,
                    _ => EventKind::Other,
                }
            }
            Field::Ignored => {}
        }
        self.line = Line::Start;
    }

    /// An empty line: the event ends. Like a browser, an event without data is not dispatched.
    fn dispatch(&mut self, on_event: &mut impl FnMut(&SseEvent)) {
        if self.data_lines > 0 {
            on_event(&SseEvent {
                kind: self.kind,
                id: self.event_id,
                data_bytes: self.data_bytes,
                data_lines: self.data_lines,
            });
        }
        self.kind = EventKind::Message;
        self.event_id = None;
        self.data_bytes = 0;
        self.data_lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_id::{parse_shape, IdShape};

    fn scan(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut scanner = SseScanner::default();
        let mut events = Vec::new();
        for piece in pieces {
            scanner.feed(piece, |e| events.push(*e));
        }
        events
    }

    fn id_shape(e: &SseEvent) -> Option<IdShape> {
        e.id.map(|id| id.shape)
    }

    const STREAM: &[u8] = b"retry: 2000\n\n\
        event: init\ndata: {\"mime\":\"video/mp4\",\"init\":\"AAAA\"}\n\n\
        id: 7.1732400000123\nevent: data\ndata: QUJDREVGRw==\n\n\
        : keepalive\n\n\
        id: 8.1732400001123\r\nevent: data\r\ndata:QUJD\r\n\r\n\
        event: reset\ndata: {\"skipped\":3}\n\n\
        id:11.1732400004123\revent:data\rdata: x\ndata\ndata: yz\n\n\
        event: somethinglong\nid: 1732400000:5\ndata: hi\n\n\
        id: ignored-no-data\n\n\
        data: plain\n\n";

    fn expected() -> Vec<SseEvent> {
        let id = |s: &str| {
            let mut b = IdBuilder::default();
            b.push(s.as_bytes());
            Some(b.finish())
        };
        let ev = |kind, id, data_bytes, data_lines| SseEvent {
            kind,
            id,
            data_bytes,
            data_lines,
        };
        vec![
            ev(EventKind::Init, None, 34, 1),
            ev(EventKind::Data, id("7.1732400000123"), 12, 1),
            ev(EventKind::Data, id("8.1732400001123"), 4, 1),
            ev(EventKind::Reset, None, 13, 1),
            ev(EventKind::Data, id("11.1732400004123"), 3, 3),
            ev(EventKind::Other, id("1732400000:5"), 2, 1),
            ev(EventKind::Message, None, 5, 1),
        ]
    }

    #[test]
    fn scans_a_whole_stream() {
        let events = scan(&[STREAM]);
        assert_eq!(events, expected());
        assert_eq!(
            id_shape(&events[1]),
            Some(IdShape::SeqMillis {
                seq: 7,
                millis: 1_732_400_000_123
            })
        );
        assert_eq!(id_shape(&events[5]), Some(parse_shape(b"1732400000:5")));
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for a in 0..=STREAM.len() {
            let (x, y) = STREAM.split_at(a);
            assert_eq!(scan(&[x, y]), expected(), "split at {a}");
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_events() {
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let events = scan(&[&STREAM[..a], &STREAM[a..b], &STREAM[b..]]);
                assert_eq!(events, expected(), "splits at {a} and {b}");
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(scan(&pieces), expected());
    }

    #[test]
    fn long_data_lines_are_measured_not_stored() {
        let mut scanner = SseScanner::default();
        let mut events = Vec::new();
        scanner.feed(b"id: 1.2\nevent: data\ndata: ", |e| events.push(*e));
        let chunk = vec![b'A'; 64 * 1024];
        for _ in 0..16 {
            scanner.feed(&chunk, |e| events.push(*e));
        }
        scanner.feed(b"\r\n\r\n", |e| events.push(*e));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data_bytes, 16 * 64 * 1024);
        assert!(std::mem::size_of::<SseScanner>() <= 192);
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert!(scan(&[b"id: 1.2\ndata: abc\n"]).is_empty());
    }
}
