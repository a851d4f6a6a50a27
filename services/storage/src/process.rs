//! The storage service as a process (or as threads, in-process): the control loop that the
//! browser drives, one connection per renderer, one thread per data pipe.
//!
//! Threads: the control loop; one thread per bound renderer connection (requests are handled in
//! order, each quickly); one thread per open writer or read (bulk data). A renderer that stops
//! reading its data pipe blocks only the thread of that pipe, never the service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cos_common::interface::{
    BrokerToService, BrowserToService, CallResult, DATA_CHUNK_BYTES, DATA_PIPE_SEND_BUFFER, EntryInfo, HandleId,
    InspectionItem, ReaderFrame, ReaderRequest, RendererId, Reply, ScrubItem, ServiceProcessConfig, ServiceToBroker,
    ServiceToBrowser, WriterEvent, WriterFrame,
};
use cos_common::{CosError, Origin, Partition, QuotaScope};
use cos_ipc::{Endpoint, IpcError, Pipe};

use crate::config::{ServiceConfig, StorageLimits};
use crate::gates::{GateConfig, GreaseMode, PublicHashList, PublicHashListBuilder};
use crate::service::{FileHandle, FileReader, StorageService, Streamed, WritableFile};

/// Open handles one renderer connection may hold at once.
pub const MAX_HANDLES_PER_RENDERER: usize = 16_384;
/// Open writers plus reads one renderer connection may hold at once.
pub const MAX_DATA_PIPES_PER_RENDERER: usize = 64;

type ControlPipe = Pipe<ServiceToBrowser, BrowserToService>;

/// What the lock-down step of [`serve`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockDown {
    /// The sandbox is enforced.
    pub sandboxed: bool,
    /// `--sandbox-self-test` mode: the probes' results, sent right after `Ready`.
    pub self_test: Option<(bool, bool, bool)>,
}

/// Runs the service on the browser's control endpoint until the browser says `Shutdown` or goes
/// away. `lock_down` is called after the store is open and before any request is served (the
/// process entry point applies the sandbox; in-process tests pass `no_lock_down`).
pub fn serve(
    control: Endpoint,
    lock_down: impl FnOnce(&ServiceProcessConfig) -> Result<LockDown, String>,
) -> Result<(), String> {
    let control = Arc::new(ControlPipe::new(control));
    let config = match control.recv() {
        Ok((BrowserToService::Configure(config), _)) => config,
        Ok(_) => return Err("the first control message was not Configure".into()),
        Err(error) => return Err(format!("no configuration from the browser: {error}")),
    };
    let service = match open_service(&config) {
        Ok(opened) => opened,
        Err(message) => {
            let _ = control.send(&ServiceToBrowser::Failed { message: message.clone() }, vec![]);
            return Err(message);
        }
    };
    let (service, entries) = service;
    let locked = match lock_down(&config) {
        Ok(locked) => locked,
        Err(message) => {
            let _ = control.send(&ServiceToBrowser::Failed { message: message.clone() }, vec![]);
            return Err(message);
        }
    };
    let sandboxed = locked.sandboxed;
    control.send(&ServiceToBrowser::Ready { entries, sandboxed }, vec![]).map_err(|e| e.to_string())?;
    tracing::info!(entries, sandboxed, "storage service ready");
    if let Some((open_outside_store_blocked, tcp_connect_blocked, exec_blocked)) = locked.self_test {
        let report =
            ServiceToBrowser::SandboxSelfTest { open_outside_store_blocked, tcp_connect_blocked, exec_blocked };
        control.send(&report, vec![]).map_err(|e| e.to_string())?;
    }
    // Every renderer connection and data pipe has stopped when this returns.
    control_loop(&service, &control);
    if let Err(error) = service.shut_down_cleanly() {
        tracing::warn!(%error, "could not flush the registry at shutdown");
    }
    // The store closes before the control pipe: an in-process host learns from the pipe closing
    // that the service is gone and its profile free.
    drop(service);
    drop(control);
    Ok(())
}

