//! `ssecast-load`: a load generator for SSE video streams. It opens many nonblocking connections
//! to one loopback URL from a single-threaded mio event loop and reports what they received:
//! throughput, continuity (gaps, duplicates, resets), delivery latency, fan-out spread, and its
//! own CPU time. This file owns only the process: arguments in, report out, exit status. It lives
//! in its own crate (`benches/loadgen/`, a workspace member) and takes nothing from the `ssecast`
//! library but `sse::json_escape`, so it can test any server.
//!
//! Modules: `config` (CLI and URL check), `run` (event loop), `client` (one connection),
//! `chunked` and `sse` (incremental body and event scanning), `event_id`, `histogram`, `spread`
//! (measurements), `report` (output), `clock`, `sys` (libc calls).

mod chunked;
mod client;
mod clock;
mod config;
mod event_id;
mod histogram;
mod inflate;
mod report;
mod run;
mod spread;
mod sse;
mod sys;

use std::process::ExitCode;

use config::Command;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cfg = match config::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(cfg)) => cfg,
        Err(message) => {
            eprintln!("ssecast-load: {message}\nTry 'ssecast-load --help'.");
            return ExitCode::from(1);
        }
    };
    let report = match run::run(&cfg) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("ssecast-load: cannot start the event loop: {e}");
            return ExitCode::from(1);
        }
    };
    eprint!("{}", report.human());
    if cfg.json {
        println!("{}", report.json());
    }
    if report.totals.connected > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "ssecast-load: no client could connect to {}",
            cfg.target.addr
        );
        ExitCode::from(2)
    }
}
