//! A renderer process of the shell (`--type=renderer`): frames are QuickJS realms with the Web
//! APIs of `js/web.js`; COS calls go over this process's COS pipe to its broker stub in the
//! browser process, as in a browser.

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use cos_common::Origin;
use cos_common::interface::FrameId;
use cos_ipc::Endpoint;
use cos_ipc::launch::ChildBootstrap;
use cos_renderer::{CrossOriginStorageManager, RendererConnection, ScriptContext};

use crate::channel::{Channel, ChannelError};
use crate::js::{JsError, JsHost, Realm, TESTHARNESS_JS};
use crate::protocol::{CosLink, RendererCommand, RendererReply};

/// The page realm's Web APIs, built on the natives of `cos_js`.
pub const WEB_JS: &str = include_str!("../js/web.js");

type Control = Rc<Channel<RendererReply, RendererCommand>>;

struct Frame {
    realm: Realm,
    settled: Rc<RefCell<Option<Result<String, String>>>>,
}

/// The renderer's connection to its broker over the link the browser chose.
fn connect_to_broker(cos: CosLink) -> std::io::Result<Arc<RendererConnection>> {
    match cos {
        CosLink::CosIpc(pipe) => RendererConnection::new_pumped(pipe.into_endpoint()),
        CosLink::IpcChannel { server } => {
            use cos_ipc::ipc_channel::RendererLink;
            use cos_ipc::ipc_channel::ipc_channel::ipc::{self, IpcSender};
            let bootstrap = IpcSender::<IpcSender<RendererLink>>::connect(server)?;
            let (sender, receiver) = ipc::channel::<RendererLink>()?;
            bootstrap.send(sender).map_err(std::io::Error::other)?;
            let link = receiver.recv().map_err(|error| std::io::Error::other(error.to_string()))?;
            RendererConnection::new_pumped_ipc_channel(link)
        }
    }
}

