//! RTMP publishing, with Debian's ffmpeg as the publisher (`-f flv rtmp://…/live/NAME`, as OBS
//! and every encoder speak it): the viewer's stream decodes in ffmpeg with no error, at the
//! input's resolution and frame count, with the codecs ffmpeg's HLS muxer writes for the same
//! encode, in the input's audio/video sync; `--part 0` gives a frame a fragment; the key, taken
//! names and hostile connections are refused with a log line; `--rtmp` on an address that
//! cannot be bound is an error.

mod util;

use ssecast::source::rtmp::client::PublishScript;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::live::*;
use util::media::*;
use util::{Event, SseReader, TestServer};

fn rtmp_server(args: &[&str]) -> (TestServer, SocketAddr) {
    let mut all = vec!["--rtmp", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = TestServer::start(&all);
    let rtmp = server.rtmp.expect("the server logs where RTMP listens");
    (server, rtmp)
}

/// ffmpeg publishing the test encode (H.264 + AAC, `secs` in real time) to `name`.
fn ffmpeg_rtmp(rtmp: SocketAddr, name: &str, secs: f64) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(encode_args("h264", true, secs, true))
        .args(["-f", "flv"])
        .arg(format!("rtmp://{rtmp}/live/{name}"))
        .stdin(Stdio::null());
    c
}

/// Watches `cam` while ffmpeg publishes to it, until it goes offline.
fn watch_a_publish(args: &[&str], secs: f64) -> (Vec<Event>, TestServer) {
    let (server, rtmp) = rtmp_server(args);
    let mut viewer = SseReader::open(server.addr, "/events/cam", "");
    let _ffmpeg = Killed(ffmpeg_rtmp(rtmp, "cam", secs).spawn().expect("ffmpeg"));
    let events = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline") && ev.iter().any(|e| e.event == "init")
    });
    (events, server)
}

#[test]
fn ffmpeg_publishes_h264_aac_over_rtmp() {
    if !have_ffmpeg() {
        return;
    }
    let (events, server) = watch_a_publish(&[], 3.5);
    let init = events.iter().find(|e| e.event == "init").expect("init");
    assert_eq!(init_size(init), (640, 360));
    assert_codecs_match(&init_codecs(init), &hls_codecs("h264", true));
    let (mp4, frags) = as_mp4(&events);
    let frames = ffmpeg_decode(&mp4, "rtmp-h264").unwrap();
    // 3.5 s at 30 fps; the viewer was there before the publisher, so it joined at the start.
    assert!((100..=106).contains(&frames), "{frames} frames");
    let per = frames_per_fragment(&init_segment(init), &frags);
    // Parts of 200 ms (6 frames) between keyframes: never a whole GOP in one fragment.
    assert!(per.iter().all(|&n| n <= 7), "{per:?}");
    let ours = av_offset(&mp4, "rtmp-h264");
    let theirs = input_av_offset("h264");
    assert!(
        (ours - theirs).abs() <= 1.0 / 30.0,
        "audio starts {ours:.3} s after the video here, {theirs:.3} s in the input"
    );
    assert!(server
        .wait_log("RTMP publisher for cam finished", Duration::from_secs(5))
        .is_some());
}

#[test]
fn rtmp_with_part_0_gives_one_frame_a_fragment() {
    if !have_ffmpeg() {
        return;
    }
    let (events, _server) = watch_a_publish(&["--part", "0"], 2.0);
    let init = events.iter().find(|e| e.event == "init").expect("init");
    let (mp4, frags) = as_mp4(&events);
    let frames = ffmpeg_decode(&mp4, "rtmp-part0").unwrap();
    assert!((58..=62).contains(&frames), "{frames} frames");
    let per = frames_per_fragment(&init_segment(init), &frags);
    assert!(per.iter().all(|&n| n == 1), "--part 0: {per:?}");
    assert_eq!(per.len() as u64, frames);
}

