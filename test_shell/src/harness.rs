//! The harness realm of `test_shell run`: a privileged realm in the browser process whose
//! `shell` object (js/shell.js) opens pages in renderer processes and drives them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use cos_common::{Origin, Partition};
use cos_test_hub::{FileOptions, Hub};
use http::header::{HeaderName, HeaderValue};
use rquickjs::{Ctx, Exception, Function, Object, Value};

use crate::js::{JsError, JsHost, TESTHARNESS_JS, TestResult};
use crate::page::{OpenOptions, Page, PageError, ShellBrowser};

/// The harness realm's `shell` API.
pub const SHELL_JS: &str = include_str!("../js/shell.js");

/// How long one `frame.eval` may take.
const EVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// What a scenario needs from the outside.
pub struct ScenarioConfig {
    /// The shell binary (launched as renderers and the storage service).
    pub program: PathBuf,
    /// The browser profile (a temporary one when `None`).
    pub profile: Option<PathBuf>,
    /// A Public Hash List file for the storage service.
    pub public_hash_list: Option<PathBuf>,
    /// One renderer process per site (`true`, the default) or one for every page.
    pub process_per_site: bool,
    /// The bound of one message to or from a renderer (`frame.eval` arguments and results).
    pub message_limit: usize,
    /// How renderers reach their broker stubs.
    pub renderer_transport: crate::page::RendererTransport,
}

/// Storage-service settings a scenario asks for with `// META: service.<key>=<value>` lines at
/// its top: `per-origin-bytes`, `total-bytes`, `probe-budget`, `availability-threshold`,
/// `grease` (`on`, `off`: the deterministic test seam), `public-hash-list` (a file relative to
/// the scenario).
#[derive(Debug, Clone, Default)]
struct ServiceMeta {
    per_origin_bytes: Option<u64>,
    total_bytes: Option<u64>,
    probe_budget: Option<u32>,
    availability_threshold: Option<u32>,
    grease: Option<bool>,
    public_hash_list: Option<PathBuf>,
}

fn service_meta(source: &str, script: &Path) -> Result<ServiceMeta, PageError> {
    let mut meta = ServiceMeta::default();
    let bad = |line: &str| PageError::Renderer(format!("{}: unusable META line: {line}", script.display()));
    for line in source.lines().take_while(|l| l.starts_with("//") || l.trim().is_empty()) {
        let Some(setting) = line.strip_prefix("// META: service.") else { continue };
        let (key, value) = setting.split_once('=').ok_or_else(|| bad(line))?;
        let value = value.trim();
        match key.trim() {
            "per-origin-bytes" => meta.per_origin_bytes = Some(value.parse().map_err(|_| bad(line))?),
            "total-bytes" => meta.total_bytes = Some(value.parse().map_err(|_| bad(line))?),
            "probe-budget" => meta.probe_budget = Some(value.parse().map_err(|_| bad(line))?),
            "availability-threshold" => meta.availability_threshold = Some(value.parse().map_err(|_| bad(line))?),
            "grease" => meta.grease = Some(value == "on"),
            "public-hash-list" => meta.public_hash_list = Some(script.parent().unwrap_or(Path::new(".")).join(value)),
            _ => return Err(bad(line)),
        }
    }
    Ok(meta)
}

struct Harness {
    config: ScenarioConfig,
    meta: ServiceMeta,
    browser: Option<ShellBrowser>,
    hub: Option<Hub>,
    pages: HashMap<u64, Page>,
    /// The scenario's directory (`shell.server(...).serveDirectory` paths are relative to it).
    script_dir: PathBuf,
}

impl Harness {
    fn browser(&mut self) -> Result<&ShellBrowser, PageError> {
        if self.browser.is_none() {
            let list = self.meta.public_hash_list.clone().or_else(|| self.config.public_hash_list.clone());
            let meta = self.meta.clone();
            let browser = ShellBrowser::start_with(&self.config.program, self.config.profile.as_deref(), |service| {
                service.public_hash_list_path = list.map(|p| p.to_string_lossy().into_owned());
                if let Some(bytes) = meta.per_origin_bytes {
                    service.per_origin_bytes = bytes;
                }
                if let Some(bytes) = meta.total_bytes {
                    service.total_bytes = bytes;
                }
                if let Some(budget) = meta.probe_budget {
                    service.probe_budget = budget;
                }
                service.availability_threshold = meta.availability_threshold;
                service.grease_for_tests = meta.grease;
            })?;
            browser.set_process_per_site(self.config.process_per_site);
            browser.set_message_limit(self.config.message_limit);
            browser.set_renderer_transport(self.config.renderer_transport);
            self.browser = Some(browser);
        }
        Ok(self.browser.as_ref().expect("just started"))
    }