/// The lock-down step for an in-process service: nothing to enforce (`testing` feature only).
#[cfg(feature = "testing")]
pub fn no_lock_down(_: &ServiceProcessConfig) -> Result<LockDown, String> {
    Ok(LockDown::default())
}

/// The argument that puts a storage-service process into self-test mode.
pub const SANDBOX_SELF_TEST_ARG: &str = "--sandbox-self-test";

/// Entry point of a `--type=storage-service` process, after `cos_ipc` bootstrap: serve on the
/// browser's pipe, sandboxed (unless the browser's configuration turns the sandbox off for a
/// test). Returns the process exit code.
pub fn run_storage_service_process(bootstrap: cos_ipc::launch::ChildBootstrap) -> std::process::ExitCode {
    limit_allocator_arenas();
    let self_test = bootstrap.args.iter().any(|arg| arg == SANDBOX_SELF_TEST_ARG);
    let result = serve(bootstrap.endpoint, |config| {
        // The probe's listener must exist before lock-down: afterwards sockets cannot be made.
        let listener = if self_test { std::net::TcpListener::bind("127.0.0.1:0").ok() } else { None };
        let port = listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port());
        // Only a build with the test seams may run unsandboxed; a product service locks down
        // whatever the browser asked.
        if !config.sandbox && cfg!(feature = "testing") {
            tracing::warn!("storage service running WITHOUT its sandbox (configuration says so)");
            return Ok(LockDown::default());
        }
        let store_dir = PathBuf::from(&config.profile_dir).join("cos");
        let report = crate::sandbox::lock_down(&store_dir).map_err(|e| format!("sandbox: {e}"))?;
        tracing::info!(?report, "storage service sandboxed");
        let probes = port.map(|port| {
            let seen = crate::sandbox::self_test(port);
            (seen.open_outside_store.is_blocked(), seen.tcp_connect.is_blocked(), seen.exec.is_blocked())
        });
        drop(listener);
        let enforced =
            report.seccomp && report.no_new_privs && report.landlock != crate::sandbox::LandlockStatus::NotSupported;
        Ok(LockDown { sandboxed: enforced, self_test: probes })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(%message, "storage service stopped");
            eprintln!("storage service: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn open_service(config: &ServiceProcessConfig) -> Result<(StorageService, u64), String> {
    // An origin's fair share for eviction: a fifth of the store, as in the prototypes.
    let limits = StorageLimits {
        per_origin_bytes: config.per_origin_bytes,
        total_bytes: config.total_bytes,
        share_bytes: config.total_bytes / 5,
    };
    let public_hash_list = match &config.public_hash_list_path {
        Some(path) => Some(PublicHashList::load(path.as_ref()).map_err(|e| format!("{path}: {e}"))?),
        None => None,
    };
    let gates = GateConfig {
        public_hash_list,
        availability_threshold: config.availability_threshold,
        grease: GreaseMode::from_process_config(config.grease_for_tests),
        probe_budget: config.probe_budget,
    };
    let service_config = ServiceConfig::new(PathBuf::from(&config.profile_dir)).with_limits(limits).with_gates(gates);
    let (service, report) = StorageService::open(service_config).map_err(|e| e.to_string())?;
    Ok((service, report.entries as u64))
}

/// A thread serving one pipe, and a second handle on that pipe to end it with. The handle is
/// released as soon as the thread is done, so a finished pipe holds no descriptor.
struct Served {
    pipe: Arc<parking_lot::Mutex<Option<Endpoint>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Served {
    /// Runs `work` on `endpoint` in a new thread named `name`; the pipe is shut down when the
    /// work returns, so the peer hears at once.
    fn spawn(name: String, endpoint: Endpoint, work: impl FnOnce(Endpoint) + Send + 'static) -> std::io::Result<Self> {
        let pipe = Arc::new(parking_lot::Mutex::new(Some(endpoint.try_clone()?)));
        let ours = pipe.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            work(endpoint);
            if let Some(handle) = ours.lock().take() {
                handle.shutdown();
            }
        })?;
        Ok(Self { pipe, thread })
    }
}

/// Bulk transfers (a data pipe's reads, writes and hashing, and the threads they start) run at a
/// lower priority than request handling, so that a renderer streaming gigabytes — or abusing its
/// limits — cannot stretch other renderers' lookups on a machine with few cores.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value is per thread, and `PRIO_PROCESS` with `who = 0` names the
        // calling thread: the only form the seccomp policy allows, so no thread of the service
        // can touch another process's priority.
        if let Err(error) = rustix::process::setpriority_process(None, 10) {
            tracing::debug!(%error, "could not lower a data pipe's priority");
        }
    }
}

