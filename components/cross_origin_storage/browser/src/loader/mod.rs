//! The fetch integration as a loader feature (SPEC §11): an embedder's network stack asks, for
//! the document that made a request, whether COS can answer it ([`Loader::lookup`]) and, after a
//! network fetch whose integrity check passed, stores what it fetched ([`Loader::store`]).
//!
//! The loader is a broker of its own: it has its own connection to the storage service (bound
//! by the host like a renderer's, and rebound when the service restarts) and it speaks the
//! broker's protocol, with the caller context taken from the [`FrameTable`] for the frame the
//! embedder names, never from a renderer. A lookup is a `getFileHandle` read like a page's, so
//! the service applies the probe budget, the Public Hash List, GREASE and the refusal floor
//! unchanged; a store is a create handle and a writer like a page's, so its bytes count against
//! the writing origin's in-flight limits and are verified on close.
//!
//! **Architecture invariant:** the embedder learns nothing a page could not: every refusal
//! (Permissions Policy, service worker, opaque origin, out of scope, gated, GREASE, over budget,
//! service down or restarting) is the same `None` as a miss, and every store that cannot happen
//! is silently skipped; the renderer only ever sees the network's answer or COS's bytes.
//!
//! What an embedder's network stack does for `fetch(url, {integrity: "sha256-…",
//! crossOriginStorage: "*"})` from document `frame` (its integrity check and the network
//! itself are the embedder's):
//!
//! ```
//! use cos_common::OriginsOption;
//! # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
//! # let (host, frame) = (&document.browser.host, document.frame);
//! # let body = b"runtime.wasm".to_vec();
//! # let hash = cos_test_support::callers::hash_of(&body);
//! let loader = host.loader();
//!
//! // Before the network: can COS answer? A miss and every refusal look the same.
//! assert!(loader.lookup(frame, hash).is_none());
//!
//! // Fetched from the network instead: tee the body into a store as it streams...
//! let mut sink = loader.store(frame, hash, OriginsOption::Global, None).expect("not skipped");
//! for chunk in body.chunks(4) {
//!     sink.write(chunk); // ...and to the renderer
//! }
//! // ...and commit only once SRI passed (`sink.abort()` otherwise).
//! let warnings = sink.finish()?;
//! assert!(warnings.is_empty());
//!
//! // The next request is answered from COS, streamed from the service.
//! let hit = loader.lookup(frame, hash).expect("stored");
//! assert_eq!(hit.size(), body.len() as u64);
//! let mut received = Vec::new();
//! hit.stream(|chunk| {
//!     received.extend_from_slice(chunk);
//!     true // false: the page went away
//! })?;
//! assert_eq!(received, body);
//! # Ok::<(), cos_browser::LoaderError>(())
//! ```

mod body;
mod sink;

use std::collections::HashMap;
use std::sync::Arc;

use cos_common::interface::{
    BrokerToService, CallResult, FrameId, HandleCall, HandleId, HandleRequest, RequestId, ServiceToBroker,
};
use cos_common::{AllowOriginCeiling, CallerContext, ContentHash, CosError, OriginsOption};
use cos_ipc::{IpcError, Pipe};
use crossbeam_channel::Sender;
use parking_lot::Mutex;

pub use body::CosBody;
pub use sink::StoreSink;

use crate::frame_table::{FrameInfo, FrameTable};

/// The renderer id the loader's service connection is bound under (a renderer the embedder
/// never registers: the service only uses it to name the connection in its logs).
pub const LOADER_CONNECTION: cos_common::interface::RendererId = cos_common::interface::RendererId(u64::MAX);

type ServiceConnection = Pipe<BrokerToService, ServiceToBroker>;

/// The loader of one [`CosHost`](crate::CosHost) (cheap to clone; every clone is the same
/// loader). Example: the [`loader`](crate::loader) module's.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<LoaderInner>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").finish_non_exhaustive()
    }
}

pub(crate) struct LoaderInner {
    frames: Arc<FrameTable>,
    state: Mutex<LoaderState>,
}

