//! The viewer page in a real browser: starts the server and a headless Chromium driven by
//! chromedriver (`util::webdriver`: WebDriver over a `TcpStream`), opens `/`, and
//! checks that the video plays, has the sample's size, records no media error and plays on
//! across the sample's loop point, that a B-frame video loops without losing a frame, and that
//! the page plays on when the server restarts; Chromium asks for gzip, and the server's counter
//! shows it was sent the compressed stream (before and after the restart). With ffmpeg publishing a live test source, it
//! checks that `/cam` plays the feed, says it is waiting before the feed starts and offline when
//! the publisher goes away, and plays on, without a reload, when the publisher comes back at
//! another resolution. Saves a screenshot per test to `target/browser-*.png`.
//!
//! Skipped (passes with a `skipped:` line) when Chromium or chromedriver is not installed
//! (Debian: `apt-get install chromium chromium-driver`), and the live tests also when ffmpeg is
//! not (`apt-get install ffmpeg`).

mod util;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::webdriver::{have_browser, save_screenshot, Browser};
use util::TestServer;

/// The live stream the ffmpeg tests publish and watch.
const LIVE: &str = "cam";
/// Where a looped video's passes meet on the player's timeline: every `secs`, plus `first_frame`,
/// when each pass shows its first frame.
#[derive(Clone, Copy)]
struct Loop {
    secs: f64,
    first_frame: f64,
}

/// The embedded sample is 6 s long and shows its first frame at 0; the server loops it with time
/// running on, so its loop points are at multiples of 6 s on the player's timeline.
const SAMPLE: Loop = Loop {
    secs: 6.0,
    first_frame: 0.0,
};
/// A 2 s video at 25 fps with B-frames and no edit list (made by `tests/make-bframes.sh`): each
/// pass shows its first frame two frame durations after it starts.
const BFRAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bframes.mp4");
const BFRAMES_LOOP: Loop = Loop {
    secs: 2.0,
    first_frame: 0.08,
};
const BFRAMES_FRAME_SECS: f64 = 0.04;

/// Installed in the page once it has loaded: logs every video frame the browser presents (wall
/// time in ms, media time in s, width, height), so the test sees what a viewer would, not just
/// `currentTime`, which the audio clock keeps moving even when the picture is frozen. Also leaves
/// a marker that a reload would lose.
const FRAME_LOG: &str = r#"
window.testFrames = [];
window.testMarker = 'still the same page';
const v = document.getElementById('video');
const onFrame = (now, meta) => {
  window.testFrames.push([now, meta.mediaTime, meta.width, meta.height]);
  if (window.testFrames.length > 5000) window.testFrames.shift();
  v.requestVideoFrameCallback(onFrame);
};
v.requestVideoFrameCallback(onFrame);
"#;

/// What the page reports about its video, its player and the frames it presented; the arguments
/// are the video's length in seconds and when each pass shows its first frame (a [`Loop`]).
/// `crossings` lists each loop point that presented frames ran through without a jump, with the
/// wall-clock gap (ms) between the frames either side;
/// `maxStep` is the largest step in media time between two presented frames (at `maxStepAt`),
/// and `buffered` the video element's buffered ranges.
const PROBE: &str = r#"
const [loopSecs, firstFrame] = arguments;
const v = document.getElementById('video');
const s = window.ssecast || {};
const f = window.testFrames || [];
let longestFreeze = 0;
let maxStep = 0;
let maxStepAt = null;
const crossings = [];
for (let i = 1; i < f.length; i++) {
  const [wa, ma] = f[i - 1];
  const [wb, mb] = f[i];
  longestFreeze = Math.max(longestFreeze, Math.round(wb - wa));
  if (mb - ma > maxStep) [maxStep, maxStepAt] = [mb - ma, ma];
  const loopPoint = (Math.floor((ma - firstFrame) / loopSecs) + 1) * loopSecs + firstFrame;
  if (mb >= loopPoint && mb - ma < 1) crossings.push([loopPoint, Math.round(wb - wa)]);
}
const buffered = [];
for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
return {
  time: v.currentTime, width: v.videoWidth, height: v.videoHeight, paused: v.paused,
  ready: v.readyState, error: v.error ? `${v.error.code} ${v.error.message}` : null,
  frames: f.length, firstFrame: f.length ? f[0][1] : null,
  lastFrame: f.length ? f[f.length - 1][1] : null,
  longestFreeze, crossings, maxStep, maxStepAt, buffered,
  state: s.state || null, errors: s.errors || null, appended: s.appended || 0,
  seeks: s.seeks || 0, lastSeek: s.lastSeek || '', stalls: s.stalls || 0,
  resets: s.resets || 0, shifts: s.shifts || 0, mediaSources: s.mediaSources || 0,
  behind: s.behind, ahead: s.ahead, margin: s.margin,
  status: document.getElementById('status').textContent,
  button: document.getElementById('sound').textContent,
};
"#;

