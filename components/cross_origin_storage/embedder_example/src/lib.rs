//! Cross-Origin Storage embedded the way Servo embeds its content processes (EMBEDDING.md,
//! "Servo"): one binary plays three processes.
//!
//! - **The browser** (no arguments: [`run_browser`]) owns the [`CosHost`]: it launches the
//!   storage service as a sandboxed child (`--type=storage-service`, as today), and each content
//!   process as Servo's constellation does — the same binary re-executed with
//!   `--content-process <token>`, bootstrapped over an [`IpcOneShotServer`] whose token is the
//!   only thing on the command line. It registers each content process's pipelines in the frame
//!   table (pipeline id → origin) and its COS link, an `ipc-channel` pair, with
//!   [`CosHost::register_renderer_ipc_channel`].
//! - **A content process** ([`child_role`] → `run_content_process`) receives its half of the
//!   link and the pipeline it hosts over `ipc-channel`, and calls `navigator.crossOriginStorage`
//!   through `cos_renderer` as a DOM binding would. It never names an origin: the browser knows
//!   who the pipeline is.
//! - **The storage service** ([`child_role`] → the service's own entry point).
//!
//! The story: a page of `https://app.example` stores a file and reads it back; a page of
//! `https://news.example`, in its own content process, asks for the same hash and gets
//! `NotFoundError` (the entry belongs to `app.example`'s site, SPEC §5); a compromised
//! `news.example` content process that calls in the name of `app.example`'s pipeline is
//! terminated as a bad message.

use std::error::Error;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cos_browser::{CosHost, FrameInfo, HostConfig, ServiceLaunch};
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig};
use cos_common::{CosError, Origin};
use cos_ipc::ipc_channel::RendererLink;
use cos_ipc::ipc_channel::ipc_channel::ipc::{self, IpcOneShotServer, IpcSender};
use cos_ipc::launch::LaunchOptions;
use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, RendererConnection, ScriptContext, block_on};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The argument that makes the binary a content process, as in Servo.
pub const CONTENT_PROCESS_ARG: &str = "--content-process";

/// The result of a run, or why it failed.
pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Servo's `PipelineId` (`components/shared/base/id.rs`) is a pipeline namespace and an index;
/// Servo packs it into a `u64` the same way (`From<PipelineId> for u64`), which is the frame id
/// the browser registers. A stand-in, so that this example does not depend on Servo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineId {
    /// The namespace (one per script thread; 0 and 1 are the embedder's and constellation's).
    pub namespace_id: u32,
    /// The index within the namespace (never 0 in Servo).
    pub index: u32,
}

impl PipelineId {
    /// The frame id COS knows this pipeline's document by.
    pub fn frame_id(self) -> FrameId {
        FrameId((u64::from(self.namespace_id) << 32) + u64::from(self.index))
    }
}

impl std::fmt::Display for PipelineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipeline({},{})", self.namespace_id, self.index)
    }
}

/// What a content process's page does (the browser's script for this example).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Task {
    /// `getFileHandle(hash, {create: true})` → write → `close()`, then read it back.
    StoreAndRead {
        /// The hex SHA-256 the page knows (from a pointer file, say).
        hash: String,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// `getFileHandle(hash)` → `getFile()` → `arrayBuffer()`.
    Read {
        /// The hex SHA-256.
        hash: String,
    },
    /// What a compromised content process might try: [`Read`](Self::Read) in the name of
    /// another process's document.
    ReadAs {
        /// The hex SHA-256.
        hash: String,
        /// The frame it claims to be.
        frame: FrameId,
    },
}

/// The content process's bootstrap, sent over the one-shot server's channel: what Servo's
/// `UnprivilegedContent` would carry, reduced to COS.
#[derive(Debug, Serialize, Deserialize)]
struct ContentBootstrap {
    /// The content process's half of its COS link.
    link: RendererLink,
    /// The pipeline whose document calls COS.
    frame: FrameId,
    /// What the page does.
    task: Task,
    /// Where the content process reports what its page saw, one line each.
    report: IpcSender<String>,
}

