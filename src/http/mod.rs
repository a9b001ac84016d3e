//! HTTP/1.x requests: parses a request head with httparse under strict limits and routes it (the
//! one place that knows every endpoint). `responses` builds what is sent back, `chunked` decodes
//! publish bodies, `auth` checks publisher keys.
//!
//! Pure: bytes in, a routed request or an error status out. Nothing here allocates per request.

pub mod auth;
pub mod chunked;
pub mod responses;

use crate::sse::EventId;
use crate::stream::{NameError, StreamName};
pub use auth::Auth;
pub use responses::{Responses, Status, ASSETS};

/// Largest request head accepted; longer heads get 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines accepted; more get 431.
pub const MAX_HEADERS: usize = 32;

/// How a publish request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Chunked,
    Length(u64),
    /// Neither: the body is everything until the connection ends.
    UntilClose,
}

/// A `POST`/`PUT /publish/NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub stream: StreamName,
    pub body: Body,
    pub expect_continue: bool,
    /// The credentials judged against `--publish-key` (`Missing` when no key is set).
    pub auth: Auth,
    /// The request came through a proxy (`Forwarded`, `X-Forwarded-For`, `X-Real-IP` or
    /// `Via`): its loopback address says nothing about the publisher.
    pub proxied: bool,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An index into [`ASSETS`] other than the page.
    Asset(usize),
    /// The viewer page: for the default stream (`/`) or a named one (`/NAME`).
    Page(Option<StreamName>),
    /// The SSE stream of the default stream (`/events`) or a named one (`/events/NAME`).
    Events {
        stream: Option<StreamName>,
        last_event_id: Option<EventId>,
        /// The request accepts a gzip body (`Accept-Encoding`).
        gzip: bool,
    },
    Publish(Publish),
    /// `/api/streams` (every stream) or `/api/streams/NAME`: status JSON.
    Streams(Option<StreamName>),
    /// `/metrics`: Prometheus text.
    Metrics,
    /// `/healthz`.
    Health,
    /// `/favicon.ico`: an empty 204 so browsers stop asking.
    NoContent,
    /// A request that is refused, with a reason for the body (may be empty).
    Refused(Status, &'static str),
}

/// A parsed, routed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub route: Route,
    /// HEAD: send the response head only.
    pub head_only: bool,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet; read more.
    Partial,
    /// The head is complete (or can never be valid). `body_at` is where in the piece just fed
    /// the bytes after the head begin.
    Done {
        result: Result<Request, Status>,
        body_at: usize,
    },
}

/// Collects a request head that may arrive in pieces. The common case, a head that arrives in
/// one read, is parsed straight from the caller's buffer and never copied or allocated.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Feeds the bytes of one read; `key` is the `--publish-key`, if any.
    ///
    /// INVARIANT: the buffer never holds more than `MAX_HEAD` bytes plus one read, because
    /// `parse_request` answers `Done` once more than `MAX_HEAD` bytes are buffered.
    pub fn feed(&mut self, bytes: &[u8], key: Option<&[u8]>) -> Parsed {
        let before = self.buf.len();
        let (parsed, head_len) = if self.buf.is_empty() {
            parse_request(bytes, key)
        } else {
            self.buf.extend_from_slice(bytes);
            // A head can only end at a newline, so a piece without one needs no reparse (a
            // head sent a byte at a time would otherwise be rescanned from the start each time).
            if self.buf.len() <= MAX_HEAD && !bytes.contains(&b'\n') {
                return Parsed::Partial;
            }
            parse_request(&self.buf, key)
        };
        match parsed {
            None if self.buf.is_empty() => {
                self.buf.extend_from_slice(bytes);
                Parsed::Partial
            }
            None => Parsed::Partial,
            Some(result) => {
                self.buf = Vec::new();
                let body_at = head_len.map_or(bytes.len(), |n| n.saturating_sub(before));
                Parsed::Done {
                    result,
                    body_at: body_at.min(bytes.len()),
                }
            }
        }
    }

    /// Bytes held while waiting for the rest of the head.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Parses and routes a request head from the bytes received so far: `None` while partial, else
/// the verdict and, for a complete head, its length.
pub fn parse_request(
    buf: &[u8],
    key: Option<&[u8]>,
) -> (Option<Result<Request, Status>>, Option<usize>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return (Some(Err(Status::HeadTooLarge)), None),
        Err(_) => return (Some(Err(Status::BadRequest)), None),
    };
    match status {
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            (Some(Err(Status::HeadTooLarge)), None)
        }
        httparse::Status::Partial => (None, None),
        httparse::Status::Complete(n) if n > MAX_HEAD => (Some(Err(Status::HeadTooLarge)), None),
        httparse::Status::Complete(n) => (Some(route(&req, key)), Some(n)),
    }
}

fn route(req: &httparse::Request<'_, '_>, key: Option<&[u8]>) -> Result<Request, Status> {
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Status::BadRequest);
    };
    let path_and_query = origin_form(target);
    let (path, query) = match path_and_query.and_then(|p| p.split_once('?')) {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query.unwrap_or(""), None),
    };
    if let Some(name) = path.strip_prefix("/publish/") {
        if !matches!(method, "POST" | "PUT") {
            return Err(Status::PublishMethodNotAllowed);
        }
        let route = publish(req, version, name, query, key).unwrap_or_else(|r| r);
        return Ok(Request {
            route,
            head_only: false,
        });
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Status::MethodNotAllowed),
    };
    // From here on the method is known, so a refusal to a HEAD request gets no body.
    let route = match (path_and_query, check_headers(req.headers, version)) {
        (_, Err(status)) => Route::Refused(status, ""),
        (None, Ok(())) => Route::Refused(Status::BadRequest, ""),
        (Some(_), Ok(())) => route_get(req, path, query),
    };
    Ok(Request { route, head_only })
}