/// What the page reports while it plays (or waits for) a live stream. `since` is an index into
/// the frame log (which keeps 5000 frames, more than a test here presents): `sizesSince` counts
/// the frames presented from there on by size ("640x360": n).
const LIVE_PROBE: &str = r#"
const [since] = arguments;
const v = document.getElementById('video');
const s = window.ssecast || {};
const f = window.testFrames || [];
const message = document.getElementById('message');
const sizesSince = {};
for (const [, , w, h] of f.slice(since)) {
  const size = `${w}x${h}`;
  sizesSince[size] = (sizesSince[size] || 0) + 1;
}
return {
  width: v.videoWidth, height: v.videoHeight,
  error: v.error ? `${v.error.code} ${v.error.message}` : null,
  frames: f.length, sizesSince,
  lastFrame: f.length ? f[f.length - 1] : null,
  state: s.state || null, errors: s.errors || null, stream: s.stream || null,
  inits: s.inits || 0, offlines: s.offlines || 0, mediaSources: s.mediaSources || 0,
  appended: s.appended || 0, seeks: s.seeks || 0, lastSeek: s.lastSeek || '',
  shifts: s.shifts || 0, stalls: s.stalls || 0,
  message: message.hidden ? null : message.textContent,
  status: document.getElementById('status').textContent,
  title: document.title, marker: window.testMarker || null,
  links: [...document.querySelectorAll('#streams a')]
    .map((a) => [a.getAttribute('href'), a.className]),
};
"#;

/// True when ffmpeg is on the PATH; otherwise says why the test is skipped.
fn have_ffmpeg() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("ffmpeg").is_file()));
    if !found {
        println!("skipped: ffmpeg not found (Debian: apt-get install ffmpeg)");
    }
    found
}

/// Opens the viewer page of `server` and starts logging presented frames.
fn open_viewer(browser: &Browser, server: &TestServer) {
    open_viewer_at(browser, server, "/");
}

/// Opens the viewer page at `path` of `server` and starts logging presented frames.
fn open_viewer_at(browser: &Browser, server: &TestServer, path: &str) {
    browser.open(&server.url(path));
    browser.execute(FRAME_LOG);
}

/// An ffmpeg publishing a live test pattern (a moving picture and a 440 Hz tone, 1 s GOPs) to
/// `POST /publish/NAME`, in real time. Killed on drop, which the server sees as the publisher
/// disconnecting.
struct Publisher {
    ffmpeg: Child,
}

impl Publisher {
    /// Starts publishing a `size` ("640x360") picture at 30 fps to stream `name` of `server`.
    fn start(server: &TestServer, name: &str, size: &str) -> Publisher {
        // No argument has a space in it, so the command line is written as one string.
        let url = server.url(&format!("/publish/{name}"));
        let args = format!(
            "-hide_banner -loglevel error -nostdin -re \
             -f lavfi -i testsrc2=size={size}:rate=30 \
             -f lavfi -i sine=frequency=440:sample_rate=48000 \
             -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -pix_fmt yuv420p -c:a aac \
             -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof {url}"
        );
        let mut ffmpeg = Command::new("ffmpeg")
            .args(args.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ffmpeg");
        let stderr = ffmpeg.stderr.take().expect("ffmpeg's stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[ffmpeg] {line}");
            }
        });
        Publisher { ffmpeg }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.ffmpeg.kill();
        let _ = self.ffmpeg.wait();
    }
}

/// Probes the page (watching a live stream) every 200 ms until `done` says so (true) or
/// `timeout` passes (false), counting frames from index `since` of the frame log; stops early
/// when the page recorded a media error or gave up. Returns the last probe.
fn wait_live(
    browser: &Browser,
    since: u64,
    timeout: Duration,
    done: impl FnMut(&Value) -> bool,
) -> (bool, Value) {
    let body = json!({ "script": LIVE_PROBE, "args": [since] });
    poll(
        timeout,
        || browser.command("POST", "/execute/sync", Some(&body)),
        done,
    )
}

/// How many frames of `size` ("640x360") the page presented since the probe's `since`.
fn frames_of_size(p: &Value, size: &str) -> u64 {
    p["sizesSince"][size].as_u64().unwrap_or(0)
}