/// Gives memory the allocator keeps after frees back to the system. A renderer's data-pipe
/// threads each leave their arena's buffers (MiB per writer) cached; when a renderer goes away
/// its share should go too, so the service returns to its baseline after load.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the allocator to a single arena. By default glibc gives threads up to eight arenas per
/// core, and the registry's long-lived pages, allocated by whichever data-pipe thread committed,
/// pin each of those arenas after the threads end: after a 32-renderer load the service kept
/// ~8 MiB over its baseline in fourteen arenas, against 2.6 MiB with one. Allocation is not the
/// service's bottleneck (bulk buffers are allocated once per pipe); the same load ran as fast.
fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called before the service starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Ends every served pipe and waits for its thread: nothing keeps serving (or holds the store)
/// after its owner stopped.
fn stop_all(served: Vec<Served>) {
    for entry in &served {
        if let Some(pipe) = entry.pipe.lock().as_ref() {
            pipe.shutdown();
        }
    }
    for entry in served {
        let _ = entry.thread.join();
    }
}

fn control_loop(service: &StorageService, control: &Arc<ControlPipe>) {
    let mut connections: Vec<Served> = Vec::new();
    serve_control(service, control, &mut connections);
    stop_all(connections);
}

fn serve_control(service: &StorageService, control: &Arc<ControlPipe>, connections: &mut Vec<Served>) {
    loop {
        let (message, mut attachments) = match control.recv() {
            Ok(received) => received,
            Err(IpcError::Disconnected) => return,
            Err(error) => {
                tracing::error!(%error, "unreadable control message from the browser; exiting");
                return;
            }
        };
        match message {
            BrowserToService::BindRenderer { renderer } => {
                let (Some(endpoint), true) = (attachments.pop(), attachments.is_empty()) else {
                    tracing::error!("BindRenderer without exactly one endpoint");
                    continue;
                };
                let service = service.clone();
                let spawned = Served::spawn(format!("cos-renderer-{}", renderer.0), endpoint, move |endpoint| {
                    RendererConnection::new(service, renderer, endpoint).run();
                    release_freed_memory();
                });
                match spawned {
                    Ok(served) => {
                        connections.retain(|served| !served.thread.is_finished());
                        connections.push(served);
                    }
                    Err(error) => tracing::error!(%error, "could not start a renderer connection thread"),
                }
            }
            BrowserToService::ClearSiteData { request, partition, origin } => {
                let result = service.clear_site_data(partition, &origin).map(|_| ()).map_err(|e| e.to_web_error());
                let _ = control.send(&ServiceToBrowser::Done { request, result }, vec![]);
            }
            BrowserToService::CloseOffTheRecord { profile } => service.close_off_the_record(profile),
            BrowserToService::Inspect { request, partition } => {
                let result = match (attachments.pop(), attachments.is_empty()) {
                    (Some(stream), true) => stream_inspection(service, partition, &stream),
                    _ => Err(CosError::Unknown),
                };
                let _ = control.send(&ServiceToBrowser::Done { request, result }, vec![]);
            }
            BrowserToService::Scrub { request, partition } => {
                let (Some(stream), true) = (attachments.pop(), attachments.is_empty()) else {
                    let result = Err(CosError::Unknown);
                    let _ = control.send(&ServiceToBrowser::Done { request, result }, vec![]);
                    continue;
                };
                // Minutes on a large store: off the control loop, which keeps answering.
                let (service, reply) = (service.clone(), control.clone());
                let spawned = std::thread::Builder::new().name("cos-scrub".into()).spawn(move || {
                    let result = scrub(&service, partition, &stream);
                    let _ = reply.send(&ServiceToBrowser::Done { request, result }, vec![]);
                });
                if let Err(error) = spawned {
                    tracing::error!(%error, "could not start a scrub thread");
                    let _ = control.send(&ServiceToBrowser::Done { request, result: Err(CosError::Unknown) }, vec![]);
                }
            }
            BrowserToService::DeleteEntry { request, partition, hash } => {
                let result = service.delete_entry(partition, &hash).map(|_| ()).map_err(|e| e.to_web_error());
                let _ = control.send(&ServiceToBrowser::Done { request, result }, vec![]);
            }
            BrowserToService::UserActivation { partition, top_level_site } => {
                service.notify_user_activation(partition, &top_level_site);
            }
            BrowserToService::ReloadPublicHashList { request } => {
                let result = match (attachments.pop(), attachments.is_empty()) {
                    (Some(stream), true) => receive_public_hash_list(&stream).map(|list| {
                        tracing::info!(digests = list.len(), "Public Hash List reloaded");
                        service.set_public_hash_list(Some(list));
                    }),
                    _ => Err("ReloadPublicHashList needs exactly one pipe".into()),
                };
                let result = result.map_err(|message: String| {
                    tracing::error!(%message, "the Public Hash List was not reloaded; the old one stays");
                    CosError::Unknown
                });
                let _ = control.send(&ServiceToBrowser::Done { request, result }, vec![]);
            }
            BrowserToService::Ping { request } => {
                let _ = control.send(&ServiceToBrowser::Done { request, result: Ok(()) }, vec![]);
            }
            BrowserToService::Shutdown => return,
            BrowserToService::Configure(_) => tracing::warn!("ignoring a second Configure"),
        }
    }
}

