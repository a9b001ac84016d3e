//! Headless Chromium driven through chromedriver, for the tests that watch the viewer page:
//! WebDriver is plain HTTP + JSON, spoken here over a `TcpStream`. A [`Browser`] owns the
//! chromedriver process, its session and a fresh profile, and cleans all three up on drop. It
//! knows nothing about ssecast's page; the tests' probes do.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "Debian: apt-get install chromium chromium-driver";

/// A chromedriver process and its browser session. Dropping it ends the session (which closes
/// the browser), kills chromedriver's process group as a backstop, and removes the browser
/// profile, also when the test panics.
pub struct Browser {
    driver: Child,
    port: u16,
    session: Option<String>,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session with a
    /// fresh profile.
    pub fn start() -> Browser {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more Chromium flags (`--ignore-certificate-errors`).
    pub fn start_with(extra_args: &[&str]) -> Browser {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("browser-profile-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create the browser profile directory");
        let (driver, port) = spawn_driver();
        let mut browser = Browser {
            driver,
            port,
            session: None,
            profile,
        };
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--autoplay-policy=no-user-gesture-required",
            "--mute-audio",
            "--window-size=1024,768",
        ]
        .iter()
        .chain(extra_args)
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", browser.profile.display()));
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": args,
                    },
                },
            },
        });
        let reply = webdriver(
            port,
            "POST",
            "/session",
            Some(&caps),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("creating a Chromium session failed: {e}"));
        let id = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {reply}"));
        browser.session = Some(id.to_string());
        browser
    }

    /// A command on the session; panics with WebDriver's message on failure.
    pub fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let session = self.session.as_deref().expect("no session");
        let path = format!("/session/{session}{path}");
        webdriver(self.port, method, &path, body, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn open(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn execute(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.command("POST", "/execute/sync", Some(&body))
    }

    pub fn screenshot_png(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.command("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("the screenshot is a string"))
            .expect("the screenshot is base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let path = format!("/session/{session}");
            let _ = webdriver(self.port, "DELETE", &path, None, Duration::from_secs(10));
        }
        // chromedriver and the browser it started are in the process group made at spawn.
        if let Ok(pgid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) only sends a signal; no memory is involved. A negative pid names the
            // process group created for this chromedriver, so only processes this test started
            // get it.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Spawns chromedriver in its own process group on a free loopback port and waits (bounded)
/// until it is ready. A port taken by someone else between probing and binding costs a retry.
fn spawn_driver() -> (Child, u16) {
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let mut exited = false;
        let ready = super::wait_until(Duration::from_secs(20), || {
            exited = matches!(driver.try_wait(), Ok(Some(_)));
            exited
                || webdriver(port, "GET", "/status", None, Duration::from_secs(2))
                    .is_ok_and(|v| v["ready"] == json!(true))
        });
        if ready && !exited {
            return (driver, port);
        }
        let _ = driver.kill();
        let _ = driver.wait();
    }
    panic!("chromedriver did not become ready (3 tries)");
}

/// One WebDriver request to the chromedriver on `port`: returns the reply's `value`, or the
/// WebDriver error as text.
pub fn webdriver(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let what = format!("{method} {path}");
    let io = |e: std::io::Error| format!("{what}: {e}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n{body}",
        len = body.len(),
    )
    .map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: bad status line {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(io)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut raw = Vec::new();
    match length {
        Some(n) => {
            raw.resize(n, 0);
            reader.read_exact(&mut raw).map_err(io)?;
        }
        None => {
            reader.read_to_end(&mut raw).map_err(io)?;
        }
    }
    let reply: Value =
        serde_json::from_slice(&raw).map_err(|e| format!("{what}: reply is not JSON ({e})"))?;
    let value = reply.get("value").cloned().unwrap_or(Value::Null);
    if status == 200 {
        Ok(value)
    } else {
        Err(format!("{what}: HTTP {status}: {value}"))
    }
}

/// True when Chromium and chromedriver are installed; otherwise says why the test is skipped.
pub fn have_browser() -> bool {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            println!("skipped: {tool} is not installed ({INSTALL})");
            return false;
        }
    }
    true
}

/// Saves a screenshot of the page as `target/NAME` and returns its path.
pub fn save_screenshot(browser: &Browser, name: &str) -> PathBuf {
    let shot = browser.screenshot_png();
    assert!(shot.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join(name);
    std::fs::write(&path, &shot).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}