/// Probes the page playing a video that loops as `looping` says.
fn probe(browser: &Browser, looping: Loop) -> Value {
    let args = [looping.secs, looping.first_frame];
    let body = json!({ "script": PROBE, "args": args });
    browser.command("POST", "/execute/sync", Some(&body))
}

/// Probes the page (playing the sample) every 200 ms until `done` says so (true) or `timeout`
/// passes (false); stops early when the page recorded a media error or gave up. Returns the last
/// probe.
fn wait_for(
    browser: &Browser,
    timeout: Duration,
    done: impl FnMut(&Value) -> bool,
) -> (bool, Value) {
    wait_for_loop(browser, SAMPLE, timeout, done)
}

/// [`wait_for`] for a video that loops as `looping` says.
fn wait_for_loop(
    browser: &Browser,
    looping: Loop,
    timeout: Duration,
    done: impl FnMut(&Value) -> bool,
) -> (bool, Value) {
    poll(timeout, || probe(browser, looping), done)
}

/// Runs `probe` every 200 ms until `done` accepts its result (true) or `timeout` passes (false);
/// stops early when the page recorded a media error or gave up. Returns the last probe.
fn poll(
    timeout: Duration,
    mut probe: impl FnMut() -> Value,
    mut done: impl FnMut(&Value) -> bool,
) -> (bool, Value) {
    let deadline = Instant::now() + timeout;
    loop {
        let p = probe();
        let gave_up = p["state"] == json!("unsupported") || p["state"] == json!("error");
        if gave_up || p["error"] != Value::Null || p["errors"] != json!([]) {
            return (false, p);
        }
        if done(&p) {
            return (true, p);
        }
        if Instant::now() >= deadline {
            return (false, p);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_no_media_errors(p: &Value) {
    assert_eq!(p["error"], Value::Null, "the video element failed: {p:#}");
    assert_eq!(p["errors"], json!([]), "the player recorded errors: {p:#}");
}

fn media_secs(p: &Value, key: &str) -> f64 {
    p[key].as_f64().unwrap_or(0.0)
}

/// Viewers the server sent the compressed stream, from `/api/streams`.
fn compressed_viewers(server: &TestServer) -> u64 {
    let out = server.raw(b"GET /api/streams HTTP/1.1\r\nHost: t\r\n\r\n");
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&out[..0], |i| &out[i + 4..]);
    let streams: Value = serde_json::from_slice(body).expect("status JSON");
    streams
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["compressed_viewers"].as_u64())
        .sum()
}

#[test]
fn viewer_page_plays_the_live_stream_across_the_loop_point() {
    if !have_browser() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start(&["--speed", "1"]);
    let browser = Browser::start();
    open_viewer(&browser, &server);

    // A new viewer starts at most one sample length before the next loop point, so this takes
    // about 3 to 8 s; the bound is for a slow machine.
    let (_, p) = wait_for(&browser, Duration::from_secs(40), |p| {
        let shown = media_secs(p, "lastFrame") - media_secs(p, "firstFrame");
        shown >= 3.0 && p["crossings"].as_array().is_some_and(|c| !c.is_empty())
    });

    save_screenshot(&browser, "browser-test.png");
    eprintln!("page state: {p:#}");
    assert_no_media_errors(&p);
    assert_eq!(p["state"], json!("connected"), "{p:#}");
    assert_eq!(
        compressed_viewers(&server),
        1,
        "the page's EventSource was sent the gzip stream"
    );
    assert_eq!(p["width"], json!(640), "videoWidth: {p:#}");
    assert_eq!(p["height"], json!(360), "videoHeight: {p:#}");
    let shown = media_secs(&p, "lastFrame") - media_secs(&p, "firstFrame");
    assert!(
        shown >= 3.0,
        "frames of only {shown:.2} s of video were shown: {p:#}"
    );
    let crossing = &p["crossings"][0];
    assert!(
        crossing[1].as_f64().is_some_and(|gap_ms| gap_ms < 500.0),
        "the picture did not run on through a loop point of the {} s sample \
         (crossing [loop point, gap ms]: {crossing}): {p:#}",
        SAMPLE.secs
    );
    assert!(
        p["longestFreeze"].as_f64().is_some_and(|ms| ms < 1500.0),
        "the picture froze: {p:#}"
    );
    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}

/// A video with B-frames shows its first frame two frame durations after its decode time 0 while
/// its audio starts at 0 (ffmpeg writes no edit list for `empty_moov`). Looped as it was, the audio
/// of each new pass made Chromium drop the last four frames of the pass before, and the page
/// seeked over the hole that left: one jump of 0.2 s at every loop point. Now every presented
/// frame follows the one before by one frame duration across two loop points, the buffered video
/// has no hole, and the page never needs to jump.
#[test]
fn b_frame_video_loops_without_dropping_frames() {
    if !have_browser() {
        return;
    }
    assert_loops_without_dropping_frames(BFRAMES, BFRAMES_LOOP, BFRAMES_FRAME_SECS);
}

/// The same B-frame video as an ordinary MP4 (sample tables, an edit list that shows the first
/// frame at 0), fragmented in memory by the server: every presented frame follows the one before
/// by one frame duration across two loop points. (When the audio was cut where the video's
/// decode times end rather than where it is last shown, the loop was a frame shorter than the
/// video and Chromium skipped 0.2 s near the end of every pass.)
#[test]
fn plain_b_frame_file_loops_without_dropping_frames() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-plain-bframes.mp4");
    make_file(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-bf",
            "3",
            "-c:a",
            "aac",
            "-b:a",
            "48k",
        ],
        &path,
    );
    let looping = Loop {
        secs: 2.0,
        first_frame: 0.0,
    };
    assert_loops_without_dropping_frames(path.to_str().unwrap(), looping, BFRAMES_FRAME_SECS);
}

