//! Request parsing and routing.

use super::*;
use base64::Engine;

fn parse(s: &str) -> Option<Result<Request, Status>> {
    parse_request(s.as_bytes(), Some(b"k3y")).0
}

fn ok(s: &str) -> Request {
    match parse(s) {
        Some(Ok(r)) => r,
        other => panic!("{s:?} -> {other:?}"),
    }
}

fn err(s: &str) -> Status {
    match parse(s) {
        Some(Err(e)) => e,
        Some(Ok(Request {
            route: Route::Refused(e, _),
            ..
        })) => e,
        other => panic!("{s:?} -> {other:?}"),
    }
}

fn name(s: &str) -> StreamName {
    StreamName::parse(s).unwrap()
}

fn publish(s: &str) -> Publish {
    match ok(s).route {
        Route::Publish(p) => p,
        other => panic!("{s:?} -> {other:?}"),
    }
}

#[test]
fn routes_pages_events_and_head() {
    assert_eq!(
        ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Page(None)
    );
    assert_eq!(
        ok("GET /index.html HTTP/1.0\r\n\r\n").route,
        Route::Page(None)
    );
    assert_eq!(
        ok("GET /cam_1 HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Page(Some(name("cam_1")))
    );
    assert_eq!(
        ok("GET /player.js HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Asset(1)
    );
    assert_eq!(
        ok("GET /latency.js HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Asset(3)
    );
    let r = ok("HEAD /events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.head_only);
    assert_eq!(
        r.route,
        Route::Events {
            stream: None,
            last_event_id: None,
            gzip: false,
        }
    );
    assert_eq!(
        ok("GET /events/cam HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Events {
            stream: Some(name("cam")),
            last_event_id: None,
            gzip: false,
        }
    );
    assert_eq!(
        ok("GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::NoContent
    );
    assert_eq!(
        ok("GET /api/streams HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Streams(None)
    );
    assert_eq!(
        ok("GET /api/streams/cam HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Streams(Some(name("cam")))
    );
    assert_eq!(
        ok("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Metrics
    );
    assert_eq!(
        ok("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").route,
        Route::Health
    );
}

#[test]
fn invalid_and_reserved_names_are_refused_with_a_reason() {
    for (path, status) in [
        ("/events/a.b", Status::BadRequest),
        ("/events/", Status::BadRequest),
        ("/events/api", Status::NotFound),
        ("/api", Status::NotFound),
        ("/a.b", Status::NotFound),
    ] {
        let r = ok(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(
            matches!(r.route, Route::Refused(s, _) if s == status),
            "{path}: {r:?}"
        );
    }
    let long = format!("GET /events/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(65));
    assert!(
        matches!(ok(&long).route, Route::Refused(Status::BadRequest, why) if why.contains("64"))
    );
}

#[test]
fn last_event_id_from_header_or_query() {
    let want = Some(EventId {
        sequence: 12,
        live_ms: 34,
    });
    let events = |last_event_id| Route::Events {
        stream: None,
        last_event_id,
        gzip: false,
    };
    let h = ok("GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 12.34\r\n\r\n");
    assert_eq!(h.route, events(want));
    let q = ok("GET /events?a=b&last_event_id=12.34 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(q.route, events(want));
    let bad = ok("GET /events?last_event_id=zz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(bad.route, events(None));
}

#[test]
fn partial_until_the_blank_line() {
    assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), None);
    assert_eq!(parse("GE"), None);
    assert_eq!(parse(""), None);
}

#[test]
fn errors_get_the_right_status() {
    assert_eq!(
        err("GET /no.pe HTTP/1.1\r\nHost: x\r\n\r\n"),
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
        parse_request(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", None).0,
        Some(Err(Status::BadRequest))
    );
}

#[test]
fn publish_requests_and_their_bodies() {
    let p = publish("POST /publish/cam HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(p.stream, name("cam"));
    assert_eq!(p.body, Body::Chunked);
    assert!(p.expect_continue);
    assert_eq!(p.auth, Auth::Missing);
    assert!(!p.proxied);
    let p =
        publish("POST /publish/cam HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n");
    assert!(p.proxied);
    let p = publish("PUT /publish/cam?key=k3y HTTP/1.1\r\nHost: x\r\nContent-Length: 1234\r\n\r\n");
    assert_eq!(p.body, Body::Length(1234));
    assert_eq!(p.auth, Auth::Valid);
    let p = publish("POST /publish/cam HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n");
    assert_eq!(p.body, Body::UntilClose);
    assert_eq!(p.auth, Auth::Invalid);
    let basic = base64::engine::general_purpose::STANDARD.encode("u:k3y");
    let p = publish(&format!(
        "POST /publish/cam HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\r\n"
    ));
    assert_eq!(p.auth, Auth::Valid);
    for bad in [
        "POST /publish/cam HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST /publish/cam HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "POST /publish/cam HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST /publish/cam HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /publish/cam HTTP/1.1\r\n\r\n",
        "POST /publish/a.b HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(err(bad), Status::BadRequest, "{bad:?}");
    }
    assert_eq!(
        err("POST /publish/events HTTP/1.1\r\nHost: x\r\n\r\n"),
        Status::NotFound
    );
    assert_eq!(
        err("GET /publish/cam HTTP/1.1\r\nHost: x\r\n\r\n"),
        Status::PublishMethodNotAllowed
    );
    // Without a configured key, credentials are not looked at.
    let (r, _) = parse_request(b"POST /publish/cam?key=x HTTP/1.1\r\nHost: x\r\n\r\n", None);
    assert!(matches!(
        r,
        Some(Ok(Request {
            route: Route::Publish(Publish {
                auth: Auth::Missing,
                ..
            }),
            ..
        }))
    ));
}

#[test]
fn head_reader_gives_the_same_answer_for_every_split() {
    let req = b"POST /publish/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nBODY";
    let whole = HeadReader::default().feed(req, None);
    let Parsed::Done { result, body_at } = whole else {
        panic!("{whole:?}")
    };
    assert!(result.is_ok());
    assert_eq!(&req[body_at..], b"BODY");
    for cut in 1..req.len() - 4 {
        let mut r = HeadReader::default();
        assert_eq!(r.feed(&req[..cut], None), Parsed::Partial, "cut at {cut}");
        assert_eq!(r.buffered(), cut);
        let piece = &req[cut..];
        let Parsed::Done {
            result: again,
            body_at,
        } = r.feed(piece, None)
        else {
            panic!("cut at {cut}")
        };
        assert_eq!(again, result, "cut at {cut}");
        assert_eq!(&piece[body_at..], b"BODY", "cut at {cut}");
        assert_eq!(r.buffered(), 0);
    }
    // A head that never ends is cut off just past MAX_HEAD.
    let mut r = HeadReader::default();
    assert_eq!(r.feed(b"GET / HTTP/1.1\r\nX: ", None), Parsed::Partial);
    let mut fed = 0;
    let verdict = loop {
        match r.feed(b"aaaa", None) {
            Parsed::Partial => fed += 4,
            done => break done,
        }
        assert!(r.buffered() <= MAX_HEAD + 4);
    };
    assert!(matches!(
        verdict,
        Parsed::Done {
            result: Err(Status::HeadTooLarge),
            ..
        }
    ));
    assert!(fed <= MAX_HEAD);
    assert_eq!(r.buffered(), 0);
}

#[test]
fn refusals_to_head_requests_have_no_body() {
    let r = ok("HEAD /no.pe HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.route, Route::Refused(Status::NotFound, ""));
    assert!(r.head_only);
    let responses = Responses::new(true);
    let head = responses.error(Status::NotFound, true);
    assert!(head.bytes.ends_with(b"\r\n\r\n"));
    let get = responses.error(Status::NotFound, false);
    assert!(get.bytes.starts_with(&head.bytes) && get.bytes.ends_with(b"404 Not Found\n"));
    let why = responses.refusal(Status::BadRequest, "bad name", false);
    assert!(why.bytes.ends_with(b"400 Bad Request: bad name\n"));
}

#[test]
fn absolute_form_is_reduced_to_its_path() {
    let r = ok("GET http://example.test:8080/events HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        r.route,
        Route::Events {
            stream: None,
            last_event_id: None,
            gzip: false,
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
    let r = Responses::new(true);
    let text = String::from_utf8(r.error(Status::MethodNotAllowed, false).bytes.to_vec()).unwrap();
    assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(text.contains("Allow: GET, HEAD\r\n"));
    let text = String::from_utf8(
        r.error(Status::PublishMethodNotAllowed, false)
            .bytes
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("Allow: POST, PUT\r\n"));
    let text = String::from_utf8(r.error(Status::Unauthorized, false).bytes.to_vec()).unwrap();
    assert!(text.contains("WWW-Authenticate: Basic realm=\"ssecast\""));
    let text = String::from_utf8(r.error(Status::Unavailable, false).bytes.to_vec()).unwrap();
    assert!(text.contains("Retry-After: 5\r\n"));
    let head = String::from_utf8(r.stream_head(false, false).bytes.to_vec()).unwrap();
    assert!(head.contains("Content-Type: text/event-stream\r\n"));
    assert!(head.contains("X-Accel-Buffering: no\r\n"));
    assert!(head.ends_with("\r\n\r\nretry: 2000\n\n"));
    assert!(!head.contains("Content-Length") && !head.contains("chunked"));
    let page = r.asset(0, false).unwrap();
    let head_only = r.asset(0, true).unwrap();
    assert_eq!(page.len() - head_only.len(), ASSETS[0].body.len());
}

/// Whether `GET /events` with these `Accept-Encoding` lines gets gzip.
fn gzip_for(lines: &[&str]) -> bool {
    let mut head = String::from("GET /events HTTP/1.1\r\nHost: x\r\n");
    for l in lines {
        head.push_str(&format!("Accept-Encoding: {l}\r\n"));
    }
    head.push_str("\r\n");
    match ok(&head).route {
        Route::Events { gzip, .. } => gzip,
        other => panic!("{other:?}"),
    }
}

#[test]
fn accept_encoding_chooses_gzip_only_when_it_is_accepted() {
    assert!(!gzip_for(&[]), "no header: plain");
    for yes in [
        "gzip",
        "GZIP",
        "x-gzip",
        "gzip, deflate, br",
        "gzip, deflate, br, zstd",
        "br;q=1.0, gzip;q=0.8, *;q=0.1",
        "gzip;q=0.001",
        "gzip;q=1",
        "gzip;q=1.000",
        "gzip ; q=0.5",
        "*",
        "br, *;q=0.5",
        "identity, gzip",
        "gzip;level=9",
    ] {
        assert!(gzip_for(&[yes]), "{yes}");
    }
    for no in [
        "",
        "identity",
        "gzip;q=0",
        "gzip;q=0.000",
        "GZIP;Q=0",
        "deflate",
        "br",
        "zstd, br, deflate",
        "q=0",
        "*;q=0",
        "gzip;q=0, *",
        "*, gzip;q=0",
        "gzip;q=abc",
        "gzip;q=1.5",
        "gzip;q=2",
        "gzip;q=0.0001",
        "gzip;q=",
        "gzipx",
        "g zip",
        ",,,;;;",
        "gz!p;;q=0.5=",
        "=;q=1",
    ] {
        assert!(!gzip_for(&[no]), "{no:?}");
    }
    assert!(gzip_for(&["deflate", "gzip"]), "lists across header lines");
    assert!(!gzip_for(&["gzip;q=0", "deflate"]));
}

#[test]
fn accept_encoding_that_is_not_text_is_plain() {
    let head = b"GET /events HTTP/1.1\r\nHost: x\r\nAccept-Encoding: \xffgzip\xfe\r\n\r\n";
    match parse_request(head, None).0 {
        Some(Ok(Request {
            route: Route::Events { gzip, .. },
            ..
        })) => assert!(!gzip),
        Some(Err(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn compressed_stream_heads_say_so_and_plain_ones_only_vary() {
    let r = Responses::new(true);
    assert!(r.compresses());
    let plain = String::from_utf8_lossy(&r.stream_head(false, false).bytes).into_owned();
    assert!(plain.contains("Vary: Accept-Encoding\r\n"));
    assert!(!plain.contains("Content-Encoding"));
    assert!(plain.ends_with("\r\n\r\nretry: 2000\n\n"));
    let gz = &r.stream_head(true, false).bytes;
    let split = gz.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = std::str::from_utf8(&gz[..split]).unwrap();
    assert!(head.contains("Content-Encoding: gzip\r\n"));
    assert!(head.contains("Vary: Accept-Encoding\r\n"));
    assert!(head.contains("Cache-Control: no-cache, no-transform\r\n"));
    assert_eq!(&gz[split..split + 10], &crate::sse::deflate::GZIP_HEADER);
    assert_eq!(&*r.stream_head(true, true).bytes, &gz[..split]);
    let off = Responses::new(false);
    assert!(!off.compresses());
    let plain_off = &off.stream_head(true, false).bytes;
    assert!(!String::from_utf8_lossy(plain_off).contains("Vary"));
    assert!(plain_off.ends_with(b"\r\n\r\nretry: 2000\n\n"));
}
