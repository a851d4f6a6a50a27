//! The renderer's COS pipe to its broker stub: request ids, one reply stream, a reader thread;
//! and its documents' lookup bindings, pipes straight to the storage service that the broker
//! bound to one document each (the same messages and replies, without the broker in the path).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cos_common::CosError;
use cos_common::interface::{CallResult, FrameId, RendererToBroker, Reply, RequestId};
use cos_ipc::{Endpoint, Pipe};
use parking_lot::{Condvar, Mutex};

/// Requests this renderer keeps outstanding at most; more wait their turn here, because the
/// broker treats a renderer that exceeds its bound (256) as compromised.
pub const MAX_IN_FLIGHT: usize = 128;

type Delivery = CallResult;

#[derive(Default)]
struct Slot {
    delivery: Option<Delivery>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<RequestId, Arc<Mutex<Slot>>>,
    disconnected: bool,
}

/// Where a document's lookups go.
enum Binding {
    /// A `Bind` is in flight; lookups meanwhile take the broker.
    Asking,
    /// Its binding.
    Bound(Arc<RendererConnection>),
    /// The broker (the browser refused a binding, or the service closed one before answering).
    Broker,
}

/// How long a pumped connection waits on one pipe before looking at the next, while replies are
/// awaited on several (its own and its documents' bindings).
const PUMP_SLICE: Duration = Duration::from_micros(200);

/// A renderer's connection to its broker. Shared by every document of the renderer.
///
/// Replies are read either by a background thread ([`new`](Self::new)) or by the renderer's own
/// event loop ([`new_pumped`](Self::new_pumped) + [`pump`](Self::pump) /
/// [`run_until`](Self::run_until)), which saves a thread hop per call.
///
/// ```
/// use cos_common::CosError;
/// use cos_common::interface::{FrameId, RendererId};
/// use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, RendererConnection, ScriptContext};
/// # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
/// # let host = &document.browser.host;
/// # host.frames().insert(FrameId(7), cos_browser::FrameInfo::top_level(RendererId(2), "https://app.example".parse()?));
/// // The browser made the pipe and registered its end for renderer 2 (hosting frame 7);
/// // this is the renderer's end, read by the renderer's own event loop.
/// let (browser_end, renderer_end) = cos_ipc::Endpoint::pair_in_process();
/// host.register_renderer(RendererId(2), browser_end, || { /* kill renderer 2 */ });
/// let connection = RendererConnection::new_pumped(renderer_end)?;
///
/// let context = ScriptContext {
///     frame: FrameId(7),
///     secure_context: true,
///     policy_allows: true,
///     service_worker: false,
///     opaque_origin: false,
/// };
/// let manager = CrossOriginStorageManager::new(connection.clone(), context).expect("a secure context");
/// let (unknown, lookup_only) = (CosHashDict::sha256("ab".repeat(32)), CosOptions::default());
/// let lookup = manager.get_file_handle(&unknown, &lookup_only);
/// assert_eq!(connection.run_until(lookup).unwrap_err(), CosError::NotFound);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RendererConnection {
    sender: Pipe<RendererToBroker, Reply>,
    /// In pumped mode, the receiving side, read by whoever pumps.
    receiver: Option<Mutex<Pipe<RendererToBroker, Reply>>>,
    pending: Mutex<Pending>,
    room: Condvar,
    next_request: AtomicU64,
    /// Whether its data pipes may carry sealed memory files (not over the ipc-channel link,
    /// whose bridge relays bytes only).
    takes_files: bool,
    /// Lookup bindings of this renderer's documents (always empty on a binding itself).
    bindings: Mutex<HashMap<FrameId, Binding>>,
    /// Whether a reply ever arrived (a binding the service refused closes before any).
    answered: AtomicBool,
}

impl Drop for RendererConnection {
    /// Ends the connection as a process exit would: the reader thread holds its own clone of the
    /// pipe, so without this an embedder that drops a connection (single-process mode) would keep
    /// that thread, the broker's thread and the renderer's handles in the service alive forever.
    fn drop(&mut self) {
        self.sender.endpoint().shutdown();
    }
}

impl RendererConnection {
    /// Wraps the COS pipe the browser gave this renderer and starts its reader thread.
    pub fn new(endpoint: Endpoint) -> std::io::Result<Arc<Self>> {
        Self::threaded(endpoint, true)
    }

