//! The loopback hub: a small HTTP/1.1 server on `std::net`.
//!
//! One acceptor thread; one thread per connection, at most [`MAX_CONNECTIONS`] at a time. When
//! the limit is reached the acceptor stops accepting (new connections wait in the kernel's
//! backlog) and closes connections that sit idle between keep-alive requests, one per freed slot
//! needed. Every connection is registered (a clone of its socket) so that shutdown can close it
//! and join its thread.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::content::{self, CHUNK, LfsPointer};
use crate::http::{self, HeadError, RangeRequest, RequestHead};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection with no complete request for this long is closed (also the write timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// After an error response the server keeps reading (and discarding) what the client still
/// sends, so closing does not reset the connection before the client has read the response.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 1 << 20;
/// A request body (unusual for GET / HEAD) up to this size is read and discarded to keep the
/// connection; a bigger one, or a chunked one, closes the connection after the response.
const MAX_DISCARDED_BODY: u64 = 1 << 20;
/// The request header carrying the origin the shell's browser process fetches for.
pub const ORIGIN_HEADER: &str = "X-COS-Origin";

const EXPOSED_HEADERS: &str = "Accept-Ranges, Content-Length, Content-Range, Content-Type, ETag";

/// A file added to a [`Hub`](crate::Hub).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubFile {
    /// The path it is served at, e.g. `/Xenova/whisper-tiny.en/resolve/main/onnx/encoder_model.onnx`.
    pub path: String,
    /// SHA-256 of its content, 64 lowercase hex digits (also its `ETag`, quoted).
    pub sha256_hex: String,
    /// Its size in bytes.
    pub size: u64,
}

impl HubFile {
    /// For a file under `/<repo>/resolve/main/`, the path of its Git LFS pointer
    /// (`/<repo>/raw/main/<same path>`); `None` for verbatim files.
    pub fn pointer_path(&self) -> Option<String> {
        pointer_path_for(&self.path)
    }

    /// The Git LFS pointer describing this file (served at [`HubFile::pointer_path`]).
    pub fn lfs_pointer(&self) -> LfsPointer {
        LfsPointer { sha256_hex: self.sha256_hex.clone(), size: self.size }
    }
}

/// One request the hub answered (or started answering).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLog {
    /// The request method; empty if the request line could not be parsed.
    pub method: String,
    /// The request-target as received (query included); empty if it could not be parsed.
    pub path: String,
    /// The response status.
    pub status: u16,
    /// Response body bytes written to the socket (0 for `HEAD`). Counted just before each
    /// write and taken back if the write fails, so it is final by the time the client has the
    /// whole body; fewer than announced if the client went away mid-body.
    pub body_bytes: u64,
    /// The value of the request's `X-COS-Origin` header, if present.
    pub origin: Option<String>,
}

/// `/<repo>/resolve/main/<file>` → `/<repo>/raw/main/<file>`.
fn pointer_path_for(path: &str) -> Option<String> {
    const RESOLVE: &str = "/resolve/main/";
    let at = path.find(RESOLVE)?;
    let (repo, file) = (&path[..at], &path[at + RESOLVE.len()..]);
    if repo.len() < 2 || file.is_empty() {
        return None;
    }
    Some(format!("{repo}/raw/main/{file}"))
}

