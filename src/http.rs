//! HTTP/1.x requests: parses a request head with httparse under strict limits, routes it (the one
//! place that knows every endpoint), and builds the fixed responses, each encoded once at startup.
//!
//! Pure: bytes in, a routed request or an error status out. Nothing here allocates per request.

use crate::sse::{EventId, Frame};
use std::rc::Rc;

/// Largest request head accepted; longer heads get 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines accepted; more get 431.
pub const MAX_HEADERS: usize = 32;

/// An error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadTooLarge,
    Unavailable,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::HeadTooLarge,
        Status::Unavailable,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::HeadTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::HeadTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }

    fn extra_headers(self) -> &'static str {
        match self {
            Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
            Status::Unavailable => "Retry-After: 5\r\n",
            _ => "",
        }
    }
}

/// A file of the viewer page, embedded in the binary.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file served from `web/`. Nothing is ever read from disk, so no path can escape it.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/player.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/player.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/style.css"),
    },
];

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An index into [`ASSETS`].
    Asset(usize),
    /// The SSE stream.
    Events { last_event_id: Option<EventId> },
    /// `/favicon.ico`: an empty 204 so browsers stop asking.
    NoContent,
    /// A well-formed GET or HEAD that is refused (unknown path, bad headers).
    Refused(Status),
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
    /// The head is complete (or can never be valid).
    Done(Result<Request, Status>),
}

/// Collects a request head that may arrive in pieces. The common case, a head that arrives in
/// one read, is parsed straight from the caller's buffer and never copied or allocated.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Feeds the bytes of one read.
    ///
    /// INVARIANT: the buffer never holds more than `MAX_HEAD` bytes plus one read, because
    /// `parse_request` answers `Done` once more than `MAX_HEAD` bytes are buffered.
    pub fn feed(&mut self, bytes: &[u8]) -> Parsed {
        let parsed = if self.buf.is_empty() {
            parse_request(bytes)
        } else {
            self.buf.extend_from_slice(bytes);
            // A head can only end at a newline, so a piece without one needs no reparse (a
            // head sent a byte at a time would otherwise be rescanned from the start each time).
            if self.buf.len() <= MAX_HEAD && !bytes.contains(&b'\n') {
                return Parsed::Partial;
            }
            parse_request(&self.buf)
        };
        match parsed {
            Parsed::Partial if self.buf.is_empty() => self.buf.extend_from_slice(bytes),
            Parsed::Partial => {}
            Parsed::Done(_) => self.buf = Vec::new(),
        }
        parsed
    }

    /// Bytes held while waiting for the rest of the head.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Parses and routes a request head from the bytes received so far. Bytes after the head (a body
/// or pipelined requests) are ignored: every non-stream response closes the connection.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Done(Err(Status::HeadTooLarge)),
        Err(_) => return Parsed::Done(Err(Status::BadRequest)),
    };
    match status {
        httparse::Status::Partial if buf.len() > MAX_HEAD => {
            Parsed::Done(Err(Status::HeadTooLarge))
        }
        httparse::Status::Partial => Parsed::Partial,
        httparse::Status::Complete(n) if n > MAX_HEAD => Parsed::Done(Err(Status::HeadTooLarge)),
        httparse::Status::Complete(_) => Parsed::Done(route(&req)),
    }
}

fn route(req: &httparse::Request<'_, '_>) -> Result<Request, Status> {
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Status::BadRequest);
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Status::MethodNotAllowed),
    };
    // From here on the method is known, so a refusal to a HEAD request gets no body.
    let route = route_target(req, target, version).unwrap_or_else(Route::Refused);
    Ok(Request { route, head_only })
}

fn route_target(
    req: &httparse::Request<'_, '_>,
    target: &str,
    version: u8,
) -> Result<Route, Status> {
    check_headers(req.headers, version)?;
    let path_and_query = origin_form(target).ok_or(Status::BadRequest)?;
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    if path == "/events" {
        let from_header = header(req.headers, "last-event-id")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(EventId::parse);
        let from_query = query
            .and_then(|q| query_param(q, "last_event_id"))
            .and_then(EventId::parse);
        Ok(Route::Events {
            last_event_id: from_header.or(from_query),
        })
    } else if path == "/favicon.ico" {
        Ok(Route::NoContent)
    } else if let Some(i) = ASSETS
        .iter()
        .position(|a| a.path == path || (a.path == "/" && path == "/index.html"))
    {
        Ok(Route::Asset(i))
    } else {
        Err(Status::NotFound)
    }
}

