//! The server's RTMP side: the listener (`--rtmp`; the default port is skipped with a warning
//! when it is taken, an address given on the command line must work), its own slab of
//! connections on a token range of their own, their hold and again lists, and their timeouts (a
//! connection must publish within the head timeout; a publisher that goes silent for the
//! publish timeout is cut off). What the connections do is in `conn::rtmp`.

use super::{bind, Server, ServerError};
use crate::config::RtmpListen;
use crate::conn::rtmp::RtmpConn;
use crate::conn::Next;
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub(super) const RTMP_LISTENER: Token = Token(usize::MAX - 4);
/// RTMP connections take the tokens from this one up (HTTP slab keys stay far below it, relays
/// far above).
pub(super) const RTMP_BASE: usize = usize::MAX / 2;
/// Most RTMP connections at once; more are closed as they come.
const MAX_RTMP: usize = 256;
/// Most connections accepted per readiness event.
const ACCEPT_BATCH: usize = 16;
/// Back-off before accepting again after running out of file descriptors.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Default)]
pub(super) struct RtmpSide {
    listener: Option<TcpListener>,
    pub addr: Option<SocketAddr>,
    pub conns: Slab<RtmpConn>,
    /// Connections to call again soon (reads left).
    pub again: Vec<(usize, u64)>,
    /// Publishers held back until an instant.
    pub holds: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl RtmpSide {
    /// Binds the listener `--rtmp` asks for and registers it.
    pub fn new(want: RtmpListen, poll: &Registry) -> Result<RtmpSide, ServerError> {
        match want {
            RtmpListen::Off => Ok(RtmpSide::default()),
            RtmpListen::Default => Self::open(RtmpListen::DEFAULT, false, poll),
            RtmpListen::Addr(a) => Self::open(a, true, poll),
        }
    }

    /// Listens on `addr`; when that fails, an error if `must`, else a warning and no RTMP.
    fn open(addr: SocketAddr, must: bool, poll: &Registry) -> Result<RtmpSide, ServerError> {
        let mut listener = match bind(addr) {
            Ok(l) => l,
            Err(e) if !must => {
                log::warn!(
                    "cannot listen for RTMP on {addr} ({e}); running without RTMP (--rtmp ADDR \
                     picks another address, --rtmp off silences this)"
                );
                return Ok(RtmpSide::default());
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        };
        let addr = listener.local_addr().map_err(ServerError::Io)?;
        poll.register(&mut listener, RTMP_LISTENER, Interest::READABLE)
            .map_err(ServerError::Io)?;
        Ok(RtmpSide {
            listener: Some(listener),
            addr: Some(addr),
            ..RtmpSide::default()
        })
    }

    /// The earliest hold that ends.
    pub fn next_due(&self) -> Option<Instant> {
        self.holds.peek().map(|r| r.0 .0)
    }
}

impl Server {
    pub(super) fn rtmp_accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = self.rtmp.listener.as_ref() else {
                return;
            };
            let (mut socket, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Edge-triggered: what waits in the kernel's queue is not reported again
                    // until another connection comes, so try again soon.
                    log::warn!(
                        "out of file descriptors accepting RTMP ({e}); retrying in {} ms",
                        ACCEPT_RETRY.as_millis()
                    );
                    self.rtmp
                        .holds
                        .push(Reverse((now + ACCEPT_RETRY, usize::MAX, 0)));
                    return;
                }
                Err(e) => {
                    log::debug!("RTMP accept failed: {e}");
                    continue;
                }
            };
            if self.rtmp.conns.len() >= MAX_RTMP {
                log::warn!("{MAX_RTMP} RTMP connections already: closing the one from {peer}");
                continue;
            }
            let key = self.rtmp.conns.vacant_key();
            let token = Token(RTMP_BASE + key);
            if let Err(e) =
                self.shared
                    .poll
                    .registry()
                    .register(&mut socket, token, Interest::READABLE)
            {
                log::warn!("cannot register an RTMP connection from {peer}: {e}");
                continue;
            }
            let _ = socket.set_nodelay(true);
            self.next_id += 1;
            let id = self.next_id;
            self.rtmp
                .conns
                .insert(RtmpConn::new(id, token, socket, peer, now));
            log::debug!("RTMP connection {id} from {peer}");
        }
        // More may wait: go round again next turn.
        self.rtmp.again.push((usize::MAX, 0));
    }

    pub(super) fn rtmp_ready(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.rtmp.conns.get_mut(key) else {
            return;
        };
        let mut ctx = self.shared.ctx(now);
        let next = conn.on_ready(&mut ctx);
        let id = conn.id;
        match next {
            Next::Continue => {}
            Next::Again => self.rtmp.again.push((key, id)),
            Next::Hold(t) => self.rtmp.holds.push(Reverse((t, key, id))),
            Next::Close => self.rtmp_close(key, None, now),
        }
        self.apply_media(now);
    }

    /// Closes an RTMP connection; a publish in progress ends with `reason` (when it has not
    /// been ended by the connection itself).
    pub(super) fn rtmp_close(&mut self, key: usize, reason: Option<&str>, now: Instant) {
        let Some(mut conn) = self.rtmp.conns.try_remove(key) else {
            return;
        };
        let mut ctx = self.shared.ctx(now);
        conn.end(reason.unwrap_or("publisher disconnected"), false, &mut ctx);
        log::debug!("RTMP connection {} from {} closed", conn.id, conn.peer());
        self.apply_media(now);
    }

    /// Connections whose turn came again, and holds that ended.
    pub(super) fn rtmp_timers(&mut self, now: Instant) {
        for (key, id) in std::mem::take(&mut self.rtmp.again) {
            if key == usize::MAX {
                self.rtmp_accept(now);
            } else if self.rtmp.conns.get(key).is_some_and(|c| c.id == id) {
                self.rtmp_ready(key, now);
            }
        }
        while let Some(&Reverse((at, key, id))) = self.rtmp.holds.peek() {
            if at > now {
                break;
            }
            self.rtmp.holds.pop();
            if key == usize::MAX {
                self.rtmp_accept(now);
            } else if self.rtmp.conns.get(key).is_some_and(|c| c.id == id) {
                self.rtmp_ready(key, now);
            }
        }
    }

    /// Connections that never publish, and publishers that went silent.
    pub(super) fn rtmp_housekeeping(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (key, conn) in &self.rtmp.conns {
            let since = |t: Instant| now.saturating_duration_since(t);
            if conn.publishing().is_none() {
                if since(conn.idle_since) >= self.head_timeout {
                    log::info!(
                        "RTMP connection from {} did not publish within {:.0} s; closing",
                        conn.peer(),
                        self.head_timeout.as_secs_f64()
                    );
                    expired.push((key, "publisher disconnected"));
                }
            } else if conn
                .publish_idle_since()
                .is_some_and(|t| since(t) >= self.publish_timeout)
            {
                log::warn!(
                    "RTMP publisher from {} sent nothing for {:.0} s; closing",
                    conn.peer(),
                    self.publish_timeout.as_secs_f64()
                );
                self.shared.metrics.publish_timeouts += 1;
                expired.push((key, "the publisher went silent"));
            }
        }
        for (key, reason) in expired {
            self.rtmp_close(key, Some(reason), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_default_port_is_skipped_but_a_given_one_is_an_error() {
        let poll = mio::Poll::new().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let side = RtmpSide::open(addr, false, poll.registry()).unwrap();
        assert!(side.addr.is_none() && side.listener.is_none());
        let err = RtmpSide::open(addr, true, poll.registry()).err().unwrap();
        assert!(matches!(err, ServerError::Bind { addr: a, .. } if a == addr));
        let free = RtmpSide::open("127.0.0.1:0".parse().unwrap(), true, poll.registry()).unwrap();
        assert!(free.addr.is_some_and(|a| a.port() != 0));
        let off = RtmpSide::new(RtmpListen::Off, poll.registry()).unwrap();
        assert!(off.addr.is_none());
    }
}
