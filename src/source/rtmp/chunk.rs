//! The RTMP chunk stream (RTMP 1.0 §5.3): messages split into chunks of the peer's chunk size,
//! interleaved by chunk stream id, with the four header types and extended timestamps. The
//! reader reassembles messages from bytes in any split, under explicit limits (message size,
//! chunk streams, bytes held); the writer splits a message into chunks. Pure.

use std::collections::HashMap;
use std::fmt;

/// Largest message accepted (a 4K keyframe fits many times over).
pub const MAX_MESSAGE: usize = 8 << 20;
/// Most chunk streams one connection may use at once.
const MAX_CHUNK_STREAMS: usize = 64;
/// Most bytes held in partial messages across all chunk streams.
const MAX_PENDING: usize = 16 << 20;
/// Largest chunk size the protocol allows (a 24-bit value; the top bit must be 0).
pub const MAX_CHUNK_SIZE: u32 = 0x00ff_ffff;

/// Why the chunk stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError(pub String);

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    /// Milliseconds (32 bits, wrapping).
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    /// A header for this chunk stream has been seen (fmt 1–3 need one).
    known: bool,
    payload: Vec<u8>,
}

#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: usize,
    streams: HashMap<u32, ChunkStream>,
    /// Input not yet parsed (at most one chunk's worth).
    buf: Vec<u8>,
    pending: usize,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            chunk_size: 128,
            streams: HashMap::new(),
            buf: Vec::new(),
            pending: 0,
        }
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

impl ChunkReader {
    /// The peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError(format!("a chunk size of {size}")));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// The peer's Abort Message: the partial message on `csid` is dropped.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            self.pending -= s.payload.len();
            s.payload = Vec::new();
        }
    }

    /// Bytes held (unparsed input and partial messages).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending
    }

    /// Takes bytes; hands each complete message to `out`. A message that changes the chunk
    /// size takes effect for the chunks after it (the caller applies it in `out`'s return).
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut out: impl FnMut(&mut ChunkReader, Message) -> Result<(), ChunkError>,
    ) -> Result<(), ChunkError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let mut at = 0;
        let result = loop {
            match self.chunk(&buf[at..]) {
                Err(e) => break Err(e),
                Ok(None) => break Ok(()),
                Ok(Some((used, msg))) => {
                    at += used;
                    if let Some(m) = msg {
                        if let Err(e) = out(self, m) {
                            break Err(e);
                        }
                    }
                }
            }
        };
        buf.drain(..at);
        self.buf = buf;
        result
    }

    /// Parses one chunk at the start of `b`: `None` if it is not all there yet, else the bytes
    /// it took and the message it completed.
    #[allow(clippy::type_complexity)]
    fn chunk(&mut self, b: &[u8]) -> Result<Option<(usize, Option<Message>)>, ChunkError> {
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut at) = match first & 0x3f {
            0 if b.len() >= 2 => (64 + u32::from(b[1]), 2),
            1 if b.len() >= 3 => (64 + u32::from(b[1]) + 256 * u32::from(b[2]), 3),
            0 | 1 => return Ok(None),
            n => (u32::from(n), 1),
        };
        let header = [11, 7, 3, 0][usize::from(fmt)];
        if b.len() < at + header {
            return Ok(None);
        }
        if !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError(format!(
                "more than {MAX_CHUNK_STREAMS} chunk streams"
            )));
        }
        // The stream's state changes only once the whole chunk is there (below); until then
        // the header is read into locals, and a partial message is never copied.
        let s = self.streams.entry(csid).or_default();
        if fmt != 0 && !s.known {
            return Err(ChunkError(format!(
                "a type {fmt} chunk on chunk stream {csid}, which has no header yet"
            )));
        }
        let h = &b[at..at + header];
        let starts_message = s.payload.is_empty();
        let mut field = 0;
        if fmt <= 2 {
            field = be24(&h[0..3]);
        }
        let (length, type_id) = if fmt <= 1 {
            (be24(&h[3..6]), h[6])
        } else {
            (s.length, s.type_id)
        };
        let stream_id = if fmt == 0 {
            u32::from_le_bytes([h[7], h[8], h[9], h[10]])
        } else {
            s.stream_id
        };
        at += header;
        let extended = if fmt <= 2 {
            field == 0x00ff_ffff
        } else {
            s.extended
        };
        if extended {
            if b.len() < at + 4 {
                return Ok(None);
            }
            if fmt <= 2 {
                field = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            }
            at += 4;
        }
        if length as usize > MAX_MESSAGE {
            return Err(ChunkError(format!(
                "a message of {length} bytes (over {} MiB)",
                MAX_MESSAGE >> 20
            )));
        }
        let Some(left) = (length as usize).checked_sub(s.payload.len()) else {
            return Err(ChunkError(format!(
                "a message of {length} bytes on chunk stream {csid}, which has {} already",
                s.payload.len()
            )));
        };
        let n = left.min(self.chunk_size);
        // Checked before the chunk's bytes are waited for: they are held meanwhile, so partial
        // messages and the partial chunk together stay under the cap.
        if self.pending + n > MAX_PENDING {
            return Err(ChunkError("too many bytes in partial messages".into()));
        }
        if b.len() < at + n {
            return Ok(None);
        }
        s.length = length;
        s.type_id = type_id;
        s.stream_id = stream_id;
        s.extended = extended;
        if starts_message {
            match fmt {
                0 => s.timestamp = field,
                1 | 2 => {
                    s.delta = field;
                    s.timestamp = s.timestamp.wrapping_add(field);
                }
                _ => s.timestamp = s.timestamp.wrapping_add(s.delta),
            }
        }
        s.payload.extend_from_slice(&b[at..at + n]);
        self.pending += n;
        at += n;
        s.known = true;
        let done = s.payload.len() == length as usize;
        let msg = done.then(|| {
            self.pending -= s.payload.len();
            Message {
                csid,
                type_id,
                stream_id,
                timestamp: s.timestamp,
                payload: std::mem::take(&mut s.payload),
            }
        });
        Ok(Some((at, msg)))
    }
}

