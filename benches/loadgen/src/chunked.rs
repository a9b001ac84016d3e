//! Incremental decoder for `Transfer-Encoding: chunked` response bodies (what nginx/nchan, Node
//! and axum send for an event stream). It hands out the payload as slices of the caller's input —
//! no copy, no allocation — and keeps a few words of state between reads, so a chunk may be split
//! anywhere. It does no I/O. Bare LF is accepted where CRLF is due; chunk extensions and trailers
//! are skipped.

/// Largest chunk size accepted: far above anything real, low enough never to overflow.
const MAX_CHUNK: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk-size line that is not hex digits (optionally followed by an extension).
    BadSize,
    /// A chunk size above [`MAX_CHUNK`].
    SizeTooLarge,
    /// Chunk data not followed by CRLF.
    MissingCrlf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` seen so far.
    Size {
        digits: u8,
    },
    /// Skipping a chunk extension (or whitespace) up to the end of the size line.
    Extension,
    /// Saw CR at the end of the size line.
    SizeLf,
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line (an empty one ends the body).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    Done,
}

/// Decoder state for one response body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Decodes `input`, calling `payload` with each piece of chunk data, in order. Returns
    /// `Ok(true)` once the terminating chunk and trailer have been read (later bytes are
    /// ignored).
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
        mut payload: impl FnMut(&'a [u8]),
    ) -> Result<bool, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Data { left } => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    payload(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Size { digits } => match hex_value(b) {
                    Some(d) => {
                        self.size = self.size * 16 + u64::from(d);
                        if self.size > MAX_CHUNK {
                            return Err(ChunkedError::SizeTooLarge);
                        }
                        State::Size {
                            digits: digits.saturating_add(1),
                        }
                    }
                    None if digits == 0 => return Err(ChunkedError::BadSize),
                    None => match b {
                        b';' | b' ' | b'\t' => State::Extension,
                        b'\r' => State::SizeLf,
                        b'\n' => self.end_of_size_line(),
                        _ => return Err(ChunkedError::BadSize),
                    },
                },
                State::Extension => match b {
                    b'\n' => self.end_of_size_line(),
                    _ => State::Extension,
                },
                State::SizeLf => match b {
                    b'\n' => self.end_of_size_line(),
                    _ => return Err(ChunkedError::BadSize),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => State::Size { digits: 0 },
                    _ => return Err(ChunkedError::MissingCrlf),
                },
                State::DataLf => match b {
                    b'\n' => State::Size { digits: 0 },
                    _ => return Err(ChunkedError::MissingCrlf),
                },
                State::TrailerStart => match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => State::Done,
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\n' => State::TrailerStart,
                    _ => State::TrailerLine,
                },
                State::TrailerLf => match b {
                    b'\n' => State::Done,
                    _ => return Err(ChunkedError::MissingCrlf),
                },
                State::Done => return Ok(true),
            };
            i += 1;
        }
        Ok(self.state == State::Done)
    }

    fn end_of_size_line(&mut self) -> State {
        let size = std::mem::take(&mut self.size);
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data { left: size }
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(wire: &[u8], splits: &[usize]) -> (Vec<u8>, Result<bool, ChunkedError>) {
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut start = 0;
        let mut result = Ok(false);
        for &end in splits.iter().chain(std::iter::once(&wire.len())) {
            result = decoder.feed(&wire[start..end], |p| out.extend_from_slice(p));
            if result.is_err() {
                break;
            }
            start = end;
        }
        (out, result)
    }

    const WIRE: &[u8] = b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        1\r\n\n\r\n0\r\nX-Trailer: 1\r\n\r\n";
    const PAYLOAD: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz\n";

    #[test]
    fn decodes_a_whole_body() {
        assert_eq!(decode_in_pieces(WIRE, &[]), (PAYLOAD.to_vec(), Ok(true)));
    }

    #[test]
    fn every_split_point_gives_the_same_payload() {
        for a in 0..=WIRE.len() {
            assert_eq!(
                decode_in_pieces(WIRE, &[a]),
                (PAYLOAD.to_vec(), Ok(true)),
                "split at {a}"
            );
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_payload() {
        let splits: Vec<usize> = (1..WIRE.len()).collect();
        assert_eq!(
            decode_in_pieces(WIRE, &splits),
            (PAYLOAD.to_vec(), Ok(true))
        );
    }

    #[test]
    fn bare_lf_is_accepted() {
        assert_eq!(
            decode_in_pieces(b"3\nabc\n0\n\n", &[]),
            (b"abc".to_vec(), Ok(true))
        );
    }

    #[test]
    fn an_open_stream_is_not_done() {
        assert_eq!(
            decode_in_pieces(b"3\r\nabc\r\n4\r\nde", &[]),
            (b"abcde".to_vec(), Ok(false))
        );
    }

    #[test]
    fn bytes_after_the_end_are_ignored() {
        assert_eq!(
            decode_in_pieces(b"0\r\n\r\ngarbage", &[]),
            (Vec::new(), Ok(true))
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(
            decode_in_pieces(b"zz\r\n", &[]).1,
            Err(ChunkedError::BadSize)
        );
        assert_eq!(decode_in_pieces(b"\r\n", &[]).1, Err(ChunkedError::BadSize));
        assert_eq!(decode_in_pieces(b"3\rx", &[]).1, Err(ChunkedError::BadSize));
        assert_eq!(
            decode_in_pieces(b"3\r\nabcX", &[]).1,
            Err(ChunkedError::MissingCrlf)
        );
        assert_eq!(
            decode_in_pieces(b"fffffffffffffffffff\r\n", &[]).1,
            Err(ChunkedError::SizeTooLarge)
        );
    }
}
