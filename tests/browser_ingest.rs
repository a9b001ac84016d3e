//! The viewer page in headless Chromium plays feeds the server muxed itself: ffmpeg publishing
//! over RTMP (`-f flv rtmp://…/live/cam`, as OBS does) and a bare H.264 Annex B stream on
//! standard input (as `rpicam-vid --inline -o -` writes it), and MPEG-TS with Opus audio over
//! HTTP (the page must take the `opus` track). Each must present two seconds of
//! 640×360 frames with no media error. Skipped (passes with a `skipped:` line) without Chromium
//! and chromedriver or without ffmpeg.

mod util;

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::live::{have_ffmpeg, Killed};
use util::media::{encode_args, with_opus};
use util::webdriver::{have_browser, save_screenshot, Browser};
use util::TestServer;

/// Logs every frame the browser presents (width and height), once the page has loaded.
const FRAME_LOG: &str = r#"
window.testFrames = [];
const v = document.getElementById('video');
const onFrame = (now, meta) => {
  window.testFrames.push([meta.width, meta.height]);
  if (window.testFrames.length > 5000) window.testFrames.shift();
  v.requestVideoFrameCallback(onFrame);
};
v.requestVideoFrameCallback(onFrame);
"#;

/// Frames presented, by size, and what the page and its player say.
const PROBE: &str = r#"
const v = document.getElementById('video');
const s = window.ssecast || {};
const sizes = {};
for (const [w, h] of window.testFrames || []) sizes[`${w}x${h}`] = (sizes[`${w}x${h}`] || 0) + 1;
return {
  sizes, error: v.error ? `${v.error.code} ${v.error.message}` : null,
  state: s.state || null, errors: s.errors || null, mime: s.mime || null,
  status: document.getElementById('status').textContent,
};
"#;

/// Opens `/cam` and waits (at most 30 s) for two seconds of 640×360 frames.
fn plays_two_seconds(server: &TestServer, shot: &str) {
    let browser = Browser::start();
    browser.open(&server.url("/cam"));
    browser.execute(FRAME_LOG);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = json!({ "script": PROBE, "args": [] });
    let p = loop {
        let p = browser.command("POST", "/execute/sync", Some(&body));
        assert_eq!(p["error"], Value::Null, "the video element failed: {p:#}");
        assert!(
            p["errors"].as_array().map_or(true, |e| e.is_empty()),
            "the player recorded errors: {p:#}"
        );
        if p["sizes"]["640x360"].as_u64() >= Some(60) || Instant::now() >= deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    save_screenshot(&browser, shot);
    eprintln!("page state: {p:#}");
    assert!(
        p["sizes"]["640x360"].as_u64() >= Some(60),
        "the page did not present 2 s of the feed: {p:#}"
    );
}

#[test]
fn the_page_plays_an_rtmp_feed_from_ffmpeg() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let server = TestServer::start(&["--rtmp", "127.0.0.1:0"]);
    let rtmp = server.rtmp.expect("RTMP address");
    let _ffmpeg = Killed(
        Command::new("ffmpeg")
            .args(encode_args("h264", true, 60.0, true))
            .args(["-f", "flv"])
            .arg(format!("rtmp://{rtmp}/live/cam"))
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    assert!(server
        .wait_log("stream cam is live", Duration::from_secs(20))
        .is_some());
    plays_two_seconds(&server, "browser-rtmp.png");
}

#[test]
fn the_page_plays_annex_b_on_standard_input() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let mut ffmpeg = Command::new("ffmpeg")
        .args(encode_args("h264", false, 60.0, true))
        .args(["-bsf:v", "h264_mp4toannexb", "-flush_packets", "1"])
        .args(["-f", "h264", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let pipe = ffmpeg.stdout.take().expect("ffmpeg's stdout");
    let _ffmpeg = Killed(ffmpeg);
    let server = TestServer::start_with(&["cam=-"], |c| {
        c.stdin(Stdio::from(pipe));
    });
    assert!(server
        .wait_log("stream cam is live", Duration::from_secs(20))
        .is_some());
    plays_two_seconds(&server, "browser-annexb.png");
}

#[test]
fn the_page_plays_mpegts_with_opus_audio() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let server = TestServer::start(&[]);
    let _ffmpeg = Killed(
        Command::new("ffmpeg")
            .args(with_opus(encode_args("h264", true, 60.0, true)))
            .args(["-f", "mpegts"])
            .arg(server.url("/publish/cam"))
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    let live = server
        .wait_log("stream cam is live", Duration::from_secs(20))
        .expect("the stream went live");
    assert!(live.contains("opus"), "{live}");
    plays_two_seconds(&server, "browser-opus.png");
}
