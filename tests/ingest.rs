//! Publishing what is not fragmented MP4, with Debian's ffmpeg as the third-party publisher:
//! MPEG-TS over HTTP (H.264 + AAC, H.265 + AAC and H.264 + Opus) and a bare H.264/H.265 Annex B stream on
//! standard input. The viewer's stream must decode in ffmpeg with no error, at the input's
//! resolution and frame count, with the codecs string ffmpeg's own HLS muxer writes for the same
//! encode, audio and video in the input's sync, and `--part 0` must give one frame a fragment.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;
use util::live::*;
use util::media::*;
use util::{Event, SseReader, TestServer};

/// Watches `/events/cam` while ffmpeg (with `args`) publishes MPEG-TS to it, until it goes
/// offline.
fn watch_mpegts_publish(args: Vec<String>) -> (Vec<Event>, TestServer) {
    let server = TestServer::start(&[]);
    let mut viewer = SseReader::open(server.addr, "/events/cam", "");
    let _ffmpeg = util::live::Killed(
        Command::new("ffmpeg")
            .args(args)
            .args(["-f", "mpegts"])
            .arg(server.url("/publish/cam"))
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    let events = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline") && ev.len() > 1
    });
    (events, server)
}

fn publish_mpegts(codec: &str) {
    if !have_ffmpeg() {
        return;
    }
    let (events, server) = watch_mpegts_publish(encode_args(codec, true, 3.5, true));
    let init = events
        .iter()
        .find(|e| e.event == "init")
        .unwrap_or_else(|| panic!("{codec}: no init in {events:?}"));
    assert_eq!(init_size(init), (640, 360), "{codec}");
    assert_codecs_match(&init_codecs(init), &hls_codecs(codec, true));
    let (mp4, frags) = as_mp4(&events);
    let frames = ffmpeg_decode(&mp4, codec).unwrap_or_else(|e| panic!("{codec}: {e}"));
    // 3.5 s at 30 fps; the viewer was there before the publisher, so it joined at the start.
    assert!((100..=106).contains(&frames), "{codec}: {frames} frames");
    let fragment_frames = frames_per_fragment(&init_segment(init), &frags);
    // Parts of 200 ms (6 frames) between keyframes: never a whole GOP in one fragment.
    assert!(
        fragment_frames.iter().all(|&n| n <= 7),
        "{codec}: {fragment_frames:?}"
    );
    let ours = av_offset(&mp4, codec);
    let theirs = input_av_offset(codec);
    assert!(
        (ours - theirs).abs() <= 1.0 / 30.0,
        "{codec}: audio starts {ours:.3} s after the video here, {theirs:.3} s in the input"
    );
    assert!(server
        .wait_log("publisher for cam finished", Duration::from_secs(5))
        .is_some());
}

#[test]
fn ffmpeg_publishes_mpegts_h264_aac_over_http() {
    publish_mpegts("h264");
}

#[test]
fn ffmpeg_publishes_mpegts_h265_aac_over_http() {
    publish_mpegts("h265");
}

#[test]
fn ffmpeg_publishes_mpegts_h264_opus_over_http() {
    if !have_ffmpeg() {
        return;
    }
    let (events, server) = watch_mpegts_publish(with_opus(encode_args("h264", true, 3.5, true)));
    let init = events
        .iter()
        .find(|e| e.event == "init")
        .unwrap_or_else(|| panic!("no init in {events:?}"));
    assert_eq!(init_size(init), (640, 360));
    // The video codec as ffmpeg's HLS muxer names it for the same encode, then Opus.
    let theirs = hls_codecs("h264", true);
    let video = theirs.split(',').next().unwrap();
    assert_codecs_match(&init_codecs(init), &format!("{video},opus"));
    let (mp4, _) = as_mp4(&events);
    let frames = ffmpeg_decode(&mp4, "h264opus").unwrap_or_else(|e| panic!("{e}"));
    assert!((100..=106).contains(&frames), "{frames} frames");
    let audio = ffmpeg_decode_audio(&mp4, "h264opus").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audio, "opus");
    let ours = av_offset(&mp4, "h264opus");
    let theirs = input_av_offset_of(with_opus(encode_args("h264", true, 1.0, false)), "opus");
    assert!(
        (ours - theirs).abs() <= 1.0 / 30.0,
        "audio starts {ours:.3} s after the video here, {theirs:.3} s in the input"
    );
    assert!(server
        .wait_log("publisher for cam finished", Duration::from_secs(5))
        .is_some());
}

/// ffmpeg writing a bare elementary stream (Annex B) to a pipe that is the server's stdin.
fn annexb_on_stdin(codec: &str, args: &[&str]) -> (Vec<Event>, TestServer) {
    let (format, bsf) = match codec {
        "h264" => ("h264", "h264_mp4toannexb"),
        _ => ("hevc", "hevc_mp4toannexb"),
    };
    let mut ffmpeg = Command::new("ffmpeg")
        .args(encode_args(codec, false, 3.0, true))
        .args(["-bsf:v", bsf, "-flush_packets", "1", "-f", format, "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let pipe = ffmpeg.stdout.take().unwrap();
    let mut all = vec!["cam=-"];
    all.extend_from_slice(args);
    let server = TestServer::start_with(&all, |c| {
        c.stdin(Stdio::from(pipe));
    });
    let _ffmpeg = util::live::Killed(ffmpeg);
    let mut viewer = SseReader::open(server.addr, "/events/cam", "");
    let events = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline") && ev.iter().any(|e| e.event == "init")
    });
    (events, server)
}

#[test]
fn annexb_h264_on_stdin_timed_by_arrival() {
    if !have_ffmpeg() {
        return;
    }
    let (events, _server) = annexb_on_stdin("h264", &[]);
    let init = events.iter().find(|e| e.event == "init").expect("init");
    assert_eq!(init_size(init), (640, 360));
    // ffmpeg writes no CODECS for a video-only variant: its video codec from an encode with
    // audio is the same.
    let theirs = hls_codecs("h264", true);
    assert_codecs_match(&init_codecs(init), theirs.split(',').next().unwrap());
    let (mp4, _) = as_mp4(&events);
    let frames = ffmpeg_decode(&mp4, "annexb-h264").unwrap();
    // The viewer connects once the server listens, while ffmpeg already runs: it may join a
    // GOP late.
    assert!((55..=90).contains(&frames), "{frames} frames");
}

#[test]
fn annexb_h265_on_stdin_with_fps_and_part_0() {
    if !have_ffmpeg() {
        return;
    }
    let (events, _server) = annexb_on_stdin("h265", &["--fps", "30", "--part", "0"]);
    let init = events.iter().find(|e| e.event == "init").expect("init");
    assert_eq!(init_size(init), (640, 360));
    // ffmpeg writes no CODECS for a video-only variant: its video codec from an encode with
    // audio is the same.
    let theirs = hls_codecs("h265", true);
    assert_codecs_match(&init_codecs(init), theirs.split(',').next().unwrap());
    let (mp4, frags) = as_mp4(&events);
    let frames = ffmpeg_decode(&mp4, "annexb-h265").unwrap();
    assert!((55..=90).contains(&frames), "{frames} frames");
    let per = frames_per_fragment(&init_segment(init), &frags);
    assert!(per.iter().all(|&n| n == 1), "--part 0: {per:?}");
    assert_eq!(per.len() as u64, frames);
}
