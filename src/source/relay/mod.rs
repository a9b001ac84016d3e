//! A relay: a stream pulled from another ssecast's `/events/NAME` over one HTTP connection in the
//! same event loop (`ssecast cam=http://origin:8080/events/cam`), so an edge fans out one copy
//! of the origin's stream to its own viewers. Events are passed on as they are — the same init,
//! the same fragments, the same ids — so a viewer's `Last-Event-ID` resumes on any edge and the
//! delay it sees is end to end. If the origin goes away the edge reconnects with back-off and
//! `Last-Event-ID`; its viewers see `offline` meanwhile and continue with no gap when the origin
//! still has the fragments. `sse` parses the upstream; hostile or broken upstream data ends the
//! pull with a log line.

pub mod sse;

use super::{Media, MediaEvent};
use crate::http::chunked::ChunkedDecoder;
use crate::mp4::{parse_fragment_at, read_box, Boxes, InitSegment};
use crate::sse::{EventId, Frame, StreamInfo};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use sse::{SseEvent, SseParser};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// First wait before reconnecting; it doubles up to [`MAX_BACKOFF`] and starts over once a pull
/// gets its `init`.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An upstream silent for this long (it sends keepalives every 15 s) is given up on.
const SILENCE: Duration = Duration::from_secs(45);
/// Largest response head accepted from the upstream.
const MAX_HEAD: usize = 8 * 1024;
/// Most reads in one turn before other work gets its own.
const MAX_READS: usize = 64;

/// Where a relay pulls from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// `host[:port]` for the Host header.
    pub authority: String,
    pub path: String,
    pub addrs: Vec<SocketAddr>,
}

impl RelayUrl {
    /// `http://host[:port]/path` (the path defaults to `/events`); the host is resolved now.
    pub fn parse(url: &str) -> Result<RelayUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("'{url}': a relay pulls from an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/events"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("'{url}': no host (user info is not supported)"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| format!("'{url}': cannot resolve {authority}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("'{url}': {authority} has no address"));
        }
        Ok(RelayUrl {
            authority: authority.to_string(),
            path: path.to_string(),
            addrs,
        })
    }
}

#[derive(Debug)]
enum State {
    /// Waiting before the next attempt.
    Backoff(Instant),
    /// Connecting; `request` is what is left to send.
    Connecting { request: Vec<u8> },
    /// Reading the response head.
    Head(Vec<u8>),
    /// Reading events.
    Body,
}

pub struct RelaySource {
    /// Registry key of the stream it feeds.
    pub stream: usize,
    pub url: RelayUrl,
    token: Token,
    state: State,
    socket: Option<TcpStream>,
    chunked: Option<ChunkedDecoder>,
    parser: SseParser,
    init: Option<InitSegment>,
    /// The id of the last fragment passed on, sent as `Last-Event-ID` when reconnecting.
    last_id: Option<String>,
    backoff: Duration,
    last_input: Instant,
    /// The stream was told it is live on this pull (so a failure tells it it is offline).
    live: bool,
    pub attempts: u64,
}

/// What the event loop should do next with a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayNext {
    Continue,
    /// More may be waiting: read again soon.
    Again,
}

impl RelaySource {
    pub fn new(stream: usize, url: RelayUrl, token: Token, now: Instant) -> RelaySource {
        RelaySource {
            stream,
            url,
            token,
            state: State::Backoff(now),
            socket: None,
            chunked: None,
            parser: SseParser::default(),
            init: None,
            last_id: None,
            backoff: MIN_BACKOFF,
            last_input: now,
            live: false,
            attempts: 0,
        }
    }

    /// When the relay wants to be woken without an event: the end of its back-off, or when its
    /// upstream counts as silent.
    pub fn deadline(&self) -> Instant {
        match self.state {
            State::Backoff(t) => t,
            _ => self.last_input + SILENCE,
        }
    }

