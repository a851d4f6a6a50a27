//! One renderer's session with the service: the broker's requests for that renderer, its
//! documents' lookup bindings, their handles, and the bounds on its handles, data pipes and
//! bindings (counted across the broker connection and every binding).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use cos_common::interface::{
    BrokerToService, CallResult, FrameId, HandleCall, HandleId, HandleRequest, INLINE_READ_MAX_BYTES, InlineBytes,
    RendererId, RendererToBroker, Reply, ServiceToBroker,
};
use cos_common::{CallerContext, ContentHash, CosError, QuotaScope};
use cos_ipc::{Attached, Endpoint, IpcError, Pipe};

use super::data_pipes::{DataPipeReporter, PipeSlot, serve_read, serve_write};
use super::{MAX_BINDINGS_PER_RENDERER, MAX_DATA_PIPES_PER_RENDERER, MAX_HANDLES_PER_RENDERER, Served, stop_all};
use crate::service::{FileHandle, StorageService};

pub(super) type BrokerConnection = Pipe<ServiceToBroker, BrokerToService>;

/// A document's lookup binding as the service serves it: the renderer's messages, untrusted.
type BindingPipe = Pipe<Reply, RendererToBroker>;

/// What one renderer holds in the service, counted across its broker connection and every
/// binding of its documents, so that spreading calls over bindings buys no more.
#[derive(Default)]
struct RendererAllowance {
    /// Open handles.
    handles: AtomicUsize,
    /// Open writers plus reads.
    open_pipes: Arc<AtomicUsize>,
    /// The next id a binding issues (bindings number handles themselves, in one sequence per
    /// renderer and service generation, so an id one binding issued is never another's).
    next_bound_handle: AtomicU64,
}

/// One renderer's session: its broker connection, the handles the broker numbered, and its
/// documents' bindings. (The renderer's own end of its COS pipe is
/// `cos_renderer::RendererConnection`; this is the service's view of that renderer.)
pub(super) struct RendererSession {
    /// Shared with the bindings' and this connection's [`Calls`] (for bad-message reports),
    /// without a descriptor of their own.
    pipe: Arc<BrokerConnection>,
    calls: Calls,
    /// The documents' bindings, one thread each.
    bindings: Vec<Served>,
}

/// The calls of one pipe (the broker connection or one binding): its handles, its data pipes,
/// and its refusals in a row.
struct Calls {
    service: StorageService,
    renderer: RendererId,
    /// The renderer's broker connection: bad-message reports go over it, naming no one else.
    to_broker: Arc<BrokerConnection>,
    in_process: bool,
    handles: HashMap<HandleId, FileHandle>,
    allowance: Arc<RendererAllowance>,
    pipes: Vec<Served>,
    /// The data-pipe slot an inline `getFile` reply holds until it is sent ([`Calls::sent`]).
    replying: Option<PipeSlot>,
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
/// (or binding) waits: each has its own service thread.
fn pause_after_refusals(refusals_in_a_row: u32) -> Option<std::time::Duration> {
    let beyond = refusals_in_a_row.checked_sub(REFUSALS_ANSWERED_AT_ONCE + 1)?;
    let pause = std::time::Duration::from_millis(1u64 << beyond.min(16));
    Some(pause.min(LONGEST_REFUSAL_PAUSE))
}

impl RendererSession {
    pub(super) fn new(service: StorageService, renderer: RendererId, endpoint: Endpoint) -> Self {
        let pipe = Arc::new(Pipe::new(endpoint));
        let calls = Calls::new(service, renderer, pipe.clone(), Arc::default());
        Self { pipe, calls, bindings: Vec::new() }
    }

    pub(super) fn run(mut self) {
        self.serve();
        // Bindings first: their data pipes are theirs to stop.
        stop_all(std::mem::take(&mut self.bindings));
        self.calls.stop();
    }

    fn serve(&mut self) {
        let renderer = self.calls.renderer;
        loop {
            // Only a binding carries a pipe, and only in its own field.
            let message = match self.pipe.recv() {
                Ok(message) => message,
                Err(IpcError::Disconnected) => return,
                Err(error) => {
                    tracing::error!(renderer = renderer.0, %error, "unreadable message from the broker");
                    return;
                }
            };
            let (request, result) = match message {
                BrokerToService::GetFileHandle { request, handle, caller, hash, kind } => {
                    let _span = tracing::debug_span!("request", renderer = renderer.0, request = request.0).entered();
                    if self.calls.handles.contains_key(&handle) {
                        // The broker never reuses an id; refusing keeps the first handle intact.
                        tracing::error!(renderer = renderer.0, handle = handle.0, "the broker reused a handle id");
                        (request, CallResult::Failed(CosError::Unknown))
                    } else {
                        (request, self.calls.open(handle, &caller, hash, kind))
                    }
                }
                BrokerToService::Call(HandleCall::GetFile { request, handle }) => {
                    (request, self.calls.get_file(handle))
                }
                BrokerToService::Call(HandleCall::CreateWritable { request, handle }) => {
                    (request, self.calls.create_writable(handle))
                }
                BrokerToService::Call(HandleCall::ReleaseHandle { handle }) => {
                    self.calls.release(handle);
                    continue;
                }
                BrokerToService::BindDocument { frame, caller, pipe } => {
                    self.bind(frame, caller, pipe);
                    continue;
                }
            };
            self.calls.hold_back_repeated_refusals(&result);
            let sent = self.pipe.send(ServiceToBroker::Reply(Reply { request, result }));
            self.calls.sent();
            if let Err(error) = sent {
                tracing::warn!(renderer = renderer.0, %error, "could not reply to the broker");
                return;
            }
        }
    }

