//! The loopback hub: hyper's HTTP/1.1 server on a tokio runtime that the [`Hub`] handle owns.
//!
//! A background thread runs the accept loop on a small multi-threaded runtime; every accepted
//! connection is served by one task. hyper parses and frames the messages (and answers malformed
//! ones itself); this module decides what each request gets. At most [`MAX_CONNECTIONS`]
//! connections are served at once: when the limit is reached, an accepted connection waits
//! while a connection sitting idle between keep-alive requests is closed to make room.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::content::{self, CHUNK, LfsPointer};
use crate::deadline::WriteDeadline;
use crate::directory::{self, Directory};
use crate::echo;
use crate::range::{self, RangeRequest};
use crate::{HubError, HubStartError, tls};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// A connection with no complete request head for this long is closed; a write that makes no
/// progress for this long fails (so a client that stops reading cannot hold a slot forever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request header section accepted (request line, header lines and the empty line that
/// ends them); beyond it hyper answers `431 Request Header Fields Too Large`.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// After a request is refused (by hyper or by the hub) the server keeps reading (and
/// discarding) what the client still sends before closing, so that unread input does not turn
/// the close into a reset that destroys the response before the client has read it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: u64 = 1 << 20;
/// Runtime threads serving connections (the accept loop runs on the handle's own thread).
const WORKER_THREADS: usize = 2;
/// The request header carrying the origin the shell's browser process fetches for.
pub const ORIGIN_HEADER: &str = "X-COS-Origin";

const EXPOSED_HEADERS: &str = "Accept-Ranges, Content-Length, Content-Range, Content-Type, ETag";
const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";

/// A file added to a [`Hub`](crate::Hub).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubFile {
    /// The path it is served at, e.g. `/Xenova/whisper-tiny.en/resolve/main/onnx/encoder_model.onnx`.
    pub path: String,
    /// SHA-256 of its content, 64 lowercase hex digits (also its `ETag`, quoted).
    pub sha256_hex: String,
    /// Its size in bytes.
    pub size: u64,
    /// The only host it is served for (lowercase, without port); `None`: every host.
    pub host: Option<String>,
    /// Whether it is stored in Git LFS: a `/<repo>/resolve/main/` file that is gets its pointer
    /// at `/<repo>/raw/main/`; one that is not is served there verbatim, as the Hub serves small
    /// text files. Always `false` for paths outside `/resolve/main/`.
    pub lfs: bool,
}

impl HubFile {
    /// For a Git LFS file under `/<repo>/resolve/main/`, the path of its pointer
    /// (`/<repo>/raw/main/<same path>`); `None` for every other file.
    pub fn pointer_path(&self) -> Option<String> {
        if self.lfs { raw_path_for(&self.path) } else { None }
    }

    /// For a file under `/<repo>/resolve/main/`, its `/<repo>/raw/main/` path (which serves its
    /// pointer when it is in Git LFS, its own bytes otherwise); `None` for other paths.
    pub fn raw_path(&self) -> Option<String> {
        raw_path_for(&self.path)
    }

    /// The Git LFS pointer describing this file (served at [`HubFile::pointer_path`]).
    pub fn lfs_pointer(&self) -> LfsPointer {
        LfsPointer { sha256_hex: self.sha256_hex.clone(), size: self.size }
    }
}

/// One request the hub answered (or started answering).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLog {
    /// The request method; empty for a request hyper refused before it reached the hub
    /// (malformed, or its header section too large).
    pub method: String,
    /// The request-target as received (query included); empty when `method` is.
    pub path: String,
    /// The response status.
    pub status: u16,
    /// Response body bytes sent (0 for `HEAD`). Each piece (at most 1 MiB) is counted when the
    /// connection takes it to write, and what the connection drops unwritten (the client went
    /// away) is taken back, so the count is final by the time the client has the whole body.
    pub body_bytes: u64,
    /// The value of the request's `X-COS-Origin` header, if present.
    pub origin: Option<String>,
    /// The host the request named (its `Host` header, or the absolute-form target's host),
    /// lowercase, without port: the site it was made to.
    pub host: Option<String>,
    /// The origin the request was made from, as the browser says: its `Origin` header, or else
    /// the origin of its `Referer` (`scheme://host[:port]`). `None` when it sent neither.
    pub initiator: Option<String>,
    /// Whether it arrived over TLS.
    pub tls: bool,
    /// What was served.
    pub category: ServedCategory,
}

/// What a request was answered with, so that bytes served can be split the way the Hub bills
/// them: model files, Git LFS pointers, everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServedCategory {
    /// A Git LFS file at `/<repo>/resolve/main/` (model weights, runtimes).
    ModelFile,
    /// The Git LFS pointer of such a file, at `/<repo>/raw/main/`.
    LfsPointer,
    /// Anything else: files not in LFS (at either endpoint), pages, scripts, errors.
    #[default]
    Other,
}

/// Options for [`Hub::start_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubOptions {
    /// Names (DNS names or IP addresses) the self-signed certificate covers. Non-empty: the
    /// port also speaks TLS (a connection whose first byte is a TLS handshake record gets TLS,
    /// any other plain HTTP). Empty: plain HTTP only.
    pub tls_names: Vec<String>,
}

