//! Plain (non-fragmented) MP4 and QuickTime files played as they are: files made by ffmpeg in a
//! temporary directory (moov at the end and at the start, H.264 with and without B-frames, H.265,
//! AAC at 44.1 and 48 kHz, two audio tracks, video only, audio only, a variable frame rate, a
//! `.mov`) are served by one server, and for each, what a viewer receives over two loop points is
//! an fMP4 that ffmpeg decodes without an error, with the source's frame and sample counts in
//! every pass and decode times that keep growing. Files that cannot be played are refused with
//! exit code 2 and a message naming the problem; the server's memory stays far below the size of
//! a file it plays.
//!
//! Skipped (passes with a `skipped:` line) when ffmpeg is not installed.

mod util;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ssecast::mp4::{fragment_times, Movie};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use util::live::have_ffmpeg;
use util::{SseReader, TestServer};

/// A fresh temporary directory for this test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plain-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs ffmpeg quietly with `args`, making `out`.
fn ffmpeg(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(out)
        .stdin(Stdio::null())
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

const VIDEO: &str = "testsrc2=size=160x90:rate=25";
const VIDEO_30: &str = "testsrc2=size=160x90:rate=30";

/// One test file: its stream name, the ffmpeg arguments that make it, and its extension.
struct Case {
    name: &'static str,
    ext: &'static str,
    args: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    let av = |video: &'static str, rate: &'static str| {
        vec![
            "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", rate, "-t", "2",
        ]
    };
    let sine48 = "sine=frequency=440:sample_rate=48000";
    let sine44 = "sine=frequency=440:sample_rate=44100";
    let x264 = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "25",
    ];
    let with = |mut base: Vec<&'static str>, more: &[&'static str]| {
        base.extend_from_slice(more);
        base
    };
    vec![
        Case {
            name: "bframes",
            ext: "mp4",
            args: with(
                av(VIDEO, sine48),
                &[&x264[..], &["-bf", "2", "-c:a", "aac"]].concat(),
            ),
        },
        Case {
            name: "faststart",
            ext: "mp4",
            args: with(
                av(VIDEO, sine44),
                &[
                    &x264[..],
                    &["-bf", "0", "-c:a", "aac", "-movflags", "+faststart"],
                ]
                .concat(),
            ),
        },
        Case {
            name: "hevc",
            ext: "mp4",
            args: with(
                av(VIDEO, sine48),
                &[
                    "-c:v",
                    "libx265",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv420p",
                    "-tag:v",
                    "hvc1",
                    "-x265-params",
                    "keyint=25:log-level=none",
                    "-c:a",
                    "aac",
                ],
            ),
        },
        Case {
            name: "twoaudio",
            ext: "mp4",
            args: with(
                vec![
                    "-f",
                    "lavfi",
                    "-i",
                    VIDEO,
                    "-f",
                    "lavfi",
                    "-i",
                    sine48,
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=880:sample_rate=44100",
                    "-t",
                    "2",
                    "-map",
                    "0",
                    "-map",
                    "1",
                    "-map",
                    "2",
                ],
                &[&x264[..], &["-c:a", "aac"]].concat(),
            ),
        },
        Case {
            name: "videoonly",
            ext: "mp4",
            args: with(vec!["-f", "lavfi", "-i", VIDEO, "-t", "2"], &x264),
        },
        Case {
            name: "audioonly",
            ext: "mp4",
            args: vec!["-f", "lavfi", "-i", sine44, "-t", "3", "-c:a", "aac"],
        },
        Case {
            name: "vfr",
            ext: "mp4",
            args: with(
                vec![
                    "-f",
                    "lavfi",
                    "-i",
                    VIDEO,
                    "-f",
                    "lavfi",
                    "-i",
                    VIDEO_30,
                    "-f",
                    "lavfi",
                    "-i",
                    sine48,
                    "-filter_complex",
                    "[0:v]trim=duration=1[a];[1:v]trim=duration=1,setpts=PTS-STARTPTS[b];\
                     [a][b]concat=n=2:v=1:a=0[v]",
                    "-map",
                    "[v]",
                    "-map",
                    "2:a",
                    "-t",
                    "2",
                    "-fps_mode",
                    "vfr",
                ],
                &[&x264[..], &["-c:a", "aac"]].concat(),
            ),
        },
        Case {
            name: "quicktime",
            ext: "mov",
            args: with(av(VIDEO, sine48), &[&x264[..], &["-c:a", "aac"]].concat()),
        },
    ]
}