fn normalise(path: &str) -> String {
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

enum Body {
    Bytes(Arc<[u8]>),
    Generated { seed: u64 },
}

/// What one path serves. Shared by `Arc` with in-flight responses, so replacing a file does
/// not disturb a response already streaming the old one.
struct Resource {
    body: Body,
    size: u64,
    /// `"<sha256 hex>"`, quotes included.
    etag: String,
    content_type: &'static str,
}

#[derive(Default)]
struct Stats {
    total: u64,
    per_origin: HashMap<String, u64>,
    log: Vec<RequestLog>,
}

struct Conn {
    stream: TcpStream,
    /// Waiting for the next request on a kept-alive connection (so it may be closed to make
    /// room for a new connection).
    idle: Arc<AtomicBool>,
    /// Closed by the acceptor to make room; its thread is on its way out.
    evicted: bool,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, Conn>,
}

struct Shared {
    files: RwLock<HashMap<String, Arc<Resource>>>,
    stats: Mutex<Stats>,
    conns: Mutex<Conns>,
    slot_freed: Condvar,
    shutting_down: AtomicBool,
}

impl Shared {
    /// Logs a request whose response is about to be written; returns its log index.
    fn log_request(&self, log: RequestLog) -> usize {
        let mut stats = self.stats.lock();
        stats.log.push(log);
        stats.log.len() - 1
    }

    /// Adds `n` body bytes (negative: takes back bytes counted but not written) to the totals
    /// and to log entry `index`.
    fn count_body_bytes(&self, index: usize, origin: Option<&str>, n: i64) {
        if n == 0 {
            return;
        }
        let apply = |v: &mut u64| *v = v.saturating_add_signed(n);
        let mut stats = self.stats.lock();
        apply(&mut stats.total);
        if let Some(origin) = origin {
            apply(stats.per_origin.entry(origin.to_owned()).or_default());
        }
        if let Some(entry) = stats.log.get_mut(index) {
            apply(&mut entry.body_bytes);
        }
    }
}

/// The loopback hub. Serves files the way the Hugging Face Hub does:
///
/// * `GET /<repo>/resolve/main/<path>`: the file's bytes;
/// * `GET /<repo>/raw/main/<path>`: its Git LFS pointer ([`LfsPointer::to_text`]);
/// * any other added path (e.g. `/runtime/ort-wasm.wasm`): served as-is, without a pointer;
/// * anything else: `404`.
///
/// `GET` and `HEAD` are served (`OPTIONS` answers a CORS preflight; other methods get `405`);
/// responses carry `Content-Length`, `Content-Type`, `ETag` (`"<sha256 of the body>"`),
/// `Accept-Ranges: bytes` and `Access-Control-Allow-Origin: *`. A single `Range` (`bytes=a-b`,
/// `bytes=a-`, `bytes=-n`) gets `206` with `Content-Range`, or `416` when unsatisfiable;
/// `If-None-Match` and `If-Range` are honoured. HTTP/1.1 keep-alive and pipelining are
/// supported; idle connections are closed after [`IDLE_TIMEOUT`]. Malformed requests get `400`
/// (`505` for another HTTP version, `431` beyond 16 KiB of headers) and the connection is
/// closed.
///
/// Dropping the hub shuts it down like [`Hub::shutdown`].
pub struct Hub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Hub {
    /// Binds `127.0.0.1:0` and starts serving on background threads.
    pub fn start() -> io::Result<Hub> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            files: RwLock::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            conns: Mutex::new(Conns::default()),
            slot_freed: Condvar::new(),
            shutting_down: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name("cos-hub-accept".into()).spawn(move || accept_loop(&shared, &listener))?
        };
        tracing::debug!(%addr, "hub listening");
        Ok(Hub { shared, addr, acceptor: Some(acceptor) })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL followed by `path` (a `/` is inserted if `path` does not start with one).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), normalise(path))
    }

    /// Serves `bytes` at `path` (a leading `/` is added if missing), replacing any file there.
    ///
    /// A path of the form `/<repo>/resolve/main/<file>` also gets its Git LFS pointer at
    /// `/<repo>/raw/main/<file>`; any other path is served verbatim. The bytes are held once
    /// (`Arc<[u8]>`) and never copied per request.
    pub fn add(&self, path: &str, bytes: Vec<u8>) -> HubFile {
        let sha256_hex = content::sha256_hex(&bytes);
        let size = bytes.len() as u64;
        self.insert(normalise(path), Body::Bytes(Arc::from(bytes)), sha256_hex, size)
    }

    /// Serves `size` bytes of deterministic pseudo-random content derived from `seed` at `path`
    /// (same rules as [`Hub::add`]). The content is hashed once here and generated in 1 MiB
    /// chunks whenever it is served; it is never held in memory whole. Same `(size, seed)`, same
    /// bytes; a different seed gives different bytes.
    pub fn add_generated(&self, path: &str, size: u64, seed: u64) -> HubFile {
        let sha256_hex = content::generated_sha256_hex(size, seed);
        self.insert(normalise(path), Body::Generated { seed }, sha256_hex, size)
    }

    fn insert(&self, path: String, body: Body, sha256_hex: String, size: u64) -> HubFile {
        let file = HubFile { path, sha256_hex, size };
        let resource =
            Resource { body, size, etag: format!("\"{}\"", file.sha256_hex), content_type: content_type(&file.path) };
        let pointer = file.pointer_path().map(|pointer_path| {
            let text = file.lfs_pointer().to_text().into_bytes();
            let pointer = Resource {
                size: text.len() as u64,
                etag: format!("\"{}\"", content::sha256_hex(&text)),
                body: Body::Bytes(Arc::from(text)),
                content_type: "text/plain; charset=utf-8",
            };
            (pointer_path, pointer)
        });
        let mut files = self.shared.files.write();
        files.insert(file.path.clone(), Arc::new(resource));
        if let Some((pointer_path, pointer)) = pointer {
            files.insert(pointer_path, Arc::new(pointer));
        }
        file
    }

    /// Total response body bytes written to all clients so far. Bytes are counted just before
    /// each (at most 1 MiB) write and taken back if it fails, so a response a client has fully
    /// received is always included; one still streaming is partly included.
    pub fn bytes_served(&self) -> u64 {
        self.shared.stats.lock().total
    }

    /// Every request answered so far, in the order responses were started (a request is logged
    /// just before its response is written; see [`RequestLog::body_bytes`]).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.stats.lock().log.clone()
    }

    /// Response body bytes written for requests whose `X-COS-Origin` header was `origin`
    /// (counted like [`Hub::bytes_served`]): the sum of [`RequestLog::body_bytes`] over those
    /// requests.
    pub fn bytes_served_to(&self, origin: &str) -> u64 {
        self.shared.stats.lock().per_origin.get(origin).copied().unwrap_or(0)
    }

    /// Stops accepting, closes the listening socket (releasing the port) and every open
    /// connection, and joins all threads. Responses in flight are cut off.
    pub fn shutdown(self) {
        // The work is done by `Drop`.
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else { return };
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        {
            let _conns = self.shared.conns.lock();
            self.shared.slot_freed.notify_all();
        }
        // Wake the acceptor out of `accept` with a connection of our own.
        if let Err(e) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) {
            tracing::warn!(error = %e, "could not wake the hub's acceptor");
        }
        let handles = acceptor.join().unwrap_or_default();
        for conn in self.shared.conns.lock().open.values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        for handle in handles {
            let _ = handle.join();
        }
        tracing::debug!(addr = %self.addr, "hub stopped");
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.len() > 5 && name.get(name.len() - 5..).is_some_and(|ext| ext.eq_ignore_ascii_case(".wasm")) {
        "application/wasm"
    } else {
        "application/octet-stream"
    }
}

