//! [`CosHost`]: the browser-side owner of COS — frame table, broker stubs, and the storage
//! service's supervision (launch, notice death, fail in-flight calls, relaunch, rebind).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cos_common::interface::{
    BrowserToService, EntryInfo, FrameId, InspectionItem, OriginInfo, ProbeBudgetInfo, PublicHashListCounts,
    RendererId, RequestId, ScrubItem, ScrubReport, ServiceProcessConfig, ServiceStatus, ServiceToBrowser, StatusItem,
};
use cos_common::{ContentHash, CosError, OffTheRecordProfileId, Origin, Partition};
use cos_ipc::launch::{LaunchOptions, LaunchedChild};
use cos_ipc::{Attached, Endpoint, IpcError, Peer, Pipe};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::broker::BrokerStub;
use crate::frame_table::FrameTable;
use crate::loader::{LOADER_CONNECTION, Loader};

type ControlPipe = Pipe<BrowserToService, ServiceToBrowser>;

/// Where the `Done` answer to a control request arrives.
type DoneReceiver = Receiver<Result<(), CosError>>;

/// How long a starting service may take to open its store and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a dropped host waits for an in-process service to close its store: the two seconds
/// a service process gets before it is killed.
const IN_PROCESS_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the storage service on a control endpoint, in this process (typically
/// `cos_storage_service::process::serve` on a new thread). Keeps this crate free of the service.
pub type InProcessService = Arc<dyn Fn(Endpoint) + Send + Sync>;

/// Where the storage service runs: [`Process`](Self::Process) in a browser (see [`CosHost`]),
/// [`InProcess`](Self::InProcess) in a single-process embedder (see the crate-level example).
#[derive(Clone)]
pub enum ServiceLaunch {
    /// A sandboxed child process (`--type=storage-service` of the given program).
    Process(LaunchOptions),
    /// Threads of this process, over the in-process transport (single-process embedders, tests).
    InProcess(InProcessService),
}

impl std::fmt::Debug for ServiceLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Process(options) => f.debug_tuple("Process").field(options).finish(),
            Self::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// Configuration of a [`CosHost`]: where the service runs and what it opens (the profile
/// directory, limits, the Public Hash List file; see [`ServiceProcessConfig`]).
///
/// ```
/// use cos_browser::{HostConfig, ServiceLaunch};
/// use cos_common::interface::ServiceProcessConfig;
///
/// let mut service = ServiceProcessConfig::new("/var/lib/browser/profile");
/// service.public_hash_list_path = Some("/usr/share/browser/public-hash-list.txt".into());
/// service.per_origin_bytes = 4 << 30;
/// let config = HostConfig { launch: ServiceLaunch::Process(cos_ipc::launch::LaunchOptions::new("storage-service")), service };
/// assert!(config.service.sandbox);
/// ```
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the service runs.
    pub launch: ServiceLaunch,
    /// What the service is told to open.
    pub service: ServiceProcessConfig,
}

/// Failures of the host, for the embedder (operator-facing).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The storage service could not be started.
    #[error("the storage service could not start: {0}")]
    ServiceStart(String),
    /// IPC failed.
    #[error("IPC failure: {0}")]
    Ipc(#[from] IpcError),
}

/// The browser-side COS host. Dropping it shuts the service down; an in-process service has
/// closed its store when the drop returns (or two seconds have passed).
///
/// A multi-process browser runs the storage service as a sandboxed child: the same binary
/// re-executed with `--type=storage-service`, whose `main` hands the bootstrap to the service's
/// entry point before doing anything else (crate-level docs: the in-process shape, which runs).
///
/// ```no_run
/// use std::process::ExitCode;
///
/// use cos_browser::{CosHost, HostConfig, ServiceLaunch};
/// use cos_common::interface::{FrameId, ServiceProcessConfig};
/// use cos_ipc::launch::LaunchOptions;
///
/// fn main() -> ExitCode {
///     // A child launched by the host: serve, sandboxed, until the browser goes away.
///     if let Ok(Some(bootstrap)) = cos_ipc::launch::bootstrap_from_args() {
///         return cos_storage_service::process::run_storage_service_process(bootstrap);
///     }
///     let config = HostConfig {
///         launch: ServiceLaunch::Process(LaunchOptions::new("storage-service")),
///         service: ServiceProcessConfig::new("/var/lib/browser/profile"),
///     };
///     let host = CosHost::start(config).expect("the storage service starts");
///     // ... register frames and renderers; on real input in a document:
///     host.notify_user_activation(FrameId(1));
///     ExitCode::SUCCESS // dropping the host shuts the service down
/// }
/// ```
pub struct CosHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    config: HostConfig,
    frames: Arc<FrameTable>,
    brokers: Mutex<HashMap<RendererId, Arc<BrokerStub>>>,
    loader: Loader,
    service: Mutex<ServiceState>,
    service_ready: Condvar,
    pending: Mutex<HashMap<RequestId, Sender<Result<(), CosError>>>>,
    /// What reloaded Public Hash Lists held, until their reload returns.
    list_counts: Mutex<HashMap<RequestId, PublicHashListCounts>>,
    next_request: AtomicU64,
    shutting_down: AtomicBool,
}