/// How one file is served (see [`Hub::add_with`]). Built with its setters:
///
/// ```
/// use cos_test_hub::FileOptions;
/// use http::header::{HeaderName, HeaderValue};
///
/// let options = FileOptions::default()
///     .host("googlechrome.github.io")
///     .header(HeaderName::from_static("permissions-policy"), HeaderValue::from_static("cross-origin-storage=*"));
/// assert_eq!(options.host.as_deref(), Some("googlechrome.github.io"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileOptions {
    /// Serve it only to requests for this host (compared without port, case-insensitively);
    /// `None`: every host. A host's own file wins over one served to every host.
    pub host: Option<String>,
    /// Whether a `/<repo>/resolve/main/` file is in Git LFS (see [`HubFile::lfs`]); `None`:
    /// decided by its name ([`is_lfs_by_default`]).
    pub lfs: Option<bool>,
    /// Its `Content-Type`; `None`: by extension.
    pub content_type: Option<HeaderValue>,
    /// Response headers added to every response carrying it (e.g. `Permissions-Policy`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The status it is served with; `None`: `200` (with ranges and validators). Any other
    /// status serves the whole body as it is (a `404` page, a `302` with a `Location` header).
    pub status: Option<u16>,
}

impl FileOptions {
    /// Served only for `host`.
    pub fn host(mut self, host: &str) -> FileOptions {
        self.host = Some(host.to_ascii_lowercase());
        self
    }

    /// In Git LFS (`true`) or not, whatever its name says.
    pub fn lfs(mut self, lfs: bool) -> FileOptions {
        self.lfs = Some(lfs);
        self
    }

    /// With this `Content-Type`.
    pub fn content_type(mut self, value: HeaderValue) -> FileOptions {
        self.content_type = Some(value);
        self
    }

    /// With one more response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> FileOptions {
        self.headers.push((name, value));
        self
    }

    /// Served with this status (100..=599; others are served as `200`).
    pub fn status(mut self, status: u16) -> FileOptions {
        self.status = Some(status);
        self
    }
}

/// Whether a file of this name is in Git LFS on the Hugging Face Hub by default: the binary
/// kinds the Hub's default `.gitattributes` tracks (`.onnx`, `.bin`, `.safetensors`, `.wasm`,
/// archives, ...) plus `.gguf` and `.onnx_data`, which are always large enough to be uploaded
/// to LFS. Small text files (`config.json`, `tokenizer.json`, `merges.txt`) are plain Git.
pub fn is_lfs_by_default(path: &str) -> bool {
    const LFS_EXTENSIONS: &[&str] = &[
        "7z",
        "arrow",
        "bin",
        "bz2",
        "ckpt",
        "ftz",
        "gguf",
        "gz",
        "h5",
        "joblib",
        "mlmodel",
        "model",
        "msgpack",
        "npy",
        "npz",
        "onnx",
        "onnx_data",
        "ot",
        "parquet",
        "pb",
        "pickle",
        "pkl",
        "pt",
        "pth",
        "rar",
        "safetensors",
        "tar",
        "tflite",
        "tgz",
        "wasm",
        "xz",
        "zip",
        "zst",
    ];
    extension(path).is_some_and(|ext| LFS_EXTENSIONS.iter().any(|lfs| ext.eq_ignore_ascii_case(lfs)))
}