/// Accepts until shutdown; returns the handles of the connection threads still to be joined.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) -> Vec<JoinHandle<()>> {
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let accepted = listener.accept();
        if shared.shutting_down.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "hub accept failed");
                // E.g. out of descriptors: back off instead of spinning.
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        handles.retain(|h| !h.is_finished());
        let (id, idle) = match register(shared, &stream) {
            Registration::Registered { id, idle } => (id, idle),
            Registration::Failed => continue,
            Registration::ShuttingDown => break,
        };
        let spawned = {
            let shared = Arc::clone(shared);
            thread::Builder::new().name("cos-hub-conn".into()).spawn(move || {
                let _guard = Unregister { shared: &shared, id };
                serve_connection(&shared, stream, &idle);
            })
        };
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                tracing::warn!(error = %e, "hub could not spawn a connection thread");
                // The closure (and with it the stream) is gone; forget the registration.
                shared.conns.lock().open.remove(&id);
                shared.slot_freed.notify_all();
            }
        }
    }
    handles
}

enum Registration {
    Registered {
        id: u64,
        idle: Arc<AtomicBool>,
    },
    /// The socket could not be tracked; it is dropped (closed) unserved.
    Failed,
    ShuttingDown,
}

/// Waits for a free connection slot (closing idle keep-alive connections to make one), then
/// registers `stream`.
fn register(shared: &Shared, stream: &TcpStream) -> Registration {
    let mut conns = shared.conns.lock();
    loop {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return Registration::ShuttingDown;
        }
        if conns.open.len() < MAX_CONNECTIONS {
            break;
        }
        // One eviction per slot needed: connections already evicted are about to free theirs.
        if !conns.open.values().any(|c| c.evicted) {
            let victim = conns
                .open
                .values_mut()
                .find(|c| c.idle.compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst).is_ok());
            if let Some(victim) = victim {
                tracing::debug!("hub at its connection limit: closing an idle connection");
                victim.evicted = true;
                let _ = victim.stream.shutdown(Shutdown::Both);
            }
        }
        shared.slot_freed.wait_for(&mut conns, Duration::from_millis(100));
    }
    // Shutdown needs a handle on the socket to close it.
    let clone = match stream.try_clone() {
        Ok(clone) => clone,
        Err(e) => {
            tracing::warn!(error = %e, "hub could not clone a connection socket");
            return Registration::Failed;
        }
    };
    let id = conns.next_id;
    conns.next_id += 1;
    let idle = Arc::new(AtomicBool::new(false));
    conns.open.insert(id, Conn { stream: clone, idle: Arc::clone(&idle), evicted: false });
    Registration::Registered { id, idle }
}

