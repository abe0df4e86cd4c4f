//! Fetches from a tiny HTTP/1.1 server on loopback that answers each connection with
//! whatever raw bytes the test's handler returns, so that broken answers are easy to make.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{feed_text, TempDir};
use crate::config::FeedSource;
use crate::feeds::{FetchErrorKind, FetchLimits, FetchOutcome, Fetcher, Validators};

#[derive(Clone)]
struct Request {
    /// "GET /path HTTP/1.1"
    line: String,
    /// names lowercased
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler does with a connection: raw bytes to write, and a pause before them.
struct Reply {
    bytes: Vec<u8>,
    delay: Duration,
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut bytes = format!("HTTP/1.1 {status}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !headers.iter().any(|(name, _)| *name == "Content-Length") {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    Reply {
        bytes,
        delay: Duration::ZERO,
    }
}

struct Server {
    url: String,
    /// requests seen, in order
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Serves until the test process ends; handler gets the request and its 0-based index.
    fn start(handler: impl Fn(&Request, usize) -> Reply + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}/feed", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(request.clone());
                    log.len() - 1
                };
                let reply = handler(&request, index);
                // One connection at a time is enough, but a slow reply must not hold up
                // the next attempt's connection.
                std::thread::spawn(move || {
                    std::thread::sleep(reply.delay);
                    let mut stream = stream;
                    let _ = stream.write_all(&reply.bytes);
                    let _ = stream.flush();
                });
            }
        });
        Server { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|r| r.line.clone()).collect()
    }

    /// The `If-None-Match` of each request.
    fn claimed(&self) -> Vec<Option<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|r| r.header("if-none-match").map(str::to_owned))
            .collect()
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request {
        line: line.trim_end().to_owned(),
        headers,
    })
}

fn limits() -> FetchLimits {
    FetchLimits {
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(10),
    }
}

fn fetcher(limits: FetchLimits) -> Fetcher {
    Fetcher::with_proxy(limits, None)
}

fn url(server: &Server) -> FeedSource {
    FeedSource::Url(server.url.clone())
}

#[test]
fn ok_body_with_validators() {
    let body = feed_text("feodo_ipblocklist.csv");
    let served = body.clone();
    let server = Server::start(move |_, _| {
        reply(
            "200 OK",
            &[
                ("ETag", "\"v1\""),
                ("Last-Modified", "Mon, 20 Dec 2021 00:03:32 GMT"),
            ],
            served.as_bytes(),
        )
    });
    let outcome = fetcher(limits())
        .fetch(&url(&server), &Validators::default())
        .unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::Body {
            text: body,
            validators: Validators {
                etag: Some("\"v1\"".to_owned()),
                last_modified: Some("Mon, 20 Dec 2021 00:03:32 GMT".to_owned()),
            },
        }
    );
    assert_eq!(server.requests(), ["GET /feed HTTP/1.1"]);
}

