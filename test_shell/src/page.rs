//! The shell's browser side: the COS host (frame table, broker stubs, the sandboxed storage
//! service process) and pages whose frames live in renderer processes, one per site.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cos_browser::permissions_policy;
use cos_browser::{ContextKind, CosHost, FrameInfo, HostConfig, ServiceLaunch};
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig};
use cos_common::{AllowOriginCeiling, OffTheRecordProfileId, Origin, Partition, Site};
use cos_ipc::Endpoint;
use cos_ipc::launch::{LaunchOptions, LaunchedChild};
use parking_lot::Mutex;

use crate::channel::{Channel, DEFAULT_MESSAGE_LIMIT};
use crate::document::IframeElement;
use crate::document::navigation;
use crate::servers::OriginServers;
use cos_test_hub::FileOptions;

use crate::js::TestResult;
use crate::protocol::{CosLink, RendererCommand, RendererReply};

/// What went wrong running a page (operator-facing).
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The COS host or a process failed to start.
    #[error("could not start: {0}")]
    Start(String),
    /// A renderer failed or went away.
    #[error("renderer: {0}")]
    Renderer(String),
    /// A script could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The URL is not an http(s) URL.
    #[error("not an http(s) URL: {0}")]
    Origin(String),
}

struct RendererProcess {
    id: u64,
    child: LaunchedChild,
    control: Channel<RendererCommand, RendererReply>,
}

/// The argument that names a renderer process in its log lines (`renderer[<name>]`).
pub const RENDERER_NAME_ARG: &str = "--renderer-for=";

/// How a document is opened: its response headers and profile.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The document's response headers (`Permissions-Policy`, `Cross-Origin-Storage-Allow-Origin`).
    pub headers: Vec<(String, String)>,
    /// Open it in an off-the-record profile.
    pub off_the_record: bool,
    /// Put it in the renderer process of this name (shared by every page opened with it,
    /// whatever their sites) instead of its site's.
    pub process: Option<String>,
}

impl OpenOptions {}

/// The first value of header `name` (case-insensitive).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The most frames the `<iframe>`s of one document tree (a page opened or an iframe appended,
/// and all it embeds) may make, and how deep they may nest: a document that embeds itself
/// stops there.
pub const MAX_HTML_FRAMES: usize = 64;
/// See [`MAX_HTML_FRAMES`].
pub const MAX_HTML_DEPTH: usize = 8;

/// How long a document's scripts and links may take to reach its `load` event.
const DOCUMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// What is left of [`MAX_HTML_FRAMES`] and [`MAX_HTML_DEPTH`] while a document tree loads.
struct Nesting {
    depth: usize,
    remaining: usize,
}

impl Nesting {
    fn top() -> Nesting {
        Nesting { depth: 0, remaining: MAX_HTML_FRAMES }
    }
}

/// A child frame a document made from one of its `<iframe>` elements.
#[derive(Clone)]
pub struct ChildFrame {
    /// The child frame.
    pub page: Page,
    /// Its document's URL (the `src` resolved against the parent document).
    pub url: String,
    /// The element's `name`, else its `id`.
    pub name: Option<String>,
}

/// What the browser remembers about a frame it created.
#[derive(Clone)]
struct FrameRecord {
    origin: Origin,
    top_level_site: Site,
    cos_allowed: bool,
    partition: Partition,
    /// The document's URL.
    url: String,
    /// The named renderer process it lives in ([`OpenOptions::process`]); its HTML iframes
    /// go there too.
    process: Option<String>,
    /// The frame id of the document's service workers (0 before it is registered).
    service_worker_frame: u64,
}

/// How renderers reach their broker stubs (`test_shell run --renderer-transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RendererTransport {
    /// `cos_ipc` pipes (the default, and what every embedder gets without a cargo feature).
    #[default]
    CosIpc,
    /// `ipc-channel` links, as Servo's content processes have (ARCHITECTURE.md, "The renderer
    /// link over ipc-channel").
    IpcChannel,
}