/// Entry point of a `--type=renderer` process.
pub fn run_renderer_process(bootstrap: ChildBootstrap) -> ExitCode {
    let mut control = Channel::new(bootstrap.endpoint);
    let (connection, network) = match control.recv() {
        Ok(RendererCommand::Init { message_limit, cos, network }) => {
            control.set_limit(usize::try_from(message_limit).unwrap_or(usize::MAX));
            let network = Arc::new(network.into_endpoint());
            match connect_to_broker(cos) {
                Ok(connection) => (connection, network),
                Err(error) => {
                    tracing::error!(%error, "cannot connect to the broker");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => {
            tracing::error!("expected Init with the COS and network pipes");
            return ExitCode::FAILURE;
        }
    };
    let control: Control = Rc::new(control);
    let js = match JsHost::new(false) {
        Ok(js) => js,
        Err(error) => {
            tracing::error!(%error, "cannot start the JavaScript engine");
            return ExitCode::FAILURE;
        }
    };
    let console = control.clone();
    js.set_console(Rc::new(move |level, origin: &str, text: &str| {
        let line = RendererReply::Console { level, origin: origin.to_owned(), text: text.to_owned() };
        if let Err(ChannelError::TooLarge { len, limit }) = console.send(line) {
            let text = format!("(a console line of {len} bytes was dropped: the message limit is {limit} bytes)");
            let _ = console.send(RendererReply::Console { level, origin: origin.to_owned(), text });
        }
    }));
    let pump = connection.clone();
    // Short waits: fetches finish on their own threads, and the loop must notice them.
    js.set_idle_wait(Box::new(move |wait| pump.pump_timeout(wait.min(Duration::from_millis(2))) != Some(false)));
    let modules = crate::document::modules::install(&js);
    let mut frames: HashMap<u64, Frame> = HashMap::new();
    let links = FrameLinks::default();
    while let Ok(command) = control.recv() {
        let reply = match command {
            RendererCommand::Init { .. } => RendererReply::Failed("already initialised".into()),
            RendererCommand::CreateFrame {
                frame,
                url,
                secure,
                policy_allows,
                parent,
                service_worker_frame,
                document,
            } => {
                let context = ScriptContext {
                    frame: FrameId(frame),
                    secure_context: secure,
                    policy_allows,
                    service_worker: false,
                    opaque_origin: false,
                };
                let frame_ids = (context, service_worker_frame);
                let created = create_frame(&js, (&connection, &network), &control, &links, frame_ids, &url, parent)
                    .and_then(|created| {
                        let context = crate::document::DocumentContext {
                            modules: &modules,
                            frame,
                            network: network.clone(),
                            url: &url,
                        };
                        let html = document.as_deref().unwrap_or("");
                        let iframes = crate::document::install(&js, &created.realm, &context, html)?;
                        Ok((created, iframes))
                    });
                match created {
                    Ok((created, iframes)) => {
                        tracing::debug!(frame, url, ?parent, "frame created");
                        frames.insert(frame, created);
                        RendererReply::Iframes(iframes)
                    }
                    Err(error) => RendererReply::Failed(error.to_string()),
                }
            }
            RendererCommand::RunDocument { frame, children, timeout_secs } => match frames.get(&frame) {
                None => RendererReply::Failed(format!("no frame {frame}")),
                Some(target) => {
                    let expression = crate::document::run_expression(&children);
                    match evaluate(&js, target, &expression, Duration::from_secs(timeout_secs)) {
                        Ok(Ok(_)) => RendererReply::Done,
                        Ok(Err(text)) => RendererReply::Failed(format!("the document did not load: {text}")),
                        Err(error) => RendererReply::Failed(format!("the document did not load: {error}")),
                    }
                }
            },
            RendererCommand::CloseFrame { frame } => {
                frames.remove(&frame);
                links.borrow_mut().remove(&frame);
                RendererReply::Done
            }
            RendererCommand::Eval { frame, scripts } => match frames.get(&frame) {
                None => RendererReply::Failed(format!("no frame {frame}")),
                Some(target) => match run_scripts(&js, &target.realm, &scripts) {
                    Ok(()) => RendererReply::Done,
                    Err(error) => RendererReply::Failed(error.to_string()),
                },
            },
            RendererCommand::Evaluate { frame, expression, timeout_secs } => match frames.get(&frame) {
                None => RendererReply::Failed(format!("no frame {frame}")),
                Some(target) => match evaluate(&js, target, &expression, Duration::from_secs(timeout_secs)) {
                    Ok(outcome) => RendererReply::Evaluated(outcome),
                    Err(error) => RendererReply::Failed(error.to_string()),
                },
            },
            RendererCommand::AwaitTests { frame, timeout_secs } => match frames.get(&frame) {
                None => RendererReply::Failed(format!("no frame {frame}")),
                Some(_) => match js.run_tests(Duration::from_secs(timeout_secs)) {
                    Ok(results) => {
                        RendererReply::TestResults(results.into_iter().map(|r| (r.name, r.status, r.message)).collect())
                    }
                    Err(error) => RendererReply::Failed(error.to_string()),
                },
            },
            RendererCommand::RunTests { frame, scripts, timeout_secs } => match frames.get(&frame) {
                None => RendererReply::Failed(format!("no frame {frame}")),
                Some(target) => {
                    let outcome = js.eval(&target.realm, "testharness.js", TESTHARNESS_JS).and_then(|()| {
                        run_scripts(&js, &target.realm, &scripts)?;
                        js.run_tests(Duration::from_secs(timeout_secs))
                    });
                    match outcome {
                        Ok(results) => RendererReply::TestResults(
                            results.into_iter().map(|r| (r.name, r.status, r.message)).collect(),
                        ),
                        Err(error) => RendererReply::Failed(error.to_string()),
                    }
                }
            },
        };
        let sent = match control.send(reply) {
            // The command still gets an answer, so the browser is not left waiting.
            Err(error @ ChannelError::TooLarge { .. }) => {
                control.send(RendererReply::Failed(format!("the answer is too large: {error}")))
            }
            other => other,
        };
        if sent.is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn run_scripts(js: &JsHost, realm: &Realm, scripts: &[(String, String)]) -> Result<(), JsError> {
    for (name, source) in scripts {
        js.eval(realm, name, source)?;
    }
    Ok(())
}

/// What a frame's realm needs to reach another frame of this renderer by `postMessage`.
struct FrameLink {
    realm: usize,
    origin: String,
    table: crate::cos_js::Table,
    children: Vec<u64>,
}

/// This renderer's frames by browser frame id.
type FrameLinks = Rc<RefCell<HashMap<u64, FrameLink>>>;

fn create_frame(
    js: &JsHost,
    (connection, network): (&Arc<RendererConnection>, &Arc<Endpoint>),
    control: &Control,
    links: &FrameLinks,
    (context, service_worker_frame): (ScriptContext, u64),
    url: &str,
    parent: Option<u64>,
) -> Result<Frame, JsError> {
    let frame = context.frame.0;
    let origin = Origin::from_url(url)
        .map_err(|_| JsError::Uncaught { file: "frame".into(), message: format!("not an http(s) URL: {url}") })?;
    let group = Rc::new(RealmGroup {
        manager: CrossOriginStorageManager::new(connection.clone(), context),
        connection: connection.clone(),
        network: network.clone(),
        context,
        service_worker_frame,
        table: Rc::default(),
        origin: origin.to_string(),
        url: url.to_owned(),
        workers: RefCell::default(),
        next_worker: RefCell::new(0),
    });
    let realm = js.realm()?;
    js.set_label(&realm, group.origin.clone());
    let settled = Rc::new(RefCell::new(None));
    install_realm(js, &realm, &group, None)?;
    install_frame_messaging(js, &realm, links, frame, parent)?;
    links.borrow_mut().insert(
        frame,
        FrameLink {
            realm: js.realm_index(&realm),
            origin: group.origin.clone(),
            table: group.table.clone(),
            children: Vec::new(),
        },
    );
    if let Some(parent) = parent
        && let Some(link) = links.borrow_mut().get_mut(&parent)
    {
        link.children.push(frame);
    }
    let (ok, err, progress) = (settled.clone(), settled.clone(), control.clone());
    js.with_realm(&realm, |ctx| -> Result<(), JsError> {
        let globals = ctx.globals();
        globals.set(
            "__shell_settled",
            rquickjs::Function::new(ctx.clone(), move |json: String| *ok.borrow_mut() = Some(Ok(json)))?,
        )?;
        globals.set(
            "__shell_failed",
            rquickjs::Function::new(ctx.clone(), move |text: String| *err.borrow_mut() = Some(Err(text)))?,
        )?;
        globals.set(
            "__demo_progress",
            rquickjs::Function::new(ctx.clone(), move |name: String, done: f64, total: f64| {
                let _ = progress.send(RendererReply::Progress(name, done, total));
            })?,
        )?;
        Ok(())
    })?;
    js.eval(&realm, "web.js", WEB_JS)?;
    Ok(Frame { realm, settled })
}

/// `window.parent`, `window.frames` and `postMessage` between the frames of this renderer (same
/// site, or every frame with `--process-per-site=false`). A message is delivered as
/// `__deliverMessage(json, -sender)`; the receiver learns the sender's origin from here, never
/// from the sender's script, and adopts a posted handle only if that origin is its own.
fn install_frame_messaging(
    js: &JsHost,
    realm: &Realm,
    links: &FrameLinks,
    frame: u64,
    parent: Option<u64>,
) -> Result<(), JsError> {
    let ops = js.ops();
    js.with_realm(realm, |ctx| -> Result<(), JsError> {
        let native = rquickjs::Object::new(ctx.clone())?;
        native.set("self", frame as f64)?;
        native.set("parent", parent.map(|p| p as f64))?;
        let l = links.clone();
        native.set(
            "children",
            rquickjs::Function::new(ctx.clone(), move || -> Vec<f64> {
                l.borrow().get(&frame).map(|link| link.children.iter().map(|&c| c as f64).collect()).unwrap_or_default()
            })?,
        )?;
        let l = links.clone();
        native.set(
            "originOf",
            rquickjs::Function::new(ctx.clone(), move |id: f64| -> Option<String> {
                l.borrow().get(&(id as u64)).map(|link| link.origin.clone())
            })?,
        )?;
        let (l, o) = (links.clone(), ops.clone());
        native.set(
            "post",
            // HTML's postMessage: a target origin that does not match drops the message silently.
            rquickjs::Function::new(ctx.clone(), move |target: f64, json: String, target_origin: String| -> bool {
                let links = l.borrow();
                let Some(link) = links.get(&(target as u64)) else { return false };
                if target_origin == "*" || target_origin == link.origin {
                    o.post(link.realm, json, -(frame as f64));
                }
                true
            })?,
        )?;
        let l = links.clone();
        native.set(
            "adopt",
            // [its id here, its name], or nothing.
            rquickjs::Function::new(ctx.clone(), move |sender: f64, id: u32| -> Option<Vec<String>> {
                let links = l.borrow();
                let (from, into) = (links.get(&(sender as u64))?, links.get(&frame)?);
                if from.origin != into.origin {
                    return None;
                }
                crate::cos_js::adopt_handle(&from.table, id, &into.table, FrameId(frame))
                    .map(|(id, name)| vec![id.to_string(), name])
            })?,
        )?;
        ctx.globals().set("__frames", native)?;
        Ok(())
    })
}

/// A page and its dedicated workers: one COS view (the page's frame), one object table.
struct RealmGroup {
    manager: Option<CrossOriginStorageManager>,
    /// For a service worker's own view (`ScriptContext::service_worker`).
    connection: Arc<RendererConnection>,
    /// This renderer's network pipe (`fetch`).
    network: Arc<Endpoint>,
    context: ScriptContext,
    /// The browser's frame id for this page's service workers.
    service_worker_frame: u64,
    table: crate::cos_js::Table,
    origin: String,
    url: String,
    /// Worker id → its realm's index.
    workers: RefCell<HashMap<u32, usize>>,
    next_worker: RefCell<u32>,
}

/// Installs a realm's natives. `parent`: for a worker, its id and the page realm's index.
fn install_realm(
    js: &JsHost,
    realm: &Realm,
    group: &Rc<RealmGroup>,
    parent: Option<(u32, usize)>,
) -> Result<(), JsError> {
    let (ops, index) = (js.ops(), js.realm_index(realm));
    js.with_realm(realm, |ctx| -> Result<(), JsError> {
        crate::cos_js::install_host(&ctx)?;
        crate::fetch::install(&ctx, group.network.clone(), group.context.frame.0, ops.clone(), index)?;
        if let Some(manager) = &group.manager {
            crate::cos_js::install_cos(&ctx, manager.clone(), ops.clone(), index, group.table.clone())?;
        }
        let worker = rquickjs::Object::new(ctx.clone())?;
        match parent {
            Some((id, page)) => {
                let ops = ops.clone();
                worker.set(
                    "postToParent",
                    rquickjs::Function::new(ctx.clone(), move |json: String| ops.post(page, json, f64::from(id)))?,
                )?;
                ctx.globals().set("__workerScope", true)?;
                ctx.globals().set("__serviceWorkerScope", group.context.service_worker)?;
            }
            None => {
                let (g, o) = (group.clone(), ops.clone());
                worker.set(
                    "create",
                    // `service_worker`: a service worker registered by the page (its own COS
                    // view, which refuses every call) rather than a dedicated worker.
                    rquickjs::Function::new(ctx.clone(), move |source: String, service_worker: bool| -> u32 {
                        let id = {
                            let mut next = g.next_worker.borrow_mut();
                            *next += 1;
                            *next
                        };
                        let group = g.clone();
                        o.host_task(Box::new(move |js: &JsHost| {
                            if let Err(error) = start_worker(js, &group, id, index, &source, service_worker) {
                                tracing::error!(worker = id, %error, "a worker failed to start");
                            }
                        }));
                        id
                    })?,
                )?;
                let (g, o) = (group.clone(), ops.clone());
                worker.set(
                    "post",
                    rquickjs::Function::new(ctx.clone(), move |id: u32, json: String| {
                        // A worker still starting gets the message after its script ran: both
                        // are queued in order.
                        let group = g.clone();
                        let ops = o.clone();
                        o.host_task(Box::new(move |_: &JsHost| {
                            if let Some(realm) = group.workers.borrow().get(&id) {
                                ops.post(*realm, json, 0.0);
                            }
                        }));
                    })?,
                )?;
                let g = group.clone();
                worker.set(
                    "terminate",
                    rquickjs::Function::new(ctx.clone(), move |id: u32| {
                        g.workers.borrow_mut().remove(&id);
                    })?,
                )?;
            }
        }
        ctx.globals().set("__worker", worker)?;
        Ok(())
    })?;
    let location = format!(
        "globalThis.location = {{ href: {:?}, origin: {:?} }};\n\
         Object.defineProperty(globalThis, 'isSecureContext', {{ value: {}, enumerable: true, configurable: true }});",
        group.url, group.origin, group.context.secure_context
    );
    js.eval(realm, "location.js", &location)
}

/// Creates a worker's realm and runs its script: a dedicated worker shares its page's COS view
/// and object table; a service worker gets its own, marked as a service worker.
fn start_worker(
    js: &JsHost,
    group: &Rc<RealmGroup>,
    id: u32,
    page: usize,
    source: &str,
    service_worker: bool,
) -> Result<(), JsError> {
    let realm = js.realm()?;
    js.set_label(&realm, group.origin.clone());
    let own = if service_worker {
        // Its own frame, which the browser registered as a service worker's.
        let frame = FrameId(group.service_worker_frame);
        let context = ScriptContext { service_worker: true, frame, ..group.context };
        Rc::new(RealmGroup {
            manager: CrossOriginStorageManager::new(group.connection.clone(), context),
            connection: group.connection.clone(),
            network: group.network.clone(),
            context,
            service_worker_frame: group.service_worker_frame,
            table: Rc::default(),
            origin: group.origin.clone(),
            url: group.url.clone(),
            workers: RefCell::default(),
            next_worker: RefCell::new(0),
        })
    } else {
        group.clone()
    };
    install_realm(js, &realm, &own, Some((id, page)))?;
    js.eval(&realm, "web.js", WEB_JS)?;
    group.workers.borrow_mut().insert(id, js.realm_index(&realm));
    // The loop state keeps the realm's context alive after this handle goes.
    js.eval(&realm, &format!("worker-{id}.js"), source)
}

fn evaluate(
    js: &JsHost,
    frame: &Frame,
    expression: &str,
    timeout: Duration,
) -> Result<Result<String, String>, JsError> {
    *frame.settled.borrow_mut() = None;
    let script = format!(
        "Promise.resolve().then(() => ({expression})).then((v) => __shell_settled(JSON.stringify(v === undefined ? null : v)), (e) => __shell_failed(e && e.name ? `${{e.name}}: ${{e.message}}` : String(e)));"
    );
    js.eval(&frame.realm, "evaluate.js", &script)?;
    let settled = frame.settled.clone();
    js.run_until(timeout, move || settled.borrow().is_some())?;
    Ok(frame.settled.borrow_mut().take().expect("settled when the loop stopped"))
}