/// A fragmented file joined from a 25 fps and a 30 fps part with `ffmpeg -f concat -c copy` has
/// video 1.2 s longer than its audio. The loop used to keep the video's length and leave a hole
/// in the audio at every loop point, where Chromium stalled: the picture froze about 1.2 s (and
/// the page seeked over the hole). Now the loop is the audio's length: the picture runs on
/// through two loop points.
#[test]
fn variable_frame_rate_video_loops_without_freezing() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut list = String::new();
    for rate in [25, 30] {
        let part = dir.join(format!("browser-vfr-{rate}.mp4"));
        make_file(
            &[
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size=320x180:rate={rate}:duration=3"),
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=3",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-g",
                &rate.to_string(),
                "-c:a",
                "aac",
                "-b:a",
                "48k",
            ],
            &part,
        );
        list.push_str(&format!("file '{}'\n", part.display()));
    }
    let list_path = dir.join("browser-vfr.txt");
    std::fs::write(&list_path, list).unwrap();
    let path = dir.join("browser-vfr.mp4");
    make_file(
        &[
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            list_path.to_str().unwrap(),
            "-c",
            "copy",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
        ],
        &path,
    );
    let movie = ssecast::mp4::Movie::parse(&std::fs::read(&path).unwrap()).unwrap();
    let (period, ts) = movie.loop_period();
    let video = movie.track_span(movie.main_track) as f64
        / f64::from(movie.tracks[movie.main_track].timescale);
    let secs = period as f64 / f64::from(ts);
    assert!(
        video - secs > 1.0,
        "the test needs video longer than audio: {video} vs {secs}"
    );
    let server = TestServer::start(&["--speed", "1", path.to_str().unwrap()]);
    let browser = Browser::start();
    open_viewer(&browser, &server);
    let looping = Loop {
        secs,
        first_frame: 0.0,
    };
    let (_, p) = wait_for_loop(&browser, looping, Duration::from_secs(40), |p| {
        p["crossings"].as_array().is_some_and(|c| c.len() >= 2)
    });
    eprintln!("page state: {p:#}");
    assert_no_media_errors(&p);
    let crossings = p["crossings"].as_array().cloned().unwrap_or_default();
    assert!(
        crossings.len() >= 2,
        "not two loop points of {secs:.2} s: {p:#}"
    );
    for c in &crossings {
        assert!(
            c[1].as_f64().is_some_and(|ms| ms < 200.0),
            "the picture froze at a loop point ([loop point, ms]: {c}): {p:#}"
        );
    }
    // The join itself leaves a hole of 0.6 s in the video (in the file, not at the loop point);
    // the loop points used to freeze for 1.2 s.
    assert!(
        p["longestFreeze"].as_f64().is_some_and(|ms| ms < 1000.0),
        "the picture froze: {p:#}"
    );
}

