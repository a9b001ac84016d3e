//! The chunked transfer coding of a request body (RFC 9112 §7.1), decoded incrementally and in
//! place: framing bytes are consumed, chunk data is handed back as ranges of the input, and while
//! inside a chunk the caller may read data straight into its own buffer (`data_left`) so body
//! bytes are never copied by the decoder.
//!
//! Pure: bytes in, ranges out; limits on size lines and trailers are explicit constants.

use std::fmt;
use std::ops::Range;

/// Longest chunk-size line (size, extensions, CRLF); longer is an error.
const MAX_SIZE_LINE: usize = 1024;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

/// What was wrong with a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedError(pub &'static str);

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Past the size: extensions up to the line end (`cr`: a CR was just seen).
    SizeRest {
        value: u64,
        cr: bool,
    },
    Data {
        left: u64,
    },
    /// Expecting the CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one. `line` counts bytes of the
    /// current line, `total` every trailer byte.
    Trailer {
        line: usize,
        total: usize,
        cr: bool,
    },
    Done,
}

/// One step of decoding: `consumed` input bytes, of which `data` (a range of the input) is
/// chunk data for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub data: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size_line: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            size_line: 0,
        }
    }
}

impl ChunkedDecoder {
    /// True once the last chunk and its trailers have been read: the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Chunk data bytes that follow right now in the input, which a caller may read straight
    /// into its own buffer and then report with [`consume_data`](Self::consume_data); 0 while
    /// framing comes next.
    pub fn data_left(&self) -> u64 {
        match self.state {
            State::Data { left } => left,
            _ => 0,
        }
    }

    /// Accounts for `n` data bytes the caller read directly (at most `data_left`).
    pub fn consume_data(&mut self, n: usize) {
        if let State::Data { left } = self.state {
            let left = left.saturating_sub(n as u64);
            self.state = if left == 0 {
                State::DataCr
            } else {
                State::Data { left }
            };
        }
    }