    /// Timers: starts the next attempt, or gives up on a silent upstream.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Media>) {
        match self.state {
            State::Backoff(t) if now >= t => self.connect(registry, now, out),
            State::Backoff(_) => {}
            _ if now >= self.last_input + SILENCE => {
                self.fail(registry, now, "the origin sent nothing for 45 s", out)
            }
            _ => {}
        }
    }

    fn connect(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Media>) {
        self.attempts += 1;
        let addr = self.url.addrs[(self.attempts as usize - 1) % self.url.addrs.len()];
        let mut socket = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                return self.fail(
                    registry,
                    now,
                    &format!("cannot connect to {addr}: {e}"),
                    out,
                )
            }
        };
        if let Err(e) = registry.register(
            &mut socket,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.fail(registry, now, &format!("cannot register: {e}"), out);
        }
        let _ = socket.set_nodelay(true);
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nUser-Agent: ssecast-relay/{}\r\n",
            self.url.path,
            self.url.authority,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(id) = &self.last_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        self.socket = Some(socket);
        self.state = State::Connecting {
            request: request.into_bytes(),
        };
        self.chunked = None;
        self.parser = SseParser::default();
        self.last_input = now;
    }

    /// The pull failed: the stream goes offline (once), and the next attempt waits.
    fn fail(&mut self, registry: &Registry, now: Instant, why: &str, out: &mut Vec<Media>) {
        if let Some(mut s) = self.socket.take() {
            let _ = registry.deregister(&mut s);
        }
        log::warn!(
            "relay from http://{}{}: {why}; trying again in {:.1} s",
            self.url.authority,
            self.url.path,
            self.backoff.as_secs_f64()
        );
        if self.live {
            self.live = false;
            out.push(Media {
                stream: self.stream,
                event: MediaEvent::Offline(format!("the origin is unreachable: {why}")),
            });
        }
        self.state = State::Backoff(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Readiness of the upstream socket.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        scratch: &mut [u8],
        now: Instant,
        out: &mut Vec<Media>,
    ) -> RelayNext {
        if let Err(why) = self.send_request() {
            self.fail(registry, now, &why, out);
            return RelayNext::Continue;
        }
        for _ in 0..MAX_READS {
            let Some(socket) = self.socket.as_mut() else {
                return RelayNext::Continue;
            };
            if matches!(self.state, State::Connecting { .. } | State::Backoff(_)) {
                return RelayNext::Continue;
            }
            let n = match socket.read(scratch) {
                Ok(0) => {
                    self.fail(registry, now, "the origin closed the connection", out);
                    return RelayNext::Continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return RelayNext::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(registry, now, &format!("read failed: {e}"), out);
                    return RelayNext::Continue;
                }
            };
            self.last_input = now;
            if let Err(why) = self.take(&scratch[..n], out) {
                self.fail(registry, now, &why, out);
                return RelayNext::Continue;
            }
        }
        RelayNext::Again
    }

    fn send_request(&mut self) -> Result<(), String> {
        let (Some(socket), State::Connecting { request }) = (self.socket.as_mut(), &mut self.state)
        else {
            return Ok(());
        };
        if let Ok(Some(e)) | Err(e) = socket.take_error() {
            return Err(format!("cannot connect: {e}"));
        }
        match socket.write(request) {
            Ok(n) => {
                request.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(format!("cannot send the request: {e}")),
        }
        if request.is_empty() {
            self.state = State::Head(Vec::new());
        }
        Ok(())
    }

    /// Takes bytes of the response: the head, then the (maybe chunked) event stream.
    fn take(&mut self, mut bytes: &[u8], out: &mut Vec<Media>) -> Result<(), String> {
        if let State::Head(head) = &mut self.state {
            head.extend_from_slice(bytes);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > MAX_HEAD {
                    return Err("the response head is over 8 KiB".into());
                }
                return Ok(());
            };
            let head = std::mem::take(head);
            self.chunked = check_head(&head[..end + 4])?;
            self.state = State::Body;
            let rest = head[end + 4..].to_vec();
            return self.body(&rest, out);
        }
        self.body(std::mem::take(&mut bytes), out)
    }

    fn body(&mut self, mut bytes: &[u8], out: &mut Vec<Media>) -> Result<(), String> {
        let mut events = Vec::new();
        let mut collect = |e: SseEvent| events.push(e);
        match &mut self.chunked {
            None => self
                .parser
                .feed(bytes, &mut collect)
                .map_err(|e| e.to_string())?,
            Some(d) => {
                while !bytes.is_empty() && !d.is_done() {
                    let step = d.step(bytes).map_err(|e| e.to_string())?;
                    self.parser
                        .feed(&bytes[step.data.clone()], &mut collect)
                        .map_err(|e| e.to_string())?;
                    bytes = &bytes[step.consumed..];
                }
            }
        }
        for e in events {
            self.event(e, out)?;
        }
        Ok(())
    }

    fn event(&mut self, e: SseEvent, out: &mut Vec<Media>) -> Result<(), String> {
        let event = match e.kind.as_str() {
            "init" => {
                let init = init_of(&e.data)?;
                let info = StreamInfo {
                    mime: json_str(&e.data, "mime").unwrap_or_else(|| init.mime()),
                    width: json_num(&e.data, "width").unwrap_or(0) as u16,
                    height: json_num(&e.data, "height").unwrap_or(0) as u16,
                    bitrate: json_num(&e.data, "bitrate").unwrap_or(0),
                    duration_secs: 0.0,
                };
                let timescales = init.tracks.iter().map(|t| t.timescale).collect();
                // The very bytes the origin sent.
                let frame = Frame::event(format!("event: init\ndata: {}\n\n", e.data).into_bytes());
                self.init = Some(init);
                self.live = true;
                self.backoff = MIN_BACKOFF;
                MediaEvent::RelayInit {
                    frame,
                    info,
                    timescales,
                }
            }
            "data" => {
                let Some(init) = &self.init else {
                    return Err("a data event before any init".into());
                };
                let id = e.id.as_deref().unwrap_or("");
                let parsed = EventId::parse(id)
                    .ok_or_else(|| format!("a data event with a bad id '{id}'"))?;
                let bytes = STANDARD
                    .decode(e.data.as_bytes())
                    .map_err(|_| format!("data event {id} is not base64"))?;
                let moof_at =
                    moof_offset(&bytes).ok_or_else(|| format!("data event {id} holds no moof"))?;
                let fragment = parse_fragment_at(&bytes, moof_at, init)
                    .map_err(|err| format!("data event {id}: {err}"))?;
                let frame = Frame::data(
                    parsed.sequence,
                    parsed.live_ms,
                    fragment.keyframe,
                    format!("id: {id}\nevent: data\ndata: {}\n\n", e.data).into_bytes(),
                );
                self.last_id = Some(id.to_string());
                MediaEvent::RelayFragment(frame)
            }
            "offline" => {
                self.live = false;
                MediaEvent::Offline(json_str(&e.data, "reason").unwrap_or_else(|| "offline".into()))
            }
            "reset" => {
                log::info!(
                    "relay from http://{}{}: the origin says this edge skipped fragments",
                    self.url.authority,
                    self.url.path
                );
                return Ok(());
            }
            _ => return Ok(()),
        };
        out.push(Media {
            stream: self.stream,
            event,
        });
        Ok(())
    }
}

