//! What the ingest tests share: the ffmpeg test encode, the CODECS ffmpeg's HLS muxer writes
//! for it, and what a viewer's events make as MP4 (its bytes, frames per fragment, and the
//! audio/video offset ffprobe sees).

use super::live::{b64, init_segment};
use super::Event;
use ssecast::mp4::{parse_fragment_at, InitSegment};
use std::process::Command;

/// The test source: 640x360 at 30 fps with a 440 Hz tone, 1 s GOPs, encoded with `codec`.
pub fn encode_args(codec: &str, audio: bool, secs: f64, realtime: bool) -> Vec<String> {
    let mut a: Vec<String> = vec!["-hide_banner".into(), "-loglevel".into(), "error".into()];
    if realtime {
        a.push("-re".into());
    }
    a.extend(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"].map(String::from));
    if audio {
        a.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"].map(String::from));
    }
    a.extend(["-t".to_string(), format!("{secs}")]);
    match codec {
        "h264" => a.extend(
            [
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ]
            .map(String::from),
        ),
        _ => a.extend(
            [
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-x265-params",
                "log-level=error",
            ]
            .map(String::from),
        ),
    }
    a.extend(["-g", "30", "-pix_fmt", "yuv420p"].map(String::from));
    if audio {
        a.extend(["-c:a", "aac"].map(String::from));
    }
    a
}

/// An encode of [`encode_args`] with Opus audio (libopus) instead of AAC.
pub fn with_opus(mut args: Vec<String>) -> Vec<String> {
    if let Some(a) = args.iter_mut().find(|a| *a == "aac") {
        *a = "libopus".into();
    }
    args
}

/// Decodes the first audio stream of `mp4` with ffmpeg: its codec name, or what went wrong
/// (any message ffmpeg prints is an error).
pub fn ffmpeg_decode_audio(mp4: &[u8], name: &str) -> Result<String, String> {
    let path = std::env::temp_dir().join(format!("ssecast-{}-{name}-a.mp4", std::process::id()));
    std::fs::write(&path, mp4).map_err(|e| e.to_string())?;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&path)
        .args(["-map", "0:a:0", "-f", "null", "-"])
        .output()
        .map_err(|e| e.to_string());
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
        .args(["stream=codec_name", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&path);
    let (out, probe) = (out?, probe?);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        return Err(format!("ffmpeg: {}: {stderr}", out.status));
    }
    Ok(String::from_utf8_lossy(&probe.stdout).trim().to_string())
}

/// The CODECS attribute ffmpeg's HLS muxer writes for the same encode.
pub fn hls_codecs(codec: &str, audio: bool) -> String {
    let audio_tag = if audio { "a" } else { "v" };
    let dir = std::env::temp_dir().join(format!(
        "ssecast-hls-{}-{codec}-{audio_tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("ffmpeg")
        .args(encode_args(codec, audio, 1.0, false))
        .args(["-tag:v", if codec == "h264" { "avc1" } else { "hvc1" }])
        .args(["-f", "hls", "-hls_segment_type", "fmp4", "-master_pl_name"])
        .arg("master.m3u8")
        .arg(dir.join("x.m3u8"))
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    master
        .split("CODECS=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no CODECS in {master}"))
        .to_string()
}

/// The codecs of an `init` event's MIME type.
pub fn init_codecs(ev: &Event) -> String {
    let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
    let mime = v["mime"].as_str().unwrap();
    mime.split("codecs=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

/// Ours against ffmpeg's: H.264 and AAC exactly; for H.265 the sample entry, profile, tier
/// and level (ffmpeg's HLS muxer writes compatibility `4` and constraints `B01` whatever the
/// stream says, where ours come from the SPS's profile_tier_level as RFC 6381 asks).
pub fn assert_codecs_match(ours: &str, theirs: &str) {
    let (o, t): (Vec<&str>, Vec<&str>) = (ours.split(',').collect(), theirs.split(',').collect());
    assert_eq!(o.len(), t.len(), "{ours} vs {theirs}");
    for (o, t) in o.iter().zip(&t) {
        if t.starts_with("hvc1") {
            let (o, t): (Vec<&str>, Vec<&str>) = (o.split('.').collect(), t.split('.').collect());
            assert_eq!((o[0], o[1], o[3]), (t[0], t[1], t[3]), "{ours} vs {theirs}");
        } else {
            assert_eq!(o, t, "{ours} vs {theirs}");
        }
    }
}

/// The MP4 bytes a viewer got (the last init and every fragment after it), and the fragments.
pub fn as_mp4(events: &[Event]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut out = Vec::new();
    let mut frags = Vec::new();
    for e in events {
        match e.event.as_str() {
            "init" => {
                out = init_segment(e);
                frags.clear();
            }
            "data" => {
                let f = b64(&e.data);
                out.extend_from_slice(&f);
                frags.push(f);
            }
            _ => {}
        }
    }
    (out, frags)
}

/// Start times (s) of the video and audio streams of a file, as ffprobe sees them.
pub fn start_times(path: &std::path::Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=start_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// Audio start minus video start (s) in `mp4`.
pub fn av_offset(mp4: &[u8], name: &str) -> f64 {
    let path = std::env::temp_dir().join(format!("ssecast-{}-{name}.mp4", std::process::id()));
    std::fs::write(&path, mp4).unwrap();
    let t = start_times(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(t.len(), 2, "{name}: start times {t:?}");
    t[1] - t[0]
}

/// The same encode as MPEG-TS in a file: its audio start minus video start.
pub fn input_av_offset(codec: &str) -> f64 {
    input_av_offset_of(encode_args(codec, true, 1.0, false), codec)
}

/// The encode `args` as MPEG-TS in a file: its audio start minus video start.
pub fn input_av_offset_of(args: Vec<String>, name: &str) -> f64 {
    let path = std::env::temp_dir().join(format!("ssecast-in-{}-{name}.ts", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(args)
        .args(["-y", "-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let t = start_times(&path);
    let _ = std::fs::remove_file(&path);
    t[1] - t[0]
}

/// Video samples of each fragment.
pub fn frames_per_fragment(mp4_init: &[u8], frags: &[Vec<u8>]) -> Vec<u32> {
    let ftyp = u32::from_be_bytes(mp4_init[..4].try_into().unwrap()) as usize;
    let init = InitSegment::parse(Some(&mp4_init[..ftyp]), &mp4_init[ftyp..]).unwrap();
    frags
        .iter()
        .map(|f| {
            let f = parse_fragment_at(f, 0, &init).unwrap();
            f.runs
                .iter()
                .find(|r| r.track == init.main_track)
                .map_or(0, |r| r.samples)
        })
        .collect()
}