/// Makes `out` with ffmpeg.
fn make_file(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .stdin(Stdio::null())
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// Plays `path` and checks that every presented frame follows the one before by at most 1.5
/// frame durations across two loop points, that the buffered video has no hole and that the page
/// never needs to jump. With B-frames a fragmented video shows its first frame two frame
/// durations after its decode time 0 while its audio starts at 0 (ffmpeg writes no edit list for
/// `empty_moov`); looped as it was, the audio of each new pass made Chromium drop the last four
/// frames of the pass before, and the page seeked over the hole that left: one jump of 0.2 s at
/// every loop point.
fn assert_loops_without_dropping_frames(path: &str, looping: Loop, frame_secs: f64) {
    let started = Instant::now();
    let server = TestServer::start(&["--speed", "1", path]);
    let browser = Browser::start();
    open_viewer(&browser, &server);

    // Two loop points of a 2 s video are at most 4.1 s of playing away.
    let (_, p) = wait_for_loop(&browser, looping, Duration::from_secs(30), |p| {
        p["crossings"].as_array().is_some_and(|c| c.len() >= 2)
    });
    eprintln!("page state: {p:#}");
    assert_no_media_errors(&p);
    assert!(
        p["crossings"].as_array().is_some_and(|c| c.len() >= 2),
        "the picture did not run through two loop points of the {} s video: {p:#}",
        looping.secs
    );
    let step = media_secs(&p, "maxStep");
    assert!(
        step <= 1.5 * frame_secs,
        "presented frames jumped {step:.3} s at {} (a frame lasts {frame_secs} s): {p:#}",
        p["maxStepAt"]
    );
    assert_eq!(
        p["buffered"].as_array().map(Vec::len),
        Some(1),
        "the buffered video has a hole: {p:#}"
    );
    // At most the seek to the first fragment, which the page skips when it is already there.
    assert!(
        p["seeks"].as_u64() <= Some(1) && matches!(p["lastSeek"].as_str(), Some("" | "start")),
        "the page had to jump: {p:#}"
    );
    eprintln!("{path} took {:.1} s", started.elapsed().as_secs_f64());
}

/// A server restarted with the same file starts its timeline again, and the viewer's Last-Event-ID
/// is unknown to it: the page must notice that time went back and play on, not freeze.
#[test]
fn viewer_page_plays_on_after_the_server_restarts_with_the_same_file() {
    if !have_browser() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start(&["--speed", "1"]);
    let listen = server.addr.to_string();
    let browser = Browser::start();
    open_viewer(&browser, &server);

    // Play long enough that the restarted server's timeline is clearly behind the page's.
    let (ok, p) = wait_for(&browser, Duration::from_secs(30), |p| {
        media_secs(p, "lastFrame") >= 5.0
    });
    assert!(ok, "playback did not reach 5 s: {p:#}");
    assert_eq!(
        compressed_viewers(&server),
        1,
        "the page played a gzip stream"
    );
    drop(server);
    let (ok, p) = wait_for(&browser, Duration::from_secs(10), |p| {
        p["state"] == json!("reconnecting")
    });
    assert!(ok, "the page did not notice the server went away: {p:#}");
    let before = media_secs(&p, "lastFrame");

    let server = TestServer::start(&["--speed", "1", "--listen", &listen]);
    // More than the page had buffered when the server went away (under 2 s) must play.
    let (_, p) = wait_for(&browser, Duration::from_secs(30), |p| {
        p["state"] == json!("connected") && media_secs(p, "lastFrame") > before + 3.0
    });
    eprintln!("page state: {p:#}");
    assert_no_media_errors(&p);
    assert_eq!(p["state"], json!("connected"), "did not reconnect: {p:#}");
    let after = media_secs(&p, "lastFrame") - before;
    assert!(
        after > 3.0,
        "only {after:.2} s of video after the restart: {p:#}"
    );
    assert_eq!(
        p["mediaSources"],
        json!(1),
        "the same init must keep the MediaSource: {p:#}"
    );
    assert!(
        compressed_viewers(&server) >= 1,
        "the page reconnected to a gzip stream"
    );
    assert!(
        p["shifts"].as_u64() >= Some(1),
        "the page did not notice the timeline went back: {p:#}"
    );
    eprintln!("restart test took {:.1} s", started.elapsed().as_secs_f64());
}

/// Asserts that the page plays the live stream at `width`×`height` (its newest presented frame
/// has that size) and shows no message.
fn assert_playing_live(p: &Value, width: u64, height: u64) {
    assert_no_media_errors(p);
    assert_eq!(p["state"], json!("connected"), "{p:#}");
    assert_eq!(p["message"], Value::Null, "a message is still shown: {p:#}");
    assert_eq!(
        (&p["width"], &p["height"]),
        (&json!(width), &json!(height)),
        "the video's size: {p:#}"
    );
    assert_eq!(
        (&p["lastFrame"][2], &p["lastFrame"][3]),
        (&json!(width), &json!(height)),
        "the newest presented frame's size: {p:#}"
    );
}

/// ffmpeg publishes `/publish/cam`; the page at `/cam` plays it.
#[test]
fn viewer_page_plays_a_live_ffmpeg_feed() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start(&[]);
    let _publisher = Publisher::start(&server, LIVE, "640x360");
    let browser = Browser::start();
    open_viewer_at(&browser, &server, &format!("/{LIVE}"));

    // Two seconds of presented 30 fps video; ffmpeg needs a GOP (1 s) before the first fragment.
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(30), |p| {
        frames_of_size(p, "640x360") >= 60
    });
    save_screenshot(&browser, "browser-live.png");
    eprintln!("page state: {p:#}");
    assert!(ok, "the page did not present 2 s of the live feed: {p:#}");
    assert_playing_live(&p, 640, 360);
    assert_eq!(p["stream"], json!(LIVE), "{p:#}");
    assert!(
        p["title"].as_str().is_some_and(|t| t.contains(LIVE)),
        "the title does not name the stream: {p:#}"
    );
    eprintln!("live test took {:.1} s", started.elapsed().as_secs_f64());
}