/// The extension of the last path segment, if it has a non-empty stem.
fn extension(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

/// `/<repo>/resolve/main/<file>` → `/<repo>/raw/main/<file>`.
fn raw_path_for(path: &str) -> Option<String> {
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

enum Content {
    /// Held once; every response is a cheap slice of it.
    Bytes(Bytes),
    Generated {
        seed: u64,
    },
}

/// What one path serves. Shared by `Arc` with in-flight responses, so replacing a file does
/// not disturb a response already streaming the old one.
pub(crate) struct Resource {
    content: Content,
    size: u64,
    /// `"<sha256 hex>"`, quotes included.
    etag: String,
    content_type: Option<HeaderValue>,
    /// Extra response headers ([`FileOptions::headers`]).
    headers: Vec<(HeaderName, HeaderValue)>,
    category: ServedCategory,
    /// The status it is served with ([`FileOptions::status`]); anything but `200` is served
    /// whole, without ranges or validators.
    status: StatusCode,
}

impl Resource {
    /// A resource held in memory, served with `status`.
    pub(crate) fn in_memory(
        bytes: Vec<u8>,
        content_type: HeaderValue,
        headers: Vec<(HeaderName, HeaderValue)>,
        status: StatusCode,
    ) -> Resource {
        Resource {
            size: bytes.len() as u64,
            etag: format!("\"{}\"", content::sha256_hex(&bytes)),
            content: Content::Bytes(Bytes::from(bytes)),
            content_type: Some(content_type),
            headers,
            category: ServedCategory::Other,
            status,
        }
    }
}

/// Every served path: for every host, and per host.
#[derive(Default)]
struct Files {
    any_host: HashMap<String, Arc<Resource>>,
    by_host: HashMap<String, HashMap<String, Arc<Resource>>>,
    /// Echo resources: (host or every host, path).
    echoes: Vec<(Option<String>, String)>,
    /// Directories served from disk, the newest first (it wins where prefixes overlap).
    directories: Vec<Directory>,
}

impl Files {
    fn get(&self, host: Option<&str>, path: &str) -> Option<Arc<Resource>> {
        host.and_then(|host| self.by_host.get(host))
            .and_then(|files| files.get(path))
            .or_else(|| self.any_host.get(path))
            .cloned()
    }

    fn is_echo(&self, host: Option<&str>, path: &str) -> bool {
        self.echoes.iter().any(|(h, p)| p == path && (h.is_none() || h.as_deref() == host))
    }

    /// The file on disk a directory serves at `path` (percent-decoded), if any.
    fn on_disk(&self, host: Option<&str>, path: &str) -> Option<std::path::PathBuf> {
        self.directories.iter().find_map(|directory| directory.file_for(host, path))
    }

    fn insert(&mut self, host: Option<&str>, path: String, resource: Arc<Resource>) {
        match host {
            Some(host) => self.by_host.entry(host.to_owned()).or_default().insert(path, resource),
            None => self.any_host.insert(path, resource),
        };
    }
}

#[derive(Default)]
struct Stats {
    total: u64,
    per_origin: HashMap<String, u64>,
    log: Vec<RequestLog>,
}

/// The hub's view of one open connection.
struct ConnState {
    /// Requests whose response body hyper still holds.
    in_flight: AtomicUsize,
    /// At least one response completed: a connection with nothing in flight is then idle
    /// between keep-alive requests (a fresh one is left alone: its first request may be on the
    /// way).
    served: AtomicBool,
    /// The hub refused a request and asked hyper to close: linger before closing.
    refused: AtomicBool,
    /// Chosen to close to make room for a new connection.
    evicted: AtomicBool,
    /// Wakes the connection's task to close it (a stored permit, so it is not missed).
    evict: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.served.load(Ordering::SeqCst) && self.in_flight.load(Ordering::SeqCst) == 0
    }
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    /// By id: the oldest idle connection is the one evicted.
    open: BTreeMap<u64, Arc<ConnState>>,
    /// Connections asked to close that have not closed yet.
    evicting: usize,
}

struct Shared {
    files: RwLock<Files>,
    stats: Mutex<Stats>,
    conns: Mutex<Conns>,
    slot_freed: Notify,
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
/// supported; idle connections are closed after [`IDLE_TIMEOUT`]. Requests hyper cannot parse
/// get `400` (`431` beyond 16 KiB of headers), as do HTTP/1.1 requests without exactly one
/// `Host` and request-targets that are not a path; the connection is then closed.
///
/// Started with [`Hub::start_with`] and TLS names, the same port also speaks TLS: requests can
/// then name any host mapped to it (a browser's host resolver rules, see
/// [`Hub::host_resolver_rules`]), and files added for one host ([`Hub::add_for_host`]) are
/// served only to requests for that host.
///
/// Dropping the hub shuts it down like [`Hub::shutdown`].
pub struct Hub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    certificate_der: Option<Vec<u8>>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Hub {
    /// Binds `127.0.0.1:0` and starts serving plain HTTP on background threads.
    pub fn start() -> io::Result<Hub> {
        Hub::launch(None)
    }

    /// Like [`Hub::start`], with `options`: non-empty [`HubOptions::tls_names`] make a
    /// self-signed certificate for those names and serve TLS on the same port as plain HTTP.
    pub fn start_with(options: HubOptions) -> Result<Hub, HubStartError> {
        let tls = if options.tls_names.is_empty() { None } else { Some(tls::make(&options.tls_names)?) };
        Ok(Hub::launch(tls)?)
    }

    fn launch(tls: Option<tls::Tls>) -> io::Result<Hub> {
        let (acceptor, certificate_der) = match tls {
            Some(tls) => (Some(tls.acceptor), Some(tls.certificate_der)),
            None => (None, None),
        };
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("cos-hub")
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            files: RwLock::new(Files::default()),
            stats: Mutex::new(Stats::default()),
            conns: Mutex::new(Conns::default()),
            slot_freed: Notify::new(),
        });
        let (stop, stopped) = watch::channel(false);
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name("cos-hub-accept".into()).spawn(move || {
                runtime.block_on(accept_loop(shared, listener, acceptor, stopped));
                // Dropping the runtime drops every connection task, and with it its socket.
                drop(runtime);
            })?
        };
        tracing::debug!(%addr, "hub listening");
        Ok(Hub { shared, addr, certificate_der, stop: Some(stop), thread: Some(thread) })
    }

    /// The port it listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The DER bytes of its TLS certificate (for a client to trust); `None` without TLS.
    pub fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate_der.as_deref()
    }

    /// A value for Chromium's `--host-resolver-rules` sending each of `names` to this hub:
    /// `MAP <name> 127.0.0.1:<port>, ...` (the port in a rule is honoured, so `https://name/`
    /// and `http://name/` both reach this one port).
    pub fn host_resolver_rules<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> String {
        names.into_iter().map(|name| format!("MAP {name} {}", self.addr)).collect::<Vec<_>>().join(", ")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL followed by `path` (a `/` is inserted if `path` does not start with one).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), normalise(path))
    }

    /// Serves `bytes` at `path` (a leading `/` is added if missing) to every host, replacing
    /// any file there: [`Hub::add_with`] with default options.
    pub fn add(&self, path: &str, bytes: Vec<u8>) -> HubFile {
        self.add_with(path, bytes, &FileOptions::default())
    }

    /// Serves `bytes` at `path` only to requests for `host` (e.g. `cdn.jsdelivr.net`).
    pub fn add_for_host(&self, host: &str, path: &str, bytes: Vec<u8>) -> HubFile {
        self.add_with(path, bytes, &FileOptions::default().host(host))
    }

    /// Serves `bytes` at `path` (a leading `/` is added if missing) as `options` say,
    /// replacing any file there for the same host (or for every host).
    ///
    /// A path of the form `/<repo>/resolve/main/<file>` is also served at
    /// `/<repo>/raw/main/<file>`: its Git LFS pointer when the file is in LFS
    /// ([`FileOptions::lfs`], by default [`is_lfs_by_default`]), its own bytes otherwise. Any
    /// other path is served only there. The bytes are held once and never copied per request.
    pub fn add_with(&self, path: &str, bytes: Vec<u8>, options: &FileOptions) -> HubFile {
        let sha256_hex = content::sha256_hex(&bytes);
        let size = bytes.len() as u64;
        self.insert(normalise(path), Content::Bytes(Bytes::from(bytes)), sha256_hex, size, options)
    }

    /// Serves `size` bytes of deterministic pseudo-random content derived from `seed` at `path`
    /// to every host (same rules as [`Hub::add`]). The content is hashed once here and
    /// generated in 1 MiB chunks whenever it is served; it is never held in memory whole. Same
    /// `(size, seed)`, same bytes; a different seed gives different bytes.
    pub fn add_generated(&self, path: &str, size: u64, seed: u64) -> HubFile {
        self.add_generated_with(path, size, seed, &FileOptions::default())
    }

    /// [`Hub::add_generated`] served as `options` say (see [`Hub::add_with`]).
    pub fn add_generated_with(&self, path: &str, size: u64, seed: u64, options: &FileOptions) -> HubFile {
        let sha256_hex = content::generated_sha256_hex(size, seed);
        self.insert(normalise(path), Content::Generated { seed }, sha256_hex, size, options)
    }

    /// Answers `path` with a redirect (`status`, e.g. 302) to `location`, for `host` only
    /// (`None`: every host).
    pub fn add_redirect(&self, host: Option<&str>, path: &str, location: &str, status: u16) -> Result<(), HubError> {
        let location = HeaderValue::from_str(location)
            .map_err(|_| HubError::InvalidHeader(format!("bad Location {location:?}")))?;
        let mut options = FileOptions::default().status(status).header(header::LOCATION, location);
        options.host = host.map(str::to_ascii_lowercase);
        self.add_with(path, Vec::new(), &options);
        Ok(())
    }

    /// Serves the files under `root` on disk at `prefix` (e.g. `/` or `/resources/`) for
    /// `host` only (`None`: every host), read when requested: `Content-Type` by extension,
    /// extra headers from `<file>.headers` and `__dir__.headers` (lines `Name: value`, the
    /// web-platform-tests convention), `index.html` for a directory. Only paths below `root`
    /// are served. Files added with [`Hub::add_with`] win over a directory's.
    pub fn serve_directory(&self, host: Option<&str>, prefix: &str, root: &std::path::Path) {
        let mut prefix = normalise(prefix);
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let directory = Directory { host: host.map(str::to_ascii_lowercase), prefix, root: root.to_path_buf() };
        self.shared.files.write().directories.insert(0, directory);
    }

    /// Serves an echo resource at `path` for `host` only (`None`: every host): the response's
    /// body, `Content-Type`, status and extra headers come from the query string (`body`,
    /// `content-type`, `status` 200..=599, `header=Name: value`, repeatable; form-encoded); a
    /// query that does not parse gets `400`.
    pub fn add_echo(&self, host: Option<&str>, path: &str) {
        let entry = (host.map(str::to_ascii_lowercase), normalise(path));
        let mut files = self.shared.files.write();
        if !files.echoes.contains(&entry) {
            files.echoes.push(entry);
        }
    }

    fn insert(&self, path: String, content: Content, sha256_hex: String, size: u64, options: &FileOptions) -> HubFile {
        let host = options.host.as_deref().map(str::to_ascii_lowercase);
        let raw_path = raw_path_for(&path);
        let lfs = raw_path.is_some() && options.lfs.unwrap_or_else(|| is_lfs_by_default(&path));
        let file = HubFile { path, sha256_hex, size, host, lfs };
        let resource = Arc::new(Resource {
            content,
            size,
            etag: format!("\"{}\"", file.sha256_hex),
            content_type: Some(options.content_type.clone().unwrap_or_else(|| content_type(&file.path))),
            headers: options.headers.clone(),
            category: if lfs { ServedCategory::ModelFile } else { ServedCategory::Other },
            status: options.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK),
        });
        let raw = raw_path.map(|raw_path| {
            if !lfs {
                // The Hub's raw endpoint serves a file kept in plain Git as it is.
                return (raw_path, Arc::clone(&resource));
            }
            let text = file.lfs_pointer().to_text().into_bytes();
            let pointer = Resource {
                size: text.len() as u64,
                etag: format!("\"{}\"", content::sha256_hex(&text)),
                content: Content::Bytes(Bytes::from(text)),
                content_type: Some(HeaderValue::from_static("text/plain; charset=utf-8")),
                headers: options.headers.clone(),
                category: ServedCategory::LfsPointer,
                status: StatusCode::OK,
            };
            (raw_path, Arc::new(pointer))
        });
        let mut files = self.shared.files.write();
        files.insert(file.host.as_deref(), file.path.clone(), resource);
        if let Some((raw_path, raw)) = raw {
            files.insert(file.host.as_deref(), raw_path, raw);
        }
        file
    }

    /// Total response body bytes sent to all clients so far (counted like
    /// [`RequestLog::body_bytes`]): a response a client has fully received is always included;
    /// one still streaming is partly included.
    pub fn bytes_served(&self) -> u64 {
        self.shared.stats.lock().total
    }

    /// Every request answered so far, in the order responses were started (a request is logged
    /// just before its response is written; see [`RequestLog::body_bytes`]).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.stats.lock().log.clone()
    }

    /// Response body bytes sent for requests whose `X-COS-Origin` header was `origin`
    /// (counted like [`Hub::bytes_served`]): the sum of [`RequestLog::body_bytes`] over those
    /// requests.
    pub fn bytes_served_to(&self, origin: &str) -> u64 {
        self.shared.stats.lock().per_origin.get(origin).copied().unwrap_or(0)
    }

    /// Stops accepting, closes the listening socket (releasing the port) and every open
    /// connection, and joins the hub's threads. Responses in flight are cut off.
    pub fn shutdown(self) {
        // The work is done by `Drop`.
    }

    fn stop(&mut self) {
        let (Some(stop), Some(thread)) = (self.stop.take(), self.thread.take()) else { return };
        let _ = stop.send(true);
        if thread.join().is_err() {
            tracing::warn!("the hub's thread panicked");
        }
        tracing::debug!(addr = %self.addr, "hub stopped");
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn content_type(path: &str) -> HeaderValue {
    let ext = extension(path).map(str::to_ascii_lowercase);
    HeaderValue::from_static(match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        // Module scripts must have a JavaScript MIME type or browsers refuse to run them.
        Some("js" | "mjs") => "text/javascript",
        // `WebAssembly.instantiateStreaming` insists on this one.
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    })
}

