//! Every response ssecast sends that is not the stream itself: the embedded viewer page, the
//! error statuses (each encoded once at startup, GET and HEAD forms) and the few built per
//! request (an error with its reason, a publish summary, the status JSON).

use crate::sse::deflate::{deflate_frame, GZIP_HEADER};
use crate::sse::{Frame, RETRY};
use std::rc::Rc;

/// An error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    /// Publishing needs a key that was not given (with a Basic challenge, which ffmpeg needs
    /// before it sends the credentials from its URL).
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// A method other than POST/PUT on `/publish/NAME`.
    PublishMethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeadTooLarge,
    Unavailable,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::PublishMethodNotAllowed,
        Status::RequestTimeout,
        Status::Conflict,
        Status::PayloadTooLarge,
        Status::UnsupportedMediaType,
        Status::HeadTooLarge,
        Status::Unavailable,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed | Status::PublishMethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::Conflict => 409,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::HeadTooLarge => 431,
            Status::Unavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed | Status::PublishMethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::Conflict => "Conflict",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::UnsupportedMediaType => "Unsupported Media Type",
            Status::HeadTooLarge => "Request Header Fields Too Large",
            Status::Unavailable => "Service Unavailable",
        }
    }

    fn extra_headers(self) -> &'static str {
        match self {
            Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
            Status::PublishMethodNotAllowed => "Allow: POST, PUT\r\n",
            Status::Unauthorized => {
                "WWW-Authenticate: Basic realm=\"ssecast\", charset=\"UTF-8\"\r\n"
            }
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

/// Every file served from `web/`. Nothing is ever read from disk, so no path can escape it. The
/// page (index 0) is served at `/` and at `/NAME` for every stream.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/player.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/player.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/latency.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/latency.js"),
    },
];

/// A complete `Connection: close` response with a body (or only its head).
pub fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> Rc<Frame> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n{extra_headers}\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    Frame::control(out)
}

/// Every fixed response, encoded once.
pub struct Responses {
    /// `(GET, HEAD)` responses per asset.
    assets: Vec<(Rc<Frame>, Rc<Frame>)>,
    no_content: Rc<Frame>,
    /// `(GET, HEAD)` responses per status, in the order of `Status::ALL`.
    errors: Vec<(Rc<Frame>, Rc<Frame>)>,
    /// `(GET, HEAD)`: the response head of the SSE stream with the `retry` line that starts
    /// its body, and the head alone.
    stream_head: (Rc<Frame>, Rc<Frame>),
    /// The same two for a viewer that asked for gzip: the head says `Content-Encoding: gzip`
    /// and the body starts with the gzip header and the compressed `retry` line. `None` with
    /// `--compress off`.
    stream_head_gzip: Option<(Rc<Frame>, Rc<Frame>)>,
    /// The interim answer to `Expect: 100-continue`.
    pub continue_100: Rc<Frame>,
}

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\
    Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n";

/// The head of a compressed stream. `no-transform` keeps proxies from recompressing it.
const GZIP_STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
    Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n\
    Cache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n\
    Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n";

impl Responses {
    /// Every fixed response; `compress` offers gzip to viewers that accept it.
    pub fn new(compress: bool) -> Responses {
        let assets = ASSETS
            .iter()
            .map(|a| {
                let r = |head_only| response(200, "OK", a.content_type, "", a.body, head_only);
                (r(false), r(true))
            })
            .collect();
        let errors = Status::ALL
            .iter()
            .map(|&s| {
                let body = format!("{} {}\n", s.code(), s.reason());
                let r = |head_only| error_response(s, &body, head_only);
                (r(false), r(true))
            })
            .collect();
        // The stream varies by Accept-Encoding once compression is on, plain or not.
        let plain_head = if compress {
            STREAM_HEAD.replacen("\r\n\r\n", "\r\nVary: Accept-Encoding\r\n\r\n", 1)
        } else {
            STREAM_HEAD.to_string()
        };
        let mut stream_head = plain_head.clone().into_bytes();
        stream_head.extend_from_slice(RETRY);
        let stream_head_gzip = compress.then(|| {
            let mut head = GZIP_STREAM_HEAD.as_bytes().to_vec();
            head.extend_from_slice(&GZIP_HEADER);
            head.extend_from_slice(&deflate_frame(RETRY));
            (
                Frame::control(head),
                Frame::control(GZIP_STREAM_HEAD.as_bytes()),
            )
        });
        Responses {
            assets,
            no_content: Frame::control(
                &b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"[..],
            ),
            errors,
            stream_head: (
                Frame::control(stream_head),
                Frame::control(plain_head.into_bytes()),
            ),
            stream_head_gzip,
            continue_100: Frame::control(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]),
        }
    }

    /// True when viewers that accept gzip get it.
    pub fn compresses(&self) -> bool {
        self.stream_head_gzip.is_some()
    }

    /// The stream's response head and first body bytes, compressed or plain; for HEAD
    /// (`head_only`) the head alone. Compressed only when [`Responses::compresses`].
    pub fn stream_head(&self, compressed: bool, head_only: bool) -> &Rc<Frame> {
        let (get, head) = match (&self.stream_head_gzip, compressed) {
            (Some(gzip), true) => gzip,
            _ => &self.stream_head,
        };
        if head_only {
            head
        } else {
            get
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

    /// The response for `status` with a body that says why (built for this request); the
    /// prebuilt one when there is nothing to add.
    pub fn refusal(&self, status: Status, why: &str, head_only: bool) -> Rc<Frame> {
        if why.is_empty() {
            return Rc::clone(self.error(status, head_only));
        }
        let body = format!("{} {}: {why}\n", status.code(), status.reason());
        error_response(status, &body, head_only)
    }
}

fn error_response(status: Status, body: &str, head_only: bool) -> Rc<Frame> {
    response(
        status.code(),
        status.reason(),
        "text/plain; charset=utf-8",
        status.extra_headers(),
        body.as_bytes(),
        head_only,
    )
}

impl Default for Responses {
    fn default() -> Self {
        Responses::new(true)
    }
}
