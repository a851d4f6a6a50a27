//! A page: a top-level document at an origin, with the COS stack behind it. Today the browser
//! side (frame table, broker stub, storage service) runs in this process over the in-process
//! transport; the page's realm talks to it exactly as a renderer would, through `cos_renderer`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use cos_browser::{CosHost, FrameInfo, HostConfig, InProcessService, ServiceLaunch};
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig};
use cos_common::{Origin, Scheme};
use cos_ipc::Endpoint;
use cos_renderer::{CrossOriginStorageManager, RendererConnection, ScriptContext};

use crate::js::{JsError, JsHost, Realm, TESTHARNESS_JS, TestResult};

/// The page realm's Web APIs, built on the natives of `cos_js`.
pub const WEB_JS: &str = include_str!("../js/web.js");

/// What went wrong running a page (operator-facing).
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The JavaScript host failed.
    #[error(transparent)]
    Js(#[from] JsError),
    /// The COS host failed to start.
    #[error("could not start the storage service: {0}")]
    Host(String),
    /// A script could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The origin is not an http(s) URL.
    #[error("not an http(s) origin: {0}")]
    Origin(String),
}

/// Whether documents of `origin` are secure contexts (SPEC §1: https, or `http://localhost`).
pub fn is_secure(origin: &Origin) -> bool {
    origin.scheme() == Scheme::Https || origin.host() == "localhost" || origin.host().ends_with(".localhost")
}

/// The browser side in this process.
pub struct Browser {
    host: CosHost,
    _profile: Option<tempfile::TempDir>,
}

impl Browser {
    /// Starts the COS host with an in-process storage service on `profile` (a temporary one
    /// when `None`).
    pub fn start(profile: Option<&Path>) -> Result<Self, PageError> {
        Self::start_with(profile, |_| {})
    }

    /// Like [`start`](Self::start), with the service configuration adjusted by `adjust`.
    pub fn start_with(
        profile: Option<&Path>,
        adjust: impl FnOnce(&mut ServiceProcessConfig),
    ) -> Result<Self, PageError> {
        let (dir, temporary) = match profile {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let temporary = tempfile::tempdir().map_err(|e| PageError::Host(e.to_string()))?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let run: InProcessService = Arc::new(|endpoint: Endpoint| {
            let _ = std::thread::Builder::new().name("cos-storage-service".into()).spawn(move || {
                if let Err(error) =
                    cos_storage_service::process::serve(endpoint, cos_storage_service::process::no_lock_down)
                {
                    eprintln!("test_shell: storage service stopped: {error}");
                }
            });
        });
        let mut service = ServiceProcessConfig::new(dir.to_string_lossy());
        service.sandbox = false;
        adjust(&mut service);
        let host = CosHost::start(HostConfig { launch: ServiceLaunch::InProcess(run), service })
            .map_err(|e| PageError::Host(e.to_string()))?;
        Ok(Self { host, _profile: temporary })
    }

    /// Opens a top-level page at `url` (its origin decides what it may see).
    pub fn open(&self, url: &str, renderer: u64, frame: u64) -> Result<Page, PageError> {
        let origin = Origin::from_url(url).map_err(|_| PageError::Origin(url.to_owned()))?;
        let mut info = FrameInfo::top_level(RendererId(renderer), origin.clone());
        info.url = Some(url.to_owned());
        self.host.frames().insert(FrameId(frame), info);
        let (browser_end, renderer_end) = Endpoint::pair_in_process();
        self.host.register_renderer(RendererId(renderer), browser_end, || {});
        let connection = RendererConnection::new_pumped(renderer_end).map_err(|e| PageError::Host(e.to_string()))?;
        let context = ScriptContext {
            frame: FrameId(frame),
            secure_context: is_secure(&origin),
            policy_allows: true,
            service_worker: false,
            opaque_origin: false,
        };
        let manager = CrossOriginStorageManager::new(connection.clone(), context);
        let js = JsHost::new(false)?;
        let pump = connection.clone();
        // Short waits: fetches finish on their own threads, and the loop must notice them.
        js.set_idle_wait(Box::new(move |wait| pump.pump_timeout(wait.min(Duration::from_millis(2))) != Some(false)));
        let realm = js.realm()?;
        let ops = js.ops();
        let index = js.realm_index(&realm);
        js.with_realm(&realm, |ctx| -> Result<(), JsError> {
            crate::cos_js::install_host(&ctx)?;
            crate::fetch::install(&ctx, origin.to_string(), ops.clone(), index)?;
            if let Some(manager) = manager {
                crate::cos_js::install_cos(&ctx, manager, ops, index)?;
            }
            Ok(())
        })?;
        js.eval(&realm, "web.js", WEB_JS)?;
        let location = format!("globalThis.location = {{ href: {url:?}, origin: {:?} }};", origin.to_string());
        js.eval(&realm, "location.js", &location)?;
        let settled = Rc::new(RefCell::new(None));
        let (ok, err) = (settled.clone(), settled.clone());
        js.with_realm(&realm, |ctx| -> rquickjs::Result<()> {
            let resolve = rquickjs::Function::new(ctx.clone(), move |json: String| *ok.borrow_mut() = Some(Ok(json)))?;
            let reject = rquickjs::Function::new(ctx.clone(), move |text: String| *err.borrow_mut() = Some(Err(text)))?;
            ctx.globals().set("__shell_settled", resolve)?;
            ctx.globals().set("__shell_failed", reject)?;
            Ok(())
        })
        .map_err(JsError::from)?;
        Ok(Page { js, realm, _connection: connection, settled })
    }
}

/// A page and its realm.
pub struct Page {
    js: JsHost,
    realm: Realm,
    _connection: Arc<RendererConnection>,
    settled: Rc<RefCell<Option<Result<String, String>>>>,
}

impl Page {
    /// Runs a script in the page.
    pub fn eval(&self, file: &str, source: &str) -> Result<(), PageError> {
        Ok(self.js.eval(&self.realm, file, source)?)
    }