#[derive(Default)]
struct ServiceState {
    control: Option<Arc<ControlPipe>>,
    pid: Option<u32>,
    generation: u64,
    /// The generation every broker is bound to (lags `generation` while rebinding).
    bound_generation: u64,
    child: Option<LaunchedChild>,
    last_error: Option<String>,
    /// What the running service said of its sandbox when it became ready.
    sandboxed: bool,
}

impl CosHost {
    /// Starts the storage service and waits until it is ready.
    pub fn start(config: HostConfig) -> Result<Self, HostError> {
        let frames = Arc::new(FrameTable::default());
        let inner = Arc::new(HostInner {
            config,
            loader: Loader::new(frames.clone()),
            frames,
            brokers: Mutex::new(HashMap::new()),
            service: Mutex::new(ServiceState::default()),
            service_ready: Condvar::new(),
            pending: Mutex::new(HashMap::new()),
            list_counts: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        });
        let first = inner.launch_service().map_err(HostError::ServiceStart)?;
        // Bound before `start` returns, so that the embedder's first lookup finds a connection.
        inner.bind_loader();
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("cos-service-supervisor".into())
            .spawn(move || supervise(weak, first))
            .map_err(|e| HostError::ServiceStart(e.to_string()))?;
        let host = Self { inner };
        // The control loop answers in order: once the ping is answered the service holds the
        // loader's connection, so what the embedder counts or asks next already includes it.
        host.ping().map_err(|error| HostError::ServiceStart(format!("the service did not answer: {error}")))?;
        Ok(host)
    }

    /// The frame table the embedder fills.
    pub fn frames(&self) -> &Arc<FrameTable> {
        &self.inner.frames
    }

    /// The fetch integration for the embedder's network stack (SPEC §11): lookups and stores
    /// on behalf of a document of the frame table, over the loader's own service connection.
    pub fn loader(&self) -> Loader {
        self.inner.loader.clone()
    }

    /// Starts brokering for a renderer whose COS pipe is `endpoint`. `terminate` is how the
    /// embedder kills that renderer when it misbehaves.
    pub fn register_renderer(
        &self,
        renderer: RendererId,
        endpoint: Endpoint,
        terminate: impl Fn() + Send + Sync + 'static,
    ) {
        let peer = Peer::new(format!("renderer-{}", renderer.0), terminate);
        self.serve_renderer(renderer, endpoint, peer, true);
    }