#[derive(Default)]
struct LoaderState {
    /// The connection requests go to, and its service generation.
    service: Option<(u64, Arc<ServiceConnection>)>,
    /// Requests sent and not yet answered: the generation they went to and where their
    /// answer goes.
    pending: HashMap<RequestId, (u64, Sender<CallResult>)>,
    next_request: u64,
    /// Handle ids are numbered here, never reused (a restarted service never sees an old one).
    next_handle: u64,
}

/// A handle the loader holds on the service; released when dropped (if its connection is
/// still the current one: a restarted service never issued it).
pub(crate) struct HeldHandle {
    loader: Arc<LoaderInner>,
    handle: HandleId,
    generation: u64,
}

impl Drop for HeldHandle {
    fn drop(&mut self) {
        let connection = {
            let state = self.loader.state.lock();
            state.service.as_ref().filter(|(g, _)| *g == self.generation).map(|(_, c)| c.clone())
        };
        if let Some(connection) = connection {
            let _ = connection.send(BrokerToService::Call(HandleCall::ReleaseHandle { handle: self.handle }));
        }
    }
}

impl Loader {
    pub(crate) fn new(frames: Arc<FrameTable>) -> Self {
        let state = LoaderState { next_request: 1, next_handle: 1, ..LoaderState::default() };
        Self { inner: Arc::new(LoaderInner { frames, state: Mutex::new(state) }) }
    }

    /// A loader connected to no service: every lookup misses and every store is skipped (for
    /// an embedder's network stack running without a COS host).
    pub fn unconnected() -> Self {
        Self::new(Arc::new(FrameTable::default()))
    }

    /// Whether COS answers a request that `frame` made with `integrity` naming `hash`: the
    /// entry's body if the document may read it, `None` otherwise — for a miss and for every
    /// refusal alike. The embedder then fetches from the network as usual.
    ///
    /// Blocks for one round trip to the service (two on a hit; a small entry's bytes come with
    /// the second).
    pub fn lookup(&self, frame: FrameId, hash: ContentHash) -> Option<CosBody> {
        let (_, caller) = self.caller(frame)?;
        let handle = self.open_handle(caller, hash, HandleRequest::Read)?;
        match self.inner.call(|request| BrokerToService::Call(HandleCall::GetFile { request, handle: handle.handle })) {
            Some(CallResult::File { size, pipe }) => Some(CosBody::new(size, pipe.into_endpoint(), handle)),
            Some(CallResult::InlineFile { bytes }) => Some(CosBody::inline(bytes.into_vec(), handle)),
            _ => None,
        }
    }

    /// Begins storing a resource `frame` fetched from the network with `integrity` naming
    /// `hash` and the `crossOriginStorage` scope `scope`; `resource_allow_origin` is the
    /// fetched resource's own `Cross-Origin-Storage-Allow-Origin` header, which caps a list
    /// scope (the document's header plays no part here). The embedder tees the body into the
    /// sink as it streams, then calls [`StoreSink::finish`] once SRI passed, or
    /// [`StoreSink::abort`]. `None` when the store is skipped (Permissions Policy, service
    /// worker, opaque origin, the service down or refusing the writer): the embedder carries
    /// on without it.
    pub fn store(
        &self,
        frame: FrameId,
        hash: ContentHash,
        scope: OriginsOption,
        resource_allow_origin: Option<&str>,
    ) -> Option<StoreSink> {
        let (info, caller) = self.caller(frame)?;
        let ceiling = AllowOriginCeiling::from_header(resource_allow_origin);
        let options = self.inner.frames.create_options(&info, scope, ceiling);
        let handle = self.open_handle(caller, hash, HandleRequest::Create(options))?;
        let request = |request| BrokerToService::Call(HandleCall::CreateWritable { request, handle: handle.handle });
        match self.inner.call(request) {
            Some(CallResult::Writable { pipe }) => Some(StoreSink::new(pipe.into_endpoint(), handle)),
            _ => None,
        }
    }

    /// The document's record and the caller context the service sees (`None`: an unknown
    /// frame, or one that may not use COS).
    fn caller(&self, frame: FrameId) -> Option<(FrameInfo, CallerContext)> {
        let info = self.inner.frames.get(frame)?;
        let caller = info.authorize().ok()?;
        Some((info, caller))
    }