/// Plays a 640×360 feed at `/cam`, kills the publisher and checks that the same page says the
/// stream is offline, then starts a publisher of `size` and waits until the page presented 2 s of
/// it. Saves `target/browser-live-<shots>-offline.png` and `-<shots>.png`; returns the last probe.
fn watch_publisher_restart(size: &str, shots: &str) -> Value {
    let server = TestServer::start(&[]);
    let publisher = Publisher::start(&server, LIVE, "640x360");
    let browser = Browser::start();
    open_viewer_at(&browser, &server, &format!("/{LIVE}"));
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(30), |p| {
        frames_of_size(p, "640x360") >= 30
    });
    assert!(ok, "the page did not play the first feed: {p:#}");
    assert_playing_live(&p, 640, 360);

    drop(publisher);
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(15), |p| {
        p["state"] == json!("offline")
    });
    save_screenshot(&browser, &format!("browser-live-{shots}-offline.png"));
    eprintln!("page state while offline: {p:#}");
    assert!(ok, "the page did not say the stream went offline: {p:#}");
    assert!(
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("offline") && m.contains(LIVE)),
        "the message does not say {LIVE} is offline: {p:#}"
    );
    assert!(
        p["status"].as_str().is_some_and(|m| m.contains("offline")),
        "the status line does not say it is offline: {p:#}"
    );
    let since = p["frames"].as_u64().unwrap_or(0);

    let _publisher = Publisher::start(&server, LIVE, size);
    let (ok, p) = wait_live(&browser, since, Duration::from_secs(30), |p| {
        frames_of_size(p, size) >= 60
    });
    save_screenshot(&browser, &format!("browser-live-{shots}.png"));
    eprintln!("page state: {p:#}");
    assert!(
        ok,
        "the page did not present 2 s of the restarted feed: {p:#}"
    );
    let (width, height) = size.split_once('x').expect("a WIDTHxHEIGHT size");
    let dimension = |d: &str| d.parse::<u64>().expect("a number");
    assert_playing_live(&p, dimension(width), dimension(height));
    assert_eq!(
        p["marker"],
        json!("still the same page"),
        "the page reloaded: {p:#}"
    );
    assert!(
        p["inits"].as_u64() >= Some(2) && p["offlines"].as_u64() >= Some(1),
        "{p:#}"
    );
    p
}

/// The publisher is killed and comes back at another resolution: the same page (no reload) says
/// the stream is offline, then plays the new feed at its new size in a new MediaSource.
#[test]
fn viewer_page_waits_through_a_publisher_restart_at_another_resolution() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let started = Instant::now();
    let p = watch_publisher_restart("320x240", "restart");
    assert_eq!(
        p["mediaSources"],
        json!(2),
        "another resolution is another init segment, so one new MediaSource: {p:#}"
    );
    eprintln!(
        "publisher restart test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The publisher comes back with the same settings, so the same init segment: the page keeps its
/// MediaSource, and the server carries the timeline on, so the page needs no timeline shift.
#[test]
fn viewer_page_keeps_its_media_source_when_the_publisher_comes_back_the_same() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let started = Instant::now();
    let p = watch_publisher_restart("640x360", "same");
    assert_eq!(
        p["mediaSources"],
        json!(1),
        "the same init segment must keep the MediaSource: {p:#}"
    );
    assert_eq!(p["shifts"], json!(0), "the timeline went back: {p:#}");
    eprintln!(
        "same-publisher restart test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A page opened before anything is published says it is waiting, then plays when ffmpeg starts.
#[test]
fn viewer_page_opened_before_the_publisher_waits_then_plays() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start(&[]);
    let browser = Browser::start();
    open_viewer_at(&browser, &server, &format!("/{LIVE}"));
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(15), |p| {
        p["state"] == json!("offline")
    });
    save_screenshot(&browser, "browser-live-waiting.png");
    eprintln!("page state before publishing: {p:#}");
    assert!(ok, "the page did not say it is waiting: {p:#}");
    assert!(
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("waiting") && m.contains(LIVE)),
        "the message does not say it waits for {LIVE}: {p:#}"
    );
    assert_eq!(p["inits"], json!(0), "{p:#}");

    let _publisher = Publisher::start(&server, LIVE, "640x360");
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(30), |p| {
        frames_of_size(p, "640x360") >= 60
    });
    eprintln!("page state: {p:#}");
    assert!(
        ok,
        "the page did not start playing when the feed started: {p:#}"
    );
    assert_playing_live(&p, 640, 360);
    assert_eq!(
        p["marker"],
        json!("still the same page"),
        "the page reloaded: {p:#}"
    );
    eprintln!("waiting test took {:.1} s", started.elapsed().as_secs_f64());
}

