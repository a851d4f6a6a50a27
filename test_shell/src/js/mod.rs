//! The shell's JavaScript host: QuickJS (through `rquickjs`) with an event loop (microtasks,
//! timers), `console`, and our testharness. One [`JsHost`] per thread; each realm is its own
//! QuickJS context with its own globals.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

pub use crate::console::Level;
use rquickjs::{CatchResultExt, Context, Ctx, Function, Object, Persistent, Runtime, Value};

/// Our implementation of the web-platform-tests harness API.
pub const TESTHARNESS_JS: &str = include_str!("../../js/testharness.js");

/// What JavaScript the prelude defines in every realm before any page script.
const PRELUDE_JS: &str = r#"
globalThis.self = globalThis;
globalThis.queueMicrotask = (callback) => { Promise.resolve().then(() => callback()); };
(() => {
  const codes = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11,
    SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14, InvalidAccessError: 15,
    TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, URLMismatchError: 21,
    QuotaExceededError: 22, TimeoutError: 23, InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(String(message));
      Object.defineProperty(this, "name", { value: String(name), writable: true, configurable: true });
    }
    get code() { return codes[this.name] || 0; }
  }
  Object.defineProperty(globalThis, "DOMException", { value: DOMException, writable: true, configurable: true });
})();
"#;

/// The outcome of one test, as testharness reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// `PASS`, `FAIL` or `TIMEOUT`.
    pub status: String,
    /// The failure message (`None` for PASS).
    pub message: Option<String>,
}

/// A failure of the host itself (not of a test).
#[derive(Debug, thiserror::Error)]
pub enum JsError {
    /// QuickJS could not be set up.
    #[error("JavaScript engine error: {0}")]
    Engine(#[from] rquickjs::Error),
    /// A script threw at the top level.
    #[error("{file}: uncaught {message}")]
    Uncaught {
        /// Which script.
        file: String,
        /// The exception, as `Name: message` plus its stack when there is one.
        message: String,
    },
    /// The event loop ran out of work before the tests completed.
    #[error("the tests never completed (nothing left to run: a promise that never settles?)")]
    Stalled,
}

struct Timer {
    realm: usize,
    callback: Persistent<Function<'static>>,
}

/// How a finished host operation settles its promise: builds the value to resolve with
/// (`Ok`) or to reject with (`Err`) in the operation's realm.
pub type Settle = Box<dyn for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<Result<Value<'js>, Value<'js>>>>;

/// Settles with the value `make` builds.
pub fn settle_ok(make: impl for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<Value<'js>> + 'static) -> Settle {
    Box::new(move |ctx| make(ctx).map(Ok))
}

/// Rejects with the value `make` builds.
pub fn settle_err(make: impl for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<Value<'js>> + 'static) -> Settle {
    Box::new(move |ctx| make(ctx).map(Err))
}

/// A native asynchronous operation started by script: a future and its promise's functions.
struct PendingOp {
    realm: usize,
    future: Pin<Box<dyn Future<Output = Settle>>>,
    resolve: Persistent<Function<'static>>,
    reject: Persistent<Function<'static>>,
}

/// Waits up to the given time for outside progress (e.g. a reply on an IPC pipe) while host
/// operations are pending; returns false when no progress can ever come.
pub type IdleWait = Box<dyn Fn(Duration) -> bool>;

/// Work the loop runs outside any realm (e.g. creating a worker's realm).
pub type HostTask = Box<dyn FnOnce(&JsHost)>;

/// Receives every console line: its level, the label of the realm that wrote it (see
/// [`JsHost::set_label`]) and its text.
pub type ConsoleSink = Rc<dyn Fn(Level, &str, &str)>;

/// What a realm is called in console lines until [`JsHost::set_label`] names it.
const UNLABELLED: &str = "js";

#[derive(Default)]
struct LoopState {
    ops: Vec<PendingOp>,
    host_tasks: std::collections::VecDeque<HostTask>,
    /// Messages to deliver: (target realm, JSON, sender id), handed to the target realm's
    /// `__deliverMessage`.
    messages: std::collections::VecDeque<(usize, String, f64)>,
    /// Every realm's context, so a timer runs in the realm that set it.
    contexts: Vec<Context>,
    timers: BTreeMap<(Instant, u64), Timer>,
    next_timer: u64,
    results: Vec<TestResult>,
    complete: bool,
    echo_console: bool,
    /// Each realm's name in console lines, by realm index.
    labels: Vec<String>,
    console: Option<ConsoleSink>,
}

impl LoopState {
    fn label(&self, realm: Option<usize>) -> String {
        realm.and_then(|r| self.labels.get(r)).map_or(UNLABELLED, String::as_str).to_owned()
    }
}

/// Hands a console line to the sink (or stdout when echoing), outside any borrow of the loop
/// state: the sink may do anything, including sending over a pipe.
fn emit(state: &RefCell<LoopState>, realm: Option<usize>, level: Level, text: &str) {
    let (sink, label, echo) = {
        let state = state.borrow();
        (state.console.clone(), state.label(realm), state.echo_console)
    };
    match sink {
        Some(sink) => sink(level, &label, text),
        None if echo => println!("{text}"),
        None => {}
    }
}

/// One JavaScript engine instance and its event loop.
pub struct JsHost {
    runtime: Runtime,
    state: Rc<RefCell<LoopState>>,
    idle_wait: RefCell<Option<IdleWait>>,
}

/// One realm (a page's or the harness's global object).
pub struct Realm {
    context: Context,
    index: usize,
}

impl JsHost {
    /// A new engine. `echo_console`: print `console.*` output to stdout as it happens, when no
    /// [`set_console`](Self::set_console) sink takes it.
    pub fn new(echo_console: bool) -> Result<Self, JsError> {
        let runtime = Runtime::new()?;
        // Generous but bounded: a runaway script cannot take the machine's memory.
        runtime.set_memory_limit(2 << 30);
        let state = Rc::new(RefCell::new(LoopState { echo_console, ..LoopState::default() }));
        Ok(Self { runtime, state, idle_wait: RefCell::new(None) })
    }