    /// Like [`register_renderer`](Self::register_renderer), for a renderer whose COS link is an
    /// `ipc-channel` (feature `ipc-channel`; the embedder made it with
    /// `cos_ipc::ipc_channel::link` and passed the renderer's half to the content process). Every
    /// message from the renderer, on the link and its data pipes, is bounded before it is
    /// decoded; the rules are those of every renderer (ARCHITECTURE.md, "The renderer link over
    /// ipc-channel").
    #[cfg(feature = "ipc-channel")]
    pub fn register_renderer_ipc_channel(
        &self,
        renderer: RendererId,
        link: cos_ipc::ipc_channel::BrowserLink,
        terminate: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<()> {
        let peer = Peer::new(format!("renderer-{}", renderer.0), terminate);
        let in_process = matches!(self.inner.config.launch, ServiceLaunch::InProcess(_));
        let endpoint = cos_ipc::ipc_channel::bridge_untrusted_renderer(link, peer.clone(), in_process)?;
        // The bridge relays only the data pipes it knows: this renderer keeps the broker path.
        self.serve_renderer(renderer, endpoint, peer, false);
        Ok(())
    }

    /// Messages the broker of `renderer` has read from it (test seam: a lookup over the
    /// document's binding leaves it still). `None` for an unknown renderer.
    #[cfg(feature = "testing")]
    pub fn broker_messages_read(&self, renderer: RendererId) -> Option<u64> {
        self.inner.brokers.lock().get(&renderer).map(|stub| stub.messages_read())
    }

    fn serve_renderer(&self, renderer: RendererId, endpoint: Endpoint, peer: std::sync::Arc<Peer>, bindings: bool) {
        let stub = BrokerStub::with_bindings(renderer, endpoint, self.inner.frames.clone(), peer, bindings);
        if self.inner.brokers.lock().insert(renderer, stub.clone()).is_some() {
            tracing::warn!(
                renderer = renderer.0,
                "renderer registered twice; the old broker serves its pipe until it closes"
            );
        }
        // Connected to the service before the renderer's first message is read, so that no
        // call fails for lack of a connection.
        self.inner.bind(&stub);
        let weak = Arc::downgrade(&self.inner);
        let loop_stub = stub.clone();
        let spawned = std::thread::Builder::new().name(format!("cos-broker-{}", renderer.0)).spawn(move || {
            loop_stub.run_renderer_loop(|| {
                if let Some(inner) = weak.upgrade() {
                    inner.brokers.lock().remove(&renderer);
                    inner.frames.remove_renderer(renderer);
                }
            })
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a broker thread");
        }
    }

    /// Clears one origin's COS data (a user action in the browser).
    /// Documents' lookup bindings stay open: clearing changes no part of a caller context, and
    /// the handles it revokes answer `NotFoundError` through them, like a miss (SPEC §4).
    pub fn clear_site_data(&self, partition: Partition, origin: &Origin) -> Result<(), CosError> {
        self.inner.control_request(|request| BrowserToService::ClearSiteData {
            request,
            partition,
            origin: origin.clone(),
        })
    }

    /// A user activation happened in a document (the embedder saw the input event, never a
    /// renderer's word): the document has sticky activation from now on, so its `"*"` and list
    /// writes are recorded (SPEC §5), and the probe budget of its top-level site starts over
    /// (SPEC §6). Unknown frames are ignored.
    pub fn notify_user_activation(&self, frame: FrameId) {
        let Some(info) = self.inner.frames.record_user_activation(frame) else { return };
        let (Some(top_level_site), Some(control)) = (info.top_level_site, self.inner.control()) else { return };
        let message = BrowserToService::UserActivation { partition: info.partition, top_level_site };
        let _ = control.send(message);
    }

    /// Replaces the service's Public Hash List with the file at `path`, without a restart. The
    /// browser reads the file and streams it to the sandboxed service, which cannot open it.
    /// Returns what the list held, per section (SPEC §6); a malformed file is refused (the
    /// service's log names the line) and the old list stays.
    pub fn reload_public_hash_list(&self, path: &std::path::Path) -> Result<PublicHashListCounts, HostError> {
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).map_err(|e| HostError::ServiceStart(format!("{}: {e}", path.display())))?;
        let control =
            self.inner.control().ok_or_else(|| HostError::ServiceStart("the storage service is not running".into()))?;
        let in_process = control.endpoint().is_in_process();
        let (ours, theirs) =
            if in_process { Endpoint::pair_in_process() } else { Endpoint::pair().map_err(IpcError::from)? };
        let request = RequestId(self.inner.next_request.fetch_add(1, Ordering::Relaxed));
        let (sender, receiver) = crossbeam_channel::bounded(1);
        self.inner.pending.lock().insert(request, sender);
        control.send(BrowserToService::ReloadPublicHashList { request, list: theirs.into() })?;
        let mut chunk = vec![0u8; cos_ipc::MAX_MESSAGE_BYTES];
        loop {
            let n = file.read(&mut chunk).map_err(|e| HostError::ServiceStart(format!("{}: {e}", path.display())))?;
            ours.send(&chunk[..n], vec![])?;
            if n == 0 {
                break;
            }
        }
        let done = receiver.recv();
        let counts = self.inner.list_counts.lock().remove(&request);
        match (done, counts) {
            (Ok(Ok(())), Some(counts)) => Ok(counts),
            _ => Err(HostError::ServiceStart("the storage service refused the Public Hash List".into())),
        }
    }

    /// The browser's inspection views ("View by Resource", "View by Origin") of a partition:
    /// every entry and every storing origin. Never reachable from renderers.
    pub fn inspect(&self, partition: Partition) -> Result<(Vec<EntryInfo>, Vec<OriginInfo>), CosError> {
        let (stream, done) =
            self.inner.streamed_request(|request, stream| BrowserToService::Inspect { request, partition, stream })?;
        let (mut entries, mut origins) = (Vec::new(), Vec::new());
        loop {
            match stream.recv() {
                Ok(InspectionItem::Entry(entry)) => entries.push(entry),
                Ok(InspectionItem::EntryOrigins { storing, listed }) => {
                    let Some(entry) = entries.last_mut() else { break };
                    entry.storing_origins.extend(storing);
                    entry.listed_origins.extend(listed);
                }
                Ok(InspectionItem::Origin(origin)) => origins.push(origin),
                Ok(InspectionItem::End) => break,
                Err(_) => break,
            }
        }
        done.recv().unwrap_or(Err(CosError::Abort))?;
        Ok((entries, origins))
    }

    /// The service's state for a partition (limits, Public Hash List, eviction and corruption
    /// counts since it started) and every top-level site's spent probe budget: the internals
    /// page's "Service" view. Never reachable from renderers.
    pub fn status(&self, partition: Partition) -> Result<(ServiceStatus, Vec<ProbeBudgetInfo>), CosError> {
        let (stream, done) =
            self.inner.streamed_request(|request, stream| BrowserToService::Status { request, partition, stream })?;
        let (mut status, mut budgets) = (None, Vec::new());
        loop {
            match stream.recv() {
                Ok(StatusItem::Service(reported)) => status = Some(reported),
                Ok(StatusItem::Budget(budget)) => budgets.push(budget),
                Ok(StatusItem::End) | Err(_) => break,
            }
        }
        done.recv().unwrap_or(Err(CosError::Abort))?;
        Ok((status.ok_or(CosError::Unknown)?, budgets))
    }

    /// Whether the running storage service reported its sandbox fully enforced.
    pub fn service_sandboxed(&self) -> bool {
        self.inner.service.lock().sandboxed
    }

    /// Re-hashes every blob of a partition, deleting the entries whose blob is damaged or
    /// missing (browser-side maintenance; may take minutes on a large store, during which COS keeps
    /// serving). `progress` hears after each entry: the findings so far and the number of entries.
    pub fn scrub(
        &self,
        partition: Partition,
        mut progress: impl FnMut(&ScrubReport, u64),
    ) -> Result<ScrubReport, CosError> {
        let (stream, done) =
            self.inner.streamed_request(|request, stream| BrowserToService::Scrub { request, partition, stream })?;
        let mut last = ScrubReport::default();
        while let Ok(ScrubItem::Progress { report, total }) = stream.recv() {
            progress(&report, total);
            last = report;
        }
        done.recv().unwrap_or(Err(CosError::Abort))?;
        Ok(last)
    }

    /// Deletes an entry for everyone (a user action in "View by Resource").
    pub fn delete_entry(&self, partition: Partition, hash: &ContentHash) -> Result<(), CosError> {
        self.inner.control_request(|request| BrowserToService::DeleteEntry { request, partition, hash: *hash })
    }

    /// Discards an off-the-record profile's store.
    pub fn close_off_the_record(&self, profile: OffTheRecordProfileId) {
        if let Some(control) = self.inner.control() {
            let _ = control.send(BrowserToService::CloseOffTheRecord { profile });
        }
    }

    /// Round trip to the service's control loop.
    pub fn ping(&self) -> Result<(), CosError> {
        self.inner.control_request(|request| BrowserToService::Ping { request })
    }

    /// The storage service's process id (`None` in-process or while restarting).
    pub fn service_pid(&self) -> Option<u32> {
        self.inner.service.lock().pid
    }

    /// How many times the service has been started (1 after `start`).
    pub fn service_generation(&self) -> u64 {
        self.inner.service.lock().generation
    }

    /// Waits until the service generation is at least `generation`, ready, and every broker
    /// is bound to it (so a renderer's next call reaches the new service).
    pub fn wait_for_generation(&self, generation: u64, timeout: Duration) -> bool {
        let mut state = self.inner.service.lock();
        let deadline = std::time::Instant::now() + timeout;
        while !(state.bound_generation >= generation && state.control.is_some()) {
            if self.inner.service_ready.wait_until(&mut state, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

impl Drop for CosHost {
    fn drop(&mut self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let (control, child) = {
            let mut state = self.inner.service.lock();
            (state.control.take(), state.child.take())
        };
        if let Some(control) = control {
            let _ = control.send(BrowserToService::Shutdown);
            if matches!(self.inner.config.launch, ServiceLaunch::InProcess(_)) {
                wait_for_in_process_service(&control);
            }
        }
        if let Some(mut child) = child {
            // Give it a moment to flush; then make sure it is gone.
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until an in-process service has stopped: its end of the control pipe closes only after
/// its store is closed (`serve` drops the store first). Otherwise its thread would still be
/// closing the store — writing the registry, holding the profile's lock and the store's memory —
/// after the host is gone, while the embedder may already reopen or delete that profile.
fn wait_for_in_process_service(control: &ControlPipe) {
    let deadline = Instant::now() + IN_PROCESS_SHUTDOWN_TIMEOUT;
    loop {
        match control.endpoint().recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            // Nobody waits for answers any more.
            Ok(_) => {}
            Err(IpcError::Disconnected) => return,
            Err(error) => {
                tracing::warn!(%error, "the in-process storage service did not stop in time");
                return;
            }
        }
    }
}

impl HostInner {
    /// Sends a control request with a fresh pipe attached, over which the service streams `T`s;
    /// returns that stream and where the request's `Done` will arrive.
    fn streamed_request<T: serde::de::DeserializeOwned>(
        &self,
        message: impl FnOnce(RequestId, Attached) -> BrowserToService,
    ) -> Result<(Pipe<(), T>, DoneReceiver), CosError> {
        let control = self.control().ok_or(CosError::Abort)?;
        let pair = if control.endpoint().is_in_process() { Ok(Endpoint::pair_in_process()) } else { Endpoint::pair() };
        let (ours, theirs) = pair.map_err(|_| CosError::Unknown)?;
        let request = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let (sender, done) = crossbeam_channel::bounded(1);
        self.pending.lock().insert(request, sender);
        if control.send(message(request, theirs.into())).is_err() {
            self.pending.lock().remove(&request);
            return Err(CosError::Abort);
        }
        Ok((Pipe::new(ours), done))
    }

    fn control(&self) -> Option<Arc<ControlPipe>> {
        self.service.lock().control.clone()
    }

    fn control_request(&self, make: impl FnOnce(RequestId) -> BrowserToService) -> Result<(), CosError> {
        let control = self.control().ok_or(CosError::Abort)?;
        let request = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let (sender, receiver): (Sender<_>, Receiver<_>) = crossbeam_channel::bounded(1);
        self.pending.lock().insert(request, sender);
        if control.send(make(request)).is_err() {
            self.pending.lock().remove(&request);
            return Err(CosError::Abort);
        }
        receiver.recv().unwrap_or(Err(CosError::Abort))
    }

    /// Launches the service, configures it and waits for `Ready`. Returns its control pipe.
    fn launch_service(&self) -> Result<Arc<ControlPipe>, String> {
        let (endpoint, child) = match &self.config.launch {
            ServiceLaunch::Process(options) => {
                let mut child = cos_ipc::launch::launch(options).map_err(|e| e.to_string())?;
                (child.take_endpoint(), Some(child))
            }
            ServiceLaunch::InProcess(run) => {
                let (ours, theirs) = Endpoint::pair_in_process();
                run(theirs);
                (ours, None)
            }
        };
        let control = Arc::new(ControlPipe::new(endpoint));
        control.send(BrowserToService::Configure(self.config.service.clone())).map_err(|e| e.to_string())?;
        match control.recv_timeout(READY_TIMEOUT) {
            Ok(ServiceToBrowser::Ready { entries, sandboxed }) => {
                let pid = child.as_ref().map(LaunchedChild::pid);
                tracing::info!(entries, sandboxed, ?pid, "storage service ready");
                let mut state = self.service.lock();
                state.control = Some(control.clone());
                state.pid = pid;
                state.child = child;
                state.generation += 1;
                state.last_error = None;
                state.sandboxed = sandboxed;
                Ok(control)
            }
            Ok(ServiceToBrowser::Failed { message }) => {
                self.reap(child);
                Err(message)
            }
            Ok(_) => {
                self.reap(child);
                Err("the storage service did not start with Ready".into())
            }
            Err(error) => {
                self.reap(child);
                Err(format!("no Ready from the storage service: {error}"))
            }
        }
    }

    fn reap(&self, child: Option<LaunchedChild>) {
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new connection to the current service generation, bound under `renderer`: our end and
    /// the generation (`None` while the service is down: bound when it is back).
    fn connect(&self, renderer: RendererId) -> Option<(Endpoint, u64)> {
        let (control, generation, in_process) = {
            let state = self.service.lock();
            let control = state.control.as_ref()?;
            (control.clone(), state.generation, control.endpoint().is_in_process())
        };
        let pair = if in_process { Ok(Endpoint::pair_in_process()) } else { Endpoint::pair() };
        let (ours, theirs) = match pair {
            Ok(pair) => pair,
            Err(error) => {
                tracing::error!(%error, "could not create a service connection");
                return None;
            }
        };
        control.send(BrowserToService::BindRenderer { renderer, connection: theirs.into() }).ok()?;
        Some((ours, generation))
    }

    /// Gives a broker a connection to the current service generation.
    fn bind(&self, stub: &Arc<BrokerStub>) {
        let renderer = stub.renderer();
        let Some((ours, generation)) = self.connect(renderer) else { return };
        let Some(receiver) = stub.attach_service(generation, Pipe::new(ours)) else { return };
        let stub = stub.clone();
        let _ = std::thread::Builder::new()
            .name(format!("cos-broker-service-{}", renderer.0))
            .spawn(move || stub.serve_replies(generation, receiver));
    }

    /// Gives the loader a connection to the current service generation.
    fn bind_loader(&self) {
        if self.loader.bound_generation() >= Some(self.service.lock().generation) {
            return;
        }
        let Some((ours, generation)) = self.connect(LOADER_CONNECTION) else { return };
        let Some(receiver) = self.loader.attach_service(generation, Pipe::new(ours)) else { return };
        let loader = self.loader.clone();
        let _ = std::thread::Builder::new()
            .name("cos-loader-service".into())
            .spawn(move || loader.serve_replies(generation, receiver));
    }

    fn handle_service_message(&self, message: ServiceToBrowser) {
        match message {
            ServiceToBrowser::Done { request, result } => {
                if let Some(sender) = self.pending.lock().remove(&request) {
                    let _ = sender.send(result);
                }
            }
            ServiceToBrowser::PublicHashListLoaded { request, counts } => {
                // Only for a reload still waiting for its `Done`, so the map stays bounded.
                if self.pending.lock().contains_key(&request) {
                    self.list_counts.lock().insert(request, counts);
                }
            }
            other => tracing::warn!(?other, "unexpected message from the storage service"),
        }
    }
}

/// The supervisor thread: serves the control pipe; when the service dies, fails what was in
/// flight, relaunches it and rebinds every broker.
fn supervise(host: Weak<HostInner>, mut control: Arc<ControlPipe>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        // Bind the brokers registered so far to this generation, then say it is ready.
        if let Some(inner) = host.upgrade() {
            let stubs: Vec<_> = inner.brokers.lock().values().cloned().collect();
            for stub in &stubs {
                inner.bind(stub);
            }
            inner.bind_loader();
            let mut state = inner.service.lock();
            state.bound_generation = state.generation;
            drop(state);
            inner.service_ready.notify_all();
        }
        let receiver = match control.try_clone() {
            Ok(receiver) => receiver,
            Err(error) => {
                tracing::error!(%error, "cannot read the service control pipe");
                return;
            }
        };
        loop {
            match receiver.recv() {
                Ok(message) => match host.upgrade() {
                    Some(inner) => inner.handle_service_message(message),
                    None => return,
                },
                Err(error) => {
                    if !matches!(error, IpcError::Disconnected) {
                        tracing::error!(%error, "unreadable message from the storage service");
                    }
                    break;
                }
            }
        }
        let Some(inner) = host.upgrade() else { return };
        if inner.shutting_down.load(Ordering::Acquire) {
            return;
        }
        tracing::error!("the storage service went away; restarting it");
        let (child, generation) = {
            let mut state = inner.service.lock();
            state.control = None;
            state.pid = None;
            (state.child.take(), state.generation)
        };
        inner.reap(child);
        for (_, sender) in inner.pending.lock().drain() {
            let _ = sender.send(Err(CosError::Abort));
        }
        let stubs: Vec<_> = inner.brokers.lock().values().cloned().collect();
        for stub in stubs {
            stub.service_lost(generation);
        }
        inner.loader.service_lost(generation);
        loop {
            if inner.shutting_down.load(Ordering::Acquire) {
                return;
            }
            match inner.launch_service() {
                Ok(next) => {
                    control = next;
                    backoff = Duration::from_millis(50);
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, ?backoff, "storage service restart failed; retrying");
                    inner.service.lock().last_error = Some(error);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