/// `/` plays the default stream chosen when it connected (the sample, while nothing is live) and
/// links to the others. A publisher starting makes its stream the default for new viewers: the
/// page stays on the sample, keeps calling it so, and links to the new stream, marked live.
#[test]
fn root_page_stays_on_its_stream_and_links_to_one_that_goes_live() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start(&[]);
    let browser = Browser::start();
    open_viewer(&browser, &server);
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(30), |p| {
        frames_of_size(p, "640x360") >= 30 && p["stream"] == json!("sample")
    });
    assert!(ok, "the page at / did not play the sample: {p:#}");
    assert_eq!(p["links"], json!([]), "there is no other stream yet: {p:#}");

    let _publisher = Publisher::start(&server, LIVE, "640x360");
    // The page refreshes its links every 10 s.
    let (ok, p) = wait_live(&browser, 0, Duration::from_secs(20), |p| {
        p["links"] == json!([[format!("/{LIVE}"), "live"]])
    });
    save_screenshot(&browser, "browser-root-links.png");
    eprintln!("page state: {p:#}");
    assert!(ok, "no link to the live /{LIVE}: {p:#}");
    assert_playing_live(&p, 640, 360);
    assert_eq!(p["stream"], json!("sample"), "{p:#}");
    assert!(
        p["title"].as_str().is_some_and(|t| t.contains("sample")),
        "the title does not name the stream shown: {p:#}"
    );
    assert_eq!(p["inits"], json!(1), "the page left the sample: {p:#}");
    eprintln!(
        "root page test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// What the page says about its delay and how it keeps it (see `web/player.js`), with the frame
/// log's longest gap between presented frames since index `since`.
const DELAY_PROBE: &str = r#"
const [since] = arguments;
const v = document.getElementById('video');
const s = window.ssecast || {};
const f = (window.testFrames || []).slice(since);
let longestFreeze = 0;
let maxStep = 0;
for (let i = 1; i < f.length; i++) {
  longestFreeze = Math.max(longestFreeze, Math.round(f[i][0] - f[i - 1][0]));
  maxStep = Math.max(maxStep, f[i][1] - f[i - 1][1]);
}
const b = v.buffered;
return {
  frames: (window.testFrames || []).length, framesSince: f.length, longestFreeze, maxStep,
  paused: v.paused, error: v.error ? `${v.error.code} ${v.error.message}` : null,
  ahead: b.length ? b.end(b.length - 1) - v.currentTime : null,
  state: s.state || null, errors: s.errors || null, stalls: s.stalls, seeks: s.seeks,
  seekReasons: s.seekReasons, target: s.target, fragment: s.fragment, rate: s.rate,
  delay: s.delay, encoderDelay: s.encoderDelay, firstFrameMs: s.firstFrameMs,
  status: document.getElementById('status').textContent, marker: window.testMarker || null,
};
"#;

/// The one-frame-part tests each encode video and run a browser: one at a time.
static PARTS_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// ffmpeg publishing the live test pattern to stream `name` as one frame per fragment, with a
/// `prft` (encoder wall clock) before each moof.
fn publish_parts(server: &TestServer, name: &str) -> util::live::Killed {
    let url = server.url(&format!("/publish/{name}"));
    let parts = "frag_keyframe+empty_moov+default_base_moof+frag_every_frame";
    let extra = ["-movflags", parts, "-write_prft", "wallclock"];
    util::live::ffmpeg_publish(&url, "640x360", None, &extra)
}

/// Opens `/NAME` on a feed of one-frame parts and waits until it presented 2 s of it.
fn watch_parts(browser: &Browser, server: &TestServer, name: &str) -> Value {
    open_viewer_at(browser, server, &format!("/{name}"));
    let body = json!({ "script": DELAY_PROBE, "args": [0] });
    let (ok, p) = poll(
        Duration::from_secs(30),
        || browser.command("POST", "/execute/sync", Some(&body)),
        |p| p["framesSince"].as_u64() >= Some(60) && p["delay"]["count"].as_u64() >= Some(30),
    );
    assert!(ok, "the page did not play the parts: {p:#}");
    p
}

/// One frame per fragment at 30 fps: the page plays it with no stall, measures its delay from
/// the server (and from the encoder's prft), and that delay stays well under a second. The
/// figures themselves come from `benches/latency.sh`; this bound only says the page is live.
/// The other browser tests run beside this one on the same cores, and a starved browser stalls
/// whatever the player does, so the page gets up to four 5 s windows to show it plays cleanly.
#[test]
fn one_frame_parts_play_without_stalls_and_a_delay_under_a_second() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let _one_at_a_time = PARTS_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(&[]);
    let _publisher = publish_parts(&server, "parts");
    let browser = Browser::start();
    let mut start = watch_parts(&browser, &server, "parts");
    let clean = |p: &Value, start: &Value| {
        p["stalls"] == start["stalls"]
            && p["seeks"] == start["seeks"]
            && p["framesSince"].as_u64() >= Some(120)
            && p["longestFreeze"].as_u64() < Some(500)
    };
    let mut p = Value::Null;
    for window in 1..=4 {
        let since = start["frames"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_secs(5));
        let body = json!({ "script": DELAY_PROBE, "args": [since] });
        p = browser.command("POST", "/execute/sync", Some(&body));
        assert_no_media_errors(&p);
        if clean(&p, &start) {
            break;
        }
        eprintln!("window {window} was not clean (stalls, seeks or frozen frames): {p:#}");
        start = p.clone();
    }
    save_screenshot(&browser, "browser-parts.png");
    eprintln!("page state: {p:#}");
    assert!(clean(&p, &start), "no 5 s of clean playing in 20 s: {p:#}");
    for key in ["delay", "encoderDelay"] {
        let d = &p[key];
        assert!(
            d["count"].as_u64() >= Some(100),
            "too few {key} samples: {p:#}"
        );
        assert!(
            d["max"].as_f64().is_some_and(|s| s > 0.0 && s < 1.0),
            "{key}: {p:#}"
        );
    }
    assert!(
        p["status"].as_str().is_some_and(|s| s.contains("delay")),
        "the status line does not show the delay: {p:#}"
    );
    assert!(
        (p["fragment"].as_f64().unwrap_or(0.0) - 1.0 / 30.0).abs() < 0.005,
        "{p:#}"
    );
}

