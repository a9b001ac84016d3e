//! Hostile and unlucky clients over real loopback sockets: connection limits, running out of file
//! descriptors, slowloris and idle connections, half-closes and resets mid-frame, bad requests,
//! bad video files, and a fast clean shutdown with thousands of viewers.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::{wait_until, SseReader, TestServer};

const SAMPLE: &[u8] = include_bytes!("../web/sample.mp4");

fn seq(r: &mut SseReader) -> u64 {
    loop {
        let ev = r.next_event().expect("stream still running");
        if ev.event == "data" {
            return ev.id.unwrap().split('.').next().unwrap().parse().unwrap();
        }
    }
}

fn status_of(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// True once a request for the page gets 200, polling for at most `secs`.
fn serves_the_page_within(server: &TestServer, secs: u64) -> bool {
    wait_until(Duration::from_secs(secs), || {
        status_of(&server.raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")).contains("200")
    })
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn raise_own_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the struct outlives both calls.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(want as libc::rlim_t);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn over_the_limit_gets_503_and_viewers_are_unaffected() {
    let server = TestServer::start(&["--max-clients", "3", "--speed", "10"]);
    let mut viewers: Vec<SseReader> = (0..3)
        .map(|_| SseReader::open(server.addr, "/events", ""))
        .collect();
    let before = seq(&mut viewers[0]);
    let out = server.raw(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"));
    // The viewers go on without a gap.
    for v in viewers.iter_mut() {
        let mut last = seq(v);
        for _ in 0..3 {
            let s = seq(v);
            assert_eq!(s, last + 1);
            last = s;
        }
        assert!(last > before);
    }
    // Once one leaves, a newcomer gets in.
    drop(viewers.pop());
    assert!(
        serves_the_page_within(&server, 10),
        "no room after a viewer left"
    );
}

#[test]
fn running_out_of_descriptors_pauses_accepting_without_spinning() {
    let server = TestServer::start_with(&["--max-clients", "1000", "--speed", "10"], |cmd| {
        util::limit_open_files(cmd, 40);
    });
    let mut viewer = SseReader::open(server.addr, "/events", "");
    seq(&mut viewer);
    // Far more connections than the server has descriptors for.
    let flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    assert!(
        server
            .wait_log("out of file descriptors", Duration::from_secs(10))
            .is_some(),
        "server never hit EMFILE"
    );
    // While the descriptors are exhausted the server must not busy-loop.
    let pid = server.child.id();
    let cpu0 = cpu_secs(pid);
    let mut last = seq(&mut viewer);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        let s = seq(&mut viewer);
        assert_eq!(s, last + 1, "the viewer keeps getting every fragment");
        last = s;
    }
    let used = cpu_secs(pid) - cpu0;
    assert!(
        used < 0.5,
        "server used {used:.2}s of CPU in 1s while out of descriptors"
    );
    drop(flood);
    assert!(
        serves_the_page_within(&server, 15),
        "server did not recover once descriptors were free"
    );
}

#[test]
fn slowloris_is_closed_after_the_head_timeout() {
    let server = TestServer::start(&["--head-timeout", "1s"]);
    let mut s = server.connect();
    s.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for b in request {
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {
                closed_after = Some(start.elapsed());
                break;
            }
        }
        // The attacker's pace: one byte every 100 ms.
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = closed_after.expect("server kept a slowloris connection open");
    assert!(
        t >= Duration::from_millis(900) && t < Duration::from_secs(3),
        "closed after {t:?}"
    );
}

#[test]
fn idle_connection_without_a_request_is_closed() {
    let server = TestServer::start(&["--head-timeout", "1s"]);
    let mut s = server.connect();
    let start = Instant::now();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("closed by the server");
    assert!(status_of(&out).contains("408"));
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn half_closes_and_resets_mid_frame_cost_nothing() {
    let server = TestServer::start(&["--speed", "20"]);
    let mut watcher = SseReader::open(server.addr, "/events", "");
    seq(&mut watcher);
    let baseline = server.open_fds();
    for i in 0..60 {
        let mut s = server.connect();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        if i % 2 == 0 {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Read into the middle of a frame, then vanish with a reset.
        let mut buf = vec![0u8; 3000 + i * 37];
        let _ = s.read_exact(&mut buf);
        let sock = socket2::SockRef::from(&s);
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    assert!(
        wait_until(Duration::from_secs(10), || server.open_fds() <= baseline),
        "descriptors leaked: {} open, {baseline} before",
        server.open_fds()
    );
    let mut last = seq(&mut watcher);
    for _ in 0..5 {
        let s = seq(&mut watcher);
        assert_eq!(s, last + 1);
        last = s;
    }
}

#[test]
fn a_viewer_that_half_closes_is_let_go_whenever_its_fin_arrives() {
    let server = TestServer::start(&["--speed", "10"]);
    let baseline = server.open_fds();
    for fin_with_request in [true, false] {
        let mut s = server.connect();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        if !fin_with_request {
            // The FIN comes in its own event, after the stream has started.
            let mut head = [0u8; 12];
            s.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // At 10x speed an open stream delivers a fragment every 100 ms and never ends, so the
        // reads stop at EOF (closed) or at the deadline (still streaming).
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = vec![0u8; 64 * 1024];
        let closed = loop {
            if Instant::now() >= deadline {
                break false;
            }
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
                Err(e) => panic!("read: {e}"),
            }
        };
        assert!(
            closed,
            "fin_with_request={fin_with_request}: still streaming 3 s after the FIN"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || server.open_fds() <= baseline),
        "descriptors leaked: {} open, {baseline} before",
        server.open_fds()
    );
}

#[test]
fn pipelined_garbage_after_a_get_is_not_trusted() {
    let server = TestServer::start(&[]);
    let out = server.raw(
        b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /events HTTP/1.1\r\nHost: t\r\n\r\n\x00\x01garbage",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(!text.contains("event-stream"));
}

#[test]
fn bad_requests_get_the_right_status_and_a_close() {
    let server = TestServer::start(&[]);
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..40 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GET /\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), "400"),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nX: \xff\r\n\r\n".to_vec(),
            "200",
        ),
        (long_path.into_bytes(), "431"),
        (many.into_bytes(), "431"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET /events HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET http://t/style.css HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "200",
        ),
        (
            b"GET /web/../Cargo.toml HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "404",
        ),
        (
            b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "404",
        ),
        (
            b"GET /sample.mp4 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "404",
        ),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (b"GET / FTP/1.0\r\n\r\n".to_vec(), "400"),
    ];
    for (req, want) in cases {
        // `raw` reads to the end: it returning at all means the server closed the connection.
        let out = server.raw(&req);
        let line = status_of(&out);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {want}")),
            "{:?} -> {line:?}",
            String::from_utf8_lossy(&req[..req.len().min(60)])
        );
    }
}

fn run_with_video(bytes: &[u8], name: &str) -> (Option<i32>, String) {
    let path = std::env::temp_dir().join(format!("ssecast-bad-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ssecast"))
        .args(["--listen", "127.0.0.1:0"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssecast");
    std::fs::remove_file(&path).unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_video_files_are_refused_at_startup_with_the_problem_and_offset() {
    let plain = {
        // ftyp + a moov without mvex + mdat: an ordinary, non-fragmented layout whose tracks
        // have no samples.
        let movie = ssecast::mp4::Movie::parse(SAMPLE).unwrap();
        let init = &movie.init;
        let ftyp_len = u32::from_be_bytes(init[..4].try_into().unwrap()) as usize;
        let moov = ssecast::mp4::read_box(init, ftyp_len, init.len()).unwrap();
        let mut body = Vec::new();
        for c in ssecast::mp4::Boxes::children(init, &moov) {
            let c = c.unwrap();
            if &c.box_type != b"mvex" {
                body.extend_from_slice(&init[c.range()]);
            }
        }
        let mut f = init[..ftyp_len].to_vec();
        f.extend(((body.len() + 8) as u32).to_be_bytes());
        f.extend(b"moov");
        f.extend(body);
        f.extend(12u32.to_be_bytes());
        f.extend(b"mdat\0\0\0\0");
        f
    };
    let mut lying = SAMPLE[..2000].to_vec();
    lying[1235..1239].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut no_tracks = SAMPLE[..28].to_vec();
    no_tracks.extend(8u32.to_be_bytes());
    no_tracks.extend(b"moov");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "truncated",
            SAMPLE[..100_000].to_vec(),
            &["truncated at byte 49734"],
        ),
        (
            "text",
            b"this is not a video file at all".to_vec(),
            &["not an MP4"],
        ),
        ("empty", Vec::new(), &["is empty"]),
        (
            "plain",
            plain,
            &["describes tracks without any samples", "at byte 28"],
        ),
        ("lying", lying, &["truncated at byte 1235"]),
        (
            "notracks",
            no_tracks,
            &["byte 28", "no audio or video track"],
        ),
    ];
    for (name, bytes, wants) in cases {
        let (code, stderr) = run_with_video(&bytes, name);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        for want in wants {
            assert!(stderr.contains(want), "{name}: {stderr:?} lacks {want:?}");
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn sigterm_with_thousands_of_viewers_exits_within_a_second() {
    raise_own_fd_limit(8192);
    let server = TestServer::start(&["--max-clients", "5000", "--stats-every", "1s"]);
    let viewers: Vec<TcpStream> = (0..2000)
        .filter_map(|_| {
            let mut s = TcpStream::connect(server.addr).ok()?;
            s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
                .ok()?;
            Some(s)
        })
        .collect();
    assert!(
        viewers.len() >= 1900,
        "only {} viewers connected",
        viewers.len()
    );
    let want = format!("stats: {} viewers", viewers.len());
    assert!(
        server.wait_log(&want, Duration::from_secs(20)).is_some(),
        "server never counted {} viewers",
        viewers.len()
    );
    let mut server = server;
    let start = Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut status = None;
    while start.elapsed() < Duration::from_secs(5) {
        if let Some(s) = server.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    let status = status.expect("server still running 5 s after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    drop(viewers);
}

#[test]
fn near_the_connection_cap_the_server_neither_spins_nor_stalls() {
    // --max-clients 1 keeps at most 17 connections (room for 503s and page loads).
    let server = TestServer::start(&["--max-clients", "1", "--head-timeout", "60s"]);
    let mut idle: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    assert!(
        server
            .wait_log("not accepting more", Duration::from_secs(10))
            .is_some(),
        "the server never reached its cap"
    );
    // Between 90% and 100% of the cap, with connections still waiting in the kernel.
    drop(idle.pop());
    let pid = server.child.id();
    let cpu0 = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_secs(pid) - cpu0;
    assert!(
        used < 0.3,
        "server used {used:.2}s of CPU in 1s while at its cap"
    );
    // Below 90% it accepts again and new connections get answered (503: one viewer is the
    // limit, and the first idle connection holds it).
    idle.truncate(8);
    assert!(
        wait_until(Duration::from_secs(10), || {
            status_of(&server.raw(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")).starts_with("HTTP/1.1 ")
        }),
        "no answer after connections closed"
    );
}
