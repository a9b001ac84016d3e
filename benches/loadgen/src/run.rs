//! The event loop: one mio `Poll`, a slab of [`Client`]s keyed by token, the connection ramp, the
//! measurement window and its grace period, connect timeouts, and the one read buffer shared by
//! every client. It turns client outcomes into totals and assembles the [`Report`]; the
//! per-connection protocol work is in `client.rs`.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use slab::Slab;

use crate::client::{self, Client, Outcome, Recorder};
use crate::clock::Clock;
use crate::config::Config;
use crate::histogram::Histogram;
use crate::report::{Report, Steady, Totals};
use crate::spread::SpreadTracker;
use crate::sys;

/// The read buffer shared by all clients. Its size barely matters (64 KiB to 1 MiB all cost ~0.2
/// CPU seconds per GB received, nearly all of it the kernel's copy); 128 KiB takes a whole 1 s
/// fragment (~70 KB of base64) in one read and stays in L2 for the scan that follows.
const READ_BUF_SIZE: usize = 128 * 1024;
const EVENTS_CAPACITY: usize = 4096;
/// A client must get its response head within this long of starting to connect.
const CONNECT_TIMEOUT_US: u64 = 10_000_000;
/// After the window, how long events already in flight may take to reach every client.
const GRACE_US: u64 = 2_000_000;
/// Housekeeping period (timeouts, spread finalization).
const TICK_US: u64 = 100_000;
/// Output buffer for inflating `--gzip` bodies, shared by every client.
const INFLATE_BUF_SIZE: usize = 256 * 1024;
/// How long after every client is streaming the steady-state window starts (the newcomers'
/// catch-up fragments and the kernel's socket buffer growth are over by then).
const STEADY_SETTLE_US: u64 = 1_000_000;
/// Connects started per loop turn at most, so reads keep flowing during a steep ramp.
const CONNECTS_PER_TURN: u32 = 256;
/// File descriptors kept for things other than clients (epoll, stdio, ...).
const SPARE_FDS: u64 = 32;

/// Everything the loop mutates besides the poll and the read buffer.
struct LoopState {
    clients: Slab<Client>,
    rec: Recorder,
    totals: Totals,
    /// Clients that hit the per-turn read cap and still have data.
    read_more: VecDeque<usize>,
    /// Since when every client started is streaming (none still connecting).
    all_streaming_since: Option<u64>,
    /// The start of the steady-state window, once reached.
    steady_start: Option<Mark>,
}

/// Payload received and server CPU used up to an instant, taken together so that the bytes and
/// the CPU time of the window match.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at_us: u64,
    payload_bytes: u64,
    wire_bytes: u64,
    server_cpu_ns: Option<u64>,
}

impl Mark {
    fn take(at_us: u64, rec: &Recorder, server_pids: &[u32]) -> Mark {
        Mark {
            at_us,
            payload_bytes: rec.payload_bytes,
            wire_bytes: rec.wire_bytes,
            server_cpu_ns: if server_pids.is_empty() {
                None
            } else {
                sys::processes_cpu_ns(server_pids)
            },
        }
    }

    /// The steady state from `self` to `end`.
    fn until(self, end: Mark) -> Steady {
        let seconds = end.at_us.saturating_sub(self.at_us) as f64 / 1e6;
        let server_cpu_s = match (self.server_cpu_ns, end.server_cpu_ns) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
            _ => None,
        };
        Steady {
            seconds,
            payload_bytes: end.payload_bytes.saturating_sub(self.payload_bytes),
            wire_bytes: end.wire_bytes.saturating_sub(self.wire_bytes),
            server_cpu_s,
        }
    }
}

impl LoopState {
    /// Applies a client's outcome. `was_streaming`: whether it streamed before this call.
    fn settle(&mut self, key: usize, was_streaming: bool, outcome: Outcome) {
        if !was_streaming && self.clients.get(key).is_some_and(Client::is_streaming) {
            self.totals.connected += 1;
        }
        let reason = match outcome {
            Outcome::Wait => return,
            Outcome::ReadMore => {
                self.read_more.push_back(key);
                return;
            }
            Outcome::Failed(failure) => failure.label(),
            Outcome::Ended(end) => end.label(),
        };
        self.close(key, reason);
    }

