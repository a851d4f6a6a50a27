//! The trusted side for Chromium pages: every attached target is a COS renderer, every
//! execution context a frame of the broker's frame table, and every binding call a request
//! whose origin comes from Chromium's record of the calling context, never from the payload.
//!
//! A document's context is registered only once it has been judged: its origin must be
//! same-site with the URL the browser attests for its target (Chromium runs one site per
//! process, so a document claiming another site is a compromised renderer: the tab is closed),
//! and its Permissions Policy comes from its own `Permissions-Policy` header and, for a child
//! frame, its container: the parent document's origin and policy and the owner element's
//! `allow` attribute, read from the parent's process. Calls arriving meanwhile wait.

pub mod calls;
pub mod context;
mod judge;
mod tab;

use judge::Verdict;
pub use tab::Tab;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cos_browser::permissions_policy;
use cos_browser::{ContextKind, CosHost, FrameInfo, FrameOrigin, HostConfig, ServiceLaunch};
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig};
use cos_common::{AllowOriginCeiling, CosError, Partition, Site};
use cos_ipc::Endpoint;
use cos_ipc::launch::LaunchOptions;
use cos_renderer::{CrossOriginStorageManager, RendererConnection, ScriptContext};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::context::{ContextState, DocumentHeaders, Objects, Session, TargetKind, site_of_url, tuple_origin};
use crate::data_server::DataServer;
use crate::devtools::{ChromiumProcess, Client, DevToolsError, Event};

/// The injected script, before the bridge names its binding and reply function.
const INJECT_JS: &str = include_str!("../js/inject.js");

/// The largest binding payload (bytes). The script refuses larger calls itself, so a larger
/// one comes from something other than our script: the target is closed.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The longest a page may take to load or a script to settle: a hang guard only.
pub const PAGE_GUARD: Duration = Duration::from_secs(60);

/// How long a document's origin may disagree with its target's URL before the disagreement
/// counts: the URL is updated when the browser has processed the commit, which may be after
/// the new document's context was reported. A hang guard, not a timing assumption.
const ATTEST_GUARD: Duration = Duration::from_secs(5);

/// What went wrong in the bridge (operator-facing).
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Chromium or the protocol failed.
    #[error(transparent)]
    DevTools(#[from] DevToolsError),
    /// The COS host (and its sandboxed storage service) failed to start.
    #[error("the storage service did not start: {0}")]
    Host(String),
    /// An operating-system error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A page script threw or rejected.
    #[error("script error: {0}")]
    Script(String),
    /// A hang guard expired.
    #[error("gave up waiting for {0}")]
    Timeout(String),
}

/// How to start the bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The executable that runs the storage service when started with `--type=storage-service`
    /// (its `main` calls [`crate::run_child_process`] first).
    pub service_program: PathBuf,
    /// Extra Chromium flags (`--host-resolver-rules=...`, `--ignore-certificate-errors`).
    pub chromium_args: Vec<String>,
    /// The COS profile; a temporary one when `None`.
    pub profile_dir: Option<PathBuf>,
    /// Run the storage service sandboxed (always, except under a debugger).
    pub sandbox: bool,
    /// The Public Hash List file the storage service reads at start; without one, entries
    /// written with `origins: "*"` are never disclosed to other sites (the service fails closed).
    pub public_hash_list: Option<PathBuf>,
    /// Fix the GREASE outcome of global-grant reads (`Some(false)`: never): a test seam, honoured
    /// only by a service built with `cos_storage_service/testing`; `None` draws 1% as a browser does.
    pub grease_for_tests: Option<bool>,
}

impl BridgeConfig {
    /// A sandboxed service run by `service_program`, a temporary profile, no extra flags, no
    /// Public Hash List, GREASE as in a browser.
    pub fn new(service_program: PathBuf) -> Self {
        Self {
            service_program,
            chromium_args: Vec::new(),
            profile_dir: None,
            sandbox: true,
            public_hash_list: None,
            grease_for_tests: None,
        }
    }
}

