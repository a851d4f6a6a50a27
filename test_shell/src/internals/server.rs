//! The internals page's HTTP server: hyper on a tokio runtime of its own, on 127.0.0.1 only.
//!
//! Every request must carry the start-up token (in `?token=`, which sets an `HttpOnly`,
//! `SameSite=Strict` cookie and redirects to the same address without it, or in that cookie) and
//! a `Host` of `127.0.0.1:PORT` or `localhost:PORT` (no DNS rebinding). State changes are POSTs
//! only, and need an `Origin` of this server (no cross-site request forgery). Every response
//! carries `Content-Security-Policy: default-src 'self'; frame-ancestors 'none'` and `nosniff`.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cos_browser::CosHost;
use cos_common::{ContentHash, Origin, Partition};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::html::Html;
use super::snapshot::{ScrubState, Snapshot};
use super::views::{self, ResourceQuery, View};

/// A response body: a whole one, or the event stream.
type Body = Either<Full<Bytes>, Channel<Bytes>>;

/// The headers every response carries.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    // Not `no-referrer`: with it a browser sends `Origin: null` on the page's own form posts.
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// Largest request body read (a form with one hash or one origin).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a client may take to send a request's head (a stalled connection is closed).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the store is looked at for changes while a page listens.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

const STYLE_CSS: &str = include_str!("style.css");
const APP_JS: &str = include_str!("app.js");

/// The running server: 127.0.0.1 only; every request needs its token (address or cookie) and a
/// `Host` naming it, every POST an `Origin` of its own (see the module's documentation).
/// Dropping it stops it.
pub struct InternalsServer {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    token: String,
}

struct Shared {
    host: Arc<CosHost>,
    token: String,
    port: u16,
    /// Bumped whenever the store (or a scrub's progress) changed; each event stream watches it.
    version: watch::Sender<u64>,
    /// What the store looked like when last compared (`None` while no page listens).
    baseline: Mutex<Option<u64>>,
    scrub: Mutex<ScrubState>,
}

impl Shared {
    fn changed(&self) {
        self.version.send_modify(|version| *version += 1);
    }

    fn cookie_name(&self) -> String {
        // Cookies are per host, not per port: one per server.
        format!("cos_internals_{}", self.port)
    }
}

impl InternalsServer {
    /// Serves the page for `host` on `127.0.0.1:port` (`0`: any free port), with a new token.
    pub fn start(host: Arc<CosHost>, port: u16) -> std::io::Result<Self> {
        let token = new_token()?;
        let listener = StdListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cos-internals")
            .enable_all()
            .build()?;
        let (version, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            host,
            token: token.clone(),
            port,
            version,
            baseline: Mutex::new(None),
            scrub: Mutex::new(ScrubState::default()),
        });
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(accept_loop(listener, shared.clone()));
        runtime.spawn(watch_store(shared));
        Ok(Self { runtime: Some(runtime), port, token })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The token every request must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The address to open: `http://127.0.0.1:PORT/?token=…`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }
}

impl Drop for InternalsServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// 128 bits from the operating system's random source, in hex.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(secured(handle(&shared, request).await)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// While some page listens, looks at the store every [`WATCH_INTERVAL`] and tells the pages when
/// it changed (a write, a read, a deletion by anyone).
async fn watch_store(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        if shared.version.receiver_count() == 0 {
            *shared.baseline.lock() = None;
            continue;
        }
        check_for_changes(&shared).await;
    }
}

/// Compares the store with the last look at it; a difference is a change for every page.
async fn check_for_changes(shared: &Arc<Shared>) {
    let host = shared.host.clone();
    let fingerprint = tokio::task::spawn_blocking(move || {
        use std::hash::{Hash, Hasher};
        let (entries, origins) = host.inspect(Partition::Regular).ok()?;
        let mut hasher = std::hash::DefaultHasher::new();
        format!("{entries:?}{origins:?}").hash(&mut hasher);
        Some(hasher.finish())
    })
    .await
    .ok()
    .flatten();
    let Some(fingerprint) = fingerprint else { return };
    let previous = shared.baseline.lock().replace(fingerprint);
    if previous.is_some_and(|previous| previous != fingerprint) {
        shared.changed();
    }
}

fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn refuse(why: &'static str) -> Response<Body> {
    tracing::warn!(why, "internals page: request refused");
    respond(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", why)
}

fn see_other(location: &'static str) -> Response<Body> {
    let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    response.headers_mut().insert(LOCATION, HeaderValue::from_static(location));
    response
}

fn html_page(view: View, fragment_url: &str, fragment: &Html) -> Response<Body> {
    respond(StatusCode::OK, "text/html; charset=utf-8", views::page(view, fragment_url, fragment))
}

/// The query parameter `name` of `query` (decoded).
fn parameter(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// The `Host` is this server by its loopback address or `localhost`, with its port.
fn host_allowed(shared: &Shared, request: &Request<Incoming>) -> bool {
    let Some(host) = request.headers().get(HOST).and_then(|h| h.to_str().ok()) else { return false };
    host == format!("127.0.0.1:{}", shared.port) || host == format!("localhost:{}", shared.port)
}

/// The `Origin` of a state-changing request is this server (a browser always sends one with a
/// POST; without it, the request is refused).
fn origin_allowed(shared: &Shared, request: &Request<Incoming>) -> bool {
    let Some(origin) = request.headers().get(ORIGIN).and_then(|h| h.to_str().ok()) else { return false };
    origin == format!("http://127.0.0.1:{}", shared.port) || origin == format!("http://localhost:{}", shared.port)
}

/// The token from the request's cookie.
fn cookie_token(shared: &Shared, request: &Request<Incoming>) -> Option<String> {
    let name = shared.cookie_name();
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    if !host_allowed(shared, &request) {
        return refuse("unexpected Host");
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let path = request.uri().path().to_owned();
    // First visit: the token from the address becomes a cookie, and leaves the address.
    if let Some(token) = parameter(&query, "token") {
        if !same_secret(&token, &shared.token) {
            return refuse("wrong token");
        }
        if request.method() == Method::GET {
            let mut response = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
            let cookie = format!("{}={}; Path=/; HttpOnly; SameSite=Strict", shared.cookie_name(), shared.token);
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            let location = if path == "/" { "/resources".to_owned() } else { path.clone() };
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, location);
            }
            return response;
        }
    } else if !cookie_token(shared, &request).is_some_and(|token| same_secret(&token, &shared.token)) {
        return refuse("missing or wrong token: open the address printed at start-up");
    }
    match *request.method() {
        Method::GET | Method::HEAD => get(shared, &path, &query).await,
        Method::POST => {
            if !origin_allowed(shared, &request) {
                return refuse("cross-origin request");
            }
            let body = match Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain; charset=utf-8", "too large"),
            };
            // Form fields, or the query string's (for tools).
            let form = format!("{}&{query}", String::from_utf8_lossy(&body));
            post(shared, &path, &form).await
        }
        _ => respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed"),
    }
}

async fn snapshot(shared: &Arc<Shared>) -> Result<Snapshot, Response<Body>> {
    let host = shared.host.clone();
    match tokio::task::spawn_blocking(move || Snapshot::read(&host)).await {
        Ok(Ok(snapshot)) => Ok(snapshot),
        Ok(Err(error)) => Err(respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("the storage service did not answer: {}", error.name()),
        )),
        Err(_) => Err(respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "failed")),
    }
}

async fn get(shared: &Arc<Shared>, path: &str, query: &str) -> Response<Body> {
    match path {
        "/style.css" => return respond(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS),
        "/app.js" => return respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        "/events" => return events(shared),
        _ => {}
    }
    let snapshot = match snapshot(shared).await {
        Ok(snapshot) => snapshot,
        Err(response) => return response,
    };
    if path == "/dump.json" {
        return respond(StatusCode::OK, "application/json", snapshot.to_json().to_string());
    }
    if path == "/confirm/delete" {
        let hash = parameter(query, "hash").and_then(|hex| ContentHash::from_hex(&hex));
        return match hash.and_then(|hash| snapshot.entries.iter().find(|entry| entry.hash == hash)) {
            Some(entry) => html_page(View::Resources, "", &views::confirm_delete(entry)),
            None => respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no such entry"),
        };
    }
    if path == "/confirm/clear" {
        let origin = parameter(query, "origin").unwrap_or_default();
        return match snapshot.origins.iter().find(|o| o.origin.to_string() == origin) {
            Some(found) => html_page(View::Origins, "", &views::confirm_clear(&found.origin.to_string())),
            None => respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no such origin"),
        };
    }
    let (fragment_only, view_path) = match path.strip_prefix("/fragment") {
        Some(rest) => (true, rest),
        None => (false, path),
    };
    let Some(view) = View::from_path(view_path) else {
        return respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found");
    };
    let fragment = match view {
        View::Resources => views::resources(&snapshot, &ResourceQuery::parse(Some(query))),
        View::Origins => views::origins(&snapshot),
        View::Service => views::service(&snapshot, &shared.scrub.lock()),
    };
    if fragment_only {
        return respond(StatusCode::OK, "text/html; charset=utf-8", fragment.into_string());
    }
    let fragment_url =
        if query.is_empty() { format!("/fragment{view_path}") } else { format!("/fragment{view_path}?{query}") };
    html_page(view, &fragment_url, &fragment)
}