    /// Evaluates `expression` (which may be a promise), runs the page until it settles, and
    /// returns its value as JSON; a rejection becomes `Err(String(reason))`.
    pub fn evaluate(&self, expression: &str, timeout: Duration) -> Result<Result<String, String>, PageError> {
        *self.settled.borrow_mut() = None;
        let script = format!(
            "Promise.resolve().then(() => ({expression})).then((v) => __shell_settled(JSON.stringify(v === undefined ? null : v)), (e) => __shell_failed(String(e && e.stack ? e + '\\n' + e.stack : e)));"
        );
        self.eval("evaluate.js", &script)?;
        let settled = self.settled.clone();
        self.js.run_until(timeout, move || settled.borrow().is_some())?;
        Ok(self.settled.borrow_mut().take().expect("settled when the loop stopped"))
    }

    /// Installs a native function under `name` in the page's realm.
    pub fn define_function(&self, name: &str, f: impl Fn(String, f64, f64) + 'static) -> Result<(), PageError> {
        self.js
            .with_realm(&self.realm, |ctx| -> rquickjs::Result<()> {
                ctx.globals().set(name, rquickjs::Function::new(ctx.clone(), f)?)
            })
            .map_err(JsError::from)?;
        Ok(())
    }

    /// Runs a web-platform-tests style test file: the harness, its `// META: script=` includes
    /// (relative to the file), then the file; returns the results.
    pub fn run_test_file(&self, path: &Path, timeout: Duration) -> Result<Vec<TestResult>, PageError> {
        let source = read(path)?;
        self.eval("testharness.js", TESTHARNESS_JS)?;
        for include in meta_scripts(&source) {
            let included = path.parent().unwrap_or(Path::new(".")).join(include.trim_start_matches('/'));
            let text = read(&included)?;
            self.eval(&included.display().to_string(), &text)?;
        }
        self.eval(&path.display().to_string(), &source)?;
        Ok(self.js.run_tests(timeout)?)
    }
}

fn read(path: &Path) -> Result<String, PageError> {
    std::fs::read_to_string(path).map_err(|error| PageError::Read { path: path.to_path_buf(), error })
}

/// The `// META: script=...` lines at the top of a test file.
fn meta_scripts(source: &str) -> Vec<String> {
    source
        .lines()
        .take_while(|line| line.starts_with("//") || line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("// META: script="))
        .map(|s| s.trim().to_owned())
        .collect()
}
