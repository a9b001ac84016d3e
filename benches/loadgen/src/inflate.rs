//! Inflating a gzip response body as it arrives (`--gzip`): skips the gzip header, then hands
//! the inflated bytes to the SSE scanner piece by piece. The stream has no end (ssecast never
//! sends a final block or a trailer), so only a full or sync flush makes bytes come out, which is
//! what a compressing SSE server must send. No I/O.

use flate2::{Decompress, FlushDecompress, Status};

/// Bytes of a gzip member header with no optional fields (RFC 1952), as ssecast and nginx send.
const GZIP_HEADER_LEN: usize = 10;

/// Why a gzip body could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not a gzip header, or one with optional fields (names, comments, extras).
    Header,
    /// The deflate data is corrupt.
    Data,
    /// A final block: the server ended the stream in the middle of the connection.
    Ended,
}

pub struct Inflater {
    /// Header bytes seen so far (checked as they come).
    header_seen: usize,
    d: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            header_seen: 0,
            d: Decompress::new(false),
        }
    }
}

impl Inflater {
    /// Inflates `input` through `out` (any size), calling `sink` with every piece of output.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut [u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), InflateError> {
        while self.header_seen < GZIP_HEADER_LEN {
            let Some((&b, rest)) = input.split_first() else {
                return Ok(());
            };
            let ok = match self.header_seen {
                0 => b == 0x1f,
                1 => b == 0x8b,
                2 => b == 8,
                3 => b == 0,
                _ => true,
            };
            if !ok {
                return Err(InflateError::Header);
            }
            self.header_seen += 1;
            input = rest;
        }
        loop {
            let (in_before, out_before) = (self.d.total_in(), self.d.total_out());
            let status = self
                .d
                .decompress(input, out, FlushDecompress::None)
                .map_err(|_| InflateError::Data)?;
            let taken = (self.d.total_in() - in_before) as usize;
            let made = (self.d.total_out() - out_before) as usize;
            input = &input[taken..];
            if made > 0 {
                sink(&out[..made]);
            }
            match status {
                Status::StreamEnd => return Err(InflateError::Ended),
                // Output full: more may be waiting even with no input left.
                _ if made == out.len() => {}
                _ if input.is_empty() || (taken == 0 && made == 0) => return Ok(()),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssecast::sse::deflate::{deflate_frame, GZIP_HEADER};

    #[test]
    fn frames_split_anywhere_come_out_whole_with_a_tiny_buffer() {
        let events = [
            b"retry: 2000\n\n".to_vec(),
            format!("id: 1.2\nevent: data\ndata: {}\n\n", "QUJD".repeat(5000)).into_bytes(),
            b": keepalive\n\n".to_vec(),
        ];
        let mut wire = GZIP_HEADER.to_vec();
        for e in &events {
            wire.extend_from_slice(&deflate_frame(e));
        }
        for split in [1, 7, 100, 4096, wire.len()] {
            let mut inf = Inflater::default();
            let mut got = Vec::new();
            let mut out = [0u8; 333];
            for piece in wire.chunks(split) {
                inf.feed(piece, &mut out, |b| got.extend_from_slice(b))
                    .unwrap();
            }
            assert_eq!(got, events.concat(), "split {split}");
        }
    }

    #[test]
    fn bad_headers_and_data_are_errors() {
        let mut out = [0u8; 64];
        let mut inf = Inflater::default();
        assert_eq!(
            inf.feed(b"data: x\n\n", &mut out, |_| {}),
            Err(InflateError::Header)
        );
        let mut inf = Inflater::default();
        let mut bad = GZIP_HEADER.to_vec();
        bad.extend_from_slice(&[0xff; 16]);
        assert_eq!(inf.feed(&bad, &mut out, |_| {}), Err(InflateError::Data));
    }
}
