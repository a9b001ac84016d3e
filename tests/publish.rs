//! Publishing over HTTP with real ffmpeg and with a Rust client: ffmpeg's POST and PUT give
//! viewers a stream ffmpeg decodes, pushed bytes come out as exactly the fragments they were in
//! any split, a restarted publisher continues the timeline on the same viewer connection, the
//! publish key is enforced every way it can be presented, and standard input works the same.

mod util;

use ssecast::mp4::{fragment_times, Movie};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use util::live::*;
use util::{Event, SseReader, TestServer};

const BFRAMES: &[u8] = include_bytes!("bframes.mp4");

fn data_events(events: &[Event]) -> impl Iterator<Item = &Event> {
    events.iter().filter(|e| e.event == "data")
}

/// The MP4 bytes a viewer got: the last init segment and every fragment after it.
fn as_mp4(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        match e.event.as_str() {
            "init" => out = init_segment(e),
            "data" => out.extend(b64(&e.data)),
            _ => {}
        }
    }
    out
}

#[test]
fn ffmpeg_publishes_with_post_and_put_and_viewers_get_what_ffmpeg_decodes() {
    if !have_ffmpeg() {
        return;
    }
    let server = TestServer::start(&[]);
    let mut a = SseReader::open(server.addr, "/events/cam", "");
    let mut b = SseReader::open(server.addr, "/events/other", "");
    let _post = ffmpeg_publish(&server.url("/publish/cam"), "640x360", Some(3.5), &[]);
    let _put = ffmpeg_publish(
        &server.url("/publish/other"),
        "320x240",
        Some(3.5),
        &["-method", "PUT"],
    );
    for (r, name, size) in [(&mut a, "cam", (640, 360)), (&mut b, "other", (320, 240))] {
        let events = read_until(r, |ev| {
            ev.last()
                .is_some_and(|e| e.event == "offline" && ev.len() > 1)
        });
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            kinds.first(),
            Some(&"offline"),
            "{name}: not live yet at first"
        );
        assert_eq!(kinds.get(1), Some(&"init"), "{name}: {kinds:?}");
        assert!(data_events(&events).count() >= 3, "{name}: {kinds:?}");
        assert_eq!(init_size(&events[1]), size, "{name}");
        let seqs: Vec<u64> = data_events(&events).map(seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: ids {seqs:?}"
        );
        let frames =
            ffmpeg_decode(&as_mp4(&events), name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            (90..=110).contains(&frames),
            "{name}: {frames} frames of 3.5 s at 30 fps"
        );
    }
    assert!(server
        .wait_log("publisher for cam finished", Duration::from_secs(5))
        .is_some());
}

#[test]
fn pushed_bytes_come_out_as_exactly_their_fragments_in_any_split() {
    let server = TestServer::start(&[]);
    let movie = Movie::parse(BFRAMES).unwrap();
    let want: Vec<&[u8]> = movie
        .fragments
        .iter()
        .map(|f| &BFRAMES[f.range.clone()])
        .collect();
    for (i, framing) in [
        Framing::Chunked,
        Framing::Length,
        Framing::UntilClose,
        Framing::Chunked,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("split{i}");
        let mut viewer = SseReader::open(server.addr, &format!("/events/{name}"), "");
        let max = [1 << 16, 4096, 1 << 16, 7][i];
        let seed = 0x9e37_79b9 + i as u64;
        let response = push(
            server.addr,
            &format!("/publish/{name}"),
            BFRAMES,
            framing,
            seed,
            max,
        );
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{framing:?} seed {seed}: {response}"
        );
        let events = read_until(&mut viewer, |ev| {
            ev.iter().filter(|e| e.event == "offline").count() == 2
        });
        let init = events.iter().find(|e| e.event == "init").expect("init");
        assert_eq!(
            init_segment(init),
            movie.init,
            "{framing:?}: the init segment as sent"
        );
        let got: Vec<Vec<u8>> = data_events(&events).map(|e| b64(&e.data)).collect();
        assert_eq!(got.len(), want.len(), "{framing:?} seed {seed}");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "{framing:?} seed {seed}: fragment {k} differs");
        }
    }
}