/// The shell's browser process: the COS host, the frame table and the renderer processes that
/// pages and frames run in.
pub struct ShellBrowser {
    host: CosHost,
    program: PathBuf,
    process_per_site: std::sync::atomic::AtomicBool,
    /// The bound of one control message to or from a renderer (see [`Channel`]).
    message_limit: std::sync::atomic::AtomicUsize,
    /// How renderers launched from now on reach their broker stubs.
    renderer_transport: Mutex<RendererTransport>,
    /// Renderer processes by what they host: `site:<site>`, `shared` or `named:<name>`.
    renderers: Mutex<HashMap<String, std::sync::Arc<Mutex<RendererProcess>>>>,
    frames: Mutex<HashMap<u64, FrameRecord>>,
    /// The frames each document made from its `<iframe>` elements.
    children: Mutex<HashMap<u64, Vec<ChildFrame>>>,
    next_id: Mutex<u64>,
    servers: std::sync::Arc<OriginServers>,
    network: std::sync::Arc<crate::network::Network>,
    _profile: Option<tempfile::TempDir>,
}

impl ShellBrowser {
    /// Starts the COS host with its sandboxed storage-service process on `profile` (a temporary
    /// one when `None`). `program` is the shell binary (it runs every process type).
    pub fn start(program: &Path, profile: Option<&Path>) -> Result<Self, PageError> {
        Self::start_with(program, profile, |_| {})
    }

    /// Like [`start`](Self::start), with the service configuration adjusted by `adjust`.
    pub fn start_with(
        program: &Path,
        profile: Option<&Path>,
        adjust: impl FnOnce(&mut ServiceProcessConfig),
    ) -> Result<Self, PageError> {
        let (dir, temporary) = match profile {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| PageError::Start(format!("{}: {e}", dir.display())))?;
                (dir.to_path_buf(), None)
            }
            None => {
                let temporary = tempfile::tempdir().map_err(|e| PageError::Start(e.to_string()))?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let mut service = ServiceProcessConfig::new(dir.to_string_lossy());
        adjust(&mut service);
        let mut launch = LaunchOptions::new("storage-service");
        launch.program = program.to_path_buf();
        let host = CosHost::start(HostConfig { launch: ServiceLaunch::Process(launch), service })
            .map_err(|e| PageError::Start(e.to_string()))?;
        let servers = std::sync::Arc::<OriginServers>::default();
        Ok(Self {
            program: program.to_path_buf(),
            process_per_site: std::sync::atomic::AtomicBool::new(true),
            message_limit: std::sync::atomic::AtomicUsize::new(DEFAULT_MESSAGE_LIMIT),
            renderer_transport: Mutex::new(RendererTransport::default()),
            renderers: Mutex::new(HashMap::new()),
            frames: Mutex::new(HashMap::new()),
            children: Mutex::new(HashMap::new()),
            next_id: Mutex::new(1),
            servers: servers.clone(),
            network: std::sync::Arc::new(crate::network::Network {
                frames: host.frames().clone(),
                servers,
                loader: host.loader(),
            }),
            host,
            _profile: temporary,
        })
    }

    /// The COS host (clear site data, inspection, ...).
    pub fn host(&self) -> &CosHost {
        &self.host
    }

    /// The origin servers: every named host's http(s) requests from this browser's pages
    /// go to them (see [`OriginServers`]).
    pub fn origin_servers(&self) -> &std::sync::Arc<OriginServers> {
        &self.servers
    }

    /// Serves `bytes` at `path` of `origin`'s host (an http(s) URL or origin) as `options` say
    /// (status, headers, content type); returns the file's absolute URL at that origin.
    pub fn serve(&self, origin: &str, path: &str, bytes: Vec<u8>, options: FileOptions) -> Result<String, PageError> {
        let origin = Origin::from_url(origin).map_err(|_| PageError::Origin(origin.to_owned()))?;
        let hub = self.servers.hub().map_err(|e| PageError::Start(format!("origin servers: {e}")))?;
        let file = hub.add_with(path, bytes, &options.host(origin.host()));
        Ok(format!("{origin}{}", file.path))
    }