/// Origin bytes (serialised) one inspection item carries at most, far below the transport's
/// message limit whatever else the item holds (a bounded provenance list and a few numbers).
const INSPECTION_ORIGIN_BYTES: usize = 32 * 1024;

/// Streams a partition's entries and origins to the browser, then `End`. An entry's origin lists
/// are cut into pieces ([`InspectionItem::EntryOrigins`]), so that no entry breaks the listing.
fn stream_inspection(service: &StorageService, partition: Partition, stream: &Endpoint) -> Result<(), CosError> {
    let pipe: Pipe<InspectionItem, ()> = Pipe::new(stream.try_clone().map_err(|_| CosError::Unknown)?);
    let entries = service.inspect_entries(partition).map_err(|e| e.to_web_error())?;
    let origins = service.inspect_origins(partition).map_err(|e| e.to_web_error())?;
    let items = entries.into_iter().flat_map(entry_items).chain(origins.into_iter().map(InspectionItem::Origin));
    for item in items.chain(std::iter::once(InspectionItem::End)) {
        pipe.send(&item, vec![]).map_err(|error| {
            tracing::warn!(%error, "inspection stream failed");
            CosError::Unknown
        })?;
    }
    Ok(())
}

/// One entry as inspection items: the entry with as many of its origins as fit
/// [`INSPECTION_ORIGIN_BYTES`], then the rest in pieces of that size.
fn entry_items(mut entry: EntryInfo) -> Vec<InspectionItem> {
    let mut storing = std::mem::take(&mut entry.storing_origins).into_iter().peekable();
    let mut listed = std::mem::take(&mut entry.listed_origins).into_iter().peekable();
    let mut next_piece = || {
        let (mut piece_storing, mut piece_listed, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        let mut fits = |origin: &Origin| {
            // At least one origin per piece, however long: each came in one message.
            let size = origin.to_string().len() + 3;
            let fits = bytes == 0 || bytes + size <= INSPECTION_ORIGIN_BYTES;
            if fits {
                bytes += size;
            }
            fits
        };
        while let Some(origin) = storing.next_if(&mut fits) {
            piece_storing.push(origin);
        }
        while let Some(origin) = listed.next_if(&mut fits) {
            piece_listed.push(origin);
        }
        (piece_storing, piece_listed)
    };
    let (first_storing, first_listed) = next_piece();
    entry.storing_origins = first_storing.into_iter().collect();
    entry.listed_origins = first_listed;
    let mut items = vec![InspectionItem::Entry(entry)];
    loop {
        let (storing, listed) = next_piece();
        if storing.is_empty() && listed.is_empty() {
            return items;
        }
        items.push(InspectionItem::EntryOrigins { storing, listed });
    }
}

/// Runs a scrub, streaming its progress to the browser, then the end.
fn scrub(service: &StorageService, partition: Partition, stream: &Endpoint) -> Result<(), CosError> {
    let pipe: Pipe<ScrubItem, ()> = Pipe::new(stream.try_clone().map_err(|_| CosError::Unknown)?);
    let result = service.scrub(partition, |report, total| {
        let _ = pipe.send(&ScrubItem::Progress { report: report.clone(), total }, vec![]);
    });
    let _ = pipe.send(&ScrubItem::End, vec![]);
    result.map(drop).map_err(|error| {
        tracing::error!(%error, "scrub failed");
        error.to_web_error()
    })
}

/// Reads a Public Hash List streamed by the browser: file bytes in messages, then an empty one.
fn receive_public_hash_list(stream: &Endpoint) -> Result<PublicHashList, String> {
    let mut builder = PublicHashListBuilder::default();
    loop {
        let message = stream.recv().map_err(|e| format!("list stream: {e}"))?;
        if message.bytes.is_empty() {
            return builder.finish().map_err(|e| e.to_string());
        }
        builder.feed(&message.bytes).map_err(|e| e.to_string())?;
    }
}

type BrokerConnection = Pipe<ServiceToBroker, BrokerToService>;

/// One renderer's connection: its handles and the bounds on them.
struct RendererConnection {
    service: StorageService,
    renderer: RendererId,
    pipe: BrokerConnection,
    handles: HashMap<HandleId, FileHandle>,
    open_pipes: Arc<std::sync::atomic::AtomicUsize>,
    pipes: Vec<Served>,
    /// Requests refused in a row for this renderer's own limits; see [`pause_after_refusals`].
    refusals_in_a_row: u32,
}

/// Refusals for a renderer's own limits that are answered at once; a page's retry loop stays
/// well below this.
const REFUSALS_ANSWERED_AT_ONCE: u32 = 16;
/// The longest a refusal is held back.
const LONGEST_REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_millis(64);

/// How long to hold back the answer to the `refusals_in_a_row`-th refusal in a row: nothing for
/// the first [`REFUSALS_ANSWERED_AT_ONCE`], then 1 ms doubling up to [`LONGEST_REFUSAL_PAUSE`].
/// A renderer that keeps asking past its limits would otherwise spin three processes (itself,
/// its broker thread and its service thread) at full speed and take the cores other renderers'
/// lookups need; held back, it asks at most ~16 times a second. Only this renderer's connection
/// waits: each renderer has its own service thread.
fn pause_after_refusals(refusals_in_a_row: u32) -> Option<std::time::Duration> {
    let beyond = refusals_in_a_row.checked_sub(REFUSALS_ANSWERED_AT_ONCE + 1)?;
    let pause = std::time::Duration::from_millis(1u64 << beyond.min(16));
    Some(pause.min(LONGEST_REFUSAL_PAUSE))
}

impl RendererConnection {
    fn new(service: StorageService, renderer: RendererId, endpoint: Endpoint) -> Self {
        Self {
            service,
            renderer,
            pipe: Pipe::new(endpoint),
            handles: HashMap::new(),
            open_pipes: Arc::default(),
            pipes: Vec::new(),
            refusals_in_a_row: 0,
        }
    }

    fn run(mut self) {
        self.serve();
        stop_all(std::mem::take(&mut self.pipes));
    }

    fn serve(&mut self) {
        loop {
            let message = match self.pipe.recv() {
                Ok((message, attachments)) if attachments.is_empty() => message,
                Ok(_) => {
                    tracing::error!(renderer = self.renderer.0, "the broker attached endpoints to a request");
                    return;
                }
                Err(IpcError::Disconnected) => return,
                Err(error) => {
                    tracing::error!(renderer = self.renderer.0, %error, "unreadable message from the broker");
                    return;
                }
            };
            let (request, result, attachment) = match message {
                BrokerToService::GetFileHandle { request, handle, caller, hash, kind } => {
                    let _span =
                        tracing::debug_span!("request", renderer = self.renderer.0, request = request.0).entered();
                    // At the limit the store is not consulted: a refusal costs nothing and
                    // spends no probe budget.
                    let result = if self.handles.len() >= MAX_HANDLES_PER_RENDERER {
                        CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer))
                    } else if self.handles.contains_key(&handle) {
                        // The broker never reuses an id; refusing keeps the first handle intact.
                        tracing::error!(renderer = self.renderer.0, handle = handle.0, "the broker reused a handle id");
                        CallResult::Failed(CosError::Unknown)
                    } else {
                        self.issue_handle(handle, self.service.get_file_handle(&caller, hash, kind))
                    };
                    (request, result, None)
                }
                BrokerToService::GetFile { request, handle } => {
                    let (result, attachment) = self.get_file(handle);
                    (request, result, attachment)
                }
                BrokerToService::CreateWritable { request, handle } => {
                    let (result, attachment) = self.create_writable(handle);
                    (request, result, attachment)
                }
                BrokerToService::ReleaseHandle { handle } => {
                    self.handles.remove(&handle);
                    continue;
                }
            };
            self.hold_back_repeated_refusals(&result);
            let attachments = attachment.into_iter().collect();
            if let Err(error) = self.pipe.send(&ServiceToBroker::Reply(Reply { request, result }), attachments) {
                tracing::warn!(renderer = self.renderer.0, %error, "could not reply to the broker");
                return;
            }
        }
    }

    /// Counts refusals for this renderer's limits in a row and sleeps as
    /// [`pause_after_refusals`] says; anything granted starts the count again.
    fn hold_back_repeated_refusals(&mut self, result: &CallResult) {
        match result {
            CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer)) => {
                self.refusals_in_a_row = self.refusals_in_a_row.saturating_add(1);
                if let Some(pause) = pause_after_refusals(self.refusals_in_a_row) {
                    if self.refusals_in_a_row == REFUSALS_ANSWERED_AT_ONCE + 1 {
                        tracing::warn!(renderer = self.renderer.0, "renderer keeps asking past its limits; slowing it");
                    }
                    std::thread::sleep(pause);
                }
            }
            CallResult::Failed(_) => {}
            CallResult::Handle { .. } | CallResult::File { .. } | CallResult::Writable => self.refusals_in_a_row = 0,
        }
    }

    fn issue_handle(&mut self, id: HandleId, result: Result<FileHandle, CosError>) -> CallResult {
        match result {
            Err(error) => CallResult::Failed(error),
            Ok(handle) => {
                let create = handle.is_create();
                self.handles.insert(id, handle);
                CallResult::Handle { handle: id, create }
            }
        }
    }

    /// A handle id this connection does not hold (the broker answers stale ids itself; this is
    /// its second line).
    fn unknown_handle() -> (CallResult, Option<Endpoint>) {
        (CallResult::Failed(CosError::Abort), None)
    }

    fn reserve_pipe(&self) -> Option<PipeSlot> {
        let previous = self.open_pipes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if previous >= MAX_DATA_PIPES_PER_RENDERER {
            self.open_pipes.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        Some(PipeSlot(self.open_pipes.clone()))
    }

    fn get_file(&mut self, handle: HandleId) -> (CallResult, Option<Endpoint>) {
        let Some(handle) = self.handles.get(&handle) else { return Self::unknown_handle() };
        let file = match handle.get_file() {
            Ok(file) => file,
            Err(error) => return (CallResult::Failed(error), None),
        };
        let Some(slot) = self.reserve_pipe() else {
            return (CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer)), None);
        };
        let size = file.size();
        match self.spawn_pipe("cos-read", move |endpoint, report| serve_read(file, endpoint, report, slot)) {
            Ok(endpoint) => (CallResult::File { size }, Some(endpoint)),
            Err(error) => (CallResult::Failed(error), None),
        }
    }

    fn create_writable(&mut self, handle: HandleId) -> (CallResult, Option<Endpoint>) {
        let Some(handle) = self.handles.get(&handle) else { return Self::unknown_handle() };
        // The slot first: a refused writer must not create (and delete) a swap file.
        let Some(slot) = self.reserve_pipe() else {
            return (CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer)), None);
        };
        let writer = match handle.create_writable() {
            Ok(writer) => writer,
            Err(error) => return (CallResult::Failed(error), None),
        };
        match self.spawn_pipe("cos-write", move |endpoint, report| serve_write(writer, endpoint, report, slot)) {
            Ok(endpoint) => (CallResult::Writable, Some(endpoint)),
            Err(error) => (CallResult::Failed(error), None),
        }
    }

    /// Creates a data pipe, serves the service's end on a new thread and returns the renderer's end.
    fn spawn_pipe(
        &mut self,
        name: &str,
        serve: impl FnOnce(Endpoint, BadMessageReport) + Send + 'static,
    ) -> Result<Endpoint, CosError> {
        let (ours, theirs) = if self.pipe.endpoint().is_in_process() {
            Endpoint::pair_in_process()
        } else {
            Endpoint::pair().map_err(|error| {
                tracing::error!(%error, "could not create a data pipe");
                CosError::Unknown
            })?
        };
        let to_broker = self.pipe.try_clone().map_err(|error| {
            tracing::error!(%error, "could not share the broker connection with a data pipe");
            CosError::Unknown
        })?;
        let report = BadMessageReport { renderer: self.renderer, to_broker };
        let served = Served::spawn(name.into(), ours, move |ours| serve(ours, report)).map_err(|error| {
            tracing::error!(%error, "could not start a data pipe thread");
            CosError::Unknown
        })?;
        self.pipes.retain(|served| !served.thread.is_finished());
        self.pipes.push(served);
        Ok(theirs)
    }
}