#[test]
fn not_modified_when_the_validators_match() {
    let server = Server::start(|request, _| {
        let etag = request.header("if-none-match");
        let since = request.header("if-modified-since");
        if etag == Some("\"v1\"") && since == Some("Mon, 20 Dec 2021 00:03:32 GMT") {
            reply("304 Not Modified", &[("ETag", "\"v1\"")], b"")
        } else {
            reply("200 OK", &[("ETag", "\"v2\"")], b"192.0.2.1\n")
        }
    });
    let fetcher = fetcher(limits());
    let known = Validators {
        etag: Some("\"v1\"".to_owned()),
        last_modified: Some("Mon, 20 Dec 2021 00:03:32 GMT".to_owned()),
    };
    assert_eq!(
        fetcher.fetch(&url(&server), &known).unwrap(),
        FetchOutcome::NotModified
    );
    let stale = Validators {
        etag: Some("\"v0\"".to_owned()),
        last_modified: None,
    };
    match fetcher.fetch(&url(&server), &stale).unwrap() {
        FetchOutcome::Body { text, validators } => {
            assert_eq!(text, "192.0.2.1\n");
            assert_eq!(validators.etag.as_deref(), Some("\"v2\""));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_modified_to_an_unconditional_request_is_an_error() {
    let server = Server::start(|_, _| reply("304 Not Modified", &[], b""));
    let error = fetcher(limits())
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert!(matches!(error.kind, FetchErrorKind::UnexpectedNotModified));
    assert_eq!(error.attempts, 1);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let server = Server::start(|_, _| reply("500 Internal Server Error", &[], b"oops"));
    let error = fetcher(limits())
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert!(matches!(error.kind, FetchErrorKind::Status(500)), "{error}");
    assert_eq!(error.to_string(), "HTTP status 500 (after 3 attempts)");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_retry_that_succeeds_hides_the_failures() {
    let server = Server::start(|_, index| match index {
        0 => reply("503 Service Unavailable", &[], b""),
        _ => reply("200 OK", &[], b"192.0.2.1\n"),
    });
    let outcome = fetcher(limits())
        .fetch(&url(&server), &Validators::default())
        .unwrap();
    assert!(matches!(outcome, FetchOutcome::Body { .. }));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn client_errors_are_not_retried() {
    let server = Server::start(|_, _| reply("404 Not Found", &[], b"no such feed"));
    let error = fetcher(limits())
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert_eq!(error.to_string(), "HTTP status 404");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn truncated_body_is_an_error() {
    // Content-Length promises more than is sent before the connection closes.
    let server = Server::start(|_, _| {
        reply(
            "200 OK",
            &[("Content-Length", "1000")],
            b"192.0.2.1\n192.0.2.2\n",
        )
    });
    let error = fetcher(limits())
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert!(
        matches!(error.kind, FetchErrorKind::Transport(_)),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with("the body was cut short: "),
        "{error}"
    );
    assert_eq!(error.attempts, 3);
}

#[test]
fn oversized_body_is_refused() {
    let big = vec![b'#'; 4096];
    let declared = big.clone();
    let server = Server::start(move |_, _| reply("200 OK", &[], &declared));
    let small = FetchLimits {
        max_bytes: 1000,
        ..limits()
    };
    let error = fetcher(small.clone())
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert!(
        matches!(error.kind, FetchErrorKind::TooLarge(1000)),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "the feed is larger than 1000 bytes");
    assert_eq!(error.attempts, 1);
    // Without a Content-Length the bound holds while reading.
    let server = Server::start(move |_, _| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        bytes.extend_from_slice(&big);
        Reply {
            bytes,
            delay: Duration::ZERO,
        }
    });
    let error = fetcher(small)
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert!(
        matches!(error.kind, FetchErrorKind::TooLarge(1000)),
        "{error:?}"
    );
}

#[test]
fn slow_server_times_out() {
    let server = Server::start(|_, _| Reply {
        delay: Duration::from_secs(5),
        ..reply("200 OK", &[], b"192.0.2.1\n")
    });
    let quick = FetchLimits {
        timeout: Duration::from_millis(300),
        attempts: 2,
        ..limits()
    };
    let started = Instant::now();
    let error = fetcher(quick)
        .fetch(&url(&server), &Validators::default())
        .unwrap_err();
    assert!(
        matches!(error.kind, FetchErrorKind::Timeout(_)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no complete answer within 300ms (after 2 attempts)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn unreachable_server_is_a_transport_error() {
    // Bound and dropped: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = FeedSource::Url(format!("http://127.0.0.1:{port}/feed"));
    let error = fetcher(limits())
        .fetch(&source, &Validators::default())
        .unwrap_err();
    assert!(
        matches!(error.kind, FetchErrorKind::Transport(_)),
        "{error:?}"
    );
}

#[test]
fn files_are_bounded_and_not_reread_when_unchanged() {
    let dir = TempDir::new("fetch");
    let path = dir.0.join("feed.netset");
    std::fs::write(&path, "192.0.2.1\n").unwrap();
    let source = FeedSource::Path(path.clone());
    let fetcher = fetcher(FetchLimits {
        max_bytes: 64,
        ..limits()
    });
    let FetchOutcome::Body { text, validators } =
        fetcher.fetch(&source, &Validators::default()).unwrap()
    else {
        panic!("a first read has a body");
    };
    assert_eq!(text, "192.0.2.1\n");
    assert_eq!(
        fetcher.fetch(&source, &validators).unwrap(),
        FetchOutcome::NotModified
    );
    std::fs::write(&path, "192.0.2.1\n192.0.2.2\n").unwrap();
    assert!(matches!(
        fetcher.fetch(&source, &validators).unwrap(),
        FetchOutcome::Body { .. }
    ));
    std::fs::write(&path, "#".repeat(65)).unwrap();
    let error = fetcher.fetch(&source, &validators).unwrap_err();
    assert!(
        matches!(error.kind, FetchErrorKind::TooLarge(64)),
        "{error:?}"
    );
    let missing = FeedSource::Path(PathBuf::from("/nonexistent/feed.netset"));
    let error = fetcher.fetch(&missing, &Validators::default()).unwrap_err();
    assert_eq!(error.attempts, 1);
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/feed.netset: No such file"),
        "{error}"
    );
}

#[test]
fn url_feed_keeps_its_iocs_through_errors() {
    let server = Server::start(|_, index| match index {
        0 => reply(
            "200 OK",
            &[("ETag", "\"v1\"")],
            b"# feed\n192.0.2.1\n0.0.0.0 ads.example\n198.51.100.0/24\n",
        ),
        1 => reply("304 Not Modified", &[], b""),
        2 => reply("500 Internal Server Error", &[], b""),
        3 => reply(
            "200 OK",
            &[("ETag", "\"v2\"")],
            b"<html>maintenance</html>\n",
        ),
        _ => reply("304 Not Modified", &[], b""),
    });
    let mut feed = super::feed_config("c2", url(&server), crate::config::FeedFormat::Netset);
    feed.refresh = Some(Duration::from_secs(3600));
    let config = crate::config::ThreatIntelConfig {
        feeds: vec![feed],
        ..Default::default()
    };
    let mut feeds = crate::feeds::Feeds::new(
        &config,
        fetcher(FetchLimits {
            attempts: 1,
            ..limits()
        }),
    );
    let now = Instant::now();
    let first = feeds.refresh_all(now);
    assert_eq!(
        first[0].outcome,
        Ok(crate::feeds::Refreshed::Updated {
            entries: 2,
            bad_lines: 1
        })
    );
    let state = &feeds.states()[0];
    assert_eq!(state.validators.etag.as_deref(), Some("\"v1\""));
    assert_eq!(
        state.first_bad_line,
        Some((
            3,
            "expected one address or network per line, found `0.0.0.0 ads.example` (a hosts file?)"
                .to_owned()
        ))
    );
    let merged = feeds.merged();
    assert_eq!(merged.len(), 2);
    let second = feeds.refresh_all(now);
    assert_eq!(second[0].outcome, Ok(crate::feeds::Refreshed::NotModified));
    let third = feeds.refresh_all(now);
    assert_eq!(
        third[0].outcome.as_ref().unwrap_err().to_string(),
        "HTTP status 500"
    );
    assert_eq!(feeds.merged(), merged);
    let fourth = feeds.refresh_all(now);
    assert_eq!(fourth[0].outcome.as_ref().unwrap_err().line, Some(1));
    assert_eq!(feeds.merged(), merged);
    assert_eq!(feeds.states()[0].consecutive_failures, 2);
    // The refused v2 is not what the next request claims to have.
    let fifth = feeds.refresh_all(now);
    assert_eq!(fifth[0].outcome, Ok(crate::feeds::Refreshed::NotModified));
    assert_eq!(feeds.states()[0].validators.etag.as_deref(), Some("\"v1\""));
    let v1 = Some("\"v1\"".to_owned());
    assert_eq!(
        server.claimed(),
        [None, v1.clone(), v1.clone(), v1.clone(), v1]
    );
}
