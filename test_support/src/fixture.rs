//! The storage service as the tests run it: a scratch profile, the configuration every test
//! starts from, the service on threads of the test (driven over its raw control pipe) or in a
//! process behind a browser host, and the roles of a test binary that re-executes itself.
//!
//! - [`ServiceThread`] (`storage` feature): the service's own request loop on a thread, spoken to
//!   exactly as the browser speaks to it; for tests of the service's protocol.
//! - `BrowserFixture` (`browser` feature): a `cos_browser::CosHost` whose storage service is
//!   this test binary re-executed as `--type=storage-service` (sandboxed), or threads of it.
//! - [`run_child_role`] and [`run_single_test`]: the `main` of such a binary.

use std::path::Path;
use std::process::ExitCode;
use std::thread::JoinHandle;
use std::time::Duration;

use cos_common::CosError;
use cos_common::interface::{BrowserToService, RendererId, RequestId, ServiceProcessConfig, ServiceToBrowser};
use cos_ipc::{Endpoint, Pipe};

#[cfg(feature = "browser")]
use cos_browser::{CosHost, HostConfig, InProcessService, ServiceLaunch};

/// Upper bound on every wait for the service: a bound against hangs, not a timing assertion.
pub const WAIT: Duration = Duration::from_secs(10);

/// Set (to anything) to run the fixtures' service processes without their sandbox, e.g. under a
/// debugger or a kernel without Landlock.
pub const NO_SANDBOX_ENV: &str = "COS_TEST_NO_SANDBOX";

/// The configuration every fixture starts from for a service on `profile_dir`: 1 GiB per origin,
/// 4 GiB in all, no Public Hash List, GREASE that never strikes (so outcomes are deterministic),
/// and the sandbox on unless [`NO_SANDBOX_ENV`] is set.
pub fn service_config(profile_dir: &Path) -> ServiceProcessConfig {
    let mut config = ServiceProcessConfig::new(profile_dir.to_string_lossy());
    config.per_origin_bytes = 1 << 30;
    config.total_bytes = 4 << 30;
    config.grease_for_tests = Some(false);
    config.sandbox = std::env::var_os(NO_SANDBOX_ENV).is_none();
    config
}

/// The browser's side of the control pipe.
pub type ControlPipe = Pipe<BrowserToService, ServiceToBrowser>;

/// The storage service's request loop ([`serve`](cos_storage_service::process::serve)) on a
/// thread of the test, on a scratch profile, configured and ready; the test holds the browser's
/// end of the control pipe.
#[derive(Debug)]
pub struct ServiceThread {
    profile: tempfile::TempDir,
    /// The browser's end of the control pipe.
    pub control: ControlPipe,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl ServiceThread {
    /// Starts the service with [`service_config`] adjusted by `adjust` (a thread is never
    /// sandboxed), and waits for its `Ready`, which must report an empty, unsandboxed store.
    pub fn start_with(adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        let profile = tempfile::tempdir().expect("a scratch profile");
        let (browser_end, service_end) = Endpoint::pair_in_process();
        let thread = std::thread::Builder::new()
            .name("test-storage-service".into())
            .spawn(move || cos_storage_service::process::serve(service_end, cos_storage_service::process::no_lock_down))
            .expect("the service thread starts");
        let control = ControlPipe::new(browser_end);
        let mut config = service_config(profile.path());
        config.sandbox = false;
        adjust(&mut config);
        control.send(BrowserToService::Configure(config)).expect("the service is listening");
        match control.recv_timeout(WAIT) {
            Ok(ServiceToBrowser::Ready { entries: 0, sandboxed: false }) => {}
            other => panic!("expected Ready, got {other:?}"),
        }
        Self { profile, control, thread: Some(thread) }
    }

    /// The profile directory the service opened.
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// Binds a renderer connection, as the host does; returns the broker's end of it.
    pub fn bind_renderer(&self, renderer: u64) -> Endpoint {
        let (ours, theirs) = Endpoint::pair_in_process();
        let bind = BrowserToService::BindRenderer { renderer: RendererId(renderer), connection: theirs.into() };
        self.control.send(bind).expect("the service is listening");
        ours
    }

    /// The next control message from the service (bounded by [`WAIT`]); decoding checked that it
    /// carries exactly the descriptors its type declares.
    pub fn next_control_message(&self) -> ServiceToBrowser {
        self.control.recv_timeout(WAIT).expect("no control message from the service")
    }

    /// Sends a control request and returns the result of its `Done`.
    pub fn control_request(&self, request: RequestId, message: BrowserToService) -> Result<(), CosError> {
        self.control.send(message).expect("the service is listening");
        match self.next_control_message() {
            ServiceToBrowser::Done { request: answered, result } => {
                assert_eq!(answered, request);
                result
            }
            other => panic!("expected Done for {request:?}, got {other:?}"),
        }
    }

    /// Drops the browser's end of the control pipe, as a browser that went away does; the
    /// profile is handed back so that the store outlives the fixture.
    pub fn hang_up(self) -> tempfile::TempDir {
        let Self { profile, control, .. } = self;
        drop(control);
        profile
    }

    /// The thread running `serve`, to join.
    pub fn take_thread(&mut self) -> JoinHandle<Result<(), String>> {
        self.thread.take().expect("the service thread was already taken")
    }
}

/// A browser host with its storage service, on a scratch profile.
#[cfg(feature = "browser")]
pub struct BrowserFixture {
    /// The browser side: frame table, brokers, service supervision.
    pub host: CosHost,
    /// The profile the service stores into.
    pub profile: tempfile::TempDir,
}

#[cfg(feature = "browser")]
impl BrowserFixture {
    /// A host whose storage service is this test binary re-executed as
    /// `--type=storage-service` (its `main` must call [`run_child_role`]), configured with
    /// [`service_config`] adjusted by `adjust`.
    pub fn start_process(adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        let mut launch = cos_ipc::launch::LaunchOptions::new("storage-service");
        launch.program = this_program();
        Self::start(ServiceLaunch::Process(launch), adjust)
    }

