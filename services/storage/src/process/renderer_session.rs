//! One renderer's session with the service: the broker's requests for that renderer, its
//! handles, and the bounds on its handles and data pipes.

use std::collections::HashMap;
use std::sync::Arc;

use cos_common::interface::{BrokerToService, CallResult, HandleCall, HandleId, RendererId, Reply, ServiceToBroker};
use cos_common::{CosError, QuotaScope};
use cos_ipc::{Attached, Endpoint, IpcError, Pipe};

use super::data_pipes::{DataPipeReporter, PipeSlot, serve_read, serve_write};
use super::{MAX_DATA_PIPES_PER_RENDERER, MAX_HANDLES_PER_RENDERER, Served, stop_all};
use crate::service::{FileHandle, StorageService};

pub(super) type BrokerConnection = Pipe<ServiceToBroker, BrokerToService>;

/// One renderer's session: its handles and the bounds on them. (The renderer's own end of its
/// COS pipe is `cos_renderer::RendererConnection`; this is the service's view of that renderer.)
pub(super) struct RendererSession {
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

impl RendererSession {
    pub(super) fn new(service: StorageService, renderer: RendererId, endpoint: Endpoint) -> Self {
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

    pub(super) fn run(mut self) {
        self.serve();
        stop_all(std::mem::take(&mut self.pipes));
    }

    fn serve(&mut self) {
        loop {
            // A request never carries pipes, so one with attachments does not decode.
            let message = match self.pipe.recv() {
                Ok(message) => message,
                Err(IpcError::Disconnected) => return,
                Err(error) => {
                    tracing::error!(renderer = self.renderer.0, %error, "unreadable message from the broker");
                    return;
                }
            };
            let (request, result) = match message {
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
                    (request, result)
                }
                BrokerToService::Call(HandleCall::GetFile { request, handle }) => (request, self.get_file(handle)),
                BrokerToService::Call(HandleCall::CreateWritable { request, handle }) => {
                    (request, self.create_writable(handle))
                }
                BrokerToService::Call(HandleCall::ReleaseHandle { handle }) => {
                    self.handles.remove(&handle);
                    continue;
                }
            };
            self.hold_back_repeated_refusals(&result);
            if let Err(error) = self.pipe.send(ServiceToBroker::Reply(Reply { request, result })) {
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
            CallResult::Handle { .. } | CallResult::File { .. } | CallResult::Writable { .. } => {
                self.refusals_in_a_row = 0
            }
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
    fn unknown_handle() -> CallResult {
        CallResult::Failed(CosError::Abort)
    }

    fn reserve_pipe(&self) -> Option<PipeSlot> {
        let previous = self.open_pipes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if previous >= MAX_DATA_PIPES_PER_RENDERER {
            self.open_pipes.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return None;
        }
        Some(PipeSlot::new(self.open_pipes.clone()))
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