    /// Serves the directory `dir` from disk at `prefix` of `origin`'s host (e.g. a
    /// web-platform-tests checkout at `https://web-platform.test/`), `.headers` files included
    /// ([`cos_test_hub::Hub::serve_directory`]); also answers the echo resource at `/echo`.
    pub fn serve_directory(&self, origin: &str, prefix: &str, dir: &Path) -> Result<(), PageError> {
        let origin = Origin::from_url(origin).map_err(|_| PageError::Origin(origin.to_owned()))?;
        let hub = self.servers.hub().map_err(|e| PageError::Start(format!("origin servers: {e}")))?;
        hub.serve_directory(Some(origin.host()), prefix, dir);
        hub.add_echo(Some(origin.host()), "/echo");
        Ok(())
    }

    fn next(&self) -> u64 {
        let mut next = self.next_id.lock();
        *next += 1;
        *next
    }

    /// The renderer process of `site` (site isolation: one per site), launched on first use.
    /// `false`: every page shares one renderer process (site isolation off, like
    /// `--process-per-site=false`); the broker still checks each frame's own origin.
    pub fn set_process_per_site(&self, enabled: bool) {
        self.process_per_site.store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bounds each message to and from renderers launched from now on (a `frame.eval` argument
    /// or result, a script, a console line) at `bytes`; larger ones fail with a clear error.
    pub fn set_message_limit(&self, bytes: usize) {
        self.message_limit.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// How renderers launched from now on reach their broker stubs.
    pub fn set_renderer_transport(&self, transport: RendererTransport) {
        *self.renderer_transport.lock() = transport;
    }

    /// Registers renderer `id` with the host over the chosen transport; returns the renderer's
    /// half for its `Init`. Over ipc-channel, the content process connects to a one-shot server,
    /// as an embedder would bootstrap it; a thread waits for it and hands over the link.
    fn connect_renderer(&self, id: u64, kill: impl Fn() + Send + Sync + 'static) -> Result<CosLink, PageError> {
        let start = |error: std::io::Error| PageError::Start(format!("renderer link: {error}"));
        match *self.renderer_transport.lock() {
            RendererTransport::CosIpc => {
                let (browser_end, renderer_end) = Endpoint::pair().map_err(start)?;
                self.host.register_renderer(RendererId(id), browser_end, kill);
                Ok(CosLink::CosIpc(renderer_end.into()))
            }
            RendererTransport::IpcChannel => {
                use cos_ipc::ipc_channel::ipc_channel::ipc::{IpcOneShotServer, IpcSender};
                use cos_ipc::ipc_channel::{RendererLink, link};
                let (renderer_half, browser_half) = link().map_err(start)?;
                self.host.register_renderer_ipc_channel(RendererId(id), browser_half, kill).map_err(start)?;
                let (server, name) = IpcOneShotServer::<IpcSender<RendererLink>>::new().map_err(start)?;
                std::thread::Builder::new()
                    .name(format!("renderer-{id}-bootstrap"))
                    .spawn(move || match server.accept() {
                        Ok((_, sender)) => {
                            if let Err(error) = sender.send(renderer_half) {
                                tracing::error!(%error, "could not hand a renderer its COS link");
                            }
                        }
                        Err(error) => tracing::error!(%error, "a renderer never connected for its COS link"),
                    })
                    .map_err(start)?;
                Ok(CosLink::IpcChannel { server: name })
            }
        }
    }

    fn renderer_for(
        &self,
        site: &Site,
        named: Option<&str>,
    ) -> Result<std::sync::Arc<Mutex<RendererProcess>>, PageError> {
        let key = match named {
            Some(name) => format!("named:{name}"),
            None if self.process_per_site.load(std::sync::atomic::Ordering::Relaxed) => format!("site:{site}"),
            None => "shared".to_owned(),
        };
        if let Some(renderer) = self.renderers.lock().get(&key) {
            return Ok(renderer.clone());
        }
        let id = self.next();
        let mut options = LaunchOptions::new("renderer");
        options.program = self.program.clone();
        let name = key.split_once(':').map_or(key.as_str(), |(_, name)| name);
        options.extra_args.push(format!("{RENDERER_NAME_ARG}{name}"));
        let mut child = cos_ipc::launch::launch(&options).map_err(|e| PageError::Start(format!("renderer: {e}")))?;
        let message_limit = self.message_limit.load(std::sync::atomic::Ordering::Relaxed);
        let control = Channel::with_limit(child.take_endpoint(), message_limit);
        let (network_end, renderer_network) = Endpoint::pair().map_err(|e| PageError::Start(e.to_string()))?;
        let pid = child.pid();
        let kill = move || {
            // SAFETY: kill(2) on the pid of a renderer this browser launched.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        };
        let cos = self.connect_renderer(id, kill)?;
        crate::network::serve_renderer(RendererId(id), network_end, self.network.clone(), kill)
            .map_err(|e| PageError::Start(format!("network service: {e}")))?;
        control
            .send(RendererCommand::Init { message_limit: message_limit as u64, cos, network: renderer_network.into() })
            .map_err(|e| PageError::Renderer(e.to_string()))?;
        let renderer = std::sync::Arc::new(Mutex::new(RendererProcess { id, child, control }));
        self.renderers.lock().insert(key, renderer.clone());
        Ok(renderer)
    }

    /// Opens a top-level page at `url` in its site's renderer.
    pub fn open(&self, url: &str) -> Result<Page, PageError> {
        self.open_with(url, &OpenOptions::default())
    }

    /// Opens a top-level page at `url` with response headers and a profile: its document is
    /// requested from the network (an HTML response is parsed and its scripts run, its
    /// `<iframe>`s become child frames) and returned once its window's `load` event fired.
    pub fn open_with(&self, url: &str, options: &OpenOptions) -> Result<Page, PageError> {
        let origin = Origin::from_url(url).map_err(|_| PageError::Origin(url.to_owned()))?;
        let navigation = navigation::navigate(&self.servers, url);
        let headers = navigation::effective_headers(&navigation.headers, &options.headers);
        let allowed = permissions_policy::is_enabled(Some(&origin), header(&headers, "Permissions-Policy"), None);
        let partition =
            if options.off_the_record { Partition::OffTheRecord(OffTheRecordProfileId(1)) } else { Partition::Regular };
        let record = FrameRecord {
            top_level_site: Site::of(&origin),
            origin,
            cos_allowed: allowed,
            partition,
            url: url.to_owned(),
            process: options.process.clone(),
            service_worker_frame: 0,
        };
        self.create_frame(record, &headers, navigation.html, None, &mut Nesting::top())
    }

    /// Appends an iframe at `url` to `parent`'s document (`allow`: the iframe's `allow`
    /// attribute; `options.headers`: added to the child document's own response headers, and
    /// winning over them by name).
    pub fn append_iframe(
        &self,
        parent: &Page,
        url: &str,
        allow: Option<&str>,
        options: &OpenOptions,
    ) -> Result<Page, PageError> {
        self.append_child(parent.frame, url, allow, options, &mut Nesting::top())
    }

    /// The child frames `page`'s document created from its `<iframe>` elements, in document
    /// order (those the browser did not make are left out).
    pub fn children(&self, page: &Page) -> Vec<ChildFrame> {
        self.children.lock().get(&page.frame).cloned().unwrap_or_default()
    }

    fn append_child(
        &self,
        parent_frame: u64,
        url: &str,
        allow: Option<&str>,
        options: &OpenOptions,
        nesting: &mut Nesting,
    ) -> Result<Page, PageError> {
        let origin = Origin::from_url(url).map_err(|_| PageError::Origin(url.to_owned()))?;
        let parent = self
            .frames
            .lock()
            .get(&parent_frame)
            .cloned()
            .ok_or_else(|| PageError::Renderer("no such parent frame".into()))?;
        let navigation = navigation::navigate(&self.servers, url);
        let headers = navigation::effective_headers(&navigation.headers, &options.headers);
        let container = permissions_policy::Container {
            parent_origin: Some(&parent.origin),
            parent_allows: parent.cos_allowed,
            allow_attribute: allow,
        };
        let allowed =
            permissions_policy::is_enabled(Some(&origin), header(&headers, "Permissions-Policy"), Some(container));
        let record = FrameRecord {
            origin,
            top_level_site: parent.top_level_site,
            cos_allowed: allowed,
            partition: parent.partition,
            url: url.to_owned(),
            process: options.process.clone(),
            service_worker_frame: 0,
        };
        self.create_frame(record, &headers, navigation.html, Some(parent_frame), nesting)
    }

    fn create_frame(
        &self,
        record: FrameRecord,
        headers: &[(String, String)],
        html: Option<String>,
        parent: Option<u64>,
        nesting: &mut Nesting,
    ) -> Result<Page, PageError> {
        let renderer = self.renderer_for(&Site::of(&record.origin), record.process.as_deref())?;
        let frame = self.next();
        let renderer_id = renderer.lock().id;
        let mut info = FrameInfo::top_level(RendererId(renderer_id), record.origin.clone());
        info.top_level_site = Some(record.top_level_site.clone());
        info.cos_allowed = record.cos_allowed;
        info.partition = record.partition;
        info.allow_origin_ceiling =
            AllowOriginCeiling::from_header(header(headers, "Cross-Origin-Storage-Allow-Origin"));
        info.url = Some(record.url.clone());
        // The document's service workers get a frame of their own kind, so the browser (not
        // the renderer) knows their requests for what they are.
        let service_worker_frame = self.next();
        let service_worker = FrameInfo { kind: ContextKind::ServiceWorker, ..info.clone() };
        self.host.frames().insert(FrameId(service_worker_frame), service_worker);
        self.host.frames().insert(FrameId(frame), info);
        let record = FrameRecord { service_worker_frame, ..record };
        self.frames.lock().insert(frame, record.clone());
        let page = Page { renderer, frame };
        let command = RendererCommand::CreateFrame {
            frame,
            url: record.url.clone(),
            secure: record.origin.is_potentially_trustworthy(),
            policy_allows: record.cos_allowed,
            parent,
            service_worker_frame,
            document: html,
        };
        let iframes = match page.ask(command, |_, _, _| {})? {
            RendererReply::Iframes(iframes) => iframes,
            _ => Vec::new(),
        };
        let children = self.create_iframes(&page, &record, iframes, nesting);
        let command = RendererCommand::RunDocument { frame, children, timeout_secs: DOCUMENT_TIMEOUT.as_secs() };
        page.ask(command, |_, _, _| {})?;
        Ok(page)
    }

    /// Creates the child frames of a document's `<iframe>`s (told by its renderer, so bounded
    /// like anything a renderer asks for): an http(s) `src` resolved against the document,
    /// within [`MAX_HTML_FRAMES`] and [`MAX_HTML_DEPTH`]. Answers each element's frame id.
    fn create_iframes(
        &self,
        parent: &Page,
        record: &FrameRecord,
        iframes: Vec<IframeElement>,
        nesting: &mut Nesting,
    ) -> Vec<Option<u64>> {
        let base = url::Url::parse(&record.url).ok();
        let origin = record.origin.to_string();
        let mut children = Vec::with_capacity(iframes.len().min(MAX_HTML_FRAMES));
        for iframe in iframes.into_iter().take(MAX_HTML_FRAMES + 1) {
            let resolved = iframe.src.as_deref().and_then(|src| base.as_ref()?.join(src.trim()).ok());
            let Some(url) = resolved.filter(|url| matches!(url.scheme(), "http" | "https")) else {
                // No src, about:blank, srcdoc, data: ...: the shell makes no frame for those.
                children.push(None);
                continue;
            };
            if nesting.depth >= MAX_HTML_DEPTH || nesting.remaining == 0 {
                let text = format!(
                    "<iframe src=\"{url}\"> was not loaded: a document's iframes may nest {MAX_HTML_DEPTH} deep and make {MAX_HTML_FRAMES} frames"
                );
                crate::console::print(crate::console::Level::Warn, &origin, &text);
                children.push(None);
                continue;
            }
            nesting.remaining -= 1;
            let mut deeper = Nesting { depth: nesting.depth + 1, remaining: nesting.remaining };
            let options = OpenOptions { process: record.process.clone(), ..OpenOptions::default() };
            let child = self.append_child(parent.frame, url.as_str(), iframe.allow.as_deref(), &options, &mut deeper);
            nesting.remaining = deeper.remaining;
            match child {
                Ok(page) => {
                    children.push(Some(page.frame));
                    let child = ChildFrame { page, url: url.into(), name: iframe.name };
                    self.children.lock().entry(parent.frame).or_default().push(child);
                }
                Err(error) => {
                    tracing::warn!(%error, "an iframe's frame could not be made");
                    children.push(None);
                }
            }
        }
        children
    }

    /// Closes a page: its frame leaves the frame table (calls naming it are bad messages from
    /// then on) and its realm is discarded in the renderer.
    pub fn close(&self, page: &Page) -> Result<(), PageError> {
        self.host.frames().remove(FrameId(page.frame));
        if let Some(record) = self.frames.lock().remove(&page.frame) {
            self.host.frames().remove(FrameId(record.service_worker_frame));
        }
        self.children.lock().remove(&page.frame);
        page.ask(RendererCommand::CloseFrame { frame: page.frame }, |_, _, _| {})?;
        Ok(())
    }

    /// A user activation in `page`'s document (replenishes its top-level site's probe budget).
    pub fn activate(&self, page: &Page) {
        self.host.notify_user_activation(FrameId(page.frame));
        let _ = self.host.ping();
    }

    /// Runs a testharness.js-style `.html` test: its directory is served at `origin` (so
    /// `<script src=/resources/...>` finds the files beside it), except
    /// `/resources/testharness.js`, which is our harness, and `/resources/testharnessreport.js`
    /// (empty); the page at `origin` + the file's name loads as any document, then its results
    /// are collected.
    pub fn run_html_test(&self, path: &Path, origin: &str, timeout: Duration) -> Result<Vec<TestResult>, PageError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        self.serve_directory(origin, "/", dir)?;
        for (file, body) in
            [("/resources/testharness.js", crate::js::TESTHARNESS_JS), ("/resources/testharnessreport.js", "")]
        {
            let options = FileOptions::default().content_type(http::HeaderValue::from_static("text/javascript"));
            self.serve(origin, file, body.as_bytes().to_vec(), options)?;
        }
        let url = url::Url::parse(origin)
            .and_then(|base| base.join(&name))
            .map_err(|_| PageError::Origin(origin.to_owned()))?;
        let page = self.open(url.as_str())?;
        page.await_tests(timeout)
    }

    /// Kills the renderer process hosting `page` (its frames are gone; the next page of that
    /// site gets a new process).
    pub fn crash_renderer(&self, page: &Page) {
        tracing::warn!(frame = page.frame, "killing a renderer process on request");
        {
            let mut renderer = page.renderer.lock();
            let _ = renderer.child.kill();
            let _ = renderer.child.wait();
        }
        self.renderers.lock().retain(|_, r| !std::sync::Arc::ptr_eq(r, &page.renderer));
    }

    /// Kills the storage service and waits until the supervisor has restarted it.
    pub fn restart_storage_service(&self) -> Result<(), PageError> {
        let generation = self.host.service_generation();
        tracing::warn!(generation, "killing the storage service on request");
        if let Some(pid) = self.host.service_pid() {
            // SAFETY: kill(2) on the storage service's pid, a child of this process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if self.host.wait_for_generation(generation + 1, Duration::from_secs(30)) {
            Ok(())
        } else {
            Err(PageError::Start("the storage service did not come back".into()))
        }
    }
}

impl Drop for ShellBrowser {
    fn drop(&mut self) {
        for renderer in self.renderers.lock().values() {
            let mut renderer = renderer.lock();
            let _ = renderer.child.kill();
            let _ = renderer.child.wait();
        }
    }
}

/// A page: a frame in a renderer process.
#[derive(Clone)]
pub struct Page {
    renderer: std::sync::Arc<Mutex<RendererProcess>>,
    frame: u64,
}

impl Page {
    /// The frame's id in the browser's frame table.
    pub fn frame_id(&self) -> u64 {
        self.frame
    }

    fn ask(
        &self,
        command: RendererCommand,
        mut progress: impl FnMut(String, f64, f64),
    ) -> Result<RendererReply, PageError> {
        let renderer = self.renderer.lock();
        renderer.control.send(command).map_err(|e| PageError::Renderer(e.to_string()))?;
        loop {
            match renderer.control.recv() {
                Ok(RendererReply::Progress(name, done, total)) => progress(name, done, total),
                Ok(RendererReply::Console { level, origin, text }) => crate::console::print(level, &origin, &text),
                Ok(RendererReply::Failed(message)) => return Err(PageError::Renderer(message)),
                Ok(reply) => return Ok(reply),
                Err(error) => return Err(PageError::Renderer(error.to_string())),
            }
        }
    }

    /// Runs a script in the page.
    pub fn eval(&self, file: &str, source: &str) -> Result<(), PageError> {
        self.ask(
            RendererCommand::Eval { frame: self.frame, scripts: vec![(file.to_owned(), source.to_owned())] },
            |_, _, _| {},
        )?;
        Ok(())
    }

    /// Evaluates `expression` (which may be a promise), runs the page until it settles, and
    /// returns its value as JSON; a rejection becomes `Err("Name: message")`. `progress` sees
    /// the page's download progress reports.
    pub fn evaluate(
        &self,
        expression: &str,
        timeout: Duration,
        progress: impl FnMut(String, f64, f64),
    ) -> Result<Result<String, String>, PageError> {
        let command = RendererCommand::Evaluate {
            frame: self.frame,
            expression: expression.to_owned(),
            timeout_secs: timeout.as_secs(),
        };
        match self.ask(command, progress)? {
            RendererReply::Evaluated(outcome) => Ok(outcome),
            other => Err(PageError::Renderer(format!("unexpected reply {other:?}"))),
        }
    }

    /// The results of the testharness the page's document loaded itself (an `.html` test),
    /// once it completes.
    pub fn await_tests(&self, timeout: Duration) -> Result<Vec<TestResult>, PageError> {
        let command = RendererCommand::AwaitTests { frame: self.frame, timeout_secs: timeout.as_secs() };
        test_results(self.ask(command, |_, _, _| {})?)
    }

    /// Runs a web-platform-tests style test file: the harness, its `// META: script=` includes
    /// (relative to the file), then the file; returns the results.
    pub fn run_test_file(&self, path: &Path, timeout: Duration) -> Result<Vec<TestResult>, PageError> {
        let source = read(path)?;
        let mut scripts = Vec::new();
        for include in meta_scripts(&source) {
            let included = path.parent().unwrap_or(Path::new(".")).join(include.trim_start_matches('/'));
            scripts.push((included.display().to_string(), read(&included)?));
        }
        scripts.push((path.display().to_string(), source));
        let command = RendererCommand::RunTests { frame: self.frame, scripts, timeout_secs: timeout.as_secs() };
        test_results(self.ask(command, |_, _, _| {})?)
    }
}

fn test_results(reply: RendererReply) -> Result<Vec<TestResult>, PageError> {
    match reply {
        RendererReply::TestResults(results) => {
            Ok(results.into_iter().map(|(name, status, message)| TestResult { name, status, message }).collect())
        }
        other => Err(PageError::Renderer(format!("unexpected reply {other:?}"))),
    }
}

fn read(path: &Path) -> Result<String, PageError> {
    std::fs::read_to_string(path).map_err(|error| PageError::Read { path: path.to_path_buf(), error })
}

/// The `// META: script=...` lines at the top of a test file.
pub(crate) fn meta_scripts(source: &str) -> Vec<String> {
    source
        .lines()
        .take_while(|line| line.starts_with("//") || line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("// META: script="))
        .map(|s| s.trim().to_owned())
        .collect()
}