/// Rejects heads that smuggle a body or disagree with themselves.
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

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The value of `key` in a query string. Event ids are digits and a dot, so no percent-decoding
/// is needed; an encoded value simply fails to parse as an id.
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Every fixed response, encoded once.
pub struct Responses {
    /// `(GET, HEAD)` responses per asset.
    assets: Vec<(Rc<Frame>, Rc<Frame>)>,
    no_content: Rc<Frame>,
    /// `(GET, HEAD)` responses per status, in the order of `Status::ALL`.
    errors: Vec<(Rc<Frame>, Rc<Frame>)>,
    /// The response head of the SSE stream.
    pub stream_head: Rc<Frame>,
}

impl Responses {
    pub fn new() -> Responses {
        let assets = ASSETS
            .iter()
            .map(|a| {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                     Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
                     Connection: close\r\n\r\n",
                    a.content_type,
                    a.body.len()
                );
                let mut get = head.clone().into_bytes();
                get.extend_from_slice(a.body);
                (Frame::control(get), Frame::control(head.into_bytes()))
            })
            .collect();
        let errors = Status::ALL
            .iter()
            .map(|&s| {
                let body = format!("{} {}\n", s.code(), s.reason());
                let head = format!(
                    "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Length: {}\r\n{}Connection: close\r\n\r\n",
                    s.code(),
                    s.reason(),
                    body.len(),
                    s.extra_headers()
                );
                let get = format!("{head}{body}");
                (
                    Frame::control(get.into_bytes()),
                    Frame::control(head.into_bytes()),
                )
            })
            .collect();
        Responses {
            assets,
            no_content: Frame::control(
                &b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"[..],
            ),
            errors,
            stream_head: Frame::control(
                &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                   Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\
                   Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"[..],
            ),
        }
    }

    pub fn asset(&self, index: usize, head_only: bool) -> Option<&Rc<Frame>> {
        self.assets
            .get(index)
            .map(|(get, head)| if head_only { head } else { get })
    }

    pub fn no_content(&self) -> &Rc<Frame> {
        &self.no_content
    }

    /// The response for `status`; for HEAD (`head_only`) without its body.
    pub fn error(&self, status: Status, head_only: bool) -> &Rc<Frame> {
        // Every status has a response built in `new`.
        let i = Status::ALL.iter().position(|&s| s == status).unwrap_or(0);
        let (get, head) = &self.errors[i];
        if head_only {
            head
        } else {
            get
        }
    }
}