/// Accepts until `stopped` turns true (or its sender is gone).
///
/// Each accepted TCP stream goes to [`serve_connection`], which takes any
/// `AsyncRead + AsyncWrite` stream. With an `acceptor`, the spawned task (so that a slow
/// handshake does not hold up the accept loop) first tells TLS from plain HTTP and wraps TLS
/// streams; nothing from `serve_connection` down knows about TCP or TLS.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "hub accept failed");
                // E.g. out of descriptors: back off instead of spinning.
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let registered = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            registered = register(&shared) => registered,
        };
        let (id, state) = registered;
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(&shared, stream, &state, false).await,
                Some(acceptor) => serve_tls_or_plain(&shared, stream, &state, &acceptor).await,
            }
            let mut conns = shared.conns.lock();
            conns.open.remove(&id);
            if state.evicted.load(Ordering::SeqCst) {
                conns.evicting = conns.evicting.saturating_sub(1);
            }
            drop(conns);
            shared.slot_freed.notify_one();
        });
    }
}

/// First byte of a TLS record carrying a handshake (RFC 8446 §5.1): a ClientHello starts with
/// it, and no HTTP/1.x request line can.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves one connection on a port that speaks both: peeks at its first byte (without consuming
/// it) and serves TLS when it starts a handshake, plain HTTP otherwise. A browser mapping an
/// `https://` name and an `http://` name to the same port needs exactly this.
async fn serve_tls_or_plain(
    shared: &Arc<Shared>,
    stream: tokio::net::TcpStream,
    state: &Arc<ConnState>,
    acceptor: &TlsAcceptor,
) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(IDLE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => {}
        // Closed, failed or silent before sending anything: nothing to serve.
        Ok(Ok(0) | Err(_)) | Err(_) => return,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return serve_connection(shared, stream, state, false).await;
    }
    match tokio::time::timeout(IDLE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => serve_connection(shared, stream, state, true).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "hub TLS handshake failed"),
        Err(_) => tracing::debug!("hub TLS handshake timed out"),
    }
}