    /// A new realm with the prelude, `console`, timers and the testharness result hooks.
    pub fn realm(&self) -> Result<Realm, JsError> {
        let context = Context::full(&self.runtime)?;
        let state = self.state.clone();
        let index = {
            let mut loop_state = state.borrow_mut();
            loop_state.contexts.push(context.clone());
            loop_state.labels.push(UNLABELLED.to_owned());
            loop_state.contexts.len() - 1
        };
        context.with(|ctx| -> Result<(), JsError> {
            install_console(&ctx, &state, index)?;
            install_timers(&ctx, &state, index)?;
            install_testharness_hooks(&ctx, &state)?;
            eval(&ctx, "prelude.js", PRELUDE_JS)
        })?;
        Ok(Realm { context, index })
    }

    /// Sends every realm's console lines (and the exceptions the loop catches) to `sink`.
    pub fn set_console(&self, sink: ConsoleSink) {
        self.state.borrow_mut().console = Some(sink);
    }

    /// Names `realm` in console lines (a page's origin, `harness`, ...).
    pub fn set_label(&self, realm: &Realm, label: impl Into<String>) {
        if let Some(slot) = self.state.borrow_mut().labels.get_mut(realm.index) {
            *slot = label.into();
        }
    }

    /// Resolves and loads every realm's modules (module scripts, `import()`) with these.
    pub fn set_module_loader(
        &self,
        resolver: impl rquickjs::loader::Resolver + 'static,
        loader: impl rquickjs::loader::Loader + 'static,
    ) {
        self.runtime.set_loader(resolver, loader);
    }

    /// Sets what the loop does while native operations are pending and nothing else is runnable.
    pub fn set_idle_wait(&self, wait: IdleWait) {
        *self.idle_wait.borrow_mut() = Some(wait);
    }