#[test]
fn a_restarted_publisher_continues_the_timeline_on_the_same_connection() {
    if !have_ffmpeg() {
        return;
    }
    let server = TestServer::start(&[]);
    let mut viewer = SseReader::open(server.addr, "/events/cam", "");
    let mut all = Vec::new();
    for (round, size) in ["640x360", "640x360", "320x240"].into_iter().enumerate() {
        let mut ffmpeg = ffmpeg_publish(&server.url("/publish/cam"), size, None, &[]);
        let events = read_until(&mut viewer, |ev| data_events(ev).count() >= 2);
        let init = events
            .iter()
            .find(|e| e.event == "init")
            .expect("init after a (re)start");
        let (w, h) = init_size(init);
        assert_eq!(format!("{w}x{h}"), size, "round {round}");
        all.extend(events);
        // Killed, not stopped: the server sees the body end in the middle.
        let _ = ffmpeg.0.kill();
        let _ = ffmpeg.0.wait();
        all.extend(read_until(&mut viewer, |ev| {
            ev.last().is_some_and(|e| e.event == "offline")
        }));
    }
    let kinds: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "init").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "offline").count(),
        4,
        "{kinds:?}"
    );
    let seqs: Vec<u64> = data_events(&all).map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "sequence grows: {seqs:?}"
    );
    // Per track (the traf order is the same in every fragment), decode times strictly grow
    // across both restarts, in seconds since the tracks' timescales may change.
    let mut last: Vec<f64> = Vec::new();
    let mut timescales: Vec<f64> = Vec::new();
    for e in &all {
        match e.event.as_str() {
            "init" => {
                let init = init_segment(e);
                let movie_tracks =
                    ssecast::mp4::InitSegment::parse(None, &init[init_start(&init)..])
                        .expect("init parses");
                timescales = movie_tracks
                    .tracks
                    .iter()
                    .map(|t| f64::from(t.timescale))
                    .collect();
            }
            "data" => {
                let (_, times) = fragment_times(&b64(&e.data)).unwrap();
                let secs: Vec<f64> = times
                    .iter()
                    .zip(&timescales)
                    .map(|(t, ts)| *t as f64 / ts)
                    .collect();
                for (k, (a, b)) in last.iter().zip(&secs).enumerate() {
                    assert!(b > a, "track {k} went from {a} s back to {b} s");
                }
                last = secs;
            }
            _ => {}
        }
    }
    assert!(server
        .wait_log("(session 3, timeline continues)", Duration::from_secs(1))
        .is_some());
}

/// Where the moov starts in an init segment (after its ftyp).
fn init_start(init: &[u8]) -> usize {
    if init.get(4..8) == Some(b"ftyp") {
        u32::from_be_bytes([init[0], init[1], init[2], init[3]]) as usize
    } else {
        0
    }
}

#[test]
fn the_publish_key_is_required_and_accepted_every_way() {
    let server = TestServer::start(&["--publish-key", "s3cret"]);
    let ask = |path: &str, headers: &str| {
        let mut s = start_publish(server.addr, path, Framing::Length, BFRAMES.len(), headers);
        send_body(&mut s, BFRAMES, Framing::Length, &mut Rng(7), 1 << 16);
        response(&mut s)
    };
    let missing = ask("/publish/k1", "");
    assert!(missing.starts_with("HTTP/1.1 401"), "{missing}");
    assert!(missing.contains("WWW-Authenticate: Basic"), "{missing}");
    let wrong = ask("/publish/k1", "Authorization: Bearer nope\r\n");
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    let wrong = ask("/publish/k1?key=nope", "");
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    assert!(ask("/publish/k1", "Authorization: Bearer s3cret\r\n").starts_with("HTTP/1.1 200"));
    assert!(ask("/publish/k2?key=s3cret", "").starts_with("HTTP/1.1 200"));
    // "user:s3cret"
    assert!(
        ask("/publish/k3", "Authorization: Basic dXNlcjpzM2NyZXQ=\r\n").starts_with("HTTP/1.1 200")
    );
    assert!(server
        .wait_log(
            "refused with 403: wrong publish key",
            Duration::from_secs(2)
        )
        .is_some());
    if !have_ffmpeg() {
        return;
    }
    // ffmpeg with the key in its URL: a first request without credentials, a 401 challenge to
    // its Expect: 100-continue, then Basic.
    let mut viewer = SseReader::open(server.addr, "/events/cam", "");
    let url = format!("http://ffmpeg:s3cret@{}/publish/cam", server.addr);
    let _ffmpeg = ffmpeg_publish(&url, "320x240", Some(2.0), &[]);
    let events = read_until(&mut viewer, |ev| data_events(ev).count() >= 1);
    assert!(events.iter().any(|e| e.event == "init"));
}

#[test]
fn a_keyless_publish_through_a_proxy_is_refused_even_from_loopback() {
    let server = TestServer::start(&[]);
    for header in [
        "X-Forwarded-For: 203.0.113.9",
        "Forwarded: for=203.0.113.9",
        "Via: 1.1 proxy",
    ] {
        let mut s = start_publish(
            server.addr,
            "/publish/cam",
            Framing::Length,
            BFRAMES.len(),
            &format!("{header}\r\n"),
        );
        send_body(&mut s, BFRAMES, Framing::Length, &mut Rng(3), 1 << 16);
        let r = response(&mut s);
        assert!(
            r.starts_with("HTTP/1.1 403") && r.contains("--publish-key"),
            "{header}: {r}"
        );
    }
}