fn route_get(req: &httparse::Request<'_, '_>, path: &str, query: Option<&str>) -> Route {
    let events = |stream| {
        let from_header = header(req.headers, "last-event-id")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(EventId::parse);
        let from_query = query
            .and_then(|q| query_param(q, "last_event_id"))
            .and_then(EventId::parse);
        Route::Events {
            stream,
            last_event_id: from_header.or(from_query),
            gzip: accepts_gzip(req.headers),
        }
    };
    match path {
        "/" | "/index.html" => return Route::Page(None),
        "/events" => return events(None),
        "/favicon.ico" => return Route::NoContent,
        "/api/streams" => return Route::Streams(None),
        "/metrics" => return Route::Metrics,
        "/healthz" => return Route::Health,
        _ => {}
    }
    if let Some(i) = ASSETS.iter().position(|a| a.path == path) {
        return Route::Asset(i);
    }
    if let Some(name) = path.strip_prefix("/api/streams/") {
        return match StreamName::parse(name) {
            Ok(n) => Route::Streams(Some(n)),
            Err(e) => refused_name(e),
        };
    }
    if let Some(name) = path.strip_prefix("/events/") {
        return match StreamName::parse(name) {
            Ok(n) => events(Some(n)),
            Err(e) => refused_name(e),
        };
    }
    match path.strip_prefix('/').map(StreamName::parse) {
        Some(Ok(n)) => Route::Page(Some(n)),
        _ => Route::Refused(Status::NotFound, ""),
    }
}

fn refused_name(e: NameError) -> Route {
    match e {
        NameError::Reserved => Route::Refused(Status::NotFound, "that name is reserved"),
        NameError::Empty => Route::Refused(Status::BadRequest, "the stream name is missing"),
        NameError::TooLong => Route::Refused(
            Status::BadRequest,
            "a stream name has at most 64 characters",
        ),
        NameError::BadChar => Route::Refused(
            Status::BadRequest,
            "a stream name has only the characters A-Z a-z 0-9 _ -",
        ),
    }
}

fn publish(
    req: &httparse::Request<'_, '_>,
    version: u8,
    name: &str,
    query: Option<&str>,
    key: Option<&[u8]>,
) -> Result<Route, Route> {
    let stream = StreamName::parse(name).map_err(refused_name)?;
    let bad = |why| Route::Refused(Status::BadRequest, why);
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut proxied = false;
    for h in req.headers.iter() {
        proxied |= ["forwarded", "x-forwarded-for", "x-real-ip", "via"]
            .iter()
            .any(|p| h.name.eq_ignore_ascii_case(p));
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || version == 0 || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(bad("only 'Transfer-Encoding: chunked' is understood"));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok());
            if length.is_some() || n.is_none() {
                return Err(bad("a bad or repeated Content-Length"));
            }
            length = n;
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Err(bad("HTTP/1.1 needs exactly one Host header"));
    }
    let body = match (chunked, length) {
        (true, Some(_)) => {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        (true, None) => Body::Chunked,
        (false, Some(n)) => Body::Length(n),
        (false, None) => Body::UntilClose,
    };
    let auth = match key {
        Some(k) => auth::check(
            k,
            header(req.headers, "authorization"),
            query.and_then(|q| query_param(q, "key")),
        ),
        None => Auth::Missing,
    };
    Ok(Route::Publish(Publish {
        stream,
        body,
        expect_continue,
        auth,
        proxied,
    }))
}

/// Rejects GET/HEAD heads that smuggle a body or disagree with themselves.
fn check_headers(headers: &[httparse::Header<'_>], version: u8) -> Result<(), Status> {
    let mut hosts = 0;
    let mut lengths = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Status::BadRequest);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            if h.value.trim_ascii() != b"0" {
                return Err(Status::BadRequest);
            }
        }
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    // HTTP/1.1 requires exactly one Host; HTTP/1.0 may omit it.
    if hosts > 1 || lengths > 1 || (version == 1 && hosts == 0) {
        return Err(Status::BadRequest);
    }
    Ok(())
}

/// The path and query of a request target: origin form as is, absolute form (`http://host/p`)
/// reduced to its path as RFC 9112 requires servers to accept. Anything else is `None`.
fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let lower = target
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return None;
    };
    match rest.find('/') {
        Some(0) | None => None,
        Some(i) => Some(&rest[i..]),
    }
}

/// True when the `Accept-Encoding` headers (RFC 9110, 12.5.3) accept gzip: `gzip` (or its alias
/// `x-gzip`) with a non-zero weight, or `*` with one when gzip is not named. An element whose
/// weight is not a valid qvalue accepts nothing; parameters other than `q` are ignored.
fn accepts_gzip(headers: &[httparse::Header<'_>]) -> bool {
    let (mut gzip, mut any) = (None::<u16>, None::<u16>);
    let values = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("accept-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','));
    for element in values {
        let mut parts = element.split(|&b| b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let mut weight = Some(1000);
        for p in parts {
            let p = p.trim_ascii();
            if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                weight = qvalue(&p[2..]);
            }
        }
        let Some(w) = weight else { continue };
        let slot = if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
        {
            &mut gzip
        } else if coding == b"*" {
            &mut any
        } else {
            continue;
        };
        *slot = Some(slot.map_or(w, |old| old.max(w)));
    }
    gzip.or(any).is_some_and(|w| w > 0)
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` when it is not one.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |&d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The raw value of `key` in a query string (event ids need no decoding; keys are decoded by
/// `auth`).
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests;