    fn open_handle(&self, caller: CallerContext, hash: ContentHash, kind: HandleRequest) -> Option<HeldHandle> {
        let (handle, generation) = {
            let mut state = self.inner.state.lock();
            let handle = HandleId(state.next_handle);
            state.next_handle += 1;
            (handle, state.service.as_ref()?.0)
        };
        let message = |request| BrokerToService::GetFileHandle { request, handle, caller, hash, kind };
        match self.inner.call(message)? {
            CallResult::Handle { handle: issued, .. } if issued == handle => {
                Some(HeldHandle { loader: self.inner.clone(), handle, generation })
            }
            CallResult::Handle { handle: issued, .. } => {
                tracing::error!(issued = issued.0, "the service answered the loader with a handle id it was not given");
                None
            }
            _ => None,
        }
    }

    /// The service generation the loader's connection goes to, if it has one.
    pub(crate) fn bound_generation(&self) -> Option<u64> {
        self.inner.state.lock().service.as_ref().map(|(generation, _)| *generation)
    }

    /// Makes `connection` (to service generation `generation`) the one requests go to and
    /// returns its receiving side for [`serve_replies`](Self::serve_replies); `None` if one of
    /// this or a newer generation is in place.
    pub(crate) fn attach_service(&self, generation: u64, connection: ServiceConnection) -> Option<ServiceConnection> {
        let receiver = connection.try_clone().ok()?;
        let mut state = self.inner.state.lock();
        if state.service.as_ref().is_some_and(|(current, _)| *current >= generation) {
            return None;
        }
        if let Some((_, old)) = state.service.replace((generation, Arc::new(connection))) {
            old.endpoint().shutdown();
        }
        Some(receiver)
    }

    /// Hands the service's replies to the calls waiting for them until the connection breaks;
    /// then every call still waiting becomes a miss / a skipped store.
    pub(crate) fn serve_replies(&self, generation: u64, receiver: ServiceConnection) {
        loop {
            match receiver.recv() {
                Ok(ServiceToBroker::Reply(reply)) => {
                    let waiting = self.inner.state.lock().pending.remove(&reply.request);
                    if let Some((_, waiting)) = waiting {
                        let _ = waiting.send(reply.result);
                    }
                }
                Ok(ServiceToBroker::BadMessage { reason }) => {
                    // The loader writes its data pipes itself; the service saw a bug, not an attack.
                    tracing::error!(%reason, "the storage service reported the loader's data pipe");
                }
                Err(error) => {
                    if !matches!(error, IpcError::Disconnected) {
                        tracing::error!(%error, "unreadable reply from the service to the loader");
                    }
                    break;
                }
            }
        }
        self.service_lost(generation);
    }

    /// The service of `generation` went away: calls waiting on it fail (their senders drop).
    pub(crate) fn service_lost(&self, generation: u64) {
        let mut state = self.inner.state.lock();
        if state.service.as_ref().is_some_and(|(current, _)| *current == generation) {
            state.service = None;
        }
        state.pending.retain(|_, (sent_to, _)| *sent_to != generation);
    }
}

impl LoaderInner {
    /// Sends a request on the current connection and waits for its answer; `None` if there is
    /// no connection or it went away before answering.
    fn call(&self, make: impl FnOnce(RequestId) -> BrokerToService) -> Option<CallResult> {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        let (request, connection) = {
            let mut state = self.state.lock();
            let (generation, connection) = state.service.clone()?;
            let request = RequestId(state.next_request);
            state.next_request += 1;
            state.pending.insert(request, (generation, sender));
            (request, connection)
        };
        if connection.send(make(request)).is_err() {
            self.state.lock().pending.remove(&request);
            return None;
        }
        receiver.recv().ok()
    }
}

/// Why a body or a store did not complete (for the embedder's log; never shown to a page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoaderError {
    /// The service failed the read or the write, or went away.
    #[error("the storage service failed: {0}")]
    Service(CosError),
    /// Whoever consumed the body stopped taking bytes.
    #[error("the body's consumer went away")]
    ConsumerGone,
}