    /// Serves a document's binding on a thread of its own, unless the renderer already has
    /// [`MAX_BINDINGS_PER_RENDERER`]: then the pipe is closed, and the renderer's document keeps
    /// using the broker.
    fn bind(&mut self, frame: FrameId, caller: CallerContext, pipe: Attached) {
        let renderer = self.calls.renderer;
        self.bindings.retain(|served| !served.thread.is_finished());
        if self.bindings.len() >= MAX_BINDINGS_PER_RENDERER {
            tracing::warn!(renderer = renderer.0, "too many document bindings; refusing one");
            return;
        }
        let calls = Calls::new(self.calls.service.clone(), renderer, self.pipe.clone(), self.calls.allowance.clone());
        let name = format!("cos-binding-{}", renderer.0);
        let spawned = Served::spawn(name, pipe.into_endpoint(), move |endpoint| {
            let mut binding = Binding { pipe: Pipe::new(endpoint), frame, caller, calls };
            binding.serve();
            binding.calls.stop();
        });
        match spawned {
            Ok(served) => self.bindings.push(served),
            Err(error) => tracing::error!(%error, "could not start a binding thread"),
        }
    }
}

/// One document's lookup binding: `GetFileHandle` reads as the document the broker bound it to,
/// and calls on the handles it issued. Anything else is a bad message, reported over the
/// renderer's own broker connection; the binding then closes.
struct Binding {
    pipe: BindingPipe,
    frame: FrameId,
    caller: CallerContext,
    calls: Calls,
}

impl Binding {
    fn serve(&mut self) {
        loop {
            // A renderer's message carries no pipes, so one with attachments does not decode.
            let message = match self.pipe.recv() {
                Ok(message) => message,
                Err(IpcError::Disconnected) => return,
                Err(error) if error.is_peer_misbehaviour() => {
                    return self.calls.report(&format!("undecodable message on a binding: {error}"));
                }
                Err(error) => {
                    tracing::debug!(renderer = self.calls.renderer.0, %error, "binding failed");
                    return;
                }
            };
            let (request, result) = match message {
                RendererToBroker::GetFileHandle { request, frame, hash, create: false, origins: _ }
                    if frame == self.frame =>
                {
                    let handle = HandleId(self.calls.allowance.next_bound_handle.fetch_add(1, Ordering::Relaxed) + 1);
                    (request, self.calls.open(handle, &self.caller, hash, HandleRequest::Read))
                }
                RendererToBroker::GetFileHandle { .. } => {
                    return self.calls.report("a binding asked for a create or for another document");
                }
                RendererToBroker::Bind { .. } => return self.calls.report("a bind request on a binding"),
                // A transferred copy names the document holding it; the binding's authority is
                // still the opener's.
                RendererToBroker::Call { frame: _, call } => {
                    if !self.calls.handles.contains_key(&call.handle()) {
                        return self.calls.report("a handle this binding did not issue");
                    }
                    match call {
                        HandleCall::GetFile { request, handle } => (request, self.calls.get_file(handle)),
                        HandleCall::CreateWritable { request, handle } => (request, self.calls.create_writable(handle)),
                        HandleCall::ReleaseHandle { handle } => {
                            self.calls.release(handle);
                            continue;
                        }
                    }
                }
            };
            self.calls.hold_back_repeated_refusals(&result);
            let sent = self.pipe.send(Reply { request, result });
            self.calls.sent();
            if sent.is_err() {
                return; // closed: the document navigated or went away
            }
        }
    }
}

impl Calls {
    fn new(
        service: StorageService,
        renderer: RendererId,
        to_broker: Arc<BrokerConnection>,
        allowance: Arc<RendererAllowance>,
    ) -> Self {
        Self {
            service,
            renderer,
            in_process: to_broker.endpoint().is_in_process(),
            to_broker,
            handles: HashMap::new(),
            allowance,
            pipes: Vec::new(),
            replying: None,
            refusals_in_a_row: 0,
        }
    }

    /// Ends this pipe's data pipes and gives back its handles.
    fn stop(&mut self) {
        stop_all(std::mem::take(&mut self.pipes));
        self.allowance.handles.fetch_sub(self.handles.len(), Ordering::AcqRel);
        self.handles.clear();
    }

    /// Tells the browser the renderer misbehaved (the service cannot terminate renderers).
    fn report(&self, reason: &str) {
        tracing::error!(renderer = self.renderer.0, reason, "bad message on a binding");
        let _ = self.to_broker.send(ServiceToBroker::BadMessage { reason: reason.into() });
    }

