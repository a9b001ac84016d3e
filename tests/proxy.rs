//! ssecast behind real reverse proxies, configured as the README's "Behind a proxy, with TLS"
//! says: Debian's nginx and Caddy, started here on loopback ports with their files in a temporary
//! directory, in front of the real server. Viewers through either get every event as promptly as
//! a direct viewer (nothing is buffered); a publisher's chunked body streams through nginx
//! fragment by fragment, with the publish key passed on; and seven viewer pages play at once in
//! headless Chromium through Caddy over HTTPS and HTTP/2 (on HTTP/1.1 a browser's six
//! connections per host would stall the seventh EventSource). The configurations are the
//! README's, and a test checks that the README still shows them.
//!
//! Proxied viewers are `curl` (it speaks chunked HTTP/1.1, TLS and HTTP/2). Each test passes with
//! a `skipped:` line when nginx, Caddy, curl or Chromium is missing (Debian: `apt-get install
//! nginx-light caddy curl chromium chromium-driver`).

mod util;

use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};
use util::live::{b64, init_segment, response, send_body, start_publish, Framing, Rng};
use util::webdriver::{have_browser, save_screenshot, Browser};
use util::{read_event, wait_until, Event, SseReader, TestServer};

/// The address the README's configurations send requests to; the tests put the real one in.
const README_UPSTREAM: &str = "127.0.0.1:8080";

/// The nginx `upstream` and the body of the `server` block, exactly as in the README (which adds
/// `listen`, `server_name` and the TLS lines around it).
const NGINX_SITE: &str = r#"    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;

    location / {
        proxy_pass http://127.0.0.1:8080;
    }
    location /events {
        proxy_pass http://127.0.0.1:8080;
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout 1h;
    }
    location /publish/ {
        proxy_pass http://127.0.0.1:8080;
        proxy_request_buffering off;
        client_max_body_size 0;
        proxy_read_timeout 1h;
    }
"#;

/// The `reverse_proxy` of the Caddy site, exactly as in the README (which puts it in a site block
/// named by a real domain, so Caddy gets a certificate from Let's Encrypt).
const CADDY_SITE: &str = "\treverse_proxy 127.0.0.1:8080 {
\t\tflush_interval -1
\t}
";

/// The publish key the publishing test runs the server with.
const KEY: &str = "proxy-test-key";
/// nginx keeps a client's connection open after the response unless asked not to.
const CLOSE: &str = "Connection: close\r\n";
/// A 2 s video with two 1 s fragments and nothing after them but an `mfra`.
const BFRAMES: &[u8] = include_bytes!("bframes.mp4");

/// The program `name` on the PATH or in the sbin directories (where Debian puts nginx).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `find_tool`, printing the skip line when the tool is missing.
fn need_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        println!("skipped: {name} not found (Debian: apt-get install {package})");
    }
    found
}

/// A fresh directory under cargo's per-test temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (a proxy taking it first costs that test a retry; see `Proxy::start`).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// A reverse proxy process in front of the test server, killed on drop (before its directory
/// goes).
struct Proxy {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Writes the config `write_config(dir, port)` returns, spawns `command(dir)` and waits
    /// (bounded) until the port accepts connections and `ready(dir, port)` says so; tries three
    /// ports, in case another process took the one probed.
    fn start(
        what: &str,
        write_config: impl Fn(&Path, u16),
        command: impl Fn(&Path) -> Command,
        ready: impl Fn(&Path, u16) -> bool,
    ) -> Proxy {
        for _ in 0..3 {
            let dir = TempDir::new(what);
            let port = free_port();
            write_config(&dir.0, port);
            let child = command(&dir.0)
                .current_dir(&dir.0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.0.join("stderr.log")).expect("create stderr.log"),
                ))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
            let mut proxy = Proxy { child, port, dir };
            let mut exited = false;
            let up = wait_until(Duration::from_secs(15), || {
                exited = matches!(proxy.child.try_wait(), Ok(Some(_)));
                exited
                    || (TcpStream::connect(("127.0.0.1", port)).is_ok()
                        && ready(&proxy.dir.0, port))
            });
            if up && !exited {
                return proxy;
            }
            let log = std::fs::read_to_string(proxy.dir.0.join("stderr.log")).unwrap_or_default();
            eprintln!("{what} did not start on port {port} (exited: {exited}):\n{log}");
        }
        panic!("{what} did not start (3 tries)");
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        let host = if scheme == "https" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{host}:{}{path}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// nginx as the README configures it, proxying to `upstream`: one process (`master_process
/// off`), in the foreground, with its pid, logs and temporary files in its own directory.
fn start_nginx(nginx: &Path, upstream: SocketAddr) -> Proxy {
    let site = NGINX_SITE.replace(README_UPSTREAM, &upstream.to_string());
    Proxy::start(
        "nginx",
        |dir, port| {
            let d = dir.display();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log stderr notice;\nevents {{\n    worker_connections 256;\n}}\n\
                 http {{\n    access_log {d}/access.log;\n\
                 client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\n\
                 server {{\n    listen 127.0.0.1:{port};\n    server_name localhost;\n\n\
                 {site}}}\n}}\n"
            );
            std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        },
        |dir| {
            let mut cmd = Command::new(nginx);
            cmd.arg("-p")
                .arg(dir)
                .args(["-c", "nginx.conf", "-e", "stderr"]);
            cmd
        },
        |_, _| true,
    )
}