struct Unregister<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.shared.conns.lock().open.remove(&self.id);
        self.shared.slot_freed.notify_all();
    }
}

/// What to do with the connection after a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// An error response: stop reading requests, drain what the client still sends, close.
    LingerClose,
}

fn serve_connection(shared: &Shared, mut stream: TcpStream, idle: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err() || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err() {
        return;
    }
    let mut conn = Connection { shared, input: Vec::with_capacity(4096), chunk: Vec::new() };
    let mut first = true;
    loop {
        let head = match conn.read_head(&mut stream, idle, first) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(error) => {
                let (status, what) = match error {
                    HeadError::Malformed(what) => (400, what),
                    HeadError::Version => (505, "unsupported HTTP version"),
                    HeadError::TooLarge => (431, "request header section larger than 16 KiB"),
                };
                tracing::debug!(status, what, "hub rejected a request");
                let log =
                    RequestLog { method: String::new(), path: String::new(), status, body_bytes: 0, origin: None };
                conn.send_error(&mut stream, log, false, &[]);
                linger_close(&mut stream);
                return;
            }
        };
        first = false;
        match conn.respond(&mut stream, head) {
            After::KeepAlive => {}
            After::Close => return,
            After::LingerClose => {
                linger_close(&mut stream);
                return;
            }
        }
    }
}

/// Half-closes, then reads and discards (bounded in time and bytes) until the client closes, so
/// that closing does not turn into a reset that destroys the response before it is read.
fn linger_close(stream: &mut TcpStream) {
    let _ = stream.flush();
    if stream.shutdown(Shutdown::Write).is_err() || stream.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < LINGER_MAX_BYTES {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

struct Connection<'a> {
    shared: &'a Shared,
    /// Bytes read but not yet consumed (the start of the next request when pipelining).
    input: Vec<u8>,
    /// Generation buffer for generated files, allocated on first use.
    chunk: Vec<u8>,
}

/// A response head to write; `body_len` is the announced `Content-Length`.
struct Head<'h> {
    status: u16,
    content_type: &'static str,
    body_len: u64,
    extra: &'h [(&'h str, &'h str)],
    etag: Option<&'h str>,
    content_range: Option<String>,
    after: After,
    /// The client is HTTP/1.0 with keep-alive: say so.
    announce_keep_alive: bool,
}