/// Packets per stream (in file order) ffprobe counts in `path`.
fn packet_counts(path: &Path) -> Vec<u64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// What ffmpeg says when it decodes all of `path` (nothing when it decodes cleanly).
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("run ffmpeg");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!(" (exit {:?})", out.status.code()));
    }
    text
}

fn seq_of(id: &str) -> u64 {
    id.split('.').next().unwrap().parse().unwrap()
}

/// The init segment and `passes` whole passes of stream `name`, from the first pass that starts
/// after the viewer joined: (bytes, the pass number of the first pass).
fn record_passes(server: &TestServer, name: &str, per_pass: u64, passes: u64) -> (Vec<u8>, u64) {
    let mut r = SseReader::open(server.addr, &format!("/events/{name}"), "");
    let init = r.next_event().expect("init event");
    assert_eq!(init.event, "init", "{name}");
    let b64 = init.data.split("\"init\":\"").nth(1).unwrap();
    let mut stream = STANDARD.decode(b64.split('"').next().unwrap()).unwrap();
    let mut first_pass = None;
    let mut got = 0;
    let mut last_times: Option<Vec<u64>> = None;
    while got < per_pass * passes {
        let ev = r.next_event().expect("stream ended early");
        if ev.event != "data" {
            continue;
        }
        // Sequences start at 1 with the first fragment of pass 0.
        let seq = seq_of(ev.id.as_deref().unwrap()) - 1;
        if first_pass.is_none() {
            if seq % per_pass != 0 {
                continue;
            }
            first_pass = Some(seq / per_pass);
        }
        let frag = STANDARD.decode(&ev.data).unwrap();
        let (_, times) = fragment_times(&frag).unwrap();
        if let Some(prev) = &last_times {
            for (a, b) in prev.iter().zip(&times) {
                assert!(b > a, "{name}: decode time went back from {a} to {b}");
            }
        }
        last_times = Some(times);
        stream.extend(frag);
        got += 1;
    }
    (stream, first_pass.unwrap())
}

#[test]
fn plain_files_play_as_fmp4_with_every_frame_and_sample_in_every_pass() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir("cases");
    let cases = cases();
    let mut streams = Vec::new();
    for c in &cases {
        let path = dir.join(format!("{}.{}", c.name, c.ext));
        ffmpeg(&c.args, &path);
        streams.push(format!("{}={}", c.name, path.display()));
    }
    let mut args = vec!["--speed", "40"];
    args.extend(streams.iter().map(String::as_str));
    let server = TestServer::start(&args);
    for c in &cases {
        let path = dir.join(format!("{}.{}", c.name, c.ext));
        let data = std::fs::read(&path).unwrap();
        let movie = Movie::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert!(movie.is_plain(), "{}", c.name);
        let per_pass = movie.fragments.len() as u64;
        let passes = 2;
        let (stream, first_pass) = record_passes(&server, c.name, per_pass, passes);
        let out = dir.join(format!("{}-played.mp4", c.name));
        std::fs::write(&out, &stream).unwrap();
        let errors = decode_errors(&out);
        assert!(errors.is_empty(), "{}: ffmpeg says {errors}", c.name);
        // Per pass every frame and sample of the source, but for the audio lead-in that passes
        // after the first leave out (AAC frames of 1024 samples).
        let source = packet_counts(&path);
        let played = packet_counts(&out);
        assert_eq!(source.len(), movie.tracks.len(), "{}: {source:?}", c.name);
        let later = passes - u64::from(first_pass == 0);
        for (i, track) in movie.tracks.iter().enumerate() {
            let lead_in = movie.lead_in_ticks(i) / 1024;
            let want = source[i] * passes - later * lead_in;
            assert_eq!(
                played[i], want,
                "{}: track {} ({source:?})",
                c.name, track.id
            );
        }
        let whole = Movie::parse(&stream).expect("what a viewer gets parses");
        assert_eq!(whole.fragments.len() as u64, per_pass * passes);
        assert!(whole.fragments[0].keyframe, "{}", c.name);
    }
}

