//! The HTTP side: the accept loop, the checks every request passes, and the routes.
//!
//! Every request is checked in this order, and the first failure answers `403` with the body
//! `{"error":"forbidden"}` and nothing else (which check failed is not said):
//! 1. the peer is a loopback address (the listener is bound to 127.0.0.1; this is belt and braces);
//! 2. `Host` is `127.0.0.1:PORT` or `localhost:PORT` (DNS rebinding);
//! 3. `Origin`, when present, is `http://127.0.0.1:PORT` or `http://localhost:PORT`, and it must be
//!    present on anything but `GET`/`HEAD` (cross-site requests);
//! 4. `Sec-Fetch-Site`, when present, is `same-origin` or `none`, except for the page's own
//!    top-level navigation (cross-site requests, and other ports of 127.0.0.1, which are "same-site");
//! 5. the token: in the query (`?t=`) for `GET /` only, in the `X-Lifeline-Token` header for
//!    everything else; compared in constant time.
//!
//! Only then is the route looked at (`404`, `405`), then the content type (`415`), the size (`413`)
//! and the body (`400`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use crate::api::{ConsoleCommand, PageCommand};
use crate::state::{EventHub, KEEPALIVE_FRAME};
use crate::upload;

/// The header the page carries the token in on every request after the first.
pub(crate) const TOKEN_HEADER: &str = "x-lifeline-token";

/// The page, with `{{NONCE}}` where each response's CSP nonce goes.
const PAGE: &str = include_str!("console.html");

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle event stream carries a comment, so that it is never idle for long.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// Everything the request handlers share.
pub(crate) struct Shared {
    pub(crate) token: String,
    pub(crate) port: u16,
    pub(crate) hub: EventHub,
    pub(crate) commands: mpsc::Sender<ConsoleCommand>,
    pub(crate) limits: Limits,
    pub(crate) outbox: PathBuf,
    pub(crate) upload_slots: Semaphore,
    pub(crate) next_upload: AtomicU64,
    pub(crate) stop: watch::Receiver<bool>,
    /// The customer's screen and the page's input (`screen.rs`).
    pub(crate) screen: crate::screen::ScreenHub,
}

/// The size limits requests are held to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_command_body: usize,
    pub(crate) max_chat_bytes: usize,
    pub(crate) max_upload_bytes: u64,
}

/// Accepts connections until `stop` turns true; at most `max_connections` at a time (more are
/// closed at once).
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut stop = shared.stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, shared).await;
            drop(permit);
        });
    }
}

/// Resolves once the console is told to stop (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    if !peer.ip().is_loopback() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut stop = shared.stop.clone();
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(request, &shared).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = stopped(&mut stop) => {}
    }
}

async fn answer(request: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let page_navigation = parts.method == Method::GET && path == "/";
    if !host_allowed(&parts.headers, shared.port)
        || !origin_allowed(&parts.headers, &parts.method, shared.port)
        || !fetch_site_allowed(&parts.headers, page_navigation)
    {
        return forbidden();
    }
    let presented = if page_navigation {
        parts.uri.query().and_then(|query| query_value(query, "t"))
    } else {
        parts.headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok())
    };
    if !presented.is_some_and(|token| token_matches(&shared.token, token)) {
        return forbidden();
    }

    match (path, &parts.method) {
        ("/", &Method::GET) => page(),
        ("/api/events", &Method::GET) => events(shared),
        ("/api/command", &Method::POST) => command(&parts.headers, body, shared).await,
        ("/api/upload", &Method::POST) => upload::receive(&parts, body, shared).await,
        // The customer's screen and the page's input (screen sharing, `screen.rs`).
        ("/api/screen", &Method::GET) => crate::screen::stream(shared),
        ("/api/input", &Method::POST) => crate::screen::input(&parts.headers, body, shared).await,
        ("/" | "/api/events" | "/api/screen", _) => method_not_allowed("GET"),
        ("/api/command" | "/api/upload" | "/api/input", _) => method_not_allowed("POST"),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
}

// ---- the routes ----