    fn hub(&mut self) -> Result<&Hub, std::io::Error> {
        if self.hub.is_none() {
            self.hub = Some(Hub::start()?);
        }
        Ok(self.hub.as_ref().expect("just started"))
    }
}

type Shared = Rc<RefCell<Harness>>;

fn fail(ctx: &Ctx<'_>, error: impl std::fmt::Display) -> rquickjs::Error {
    Exception::throw_message(ctx, &error.to_string())
}

fn options(headers: Vec<String>, off_the_record: bool) -> OpenOptions {
    let headers =
        headers.chunks(2).filter(|pair| pair.len() == 2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    OpenOptions { headers, off_the_record, process: None }
}

/// Runs a scenario file (after its `// META: script=` includes): our testharness and the `shell`
/// object in a harness realm.
pub fn run_scenario(config: ScenarioConfig, script: &Path, timeout: Duration) -> Result<Vec<TestResult>, PageError> {
    let source =
        std::fs::read_to_string(script).map_err(|error| PageError::Read { path: script.to_path_buf(), error })?;
    let meta = service_meta(&source, script)?;
    let shared: Shared = Rc::new(RefCell::new(Harness {
        config,
        meta,
        browser: None,
        hub: None,
        pages: HashMap::new(),
        script_dir: script.parent().unwrap_or(Path::new(".")).to_path_buf(),
    }));
    let js = JsHost::new(false).map_err(js_error)?;
    let realm = js.realm().map_err(js_error)?;
    js.set_console(Rc::new(crate::console::print));
    js.set_label(&realm, "harness");
    js.with_realm(&realm, |ctx| install(&ctx, &shared)).map_err(|e| js_error(e.into()))?;
    js.with_realm(&realm, |ctx| crate::cos_js::install_host(&ctx)).map_err(|e| js_error(e.into()))?;
    // The harness realm is the browser's own, as trusted as a secure context.
    let secure =
        "Object.defineProperty(globalThis, 'isSecureContext', { value: true, enumerable: true, configurable: true });";
    js.eval(&realm, "harness.js", secure).map_err(js_error)?;
    for (name, code) in
        [("web.js", crate::renderer::WEB_JS), ("shell.js", SHELL_JS), ("testharness.js", TESTHARNESS_JS)]
    {
        js.eval(&realm, name, code).map_err(js_error)?;
    }
    // `// META: script=` includes, relative to the scenario, then the scenario itself.
    for include in crate::page::meta_scripts(&source) {
        let included = script.parent().unwrap_or(Path::new(".")).join(include.trim_start_matches('/'));
        let code =
            std::fs::read_to_string(&included).map_err(|error| PageError::Read { path: included.clone(), error })?;
        js.eval(&realm, &included.display().to_string(), &code).map_err(js_error)?;
    }
    js.eval(&realm, &script.display().to_string(), &source).map_err(js_error)?;
    let results = js.run_tests(timeout).map_err(js_error)?;
    // Renderers and the service go down with the harness.
    drop(js);
    drop(shared);
    Ok(results)
}

fn js_error(error: JsError) -> PageError {
    PageError::Renderer(error.to_string())
}

fn install(ctx: &Ctx<'_>, shared: &Shared) -> rquickjs::Result<()> {
    let native = Object::new(ctx.clone())?;
    native.set(
        "originOf",
        Function::new(ctx.clone(), |url: String| Origin::from_url(&url).map(|o| o.to_string()).unwrap_or_default())?,
    )?;

    let h = shared.clone();
    native.set(
        "open",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, url: String, headers: Vec<String>, otr: bool, process: Option<String>| {
                let mut harness = h.borrow_mut();
                let options = OpenOptions { process, ..options(headers, otr) };
                let page = harness.browser().and_then(|b| b.open_with(&url, &options)).map_err(|e| fail(&ctx, e))?;
                let id = page.frame_id();
                harness.pages.insert(id, page);
                Ok::<_, rquickjs::Error>(id as f64)
            },
        )?,
    )?;

    let h = shared.clone();
    native.set(
        "appendIframe",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>,
                  parent: f64,
                  url: String,
                  allow: Option<String>,
                  headers: Vec<String>|
                  -> rquickjs::Result<f64> {
                let mut harness = h.borrow_mut();
                let parent = harness.pages.get(&(parent as u64)).cloned().ok_or_else(|| fail(&ctx, "no such frame"))?;
                let page = harness
                    .browser()
                    .and_then(|b| b.append_iframe(&parent, &url, allow.as_deref(), &options(headers, false)))
                    .map_err(|e| fail(&ctx, e))?;
                let id = page.frame_id();
                harness.pages.insert(id, page);
                Ok(id as f64)
            },
        )?,
    )?;

    let h = shared.clone();
    native.set(
        "children",
        // The frames `frame`'s document made from its <iframe>s: [id, url, name or ""] each.
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, frame: f64| -> rquickjs::Result<Vec<Vec<String>>> {
            let mut harness = h.borrow_mut();
            let page = harness.pages.get(&(frame as u64)).cloned().ok_or_else(|| fail(&ctx, "no such frame"))?;
            let children = harness.browser().map_err(|e| fail(&ctx, e))?.children(&page);
            Ok(children
                .into_iter()
                .map(|child| {
                    let id = child.page.frame_id();
                    harness.pages.insert(id, child.page);
                    vec![id.to_string(), child.url, child.name.unwrap_or_default()]
                })
                .collect())
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "evaluate",
        // "+<json>" on success, "-<Name: message>" on a rejection.
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, frame: f64, expression: String| -> rquickjs::Result<String> {
            let page = h.borrow().pages.get(&(frame as u64)).cloned().ok_or_else(|| fail(&ctx, "no such frame"))?;
            let outcome = page.evaluate(&expression, EVAL_TIMEOUT, |_, _, _| {}).map_err(|e| fail(&ctx, e))?;
            Ok(match outcome {
                Ok(json) => format!("+{json}"),
                Err(text) => format!("-{text}"),
            })
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "activate",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, frame: f64| -> rquickjs::Result<()> {
            let mut harness = h.borrow_mut();
            let page = harness.pages.get(&(frame as u64)).cloned().ok_or_else(|| fail(&ctx, "no such frame"))?;
            harness.browser().map_err(|e| fail(&ctx, e))?.activate(&page);
            Ok(())
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "close",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, frame: f64| -> rquickjs::Result<()> {
            let mut harness = h.borrow_mut();
            let page = harness.pages.remove(&(frame as u64)).ok_or_else(|| fail(&ctx, "no such frame"))?;
            harness.browser().and_then(|b| b.close(&page)).map_err(|e| fail(&ctx, e))
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "clearSiteData",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, origin: String| -> rquickjs::Result<()> {
            let origin = Origin::from_url(&origin).map_err(|_| fail(&ctx, "not an origin"))?;
            let mut harness = h.borrow_mut();
            let browser = harness.browser().map_err(|e| fail(&ctx, e))?;
            browser.host().clear_site_data(Partition::Regular, &origin).map_err(|e| fail(&ctx, e))
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "inspect",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>| -> rquickjs::Result<String> {
            let mut harness = h.borrow_mut();
            let browser = harness.browser().map_err(|e| fail(&ctx, e))?;
            let (entries, origins) = browser.host().inspect(Partition::Regular).map_err(|e| fail(&ctx, e))?;
            let quote = |s: &str| format!("{s:?}");
            let list = |items: Vec<String>| format!("[{}]", items.join(","));
            let entries: Vec<String> = entries
                .iter()
                .map(|e| {
                    format!(
                        "{{\"hash\":{},\"size\":{},\"storingOrigins\":{},\"origins\":{},\"global\":{},\"onPublicHashList\":{}}}",
                        quote(&e.hash.to_hex()),
                        e.size,
                        list(e.storing_origins.iter().map(|o| quote(&o.to_string())).collect()),
                        list(e.listed_origins.iter().map(|o| quote(&o.to_string())).collect()),
                        e.global,
                        e.on_public_hash_list
                    )
                })
                .collect();
            let origins: Vec<String> = origins
                .iter()
                .map(|o| format!("{{\"origin\":{},\"bytes\":{},\"entries\":{}}}", quote(&o.origin.to_string()), o.charged_bytes, o.entries))
                .collect();
            Ok(format!("{{\"entries\":{},\"origins\":{}}}", list(entries), list(origins)))
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "restartStorageService",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>| -> rquickjs::Result<()> {
            let mut harness = h.borrow_mut();
            harness.browser().and_then(|b| b.restart_storage_service()).map_err(|e| fail(&ctx, e))
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "crashRenderer",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, frame: f64| -> rquickjs::Result<()> {
            let mut harness = h.borrow_mut();
            let page = harness.pages.get(&(frame as u64)).cloned().ok_or_else(|| fail(&ctx, "no such frame"))?;
            harness.browser().map_err(|e| fail(&ctx, e))?.crash_renderer(&page);
            Ok(())
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "hubUrl",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, path: String| -> rquickjs::Result<String> {
            Ok(h.borrow_mut().hub().map_err(|e| fail(&ctx, e))?.url(&path))
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "hubAdd",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, path: String, data: Value<'_>| -> rquickjs::Result<Vec<String>> {
                let bytes = crate::cos_js::bytes_of(&data)?;
                let mut harness = h.borrow_mut();
                let file = harness.hub().map_err(|e| fail(&ctx, e))?.add(&path, bytes);
                Ok(vec![file.sha256_hex, file.size.to_string()])
            },
        )?,
    )?;

    let h = shared.clone();
    native.set(
        "networkBytes",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, origin: String| -> rquickjs::Result<f64> {
            let origin = Origin::from_url(&origin).map(|o| o.to_string()).unwrap_or(origin);
            let mut harness = h.borrow_mut();
            let from_hub = harness.hub().map_err(|e| fail(&ctx, e))?.bytes_served_to(&origin);
            let from_servers = harness.browser().map_err(|e| fail(&ctx, e))?.origin_servers().bytes_served_to(&origin);
            Ok((from_hub + from_servers) as f64)
        })?,
    )?;

    let h = shared.clone();
    native.set(
        "serverAdd",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>,
                  origin: String,
                  path: String,
                  data: Value<'_>,
                  headers: Vec<String>,
                  status: Option<u16>,
                  content_type: Option<String>|
                  -> rquickjs::Result<String> {
                let bytes = crate::cos_js::bytes_of(&data)?;
                let mut file = FileOptions::default();
                for pair in headers.chunks(2).filter(|pair| pair.len() == 2) {
                    let name = HeaderName::from_bytes(pair[0].as_bytes()).map_err(|e| fail(&ctx, e))?;
                    let value = HeaderValue::from_str(&pair[1]).map_err(|e| fail(&ctx, e))?;
                    file = file.header(name, value);
                }
                if let Some(status) = status {
                    file = file.status(status);
                }
                if let Some(content_type) = content_type {
                    file = file.content_type(HeaderValue::from_str(&content_type).map_err(|e| fail(&ctx, e))?);
                }
                let mut harness = h.borrow_mut();
                let browser = harness.browser().map_err(|e| fail(&ctx, e))?;
                browser.serve(&origin, &path, bytes, file).map_err(|e| fail(&ctx, e))
            },
        )?,
    )?;

    let h = shared.clone();
    native.set(
        "serveDirectory",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'_>, origin: String, prefix: String, dir: String| -> rquickjs::Result<()> {
                let mut harness = h.borrow_mut();
                let dir = harness.script_dir.join(dir);
                let browser = harness.browser().map_err(|e| fail(&ctx, e))?;
                browser.serve_directory(&origin, &prefix, &dir).map_err(|e| fail(&ctx, e))
            },
        )?,
    )?;

    let h = shared.clone();
    native.set(
        "serverEcho",
        Function::new(ctx.clone(), move |ctx: Ctx<'_>, origin: String| -> rquickjs::Result<()> {
            let origin = Origin::from_url(&origin).map_err(|_| fail(&ctx, "not an origin"))?;
            let mut harness = h.borrow_mut();
            let browser = harness.browser().map_err(|e| fail(&ctx, e))?;
            let hub = browser.origin_servers().hub().map_err(|e| fail(&ctx, e))?;
            hub.add_echo(Some(origin.host()), "/echo");
            Ok(())
        })?,
    )?;

    ctx.globals().set("__shellNative", native)?;
    Ok(())
}