#[test]
fn unplayable_files_are_refused_with_the_reason() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir("bad");
    let mpeg4 = dir.join("mpeg4.mp4");
    ffmpeg(
        &["-f", "lavfi", "-i", VIDEO, "-t", "1", "-c:v", "mpeg4"],
        &mpeg4,
    );
    let good = dir.join("good.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            VIDEO,
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
        &good,
    );
    let data = std::fs::read(&good).unwrap();
    // The first chunk offset moved past the end of the file.
    let stco = data.windows(4).position(|w| w == b"stco").unwrap() - 4;
    let mut outside = data.clone();
    outside[stco + 16..stco + 20].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
    let cut = dir.join("outside.mp4");
    std::fs::write(&cut, &outside).unwrap();
    let stts = data.windows(4).position(|w| w == b"stts").unwrap() - 4;
    let mut zero = data.clone();
    // The first stts entry's duration.
    zero[stts + 20..stts + 24].copy_from_slice(&0u32.to_be_bytes());
    let zero_path = dir.join("zero.mp4");
    std::fs::write(&zero_path, &zero).unwrap();
    let mut fewer = data.clone();
    fewer[stts + 16..stts + 20].copy_from_slice(&3u32.to_be_bytes());
    let fewer_path = dir.join("fewer.mp4");
    std::fs::write(&fewer_path, &fewer).unwrap();
    for (path, needle) in [
        (&mpeg4, "codec 'mp4v'"),
        (&cut, "past the end of the file"),
        (&zero_path, "no duration"),
        (&fewer_path, "does not agree"),
    ] {
        let out = Command::new(util::server_bin())
            .args(["--listen", "127.0.0.1:0"])
            .arg(path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {text}", path.display());
        assert!(text.contains(needle), "{}: {text}", path.display());
        assert!(
            text.contains("byte "),
            "{}: names the offset: {text}",
            path.display()
        );
        assert!(!text.contains("panicked"), "{text}");
    }
}

/// KiB of `path` mapped into the server's memory (its share of the RSS), from /proc's smaps.
fn mapped_rss_kib(server: &TestServer, path: &Path) -> u64 {
    let smaps =
        std::fs::read_to_string(format!("/proc/{}/smaps", server.child.id())).unwrap_or_default();
    let name = path.to_str().unwrap();
    let mut in_file = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            in_file = line.ends_with(name);
        } else if in_file && first == "Rss:" {
            total += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    total
}

#[test]
fn memory_stays_far_below_the_size_of_a_plain_file_being_played() {
    if !have_ffmpeg() {
        return;
    }
    let dir = temp_dir("rss");
    let path = dir.join("big.mp4");
    // About 24 MB of barely compressible video: noise at a high bitrate.
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "nullsrc=size=320x240:rate=25,geq=random(1)*255:128:128",
            "-t",
            "20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-b:v",
            "10M",
            "-pix_fmt",
            "yuv420p",
        ],
        &path,
    );
    let size_kib = std::fs::metadata(&path).unwrap().len() / 1024;
    assert!(size_kib > 16 * 1024, "the test file is only {size_kib} KiB");
    let arg = path.to_str().unwrap();
    let server = TestServer::start(&["--speed", "10", "--backlog", "1s", arg]);
    assert!(
        mapped_rss_kib(&server, &path) < 1024,
        "the parse left the file mapped"
    );
    let mut r = SseReader::open(server.addr, "/events", "");
    let mut max_mapped = 0;
    let mut n = 0;
    // Two passes of the 20 one-second fragments.
    while n < 40 {
        let ev = r.next_event().expect("stream");
        if ev.event == "data" {
            n += 1;
            max_mapped = max_mapped.max(mapped_rss_kib(&server, &path));
        }
    }
    // Mapped pages that were sent are given back: the file's share of the RSS is about one
    // fragment (1.2 MB here), never the file.
    assert!(
        max_mapped < 4 * 1024,
        "{max_mapped} KiB of the {size_kib} KiB file stayed mapped"
    );
    assert!(server.rss_kib() < 48 * 1024, "RSS {} KiB", server.rss_kib());
}