/// Runs ffmpeg to the end (bounded) and says whether it succeeded.
fn ffmpeg_ok(mut c: Command) -> bool {
    let mut child = Killed(c.stderr(Stdio::null()).spawn().expect("ffmpeg"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status.success();
        }
        assert!(Instant::now() < deadline, "ffmpeg did not finish in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_stream_key_carries_the_publish_key() {
    if !have_ffmpeg() {
        return;
    }
    let (server, rtmp) = rtmp_server(&["--publish-key", "s3cret"]);
    assert!(!ffmpeg_ok(ffmpeg_rtmp(rtmp, "cam", 0.5)));
    assert!(server
        .wait_log("needs a publish key", Duration::from_secs(5))
        .is_some());
    assert!(!ffmpeg_ok(ffmpeg_rtmp(rtmp, "cam?key=nope", 0.5)));
    assert!(server
        .wait_log("refused: wrong publish key", Duration::from_secs(5))
        .is_some());
    assert!(ffmpeg_ok(ffmpeg_rtmp(rtmp, "cam?key=s3cret", 0.5)));
    assert!(server
        .wait_log("RTMP publisher for cam finished", Duration::from_secs(5))
        .is_some());
}

/// Plays a scripted publish at the server and reads until it closes (bounded); returns what it
/// sent back.
fn scripted(rtmp: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(rtmp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn taken_and_configured_names_are_refused() {
    let sample = format!("{}/tests/bframes.mp4", env!("CARGO_MANIFEST_DIR"));
    let (server, rtmp) = rtmp_server(&[&sample]);
    // A file stream cannot be published over.
    let answer = scripted(rtmp, &PublishScript::new("live", "bframes", 4096).bytes);
    assert!(contains(&answer, b"NetStream.Publish.BadName"));
    assert!(server
        .wait_log("cannot be published over", Duration::from_secs(5))
        .is_some());
    // One publisher per name: the first holds `cam` while the second asks for it.
    let mut first = TcpStream::connect(rtmp).unwrap();
    first
        .write_all(&PublishScript::new("live", "cam", 4096).bytes)
        .unwrap();
    assert!(server
        .wait_log("RTMP publisher for cam connected", Duration::from_secs(5))
        .is_some());
    let answer = scripted(rtmp, &PublishScript::new("live", "cam", 4096).bytes);
    assert!(contains(&answer, b"already has a publisher"));
    // And an HTTP publisher cannot take it either.
    let r = server.raw(b"POST /publish/cam HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert!(
        r.starts_with(b"HTTP/1.1 409"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    // A name that is not a stream name.
    let answer = scripted(rtmp, &PublishScript::new("live", "no/such", 4096).bytes);
    assert!(contains(&answer, b"NetStream.Publish.BadName"));
    drop(first);
    assert!(server
        .wait_log("RTMP publisher for cam ended", Duration::from_secs(5))
        .is_some());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn hostile_connections_get_a_clean_close_and_a_log_line() {
    let (server, rtmp) = rtmp_server(&["--head-timeout", "1s"]);
    // Not RTMP at all.
    let answer = scripted(rtmp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.is_empty());
    assert!(server
        .wait_log("not an RTMP handshake", Duration::from_secs(5))
        .is_some());
    // A chunk size of 0 after a good handshake.
    let mut bytes = PublishScript::new("live", "cam", 4096).bytes;
    bytes.truncate(1 + 2 * 1536);
    bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    scripted(rtmp, &bytes);
    assert!(server
        .wait_log("a chunk size of 0; closing", Duration::from_secs(5))
        .is_some());
    // A 16 MiB message announced on 128-byte chunks, then silence: cut off, not waited for.
    let mut bytes = vec![3];
    bytes.extend(std::iter::repeat(0u8).take(2 * 1536));
    bytes.extend_from_slice(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0]);
    bytes.extend([0u8; 128]);
    let started = Instant::now();
    scripted(rtmp, &bytes);
    assert!(started.elapsed() < Duration::from_secs(8));
    // A connection that never says anything is closed after the head timeout.
    let mut idle = TcpStream::connect(rtmp).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
    assert!(server
        .wait_log("did not publish within", Duration::from_secs(5))
        .is_some());
    // The server is still there for everyone else.
    let r = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with(b"HTTP/1.1 200"));
}

#[test]
fn an_rtmp_address_that_cannot_be_bound_is_an_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(util::server_bin())
        .args(["--listen", "127.0.0.1:0", "--rtmp", &addr])
        .stdin(Stdio::null())
        .output()
        .expect("run ssecast");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// Reads until `starts` publish answers came, the connection closed, or 10 s passed; returns
/// how many came.
fn publish_starts(s: &mut TcpStream, starts: usize) -> usize {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let count = |out: &[u8]| {
        let needle = b"NetStream.Publish.Start";
        out.windows(needle.len()).filter(|w| w == needle).count()
    };
    while count(&out) < starts && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    count(&out)
}

/// A publisher that stops and publishes the same name again on the same connection — all in
/// one write, and with 64 KiB of other messages in between so the second publish comes in a
/// later read of the same turn — gets both publishes accepted.
#[test]
fn publishing_again_on_the_same_connection() {
    use ssecast::source::rtmp::amf::Amf;
    let (server, rtmp) = rtmp_server(&[]);
    for filler in [0, 16] {
        let mut p = PublishScript::new("live", "cam", 4096);
        for _ in 0..filler {
            p.tag(19, 0, &[0u8; 4000]); // shared objects: ignored
        }
        p.unpublish("cam");
        p.command(0, "createStream", &[Amf::Null]);
        let again = [
            Amf::Null,
            Amf::String("cam".into()),
            Amf::String("live".into()),
        ];
        p.command(1, "publish", &again);
        let mut s = TcpStream::connect(rtmp).unwrap();
        s.write_all(&p.bytes).unwrap();
        assert_eq!(publish_starts(&mut s, 2), 2, "filler {filler}");
    }
    assert!(server
        .wait_log("RTMP publisher for cam finished", Duration::from_secs(5))
        .is_some());
}

/// Out of descriptors, the RTMP listener tries again by itself: a publisher still waiting in
/// the kernel's queue when descriptors free up is answered, with no new connection to wake it.
#[test]
fn running_out_of_descriptors_does_not_strand_waiting_publishers() {
    let server = TestServer::start_with(&["--rtmp", "127.0.0.1:0"], |cmd| {
        util::limit_open_files(cmd, 40);
    });
    let rtmp = server.rtmp.expect("RTMP address");
    let mut flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(rtmp).ok())
        .collect();
    assert!(server
        .wait_log(
            "out of file descriptors accepting RTMP",
            Duration::from_secs(10)
        )
        .is_some());
    let mut last = flood.pop().expect("connections");
    drop(flood);
    // The last one came after the descriptors ran out: it was not accepted then.
    let hello = PublishScript::new("live", "cam", 4096).bytes;
    last.write_all(&hello[..1 + 1536]).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut s0 = [0u8; 1];
    assert_eq!(last.read(&mut s0).ok(), Some(1), "no handshake answer");
    assert_eq!(s0[0], 3);
}