    fn threaded(endpoint: Endpoint, takes_files: bool) -> std::io::Result<Arc<Self>> {
        let sender = Pipe::new(endpoint);
        let receiver: Pipe<RendererToBroker, Reply> = sender.try_clone()?;
        let connection = Arc::new(Self::with_receiver(sender, None, takes_files));
        let weak = Arc::downgrade(&connection);
        std::thread::Builder::new().name("cos-renderer-replies".into()).spawn(move || {
            loop {
                let received = receiver.recv();
                let Some(connection) = weak.upgrade() else { return };
                match received {
                    Ok(reply) => connection.receive(reply),
                    Err(error) => {
                        tracing::debug!(%error, "COS pipe to the broker closed");
                        connection.disconnect();
                        return;
                    }
                }
            }
        })?;
        Ok(connection)
    }

    /// Wraps the COS pipe without a reader thread: the embedder's event loop calls
    /// [`pump`](Self::pump) when the pipe is readable (or [`run_until`](Self::run_until)).
    pub fn new_pumped(endpoint: Endpoint) -> std::io::Result<Arc<Self>> {
        Self::pumped(endpoint, true)
    }

    fn pumped(endpoint: Endpoint, takes_files: bool) -> std::io::Result<Arc<Self>> {
        let sender = Pipe::new(endpoint);
        let receiver = sender.try_clone()?;
        Ok(Arc::new(Self::with_receiver(sender, Some(Mutex::new(receiver)), takes_files)))
    }

    fn with_receiver(
        sender: Pipe<RendererToBroker, Reply>,
        receiver: Option<Mutex<Pipe<RendererToBroker, Reply>>>,
        takes_files: bool,
    ) -> Self {
        Self {
            sender,
            receiver,
            pending: Mutex::new(Pending::default()),
            room: Condvar::new(),
            next_request: AtomicU64::new(1),
            takes_files,
            bindings: Mutex::new(HashMap::new()),
            answered: AtomicBool::new(false),
        }
    }

    /// The connection `frame`'s lookups (`getFileHandle` without `create`) and the calls on the
    /// handles they return go over: the document's binding, asked of the broker on its first
    /// lookup (and again after the binding closed, once it had served: a change of the
    /// document's record or a service restart), or this connection where there is none.
    pub(crate) async fn lookup_connection(self: &Arc<Self>, frame: FrameId) -> Arc<RendererConnection> {
        {
            let mut bindings = self.bindings.lock();
            match bindings.get(&frame) {
                Some(Binding::Bound(binding)) if !binding.pending.lock().disconnected => return binding.clone(),
                Some(Binding::Bound(binding)) if !binding.answered.load(Ordering::Acquire) => {
                    bindings.insert(frame, Binding::Broker);
                    return self.clone();
                }
                Some(Binding::Asking | Binding::Broker) => return self.clone(),
                Some(Binding::Bound(_)) | None => {}
            }
            // Documents come and go: drop the bindings the browser closed (navigated or removed
            // documents), so their descriptors do not pile up for the renderer's life.
            bindings.retain(|_, binding| match binding {
                Binding::Bound(connection) if connection.is_closed() => {
                    if !connection.answered.load(Ordering::Acquire) {
                        *binding = Binding::Broker;
                        return true;
                    }
                    false
                }
                _ => true,
            });
            bindings.insert(frame, Binding::Asking);
        }
        let outcome = match self.call(|request| RendererToBroker::Bind { request, frame }).await {
            CallResult::Bound { pipe } => {
                let endpoint = pipe.into_endpoint();
                let binding = if self.receiver.is_some() {
                    Self::pumped(endpoint, self.takes_files)
                } else {
                    Self::threaded(endpoint, self.takes_files)
                };
                binding.map_or(Binding::Broker, Binding::Bound)
            }
            // The service is away: ask again next time.
            CallResult::Failed(CosError::Abort) => {
                self.bindings.lock().remove(&frame);
                return self.clone();
            }
            _ => Binding::Broker,
        };
        let connection = match &outcome {
            Binding::Bound(binding) => binding.clone(),
            _ => self.clone(),
        };
        self.bindings.lock().insert(frame, outcome);
        connection
    }

    /// Like [`new`](Self::new), over the `ipc-channel` link an embedder passed to this content
    /// process (feature `ipc-channel`; see `cos_ipc::ipc_channel`): the link is bridged to an
    /// endpoint, so every call behaves exactly as over the default transport.
    #[cfg(feature = "ipc-channel")]
    pub fn new_ipc_channel(link: cos_ipc::ipc_channel::RendererLink) -> std::io::Result<Arc<Self>> {
        Self::threaded(cos_ipc::ipc_channel::bridge_browser(link)?, false)
    }

    /// Like [`new_pumped`](Self::new_pumped), over an `ipc-channel` link (feature `ipc-channel`).
    #[cfg(feature = "ipc-channel")]
    pub fn new_pumped_ipc_channel(link: cos_ipc::ipc_channel::RendererLink) -> std::io::Result<Arc<Self>> {
        Self::pumped(cos_ipc::ipc_channel::bridge_browser(link)?, false)
    }