    /// A host whose storage service runs on threads of this process (never sandboxed),
    /// configured with [`service_config`] adjusted by `adjust`.
    pub fn start_in_process(adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        let run: InProcessService = std::sync::Arc::new(|endpoint: Endpoint| {
            std::thread::spawn(move || {
                cos_storage_service::process::serve(endpoint, cos_storage_service::process::no_lock_down)
                    .expect("the in-process service serves");
            });
        });
        Self::start(ServiceLaunch::InProcess(run), |config| {
            config.sandbox = false;
            adjust(config);
        })
    }

    fn start(launch: ServiceLaunch, adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        let profile = tempfile::tempdir().expect("a scratch profile");
        let mut service = service_config(profile.path());
        adjust(&mut service);
        let host = CosHost::start(HostConfig { launch, service }).expect("the storage service starts");
        Self { host, profile }
    }

    /// The profile directory.
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// Swap files in the store (writers in flight, or left by a crash until recovery).
    pub fn swap_files(&self) -> usize {
        std::fs::read_dir(self.profile.path().join("cos/swap")).map_or(0, |dir| dir.count())
    }
}

#[cfg(feature = "browser")]
impl std::fmt::Debug for BrowserFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserFixture").field("profile", &self.profile.path()).finish_non_exhaustive()
    }
}

/// This test binary, to re-execute in a child role.
pub fn this_program() -> std::path::PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

/// A role a re-executed test binary can play besides the storage service: its `--type=` name
/// and its `main`, given the pipe to its launcher.
pub type ChildRole = (&'static str, fn(Endpoint) -> ExitCode);

/// If this process was launched as a child (`--type=…`), plays that role — the storage service,
/// or one of `roles` — and returns its exit code; `None` in the test driver itself.
pub fn run_child_role(roles: &[ChildRole]) -> Option<ExitCode> {
    match cos_ipc::launch::bootstrap_from_args() {
        Ok(Some(bootstrap)) => Some(match bootstrap.process_type.as_str() {
            "storage-service" => cos_storage_service::process::run_storage_service_process(bootstrap),
            other => match roles.iter().find(|(name, _)| *name == other) {
                Some((_, role)) => role(bootstrap.endpoint),
                None => {
                    eprintln!("unknown process type {other}");
                    ExitCode::FAILURE
                }
            },
        }),
        Ok(None) => None,
        Err(error) => {
            eprintln!("bootstrap failed: {error}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// `main` of a test binary holding several tests (its own harness, since it re-executes itself),
/// once [`run_child_role`] said it is the driver: honours a name filter, runs each test with
/// its panics caught, and prints libtest-like lines.
pub fn run_tests(tests: &[(&str, fn())]) -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        if std::panic::catch_unwind(test).is_ok() {
            passed += 1;
            println!("test {name} ... ok");
        } else {
            failed += 1;
            println!("test {name} ... FAILED");
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `main` of a test binary holding one test (its own harness, since it re-executes itself as
/// the service and in `roles`): plays a child role if it is one, else honours a name filter
/// and prints libtest-like lines.
pub fn run_single_test(name: &str, test: fn(), roles: &[ChildRole]) -> ExitCode {
    if let Some(code) = run_child_role(roles) {
        return code;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref().is_some_and(|f| !name.contains(f)) {
        println!("\n0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    match std::panic::catch_unwind(test) {
        Ok(()) => {
            println!("test {name} ... ok\n\n1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("test {name} ... FAILED\n\n0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

/// One top-level document in renderer 1 of an in-process host, with its
/// `navigator.crossOriginStorage`: where the renderer crate's doc examples start.
#[cfg(feature = "browser")]
pub struct DocumentFixture {
    /// The host and its scratch profile.
    pub browser: BrowserFixture,
    /// The document's frame id.
    pub frame: cos_common::interface::FrameId,
    /// The document's `navigator.crossOriginStorage`.
    pub manager: cos_renderer::CrossOriginStorageManager,
}

#[cfg(feature = "browser")]
impl DocumentFixture {
    /// A document of `url`'s origin (frame 1 of renderer 1) that has had a user activation.
    pub fn new(url: &str) -> Self {
        use cos_common::interface::{FrameId, RendererId};
        let browser = BrowserFixture::start_in_process(|_| {});
        let (frame, renderer) = (FrameId(1), RendererId(1));
        let origin = cos_common::Origin::from_url(url).expect("an http(s) URL");
        browser.host.frames().insert(frame, cos_browser::FrameInfo::top_level(renderer, origin));
        browser.host.notify_user_activation(frame);
        let (browser_end, renderer_end) = Endpoint::pair_in_process();
        browser.host.register_renderer(renderer, browser_end, || {});
        let connection = cos_renderer::RendererConnection::new(renderer_end).expect("a reply thread");
        let context = cos_renderer::ScriptContext {
            frame,
            secure_context: true,
            policy_allows: true,
            service_worker: false,
            opaque_origin: false,
        };
        let manager = cos_renderer::CrossOriginStorageManager::new(connection, context).expect("a secure context");
        Self { browser, frame, manager }
    }
}