/// In a child process, plays its role and returns its exit code; `None` in the browser.
pub fn child_role() -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(CONTENT_PROCESS_ARG) {
        let token = args.next()?;
        return Some(match run_content_process(token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("content process: {error}");
                ExitCode::FAILURE
            }
        });
    }
    match cos_ipc::launch::bootstrap_from_args() {
        Ok(Some(bootstrap)) if bootstrap.process_type == "storage-service" => {
            Some(cos_storage_service::process::run_storage_service_process(bootstrap))
        }
        Ok(Some(bootstrap)) => {
            eprintln!("unknown process type {}", bootstrap.process_type);
            Some(ExitCode::FAILURE)
        }
        Ok(None) => None,
        Err(error) => {
            eprintln!("bootstrap failed: {error}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// The hex SHA-256 of `bytes`, as a page gets it from a pointer file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The browser: starts the sandboxed storage service on `profile`, then two content processes
/// over `ipc-channel`, and tells `out` what happened, line by line.
pub fn run_browser(profile: &Path, out: &mut dyn FnMut(String)) -> Result<()> {
    // The service is this binary re-executed as `--type=storage-service`; it locks itself down
    // (seccomp, Landlock) before it serves anything.
    let launch = ServiceLaunch::Process(LaunchOptions::new("storage-service"));
    let service = ServiceProcessConfig::new(profile.to_string_lossy());
    let host = CosHost::start(HostConfig { launch, service })?;
    let pid = host.service_pid().map_or_else(|| "?".to_owned(), |pid| pid.to_string());
    out(format!(
        "browser: storage service started in its own process (pid {pid}, --type=storage-service; it sandboxes itself before serving)"
    ));

    let bytes = b"tiny model weights".to_vec();
    let hash = sha256_hex(&bytes);
    let app = Page {
        renderer: RendererId(1),
        pipeline: PipelineId { namespace_id: 2, index: 1 },
        url: "https://app.example/",
    };
    expect_success(run_page(&host, &app, Task::StoreAndRead { hash: hash.clone(), bytes }, out)?)?;
    let news = Page {
        renderer: RendererId(2),
        pipeline: PipelineId { namespace_id: 3, index: 1 },
        url: "https://news.example/",
    };
    expect_success(run_page(&host, &news, Task::Read { hash: hash.clone() }, out)?)?;
    out("browser: news.example is another site, so app.example's same-site entry stays hidden from it (SPEC §5)"
        .to_owned());

    // A compromised content process of news.example names app.example's pipeline to read as it:
    // that frame is not one of its own, so the broker reports a bad message and the browser
    // kills the process before anything reaches the storage service.
    let liar = Page {
        renderer: RendererId(3),
        pipeline: PipelineId { namespace_id: 4, index: 1 },
        url: "https://news.example/",
    };
    let status = run_page(&host, &liar, Task::ReadAs { hash, frame: app.pipeline.frame_id() }, out)?;
    if status.success() {
        return Err("a content process naming another process's pipeline was not stopped".into());
    }
    out(format!(
        "browser: content process 3 named {}, which is not its own: bad message, terminated ({status})",
        app.pipeline
    ));
    // The pipelines close (a dead process's frames also leave the table with its link).
    for page in [&app, &news, &liar] {
        host.frames().remove(page.pipeline.frame_id());
    }
    out("browser: done; shutting the storage service down".to_owned());
    Ok(())
}

fn expect_success(status: std::process::ExitStatus) -> Result<()> {
    if status.success() { Ok(()) } else { Err(format!("a content process failed: {status}").into()) }
}

/// How long a content process may take to connect to its one-shot server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for `child`'s first message on `server`. `IpcOneShotServer::accept` blocks until a
/// client connects, so it runs on a thread of its own: a content process that exits (or hangs)
/// before connecting fails the launch instead of blocking the browser forever (the abandoned
/// thread ends with the process).
fn accept_content_process(
    server: IpcOneShotServer<IpcSender<ContentBootstrap>>,
    child: &Mutex<std::process::Child>,
) -> Result<IpcSender<ContentBootstrap>> {
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("content-process-accept".into()).spawn(move || {
        let _ = accepted_tx.send(server.accept().map(|(_, bootstrap)| bootstrap));
    })?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match accepted.recv_timeout(Duration::from_millis(50)) {
            Ok(accepted) => return Ok(accepted?),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the content process's bootstrap failed".into());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let mut child = child.lock().map_err(|_| "the content process's record is poisoned")?;
        if let Some(status) = child.try_wait()? {
            return Err(format!("the content process exited before connecting: {status}").into());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(format!("the content process did not connect within {CONNECT_TIMEOUT:?}").into());
        }
    }
}

/// One content process hosting one pipeline.
struct Page {
    renderer: RendererId,
    pipeline: PipelineId,
    url: &'static str,
}

/// Launches `page`'s content process, registers its pipeline and COS link, runs `task` in it and
/// relays its report; returns how the process ended.
fn run_page(host: &CosHost, page: &Page, task: Task, out: &mut dyn FnMut(String)) -> Result<std::process::ExitStatus> {
    // Servo's constellation: a one-shot server, the binary re-executed with its token, and the
    // child's first message a sender for its bootstrap.
    let (server, token) = IpcOneShotServer::<IpcSender<ContentBootstrap>>::new()?;
    let child = Command::new(std::env::current_exe()?).arg(CONTENT_PROCESS_ARG).arg(&token).spawn()?;
    let pid = child.id();
    let child = Arc::new(Mutex::new(child));
    let bootstrap = accept_content_process(server, &child)?;

    // The frame table first: a request naming a frame the table does not hold for this content
    // process is a bad message.
    let origin = Origin::from_url(page.url)?;
    let frame = page.pipeline.frame_id();
    host.frames().insert(frame, FrameInfo::top_level(page.renderer, origin.clone()));
    let (renderer_half, browser_half) = cos_ipc::ipc_channel::link()?;
    let killer = child.clone();
    // A content process that breaks the COS rules is killed, as Servo kills a misbehaving one.
    host.register_renderer_ipc_channel(page.renderer, browser_half, move || {
        if let Ok(mut child) = killer.lock() {
            let _ = child.kill();
        }
    })?;
    out(format!(
        "browser: content process {} (pid {pid}) hosts {} = {origin}; COS link over ipc-channel",
        page.renderer.0, page.pipeline
    ));

    let (report, reports) = ipc::channel::<String>()?;
    bootstrap.send(ContentBootstrap { link: renderer_half, frame, task, report })?;
    // The channel closes when the content process exits.
    while let Ok(line) = reports.recv() {
        out(format!("content[{}]: {line}", page.pipeline));
    }
    // Not `wait()` under the lock: the broker's `terminate` may need it to kill the process.
    let status = loop {
        if let Some(status) = child.lock().map_err(|_| "a content process handle was poisoned")?.try_wait()? {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    Ok(status)
}

/// The content process: Servo's `run_content_process(token)`, reduced to a page calling COS.
fn run_content_process(token: String) -> Result<()> {
    let (sender, receiver) = ipc::channel::<ContentBootstrap>()?;
    IpcSender::<IpcSender<ContentBootstrap>>::connect(token)?.send(sender)?;
    let ContentBootstrap { link, frame, task, report } = receiver.recv()?;
    // Only a compromised process would call in the name of a frame it was not given.
    let frame = match &task {
        Task::ReadAs { frame: claimed, .. } => *claimed,
        _ => frame,
    };

    // What the script thread does once per global: the connection, and the manager that is
    // `navigator.crossOriginStorage`.
    let connection = RendererConnection::new_ipc_channel(link)?;
    let context =
        ScriptContext { frame, secure_context: true, policy_allows: true, service_worker: false, opaque_origin: false };
    let manager = CrossOriginStorageManager::new(connection, context).ok_or("not a secure context")?;
    let say = |line: String| {
        let _ = report.send(line);
    };
    match task {
        Task::StoreAndRead { hash, bytes } => {
            let dict = CosHashDict::sha256(hash.clone());
            let create = CosOptions { create: true, ..CosOptions::default() };
            let stored: std::result::Result<_, CosError> = block_on(async {
                let mut writer = manager.get_file_handle(&dict, &create).await?.create_writable(false).await?;
                writer.write(&bytes)?;
                writer.close()
            });
            stored?;
            say(format!(
                "getFileHandle(sha256 {}…, {{create: true}}) → write {} bytes → close(): verified and stored",
                &hash[..12],
                bytes.len()
            ));
            let read = block_on(async {
                manager.get_file_handle(&dict, &CosOptions::default()).await?.get_file().await?.read_all()
            })?;
            say(format!("getFileHandle(sha256 {}…) → getFile(): {:?}", &hash[..12], String::from_utf8_lossy(&read)));
        }
        Task::Read { hash } | Task::ReadAs { hash, .. } => {
            let dict = CosHashDict::sha256(hash.clone());
            let outcome = block_on(async {
                manager.get_file_handle(&dict, &CosOptions::default()).await?.get_file().await?.read_all()
            });
            match outcome {
                Ok(read) => say(format!("getFileHandle(sha256 {}…) → getFile(): {} bytes", &hash[..12], read.len())),
                Err(error) => say(format!("getFileHandle(sha256 {}…) → {}", &hash[..12], error.name())),
            }
        }
    }
    Ok(())
}
