//! An incremental Server-Sent Events parser for a relay's upstream (WHATWG HTML §9.2.6): bytes in
//! any split, complete events out (`id`, `event`, `data`), comments and `retry` skipped, lines
//! ended by LF or CRLF. Every line and event is capped, so a hostile upstream cannot make it
//! grow without bound. Pure: no I/O.

use std::fmt;

/// Largest event accepted (a 16 MiB fragment in base64 is about 22 MiB).
pub const MAX_EVENT: usize = 24 << 20;

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    /// The `event` field; `message` when there was none.
    pub kind: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    TooLarge,
    NotUtf8,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::TooLarge => write!(f, "an event over {} MiB", MAX_EVENT >> 20),
            SseError::NotUtf8 => write!(f, "an event that is not UTF-8"),
        }
    }
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// The line being read.
    line: Vec<u8>,
    id: Option<String>,
    kind: Option<String>,
    data: String,
    /// The event has a data line (so the next one is joined with a newline).
    has_data: bool,
    /// The event has at least one field.
    any: bool,
}

impl SseParser {
    /// Bytes held for the event being read.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// Takes bytes; hands each complete event to `out`.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        mut out: impl FnMut(SseEvent),
    ) -> Result<(), SseError> {
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            if self.buffered() + nl > MAX_EVENT {
                return Err(SseError::TooLarge);
            }
            self.line.extend_from_slice(&bytes[..nl]);
            bytes = &bytes[nl + 1..];
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.take_line(&line)? {
                out(event);
            }
            self.line = line;
            self.line.clear();
        }
        if self.buffered() + bytes.len() > MAX_EVENT {
            return Err(SseError::TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            if !self.any {
                return Ok(None);
            }
            self.any = false;
            self.has_data = false;
            return Ok(Some(SseEvent {
                id: self.id.take(),
                kind: self.kind.take().unwrap_or_else(|| "message".into()),
                data: std::mem::take(&mut self.data),
            }));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = std::str::from_utf8(value).map_err(|_| SseError::NotUtf8)?;
        match field {
            b"id" => {
                self.id = Some(value.to_string());
                self.any = true;
            }
            b"event" => {
                self.kind = Some(value.to_string());
                self.any = true;
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                self.any = true;
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8], split: usize) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for piece in input.chunks(split.max(1)) {
            p.feed(piece, |e| out.push(e))?;
        }
        Ok(out)
    }

    #[test]
    fn events_in_any_split() {
        let input = b"retry: 2000\n\nevent: init\ndata: {\"a\":1}\n\n: keepalive\n\nid: 3.99\r\nevent: data\r\ndata: QUJD\r\n\r\ndata: x\ndata: y\n\n";
        let want = vec![
            SseEvent {
                id: None,
                kind: "init".into(),
                data: "{\"a\":1}".into(),
            },
            SseEvent {
                id: Some("3.99".into()),
                kind: "data".into(),
                data: "QUJD".into(),
            },
            SseEvent {
                id: None,
                kind: "message".into(),
                data: "x\ny".into(),
            },
        ];
        for split in [1, 2, 5, 17, input.len()] {
            assert_eq!(parse(input, split).unwrap(), want, "split {split}");
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let mut p = SseParser::default();
        let line = vec![b'a'; 1 << 20];
        let mut err = None;
        for _ in 0..30 {
            if let Err(e) = p.feed(&line, |_| {}) {
                err = Some(e);
                break;
            }
            assert!(p.buffered() <= MAX_EVENT);
        }
        assert_eq!(err, Some(SseError::TooLarge));
        assert_eq!(parse(b"data: \xff\n\n", 3), Err(SseError::NotUtf8));
    }
}