    /// `getFileHandle` as `caller`, issuing `id`. At the renderer's limit the store is not
    /// consulted: a refusal costs nothing and spends no probe budget.
    fn open(&mut self, id: HandleId, caller: &CallerContext, hash: ContentHash, kind: HandleRequest) -> CallResult {
        let previous = self.allowance.handles.fetch_add(1, Ordering::AcqRel);
        if previous >= MAX_HANDLES_PER_RENDERER {
            self.allowance.handles.fetch_sub(1, Ordering::AcqRel);
            return CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer));
        }
        match self.service.get_file_handle(caller, hash, kind) {
            Err(error) => {
                self.allowance.handles.fetch_sub(1, Ordering::AcqRel);
                CallResult::Failed(error)
            }
            Ok(handle) => {
                let create = handle.is_create();
                self.handles.insert(id, handle);
                CallResult::Handle { handle: id, create }
            }
        }
    }

    /// The reply to the last request left (or could not be sent): the bytes an inline read
    /// held in flight are gone, and so is their slot.
    fn sent(&mut self) {
        self.replying = None;
    }

    fn release(&mut self, handle: HandleId) {
        if self.handles.remove(&handle).is_some() {
            self.allowance.handles.fetch_sub(1, Ordering::AcqRel);
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
            CallResult::Handle { .. }
            | CallResult::File { .. }
            | CallResult::InlineFile { .. }
            | CallResult::Writable { .. }
            | CallResult::Bound { .. } => self.refusals_in_a_row = 0,
        }
    }

    /// A handle id this pipe does not hold (the broker answers stale ids itself; this is its
    /// second line).
    fn unknown_handle() -> CallResult {
        CallResult::Failed(CosError::Abort)
    }

    fn reserve_pipe(&self) -> Option<PipeSlot> {
        let open_pipes = &self.allowance.open_pipes;
        let previous = open_pipes.fetch_add(1, Ordering::AcqRel);
        if previous >= MAX_DATA_PIPES_PER_RENDERER {
            open_pipes.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(PipeSlot::new(open_pipes.clone()))
    }

    fn get_file(&mut self, handle: HandleId) -> CallResult {
        let Some(handle) = self.handles.get(&handle) else { return Self::unknown_handle() };
        let file = match handle.get_file() {
            Ok(file) => file,
            Err(error) => return CallResult::Failed(error),
        };
        let Some(slot) = self.reserve_pipe() else {
            return CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer));
        };
        // A small entry travels in the reply. Its bytes hold the slot a stream would until the
        // reply is sent, so what a renderer can make this process buffer stays within the same
        // bound (its open streams) however it times its calls and however slowly it reads.
        if let Some(read) = file.read_inline(INLINE_READ_MAX_BYTES) {
            return match read.map(InlineBytes::new) {
                Ok(Some(bytes)) => {
                    self.replying = Some(slot);
                    CallResult::InlineFile { bytes }
                }
                Ok(None) => CallResult::Failed(CosError::Unknown),
                Err(error) => CallResult::Failed(error),
            };
        }
        let size = file.size();
        match self.spawn_pipe("cos-read", move |endpoint, report| serve_read(file, endpoint, report, slot)) {
            Ok(pipe) => CallResult::File { size, pipe },
            Err(error) => CallResult::Failed(error),
        }
    }

    fn create_writable(&mut self, handle: HandleId) -> CallResult {
        let Some(handle) = self.handles.get(&handle) else { return Self::unknown_handle() };
        // The slot first: a refused writer must not create (and delete) a swap file.
        let Some(slot) = self.reserve_pipe() else {
            return CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer));
        };
        let writer = match handle.create_writable() {
            Ok(writer) => writer,
            Err(error) => return CallResult::Failed(error),
        };
        match self.spawn_pipe("cos-write", move |endpoint, report| serve_write(writer, endpoint, report, slot)) {
            Ok(pipe) => CallResult::Writable { pipe },
            Err(error) => CallResult::Failed(error),
        }
    }

    /// Creates a data pipe, serves the service's end on a new thread and returns the renderer's end.
    fn spawn_pipe(
        &mut self,
        name: &str,
        serve: impl FnOnce(Endpoint, DataPipeReporter) + Send + 'static,
    ) -> Result<Attached, CosError> {
        let (ours, theirs) = if self.in_process {
            Endpoint::pair_in_process()
        } else {
            Endpoint::pair().map_err(|error| {
                tracing::error!(%error, "could not create a data pipe");
                CosError::Unknown
            })?
        };
        let to_broker = self.to_broker.try_clone().map_err(|error| {
            tracing::error!(%error, "could not share the broker connection with a data pipe");
            CosError::Unknown
        })?;
        let report = DataPipeReporter::new(self.renderer, to_broker);
        let served = Served::spawn(name.into(), ours, move |ours| serve(ours, report)).map_err(|error| {
            tracing::error!(%error, "could not start a data pipe thread");
            CosError::Unknown
        })?;
        self.pipes.retain(|served| !served.thread.is_finished());
        self.pipes.push(served);
        Ok(theirs.into())
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