#[test]
fn one_publisher_per_name_and_files_cannot_be_published_over() {
    let server = TestServer::start(&["film=tests/bframes.mp4"]);
    let mut first = start_publish(server.addr, "/publish/cam", Framing::Chunked, 0, "");
    first.write_all(b"10\r\n").unwrap();
    assert!(server
        .wait_log("publisher for cam connected", Duration::from_secs(5))
        .is_some());
    let second = push(
        server.addr,
        "/publish/cam",
        BFRAMES,
        Framing::Length,
        1,
        1 << 16,
    );
    assert!(
        second.starts_with("HTTP/1.1 409") && second.contains("already has a publisher"),
        "{second}"
    );
    let film = push(
        server.addr,
        "/publish/film",
        BFRAMES,
        Framing::Length,
        1,
        1 << 16,
    );
    assert!(
        film.starts_with("HTTP/1.1 409") && film.contains("file stream"),
        "{film}"
    );
    drop(first);
    // Once the first is gone the name is free again.
    assert!(util::wait_until(Duration::from_secs(5), || {
        push(
            server.addr,
            "/publish/cam",
            BFRAMES,
            Framing::Length,
            2,
            1 << 16,
        )
        .starts_with("HTTP/1.1 200")
    }));
}

#[test]
fn standard_input_is_a_live_stream_until_the_pipe_ends() {
    let mut server = TestServer::start_with(&["cam=-"], |c| {
        c.stdin(Stdio::piped());
    });
    let mut viewer = SseReader::open(server.addr, "/events", "");
    let mut stdin = server.child.stdin.take().expect("stdin");
    stdin.write_all(BFRAMES).unwrap();
    let events = read_until(&mut viewer, |ev| data_events(ev).count() == 2);
    assert!(events.iter().any(|e| e.event == "init"));
    drop(stdin);
    let end = read_until(&mut viewer, |ev| {
        ev.last().is_some_and(|e| e.event == "offline")
    });
    assert!(
        end.last().unwrap().data.contains("standard input ended"),
        "{end:?}"
    );
    // The server goes on serving.
    let health = server.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(health.starts_with(b"HTTP/1.1 200"));
}

#[test]
fn a_fast_publisher_is_held_to_real_time_and_blocked_by_tcp() {
    if !have_ffmpeg() {
        return;
    }
    // 8 s of noise encoded losslessly: about 3 MB a second, far more than socket buffers hold.
    let path = std::env::temp_dir().join(format!("ssecast-fast-{}.mp4", std::process::id()));
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("nullsrc=s=320x240:r=30,geq=random(1)*255:128:128")
        .args([
            "-t",
            "8",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-g",
            "30",
        ])
        .args([
            "-f",
            "mp4",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    let body = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(body.len() > 16 << 20, "only {} bytes", body.len());
    let fragments = Movie::parse(&body).unwrap().fragments.len();
    let server = TestServer::start(&["--backlog", "1s", "--client-queue", "64M"]);
    let mut viewer = SseReader::open(server.addr, "/events/fast", "");
    let rss_before = server.rss_kib();
    let started = Instant::now();
    let addr = server.addr;
    let pusher = std::thread::spawn(move || {
        let r = push(addr, "/publish/fast", &body, Framing::Length, 3, 1 << 16);
        (r, started.elapsed())
    });
    let mut live_at = Vec::new();
    let mut rss_max = 0;
    let events = read_until(&mut viewer, |ev| {
        if ev.last().is_some_and(|e| e.event == "data") {
            live_at.push(started.elapsed());
            rss_max = rss_max.max(server.rss_kib());
        }
        ev.last().is_some_and(|e| e.event == "offline") && ev.len() > 1
    });
    let (response, pushed_in) = pusher.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let n = data_events(&events).count();
    assert_eq!(n, fragments, "every fragment of the file");
    // The rule: after a fragment that starts more than 2 s ahead of real time, nothing more is
    // read until it is only 2 s ahead. Fragment k starts at k s of media, so fragment k + 1 is
    // read, and goes live, at k - 2 s at the earliest.
    for (k, at) in live_at.iter().enumerate() {
        let earliest = Duration::from_secs(k as u64).saturating_sub(Duration::from_millis(3200));
        assert!(*at >= earliest, "fragment {k} went live after {at:?}");
    }
    assert!(
        pushed_in > Duration::from_secs(4),
        "the publisher was not held back: {pushed_in:?}"
    );
    assert!(
        rss_max < rss_before + 40 * 1024,
        "RSS grew from {rss_before} to {rss_max} KiB for {} fragments",
        n
    );
}
