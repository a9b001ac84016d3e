//! axum + tokio peer for benches/compare.sh: plays a fragmented MP4 as a looping live channel and
//! pushes it over Server-Sent Events, the way one would write it idiomatically with tokio.
//!
//! Each fragment is encoded ONCE into a complete SSE frame (`Bytes`) when it goes live and sent
//! through a `tokio::sync::broadcast` channel; every client's response body is a stream over its
//! own receiver, so per client there is a refcount bump and a write, like ssecast. A receiver that
//! falls more than `--backlog` frames behind gets `Lagged`, skips them and is sent a `reset`
//! event. hyper sends the body with chunked transfer encoding. tfdt is not rewritten on loop.
//!
//!   axum-sse-peer [--port 8084] [--host 127.0.0.1] [--speed 1] [--threads 1] [--backlog 16] [VIDEO]
//!
//! `--threads 1` (the default) runs tokio's current-thread runtime: one core, like ssecast.

mod mp4;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::broadcast::{self, error::RecvError};

struct Opts {
    host: String,
    port: u16,
    speed: f64,
    threads: usize,
    backlog: usize,
    video: PathBuf,
}

const USAGE: &str = "usage: axum-sse-peer [--port 8084] [--host 127.0.0.1] [--speed 1] \
                     [--threads 1] [--backlog 16] [VIDEO]";

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        host: "127.0.0.1".into(),
        port: 8084,
        speed: 1.0,
        threads: 1,
        backlog: 16,
        video: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../web/sample.mp4"
        )),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--host" => opts.host = value("--host")?,
            "--port" => {
                opts.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--speed" => {
                opts.speed = value("--speed")?
                    .parse()
                    .map_err(|e| format!("--speed: {e}"))?
            }
            "--threads" => {
                opts.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--backlog" => {
                opts.backlog = value("--backlog")?
                    .parse()
                    .map_err(|e| format!("--backlog: {e}"))?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => opts.video = PathBuf::from(arg),
        }
    }
    if !(opts.speed > 0.0 && opts.speed.is_finite()) {
        return Err("--speed must be > 0".into());
    }
    if opts.threads == 0 || opts.backlog == 0 {
        return Err("--threads and --backlog must be >= 1".into());
    }
    Ok(opts)
}

/// What every client shares: the stream head, the newest frame (a new client starts with it) and
/// the broadcast sender.
struct Channel {
    head: Bytes,
    latest: Mutex<Option<Bytes>>,
    tx: broadcast::Sender<Bytes>,
}

async fn events(State(channel): State<Arc<Channel>>) -> Response {
    // Subscribe while holding `latest`, so the newest frame and the receiver's first frame neither
    // overlap nor leave a gap (the playout publishes under the same lock).
    let (first, rx) = {
        let latest = channel.latest.lock().unwrap();
        (latest.clone(), channel.tx.subscribe())
    };
    let start = futures_util::stream::iter(
        std::iter::once(channel.head.clone())
            .chain(first)
            .map(Ok::<_, Infallible>),
    );
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        let frame = match rx.recv().await {
            Ok(frame) => frame,
            Err(RecvError::Lagged(skipped)) => {
                Bytes::from(format!("event: reset\ndata: {{\"skipped\":{skipped}}}\n\n"))
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(frame), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(start.chain(live)))
        .expect("static response head")
}

/// Real-time playout: at each fragment's due time, encode it once into an SSE frame and broadcast.
async fn playout(channel: Arc<Channel>, fragments: Vec<mp4::Fragment>, speed: f64) {
    let start = tokio::time::Instant::now();
    let mut due = Duration::ZERO;
    for (seq, fragment) in (0_u64..).zip(fragments.iter().cycle()) {
        tokio::time::sleep_until(start + due).await;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut frame = String::with_capacity(fragment.data.len() * 4 / 3 + 64);
        let _ = write!(frame, "id: {seq}.{ms}\nevent: data\ndata: ");
        BASE64.encode_string(&fragment.data, &mut frame);
        frame.push_str("\n\n");
        let frame = Bytes::from(frame);
        {
            let mut latest = channel.latest.lock().unwrap();
            *latest = Some(frame.clone());
            // No receivers is not an error: the channel plays on with nobody watching.
            let _ = channel.tx.send(frame);
        }
        due += Duration::from_secs_f64(fragment.seconds / speed);
    }
}

async fn run(opts: Opts, video: mp4::Video) -> std::io::Result<()> {
    let init = format!("{{\"init\":\"{}\"}}", BASE64.encode(&video.init));
    let (tx, _) = broadcast::channel(opts.backlog);
    let channel = Arc::new(Channel {
        head: Bytes::from(format!("retry: 2000\n\nevent: init\ndata: {init}\n\n")),
        latest: Mutex::new(None),
        tx,
    });
    tokio::spawn(playout(channel.clone(), video.fragments, opts.speed));

    let addr: SocketAddr = format!("{}:{}", opts.host, opts.port)
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(4096)?;
    eprintln!(
        "axum peer: listening on http://{}/events ({} runtime thread(s))",
        listener.local_addr()?,
        opts.threads
    );
    let app = Router::new()
        .route("/events", get(events))
        .with_state(channel);
    let server = axum::serve(listener, app);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = server => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("axum peer: {e}");
            std::process::exit(2);
        }
    };
    let video = match std::fs::read(&opts.video)
        .map_err(|e| format!("{}: {e}", opts.video.display()))
        .and_then(|d| mp4::split(&d))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("axum peer: {e}");
            std::process::exit(1);
        }
    };
    let loop_seconds: f64 = video.fragments.iter().map(|f| f.seconds).sum();
    eprintln!(
        "axum peer: {} fragments, {loop_seconds:.2} s per loop, speed {}",
        video.fragments.len(),
        opts.speed
    );
    let mut builder = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(opts.threads);
        b
    };
    let runtime = builder.enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(opts, video)) {
        eprintln!("axum peer: {e}");
        std::process::exit(1);
    }
}