/// Waits for a free connection slot (closing idle keep-alive connections to make one) and
/// registers a new connection.
async fn register(shared: &Shared) -> (u64, Arc<ConnState>) {
    loop {
        // Created before the check, so a slot freed in between is not missed (`notify_one`
        // stores a permit).
        let freed = shared.slot_freed.notified();
        {
            let mut conns = shared.conns.lock();
            if conns.open.len() < MAX_CONNECTIONS {
                let id = conns.next_id;
                conns.next_id += 1;
                let state = Arc::new(ConnState::new());
                conns.open.insert(id, Arc::clone(&state));
                return (id, state);
            }
            // One eviction per slot needed: a connection already asked to close is about to
            // free its slot.
            if conns.evicting == 0 {
                let victim = conns.open.values().find(|c| c.is_idle() && !c.evicted.load(Ordering::SeqCst)).cloned();
                if let Some(victim) = victim {
                    tracing::debug!("hub at its connection limit: closing an idle connection");
                    victim.evicted.store(true, Ordering::SeqCst);
                    victim.evict.notify_one();
                    conns.evicting += 1;
                }
            }
        }
        freed.await;
    }
}

/// Serves HTTP/1.1 on `stream` until the client closes, hyper gives up on the connection, or
/// the hub evicts it; then lingers if a request was refused.
///
/// Generic over the stream so that a TLS stream is served exactly like a TCP one. hyper borrows
/// the stream rather than owning it, so that after hyper is done the hub can still log a
/// refusal and drain the connection before closing it.
async fn serve_connection<S>(shared: &Arc<Shared>, stream: S, state: &Arc<ConnState>, tls: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut stream = WriteDeadline::new(stream, IDLE_TIMEOUT);
    let service = {
        let (shared, state) = (Arc::clone(shared), Arc::clone(state));
        service_fn(move |request| std::future::ready(Ok::<_, Infallible>(respond(&shared, &state, tls, request))))
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .max_header_size(MAX_REQUEST_HEAD)
        // Queued (vectored) writes hand each body piece to the stream as it is, so a piece's
        // bytes are only ever written from the piece itself: what is dropped unwritten is
        // exactly its remainder (see `Piece`). Flattening would copy pieces into hyper's buffer.
        .writev(true);
    let result = {
        let mut connection = pin!(builder.serve_connection(TokioIo::new(&mut stream), service));
        tokio::select! {
            result = connection.as_mut() => result,
            () = state.evict.notified() => {
                // Closes at once when idle; a response already under way is finished first.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    };
    let linger = match result {
        Ok(()) => state.refused.load(Ordering::SeqCst),
        // hyper answered the request itself (400, or 431 for a header section too large).
        Err(e) if e.is_parse() && !e.is_parse_version_h2() => {
            let status = if e.is_parse_too_large() { 431 } else { 400 };
            tracing::debug!(error = %e, status, "hub refused a request hyper could not parse");
            let log = RequestLog {
                method: String::new(),
                path: String::new(),
                status,
                body_bytes: 0,
                origin: None,
                host: None,
                initiator: None,
                tls,
                category: ServedCategory::Other,
            };
            shared.log_request(log);
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "hub connection ended");
            false
        }
    };
    if linger {
        linger_close(&mut stream).await;
    }
}

/// Half-closes, then reads and discards (bounded in time and bytes) until the client closes.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut drained = 0u64;
        while drained < LINGER_MAX_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Counts a request as in flight on its connection until hyper drops its response body.
struct InFlight {
    shared: Arc<Shared>,
    state: Arc<ConnState>,
}

impl InFlight {
    fn new(shared: &Arc<Shared>, state: &Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight { shared: Arc::clone(shared), state: Arc::clone(state) }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.served.store(true, Ordering::SeqCst);
        if self.state.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            // An accept waiting for a slot may now evict this connection.
            self.shared.slot_freed.notify_one();
        }
    }
}

/// Where a response's body bytes are counted.
struct Account {
    shared: Arc<Shared>,
    origin: Option<String>,
    log_index: usize,
}

impl Account {
    fn add(&self, n: i64) {
        self.shared.count_body_bytes(self.log_index, self.origin.as_deref(), n);
    }
}

/// One piece of a response body (at most 1 MiB). Its bytes are counted when hyper takes it to
/// write, before any of them can reach the client; whatever is left unwritten when hyper drops
/// it (the connection failed or was closed) is taken back.
struct Piece {
    bytes: Bytes,
    account: Arc<Account>,
}

impl Buf for Piece {
    fn remaining(&self) -> usize {
        self.bytes.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.bytes.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.bytes.advance(cnt);
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            self.account.add(-(self.bytes.len() as i64));
        }
    }
}

/// Bytes `offset..end` of a resource, still to be sent.
struct Source {
    resource: Arc<Resource>,
    offset: u64,
    end: u64,
    account: Arc<Account>,
}

/// A response body: a slice of a resource, produced a piece at a time (generated content is
/// generated piece by piece, so a big file never sits in memory whole).
struct HubBody {
    source: Option<Source>,
    _in_flight: InFlight,
}

impl HttpBody for HubBody {
    type Data = Piece;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Piece>, Infallible>>> {
        let Some(source) = &mut self.get_mut().source else { return Poll::Ready(None) };
        if source.offset >= source.end {
            return Poll::Ready(None);
        }
        let n = usize::try_from(source.end - source.offset).map_or(CHUNK, |left| left.min(CHUNK));
        let bytes = match &source.resource.content {
            Content::Bytes(bytes) => {
                // `Content::Bytes` sizes come from a `Vec`'s length, so offsets fit in `usize`.
                let from = usize::try_from(source.offset).unwrap_or(usize::MAX).min(bytes.len());
                bytes.slice(from..(from + n).min(bytes.len()))
            }
            Content::Generated { seed } => {
                let mut piece = vec![0; n];
                content::fill_generated(*seed, source.offset, &mut piece);
                Bytes::from(piece)
            }
        };
        source.offset += n as u64;
        source.account.add(bytes.len() as i64);
        Poll::Ready(Some(Ok(Frame::data(Piece { bytes, account: Arc::clone(&source.account) }))))
    }

    fn is_end_stream(&self) -> bool {
        self.source.as_ref().is_none_or(|s| s.offset >= s.end)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.source.as_ref().map_or(0, |s| s.end.saturating_sub(s.offset)))
    }
}