    /// Removes a client, counting it as disconnected (if it streamed and the window is still
    /// open) or failed (if it never streamed).
    fn close(&mut self, key: usize, reason: String) {
        let Some(client) = self.clients.try_remove(key) else {
            return;
        };
        if client.is_streaming() {
            self.rec.streaming -= 1;
            self.totals.add_stream(client.stats());
            if self.rec.measuring {
                log::debug!("client {key} disconnected: {reason}");
                self.totals.disconnect(reason);
            }
        } else {
            log::debug!("client {key} failed: {reason}");
            self.totals.fail(reason, 1);
        }
    }
}

/// Runs the whole load test. Errors are setup errors (no event loop); everything that happens
/// to connections is in the report.
pub fn run(cfg: &Config) -> io::Result<Report> {
    match sys::raise_nofile_limit() {
        Ok(limit) if limit < u64::from(cfg.clients) + SPARE_FDS => log::warn!(
            "the open-file limit is {limit}: at most about {} clients can connect",
            limit.saturating_sub(SPARE_FDS)
        ),
        Ok(_) => {}
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut buf = vec![0u8; READ_BUF_SIZE];
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n{}\r\n",
        cfg.target.path,
        cfg.target.host,
        if cfg.gzip { "Accept-Encoding: gzip\r\n" } else { "" }
    )
    .into_bytes();
    // Several source addresses only help (and only work) towards an IPv4 loopback target.
    let sources = match cfg.target.addr.ip() {
        IpAddr::V4(v4) if v4.is_loopback() && cfg.sources > 1 => u32::from(cfg.sources),
        _ => 1,
    };
    let source_of = |i: u32| {
        (sources > 1).then(|| {
            let last = 1 + (i % sources) as u8;
            SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 0)
        })
    };

    let cpu_start = sys::cpu_time();
    let wall_start = Instant::now();
    let clock = Clock::start();
    let window_us = cfg.duration.as_micros() as u64;
    let mut st = LoopState {
        clients: Slab::with_capacity(cfg.clients as usize),
        rec: Recorder {
            clock,
            measuring: true,
            streaming: 0,
            latency: Histogram::default(),
            spread: SpreadTracker::default(),
            expect_interval_us: cfg.expect_interval.map(|d| d.as_micros() as u64),
            payload_bytes: 0,
            wire_bytes: 0,
            inflate_buf: vec![0u8; INFLATE_BUF_SIZE].into_boxed_slice(),
        },
        totals: Totals::default(),
        read_more: VecDeque::new(),
        all_streaming_since: None,
        steady_start: None,
    };
    let mut steady = None;
    let mut started: u32 = 0;
    let mut next_tick_us = TICK_US;
    log::info!(
        "loading {} with {} clients at {}/s for {:?}",
        cfg.target.addr,
        cfg.clients,
        cfg.ramp_per_s,
        cfg.duration
    );

    loop {
        let now_us = clock.now().mono_us;
        if st.rec.measuring && now_us >= window_us {
            if let Some(start) = st.steady_start {
                steady = Some(start.until(Mark::take(now_us, &st.rec, &cfg.server_pids)));
            }
            st.rec.measuring = false;
            log::info!("measurement window over; letting events in flight finish");
        }
        if !st.rec.measuring
            && (now_us >= window_us + GRACE_US || st.rec.spread.settled(st.rec.streaming))
        {
            break;
        }
        if started == cfg.clients && st.clients.is_empty() {
            log::info!("every client has failed or ended; stopping early");
            break;
        }

        // Client i starts at i / ramp seconds.
        let mut behind = false;
        if st.rec.measuring && started < cfg.clients {
            let due = ((now_us as f64 / 1e6 * cfg.ramp_per_s) as u64 + 1).min(cfg.clients.into());
            let mut batch = 0;
            while u64::from(started) < due && batch < CONNECTS_PER_TURN {
                start_client(
                    &mut st,
                    poll.registry(),
                    cfg.target.addr,
                    source_of(started),
                    now_us,
                );
                started += 1;
                batch += 1;
            }
            behind = u64::from(started) < due;
        }

        let timeout_us = if behind || !st.read_more.is_empty() {
            0
        } else {
            let mut wake = next_tick_us;
            if st.rec.measuring {
                wake = wake.min(window_us);
                if started < cfg.clients {
                    let next_start = (f64::from(started) / cfg.ramp_per_s * 1e6).ceil() as u64;
                    wake = wake.min(next_start);
                }
            } else {
                wake = wake.min(window_us + GRACE_US);
            }
            wake.saturating_sub(now_us)
        };
        match poll.poll(&mut events, Some(Duration::from_micros(timeout_us))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }

        for event in events.iter() {
            let key = event.token().0;
            let Some(client) = st.clients.get_mut(key) else {
                continue;
            };
            let was_streaming = client.is_streaming();
            let drain = event.is_read_closed() || event.is_error();
            let outcome = client.on_ready(drain, &request, poll.registry(), &mut buf, &mut st.rec);
            st.settle(key, was_streaming, outcome);
        }
        // INVARIANT: each pass takes only the clients queued before it, so one busy client
        // cannot keep the loop from polling.
        for _ in 0..st.read_more.len() {
            let Some(key) = st.read_more.pop_front() else {
                break;
            };
            let Some(client) = st.clients.get_mut(key) else {
                continue;
            };
            let was_streaming = client.is_streaming();
            let outcome = client.read_more(&mut buf, &mut st.rec);
            st.settle(key, was_streaming, outcome);
        }

        let now_us = clock.now().mono_us;
        if st.rec.measuring && st.steady_start.is_none() {
            let all_in = started == cfg.clients
                && st.rec.streaming > 0
                && st.rec.streaming as usize == st.clients.len();
            match (all_in, st.all_streaming_since) {
                (false, _) => st.all_streaming_since = None,
                (true, None) => st.all_streaming_since = Some(now_us),
                (true, Some(since)) if now_us >= since + STEADY_SETTLE_US => {
                    st.steady_start = Some(Mark::take(now_us, &st.rec, &cfg.server_pids));
                }
                (true, Some(_)) => {}
            }
        }
        if now_us >= next_tick_us {
            next_tick_us = now_us + TICK_US;
            let late: Vec<usize> = st
                .clients
                .iter()
                .filter(|(_, c)| {
                    !c.is_streaming() && now_us.saturating_sub(c.started_us) > CONNECT_TIMEOUT_US
                })
                .map(|(key, _)| key)
                .collect();
            for key in late {
                st.close(key, client::Failure::Timeout.label());
            }
            st.rec.spread.finalize_old(now_us);
        }
    }

    let elapsed_s = wall_start.elapsed().as_secs_f64();
    let window_s = (clock.now().mono_us.min(window_us)) as f64 / 1e6;
    for client in st.clients.drain() {
        if client.is_streaming() {
            st.totals.add_stream(client.stats());
        } else {
            st.totals.fail("still_connecting".into(), 1);
        }
    }
    st.totals
        .fail("not_started".into(), u64::from(cfg.clients - started));
    st.rec.spread.finalize_all();
    Ok(Report {
        url: format!("http://{}{}", cfg.target.host, cfg.target.path),
        clients: cfg.clients,
        ramp_per_s: cfg.ramp_per_s,
        sources: sources as u8,
        expect_interval_ms: cfg.expect_interval.map(|d| d.as_secs_f64() * 1000.0),
        totals: st.totals,
        latency: st.rec.latency,
        spread: st.rec.spread,
        seconds: window_s,
        steady,
        elapsed_s,
        cpu_s: (sys::cpu_time().saturating_sub(cpu_start)).as_secs_f64(),
    })
}

/// Starts connecting one client; a failure to even start counts as a failed client.
fn start_client(
    st: &mut LoopState,
    registry: &mio::Registry,
    addr: SocketAddr,
    source: Option<SocketAddr>,
    now_us: u64,
) {
    let entry = st.clients.vacant_entry();
    let started = client::connect(addr, source)
        .and_then(|stream| Client::new(stream, Token(entry.key()), registry, now_us));
    match started {
        Ok(client) => {
            entry.insert(client);
        }
        Err(e) => {
            let reason = client::Failure::Connect(e).label();
            log::debug!("could not start a connection: {reason}");
            st.totals.fail(reason, 1);
        }
    }
}