/// Caddy as the README configures it, proxying to `upstream`, on `https://localhost:PORT` with a
/// certificate from its own internal CA (`tls internal`, not installed into any trust store),
/// bound to loopback, with no admin endpoint and no HTTP redirect listener, its storage and
/// `$HOME`/XDG directories inside its own directory, and a JSON access log there.
fn start_caddy(caddy: &Path, curl: &Path, upstream: SocketAddr) -> Proxy {
    let site = CADDY_SITE.replace(README_UPSTREAM, &upstream.to_string());
    Proxy::start(
        "caddy",
        |dir, port| {
            let d = dir.display();
            let conf = format!(
                "{{\n\tadmin off\n\tauto_https disable_redirects\n\tskip_install_trust\n\
                 \tstorage file_system {d}/data\n}}\n\n\
                 https://localhost:{port} {{\n\tbind 127.0.0.1\n\ttls internal\n\
                 \tlog {{\n\t\toutput file {d}/access.log\n\t}}\n{site}}}\n"
            );
            std::fs::write(dir.join("Caddyfile"), conf).expect("write the Caddyfile");
        },
        |dir| {
            let mut cmd = Command::new(caddy);
            cmd.args(["run", "--config", "Caddyfile", "--adapter", "caddyfile"])
                .env("HOME", dir)
                .env("XDG_DATA_HOME", dir.join("xdg-data"))
                .env("XDG_CONFIG_HOME", dir.join("xdg-config"));
            cmd
        },
        // Ready once its certificate chain is made and it answers through to ssecast.
        |dir, port| {
            Command::new(curl)
                .args(["-sSf", "-o", "/dev/null", "--max-time", "2", "--cacert"])
                .arg(caddy_root(dir))
                .arg(format!("https://localhost:{port}/healthz"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        },
    )
}

/// The root certificate of Caddy's internal CA.
fn caddy_root(dir: &Path) -> PathBuf {
    dir.join("data/pki/authorities/local/root.crt")
}

/// An event and when it arrived.
struct Arrival {
    at: Instant,
    wall: SystemTime,
    event: Event,
}

/// Reads events from `next` on a thread and hands them over with their arrival times, until the
/// stream ends or the receiver is dropped.
fn spawn_reader(
    mut next: impl FnMut() -> Option<Event> + Send + 'static,
) -> mpsc::Receiver<Arrival> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Some(event) = next() {
            let arrival = Arrival {
                at: Instant::now(),
                wall: SystemTime::now(),
                event,
            };
            if tx.send(arrival).is_err() {
                break;
            }
        }
    });
    rx
}

/// A viewer through a proxy: `curl -N URL` (no output buffering; chunked bodies, TLS and HTTP/2
/// decoded by curl), its events parsed as they arrive. Killed on drop.
struct CurlViewer {
    child: Child,
    events: mpsc::Receiver<Arrival>,
    started: Instant,
}

impl CurlViewer {
    fn open(curl: &Path, url: &str, extra: &[&str]) -> CurlViewer {
        let started = Instant::now();
        let mut child = Command::new(curl)
            .args(["-sSN", "--max-time", "40"])
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn curl");
        let mut out = BufReader::new(child.stdout.take().expect("curl's stdout"));
        let mut retry = None;
        let events = spawn_reader(move || read_event(&mut out, &mut retry));
        CurlViewer {
            child,
            events,
            started,
        }
    }
}

impl Drop for CurlViewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A direct viewer of `server`'s `/events`, read on a thread like a [`CurlViewer`].
fn direct_viewer(server: &TestServer) -> mpsc::Receiver<Arrival> {
    let mut reader = SseReader::open(server.addr, "/events", "");
    spawn_reader(move || reader.next_event())
}