/// Releases one of a connection's data-pipe slots when the pipe's thread ends.
struct PipeSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for PipeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Tells the browser that a renderer misbehaved on a data pipe (the service cannot terminate
/// renderers itself). The report goes over that renderer's own broker connection, so it can name
/// no other renderer.
struct BadMessageReport {
    renderer: RendererId,
    to_broker: BrokerConnection,
}

impl BadMessageReport {
    fn send(&self, reason: &str) {
        tracing::error!(renderer = self.renderer.0, reason, "bad message on a data pipe");
        let _ = self.to_broker.send(&ServiceToBroker::BadMessage { reason: reason.into() }, vec![]);
    }
}

fn serve_write(mut writer: WritableFile, endpoint: Endpoint, report: BadMessageReport, slot: PipeSlot) {
    lower_this_threads_priority();
    let events: Pipe<WriterEvent, ()> = Pipe::new(endpoint);
    // Declared after the pipe, so it is released before the renderer can see the pipe end.
    let slot = slot;
    let mut failed = false;
    loop {
        let message = match events.endpoint().recv() {
            Ok(message) if message.attachments.is_empty() => message,
            Ok(_) => return report.send("endpoint attached to a write frame"),
            Err(IpcError::Disconnected) => return, // dropping the writer aborts it
            Err(error) if error.is_peer_misbehaviour() => return report.send(&error.to_string()),
            Err(error) => {
                tracing::warn!(%error, "write data pipe failed");
                return;
            }
        };
        let Ok(frame) = WriterFrame::decode(&message.bytes) else {
            return report.send("malformed write frame");
        };
        let result = match frame {
            WriterFrame::Write { position: Some(position), data } => writer.write_at(position, data),
            WriterFrame::Write { position: None, data } => writer.write(data),
            WriterFrame::Seek(position) => writer.seek(position),
            WriterFrame::Truncate(size) => writer.truncate(size),
            WriterFrame::Close => {
                let result = writer.close().map(|_| ());
                // Free the slot first: the renderer may open the next stream as soon as it hears.
                drop(slot);
                let _ = events.send(&WriterEvent::Closed(result), vec![]);
                return;
            }
            WriterFrame::Abort => return writer.abort(),
        };
        if let Err(error) = result
            && !failed
        {
            // Reported once, as soon as it happens; the writer keeps answering with it.
            failed = true;
            if events.send(&WriterEvent::Failed(error), vec![]).is_err() {
                return;
            }
        }
    }
}

fn serve_read(file: FileReader, endpoint: Endpoint, report: BadMessageReport, slot: PipeSlot) {
    lower_this_threads_priority();
    // Released before the pipe closes (locals drop in reverse order).
    let _slot = slot;
    if let Err(error) = endpoint.set_send_buffer(DATA_PIPE_SEND_BUFFER) {
        tracing::debug!(%error, "could not deepen a read pipe's send queue");
    }
    loop {
        let request: ReaderRequest = match endpoint.recv() {
            Ok(message) => match cos_ipc::decode(&message.bytes) {
                Ok(request) if message.attachments.is_empty() => request,
                Ok(_) => return report.send("endpoint attached to a read request"),
                Err(_) => return report.send("malformed read request"),
            },
            Err(error) if error.is_peer_misbehaviour() => return report.send(&error.to_string()),
            Err(_) => return,
        };
        let ReaderRequest::Read { offset, len } = request;
        // Data frames go out as they are read; the end frame only once the bytes are verified.
        let outcome = file.stream(offset, len, &[ReaderFrame::DATA_TAG], DATA_CHUNK_BYTES, |frame| {
            endpoint.send(frame, vec![]).is_ok()
        });
        let outcome = match outcome {
            Ok(Streamed::Complete) => Ok(()),
            Ok(Streamed::Stopped) => return,
            Err(error) => Err(error),
        };
        let mut last = Vec::new();
        match outcome {
            Ok(()) => ReaderFrame::End.encode_into(&mut last),
            Err(error) => ReaderFrame::Failed(error).encode_into(&mut last),
        }
        if endpoint.send(&last, vec![]).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LONGEST_REFUSAL_PAUSE, REFUSALS_ANSWERED_AT_ONCE, pause_after_refusals};

    #[test]
    fn refusals_are_answered_at_once_then_held_back_doubling_to_a_ceiling() {
        for n in 0..=REFUSALS_ANSWERED_AT_ONCE {
            assert_eq!(pause_after_refusals(n), None, "refusal {n}");
        }
        let pauses: Vec<_> = (REFUSALS_ANSWERED_AT_ONCE + 1..REFUSALS_ANSWERED_AT_ONCE + 9)
            .map(|n| pause_after_refusals(n).unwrap().as_millis())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 64]);
        assert_eq!(pause_after_refusals(u32::MAX), Some(LONGEST_REFUSAL_PAUSE));
        assert_eq!(LONGEST_REFUSAL_PAUSE, Duration::from_millis(64));
    }
}