fn header_value(s: &str) -> HeaderValue {
    // Only called with values the hub writes itself (numbers, hashes, fixed text).
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A response under construction for one request.
struct Reply {
    shared: Arc<Shared>,
    in_flight: InFlight,
    log: RequestLog,
    is_head: bool,
}

impl Reply {
    /// An error response with a short `text/plain` body (`"<status> <reason>\n"`); `close`
    /// asks hyper to close the connection after it, with lingering.
    fn error(
        self,
        status: StatusCode,
        headers: Vec<(header::HeaderName, HeaderValue)>,
        close: bool,
    ) -> Response<HubBody> {
        let text = format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
        let resource = Arc::new(Resource {
            size: text.len() as u64,
            content: Content::Bytes(Bytes::from(text)),
            etag: String::new(),
            content_type: Some(HeaderValue::from_static("text/plain; charset=utf-8")),
            headers: Vec::new(),
            category: ServedCategory::Other,
            status,
        });
        let len = resource.size;
        if close {
            self.in_flight.state.refused.store(true, Ordering::SeqCst);
        }
        self.send(status, headers, Some((resource, 0, len)), close)
    }

    /// Logs the request, then builds the response: the common headers, `headers`, and `len`
    /// bytes of `content` from `start` (only announced for `HEAD`).
    fn send(
        self,
        status: StatusCode,
        headers: Vec<(header::HeaderName, HeaderValue)>,
        content: Option<(Arc<Resource>, u64, u64)>,
        close: bool,
    ) -> Response<HubBody> {
        let Reply { shared, in_flight, mut log, is_head } = self;
        log.status = status.as_u16();
        log.body_bytes = 0;
        let origin = log.origin.clone();
        // Logged before the response is written, so that once a client has the whole response
        // the accounting already includes it.
        let log_index = shared.log_request(log);
        let mut response_headers = header::HeaderMap::new();
        if let Some((resource, _, len)) = &content {
            if let Some(content_type) = &resource.content_type {
                response_headers.insert(header::CONTENT_TYPE, content_type.clone());
            }
            for (name, value) in &resource.headers {
                response_headers.append(name.clone(), value.clone());
            }
            if is_head {
                // No body goes with a HEAD response, so hyper cannot size it: announce it.
                response_headers.insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
            }
        }
        for (name, value) in headers {
            response_headers.append(name, value);
        }
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        response_headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
        if close {
            response_headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let source = content.filter(|_| !is_head).map(|(resource, start, len)| Source {
            end: start.saturating_add(len).min(resource.size),
            offset: start,
            resource,
            account: Arc::new(Account { shared: Arc::clone(&shared), origin, log_index }),
        });
        let mut response = Response::new(HubBody { source, _in_flight: in_flight });
        *response.status_mut() = status;
        *response.headers_mut() = response_headers;
        response
    }
}

/// The path of an origin-form (`/p?q`) or absolute-form (`http://host/p?q`) request-target,
/// without the query; `"*"` for the asterisk-form; `None` for anything else.
fn target_path(uri: &http::Uri) -> Option<&str> {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(_)) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            Some(if uri.path().is_empty() { "/" } else { uri.path() })
        }
        (None, None) if uri.path().starts_with('/') || uri.path() == "*" => Some(uri.path()),
        _ => None,
    }
}