    /// Whether whole reads on this connection's data pipes may be answered with a sealed memory
    /// file (false over the ipc-channel link).
    pub(crate) fn takes_files(&self) -> bool {
        self.takes_files
    }

    /// Pumped mode: blocks until one reply arrives and delivers it (waking its future). Returns
    /// false once the pipe is closed (every pending call has then failed with `AbortError`).
    pub fn pump(&self) -> bool {
        self.pump_any(None) != Some(false)
    }

    /// Pumped mode: like [`pump`](Self::pump), but gives up after `timeout` (so an event loop can
    /// run its timers). Returns `Some(false)` once the pipe is closed, `None` on timeout.
    pub fn pump_timeout(&self, timeout: std::time::Duration) -> Option<bool> {
        self.pump_any(Some(timeout))
    }

    /// Reads one reply from this pipe or from a binding with calls outstanding. With one pipe
    /// awaited (the usual case: a page awaits its lookup) it blocks on that pipe alone; with
    /// several it takes turns in [`PUMP_SLICE`]s. `Some(false)`: this pipe closed.
    fn pump_any(&self, timeout: Option<Duration>) -> Option<bool> {
        let busy: Vec<Arc<RendererConnection>> = self
            .bindings
            .lock()
            .values()
            .filter_map(|binding| match binding {
                Binding::Bound(binding) if binding.is_awaited() => Some(binding.clone()),
                _ => None,
            })
            .collect();
        if busy.is_empty() {
            return self.pump_own(timeout);
        }
        let own_busy = self.is_awaited();
        if !own_busy && busy.len() == 1 {
            // A closed binding has failed its calls: that is progress too.
            return busy[0].pump_own(timeout).map(|_| true);
        }
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if own_busy {
                match self.pump_own(Some(PUMP_SLICE)) {
                    None => {}
                    done => return done,
                }
            }
            for binding in &busy {
                if binding.pump_own(Some(PUMP_SLICE)).is_some() {
                    return Some(true);
                }
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return None;
            }
        }
    }

    /// Whether this pipe is closed. A pumped pipe nobody awaits is looked at (without waiting),
    /// since nothing else would notice.
    fn is_closed(&self) -> bool {
        if self.receiver.is_some() && !self.is_awaited() {
            let _ = self.pump_own(Some(Duration::ZERO));
        }
        self.pending.lock().disconnected
    }

    /// Whether calls on this pipe await replies.
    fn is_awaited(&self) -> bool {
        let pending = self.pending.lock();
        !pending.disconnected && !pending.waiting.is_empty()
    }

    /// Pumped mode: one reply from this pipe alone (`None` on timeout, `Some(false)` if closed).
    fn pump_own(&self, timeout: Option<Duration>) -> Option<bool> {
        let Some(receiver) = &self.receiver else { return Some(false) };
        let received = match timeout {
            None => receiver.lock().recv(),
            Some(timeout) => receiver.lock().recv_timeout(timeout),
        };
        match received {
            Ok(reply) => {
                self.receive(reply);
                Some(true)
            }
            Err(cos_ipc::IpcError::Timeout) => None,
            Err(error) => {
                tracing::debug!(%error, "COS pipe closed");
                self.disconnect();
                Some(false)
            }
        }
    }

    /// Pumped mode: drives `future` to completion on this thread, reading replies while it waits.
    pub fn run_until<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = Waker::noop();
        let mut context = Context::from_waker(waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            if !self.pump() {
                // Closed: the pending calls were failed; the future completes on the next poll.
                if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                    return output;
                }
                std::thread::yield_now();
            }
        }
    }

    fn receive(&self, reply: Reply) {
        self.answered.store(true, Ordering::Release);
        self.deliver(reply.request, reply.result);
    }

    fn deliver(&self, request: RequestId, delivery: Delivery) {
        let slot = self.pending.lock().waiting.remove(&request);
        self.room.notify_one();
        if let Some(slot) = slot {
            let mut slot = slot.lock();
            slot.delivery = Some(delivery);
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    fn disconnect(&self) {
        let waiting: Vec<_> = {
            let mut pending = self.pending.lock();
            pending.disconnected = true;
            pending.waiting.drain().map(|(_, slot)| slot).collect()
        };
        self.room.notify_all();
        for slot in waiting {
            let mut slot = slot.lock();
            slot.delivery = Some(CallResult::Failed(CosError::Abort));
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Sends a request and returns a future of its reply. Waits (synchronously) while
    /// [`MAX_IN_FLIGHT`] requests are outstanding.
    pub(crate) fn call(&self, make: impl FnOnce(RequestId) -> RendererToBroker) -> ReplyFuture {
        let request = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        let slot = Arc::new(Mutex::new(Slot::default()));
        {
            let mut pending = self.pending.lock();
            while !pending.disconnected && pending.waiting.len() >= MAX_IN_FLIGHT {
                if self.receiver.is_some() {
                    // Pumped mode: nobody else reads replies, so make room ourselves.
                    drop(pending);
                    self.pump();
                    pending = self.pending.lock();
                } else {
                    self.room.wait(&mut pending);
                }
            }
            if pending.disconnected {
                slot.lock().delivery = Some(CallResult::Failed(CosError::Abort));
                return ReplyFuture { slot, unsent: true };
            }
            pending.waiting.insert(request, slot.clone());
        }
        match self.sender.send(make(request)) {
            Ok(()) => ReplyFuture { slot, unsent: false },
            Err(error) => {
                if matches!(error, cos_ipc::IpcError::Disconnected) {
                    // Nobody reads pumped bindings between calls: this is where a closed one
                    // is noticed.
                    self.disconnect();
                }
                self.deliver(request, CallResult::Failed(CosError::Abort));
                ReplyFuture { slot, unsent: true }
            }
        }
    }

    /// Sends a message that has no reply.
    pub(crate) fn notify(&self, message: RendererToBroker) {
        let _ = self.sender.send(message);
    }
}

/// The reply to one request; `Failed(AbortError)` if the pipe broke first.
pub(crate) struct ReplyFuture {
    slot: Arc<Mutex<Slot>>,
    /// The request never left: the pipe was already closed.
    unsent: bool,
}

impl ReplyFuture {
    /// Whether the request never left this renderer (its `AbortError` is then the pipe's, and
    /// the request may be made again elsewhere without having been answered anywhere).
    pub(crate) fn unsent(&self) -> bool {
        self.unsent
    }
}

impl Future for ReplyFuture {
    type Output = Delivery;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Delivery> {
        let mut slot = self.slot.lock();
        match slot.delivery.take() {
            Some(delivery) => Poll::Ready(delivery),
            None => {
                slot.waker = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A fake broker answering every `Bind` with a fresh binding, handing the test each service end.
    fn fake_broker(broker_end: Endpoint) -> mpsc::Receiver<Endpoint> {
        let (service_ends, received) = mpsc::channel();
        std::thread::spawn(move || {
            let broker: Pipe<Reply, RendererToBroker> = Pipe::new(broker_end);
            while let Ok(RendererToBroker::Bind { request, .. }) = broker.recv() {
                let (renderer_end, service_end) = Endpoint::pair_in_process();
                if service_ends.send(service_end).is_err() {
                    return;
                }
                let _ = broker.send(Reply { request, result: CallResult::Bound { pipe: renderer_end.into() } });
            }
        });
        received
    }

    /// Documents come and go for a renderer's life: a binding the browser closed leaves the
    /// renderer's map (and its descriptor is released) when the next document binds, whether
    /// anything reads the binding or not; one closed before it ever answered keeps its document
    /// on the broker.
    #[test]
    fn closed_bindings_are_dropped_when_another_document_binds() {
        for pumped in [true, false] {
            let (renderer_end, broker_end) = Endpoint::pair_in_process();
            let service_ends = fake_broker(broker_end);
            let connection = if pumped {
                RendererConnection::new_pumped(renderer_end)
            } else {
                RendererConnection::new(renderer_end)
            }
            .unwrap();
            let bind = |frame| {
                let lookup = connection.lookup_connection(FrameId(frame));
                if pumped { connection.run_until(lookup) } else { crate::block_on(lookup) }
            };
            let served = bind(1);
            served.answered.store(true, Ordering::Release);
            let never_served = bind(2);
            assert!(!Arc::ptr_eq(&served, &connection) && !Arc::ptr_eq(&never_served, &connection));
            // The browser closes both (their documents went away).
            let timeout = Duration::from_secs(10);
            drop(service_ends.recv_timeout(timeout).unwrap());
            drop(service_ends.recv_timeout(timeout).unwrap());
            if !pumped {
                let deadline = Instant::now() + timeout;
                while !(served.pending.lock().disconnected && never_served.pending.lock().disconnected) {
                    assert!(Instant::now() < deadline, "the reader threads saw the bindings close");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let _third = bind(3);
            let bindings = connection.bindings.lock();
            assert!(!bindings.contains_key(&FrameId(1)), "pumped: {pumped}");
            assert!(matches!(bindings.get(&FrameId(2)), Some(Binding::Broker)), "pumped: {pumped}");
            assert!(matches!(bindings.get(&FrameId(3)), Some(Binding::Bound(_))), "pumped: {pumped}");
        }
    }
}
