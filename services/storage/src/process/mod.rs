//! The storage service as a process (or as threads, in-process): start-up and lock-down here,
//! then `control` (the loop the browser drives), `renderer_session` (one per renderer) and
//! `data_pipes` (one thread per open writer or read).
//!
//! Threads: the control loop; one thread per bound renderer session and one per document
//! binding (requests are handled in order, each quickly); one thread per open writer or read
//! (bulk data). A renderer that stops
//! reading its data pipe blocks only the thread of that pipe, never the service.

mod control;
mod data_pipes;
mod renderer_session;

use std::path::PathBuf;
use std::sync::Arc;

use cos_common::interface::{BrowserToService, ServiceProcessConfig, ServiceToBrowser};
use cos_ipc::{Endpoint, Pipe};

use crate::config::{ServiceConfig, StorageLimits};
use crate::gates::{GateConfig, GreaseMode, PublicHashList};
use crate::service::StorageService;

/// Open handles one renderer connection may hold at once.
pub const MAX_HANDLES_PER_RENDERER: usize = 16_384;
/// Open writers plus reads one renderer connection may hold at once.
pub const MAX_DATA_PIPES_PER_RENDERER: usize = 64;
/// Document bindings one renderer may have served at once (a thread each); beyond, a binding is
/// closed at once and that document keeps using the broker.
pub const MAX_BINDINGS_PER_RENDERER: usize = 64;

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
///
/// A single-process embedder runs it on a thread of its own for `cos_browser`'s
/// `ServiceLaunch::InProcess` (there is no process to lock down):
///
/// ```
/// use cos_storage_service::process::{LockDown, serve};
///
/// let run_in_process = |control: cos_ipc::Endpoint| {
///     std::thread::spawn(move || serve(control, |_config| Ok(LockDown::default())));
/// };
/// # let _ = run_in_process;
/// ```
pub fn serve(
    control: Endpoint,
    lock_down: impl FnOnce(&ServiceProcessConfig) -> Result<LockDown, String>,
) -> Result<(), String> {
    let control = Arc::new(ControlPipe::new(control));
    let config = match control.recv() {
        Ok(BrowserToService::Configure(config)) => config,
        Ok(_) => return Err("the first control message was not Configure".into()),
        Err(error) => return Err(format!("no configuration from the browser: {error}")),
    };
    let service = match open_service(&config) {
        Ok(opened) => opened,
        Err(message) => {
            let _ = control.send(ServiceToBrowser::Failed { message: message.clone() });
            return Err(message);
        }
    };
    let (service, entries) = service;
    let locked = match lock_down(&config) {
        Ok(locked) => locked,
        Err(message) => {
            let _ = control.send(ServiceToBrowser::Failed { message: message.clone() });
            return Err(message);
        }
    };
    let sandboxed = locked.sandboxed;
    control.send(ServiceToBrowser::Ready { entries, sandboxed }).map_err(|e| e.to_string())?;
    tracing::info!(entries, sandboxed, "storage service ready");
    if let Some((open_outside_store_blocked, tcp_connect_blocked, exec_blocked)) = locked.self_test {
        let report =
            ServiceToBrowser::SandboxSelfTest { open_outside_store_blocked, tcp_connect_blocked, exec_blocked };
        control.send(report).map_err(|e| e.to_string())?;
    }
    // Every renderer connection and data pipe has stopped when this returns.
    control::control_loop(&service, &control);
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
///
/// Call it first thing in `main` of the binary the browser launches with
/// `--type=storage-service` (usually the browser's own, re-executed):
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     if let Ok(Some(bootstrap)) = cos_ipc::launch::bootstrap_from_args() {
///         if bootstrap.process_type == "storage-service" {
///             return cos_storage_service::process::run_storage_service_process(bootstrap);
///         }
///     }
///     // ... the browser itself
///     std::process::ExitCode::SUCCESS
/// }
/// ```
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
    let hugging_face = config.public_hash_list_hugging_face;
    let public_hash_list = match &config.public_hash_list_path {
        Some(path) => {
            let list = PublicHashList::load_with(path.as_ref(), hugging_face).map_err(|e| format!("{path}: {e}"))?;
            log_public_hash_list("Public Hash List loaded", &list);
            Some(list)
        }
        None => None,
    };
    let gates = GateConfig {
        public_hash_list,
        availability_threshold: config.availability_threshold,
        grease: GreaseMode::from_process_config(config.grease_for_tests),
        probe_budget: config.probe_budget,
        hugging_face_section: hugging_face,
    };
    let service_config = ServiceConfig::new(PathBuf::from(&config.profile_dir)).with_limits(limits).with_gates(gates);
    let (service, report) = StorageService::open(service_config).map_err(|e| e.to_string())?;
    Ok((service, report.entries as u64))
}

/// The operator's record of a list the service now uses: digests per section.
pub(super) fn log_public_hash_list(what: &str, list: &PublicHashList) {
    let counts = list.counts();
    tracing::info!(
        core = counts.core,
        hugging_face = counts.hugging_face,
        hugging_face_used = counts.hugging_face_used,
        manual = counts.manual,
        distinct = counts.distinct,
        version = counts.version.as_deref().unwrap_or("-"),
        commit = counts.commit.as_deref().unwrap_or("-"),
        "{what}"
    );
}

/// A thread serving one pipe, and a second handle on that pipe to end it with. The handle is
/// released as soon as the thread is done, so a finished pipe holds no descriptor.
pub(super) struct Served {
    pipe: Arc<parking_lot::Mutex<Option<Endpoint>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Served {
    /// Runs `work` on `endpoint` in a new thread named `name`; the pipe is shut down when the
    /// work returns, so the peer hears at once.
    pub(super) fn spawn(
        name: String,
        endpoint: Endpoint,
        work: impl FnOnce(Endpoint) + Send + 'static,
    ) -> std::io::Result<Self> {
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
pub(super) fn stop_all(served: Vec<Served>) {
    for entry in &served {
        if let Some(pipe) = entry.pipe.lock().as_ref() {
            pipe.shutdown();
        }
    }
    for entry in served {
        let _ = entry.thread.join();
    }
}
