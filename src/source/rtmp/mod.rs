//! RTMP publishing (OBS, ffmpeg, GStreamer's rtmp2sink), sans-I/O in the style of quinn-proto:
//! an [`RtmpSession`] takes the bytes a publisher sends and gives back the bytes to answer and
//! the events that matter ("publish NAME", a decoder configuration, an access unit, "unpublish").
//! It never owns a socket or a clock, so it is tested and fuzzed with byte slices split anywhere;
//! the event loop feeds it.
//!
//! Handshake: the simple one (C0+C1 → S0+S1+S2, C2), which OBS's librtmp and ffmpeg accept.
//! Commands answered as they expect: `connect` (window ack size, peer bandwidth, chunk size,
//! `_result`), `releaseStream`/`FCPublish`/`FCUnpublish` (`_result`), `createStream` (stream 1),
//! `publish` (`onStatus NetStream.Publish.Start`, or an error status once the server refuses),
//! `deleteStream`/`closeStream`; `@setDataFrame onMetaData` is read. Acknowledgements follow the
//! peer's window. `chunk` reassembles messages, `amf` reads commands, `flv` reads media tags.

pub mod amf;
pub mod chunk;
#[doc(hidden)]
pub mod client;
pub mod flv;
pub mod ingest;

use amf::{decode_all, encode, object, Amf};
use chunk::{write_message, ChunkError, ChunkReader, Message};
use flv::{Tag, VideoCodec};
use std::collections::VecDeque;
use std::fmt;

/// Size of C1/S1/S2/C2.
const SIG: usize = 1536;
/// The chunk size the server sends with.
const OUT_CHUNK_SIZE: usize = 4096;
/// The acknowledgement window the server announces.
const WINDOW: u32 = 2_500_000;
/// Most bytes of answers held before the peer reads them (answers are small; a peer that reads
/// nothing while sending commands is cut off).
const MAX_OUTPUT: usize = 256 * 1024;
/// The message stream id given to the publisher.
const STREAM_ID: u32 = 1;
/// Kinds of unsupported media reported at most.
const MAX_WARNED: usize = 16;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpError(pub String);

impl fmt::Display for RtmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ChunkError> for RtmpError {
    fn from(e: ChunkError) -> Self {
        RtmpError(e.0)
    }
}

/// What the publisher did.
#[derive(Debug, Clone, PartialEq)]
pub enum RtmpEvent {
    /// It asks to publish `name` (as sent: it may carry `?key=KEY`) under `app`; answer with
    /// [`RtmpSession::accept_publish`] or [`RtmpSession::reject_publish`].
    Publish {
        app: String,
        name: String,
    },
    /// `onMetaData`, summarized for the log.
    Metadata(String),
    VideoConfig {
        codec: VideoCodec,
        record: Vec<u8>,
    },
    /// One access unit: length-prefixed NAL units; times in ms on the publisher's clock.
    Video {
        codec: VideoCodec,
        keyframe: bool,
        dts_ms: u64,
        cts_ms: i32,
        data: Vec<u8>,
    },
    /// The AAC AudioSpecificConfig.
    AudioConfig(Vec<u8>),
    /// One raw AAC frame.
    Audio {
        dts_ms: u64,
        data: Vec<u8>,
    },
    /// Enhanced RTMP Opus: the `OpusHead`.
    OpusConfig(Vec<u8>),
    /// One Opus packet.
    Opus {
        dts_ms: u64,
        data: Vec<u8>,
    },
    /// It stopped publishing.
    Unpublish,
    /// It sent media in a codec the server cannot mux (logged once per kind).
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for C0 and C1.
    Hello,
    /// Waiting for C2.
    Ack,
    Chunks,
}

pub struct RtmpSession {
    stage: Stage,
    /// Handshake bytes received so far.
    hello: Vec<u8>,
    chunks: ChunkReader,
    out: Vec<u8>,
    events: VecDeque<RtmpEvent>,
    app: String,
    /// The publish was accepted: media messages are passed on.
    publishing: bool,
    /// A publish is waiting for the server's answer.
    asked: bool,
    received: u64,
    peer_window: Option<u32>,
    acked: u64,
    /// 64-bit media clock from the 32-bit message timestamps (they wrap after 49 days): each
    /// one is taken as the nearest to the one before it (audio and video share the clock and
    /// interleave slightly out of order).
    last_ts: u32,
    last_ext: Option<u64>,
    warned: Vec<String>,
}