/// Appends `payload` as one message in chunks of `chunk_size` (a type 0 header, then type 3).
pub fn write_message(
    out: &mut Vec<u8>,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    debug_assert!((2..64).contains(&csid), "one-byte chunk stream ids only");
    let extended = timestamp >= 0x00ff_ffff;
    let ts = if extended { 0x00ff_ffff } else { timestamp };
    out.push(csid);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    for (i, piece) in payload.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            out.push(0xc0 | csid);
            if extended {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], split: usize) -> Result<Vec<Message>, ChunkError> {
        let mut r = ChunkReader::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            r.feed(piece, |r, m| {
                if m.type_id == 1 {
                    let size = u32::from_be_bytes([
                        m.payload[0],
                        m.payload[1],
                        m.payload[2],
                        m.payload[3],
                    ]);
                    r.set_chunk_size(size)?;
                }
                out.push(m);
                Ok(())
            })?;
        }
        Ok(out)
    }

    #[test]
    fn messages_round_trip_in_any_split_with_chunk_size_changes() {
        let mut wire = Vec::new();
        let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        write_message(&mut wire, 3, 20, 0, 0, &big, 128);
        write_message(&mut wire, 2, 1, 0, 0, &4096u32.to_be_bytes(), 128);
        write_message(&mut wire, 6, 9, 1, 40, &big, 4096);
        write_message(&mut wire, 6, 9, 1, 0x0100_0000, &big, 4096);
        for split in [1, 7, 128, 5000] {
            let msgs = read_all(&wire, split).unwrap();
            assert_eq!(msgs.len(), 4, "split {split}");
            assert_eq!(msgs[0].payload, big);
            assert_eq!((msgs[2].stream_id, msgs[2].timestamp), (1, 40));
            assert_eq!(msgs[3].timestamp, 0x0100_0000, "extended timestamp");
            assert_eq!(msgs[3].payload, big);
        }
    }

    #[test]
    fn header_types_one_to_three_and_two_byte_ids() {
        // fmt 0 on csid 70 (two-byte basic header), then fmt 1, 2 and 3 messages.
        let mut w = vec![0x00, 6];
        w.extend_from_slice(&[0, 0, 10, 0, 0, 2, 8, 1, 0, 0, 0, b'a', b'b']);
        w.extend_from_slice(&[0x40, 6, 0, 0, 5, 0, 0, 1, 9, b'c']);
        w.extend_from_slice(&[0x80, 6, 0, 0, 7, b'd']);
        w.extend_from_slice(&[0xc0, 6, b'e']);
        let m = read_all(&w, 3).unwrap();
        let summary: Vec<(u32, u8, u32, Vec<u8>)> = m
            .into_iter()
            .map(|m| (m.csid, m.type_id, m.timestamp, m.payload))
            .collect();
        assert_eq!(
            summary,
            vec![
                (70, 8, 10, b"ab".to_vec()),
                (70, 9, 15, b"c".to_vec()),
                (70, 9, 22, b"d".to_vec()),
                (70, 9, 29, b"e".to_vec()),
            ]
        );
    }

    #[test]
    fn hostile_chunk_streams_are_refused_with_bounded_memory() {
        let mut r = ChunkReader::default();
        assert!(r.set_chunk_size(0).is_err());
        assert!(r.set_chunk_size(1 << 31).is_err());
        // A 16 MiB message on a 128-byte chunk size.
        let w = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        assert!(read_all(&w, 5).is_err());
        // Continuation chunks for a stream never started.
        assert!(read_all(&[0xc5, 1, 2, 3], 1).is_err());
        // Many chunk streams, each with a partial message.
        let mut w = Vec::new();
        for csid in 2..63u8 {
            w.extend_from_slice(&[csid, 0, 0, 0, 0x10, 0, 0, 9, 1, 0, 0, 0]);
            w.extend(std::iter::repeat_n(0u8, 128));
        }
        let mut r = ChunkReader::default();
        r.feed(&w, |_, _| Ok(())).unwrap();
        assert!(r.buffered() < 64 * 1024, "{}", r.buffered());
    }

    #[test]
    fn a_header_may_not_shorten_a_message_under_way() {
        // 200 bytes announced, 128 sent, then a type 1 header on the same stream saying 10.
        let mut w = vec![3, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0];
        w.extend_from_slice(&[0; 128]);
        w.extend_from_slice(&[0x43, 0, 0, 0, 0, 0, 10, 9]);
        w.extend_from_slice(&[0; 10]);
        for split in [1, 7, 500] {
            assert!(read_all(&w, split).is_err(), "split {split}");
        }
    }

    #[test]
    fn a_partial_chunk_counts_against_the_cap() {
        // Two 8 MiB messages, each one chunk short of done, hold 16 MiB - 2; the first bytes of
        // a third message's chunk are refused rather than held while the rest arrives.
        let mut r = ChunkReader::default();
        r.set_chunk_size((MAX_MESSAGE - 1) as u32).unwrap();
        let len = (MAX_MESSAGE as u32).to_be_bytes();
        let body = vec![0u8; MAX_MESSAGE - 1];
        for csid in [3u8, 4] {
            r.feed(
                &[csid, 0, 0, 0, len[1], len[2], len[3], 9, 1, 0, 0, 0],
                |_, _| Ok(()),
            )
            .unwrap();
            r.feed(&body, |_, _| Ok(())).unwrap();
        }
        assert_eq!(r.buffered(), 2 * (MAX_MESSAGE - 1));
        let third = r.feed(
            &[5, 0, 0, 0, len[1], len[2], len[3], 9, 1, 0, 0, 0],
            |_, _| Ok(()),
        );
        assert!(third.is_err());
        assert!(r.buffered() <= MAX_PENDING + 18, "{}", r.buffered());
    }
}