fn page() -> Response<Body> {
    let Ok(nonce) = crate::random_hex::<16>() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no randomness for the page's nonce");
    };
    let html = PAGE.replace("{{NONCE}}", &nonce);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", Bytes::from(html));
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The event stream: a replay of the current state, then live events, then keep-alives.
fn events(shared: &Arc<Shared>) -> Response<Body> {
    let (replay, mut live) = shared.hub.subscribe();
    let (frames, body) = mpsc::channel::<Bytes>(32);
    let hub = shared.clone();
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        for frame in replay {
            if frames.send(frame).await.is_err() {
                return;
            }
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
        keepalive.reset();
        loop {
            let frame = tokio::select! {
                received = live.recv() => match received {
                    Ok(frame) => frame,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This page fell behind: start it over from the current state.
                        let (replay, fresh) = hub.hub.subscribe();
                        live = fresh;
                        for frame in replay {
                            if frames.send(frame).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = keepalive.tick() => Bytes::from_static(KEEPALIVE_FRAME),
                _ = frames.closed() => return,
                () = stopped(&mut stop) => return,
            };
            if frames.send(frame).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(Body::Stream(body));
    set_common_headers(response.headers_mut());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

async fn command(headers: &HeaderMap, body: Incoming, shared: &Shared) -> Response<Body> {
    if !content_type_is(headers, "application/json") {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json");
    }
    let max = shared.limits.max_command_body;
    if declared_length(headers).is_some_and(|len| len > max as u64) {
        return too_large(max as u64);
    }
    let Ok(body) = Limited::new(body, max).collect().await else {
        return too_large(max as u64);
    };
    let command = match serde_json::from_slice::<PageCommand>(&body.to_bytes()) {
        Ok(command) => command,
        Err(e) => {
            // Position and kind only; the body's values are not echoed back.
            let message =
                format!("bad command JSON ({:?} error at line {} column {})", e.classify(), e.line(), e.column());
            return error(StatusCode::BAD_REQUEST, "bad_request", &message);
        }
    };
    let command = match command.validate(shared.limits.max_chat_bytes) {
        Ok(command) => command,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", &message),
    };
    match hand_over(shared, command) {
        Ok(()) => respond(StatusCode::ACCEPTED, "application/json", Bytes::from_static(br#"{"ok":true}"#)),
        Err(not_handed_over) => not_handed_over.response(),
    }
}

/// Puts a command on the channel to the native side; the error is the answer to give instead.
pub(crate) fn hand_over(shared: &Shared, command: ConsoleCommand) -> Result<(), NotHandedOver> {
    match shared.commands.try_send(command) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(NotHandedOver::Busy),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(NotHandedOver::Gone),
    }
}

/// Why a command did not reach the native side.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NotHandedOver {
    /// The queue is full.
    Busy,
    /// The native side dropped the receiver.
    Gone,
}

impl NotHandedOver {
    pub(crate) fn response(self) -> Response<Body> {
        match self {
            NotHandedOver::Busy => error(StatusCode::SERVICE_UNAVAILABLE, "busy", "the console is busy; try again"),
            NotHandedOver::Gone => error(StatusCode::GONE, "gone", "the session is no longer taking commands"),
        }
    }
}

// ---- checks ----

fn host_allowed(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let Some((name, host_port)) = host.rsplit_once(':') else { return false };
    host_port == port.to_string() && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost"))
}

fn origin_allowed(headers: &HeaderMap, method: &Method, port: u16) -> bool {
    match headers.get(header::ORIGIN) {
        Some(origin) => {
            let Ok(origin) = origin.to_str() else { return false };
            origin == format!("http://127.0.0.1:{port}")
                || origin.eq_ignore_ascii_case(&format!("http://localhost:{port}"))
        }
        None => *method == Method::GET || *method == Method::HEAD,
    }
}

fn fetch_site_allowed(headers: &HeaderMap, page_navigation: bool) -> bool {
    let Some(site) = headers.get("sec-fetch-site") else { return true };
    if site == "same-origin" || site == "none" {
        return true;
    }
    // Opening the console's link from another page is a cross-site navigation; it still needs the
    // token, and a navigation cannot read the answer.
    page_navigation && headers.get("sec-fetch-mode").is_some_and(|mode| mode == "navigate")
}

fn token_matches(expected: &str, presented: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The raw value of `key` in a query string (the token is hex: no decoding needed).
pub(crate) fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

pub(crate) fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(expected) {
        return false;
    }
    // Only a UTF-8 charset parameter is accepted beside the media type.
    parts.all(|param| {
        let param = param.trim().to_ascii_lowercase();
        param == "charset=utf-8" || param == "charset=\"utf-8\""
    })
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

// ---- responses ----

pub(crate) fn forbidden() -> Response<Body> {
    respond(StatusCode::FORBIDDEN, "application/json", Bytes::from_static(br#"{"error":"forbidden"}"#))
}

pub(crate) fn too_large(max: u64) -> Response<Body> {
    error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &format!("the body is larger than {max} bytes"))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("use {allow}"));
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A JSON error: `{"error": kind, "message": text}`.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": kind, "message": message }).to_string();
    respond(status, "application/json", Bytes::from(body))
}

pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(body)));
    *response.status_mut() = status;
    set_common_headers(response.headers_mut());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn set_common_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
}

/// A response body: all at once, or a stream of frames from a task (the event stream).
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(body) => Poll::Ready(body.take().map(|bytes| Ok(Frame::data(bytes)))),
            Body::Stream(frames) => frames.poll_recv(cx).map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn host_must_name_the_loopback_port() {
        assert!(host_allowed(&headers(&[("host", "127.0.0.1:8080")]), 8080));
        assert!(host_allowed(&headers(&[("host", "localhost:8080")]), 8080));
        assert!(!host_allowed(&headers(&[("host", "127.0.0.1:8081")]), 8080));
        assert!(!host_allowed(&headers(&[("host", "evil.example:8080")]), 8080));
        assert!(!host_allowed(&headers(&[("host", "127.0.0.1")]), 8080));
        assert!(!host_allowed(&headers(&[]), 8080));
    }

    #[test]
    fn origin_is_required_on_state_changes() {
        let ok = headers(&[("origin", "http://127.0.0.1:80")]);
        assert!(origin_allowed(&ok, &Method::POST, 80));
        assert!(!origin_allowed(&headers(&[]), &Method::POST, 80));
        assert!(origin_allowed(&headers(&[]), &Method::GET, 80));
        assert!(!origin_allowed(&headers(&[("origin", "http://evil.example")]), &Method::GET, 80));
        assert!(!origin_allowed(&headers(&[("origin", "null")]), &Method::POST, 80));
        assert!(!origin_allowed(&headers(&[("origin", "http://127.0.0.1:81")]), &Method::POST, 80));
    }

    #[test]
    fn fetch_metadata_refuses_other_sites() {
        assert!(fetch_site_allowed(&headers(&[("sec-fetch-site", "same-origin")]), false));
        assert!(!fetch_site_allowed(&headers(&[("sec-fetch-site", "same-site")]), false));
        assert!(!fetch_site_allowed(&headers(&[("sec-fetch-site", "cross-site")]), false));
        let navigate = headers(&[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")]);
        assert!(fetch_site_allowed(&navigate, true));
        assert!(!fetch_site_allowed(&navigate, false));
    }

    #[test]
    fn query_and_content_type_parsing() {
        assert_eq!(query_value("a=1&t=abc", "t"), Some("abc"));
        assert_eq!(query_value("tt=1", "t"), None);
        assert!(content_type_is(&headers(&[("content-type", "application/json")]), "application/json"));
        assert!(content_type_is(&headers(&[("content-type", "Application/JSON; charset=UTF-8")]), "application/json"));
        assert!(!content_type_is(&headers(&[("content-type", "text/plain")]), "application/json"));
        assert!(!content_type_is(
            &headers(&[("content-type", "application/json; charset=latin1")]),
            "application/json"
        ));
    }
}