    /// The loop state handle that native functions use to start operations (see [`OpsHandle::start`]).
    pub fn ops(&self) -> OpsHandle {
        OpsHandle { state: self.state.clone() }
    }

    /// Runs `f` in `realm`.
    pub fn with_realm<R>(&self, realm: &Realm, f: impl FnOnce(Ctx<'_>) -> R) -> R {
        realm.context.with(f)
    }

    /// The index of `realm` (what native functions give [`OpsHandle::start`]).
    pub fn realm_index(&self, realm: &Realm) -> usize {
        realm.index
    }

    /// Runs `source` (named `file` in errors) in `realm`.
    pub fn eval(&self, realm: &Realm, file: &str, source: &str) -> Result<(), JsError> {
        realm.context.with(|ctx| eval(&ctx, file, source))
    }

    /// Runs the event loop until the testharness reports completion (or nothing is left to run,
    /// or `deadline` passes). Returns the results in order.
    pub fn run_tests(&self, deadline: Duration) -> Result<Vec<TestResult>, JsError> {
        let state = self.state.clone();
        self.run_until(deadline, move || state.borrow().complete)?;
        Ok(std::mem::take(&mut self.state.borrow_mut().results))
    }

    /// Runs the event loop until `done()` says so (checked whenever the loop is idle), nothing
    /// is left to run, or `deadline` passes.
    pub fn run_until(&self, deadline: Duration, done: impl Fn() -> bool) -> Result<(), JsError> {
        let until = Instant::now() + deadline;
        loop {
            self.run_microtasks();
            if self.settle_ops() || self.run_host_tasks() || self.deliver_message() {
                continue;
            }
            if done() {
                return Ok(());
            }
            let next = self.state.borrow().timers.keys().next().copied();
            if !self.state.borrow().ops.is_empty() {
                let now = Instant::now();
                if now >= until {
                    return Err(JsError::Stalled);
                }
                let due = next.map_or(until, |(when, _)| when.min(until));
                if due > now {
                    let waited = self.idle_wait.borrow().as_ref().map(|wait| wait(due - now));
                    if waited == Some(false) && next.is_none() {
                        // Nothing can make progress any more; settle what can be settled.
                        self.settle_ops();
                        if self.state.borrow().ops.is_empty() {
                            continue;
                        }
                        return Err(JsError::Stalled);
                    }
                    continue;
                }
            }
            let Some((when, id)) = next else { return Err(JsError::Stalled) };
            if when > until {
                return Err(JsError::Stalled);
            }
            let now = Instant::now();
            if when > now {
                std::thread::sleep(when - now);
            }
            let timer = self.state.borrow_mut().timers.remove(&(when, id));
            if let Some(timer) = timer {
                self.fire(timer);
            }
        }
    }

    fn run_host_tasks(&self) -> bool {
        let task = self.state.borrow_mut().host_tasks.pop_front();
        match task {
            Some(task) => {
                task(self);
                true
            }
            None => false,
        }
    }

    fn deliver_message(&self) -> bool {
        let message = self.state.borrow_mut().messages.pop_front();
        let Some((realm, json, from)) = message else { return false };
        let context = self.state.borrow().contexts.get(realm).cloned();
        if let Some(context) = context {
            context.with(|ctx| {
                let delivered = ctx
                    .globals()
                    .get::<_, Function>("__deliverMessage")
                    .and_then(|deliver| deliver.call::<_, ()>((json, from)))
                    .catch(&ctx);
                if let Err(error) = delivered {
                    self.log(Some(realm), format!("uncaught exception in a message handler: {error}"));
                }
            });
        }
        true
    }

    /// Polls every pending native operation once; settles the finished ones. True if any did.
    fn settle_ops(&self) -> bool {
        let ops = std::mem::take(&mut self.state.borrow_mut().ops);
        let mut waker_context = TaskContext::from_waker(Waker::noop());
        let mut settled_any = false;
        let mut still_pending = Vec::new();
        for mut op in ops {
            match op.future.as_mut().poll(&mut waker_context) {
                Poll::Pending => still_pending.push(op),
                Poll::Ready(settle) => {
                    settled_any = true;
                    let context = self.state.borrow().contexts[op.realm].clone();
                    context.with(|ctx| {
                        let outcome = (|| -> rquickjs::Result<()> {
                            let resolve = op.resolve.restore(&ctx)?;
                            let reject = op.reject.restore(&ctx)?;
                            match settle(&ctx)? {
                                Ok(value) => resolve.call::<_, ()>((value,)),
                                Err(error) => reject.call::<_, ()>((error,)),
                            }
                        })();
                        if let Err(error) = outcome.catch(&ctx) {
                            self.log(Some(op.realm), format!("could not settle a promise: {error}"));
                        }
                    });
                }
            }
        }
        let mut state = self.state.borrow_mut();
        still_pending.append(&mut state.ops);
        state.ops = still_pending;
        settled_any
    }

    fn fire(&self, timer: Timer) {
        let context = self.state.borrow().contexts[timer.realm].clone();
        context.with(|ctx| {
            if let Ok(callback) = timer.callback.restore(&ctx)
                && let Err(error) = callback.call::<_, ()>(()).catch(&ctx)
            {
                self.log(Some(timer.realm), format!("uncaught exception in a timer: {error}"));
            }
        });
    }

    fn run_microtasks(&self) {
        loop {
            match self.runtime.execute_pending_job() {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    let message = error.0.with(|ctx| format!("{:?}", ctx.catch()));
                    self.log(None, format!("uncaught exception in a job: {message}"));
                }
            }
        }
    }