impl Default for Responses {
    fn default() -> Self {
        Responses::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Parsed {
        parse_request(s.as_bytes())
    }

    fn ok(s: &str) -> Request {
        match parse(s) {
            Parsed::Done(Ok(r)) => r,
            other => panic!("{s:?} -> {other:?}"),
        }
    }

    fn err(s: &str) -> Status {
        match parse(s) {
            Parsed::Done(Err(e)) => e,
            Parsed::Done(Ok(Request {
                route: Route::Refused(e),
                ..
            })) => e,
            other => panic!("{s:?} -> {other:?}"),
        }
    }

    #[test]
    fn routes_page_events_and_head() {
        assert_eq!(
            ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n").route,
            Route::Asset(0)
        );
        assert_eq!(
            ok("GET /index.html HTTP/1.0\r\n\r\n").route,
            Route::Asset(0)
        );
        assert_eq!(
            ok("GET /player.js HTTP/1.1\r\nHost: x\r\n\r\n").route,
            Route::Asset(1)
        );
        let r = ok("HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.head_only);
        assert_eq!(
            r.route,
            Route::Events {
                last_event_id: None
            }
        );
        assert_eq!(
            ok("GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n").route,
            Route::NoContent
        );
    }

    #[test]
    fn last_event_id_from_header_or_query() {
        let want = Some(EventId {
            sequence: 12,
            live_ms: 34,
        });
        let h = ok("GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 12.34\r\n\r\n");
        assert_eq!(
            h.route,
            Route::Events {
                last_event_id: want
            }
        );
        let q = ok("GET /events?a=b&last_event_id=12.34 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            q.route,
            Route::Events {
                last_event_id: want
            }
        );
        let bad = ok("GET /events?last_event_id=zz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            bad.route,
            Route::Events {
                last_event_id: None
            }
        );
    }

    #[test]
    fn partial_until_the_blank_line() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        assert_eq!(parse("GE"), Parsed::Partial);
        assert_eq!(parse(""), Parsed::Partial);
    }

    #[test]
    fn errors_get_the_right_status() {
        assert_eq!(
            err("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
            Status::NotFound
        );
        assert_eq!(
            err("POST /events HTTP/1.1\r\nHost: x\r\n\r\n"),
            Status::MethodNotAllowed
        );
        assert_eq!(err("BLAH\r\n\r\n"), Status::BadRequest);
        assert_eq!(err("GET / HTTP/1.1\r\n\r\n"), Status::BadRequest, "no Host");
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
            Status::BadRequest
        );
        assert_eq!(
            err("GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n"),
            Status::NotFound
        );
        assert_eq!(
            err("GET /%65vents HTTP/1.1\r\nHost: a\r\n\r\n"),
            Status::NotFound
        );
        assert_eq!(err("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), Status::BadRequest);
        assert_eq!(err("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), Status::BadRequest);
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..40 {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(err(&many), Status::HeadTooLarge);
        let long = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(err(&long), Status::HeadTooLarge);
        assert_eq!(
            parse_request(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
            Parsed::Done(Err(Status::BadRequest))
        );
    }

    #[test]
    fn head_reader_gives_the_same_answer_for_every_split() {
        let req = b"GET /events?last_event_id=5.6 HTTP/1.1\r\nHost: x\r\n\r\n";
        let whole = HeadReader::default().feed(req);
        assert!(matches!(whole, Parsed::Done(Ok(_))));
        for cut in 1..req.len() {
            let mut r = HeadReader::default();
            assert_eq!(r.feed(&req[..cut]), Parsed::Partial, "cut at {cut}");
            assert_eq!(r.buffered(), cut);
            assert_eq!(r.feed(&req[cut..]), whole, "cut at {cut}");
            assert_eq!(r.buffered(), 0);
        }
        // A head that never ends is cut off just past MAX_HEAD.
        let mut r = HeadReader::default();
        assert_eq!(r.feed(b"GET / HTTP/1.1\r\nX: "), Parsed::Partial);
        let mut fed = 0;
        let verdict = loop {
            match r.feed(b"aaaa") {
                Parsed::Partial => fed += 4,
                done => break done,
            }
            assert!(r.buffered() <= MAX_HEAD + 4);
        };
        assert_eq!(verdict, Parsed::Done(Err(Status::HeadTooLarge)));
        assert!(fed <= MAX_HEAD);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn refusals_to_head_requests_have_no_body() {
        let r = ok("HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.route, Route::Refused(Status::NotFound));
        assert!(r.head_only);
        let responses = Responses::new();
        let head = responses.error(Status::NotFound, true);
        assert!(head.bytes.ends_with(b"\r\n\r\n"));
        let get = responses.error(Status::NotFound, false);
        assert!(get.bytes.starts_with(&head.bytes) && get.bytes.ends_with(b"404 Not Found\n"));
    }

    #[test]
    fn absolute_form_is_reduced_to_its_path() {
        let r = ok("GET http://example.test:8080/events HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            r.route,
            Route::Events {
                last_event_id: None
            }
        );
        assert_eq!(
            err("GET http://example.test HTTP/1.1\r\nHost: x\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            err("GET ftp://x/events HTTP/1.1\r\nHost: x\r\n\r\n"),
            Status::BadRequest
        );
        assert_eq!(
            err("POST /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
            Status::MethodNotAllowed
        );
        assert_eq!(
            err("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
            Status::MethodNotAllowed
        );
    }

    #[test]
    fn responses_are_complete_http() {
        let r = Responses::new();
        let text =
            String::from_utf8(r.error(Status::MethodNotAllowed, false).bytes.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Allow: GET, HEAD\r\n"));
        let text = String::from_utf8(r.error(Status::Unavailable, false).bytes.to_vec()).unwrap();
        assert!(text.contains("Retry-After: 5\r\n"));
        let head = String::from_utf8(r.stream_head.bytes.to_vec()).unwrap();
        assert!(head.contains("Content-Type: text/event-stream\r\n"));
        assert!(head.contains("X-Accel-Buffering: no\r\n"));
        assert!(!head.contains("Content-Length") && !head.contains("chunked"));
        let page = r.asset(0, false).unwrap();
        let head_only = r.asset(0, true).unwrap();
        assert_eq!(page.len() - head_only.len(), ASSETS[0].body.len());
    }
}