/// The video element is paused for 5 s (as a script or a phone's media controls would): the
/// page leaves it paused, and once it plays again catches up to its target (one seek) on the
/// same page, without a reload, and plays on at a live delay.
#[test]
fn after_a_five_second_pause_the_page_catches_up_without_reloading() {
    if !have_browser() || !have_ffmpeg() {
        return;
    }
    let _one_at_a_time = PARTS_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start(&[]);
    let _publisher = publish_parts(&server, "pause");
    let browser = Browser::start();
    let before = watch_parts(&browser, &server, "pause");
    browser.execute("document.getElementById('video').pause();");
    std::thread::sleep(Duration::from_secs(5));
    let body = json!({ "script": DELAY_PROBE, "args": [0] });
    let paused = browser.command("POST", "/execute/sync", Some(&body));
    assert_eq!(
        paused["paused"],
        json!(true),
        "the page did not stay paused: {paused:#}"
    );
    assert!(
        paused["ahead"].as_f64() > Some(4.0),
        "5 s of the feed did not pile up: {paused:#}"
    );
    let since = paused["frames"].as_u64().unwrap_or(0);
    browser.execute("document.getElementById('video').play();");
    let body = json!({ "script": DELAY_PROBE, "args": [since] });
    let (ok, p) = poll(
        Duration::from_secs(10),
        || browser.command("POST", "/execute/sync", Some(&body)),
        |p| {
            p["framesSince"].as_u64() >= Some(60)
                && p["ahead"].as_f64() < Some(0.5)
                && p["delay"]["current"].as_f64() < Some(0.5)
        },
    );
    eprintln!("page state: {p:#}");
    assert!(ok, "the page did not catch up after the pause: {p:#}");
    assert_eq!(
        p["marker"],
        json!("still the same page"),
        "the page reloaded: {p:#}"
    );
    let live_edge = |p: &Value| p["seekReasons"]["live edge"].as_u64().unwrap_or(0);
    assert_eq!(
        live_edge(&p),
        live_edge(&before) + 1,
        "one seek to the live edge: {p:#}"
    );
}
