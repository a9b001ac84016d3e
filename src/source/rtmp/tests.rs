//! The RTMP session against a scripted publisher: handshake, the command sequence OBS and
//! ffmpeg use, media tags, acknowledgements, and hostile input.

use super::*;

/// A publisher's side of the conversation.
struct Client {
    chunk_size: usize,
}

impl Client {
    fn hello() -> Vec<u8> {
        let mut b = vec![3];
        b.extend((0..SIG).map(|i| (i % 251) as u8));
        b
    }

    fn command(&self, csid: u8, stream: u32, values: &[Amf]) -> Vec<u8> {
        let mut out = Vec::new();
        write_message(&mut out, csid, 20, stream, 0, &cmd(values), self.chunk_size);
        out
    }

    fn media(&self, type_id: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_message(&mut out, 6, type_id, 1, ts, payload, self.chunk_size);
        out
    }
}

/// Every message the server sent after its handshake.
fn answers(out: &[u8]) -> Vec<Message> {
    let mut r = ChunkReader::default();
    let mut msgs = Vec::new();
    r.feed(&out[1 + 2 * SIG..], |r, m| {
        if m.type_id == 1 {
            let p = &m.payload;
            r.set_chunk_size(u32::from_be_bytes([p[0], p[1], p[2], p[3]]))?;
        }
        msgs.push(m);
        Ok(())
    })
    .unwrap();
    msgs
}

fn commands(msgs: &[Message]) -> Vec<Vec<Amf>> {
    msgs.iter()
        .filter(|m| m.type_id == 20)
        .map(|m| decode_all(&m.payload).unwrap())
        .collect()
}

/// Runs a whole publish in pieces of `split` bytes; returns the session and its events.
fn publish(split: usize) -> (RtmpSession, Vec<RtmpEvent>) {
    let mut wire = Client::hello();
    wire.extend((0..SIG).map(|i| (i % 13) as u8)); // C2
    let mut size = Vec::new();
    write_message(&mut size, 2, 1, 0, 0, &4096u32.to_be_bytes(), 128);
    wire.extend(size);
    let c = Client { chunk_size: 4096 };
    let connect = object(&[
        ("app", Amf::String("live".into())),
        ("tcUrl", Amf::String("rtmp://h/live".into())),
    ]);
    wire.extend(c.command(
        3,
        0,
        &[Amf::String("connect".into()), Amf::Number(1.0), connect],
    ));
    wire.extend(c.command(
        3,
        0,
        &[
            Amf::String("releaseStream".into()),
            Amf::Number(2.0),
            Amf::Null,
            Amf::String("cam".into()),
        ],
    ));
    wire.extend(c.command(
        3,
        0,
        &[
            Amf::String("FCPublish".into()),
            Amf::Number(3.0),
            Amf::Null,
            Amf::String("cam".into()),
        ],
    ));
    wire.extend(c.command(
        3,
        0,
        &[
            Amf::String("createStream".into()),
            Amf::Number(4.0),
            Amf::Null,
        ],
    ));
    wire.extend(c.command(
        4,
        1,
        &[
            Amf::String("publish".into()),
            Amf::Number(5.0),
            Amf::Null,
            Amf::String("cam?key=k".into()),
            Amf::String("live".into()),
        ],
    ));
    let mut s = RtmpSession::default();
    let mut events = Vec::new();
    for piece in wire.chunks(split) {
        s.feed(piece).unwrap();
        while let Some(e) = s.poll_event() {
            events.push(e);
        }
    }
    (s, events)
}

#[test]
fn the_obs_and_ffmpeg_command_sequence_in_any_split() {
    for split in [1, 100, 1537, 5000] {
        let (mut s, events) = publish(split);
        assert_eq!(
            events,
            vec![RtmpEvent::Publish {
                app: "live".into(),
                name: "cam?key=k".into()
            }],
            "split {split}"
        );
        let out = s.output().to_vec();
        assert_eq!(out[0], 3, "S0");
        assert_eq!(
            &out[1 + SIG..1 + 2 * SIG],
            &Client::hello()[1..],
            "S2 echoes C1"
        );
        let msgs = answers(&out);
        let types: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
        assert_eq!(
            &types[..3],
            &[5, 6, 1],
            "window ack size, peer bandwidth, chunk size"
        );
        let cmds = commands(&msgs);
        assert_eq!(cmds[0][0], Amf::String("_result".into()));
        assert_eq!(
            cmds[0][3].get("code").and_then(Amf::as_str),
            Some("NetConnection.Connect.Success")
        );
        assert_eq!(
            cmds.len(),
            4,
            "connect, releaseStream, FCPublish, createStream"
        );
        assert_eq!(cmds[3][3], Amf::Number(1.0), "stream id 1");
        s.consumed(out.len());
        s.accept_publish("cam");
        let start = commands(&answers(
            &[vec![0; 1 + 2 * SIG], s.output().to_vec()].concat(),
        ));
        assert_eq!(
            start[0][3].get("code").and_then(Amf::as_str),
            Some("NetStream.Publish.Start")
        );
    }
    assert_eq!(split_key("cam?key=k&x=1"), ("cam", Some("k")));
    assert_eq!(split_key("cam"), ("cam", None));
}