impl Default for RtmpSession {
    fn default() -> Self {
        RtmpSession {
            stage: Stage::Hello,
            hello: Vec::new(),
            chunks: ChunkReader::default(),
            out: Vec::new(),
            events: VecDeque::new(),
            app: String::new(),
            publishing: false,
            asked: false,
            received: 0,
            peer_window: None,
            acked: 0,
            last_ts: 0,
            last_ext: None,
            warned: Vec::new(),
        }
    }
}

fn cmd(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

fn status(level: &str, code: &str, description: &str) -> Amf {
    object(&[
        ("level", Amf::String(level.into())),
        ("code", Amf::String(code.into())),
        ("description", Amf::String(description.into())),
    ])
}

impl RtmpSession {
    /// Bytes to send to the publisher; the caller writes them and calls `consumed`.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`output`](Self::output) were written.
    pub fn consumed(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        self.events.pop_front()
    }

    /// The application name from `connect` (`live` in `rtmp://host/live/NAME`).
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Bytes held: handshake, partial chunks and messages, unsent answers.
    pub fn buffered(&self) -> usize {
        self.hello.len() + self.chunks.buffered() + self.out.len()
    }

    /// Takes bytes from the publisher.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), RtmpError> {
        self.received += bytes.len() as u64;
        if self.stage != Stage::Chunks {
            let need = if self.stage == Stage::Hello {
                1 + SIG
            } else {
                SIG
            };
            if self.stage == Stage::Hello && self.hello.is_empty() {
                // Told at the first byte, not after 1537 of something else.
                if let Some(&v) = bytes.first().filter(|&&v| v != 3) {
                    return Err(RtmpError(format!(
                        "not an RTMP handshake (version byte {v})"
                    )));
                }
            }
            let take = (need - self.hello.len()).min(bytes.len());
            self.hello.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.hello.len() < need {
                return Ok(());
            }
            if self.stage == Stage::Hello {
                if self.hello[0] != 3 {
                    return Err(RtmpError(format!(
                        "not an RTMP handshake (version byte {})",
                        self.hello[0]
                    )));
                }
                // S0, S1 (time 0, zero, our random = a fixed pattern is fine for the simple
                // handshake), S2 (C1 echoed).
                self.out.push(3);
                self.out.extend_from_slice(&[0; 8]);
                self.out.extend((0..SIG - 8).map(|i| (i * 7 + 3) as u8));
                let c1 = self.hello[1..].to_vec();
                self.out.extend_from_slice(&c1);
                self.stage = Stage::Ack;
            } else {
                self.stage = Stage::Chunks;
            }
            self.hello.clear();
            if bytes.is_empty() {
                return Ok(());
            }
            return self.feed_after_handshake(bytes);
        }
        self.feed_after_handshake(bytes)
    }

    fn feed_after_handshake(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        if self.stage != Stage::Chunks {
            // Bytes of C2 still missing: go round again (received is already counted).
            self.received -= bytes.len() as u64;
            return self.feed(bytes);
        }
        let mut messages = Vec::new();
        self.chunks.feed(bytes, |reader, m| {
            match m.type_id {
                1 if m.payload.len() >= 4 => {
                    let p = &m.payload;
                    reader.set_chunk_size(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))?;
                }
                2 if m.payload.len() >= 4 => {
                    let p = &m.payload;
                    reader.abort(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                }
                _ => messages.push(m),
            }
            Ok(())
        })?;
        for m in messages {
            self.message(m)?;
        }
        if let Some(w) = self.peer_window {
            if self.received - self.acked >= u64::from(w) {
                self.acked = self.received;
                let seq = (self.received & u64::from(u32::MAX)) as u32;
                write_message(
                    &mut self.out,
                    2,
                    3,
                    0,
                    0,
                    &seq.to_be_bytes(),
                    OUT_CHUNK_SIZE,
                );
            }
        }
        if self.out.len() > MAX_OUTPUT {
            return Err(RtmpError(
                "the publisher reads none of the server's answers".into(),
            ));
        }
        Ok(())
    }

    fn message(&mut self, m: Message) -> Result<(), RtmpError> {
        match m.type_id {
            5 if m.payload.len() >= 4 => {
                let p = &m.payload;
                self.peer_window = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]).max(1));
            }
            20 => self.command(&m.payload)?,
            17 if !m.payload.is_empty() => self.command(&m.payload[1..])?,
            18 | 15 => {
                let data = if m.type_id == 15 {
                    m.payload.get(1..).unwrap_or(&[])
                } else {
                    &m.payload
                };
                if let Ok(values) = decode_all(data) {
                    let meta = values.iter().find(|v| matches!(v, Amf::Object(_)));
                    if let Some(Amf::Object(props)) = meta {
                        let summary: Vec<String> = props
                            .iter()
                            .filter(|(k, _)| {
                                matches!(
                                    k.as_str(),
                                    "width"
                                        | "height"
                                        | "framerate"
                                        | "videocodecid"
                                        | "audiocodecid"
                                        | "encoder"
                                )
                            })
                            .map(|(k, v)| match v {
                                Amf::Number(n) => format!("{k}={n}"),
                                Amf::String(s) => format!("{k}={s}"),
                                other => format!("{k}={other:?}"),
                            })
                            .collect();
                        self.events
                            .push_back(RtmpEvent::Metadata(summary.join(" ")));
                    }
                }
            }
            // Media right behind the publish (in the same read) follows the Publish event; the
            // caller answers that before it takes the next one.
            8 | 9 if self.publishing || self.asked => self.media(&m),
            _ => {}
        }
        Ok(())
    }

    fn clock(&mut self, ts: u32) -> u64 {
        let ext = match self.last_ext {
            None => u64::from(ts),
            Some(last) => {
                let delta = i64::from(ts.wrapping_sub(self.last_ts) as i32);
                last.saturating_add_signed(delta)
            }
        };
        self.last_ts = ts;
        self.last_ext = Some(ext);
        ext
    }

    fn media(&mut self, m: &Message) {
        let tag = if m.type_id == 9 {
            flv::video(&m.payload)
        } else {
            flv::audio(&m.payload)
        };
        let event = match tag {
            Tag::VideoConfig { codec, record } => RtmpEvent::VideoConfig {
                codec,
                record: record.to_vec(),
            },
            Tag::Video {
                codec,
                keyframe,
                cts,
                data,
            } => RtmpEvent::Video {
                codec,
                keyframe,
                dts_ms: self.clock(m.timestamp),
                cts_ms: cts,
                data: data.to_vec(),
            },
            Tag::AudioConfig(asc) => RtmpEvent::AudioConfig(asc.to_vec()),
            Tag::Audio(data) => RtmpEvent::Audio {
                dts_ms: self.clock(m.timestamp),
                data: data.to_vec(),
            },
            Tag::OpusConfig(head) => RtmpEvent::OpusConfig(head.to_vec()),
            Tag::Opus(data) => RtmpEvent::Opus {
                dts_ms: self.clock(m.timestamp),
                data: data.to_vec(),
            },
            Tag::Skip => return,
            Tag::Unsupported(what) => {
                // Each kind once; a peer inventing kinds (FourCCs are its choice) is not
                // remembered, or logged, beyond the first few.
                if self.warned.len() >= MAX_WARNED || self.warned.contains(&what) {
                    return;
                }
                self.warned.push(what.clone());
                RtmpEvent::Unsupported(what)
            }
        };
        self.events.push_back(event);
    }

    fn send_command(&mut self, csid: u8, stream_id: u32, values: &[Amf]) {
        let payload = cmd(values);
        write_message(
            &mut self.out,
            csid,
            20,
            stream_id,
            0,
            &payload,
            OUT_CHUNK_SIZE,
        );
    }

    fn command(&mut self, payload: &[u8]) -> Result<(), RtmpError> {
        let values = decode_all(payload).map_err(|e| RtmpError(e.to_string()))?;
        let name = values.first().and_then(Amf::as_str).unwrap_or("");
        let txn = values.get(1).and_then(Amf::as_f64).unwrap_or(0.0);
        match name {
            "connect" => {
                self.app = values
                    .get(2)
                    .and_then(|o| o.get("app"))
                    .and_then(Amf::as_str)
                    .unwrap_or("")
                    .trim_end_matches('/')
                    .to_string();
                write_message(
                    &mut self.out,
                    2,
                    5,
                    0,
                    0,
                    &WINDOW.to_be_bytes(),
                    OUT_CHUNK_SIZE,
                );
                let mut bw = WINDOW.to_be_bytes().to_vec();
                bw.push(2);
                write_message(&mut self.out, 2, 6, 0, 0, &bw, OUT_CHUNK_SIZE);
                write_message(
                    &mut self.out,
                    2,
                    1,
                    0,
                    0,
                    &(OUT_CHUNK_SIZE as u32).to_be_bytes(),
                    128,
                );
                let props = object(&[
                    ("fmsVer", Amf::String("FMS/3,0,1,123".into())),
                    ("capabilities", Amf::Number(31.0)),
                ]);
                let mut info = status(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                );
                if let Amf::Object(p) = &mut info {
                    p.push(("objectEncoding".into(), Amf::Number(0.0)));
                }
                self.send_command(
                    3,
                    0,
                    &[Amf::String("_result".into()), Amf::Number(txn), props, info],
                );
            }
            "releaseStream" | "FCPublish" | "FCUnpublish" | "getStreamLength" => {
                if name == "FCUnpublish" && (self.publishing || self.asked) {
                    self.publishing = false;
                    self.asked = false;
                    self.events.push_back(RtmpEvent::Unpublish);
                }
                if txn != 0.0 {
                    self.send_command(
                        3,
                        0,
                        &[
                            Amf::String("_result".into()),
                            Amf::Number(txn),
                            Amf::Null,
                            Amf::Undefined,
                        ],
                    );
                }
            }
            "createStream" => {
                self.send_command(
                    3,
                    0,
                    &[
                        Amf::String("_result".into()),
                        Amf::Number(txn),
                        Amf::Null,
                        Amf::Number(f64::from(STREAM_ID)),
                    ],
                );
            }
            "publish" => {
                if self.asked || self.publishing {
                    return Err(RtmpError("a second publish on one connection".into()));
                }
                let stream = values
                    .get(3)
                    .and_then(Amf::as_str)
                    .unwrap_or("")
                    .to_string();
                self.asked = true;
                self.events.push_back(RtmpEvent::Publish {
                    app: self.app.clone(),
                    name: stream,
                });
            }
            "deleteStream" | "closeStream" if self.publishing || self.asked => {
                self.publishing = false;
                self.asked = false;
                self.events.push_back(RtmpEvent::Unpublish);
            }
            _ => {}
        }
        Ok(())
    }

    /// The server takes the publish: media flows from now on.
    pub fn accept_publish(&mut self, name: &str) {
        self.asked = false;
        self.publishing = true;
        // User Control: Stream Begin (event 0) for stream 1.
        let mut begin = vec![0, 0];
        begin.extend_from_slice(&STREAM_ID.to_be_bytes());
        write_message(&mut self.out, 2, 4, 0, 0, &begin, OUT_CHUNK_SIZE);
        let info = status(
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
        self.send_command(
            5,
            STREAM_ID,
            &[
                Amf::String("onStatus".into()),
                Amf::Number(0.0),
                Amf::Null,
                info,
            ],
        );
    }

    /// The caller took an [`RtmpEvent::Unpublish`]: the session is not publishing (whatever an
    /// `accept_publish` of a publish queued before it said), and may publish again.
    pub fn end_publish(&mut self) {
        self.publishing = false;
        self.asked = false;
    }

    /// The server refuses the publish; the caller closes once the answer is written.
    pub fn reject_publish(&mut self, code: &str, why: &str) {
        self.asked = false;
        let info = status("error", code, why);
        self.send_command(
            5,
            STREAM_ID,
            &[
                Amf::String("onStatus".into()),
                Amf::Number(0.0),
                Amf::Null,
                info,
            ],
        );
    }
}

/// A publish name `NAME?key=KEY`: the name and the raw key, if any.
pub fn split_key(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        None => (name, None),
        Some((n, query)) => (
            n,
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "key")
                .map(|(_, v)| v),
        ),
    }
}

#[cfg(test)]
mod tests;