    /// Decodes from the start of `input`: either a run of chunk data, or framing bytes up to
    /// the next data (or the end of the input, or the end of the body). Call again with the
    /// rest of the input while `consumed` is short of it and the body is not done.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ChunkedError> {
        if let State::Data { left } = self.state {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
            self.consume_data(n);
            return Ok(Step {
                consumed: n,
                data: 0..n,
            });
        }
        let mut at = 0;
        while at < input.len() {
            let b = input[at];
            at += 1;
            self.state = match self.state {
                State::Size { value, digits } => {
                    self.size_line += 1;
                    match hex(b) {
                        Some(d) => {
                            if digits >= 16 {
                                return Err(ChunkedError("chunk size too large"));
                            }
                            State::Size {
                                value: value << 4 | u64::from(d),
                                digits: digits + 1,
                            }
                        }
                        None if digits == 0 => {
                            return Err(ChunkedError("chunk size is not a hex number"))
                        }
                        None => self.after_size(value, b)?,
                    }
                }
                State::SizeRest { value, cr } => {
                    self.size_line += 1;
                    if self.size_line > MAX_SIZE_LINE {
                        return Err(ChunkedError("chunk size line too long"));
                    }
                    match (b, cr) {
                        (b'\n', _) => self.start_chunk(value),
                        (_, true) => {
                            return Err(ChunkedError("CR without LF in a chunk size line"))
                        }
                        (b'\r', false) => State::SizeRest { value, cr: true },
                        _ => State::SizeRest { value, cr: false },
                    }
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => self.next_size(),
                    _ => return Err(ChunkedError("chunk data longer than its size")),
                },
                State::DataLf => match b {
                    b'\n' => self.next_size(),
                    _ => return Err(ChunkedError("CR without LF after chunk data")),
                },
                State::Trailer { line, total, cr } => {
                    if total + 1 > MAX_TRAILERS {
                        return Err(ChunkedError("trailers too long"));
                    }
                    match (b, cr) {
                        (b'\n', _) if line == 0 => State::Done,
                        (b'\n', _) => State::Trailer {
                            line: 0,
                            total: total + 1,
                            cr: false,
                        },
                        (_, true) => return Err(ChunkedError("CR without LF in a trailer")),
                        (b'\r', false) => State::Trailer {
                            line,
                            total: total + 1,
                            cr: true,
                        },
                        _ => State::Trailer {
                            line: line + 1,
                            total: total + 1,
                            cr: false,
                        },
                    }
                }
                State::Data { .. } | State::Done => {
                    at -= 1;
                    break;
                }
            };
            if matches!(self.state, State::Data { .. } | State::Done) {
                break;
            }
        }
        Ok(Step {
            consumed: at,
            data: at..at,
        })
    }

    fn after_size(&mut self, value: u64, b: u8) -> Result<State, ChunkedError> {
        match b {
            b'\n' => Ok(self.start_chunk(value)),
            b'\r' => Ok(State::SizeRest { value, cr: true }),
            b';' | b' ' | b'\t' => Ok(State::SizeRest { value, cr: false }),
            _ => Err(ChunkedError("chunk size is not a hex number")),
        }
    }

    fn start_chunk(&mut self, size: u64) -> State {
        self.size_line = 0;
        if size == 0 {
            State::Trailer {
                line: 0,
                total: 0,
                cr: false,
            }
        } else {
            State::Data { left: size }
        }
    }

    fn next_size(&mut self) -> State {
        self.size_line = 0;
        State::Size {
            value: 0,
            digits: 0,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes `data` as chunks of at most `chunk` bytes followed by the last chunk; for tests and
/// benches.
pub fn encode(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / chunk.max(1) * 12 + 8);
    for piece in data.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `split` bytes; returns the body and whether it ended.
    fn decode(input: &[u8], split: usize) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        for piece in input.chunks(split.max(1)) {
            let mut at = 0;
            while at < piece.len() && !d.is_done() {
                let step = d.step(&piece[at..])?;
                out.extend_from_slice(&piece[at..][step.data.clone()]);
                at += step.consumed;
                if step.consumed == 0 {
                    break;
                }
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn decodes_every_split_the_same() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let wire = encode(&body, 777);
        for split in [1, 2, 3, 5, 64, 1000, wire.len()] {
            assert_eq!(
                decode(&wire, split).unwrap(),
                (body.clone(), true),
                "split {split}"
            );
        }
    }

    #[test]
    fn extensions_trailers_and_bare_lf() {
        let wire = b"5;name=value\r\nhello\r\n6\nworld!\n0\r\nX-Trailer: yes\r\n\r\n";
        assert_eq!(decode(wire, 1).unwrap(), (b"helloworld!".to_vec(), true));
        assert!(!decode(b"A\r\n0123456789\r\n", 4).unwrap().1);
        assert!(decode(b"a\r\n0123456789\r\n0\r\n\r\n", 4).unwrap().1);
    }

    #[test]
    fn bad_framing_is_an_error() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhello!!\r\n",
            b"5\r\nhello\rX",
            b"11111111111111111\r\n",
            b"5\rX",
            b"\r\n",
        ] {
            assert!(
                decode(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(decode(bad, 100).is_err());
        }
        let long = format!("5;{}\r\n", "x".repeat(2000));
        assert!(decode(long.as_bytes(), 7).is_err());
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(2000));
        assert!(decode(trailers.as_bytes(), 100).is_err());
    }

    #[test]
    fn data_can_be_read_directly() {
        let mut d = ChunkedDecoder::default();
        let step = d.step(b"10\r\n").unwrap();
        assert_eq!(step.consumed, 4);
        assert_eq!(d.data_left(), 16);
        d.consume_data(10);
        assert_eq!(d.data_left(), 6);
        d.consume_data(6);
        assert_eq!(d.data_left(), 0);
        assert_eq!(d.step(b"\r\n0\r\n\r\n").unwrap().consumed, 7);
        assert!(d.is_done());
    }
}