#[test]
fn media_tags_become_events_with_a_64_bit_clock() {
    let (mut s, _) = publish(4096);
    s.accept_publish("cam");
    let c = Client { chunk_size: 4096 };
    let mut wire = Vec::new();
    wire.extend(c.media(9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e]));
    wire.extend(c.media(9, 33, &[0x17, 1, 0, 0, 66, 0, 0, 0, 1, 0x65]));
    wire.extend(c.media(8, 0, &[0xaf, 0, 0x11, 0x90]));
    wire.extend(c.media(8, 0x8000_0010, &[0xaf, 1, 0x1f]));
    wire.extend(c.media(8, 0xffff_fff0, &[0xaf, 1, 0x20]));
    wire.extend(c.media(8, 0x10, &[0xaf, 1, 0x21]));
    // Video a little behind the audio, from before the wrap: before it, not 2^32 later.
    wire.extend(c.media(9, 0xffff_fff8, &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]));
    wire.extend(c.media(8, 0x20, &[0x2f, 1, 0x21]));
    wire.extend(c.media(8, 0x30, &[0x2f, 1, 0x21]));
    s.feed(&wire).unwrap();
    let events: Vec<RtmpEvent> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        events[0],
        RtmpEvent::VideoConfig {
            codec: VideoCodec::Avc,
            record: vec![1, 0x64, 0, 0x1e]
        }
    );
    assert_eq!(
        events[1],
        RtmpEvent::Video {
            codec: VideoCodec::Avc,
            keyframe: true,
            dts_ms: 33,
            cts_ms: 66,
            data: vec![0, 0, 0, 1, 0x65]
        }
    );
    assert_eq!(events[2], RtmpEvent::AudioConfig(vec![0x11, 0x90]));
    assert_eq!(
        events[4],
        RtmpEvent::Audio {
            dts_ms: 0xffff_fff0,
            data: vec![0x20]
        }
    );
    assert_eq!(
        events[5],
        RtmpEvent::Audio {
            dts_ms: (1 << 32) + 0x10,
            data: vec![0x21]
        },
        "wrapped"
    );
    assert!(
        matches!(
            events[6],
            RtmpEvent::Video {
                dts_ms: 0xffff_fff8,
                ..
            }
        ),
        "{:?}",
        events[6]
    );
    assert!(matches!(events[7], RtmpEvent::Unsupported(_)));
    assert_eq!(events.len(), 8, "an unsupported codec is said once");
}

#[test]
fn acknowledgements_follow_the_peers_window() {
    let (mut s, _) = publish(4096);
    s.accept_publish("cam");
    s.consumed(s.output().len());
    let c = Client { chunk_size: 4096 };
    let mut w = Vec::new();
    write_message(&mut w, 2, 5, 0, 0, &1000u32.to_be_bytes(), 4096);
    s.feed(&w).unwrap();
    s.feed(&c.media(9, 0, &[0x27, 1, 0, 0, 0, 7])).unwrap();
    s.feed(&c.media(9, 0, &vec![0x27; 2000])).unwrap();
    let acks: Vec<Message> = {
        let mut r = ChunkReader::default();
        let mut v = Vec::new();
        r.feed(s.output(), |_, m| {
            v.push(m);
            Ok(())
        })
        .unwrap();
        v
    };
    assert!(
        acks.iter().any(|m| m.type_id == 3),
        "an acknowledgement after the window"
    );
}

#[test]
fn hostile_publishers_end_the_session_cleanly() {
    let mut s = RtmpSession::default();
    assert!(s.feed(&[4; 2000]).is_err(), "not version 3");
    let mut base = Client::hello();
    base.extend(vec![0u8; SIG]);
    for tail in [
        {
            let mut w = Vec::new();
            write_message(&mut w, 2, 1, 0, 0, &0u32.to_be_bytes(), 128);
            w
        },
        {
            let mut w = Vec::new();
            write_message(&mut w, 2, 1, 0, 0, &(1u32 << 31).to_be_bytes(), 128);
            w
        },
        vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0],
        {
            let mut w = Vec::new();
            write_message(&mut w, 3, 20, 0, 0, &[2, 0xff, 0xff, 1], 128);
            w
        },
    ] {
        let mut s = RtmpSession::default();
        assert!(s.feed(&[base.clone(), tail].concat()).is_err());
        assert!(s.buffered() < 1 << 20);
    }
}

/// A Set Chunk Size that arrives between two chunks of another stream's message applies to the
/// rest of that message.
#[test]
fn a_chunk_size_change_in_the_middle_of_a_message() {
    let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let mut w = vec![0x06, 0, 0, 0, 0x00, 0x01, 0x2c, 9, 1, 0, 0, 0];
    w.extend_from_slice(&payload[..128]);
    w.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0x00]);
    w.push(0xc6);
    w.extend_from_slice(&payload[128..]);
    for split in [1, 13, 200, w.len()] {
        let mut r = ChunkReader::default();
        let mut msgs = Vec::new();
        for piece in w.chunks(split) {
            r.feed(piece, |r, m| {
                if m.type_id == 1 {
                    r.set_chunk_size(4096)?;
                }
                msgs.push(m);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(msgs.len(), 2, "split {split}");
        assert_eq!(msgs[0].type_id, 1);
        assert_eq!(msgs[1].payload, payload, "split {split}");
    }
}

/// A peer that makes up a new kind of unsupported media in every message is reported for the
/// first few kinds only, and the session remembers no more than those.
#[test]
fn unsupported_kinds_are_reported_a_bounded_number_of_times() {
    let (mut s, _) = publish(4096);
    s.accept_publish("cam");
    let c = Client { chunk_size: 4096 };
    let mut wire = Vec::new();
    for i in 0..200u32 {
        let mut tag = vec![0x91];
        tag.extend_from_slice(&i.to_be_bytes()); // a FourCC of its own each time
        wire.extend(c.media(9, i, &tag));
    }
    s.feed(&wire).unwrap();
    let reported = std::iter::from_fn(|| s.poll_event())
        .filter(|e| matches!(e, RtmpEvent::Unsupported(_)))
        .count();
    assert_eq!(reported, MAX_WARNED);
    assert_eq!(s.warned.len(), MAX_WARNED);
}