async fn post(shared: &Arc<Shared>, path: &str, form: &str) -> Response<Body> {
    let host = shared.host.clone();
    match path {
        "/delete" => {
            let Some(hash) = parameter(form, "hash").and_then(|hex| ContentHash::from_hex(&hex)) else {
                return respond(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "no hash");
            };
            let result = tokio::task::spawn_blocking(move || host.delete_entry(Partition::Regular, &hash)).await;
            finish_action(shared, result.ok(), "/resources")
        }
        "/clear" => {
            let Some(origin) = parameter(form, "origin").and_then(|origin| Origin::from_url(&origin).ok()) else {
                return respond(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "no origin");
            };
            let result = tokio::task::spawn_blocking(move || host.clear_site_data(Partition::Regular, &origin)).await;
            finish_action(shared, result.ok(), "/origins")
        }
        "/scrub" => {
            start_scrub(shared);
            see_other("/service")
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found"),
    }
}

fn finish_action(
    shared: &Shared,
    result: Option<Result<(), cos_common::CosError>>,
    back: &'static str,
) -> Response<Body> {
    shared.changed();
    match result {
        Some(Ok(())) => see_other(back),
        Some(Err(error)) => {
            respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", format!("failed: {}", error.name()))
        }
        None => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "failed"),
    }
}

/// Starts a scrub on a thread of its own (it may take minutes), unless one is running; its
/// progress reaches the pages through the event stream.
fn start_scrub(shared: &Arc<Shared>) {
    {
        let mut scrub = shared.scrub.lock();
        if scrub.running {
            return;
        }
        *scrub = ScrubState { running: true, ..ScrubState::default() };
    }
    shared.changed();
    let shared = shared.clone();
    let spawned = std::thread::Builder::new().name("cos-internals-scrub".into()).spawn({
        let shared = shared.clone();
        move || {
            let mut last = Instant::now();
            let result = shared.host.scrub(Partition::Regular, |report, total| {
                {
                    let mut scrub = shared.scrub.lock();
                    scrub.report = report.clone();
                    scrub.total = total;
                }
                if last.elapsed() >= Duration::from_millis(250) {
                    last = Instant::now();
                    shared.changed();
                }
            });
            {
                let mut scrub = shared.scrub.lock();
                scrub.running = false;
                match result {
                    Ok(report) => scrub.report = report,
                    Err(error) => scrub.error = Some(error.name().to_owned()),
                }
            }
            shared.changed();
        }
    });
    if spawned.is_err() {
        let mut scrub = shared.scrub.lock();
        scrub.running = false;
        scrub.error = Some("could not start".into());
    }
}

/// `text/event-stream`: a `change` event whenever the store changed, so the page refreshes its
/// view; a comment now and then so that a closed page is noticed. The first event comes at once,
/// after the store was looked at: whatever changed between the page's rendering and this stream
/// is in the view it fetches then, and whatever changes later is seen by the watcher.
fn events(shared: &Arc<Shared>) -> Response<Body> {
    let (sender, body): (Sender<Bytes>, Channel<Bytes>) = Channel::new(4);
    let mut changes = shared.version.subscribe();
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut sender = sender;
        check_for_changes(&shared).await;
        changes.mark_unchanged();
        let first = format!("retry: 2000\n\nevent: change\ndata: {}\n\n", *changes.borrow());
        if sender.send_data(Bytes::from(first)).await.is_err() {
            return;
        }
        loop {
            let message = tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let version = *changes.borrow_and_update();
                    Bytes::from(format!("event: change\ndata: {version}\n\n"))
                }
                () = tokio::time::sleep(Duration::from_secs(15)) => Bytes::from_static(b": keep-alive\n\n"),
            };
            if sender.send_data(message).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(Either::Right(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abcd", "abcd"));
        assert!(!same_secret("abcd", "abce"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn tokens_are_128_bits_of_hex_and_differ() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