pub(crate) struct Shared {
    client: Client,
    host: CosHost,
    data: DataServer,
    binding: String,
    script: String,
    reply: String,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Per session, the site of its top-level document (the page's main frame).
    top_sites: Mutex<HashMap<String, Site>>,
    contexts: Mutex<HashMap<(String, i64), Arc<ContextState>>>,
    /// Documents still being judged: their Chromium frame id, and their state once registered
    /// (the sender is dropped unregistered when the context is refused or goes away first).
    pending: Mutex<HashMap<(String, i64), PendingContext>>,
    /// Chromium frame id → its parent's, from `Page.frameAttached` in whichever process the
    /// parent lives (an out-of-process child's own target does not say).
    frame_parents: Mutex<HashMap<String, String>>,
    /// `Permissions-Policy` and `Cross-Origin-Storage-Allow-Origin` of each frame's last
    /// document, by Chromium frame id (an out-of-process child's response may be reported in its
    /// parent's session).
    document_headers: Mutex<HashMap<String, DocumentHeaders>>,
    next_frame: AtomicU64,
    next_renderer: AtomicU64,
    closed_for_misbehaviour: AtomicU64,
}

/// Headless Chromium, the COS host with its sandboxed storage service, and the bridge between.
pub struct Bridge {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    chromium: ChromiumProcess,
    _profile: Option<tempfile::TempDir>,
}

fn random_name(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// `{name, message}` of an error, as the injected script rebuilds it.
pub(crate) fn error_json(error: &CosError) -> Value {
    json!({ "name": error.name(), "message": error.message() })
}

impl Bridge {
    /// Starts the storage service, Chromium and the bridge.
    pub fn start(config: BridgeConfig) -> Result<Self, BridgeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cos-bridge")
            .enable_all()
            .build()?;
        let (profile_dir, temporary) = match &config.profile_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let dir = tempfile::Builder::new().prefix("cos-bridge-").tempdir()?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let mut service = ServiceProcessConfig::new(profile_dir.to_string_lossy());
        service.sandbox = config.sandbox;
        service.public_hash_list_path =
            config.public_hash_list.as_ref().map(|path| path.to_string_lossy().into_owned());
        service.grease_for_tests = config.grease_for_tests;
        let mut launch = LaunchOptions::new("storage-service");
        launch.program = config.service_program.clone();
        let host = CosHost::start(HostConfig { launch: ServiceLaunch::Process(launch), service })
            .map_err(|e| BridgeError::Host(e.to_string()))?;
        let mut chromium = ChromiumProcess::launch(&config.chromium_args)?;
        let client = Client::connect(&mut chromium)?;
        let data = runtime.block_on(DataServer::start())?;
        let binding = random_name("__cos_");
        let reply = random_name("__cos_reply_");
        let script = INJECT_JS
            .replace("__COS_BINDING__", &Value::String(binding.clone()).to_string())
            .replace("__COS_REPLY__", &Value::String(reply.clone()).to_string());
        let shared = Arc::new(Shared {
            client: client.clone(),
            host,
            data,
            binding,
            script,
            reply,
            sessions: Mutex::new(HashMap::new()),
            top_sites: Mutex::new(HashMap::new()),
            contexts: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            frame_parents: Mutex::new(HashMap::new()),
            document_headers: Mutex::new(HashMap::new()),
            next_frame: AtomicU64::new(1),
            next_renderer: AtomicU64::new(1),
            closed_for_misbehaviour: AtomicU64::new(0),
        });
        let events = client.subscribe();
        runtime.spawn(event_loop(shared.clone(), events));
        runtime.block_on(async {
            // Local Network Access: without it, loopback fetches from public pages are dropped.
            let granted =
                client.send("Browser.grantPermissions", json!({ "permissions": ["loopbackNetwork"] }), None).await;
            if let Err(error) = granted {
                tracing::info!(%error, "loopbackNetwork permission not granted; relying on the feature flag");
            }
            client
                .send(
                    "Target.setAutoAttach",
                    json!({ "autoAttach": true, "flatten": true, "waitForDebuggerOnStart": true }),
                    None,
                )
                .await
        })?;
        Ok(Self { shared, runtime, chromium, _profile: temporary })
    }

    /// The COS host (clear site data, inspection, ...).
    pub fn host(&self) -> &CosHost {
        &self.shared.host
    }

    /// The capability-URL server (per-origin byte counters).
    pub fn data_server(&self) -> &DataServer {
        &self.shared.data
    }

    /// Bytes pages of `origin` (serialised, e.g. `https://a.example`) read from COS.
    pub fn bytes_served_from_cos(&self, origin: &str) -> u64 {
        self.shared.data.bytes_served_to(origin)
    }

    /// The DevTools client (for tests that play a compromised renderer).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The binding's name (for tests that play a compromised renderer).
    pub fn binding_name(&self) -> &str {
        &self.shared.binding
    }

    /// The name of the script's reply function (for tests that play a compromised renderer).
    pub fn reply_name(&self) -> &str {
        &self.shared.reply
    }

    /// The last few KiB Chromium wrote to stderr, for error messages.
    pub fn chromium_stderr(&self) -> String {
        self.chromium.stderr.text()
    }

    /// Targets closed because they sent what only a compromised renderer sends.
    pub fn targets_closed_for_misbehaviour(&self) -> u64 {
        self.shared.closed_for_misbehaviour.load(Ordering::SeqCst)
    }

    /// Runs `future` on the bridge's runtime (not from inside it).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Opens `url` in a fresh tab and waits for its load event.
    pub fn open(&self, url: &str) -> Result<Tab, BridgeError> {
        let shared = self.shared.clone();
        let handle = self.runtime.handle().clone();
        self.runtime.block_on(async move {
            let created = shared.client.send("Target.createTarget", json!({ "url": "about:blank" }), None).await?;
            let target_id = created["targetId"].as_str().unwrap_or_default().to_owned();
            let session = tokio::time::timeout(PAGE_GUARD, async {
                loop {
                    let found = shared
                        .sessions
                        .lock()
                        .iter()
                        .find(|(_, s)| s.target_id == target_id && *s.ready.borrow())
                        .map(|(id, _)| id.clone());
                    if let Some(id) = found {
                        return id;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .map_err(|_| BridgeError::Timeout(format!("the new tab for {url}")))?;
            let tab = Tab {
                shared: shared.clone(),
                handle,
                session,
                target_id,
                events: tokio::sync::Mutex::new(shared.client.subscribe()),
            };
            tab.navigate_async(url).await?;
            Ok(tab)
        })
    }
}

/// The text of a `Runtime.consoleAPICalled` event: its arguments joined by spaces.
pub fn console_text(params: &Value) -> String {
    params["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .map(|arg| match arg.get("value") {
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                    None => arg["description"].as_str().unwrap_or("").to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

async fn event_loop(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Arc<Event>>) {
    while let Some(event) = events.recv().await {
        match event.method.as_str() {
            "Target.attachedToTarget" => shared.attached(&event),
            "Target.detachedFromTarget" => shared.detached(&event),
            "Runtime.executionContextCreated" => shared.context_created(&event),
            "Runtime.executionContextDestroyed" => {
                if let (Some(session), Some(id)) = (&event.session_id, event.params["executionContextId"].as_i64()) {
                    shared.remove_context(session, id);
                }
            }
            "Runtime.executionContextsCleared" => {
                if let Some(session) = &event.session_id {
                    shared.remove_contexts(|(s, _)| s == session);
                }
            }
            "Runtime.bindingCalled" => shared.binding_called(&event),
            "Network.responseReceived" => shared.response_received(&event),
            "Debugger.paused" => shared.worker_paused(&event),
            "Page.frameAttached" => {
                let params = &event.params;
                if let (Some(child), Some(parent)) = (params["frameId"].as_str(), params["parentFrameId"].as_str()) {
                    shared.frame_parents.lock().insert(child.to_owned(), parent.to_owned());
                }
            }
            "Target.targetInfoChanged" => {
                let info = &event.params["targetInfo"];
                if let (Some(target), Some(url)) = (info["targetId"].as_str(), info["url"].as_str()) {
                    for session in shared.sessions.lock().values().filter(|s| s.target_id == target) {
                        *session.url.lock() = url.to_owned();
                        if let Some(site) = site_of_url(url) {
                            *session.pinned_site.lock() = Some(site);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

impl Shared {
    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(id).cloned()
    }

    /// The page target a session belongs to (what is closed when it misbehaves).
    fn page_target(&self, session: &str) -> Option<String> {
        let mut current = self.session(session)?;
        while current.kind != TargetKind::Page {
            current = self.session(current.parent.as_deref()?)?;
        }
        Some(current.target_id.clone())
    }

    fn top_site(&self, session: &str) -> Option<Site> {
        let mut current = session.to_owned();
        loop {
            if let Some(site) = self.top_sites.lock().get(&current) {
                return Some(site.clone());
            }
            current = self.session(&current)?.parent.clone()?;
        }
    }

    fn close_for_misbehaviour(&self, session: &str, why: &str) {
        tracing::warn!(session, why, "closing a target that sent what only a compromised renderer sends");
        self.closed_for_misbehaviour.fetch_add(1, Ordering::SeqCst);
        if let Some(target) = self.page_target(session) {
            self.client.send_detached("Target.closeTarget", json!({ "targetId": target }), None);
        }
    }

    fn attached(self: &Arc<Self>, event: &Event) {
        let Some(session_id) = event.params["sessionId"].as_str().map(str::to_owned) else { return };
        let info = &event.params["targetInfo"];
        let kind = TargetKind::of(info["type"].as_str().unwrap_or(""));
        let target_id = info["targetId"].as_str().unwrap_or_default().to_owned();
        if kind == TargetKind::Other {
            self.client.send_detached("Runtime.runIfWaitingForDebugger", json!({}), Some(&session_id));
            return;
        }
        let Ok((browser_end, renderer_end)) = Endpoint::pair() else { return };
        let Ok(connection) = RendererConnection::new(renderer_end) else { return };
        let renderer = RendererId(self.next_renderer.fetch_add(1, Ordering::Relaxed));
        let weak = Arc::downgrade(self);
        let culprit = session_id.clone();
        self.host.register_renderer(renderer, browser_end, move || {
            if let Some(shared) = weak.upgrade() {
                shared.close_for_misbehaviour(&culprit, "the broker reported a bad message");
            }
        });
        let session = Arc::new(Session {
            target_id,
            kind,
            parent: event.session_id.clone(),
            renderer,
            connection,
            url: Mutex::new(info["url"].as_str().unwrap_or_default().to_owned()),
            pinned_site: Mutex::new(site_of_url(info["url"].as_str().unwrap_or_default())),
            calls: Arc::new(tokio::sync::Semaphore::new(context::MAX_CALLS_PER_TARGET)),
            ready: tokio::sync::watch::channel(false).0,
        });
        self.sessions.lock().insert(session_id.clone(), session.clone());
        let shared = self.clone();
        tokio::spawn(async move {
            if let Err(error) = shared.set_up(&session_id, &session).await {
                tracing::debug!(%error, session_id, "target set-up failed (it may have gone away)");
            }
            session.ready.send_replace(true);
        });
    }

    async fn set_up(&self, session_id: &str, session: &Session) -> Result<(), DevToolsError> {
        let s = Some(session_id);
        let client = &self.client;
        if session.kind != TargetKind::ServiceWorker {
            client
                .send(
                    "Target.setAutoAttach",
                    json!({ "autoAttach": true, "flatten": true, "waitForDebuggerOnStart": true }),
                    s,
                )
                .await?;
        }
        client.send("Runtime.addBinding", json!({ "name": self.binding }), s).await?;
        if session.kind.is_frame() {
            client.send("Page.enable", json!({}), s).await?;
            client.send("Network.enable", json!({}), s).await?;
            client
                .send(
                    "Page.addScriptToEvaluateOnNewDocument",
                    json!({ "source": self.script, "runImmediately": true }),
                    s,
                )
                .await?;
        }
        client.send("Runtime.enable", json!({}), s).await?;
        if !session.kind.is_frame() {
            // A paused worker's global scope is not set up yet (no `navigator`): stop again
            // just before its first script runs and inject there (see `worker_paused`).
            client.send("Debugger.enable", json!({}), s).await?;
            client
                .send("Debugger.setInstrumentationBreakpoint", json!({ "instrumentation": "beforeScriptExecution" }), s)
                .await?;
        }
        client.send("Runtime.runIfWaitingForDebugger", json!({}), s).await?;
        Ok(())
    }

    fn worker_paused(self: &Arc<Self>, event: &Event) {
        let Some(session_id) = event.session_id.clone() else { return };
        let shared = self.clone();
        tokio::spawn(async move {
            let s = Some(session_id.as_str());
            let client = &shared.client;
            // The script sees the binding only once; a later pause finds nothing to do.
            let _ = client.send("Runtime.evaluate", json!({ "expression": shared.script }), s).await;
            let _ = client.send("Debugger.disable", json!({}), s).await;
            let _ = client.send("Debugger.resume", json!({}), s).await;
        });
    }

    fn detached(&self, event: &Event) {
        let Some(session) = event.params["sessionId"].as_str() else { return };
        self.sessions.lock().remove(session);
        self.top_sites.lock().remove(session);
        self.remove_contexts(|(s, _)| s == session);
    }

    fn response_received(&self, event: &Event) {
        if event.params["type"].as_str() != Some("Document") {
            return;
        }
        let (Some(session), Some(frame)) = (&event.session_id, event.params["frameId"].as_str()) else { return };
        if self.session(session).is_none() {
            return;
        }
        let headers = &event.params["response"]["headers"];
        let header = |name: &str| {
            headers.as_object().and_then(|map| {
                map.iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str().map(str::to_owned))
            })
        };
        let record = DocumentHeaders {
            permissions_policy: header("Permissions-Policy"),
            allow_origin: header("Cross-Origin-Storage-Allow-Origin"),
        };
        self.document_headers.lock().insert(frame.to_owned(), record);
    }

    fn context_created(self: &Arc<Self>, event: &Event) {
        let Some(session_id) = &event.session_id else { return };
        let Some(session) = self.session(session_id) else { return };
        let context = &event.params["context"];
        let Some(context_id) = context["id"].as_i64() else { return };
        let aux = &context["auxData"];
        if session.kind.is_frame() && aux["isDefault"].as_bool() != Some(true) {
            // Isolated worlds are not the page's script.
            return;
        }
        let reported = context["origin"].as_str().unwrap_or("");
        let origin_source = if reported.is_empty() && !session.kind.is_frame() {
            session.url.lock().clone()
        } else {
            reported.to_owned()
        };
        let origin = tuple_origin(&origin_source);
        let frame_token = aux["frameId"].as_str().unwrap_or("").to_owned();
        let main_frame = session.kind == TargetKind::Page && frame_token == session.target_id;
        let new = NewContext {
            session_id: session_id.clone(),
            headers: self.document_headers.lock().get(&frame_token).cloned().unwrap_or_default(),
            session,
            context_id,
            origin,
            frame_token,
            main_frame,
        };
        let key = (new.session_id.clone(), context_id);
        let (sender, receiver) = tokio::sync::watch::channel(None);
        self.pending
            .lock()
            .insert(key.clone(), PendingContext { frame_token: new.frame_token.clone(), state: receiver });
        let shared = self.clone();
        tokio::spawn(async move {
            let (verdict, owners) = if new.session.kind.is_frame() {
                (shared.judge_document(&new).await, Vec::new())
            } else {
                (Verdict::Allowed(false), shared.judge_worker(&new).await)
            };
            let state = match verdict {
                Verdict::Compromised(why) => {
                    shared.pending.lock().remove(&key);
                    shared.close_for_misbehaviour(&new.session_id, &why);
                    None
                }
                Verdict::Allowed(allowed) => {
                    // Only a context that still exists is registered (lock order: pending, then
                    // contexts).
                    let mut pending = shared.pending.lock();
                    pending.remove(&key).is_some().then(|| shared.register(new, allowed, &owners))
                }
            };
            if let Some(state) = state {
                sender.send_replace(Some(state));
            }
        });
    }

    /// Enters a judged context in the frame table and the context map. A window's record comes
    /// from its judgement (`policy_allows`, its response's headers); a worker's from its owners'
    /// records (`FrameInfo::worker`).
    fn register(&self, new: NewContext, policy_allows: bool, owners: &[FrameId]) -> Arc<ContextState> {
        let NewContext { session_id, session, context_id, origin, frame_token, headers, main_frame } = new;
        // A top-level site is recorded only for a judged document: an unjudged one could be a
        // compromised renderer's claim, and workers and frames registered meanwhile would be
        // keyed to it.
        if main_frame {
            match &origin {
                Some(origin) => self.top_sites.lock().insert(session_id.clone(), Site::of(origin)),
                None => self.top_sites.lock().remove(&session_id),
            };
        }
        let top_level_site = self.top_site(&session_id);
        let kind = match session.kind {
            TargetKind::Worker => ContextKind::DedicatedWorker,
            TargetKind::SharedWorker => ContextKind::SharedWorker,
            TargetKind::ServiceWorker => ContextKind::ServiceWorker,
            _ => ContextKind::Window,
        };
        let frame = FrameId(self.next_frame.fetch_add(1, Ordering::Relaxed));
        let mut info = FrameInfo::top_level(
            session.renderer,
            origin.clone().unwrap_or_else(|| cos_common::Origin::from_url("https://opaque.invalid").expect("valid")),
        );
        info.origin = origin.clone().map_or(FrameOrigin::Opaque, FrameOrigin::Tuple);
        info.top_level_site = top_level_site;
        info.kind = kind;
        info.cos_allowed = policy_allows;
        info.allow_origin_ceiling = AllowOriginCeiling::from_header(headers.allow_origin.as_deref());
        info.partition = Partition::Regular;
        info.url = None;
        if !session.kind.is_frame() {
            let records: Vec<(FrameId, FrameInfo)> =
                owners.iter().filter_map(|id| Some((*id, self.host.frames().get(*id)?))).collect();
            let records: Vec<(FrameId, &FrameInfo)> = records.iter().map(|(id, info)| (*id, info)).collect();
            let worker_origin = info.origin.clone();
            info = FrameInfo::worker(session.renderer, worker_origin, kind, &records, None);
        }
        let policy_allows = info.cos_allowed;
        self.host.frames().insert(frame, info);
        let script_context = ScriptContext {
            frame,
            secure_context: origin.as_ref().is_some_and(cos_common::Origin::is_potentially_trustworthy),
            policy_allows,
            service_worker: kind == ContextKind::ServiceWorker,
            opaque_origin: origin.is_none(),
        };
        let manager = CrossOriginStorageManager::new(session.connection.clone(), script_context);
        let state = Arc::new(ContextState {
            session: session_id.clone(),
            context_id,
            frame,
            chromium_frame: frame_token,
            policy_allows,
            origin_text: origin.as_ref().map_or_else(|| "null".to_owned(), ToString::to_string),
            origin,
            manager,
            objects: Mutex::new(Objects::default()),
            resolver: tokio::sync::OnceCell::new(),
            frames: self.host.frames().clone(),
            data: self.data.clone(),
        });
        if let Some(old) = self.contexts.lock().insert((session_id, context_id), state.clone()) {
            old.clear();
        }
        state
    }

    fn remove_context(&self, session: &str, id: i64) {
        self.pending.lock().remove(&(session.to_owned(), id));
        let removed = self.contexts.lock().remove(&(session.to_owned(), id));
        if let Some(context) = removed {
            context.clear();
        }
    }

    fn remove_contexts(&self, matches: impl Fn(&(String, i64)) -> bool) {
        self.pending.lock().retain(|key, _| !matches(key));
        let removed: Vec<_> = {
            let mut contexts = self.contexts.lock();
            let keys: Vec<_> = contexts.keys().filter(|k| matches(k)).cloned().collect();
            keys.into_iter().filter_map(|k| contexts.remove(&k)).collect()
        };
        for context in removed {
            context.clear();
        }
    }

    fn binding_called(self: &Arc<Self>, event: &Event) {
        if event.params["name"].as_str() != Some(self.binding.as_str()) {
            return;
        }
        let Some(session) = event.session_id.clone() else { return };
        let payload = event.params["payload"].as_str().unwrap_or("");
        if payload.len() > MAX_PAYLOAD_BYTES {
            return self.close_for_misbehaviour(&session, "oversized binding payload");
        }
        let Some((id, body)) = payload.split_once(':') else {
            return self.close_for_misbehaviour(&session, "binding payload without a call id");
        };
        let Ok(id) = id.parse::<u64>() else {
            return self.close_for_misbehaviour(&session, "binding payload with a bad call id");
        };
        let Some(context_id) = event.params["executionContextId"].as_i64() else { return };
        let key = (session.clone(), context_id);
        let ready = self.contexts.lock().get(&key).cloned();
        let waiting = match ready {
            Some(_) => None,
            None => match self.pending.lock().get(&key) {
                Some(pending) => Some(pending.state.clone()),
                // The context is gone (navigated away): nobody is waiting for the answer.
                None => return,
            },
        };
        let call = serde_json::from_str::<calls::Call>(body);
        let shared = self.clone();
        tokio::spawn(async move {
            let context = match (ready, waiting) {
                (Some(context), _) => context,
                (None, Some(mut waiting)) => {
                    // Still being judged: the call runs once it is registered; a refused or
                    // vanished context leaves nobody to answer.
                    let judged = tokio::time::timeout(PAGE_GUARD, waiting.wait_for(Option::is_some)).await;
                    match judged {
                        Ok(Ok(state)) => state.clone().expect("waited for Some"),
                        _ => return,
                    }
                }
                (None, None) => return,
            };
            let outcome = match call {
                Ok(call) => {
                    // At most a window's worth of calls per target at once; each runs on a
                    // blocking-pool thread, because a COS request may wait for room in the
                    // pipe's request window (`requestFileHandles` sends one per hash) and must
                    // not hold one of the few runtime threads the protocol and the byte server
                    // share.
                    let Some(session) = shared.session(&context.session) else { return };
                    let Ok(_permit) = session.calls.clone().acquire_owned().await else { return };
                    let runtime = tokio::runtime::Handle::current();
                    let running = context.clone();
                    tokio::task::spawn_blocking(move || runtime.block_on(calls::run(running, call)))
                        .await
                        .unwrap_or(Err(CosError::Unknown))
                        .map_err(|e| error_json(&e))
                }
                Err(error) => {
                    tracing::debug!(%error, "undecodable COS call refused");
                    Err(json!({ "name": "TypeError", "message": "The arguments could not be converted." }))
                }
            };
            if id != 0 {
                shared.reply(&context, id, outcome).await;
            }
        });
    }

    async fn reply(&self, context: &ContextState, id: u64, outcome: Result<Value, Value>) {
        let session = Some(context.session.as_str());
        let resolver = context
            .resolver
            .get_or_try_init(|| async {
                // Taken off the global once: page script cannot reach it afterwards.
                let expression = format!(
                    "(() => {{ const f = globalThis[{0}]; delete globalThis[{0}]; return f; }})()",
                    json!(self.reply)
                );
                let result = self
                    .client
                    .send(
                        "Runtime.evaluate",
                        json!({ "expression": expression, "contextId": context.context_id }),
                        session,
                    )
                    .await?;
                result["result"]["objectId"].as_str().map(str::to_owned).ok_or_else(|| DevToolsError::Command {
                    method: "Runtime.evaluate".into(),
                    message: "no resolver".into(),
                })
            })
            .await;
        let Ok(resolver) = resolver else { return };
        let (ok, value) = match outcome {
            Ok(value) => (true, value),
            Err(error) => (false, error),
        };
        let params = json!({
            "functionDeclaration": "function (id, ok, value) { this(id, ok, value); }",
            "objectId": resolver,
            "arguments": [{ "value": id }, { "value": ok }, { "value": value }],
        });
        if let Err(error) = self.client.send("Runtime.callFunctionOn", params, session).await {
            tracing::debug!(%error, "a reply found its context gone");
        }
    }
}

/// What `context_created` learnt about a new context, before it is judged.
struct NewContext {
    session_id: String,
    session: Arc<Session>,
    context_id: i64,
    origin: Option<cos_common::Origin>,
    frame_token: String,
    main_frame: bool,
    headers: DocumentHeaders,
}

/// A document context being judged.
struct PendingContext {
    frame_token: String,
    state: tokio::sync::watch::Receiver<Option<Arc<ContextState>>>,
}