/// Takes events from `rx` until `count` `data` events came (the ones before them included), or
/// `timeout` passed.
fn take_data_events(rx: &mpsc::Receiver<Arrival>, count: usize, timeout: Duration) -> Vec<Arrival> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got
        .iter()
        .filter(|a: &&Arrival| a.event.event == "data")
        .count()
        < count
    {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(a) => got.push(a),
            Err(_) => break,
        }
    }
    got
}

/// The server time (ms since the epoch) in a `data` event's id, `<sequence>.<ms>`.
fn id_millis(ev: &Event) -> u128 {
    ev.id
        .as_deref()
        .and_then(|id| id.split_once('.'))
        .and_then(|(_, ms)| ms.parse().ok())
        .unwrap_or_else(|| panic!("no server time in the id of {:?}", ev.id))
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Watches the sample through `proxied` and directly at once: the proxied viewer gets `init`
/// within a second of connecting, then the same `data` events as the direct one, each within
/// 250 ms of the direct viewer and of the moment it went live on the server, so ~1 s apart as the
/// sample's 1 s fragments go live.
fn assert_events_pass_at_once(what: &str, server: &TestServer, proxied: &CurlViewer) {
    let direct = direct_viewer(server);
    let through = take_data_events(&proxied.events, 5, Duration::from_secs(15));
    let direct = take_data_events(&direct, 6, Duration::from_secs(15));
    let summary: Vec<String> = through
        .iter()
        .map(|a| {
            format!(
                "{:>6} ms {} {}",
                a.at.duration_since(proxied.started).as_millis(),
                a.event.event,
                a.event.id.as_deref().unwrap_or("")
            )
        })
        .collect();
    eprintln!("through {what}:\n  {}", summary.join("\n  "));

    let init = through
        .first()
        .unwrap_or_else(|| panic!("no event through {what}"));
    assert_eq!(init.event.event, "init", "the first event through {what}");
    let init_after = init.at.duration_since(proxied.started);
    assert!(
        init_after < Duration::from_secs(1),
        "init came {init_after:?} after connecting through {what}"
    );
    let data: Vec<&Arrival> = through.iter().filter(|a| a.event.event == "data").collect();
    assert_eq!(data.len(), 5, "data events through {what}: {summary:#?}");
    // The first is the newest keyframe fragment from the backlog, sent at once; the rest went
    // live while the viewer watched.
    // They arrive as far apart as they went live (about 1 s; more when a loaded machine runs
    // the server late): a proxy that buffers bunches them up or holds them back.
    for pair in data[1..].windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).as_secs_f64();
        let live_gap =
            (id_millis(&pair[1].event) as f64 - id_millis(&pair[0].event) as f64) / 1000.0;
        assert!(
            (gap - live_gap).abs() < 0.25 && live_gap > 0.75,
            "data events through {what} came {gap:.3} s apart, {live_gap:.3} s apart on the \
             server (the fragments are 1 s): {summary:#?}"
        );
    }
    for a in &data[1..] {
        let lag = millis(a.wall).saturating_sub(id_millis(&a.event));
        assert!(
            lag < 250,
            "{:?} arrived through {what} {lag} ms after it went live",
            a.event.id
        );
        let same = direct
            .iter()
            .find(|d| d.event.id == a.event.id)
            .unwrap_or_else(|| panic!("the direct viewer did not get {:?}", a.event.id));
        assert_eq!(
            same.event.data, a.event.data,
            "{:?} changed on the way",
            a.event.id
        );
        let behind = a.at.saturating_duration_since(same.at);
        assert!(
            behind < Duration::from_millis(250),
            "{:?} arrived through {what} {behind:?} after the direct viewer got it",
            a.event.id
        );
    }
}