    /// Reports what the loop caught as a console error of `realm` (when known).
    fn log(&self, realm: Option<usize>, line: String) {
        emit(&self.state, realm, Level::Error, &line);
    }
}

impl Drop for JsHost {
    fn drop(&mut self) {
        // Realms' native functions hold the loop state, which holds the realms: break the cycle.
        let mut state = self.state.borrow_mut();
        state.ops.clear();
        state.host_tasks.clear();
        state.messages.clear();
        state.timers.clear();
        state.contexts.clear();
    }
}

fn eval(ctx: &Ctx<'_>, file: &str, source: &str) -> Result<(), JsError> {
    let mut options = rquickjs::context::EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(file.to_owned());
    ctx.eval_with_options::<Value, _>(source, options)
        .catch(ctx)
        .map(|_| ())
        .map_err(|error| JsError::Uncaught { file: file.to_owned(), message: error.to_string() })
}

fn install_console(ctx: &Ctx<'_>, state: &Rc<RefCell<LoopState>>, realm: usize) -> Result<(), JsError> {
    let console = Object::new(ctx.clone())?;
    for level in [Level::Log, Level::Info, Level::Warn, Level::Error, Level::Debug] {
        let state = state.clone();
        let print = Function::new(ctx.clone(), move |args: rquickjs::function::Rest<Value>| {
            let text: Vec<String> = args.0.iter().map(display).collect();
            emit(&state, Some(realm), level, &text.join(" "));
        })?;
        console.set(level.method(), print)?;
    }
    ctx.globals().set("console", console)?;
    Ok(())
}

/// How `console.log` shows a value: strings as they are, everything else through `String()`.
fn display(value: &Value<'_>) -> String {
    if let Some(text) = value.as_string() {
        return text.to_string().unwrap_or_default();
    }
    let ctx = value.ctx();
    match ctx.globals().get::<_, Function>("String").and_then(|f| f.call::<_, String>((value.clone(),))) {
        Ok(text) => text,
        Err(_) => format!("{value:?}"),
    }
}

fn install_timers(ctx: &Ctx<'_>, state: &Rc<RefCell<LoopState>>, realm: usize) -> Result<(), JsError> {
    let timers = state.clone();
    let set_timeout =
        Function::new(ctx.clone(), move |callback: Function<'_>, delay: rquickjs::function::Opt<f64>| {
            let delay = delay.0.filter(|d| d.is_finite() && *d > 0.0).unwrap_or(0.0);
            let mut state = timers.borrow_mut();
            state.next_timer += 1;
            let id = state.next_timer;
            let when = Instant::now() + Duration::from_secs_f64(delay / 1000.0);
            let ctx = callback.ctx().clone();
            state.timers.insert((when, id), Timer { realm, callback: Persistent::save(&ctx, callback) });
            id as f64
        })?;
    let timers = state.clone();
    let clear_timeout = Function::new(ctx.clone(), move |id: rquickjs::function::Opt<f64>| {
        if let Some(id) = id.0 {
            timers.borrow_mut().timers.retain(|(_, timer_id), _| *timer_id as f64 != id);
        }
    })?;
    ctx.globals().set("setTimeout", set_timeout)?;
    ctx.globals().set("clearTimeout", clear_timeout)?;
    Ok(())
}

