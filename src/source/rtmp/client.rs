//! The publisher's side of RTMP, as much as the tests, the fuzzer's seeds and the benchmark need
//! to play a publish at the server without a socket: the handshake, the command sequence ffmpeg
//! sends, FLV tags as media messages, and the tags of an FLV file. The server never uses it.

use super::amf::{encode, object, Amf};
use super::chunk::write_message;
use super::SIG;

/// The bytes of one publish, built up in order.
#[derive(Debug, Clone)]
pub struct PublishScript {
    chunk_size: usize,
    next_txn: f64,
    pub bytes: Vec<u8>,
}

impl PublishScript {
    /// C0+C1, C2, a chunk size, then `connect` to `app`, `releaseStream`, `FCPublish`,
    /// `createStream` and `publish` of `name` (which may carry `?key=KEY`).
    pub fn new(app: &str, name: &str, chunk_size: usize) -> PublishScript {
        let mut bytes = vec![3];
        bytes.extend((0..2 * SIG).map(|i| (i % 251) as u8));
        let size = u32::try_from(chunk_size).unwrap_or(u32::MAX);
        write_message(&mut bytes, 2, 1, 0, 0, &size.to_be_bytes(), 128);
        let mut s = PublishScript {
            chunk_size,
            next_txn: 1.0,
            bytes,
        };
        let connect = object(&[
            ("app", Amf::String(app.into())),
            ("type", Amf::String("nonprivate".into())),
            ("tcUrl", Amf::String(format!("rtmp://127.0.0.1/{app}"))),
        ]);
        s.command(0, "connect", &[connect]);
        s.command(0, "releaseStream", &[Amf::Null, Amf::String(name.into())]);
        s.command(0, "FCPublish", &[Amf::Null, Amf::String(name.into())]);
        s.command(0, "createStream", &[Amf::Null]);
        s.command(
            1,
            "publish",
            &[
                Amf::Null,
                Amf::String(name.into()),
                Amf::String("live".into()),
            ],
        );
        s
    }

    /// A command message with the next transaction id.
    pub fn command(&mut self, stream: u32, name: &str, args: &[Amf]) {
        let mut payload = Vec::new();
        encode(&Amf::String(name.into()), &mut payload);
        encode(&Amf::Number(self.next_txn), &mut payload);
        self.next_txn += 1.0;
        for a in args {
            encode(a, &mut payload);
        }
        let csid = if stream == 0 { 3 } else { 4 };
        write_message(
            &mut self.bytes,
            csid,
            20,
            stream,
            0,
            &payload,
            self.chunk_size,
        );
    }

    /// An FLV tag as a message on the published stream: 8 audio, 9 video, 18 data.
    pub fn tag(&mut self, type_id: u8, timestamp: u32, payload: &[u8]) {
        let csid = match type_id {
            8 => 6,
            9 => 7,
            _ => 5,
        };
        write_message(
            &mut self.bytes,
            csid,
            type_id,
            1,
            timestamp,
            payload,
            self.chunk_size,
        );
    }

    /// Set Chunk Size: the messages after it are sent in chunks of `size` (`size` goes on the wire
    /// as given, so a bad one can be sent; the script then splits by at least 1 byte).
    pub fn set_chunk_size(&mut self, size: u32) {
        write_message(
            &mut self.bytes,
            2,
            1,
            0,
            0,
            &size.to_be_bytes(),
            self.chunk_size,
        );
        self.chunk_size = (size as usize).max(1);
    }

    /// `FCUnpublish` and `deleteStream`, as ffmpeg ends a publish.
    pub fn unpublish(&mut self, name: &str) {
        self.command(0, "FCUnpublish", &[Amf::Null, Amf::String(name.into())]);
        self.command(0, "deleteStream", &[Amf::Null, Amf::Number(1.0)]);
    }
}

/// The tags of an FLV file as (type, timestamp in ms, payload); stops at the first tag that
/// does not fit.
pub fn flv_tags(file: &[u8]) -> Vec<(u8, u32, &[u8])> {
    let mut tags = Vec::new();
    let Some(header) = file.get(5..9) else {
        return tags;
    };
    if !file.starts_with(b"FLV") {
        return tags;
    }
    let mut at = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize + 4;
    while let Some(h) = file.get(at..at + 11) {
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let Some(payload) = file.get(at + 11..at + 11 + size) else {
            break;
        };
        tags.push((h[0] & 0x1f, ts, payload));
        at += 11 + size + 4;
    }
    tags
}