#[test]
fn viewers_through_nginx_get_every_event_at_once() {
    let (Some(nginx), Some(curl)) = (need_tool("nginx", "nginx-light"), need_tool("curl", "curl"))
    else {
        return;
    };
    let started = Instant::now();
    let server = TestServer::start(&[]);
    let proxy = start_nginx(&nginx, server.addr);
    let viewer = CurlViewer::open(&curl, &proxy.url("http", "/events"), &[]);
    assert_events_pass_at_once("nginx", &server, &viewer);
    eprintln!(
        "nginx viewer test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn viewers_through_caddy_over_https_get_every_event_at_once() {
    let (Some(caddy), Some(curl)) = (need_tool("caddy", "caddy"), need_tool("curl", "curl")) else {
        return;
    };
    let started = Instant::now();
    let server = TestServer::start(&[]);
    let proxy = start_caddy(&caddy, &curl, server.addr);
    let root = caddy_root(&proxy.dir.0);
    let root = root.to_str().expect("a UTF-8 path");
    let viewer = CurlViewer::open(
        &curl,
        &proxy.url("https", "/events"),
        &["--http2", "--cacert", root],
    );
    assert_events_pass_at_once("Caddy", &server, &viewer);
    eprintln!(
        "Caddy viewer test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Offsets of the top-level boxes of `mp4` ending a fragment (an mdat), so a body can be cut
/// after each fragment.
fn fragment_ends(mp4: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 8 <= mp4.len() {
        let size = u32::from_be_bytes(mp4[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8, "a box of size {size} at {at}");
        if &mp4[at + 4..at + 8] == b"mdat" {
            ends.push(at + size);
        }
        at += size;
    }
    ends
}

/// A publisher's chunked body goes through nginx as it is sent (`proxy_request_buffering off`):
/// the first fragment reaches a viewer (also through nginx) while the body is still open, the
/// second when it is sent, byte for byte, and the publisher gets ssecast's `200`. The server runs
/// with a publish key, as it must behind a proxy on the same machine (every request comes from
/// 127.0.0.1 there), and nginx passes the key on; without it the publisher gets 401.
#[test]
fn a_chunked_publish_streams_through_nginx_to_viewers() {
    let (Some(nginx), Some(curl)) = (need_tool("nginx", "nginx-light"), need_tool("curl", "curl"))
    else {
        return;
    };
    let started = Instant::now();
    let server = TestServer::start(&["--publish-key", KEY]);
    let proxy = start_nginx(&nginx, server.addr);
    let viewer = CurlViewer::open(&curl, &proxy.url("http", "/events/film"), &[]);
    let first = viewer
        .events
        .recv_timeout(Duration::from_secs(5))
        .expect("an event for the stream not live yet");
    assert_eq!(first.event.event, "offline", "{:?}", first.event);

    let mut anonymous = start_publish(proxy.addr(), "/publish/film", Framing::Chunked, 0, CLOSE);
    send_body(
        &mut anonymous,
        &BFRAMES[..100],
        Framing::Chunked,
        &mut Rng(1),
        100,
    );
    let answer = response(&mut anonymous);
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "without the key: {answer}"
    );

    let ends = fragment_ends(BFRAMES);
    assert_eq!(ends.len(), 2, "tests/bframes.mp4 has two fragments");
    let auth = format!("Authorization: Bearer {KEY}\r\n{CLOSE}");
    let mut publisher = start_publish(proxy.addr(), "/publish/film", Framing::Chunked, 0, &auth);
    let chunk = |s: &mut TcpStream, piece: &[u8]| {
        let mut c = format!("{:x}\r\n", piece.len()).into_bytes();
        c.extend_from_slice(piece);
        c.extend_from_slice(b"\r\n");
        s.write_all(&c).expect("send a chunk");
    };
    chunk(&mut publisher, &BFRAMES[..ends[0]]);

    let next = |what: &str| {
        viewer
            .events
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no {what} through nginx within 5 s"))
            .event
    };
    let init = next("init while the body is open");
    assert_eq!(init.event, "init", "{init:?}");
    assert!(
        BFRAMES.starts_with(&init_segment(&init)),
        "the init segment is not the file's ftyp+moov"
    );
    let moov_end = init_segment(&init).len();
    let one = next("first fragment while the body is open");
    assert_eq!(one.event, "data", "{one:?}");
    assert_eq!(
        b64(&one.data),
        &BFRAMES[moov_end..ends[0]],
        "the first fragment"
    );

    chunk(&mut publisher, &BFRAMES[ends[0]..]);
    publisher.write_all(b"0\r\n\r\n").expect("end the body");
    let two = next("second fragment");
    assert_eq!(two.event, "data", "{two:?}");
    assert_eq!(
        b64(&two.data),
        &BFRAMES[ends[0]..ends[1]],
        "the second fragment"
    );
    let answer = response(&mut publisher);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the publisher got: {answer}"
    );
    assert!(
        answer.contains("2 fragments"),
        "the publisher got: {answer}"
    );
    let offline = next("offline after the body ended");
    assert_eq!(offline.event, "offline", "{offline:?}");
    eprintln!(
        "nginx publish test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Run in the top page: adds six more viewer pages of the same stream as iframes over it, so
/// the browser holds seven EventSources to one origin.
const OPEN_SIX_MORE: &str = r#"
for (let i = 0; i < 6; i++) {
  const f = document.createElement('iframe');
  f.src = '/';
  f.style = `position:fixed;top:${10 + 190 * Math.floor(i / 3)}px;left:${10 + 330 * (i % 3)}px;` +
    'width:320px;height:180px;border:0;z-index:10';
  document.body.appendChild(f);
}
"#;

/// For the top page and each iframe: the protocol it was loaded over, the player's state and
/// errors, how far its video played and how many frames it showed.
const PAGES_PROBE: &str = r#"
const pages = [window, ...[...document.querySelectorAll('iframe')].map((f) => f.contentWindow)];
return pages.map((w) => {
  try {
    const nav = w.performance.getEntriesByType('navigation')[0];
    const v = w.document.getElementById('video');
    const s = w.ssecast || {};
    return {
      proto: nav ? nav.nextHopProtocol : null,
      state: s.state || null, errors: s.errors || null,
      error: v && v.error ? `${v.error.code} ${v.error.message}` : null,
      time: v ? v.currentTime : 0,
      frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0,
    };
  } catch (e) {
    return { exception: String(e) };
  }
});
"#;

/// Seven viewer pages play at once in one browser through Caddy over HTTPS: on HTTP/2 they share
/// one connection, where HTTP/1.1's six connections per host would leave the seventh
/// EventSource waiting. Each page was loaded over h2, and Caddy's access log has seven
/// `/events` requests, all HTTP/2.
#[test]
fn seven_viewer_pages_play_at_once_through_caddy_over_http2() {
    let (Some(caddy), Some(curl)) = (need_tool("caddy", "caddy"), need_tool("curl", "curl")) else {
        return;
    };
    if !have_browser() {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start(&[]);
    let proxy = start_caddy(&caddy, &curl, server.addr);
    // Caddy's internal CA is in no trust store Chromium reads; the connection is still TLS with
    // ALPN, so HTTP/2 is negotiated as with a real certificate.
    let browser = Browser::start_with(&["--ignore-certificate-errors"]);
    browser.open(&proxy.url("https", "/"));
    browser.execute(OPEN_SIX_MORE);

    let probe = json!({ "script": PAGES_PROBE, "args": [] });
    let mut pages = Value::Null;
    let all_play = |pages: &Value| {
        pages.as_array().is_some_and(|p| {
            p.len() == 7
                && p.iter().all(|page| {
                    page["time"].as_f64().is_some_and(|t| t >= 2.0)
                        && page["frames"].as_u64().is_some_and(|n| n >= 30)
                })
        })
    };
    let played = wait_until(Duration::from_secs(30), || {
        pages = browser.command("POST", "/execute/sync", Some(&probe));
        all_play(&pages)
    });
    save_screenshot(&browser, "proxy-caddy-seven.png");
    eprintln!("pages: {pages:#}");
    assert!(
        played,
        "not all seven pages played 2 s through Caddy: {pages:#}"
    );
    for page in pages.as_array().expect("an array of pages") {
        assert_eq!(
            page["proto"],
            json!("h2"),
            "a page not loaded over HTTP/2: {pages:#}"
        );
        assert_eq!(page["state"], json!("connected"), "{pages:#}");
        assert_eq!(page["error"], Value::Null, "{pages:#}");
        assert_eq!(page["errors"], json!([]), "{pages:#}");
    }

    // Caddy logs a request when it ends: closing the browser ends the seven streams.
    drop(browser);
    let log = proxy.dir.0.join("access.log");
    let mut events: Vec<Value> = Vec::new();
    let logged = wait_until(Duration::from_secs(10), || {
        events = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["request"]["uri"] == json!("/events"))
            .collect();
        events.len() >= 7
    });
    assert!(
        logged,
        "Caddy logged {} /events requests, not 7",
        events.len()
    );
    for e in &events {
        assert_eq!(e["request"]["proto"], json!("HTTP/2.0"), "{e}");
        assert_eq!(e["status"], json!(200), "{e}");
    }
    eprintln!(
        "Caddy browser test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The README shows the configurations these tests run and the systemd unit in `examples/`, not
/// copies that drifted.
#[test]
fn readme_shows_the_tested_proxy_configs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    assert!(
        readme.contains(NGINX_SITE),
        "README lacks the tested nginx site:\n{NGINX_SITE}"
    );
    assert!(
        readme.contains(CADDY_SITE),
        "README lacks the tested Caddy site:\n{CADDY_SITE}"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ssecast.service"
    ))
    .expect("read examples/ssecast.service");
    // The README shows the unit without its comments; it keeps the commented-out options.
    let shown = unit
        .lines()
        .filter(|l| {
            !l.is_empty()
                && (!l.starts_with('#')
                    || l.starts_with("#Ambient")
                    || l.starts_with("#Capability"))
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("\n[", "\n\n[");
    assert!(
        readme.contains(&format!("```ini\n{shown}```")),
        "README lacks examples/ssecast.service as it is (without comments):\n{shown}"
    );
}