fn install_testharness_hooks(ctx: &Ctx<'_>, state: &Rc<RefCell<LoopState>>) -> Result<(), JsError> {
    let results = state.clone();
    let on_result = Function::new(ctx.clone(), move |result: Object<'_>| {
        let name: String = result.get("name").unwrap_or_default();
        let status: String = result.get("status").unwrap_or_default();
        let message: Option<String> = result.get("message").unwrap_or(None);
        results.borrow_mut().results.push(TestResult { name, status, message });
    })?;
    let done = state.clone();
    let on_complete = Function::new(ctx.clone(), move || {
        done.borrow_mut().complete = true;
    })?;
    ctx.globals().set("__testharness_on_result", on_result)?;
    ctx.globals().set("__testharness_on_complete", on_complete)?;
    Ok(())
}

/// Prints results the shell's way (`PASS name` / `FAIL name: message` / `TIMEOUT name`, then
/// `N passed, N failed`) and says whether the run counts as a success (at least one test ran and
/// none failed).
pub fn report(results: &[TestResult], out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let mut failed = 0;
    for result in results {
        match (result.status.as_str(), &result.message) {
            ("PASS", _) => writeln!(out, "PASS {}", result.name)?,
            ("TIMEOUT", _) => {
                failed += 1;
                writeln!(out, "TIMEOUT {}", result.name)?;
            }
            (_, message) => {
                failed += 1;
                writeln!(out, "FAIL {}: {}", result.name, message.as_deref().unwrap_or(""))?;
            }
        }
    }
    let passed = results.len() - failed;
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(!results.is_empty() && failed == 0)
}

/// What native functions use to start asynchronous operations whose promises the loop settles.
#[derive(Clone)]
pub struct OpsHandle {
    state: Rc<RefCell<LoopState>>,
}

impl OpsHandle {
    /// Queues work for the loop to run outside any realm.
    pub fn host_task(&self, task: HostTask) {
        self.state.borrow_mut().host_tasks.push_back(task);
    }

    /// Queues a message for realm `realm`'s `__deliverMessage(json, from)`.
    pub fn post(&self, realm: usize, json: String, from: f64) {
        self.state.borrow_mut().messages.push_back((realm, json, from));
    }

    /// Starts `future` for a script call in realm `realm` and returns the promise script awaits.
    pub fn start<'js>(
        &self,
        ctx: &Ctx<'js>,
        realm: usize,
        future: impl Future<Output = Settle> + 'static,
    ) -> rquickjs::Result<rquickjs::Promise<'js>> {
        let (promise, resolve, reject) = rquickjs::Promise::new(ctx)?;
        self.state.borrow_mut().ops.push(PendingOp {
            realm,
            future: Box::pin(future),
            resolve: Persistent::save(ctx, resolve),
            reject: Persistent::save(ctx, reject),
        });
        Ok(promise)
    }
}