/// The host a request names, lowercase and without port: the absolute-form target's, else the
/// `Host` header's (which is only trusted when there is exactly one; see [`respond`]).
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let from_target = request.uri().host().map(str::to_owned);
    let from_header = || {
        let mut values = request.headers().get_all(header::HOST).iter();
        let value = values.next().filter(|_| values.next().is_none())?;
        let authority: http::uri::Authority = value.to_str().ok()?.parse().ok()?;
        Some(authority.host().to_owned())
    };
    from_target.or_else(from_header).map(|host| host.to_ascii_lowercase())
}

/// The origin a browser says a request comes from: `Origin` (unless `null`), else the
/// scheme and authority of `Referer`.
fn initiator(headers: &header::HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|v| *v != "null");
    if let Some(origin) = origin {
        return Some(origin.to_owned());
    }
    let referer: http::Uri = headers.get(header::REFERER)?.to_str().ok()?.parse().ok()?;
    Some(format!("{}://{}", referer.scheme_str()?, referer.authority()?))
}

/// Answers one request (hyper has parsed it; what it asks for is decided here).
fn respond(shared: &Arc<Shared>, state: &Arc<ConnState>, tls: bool, request: Request<Incoming>) -> Response<HubBody> {
    let headers = request.headers();
    let first = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let host = request_host(&request);
    let mut reply = Reply {
        shared: Arc::clone(shared),
        in_flight: InFlight::new(shared, state),
        log: RequestLog {
            method: request.method().to_string(),
            path: request.uri().to_string(),
            status: 0,
            body_bytes: 0,
            origin: first(ORIGIN_HEADER),
            host: host.clone(),
            initiator: initiator(headers),
            tls,
            category: ServedCategory::Other,
        },
        is_head: request.method() == Method::HEAD,
    };
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is refused.
    if request.version() == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return reply.error(StatusCode::BAD_REQUEST, Vec::new(), true);
    }
    let Some(path) = target_path(request.uri()) else {
        return reply.error(StatusCode::BAD_REQUEST, Vec::new(), true);
    };
    let method = request.method();
    if path == "*" && method != Method::OPTIONS {
        return reply.error(StatusCode::BAD_REQUEST, Vec::new(), true);
    }
    if method == Method::OPTIONS {
        let allow_headers =
            headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned().unwrap_or(HeaderValue::from_static("*"));
        let preflight = vec![
            (header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS)),
            (header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS)),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers),
            (header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400")),
        ];
        return reply.send(StatusCode::NO_CONTENT, preflight, None, false);
    }
    if method != Method::GET && method != Method::HEAD {
        let allow = vec![(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS))];
        return reply.error(StatusCode::METHOD_NOT_ALLOWED, allow, false);
    }

    let decoded = range::percent_decode(path);
    let (resource, echo, on_disk) = {
        let files = shared.files.read();
        let host = host.as_deref();
        let resource =
            decoded.as_deref().and_then(|decoded| files.get(host, decoded)).or_else(|| files.get(host, path));
        let echo = resource.is_none() && files.is_echo(host, path);
        let on_disk =
            if resource.is_none() && !echo { decoded.as_deref().and_then(|d| files.on_disk(host, d)) } else { None };
        (resource, echo, on_disk)
    };
    let resource = match (resource, echo, on_disk) {
        (Some(resource), _, _) => Some(resource),
        (None, true, _) => match echo::respond(request.uri().query()) {
            Some(resource) => Some(Arc::new(resource)),
            None => return reply.error(StatusCode::BAD_REQUEST, Vec::new(), false),
        },
        // Small test files; read on the connection's task like the rest of the answer.
        (None, false, Some(file)) => directory::load(&file, content_type(path)).map(Arc::new),
        (None, false, None) => None,
    };
    let Some(resource) = resource else {
        return reply.error(StatusCode::NOT_FOUND, Vec::new(), false);
    };
    reply.log.category = resource.category;
    if resource.status != StatusCode::OK {
        let len = resource.size;
        return reply.send(resource.status, Vec::new(), Some((resource, 0, len)), false);
    }
    let validators = |resource: &Resource| {
        vec![(header::ETAG, header_value(&resource.etag)), (header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))]
    };
    if let Some(tags) = first(header::IF_NONE_MATCH.as_str())
        && range::etag_matches(&tags, &resource.etag)
    {
        return reply.send(StatusCode::NOT_MODIFIED, validators(&resource), None, false);
    }
    let range_applies = first(header::IF_RANGE.as_str()).is_none_or(|tag| tag.trim() == resource.etag);
    let range = match first(header::RANGE.as_str()) {
        Some(value) if range_applies => range::parse_range(&value, resource.size),
        _ => RangeRequest::Full,
    };
    let mut headers = validators(&resource);
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, resource.size),
        RangeRequest::Partial { start, end } => {
            let content_range = format!("bytes {start}-{end}/{}", resource.size);
            headers.push((header::CONTENT_RANGE, header_value(&content_range)));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let content_range = vec![(header::CONTENT_RANGE, header_value(&format!("bytes */{}", resource.size)))];
            return reply.error(StatusCode::RANGE_NOT_SATISFIABLE, content_range, false);
        }
    };
    reply.send(status, headers, Some((resource, start, len)), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_paths() {
        assert_eq!(
            raw_path_for("/Xenova/whisper-tiny.en/resolve/main/onnx/encoder_model.onnx").as_deref(),
            Some("/Xenova/whisper-tiny.en/raw/main/onnx/encoder_model.onnx")
        );
        assert_eq!(raw_path_for("/m/resolve/main/config.json").as_deref(), Some("/m/raw/main/config.json"));
        assert_eq!(raw_path_for("/runtime/ort-wasm.wasm"), None);
        assert_eq!(raw_path_for("/resolve/main/x"), None);
        assert_eq!(raw_path_for("/m/resolve/main/"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("/runtime/ort-wasm-simd.wasm"), "application/wasm");
        assert_eq!(content_type("/runtime/X.WASM"), "application/wasm");
        assert_eq!(content_type("/runtime/.wasm"), "application/octet-stream");
        assert_eq!(content_type("/m/resolve/main/onnx/model.onnx"), "application/octet-stream");
        assert_eq!(content_type("/app/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/npm/x@1/dist/x.min.js"), "text/javascript");
        assert_eq!(content_type("/npm/x@1/dist/ort.mjs"), "text/javascript");
        assert_eq!(content_type("/m/resolve/main/config.json"), "application/json");
        assert_eq!(content_type("/m/resolve/main/merges.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("/noext"), "application/octet-stream");
    }

    #[test]
    fn lfs_by_name() {
        for lfs in
            ["/m/resolve/main/onnx/model.onnx", "/a/b.WASM", "/m/x.gguf", "/m/params_shard_0.bin", "/m/w.safetensors"]
        {
            assert!(is_lfs_by_default(lfs), "{lfs}");
        }
        for plain in ["/m/config.json", "/m/tokenizer.json", "/m/merges.txt", "/m/.bin", "/m/README.md", "/m/bin"] {
            assert!(!is_lfs_by_default(plain), "{plain}");
        }
    }

    #[test]
    fn target_paths() {
        let path = |target: &str| target_path(&target.parse().unwrap()).map(str::to_owned);
        assert_eq!(path("/a/b?x=1").as_deref(), Some("/a/b"));
        assert_eq!(path("http://h:1/a?x").as_deref(), Some("/a"));
        assert_eq!(path("HTTP://h").as_deref(), Some("/"));
        assert_eq!(path("*").as_deref(), Some("*"));
        assert_eq!(path("ftp://h/a"), None);
        assert_eq!(path("h:443"), None);
        assert_eq!(path("a.bin"), None);
    }
}
