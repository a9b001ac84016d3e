//! The `ssecast` binary: command line -> config -> server, logging setup, the file descriptor
//! limit, and exit codes (0 clean stop, 1 runtime failure, 2 bad usage, an unusable video or
//! standard input, or an address that cannot be bound).

use ssecast::config::{parse_args, Command, Config, HELP};
use ssecast::server::{default_max_clients, Server, ServerError};
use std::process::ExitCode;

/// File descriptors kept back from viewers for the listener, the poll, the video and logging.
const FD_RESERVE: u64 = 32;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cfg = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ssecast {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ssecast: {e}\nTry 'ssecast --help'.");
            return ExitCode::from(2);
        }
    };
    let fd_limit = raise_fd_limit();
    let max_clients = cfg
        .max_clients
        .unwrap_or_else(|| default_max_clients(fd_limit, FD_RESERVE));
    match run(&cfg, max_clients) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (ServerError::Video(_)
            | ServerError::Bind { .. }
            | ServerError::Stdin(_)
            | ServerError::Relay(_)),
        ) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: &Config, max_clients: usize) -> Result<(), ServerError> {
    let mut server = Server::new(cfg, max_clients)?;
    let addr = server.local_addr();
    for file in server.files() {
        let info = file.playout.info();
        let movie = file.playout.movie();
        let name = server
            .streams()
            .get(file.stream)
            .map_or_else(String::new, |s| s.name.to_string());
        let resolution = match movie.resolution() {
            Some((w, h)) => format!("{w}x{h}, "),
            None => String::new(),
        };
        log::info!(
            "stream {name}: {} | {} | {resolution}{} kbit/s, {} fragments, {:.1} s, looping",
            file.video.name().display(),
            info.mime,
            info.bitrate / 1000,
            movie.fragments.len(),
            info.duration_secs
        );
        for (i, track) in movie.tracks.iter().enumerate() {
            let ticks = movie.lead_in_ticks(i);
            if ticks > 0 {
                log::info!(
                    "track {} starts {:.0} ms before the first frame is shown (B-frames, no edit list): \
                     passes after the first leave that lead-in out, so the loop joins seamlessly",
                    track.id,
                    ticks as f64 * 1000.0 / f64::from(track.timescale)
                );
            }
        }
    }
    for (_, s) in server.streams().iter() {
        if s.kind == Some(ssecast::stream::SourceKind::Stdin) {
            log::info!(
                "stream {}: standard input (fragmented MP4), live when it starts",
                s.name
            );
        }
    }
    for relay in server.relays() {
        if let Some(s) = server.streams().get(relay.stream) {
            log::info!(
                "stream {}: relayed from http://{}{}",
                s.name,
                relay.url.authority,
                relay.url.path
            );
        }
    }
    log::info!(
        "up to {max_clients} connections, {} KiB queue each, {} s backlog{}; publishing {}",
        cfg.client_queue / 1024,
        cfg.backlog.as_secs(),
        if cfg.speed > 1 {
            format!(", files playing at {}x speed", cfg.speed)
        } else {
            String::new()
        },
        if cfg.publish_key.is_some() {
            "needs the --publish-key"
        } else {
            "from this machine only (set --publish-key to accept others)"
        }
    );
    if let Some(rtmp) = server.rtmp_addr() {
        log::info!("RTMP publishing on rtmp://{rtmp}/live/NAME (OBS: server rtmp://HOST:{}/live, stream key NAME)", rtmp.port());
    }
    if addr.ip().is_unspecified() {
        log::info!(
            "listening on http://{addr}/ (open http://localhost:{}/ here, or this machine's address from elsewhere)",
            addr.port()
        );
    } else {
        log::info!("listening on http://{addr}/");
    }
    server.run()?;
    log::info!("stopped");
    Ok(())
}

/// Raises the soft open-file limit to the hard limit (as nginx's worker_rlimit_nofile would) so
/// one process can hold thousands of viewers, and returns the limit in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass, which lives on our
    // stack for the duration of each call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    log::debug!("open file limit: {}", lim.rlim_cur);
    // rlim_t is 32 bits on 32-bit targets such as armv7 Raspberry Pi OS.
    #[allow(clippy::unnecessary_cast)]
    let limit = lim.rlim_cur as u64;
    limit
}