impl Connection<'_> {
    /// Reads until one full request head is buffered. `Ok(None)`: the connection ended (EOF,
    /// timeout, error or shutdown) before a complete request.
    fn read_head(
        &mut self,
        stream: &mut TcpStream,
        idle: &AtomicBool,
        first: bool,
    ) -> Result<Option<RequestHead>, HeadError> {
        let mut buf = [0u8; 8192];
        loop {
            let skip = http::leading_empty_lines(&self.input);
            if skip > 0 {
                self.input.drain(..skip);
            }
            if let Some((head, len)) = http::parse_request_head(&self.input)? {
                self.input.drain(..len);
                return Ok(Some(head));
            }
            // Between requests on a kept-alive connection (nothing buffered) the connection is
            // idle and may be closed to make room for a new one.
            let waiting = !first && self.input.is_empty();
            if waiting {
                idle.store(true, Ordering::SeqCst);
            }
            let read = stream.read(&mut buf);
            if waiting && idle.compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                return Ok(None); // Evicted: the acceptor has shut the socket down.
            }
            match read {
                Ok(0) => return Ok(None),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(None),
            }
        }
    }

    fn respond(&mut self, stream: &mut TcpStream, head: RequestHead) -> After {
        let origin = head.value(ORIGIN_HEADER).map(str::to_owned);
        let mut log =
            RequestLog { method: head.method.clone(), path: head.target.clone(), status: 0, body_bytes: 0, origin };
        let is_head = head.method == "HEAD";

        // Framing of the request itself: it must be exactly delimited to keep the connection.
        let lengths: Vec<&str> = head.values("content-length").flat_map(|v| v.split(',')).map(str::trim).collect();
        let content_length = match lengths.first() {
            None => 0,
            Some(first) => match http::parse_content_length(first) {
                Some(n) if lengths.iter().all(|l| l == first) => n,
                _ => {
                    log.status = 400;
                    self.send_error(stream, log, is_head, &[]);
                    return After::LingerClose;
                }
            },
        };
        let chunked_body = head.value("transfer-encoding").is_some();
        if head.minor == 1 && head.values("host").count() != 1 {
            log.status = 400;
            self.send_error(stream, log, is_head, &[]);
            return After::LingerClose;
        }
        let mut after = if head.has_token("connection", "close")
            || (head.minor == 0 && !head.has_token("connection", "keep-alive"))
        {
            After::Close
        } else {
            After::KeepAlive
        };
        if chunked_body || content_length > MAX_DISCARDED_BODY {
            after = After::LingerClose;
        } else if content_length > 0 && !self.discard_body(stream, content_length) {
            return After::Close;
        }
        let announce_keep_alive = head.minor == 0 && after == After::KeepAlive;

        let path = match target_path(&head.target) {
            Some(path) => path,
            None if head.method == "OPTIONS" && head.target == "*" => String::new(),
            None => {
                log.status = 400;
                self.send_error(stream, log, is_head, &[]);
                return After::LingerClose;
            }
        };
        match head.method.as_str() {
            "GET" | "HEAD" => {}
            "OPTIONS" => {
                let request_headers = head.value("access-control-request-headers").unwrap_or("*").to_owned();
                let extra = [
                    ("Allow", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Allow-Headers", request_headers.as_str()),
                    ("Access-Control-Max-Age", "86400"),
                ];
                log.status = 204;
                let h = Head {
                    status: 204,
                    content_type: "",
                    body_len: 0,
                    extra: &extra,
                    etag: None,
                    content_range: None,
                    after,
                    announce_keep_alive,
                };
                return self.send(stream, &h, None, log, true);
            }
            _ => {
                log.status = 405;
                return self.send_error_keep(
                    stream,
                    log,
                    is_head,
                    after,
                    announce_keep_alive,
                    &[("Allow", "GET, HEAD, OPTIONS")],
                );
            }
        }

        let resource = {
            let files = self.shared.files.read();
            http::percent_decode(&path)
                .and_then(|decoded| files.get(&decoded).cloned())
                .or_else(|| files.get(&path).cloned())
        };
        let Some(resource) = resource else {
            log.status = 404;
            return self.send_error_keep(stream, log, is_head, after, announce_keep_alive, &[]);
        };

        if let Some(tags) = head.value("if-none-match")
            && etag_matches(tags, &resource.etag)
        {
            log.status = 304;
            let h = Head {
                status: 304,
                content_type: "",
                body_len: 0,
                extra: &[],
                etag: Some(&resource.etag),
                content_range: None,
                after,
                announce_keep_alive,
            };
            return self.send(stream, &h, None, log, true);
        }
        let range_applies = head.value("if-range").is_none_or(|tag| tag.trim() == resource.etag);
        let range = match head.value("range") {
            Some(value) if range_applies => http::parse_range(value, resource.size),
            _ => RangeRequest::Full,
        };
        let (status, start, len, content_range) = match range {
            RangeRequest::Full => (200, 0, resource.size, None),
            RangeRequest::Partial { start, end } => {
                (206, start, end - start + 1, Some(format!("bytes {start}-{end}/{}", resource.size)))
            }
            RangeRequest::Unsatisfiable => {
                log.status = 416;
                let content_range = format!("bytes */{}", resource.size);
                return self.send_error_keep(
                    stream,
                    log,
                    is_head,
                    after,
                    announce_keep_alive,
                    &[("Content-Range", content_range.as_str())],
                );
            }
        };
        log.status = status;
        let h = Head {
            status,
            content_type: resource.content_type,
            body_len: len,
            extra: &[],
            etag: Some(&resource.etag),
            content_range,
            after,
            announce_keep_alive,
        };
        self.send(stream, &h, Some((&resource, start)), log, is_head)
    }

    /// Reads and drops a request body of `len` bytes. `false` if the connection failed.
    fn discard_body(&mut self, stream: &mut TcpStream, len: u64) -> bool {
        let buffered = usize::try_from(len).map_or(self.input.len(), |len| len.min(self.input.len()));
        self.input.drain(..buffered);
        let mut left = len - buffered as u64;
        let mut buf = [0u8; 8192];
        while left > 0 {
            let want = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
            match stream.read(&mut buf[..want]) {
                Ok(0) => return false,
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// An error response that closes the connection (with lingering by the caller).
    fn send_error(&mut self, stream: &mut TcpStream, log: RequestLog, is_head: bool, extra: &[(&str, &str)]) {
        self.send_error_keep(stream, log, is_head, After::LingerClose, false, extra);
    }

    /// An error response with a short `text/plain` body (`"<status> <reason>\n"`).
    fn send_error_keep(
        &mut self,
        stream: &mut TcpStream,
        log: RequestLog,
        is_head: bool,
        after: After,
        announce_keep_alive: bool,
        extra: &[(&str, &str)],
    ) -> After {
        let text = format!("{} {}\n", log.status, reason(log.status));
        let body: Arc<[u8]> = Arc::from(text.into_bytes());
        let resource = Resource {
            size: body.len() as u64,
            body: Body::Bytes(body),
            etag: String::new(),
            content_type: "text/plain; charset=utf-8",
        };
        let h = Head {
            status: log.status,
            content_type: resource.content_type,
            body_len: resource.size,
            extra,
            etag: None,
            content_range: None,
            after,
            announce_keep_alive,
        };
        self.send(stream, &h, Some((&resource, 0)), log, is_head)
    }

    /// Writes the head, then (unless `no_body`) `h.body_len` bytes of `body` from its offset,
    /// counting body bytes as they are written; logs the request. Returns what to do next.
    fn send(
        &mut self,
        stream: &mut TcpStream,
        h: &Head<'_>,
        body: Option<(&Resource, u64)>,
        mut log: RequestLog,
        no_body: bool,
    ) -> After {
        let mut out = String::with_capacity(320);
        use std::fmt::Write as _;
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", h.status, reason(h.status));
        if !h.content_type.is_empty() {
            let _ = write!(out, "Content-Type: {}\r\n", h.content_type);
        }
        if h.status != 204 && h.status != 304 {
            let _ = write!(out, "Content-Length: {}\r\n", h.body_len);
        }
        if let Some(range) = &h.content_range {
            let _ = write!(out, "Content-Range: {range}\r\n");
        }
        if let Some(etag) = h.etag {
            let _ = write!(out, "ETag: {etag}\r\nAccept-Ranges: bytes\r\n");
        }
        for (name, value) in h.extra {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: {EXPOSED_HEADERS}\r\n");
        match h.after {
            After::KeepAlive if h.announce_keep_alive => out.push_str("Connection: keep-alive\r\n"),
            After::KeepAlive => {}
            After::Close | After::LingerClose => out.push_str("Connection: close\r\n"),
        }
        out.push_str("\r\n");

        // Logged (and body bytes counted) before they are written, so that once a client has
        // the whole response the accounting already includes it.
        let (origin, path) = (log.origin.clone(), log.path.clone());
        log.body_bytes = 0;
        let index = self.shared.log_request(log);
        let mut result = write_all(stream, out.as_bytes());
        if result.is_ok()
            && !no_body
            && let Some((resource, start)) = body
        {
            result = self.write_body(stream, resource, start, h.body_len, origin.as_deref(), index);
        }
        if let Err(e) = &result {
            tracing::debug!(error = %e, %path, "hub response not fully written");
        }
        if result.is_err() { After::Close } else { h.after }
    }

    /// Streams `len` bytes of `resource` from `start` in writes of at most 1 MiB.
    fn write_body(
        &mut self,
        stream: &mut TcpStream,
        resource: &Resource,
        start: u64,
        len: u64,
        origin: Option<&str>,
        log_index: usize,
    ) -> io::Result<()> {
        let mut offset = start;
        let end = start.saturating_add(len).min(resource.size);
        while offset < end {
            let n = usize::try_from(end - offset).map_or(CHUNK, |left| left.min(CHUNK));
            let piece: &[u8] = match &resource.body {
                Body::Bytes(bytes) => {
                    let from = usize::try_from(offset).map_err(io::Error::other)?;
                    bytes.get(from..from + n).ok_or_else(|| io::Error::other("range outside the file"))?
                }
                Body::Generated { seed } => {
                    if self.chunk.len() < n {
                        self.chunk.resize(CHUNK, 0);
                    }
                    content::fill_generated(*seed, offset, &mut self.chunk[..n]);
                    &self.chunk[..n]
                }
            };
            self.shared.count_body_bytes(log_index, origin, n as i64);
            let mut written = 0;
            let result = write_counted(stream, piece, &mut written);
            if result.is_err() {
                self.shared.count_body_bytes(log_index, origin, written as i64 - n as i64);
            }
            result?;
            offset += n as u64;
        }
        Ok(())
    }
}

/// `write_all` that reports how much was written even when it fails.
fn write_counted(stream: &mut TcpStream, mut buf: &[u8], written: &mut usize) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all(stream: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    write_counted(stream, buf, &mut 0)
}

/// The path of an origin-form (`/p?q`) or absolute-form (`http://host/p?q`) request-target,
/// without the query.
fn target_path(target: &str) -> Option<String> {
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let scheme_end = target.find("://")?;
        let scheme = &target[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let rest = &target[scheme_end + 3..];
        match rest.find('/') {
            Some(slash) => &rest[slash..],
            None => "/",
        }
    };
    let path = path_and_query.split(['?', '#']).next().unwrap_or(path_and_query);
    Some(path.to_owned())
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches).
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_paths() {
        assert_eq!(
            pointer_path_for("/Xenova/whisper-tiny.en/resolve/main/onnx/encoder_model.onnx").as_deref(),
            Some("/Xenova/whisper-tiny.en/raw/main/onnx/encoder_model.onnx")
        );
        assert_eq!(pointer_path_for("/m/resolve/main/config.json").as_deref(), Some("/m/raw/main/config.json"));
        assert_eq!(pointer_path_for("/runtime/ort-wasm.wasm"), None);
        assert_eq!(pointer_path_for("/resolve/main/x"), None);
        assert_eq!(pointer_path_for("/m/resolve/main/"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("/runtime/ort-wasm-simd.wasm"), "application/wasm");
        assert_eq!(content_type("/runtime/X.WASM"), "application/wasm");
        assert_eq!(content_type("/runtime/.wasm"), "application/octet-stream");
        assert_eq!(content_type("/m/resolve/main/onnx/model.onnx"), "application/octet-stream");
    }

    #[test]
    fn target_paths() {
        assert_eq!(target_path("/a/b?x=1").as_deref(), Some("/a/b"));
        assert_eq!(target_path("http://h:1/a?x").as_deref(), Some("/a"));
        assert_eq!(target_path("HTTP://h").as_deref(), Some("/"));
        assert_eq!(target_path("ftp://h/a"), None);
        assert_eq!(target_path("h:443"), None);
        assert_eq!(target_path("*"), None);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