/// Checks a response head: 200 and an event stream. Returns the chunked decoder when the body is
/// chunked (an origin behind a proxy).
fn check_head(head: &[u8]) -> Result<Option<ChunkedDecoder>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("the origin did not answer with HTTP".into()),
    }
    if res.code != Some(200) {
        return Err(format!(
            "the origin answered {} {}",
            res.code.unwrap_or(0),
            res.reason.unwrap_or("")
        ));
    }
    let header = |name: &str| {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii().to_ascii_lowercase())
    };
    if !header("content-type").is_some_and(|v| v.starts_with(b"text/event-stream")) {
        return Err("the origin's answer is not an event stream".into());
    }
    if header("content-encoding").is_some_and(|v| v != b"identity") {
        return Err("the origin's answer is compressed".into());
    }
    Ok(header("transfer-encoding")
        .is_some_and(|v| v == b"chunked")
        .then(ChunkedDecoder::default))
}

/// The init segment of an `init` event.
fn init_of(data: &str) -> Result<InitSegment, String> {
    let b64 = json_str(data, "init").ok_or("an init event without its segment")?;
    let bytes = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "the init segment is not base64")?;
    let first = read_box(&bytes, 0, bytes.len()).map_err(|e| e.to_string())?;
    let (ftyp, moov) = if &first.box_type == b"ftyp" {
        (Some(&bytes[first.range()]), &bytes[first.end..])
    } else {
        (None, &bytes[..])
    };
    InitSegment::parse(ftyp, moov).map_err(|e| format!("the origin's init segment: {e}"))
}

/// Where the moof of a fragment (after any styp/prft/emsg) starts.
fn moof_offset(bytes: &[u8]) -> Option<usize> {
    Boxes::new(bytes, 0..bytes.len())
        .map_while(Result::ok)
        .find(|b| &b.box_type == b"moof")
        .map(|b| b.start)
}

/// The string value of `"key":"…"` in the flat JSON objects ssecast sends (escapes decoded).
fn json_str(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = json[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The unsigned number value of `"key":N`.
fn json_num(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_json_fields() {
        let u = RelayUrl::parse("http://127.0.0.1:8080/events/cam").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:8080", "/events/cam")
        );
        assert_eq!(u.addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(
            RelayUrl::parse("http://127.0.0.1").unwrap().addrs[0].port(),
            80
        );
        assert_eq!(
            RelayUrl::parse("http://[::1]:9/x").unwrap().addrs[0].port(),
            9
        );
        assert!(RelayUrl::parse("https://example.test/events").is_err());
        assert!(RelayUrl::parse("http:///events").is_err());
        let j = r#"{"mime":"video/mp4; codecs=\"avc1.4d401e\"","init":"AAAA","width":640,"height":360}"#;
        assert_eq!(
            json_str(j, "mime").unwrap(),
            "video/mp4; codecs=\"avc1.4d401e\""
        );
        assert_eq!(json_num(j, "width"), Some(640));
        assert_eq!(json_num(j, "nope"), None);
        assert_eq!(
            json_str(r#"{"reason":"a \u00e9"}"#, "reason").unwrap(),
            "a é"
        );
    }

    #[test]
    fn heads_that_are_not_event_streams_are_refused() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        assert!(check_head(ok).unwrap().is_none());
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(check_head(chunked).unwrap().is_some());
        assert!(check_head(b"HTTP/1.1 404 Not Found\r\n\r\n")
            .unwrap_err()
            .contains("404"));
        assert!(check_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n").is_err());
        assert!(check_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
