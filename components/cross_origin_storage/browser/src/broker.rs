//! One broker stub per renderer process: the only way a renderer reaches the storage service.
//!
//! The broker owns the renderer's handle ids. It numbers them itself, in order, for the
//! renderer's whole life, and hands the service the id to use: a restarted service therefore
//! never issues an id the renderer already holds, and an id from before the restart can only ever
//! answer `AbortError`. Each id is bound to the origin and partition that opened it; a call on it
//! from any other document of the renderer is a bad message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cos_common::interface::{
    BrokerToService, CallResult, FrameId, HandleCall, HandleId, HandleRequest, RendererId, RendererToBroker, Reply,
    RequestId, ServiceToBroker,
};
use cos_common::{CosError, NotAllowedKind, Origin, Partition};
use cos_ipc::{Endpoint, IpcError, Peer, Pipe, report_bad_message};
use parking_lot::Mutex;

use crate::frame_table::{ContextKind, FrameInfo, FrameOrigin, FrameTable};

/// Requests a renderer may have outstanding at once. `cos_renderer` never exceeds it (it queues),
/// so a renderer that does is misbehaving.
pub const MAX_IN_FLIGHT_PER_RENDERER: usize = 256;

pub(crate) type ServiceConnection = Pipe<BrokerToService, ServiceToBroker>;

/// Who opened a handle: only documents of this origin and partition may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HandleOwner {
    origin: Origin,
    partition: Partition,
}

/// The broker's view of one renderer's handles and requests.
#[derive(Default)]
struct BrokerState {
    /// The service connection requests go to, and its generation.
    service: Option<(u64, Arc<ServiceConnection>)>,
    /// Requests forwarded and not yet answered.
    in_flight: HashSet<RequestId>,
    /// Handles the current service generation issued.
    handles: HashMap<HandleId, HandleOwner>,
    /// `getFileHandle` requests in flight, with the id and owner their handle would get.
    issuing: HashMap<RequestId, (HandleId, HandleOwner)>,
    /// Ids below this were issued before the current service generation started.
    current_from: u64,
    /// The next id to issue (ids start at 1 and are never issued twice).
    next_handle: u64,
}

impl BrokerState {
    /// A new service generation: every handle of the old one is stale from now on.
    fn forget_handles(&mut self) {
        self.handles.clear();
        self.issuing.clear();
        self.current_from = self.next_handle;
    }
}

/// What to do with a call on a handle id.
enum Route {
    /// Forward it to the current service.
    Forward(Arc<ServiceConnection>),
    /// Answer it here.
    Answer(CosError),
}

pub(crate) struct BrokerStub {
    renderer: RendererId,
    peer: Arc<Peer>,
    to_renderer: Pipe<Reply, RendererToBroker>,
    frames: Arc<FrameTable>,
    state: Mutex<BrokerState>,
    /// Whether this renderer's documents get lookup bindings: not over a bridged link, which
    /// carries only pipes the bridge relays itself.
    bindings: bool,
    /// Messages read from the renderer (test seam: lookups over a binding leave it still).
    #[cfg(feature = "testing")]
    messages: std::sync::atomic::AtomicU64,
}

impl BrokerStub {
    #[cfg(test)]
    pub(crate) fn new(renderer: RendererId, endpoint: Endpoint, frames: Arc<FrameTable>, peer: Arc<Peer>) -> Arc<Self> {
        Self::with_bindings(renderer, endpoint, frames, peer, true)
    }

    /// A broker whose documents get lookup bindings only if `bindings`.
    pub(crate) fn with_bindings(
        renderer: RendererId,
        endpoint: Endpoint,
        frames: Arc<FrameTable>,
        peer: Arc<Peer>,
        bindings: bool,
    ) -> Arc<Self> {
        peer.add_endpoint(&endpoint);
        Arc::new(Self {
            renderer,
            peer,
            to_renderer: Pipe::new(endpoint),
            frames,
            state: Mutex::new(BrokerState { next_handle: 1, current_from: 1, ..BrokerState::default() }),
            bindings,
            #[cfg(feature = "testing")]
            messages: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Messages read from the renderer so far.
    #[cfg(feature = "testing")]
    pub(crate) fn messages_read(&self) -> u64 {
        self.messages.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn renderer(&self) -> RendererId {
        self.renderer
    }

    /// Serves the renderer's messages until it goes away or misbehaves. `on_exit` runs once,
    /// after the loop ends.
    pub(crate) fn run_renderer_loop(self: &Arc<Self>, on_exit: impl FnOnce()) {
        let receiver = match self.to_renderer.try_clone() {
            Ok(receiver) => receiver,
            Err(error) => {
                tracing::error!(renderer = self.renderer.0, %error, "could not read from the renderer");
                return on_exit();
            }
        };
        loop {
            // A renderer's message carries no pipes, so one with attachments does not decode.
            match receiver.recv() {
                Ok(message) => {
                    if let Err(reason) = self.handle(message) {
                        self.bad_message(reason);
                        break;
                    }
                }
                Err(IpcError::Disconnected) => break,
                Err(error) if error.is_peer_misbehaviour() => {
                    self.bad_message(&format!("undecodable message: {error}"));
                    break;
                }
                Err(error) => {
                    tracing::warn!(renderer = self.renderer.0, %error, "renderer pipe failed");
                    break;
                }
            }
        }
        // The renderer is gone: dropping the service connection releases its handles there.
        if let Some((_, connection)) = self.state.lock().service.take() {
            connection.endpoint().shutdown();
        }
        on_exit();
    }

    fn bad_message(&self, reason: &str) {
        report_bad_message(&self.peer, reason);
    }

    /// The record of `frame`, which must be one of this renderer's documents.
    fn own_frame(&self, frame: FrameId) -> Result<FrameInfo, &'static str> {
        let info = self.frames.get(frame).ok_or("unknown frame id")?;
        if info.renderer != self.renderer {
            return Err("frame id of another renderer");
        }
        Ok(info)
    }

    /// Err(reason) means the renderer misbehaved.
    fn handle(&self, message: RendererToBroker) -> Result<(), &'static str> {
        #[cfg(feature = "testing")]
        self.messages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match message {
            RendererToBroker::Bind { request, frame } => self.bind_document(request, frame),
            RendererToBroker::GetFileHandle { request, frame, hash, create, origins } => {
                let info = self.own_frame(frame)?;
                let caller = match info.authorize() {
                    Ok(caller) => caller,
                    Err(error) => return self.reply(request, CallResult::Failed(error)),
                };
                let kind = if create {
                    let ceiling = info.allow_origin_ceiling.clone();
                    HandleRequest::Create(self.frames.create_options(&info, origins, ceiling))
                } else {
                    HandleRequest::Read
                };
                let owner = HandleOwner { origin: caller.origin().clone(), partition: caller.partition() };
                let connection = {
                    let mut state = self.state.lock();
                    let connection = Self::admit(&mut state, request)?;
                    let handle = HandleId(state.next_handle);
                    state.next_handle += 1;
                    if connection.is_some() {
                        state.issuing.insert(request, (handle, owner));
                    }
                    connection.map(|connection| (connection, handle))
                };
                let message = connection.map(|(connection, handle)| {
                    (connection, BrokerToService::GetFileHandle { request, handle, caller, hash, kind })
                });
                self.send(request, message)
            }
            RendererToBroker::Call {
                frame,
                call: call @ (HandleCall::GetFile { request, handle } | HandleCall::CreateWritable { request, handle }),
            } => self.call_on_handle(request, frame, handle, call),
            RendererToBroker::Call { frame: _, call: call @ HandleCall::ReleaseHandle { handle } } => {
                let connection = {
                    let mut state = self.state.lock();
                    if state.handles.remove(&handle).is_some() {
                        state.service.as_ref().map(|(_, connection)| connection.clone())
                    } else if handle.0 < state.current_from {
                        None // issued before the service restarted: nothing to release there
                    } else {
                        return Err("release of a handle this renderer does not hold");
                    }
                };
                if let Some(connection) = connection {
                    let _ = connection.send(BrokerToService::Call(call));
                }
                Ok(())
            }
        }
    }

    /// Makes document `frame` a lookup binding: a new pipe, one end to the service with the
    /// document's caller context (fixed here, for the binding's life), the other to the renderer.
    /// The frame table holds the browser's handle on the renderer's end and closes it when the
    /// document navigates, goes away or its record changes. Nothing waits for the
    /// service: a binding it never serves just disconnects, and the renderer uses the broker.
    fn bind_document(&self, request: RequestId, frame: FrameId) -> Result<(), &'static str> {
        let info = self.own_frame(frame)?;
        let caller = match info.authorize() {
            Ok(caller) => caller,
            Err(error) => return self.reply(request, CallResult::Failed(error)),
        };
        if !self.bindings {
            return self.reply(request, CallResult::Failed(CosError::Unknown));
        }
        let Some(connection) = self.state.lock().service.as_ref().map(|(_, connection)| connection.clone()) else {
            return self.reply(request, CallResult::Failed(CosError::Abort));
        };
        // Of the service connection's transport: the service end must travel over it. An
        // in-process end cannot reach a renderer in another process: that renderer keeps the
        // broker path.
        let in_process = connection.endpoint().is_in_process();
        if in_process && !self.to_renderer.endpoint().is_in_process() {
            return self.reply(request, CallResult::Failed(CosError::Unknown));
        }
        let pair = if in_process { Ok(Endpoint::pair_in_process()) } else { Endpoint::pair() };
        let Ok((renderer_end, service_end)) = pair else {
            return self.reply(request, CallResult::Failed(CosError::Abort));
        };
        let Ok(closer) = renderer_end.try_clone() else {
            return self.reply(request, CallResult::Failed(CosError::Abort));
        };
        // Registered before either end is handed out: a document that changed meanwhile gets no
        // binding, and one that changes later has it closed.
        if !self.frames.open_binding(frame, &info, closer) {
            return self.reply(request, CallResult::Failed(CosError::Abort));
        }
        if connection.send(BrokerToService::BindDocument { frame, caller, pipe: service_end.into() }).is_err() {
            return self.reply(request, CallResult::Failed(CosError::Abort));
        }
        self.reply(request, CallResult::Bound { pipe: renderer_end.into() })
    }

    /// Counts `request` as in flight and returns the connection to send it on (`None`: the service
    /// is down or restarting, and the caller answers `AbortError`). Err: the renderer broke the
    /// in-flight rules.
    fn admit(state: &mut BrokerState, request: RequestId) -> Result<Option<Arc<ServiceConnection>>, &'static str> {
        if state.in_flight.len() >= MAX_IN_FLIGHT_PER_RENDERER {
            return Err("too many requests in flight");
        }
        if state.in_flight.contains(&request) {
            return Err("request id reused while in flight");
        }
        let connection = state.service.as_ref().map(|(_, connection)| connection.clone());
        if connection.is_some() {
            state.in_flight.insert(request);
        }
        Ok(connection)
    }

    /// A call on handle `handle` from document `frame`: forwarded if the handle is live and the
    /// document may use it; `AbortError` for a handle issued before the service restarted; a bad
    /// message for a handle this renderer does not hold or a document of another origin.
    fn call_on_handle(
        &self,
        request: RequestId,
        frame: FrameId,
        handle: HandleId,
        call: HandleCall,
    ) -> Result<(), &'static str> {
        let info = self.own_frame(frame)?;
        let route = {
            let mut state = self.state.lock();
            match state.handles.get(&handle) {
                Some(owner) => {
                    let same_document_origin =
                        info.origin == FrameOrigin::Tuple(owner.origin.clone()) && info.partition == owner.partition;
                    if !same_document_origin {
                        return Err("a handle used by a document of another origin or partition");
                    }
                    if info.kind == ContextKind::ServiceWorker {
                        Route::Answer(CosError::NotAllowed(NotAllowedKind::ServiceWorker))
                    } else {
                        match Self::admit(&mut state, request)? {
                            Some(connection) => Route::Forward(connection),
                            None => Route::Answer(CosError::Abort),
                        }
                    }
                }
                None if handle.0 < state.current_from => Route::Answer(CosError::Abort),
                None => return Err("a handle this renderer does not hold"),
            }
        };
        match route {
            Route::Forward(connection) => self.send(request, Some((connection, BrokerToService::Call(call)))),
            Route::Answer(error) => self.reply(request, CallResult::Failed(error)),
        }
    }

    /// Sends an admitted request; if it cannot reach the service, the caller sees `AbortError`
    /// and the next call reconnects.
    fn send(
        &self,
        request: RequestId,
        message: Option<(Arc<ServiceConnection>, BrokerToService)>,
    ) -> Result<(), &'static str> {
        let sent = message.map(|(connection, message)| connection.send(message));
        if !matches!(sent, Some(Ok(()))) {
            let mut state = self.state.lock();
            state.in_flight.remove(&request);
            state.issuing.remove(&request);
            drop(state);
            return self.reply(request, CallResult::Failed(CosError::Abort));
        }
        Ok(())
    }

    fn reply(&self, request: RequestId, result: CallResult) -> Result<(), &'static str> {
        let _ = self.to_renderer.send(Reply { request, result });
        Ok(())
    }

    /// Makes `connection` (to service generation `generation`) the one requests go to, at once,
    /// and returns the receiving side for [`serve_replies`](Self::serve_replies). `None` if a
    /// connection of this or a newer generation is already in place.
    pub(crate) fn attach_service(&self, generation: u64, connection: ServiceConnection) -> Option<ServiceConnection> {
        let receiver = match connection.try_clone() {
            Ok(receiver) => receiver,
            Err(error) => {
                tracing::error!(%error, "could not read from the service connection");
                return None;
            }
        };
        let mut state = self.state.lock();
        if state.service.as_ref().is_some_and(|(current, _)| *current >= generation) {
            return None;
        }
        if let Some((_, old)) = state.service.replace((generation, Arc::new(connection))) {
            old.endpoint().shutdown();
        }
        state.forget_handles();
        Some(receiver)
    }

    /// Forwards the service's replies (with their data pipes) to the renderer, and acts on its
    /// bad-message reports, until the connection breaks or the service sends something that does
    /// not decode (a reply with the wrong pipes included: which request it answers is then
    /// unknown, so the connection is given up); then fails whatever was still in flight.
    pub(crate) fn serve_replies(&self, generation: u64, receiver: ServiceConnection) {
        loop {
            match receiver.recv() {
                Ok(ServiceToBroker::Reply(reply)) => self.deliver(generation, reply),
                Ok(ServiceToBroker::BadMessage { reason }) => {
                    // Only the current generation speaks for this renderer's pipes.
                    if self.is_current(generation) {
                        self.bad_message(&reason);
                    }
                }
                Err(error) => {
                    if !matches!(error, IpcError::Disconnected) {
                        tracing::error!(renderer = self.renderer.0, %error, "unreadable reply from the service");
                    }
                    break;
                }
            }
        }
        self.service_lost(generation);
    }

    fn is_current(&self, generation: u64) -> bool {
        self.state.lock().service.as_ref().is_some_and(|(current, _)| *current == generation)
    }

    fn deliver(&self, generation: u64, mut reply: Reply) {
        {
            let mut state = self.state.lock();
            if !state.in_flight.remove(&reply.request) {
                return; // already answered with AbortError
            }
            let current = state.service.as_ref().is_some_and(|(g, _)| *g == generation);
            let issuing = state.issuing.remove(&reply.request);
            if !current {
                reply.result = CallResult::Failed(CosError::Abort);
            } else if matches!(reply.result, CallResult::Bound { .. }) {
                // Only the broker makes bindings; a service answering with one is broken.
                tracing::error!(renderer = self.renderer.0, "the service answered with a binding");
                reply.result = CallResult::Failed(CosError::Unknown);
            } else if let CallResult::Handle { handle, .. } = reply.result {
                match issuing {
                    Some((expected, owner)) if expected == handle => {
                        state.handles.insert(handle, owner);
                    }
                    _ => {
                        tracing::error!(
                            renderer = self.renderer.0,
                            "the service answered with a handle id it was not given"
                        );
                        reply.result = CallResult::Failed(CosError::Unknown);
                    }
                }
            }
        }
        if let Err(error) = self.to_renderer.send(reply) {
            tracing::debug!(renderer = self.renderer.0, %error, "renderer gone before its reply");
        }
    }

    /// Fails every call in flight with `AbortError` (SPEC §8) if `generation` is still current;
    /// its handles become stale.
    pub(crate) fn service_lost(&self, generation: u64) {
        let aborted: Vec<RequestId> = {
            let mut state = self.state.lock();
            if state.service.as_ref().is_some_and(|(current, _)| *current == generation) {
                state.service = None;
            } else if state.service.is_some() {
                return;
            }
            state.forget_handles();
            state.in_flight.drain().collect()
        };
        for request in aborted {
            let _ = self.reply(request, CallResult::Failed(CosError::Abort));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use cos_common::{CallerContext, ContentHash, OriginsOption};

    use super::*;
    use crate::frame_table::FrameInfo;

    struct Fixture {
        renderer: Pipe<RendererToBroker, Reply>,
        service: Pipe<ServiceToBroker, BrokerToService>,
        terminated: Arc<AtomicBool>,
        stub: Arc<BrokerStub>,
    }

    impl Fixture {
        /// The fake service answers `reply`.
        fn answer(&self, reply: Reply) {
            self.service.send(ServiceToBroker::Reply(reply)).unwrap();
        }

        /// A restart: the broker loses generation `lost` and is bound to `lost + 1`.
        fn restart(&mut self, lost: u64) {
            self.stub.service_lost(lost);
            let (service_end, fake_service_end) = Endpoint::pair_in_process();
            let receiver = self.stub.attach_service(lost + 1, Pipe::new(service_end)).unwrap();
            let stub = self.stub.clone();
            std::thread::spawn(move || stub.serve_replies(lost + 1, receiver));
            self.service = Pipe::new(fake_service_end);
        }

        /// Asks for a handle from `frame` and lets the fake service issue it.
        fn open_handle(&self, request: u64, frame: u64) -> HandleId {
            self.renderer.send(get(request, frame)).unwrap();
            let forwarded = self.service.recv_timeout(Duration::from_secs(10)).unwrap();
            let BrokerToService::GetFileHandle { handle, .. } = forwarded else { panic!("{forwarded:?}") };
            self.answer(Reply { request: RequestId(request), result: CallResult::Handle { handle, create: false } });
            let reply = self.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(reply.result, CallResult::Handle { handle, create: false });
            handle
        }
    }

    /// A broker for renderer 1 (frames 1, 2, 3 and 4; frame 9 belongs to renderer 2), bound to a
    /// fake service. Frames 1, 2 and 3 are `https://a.example` (2 with COS blocked by policy, 3
    /// off the record); frame 4 is `https://b.example`.
    fn fixture() -> Fixture {
        let frames = Arc::new(FrameTable::default());
        let origin = Origin::from_url("https://a.example").unwrap();
        frames.insert(FrameId(1), FrameInfo::top_level(RendererId(1), origin.clone()));
        let mut blocked = FrameInfo::top_level(RendererId(1), origin.clone());
        blocked.cos_allowed = false;
        frames.insert(FrameId(2), blocked);
        let mut private = FrameInfo::top_level(RendererId(1), origin.clone());
        private.partition = Partition::OffTheRecord(cos_common::OffTheRecordProfileId(1));
        frames.insert(FrameId(3), private);
        frames.insert(FrameId(4), FrameInfo::top_level(RendererId(1), Origin::from_url("https://b.example").unwrap()));
        frames.insert(FrameId(9), FrameInfo::top_level(RendererId(2), origin));
        let terminated = Arc::new(AtomicBool::new(false));
        let flag = terminated.clone();
        let peer = Peer::new("renderer-1", move || flag.store(true, Ordering::SeqCst));
        let (renderer_end, broker_end) = Endpoint::pair_in_process();
        let (service_end, fake_service_end) = Endpoint::pair_in_process();
        let stub = BrokerStub::new(RendererId(1), broker_end, frames, peer);
        let loop_stub = stub.clone();
        std::thread::spawn(move || loop_stub.run_renderer_loop(|| {}));
        let receiver = stub.attach_service(1, Pipe::new(service_end)).unwrap();
        let replies = stub.clone();
        std::thread::spawn(move || replies.serve_replies(1, receiver));
        Fixture { renderer: Pipe::new(renderer_end), service: Pipe::new(fake_service_end), terminated, stub }
    }

    fn get(request: u64, frame: u64) -> RendererToBroker {
        RendererToBroker::GetFileHandle {
            request: RequestId(request),
            frame: FrameId(frame),
            hash: ContentHash::from_bytes([7; 32]),
            create: false,
            origins: OriginsOption::Omitted,
        }
    }

    fn release(handle: HandleId) -> RendererToBroker {
        RendererToBroker::Call { frame: FrameId(1), call: HandleCall::ReleaseHandle { handle } }
    }

    fn get_file(request: u64, handle: HandleId) -> RendererToBroker {
        RendererToBroker::Call { frame: FrameId(1), call: HandleCall::GetFile { request: RequestId(request), handle } }
    }

    fn wait_terminated(fixture: &Fixture) -> bool {
        for _ in 0..500 {
            if fixture.terminated.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_renderer_cannot_claim_a_user_activation() {
        let fixture = fixture();
        // Whatever a compromised renderer sends, nothing in it speaks of activation: the scope it
        // asks for reaches the service only as the browser's record of the document allows.
        let create = |request: u64| RendererToBroker::GetFileHandle {
            request: RequestId(request),
            frame: FrameId(1),
            hash: ContentHash::from_bytes([7; 32]),
            create: true,
            origins: OriginsOption::Global,
        };
        let forwarded_scope = |request: u64| {
            fixture.renderer.send(create(request)).unwrap();
            match fixture.service.recv_timeout(Duration::from_secs(10)).unwrap() {
                BrokerToService::GetFileHandle { kind: HandleRequest::Create(options), .. } => {
                    (options.origins, options.warnings)
                }
                other => panic!("{other:?}"),
            }
        };
        use cos_common::interface::{WriteWarning, WriteWarnings};
        assert_eq!(forwarded_scope(1), (OriginsOption::Omitted, WriteWarning::NoUserActivation.into()));
        fixture.stub.frames.record_user_activation(FrameId(1));
        assert_eq!(forwarded_scope(2), (OriginsOption::Global, WriteWarnings::none()));
        assert!(!fixture.terminated.load(Ordering::SeqCst));
    }

    #[test]
    fn requests_reach_the_service_with_the_callers_context() {
        let fixture = fixture();
        fixture.renderer.send(get(1, 1)).unwrap();
        let forwarded = fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        let BrokerToService::GetFileHandle { request, handle, caller, kind, .. } = forwarded else {
            panic!("{forwarded:?}")
        };
        assert_eq!(request, RequestId(1));
        assert_eq!(handle, HandleId(1), "the broker numbers handles");
        assert_eq!(caller.origin().to_string(), "https://a.example");
        assert_eq!(caller.nik().top_level_site.to_string(), "https://a.example");
        assert_eq!(kind, HandleRequest::Read);
        // The service's answer goes back to the renderer.
        fixture.answer(Reply { request, result: CallResult::Handle { handle, create: false } });
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply, Reply { request, result: CallResult::Handle { handle, create: false } });
    }

    #[test]
    fn the_policy_is_applied_before_the_service_sees_anything() {
        let fixture = fixture();
        fixture.renderer.send(get(1, 2)).unwrap();
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result, CallResult::Failed(CosError::NotAllowed(NotAllowedKind::PermissionsPolicy)));
        assert!(matches!(fixture.service.recv_timeout(Duration::from_millis(200)), Err(IpcError::Timeout)));
        assert!(!fixture.terminated.load(Ordering::SeqCst));
    }

    #[test]
    fn another_renderers_frame_is_a_bad_message() {
        let fixture = fixture();
        fixture.renderer.send(get(1, 9)).unwrap();
        assert!(wait_terminated(&fixture));
        assert!(matches!(fixture.renderer.recv_timeout(Duration::from_secs(10)), Err(IpcError::Disconnected)));
    }

    #[test]
    fn unknown_frames_and_attachments_are_bad_messages() {
        let fixture = fixture();
        fixture.renderer.send(get(1, 12345)).unwrap();
        assert!(wait_terminated(&fixture));
        let second = fixture_with_attachment();
        assert!(wait_terminated(&second));
    }

    fn fixture_with_attachment() -> Fixture {
        let fixture = fixture();
        let (stray, _keep) = Endpoint::pair_in_process();
        let bytes = cos_ipc::encode(&get(1, 1)).unwrap();
        fixture.renderer.endpoint().send(&bytes, vec![stray]).unwrap();
        fixture
    }

    #[test]
    fn reusing_a_request_id_in_flight_is_a_bad_message() {
        let fixture = fixture();
        fixture.renderer.send(get(5, 1)).unwrap();
        fixture.renderer.send(get(5, 1)).unwrap();
        assert!(wait_terminated(&fixture));
    }

    #[test]
    fn more_than_the_in_flight_bound_is_a_bad_message() {
        let fixture = fixture();
        // The fake service never answers, so every request stays in flight.
        for request in 0..MAX_IN_FLIGHT_PER_RENDERER as u64 {
            fixture.renderer.send(get(request, 1)).unwrap();
        }
        for _ in 0..MAX_IN_FLIGHT_PER_RENDERER {
            fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert!(!fixture.terminated.load(Ordering::SeqCst), "up to the bound is fine");
        fixture.renderer.send(get(100_000, 1)).unwrap();
        assert!(wait_terminated(&fixture));
    }

    #[test]
    fn losing_the_service_fails_calls_in_flight_with_abort_error() {
        let fixture = fixture();
        fixture.renderer.send(get(1, 1)).unwrap();
        fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(fixture.service);
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply, Reply { request: RequestId(1), result: CallResult::Failed(CosError::Abort) });
        // With no service, new calls fail the same way (the supervisor rebinds after a restart).
        fixture.renderer.send(get(2, 1)).unwrap();
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result, CallResult::Failed(CosError::Abort));
    }

    /// The service's replies are data, but a reply whose pipes do not match its result does not
    /// decode: no renderer ever receives a pipe it was not meant to, and since the request it
    /// answers is unknown, the connection is given up and the calls in flight fail with
    /// `AbortError` (the renderer itself did nothing wrong).
    #[test]
    fn a_reply_with_the_wrong_pipes_fails_the_calls_in_flight() {
        let (spare, _peer) = Endpoint::pair_in_process();
        let writable = ServiceToBroker::Reply(Reply {
            request: RequestId(1),
            result: CallResult::Writable { pipe: spare.into() },
        });
        let (missing_pipe, _) = cos_ipc::encode_with_attachments(writable).unwrap();
        let handle = ServiceToBroker::Reply(Reply {
            request: RequestId(1),
            result: CallResult::Handle { handle: HandleId(1), create: false },
        });
        let stray_pipe = cos_ipc::encode(&handle).unwrap();
        for (bytes, attachments) in [(missing_pipe, 0), (stray_pipe, 1)] {
            let fixture = fixture();
            fixture.renderer.send(get(1, 1)).unwrap();
            fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
            let pipes: Vec<Endpoint> = (0..attachments).map(|_| Endpoint::pair_in_process().0).collect();
            fixture.service.endpoint().send(&bytes, pipes).unwrap();
            let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(reply, Reply { request: RequestId(1), result: CallResult::Failed(CosError::Abort) });
            assert!(!fixture.terminated.load(Ordering::SeqCst), "the renderer did nothing wrong");
        }
    }

    #[test]
    fn handle_ids_are_never_reused_and_a_restart_makes_the_old_ones_abort() {
        let mut fixture = fixture();
        let first = fixture.open_handle(1, 1);
        let second = fixture.open_handle(2, 1);
        assert_eq!((first, second), (HandleId(1), HandleId(2)));
        fixture.restart(1);
        // The new service is told to number from where the old one stopped.
        let third = fixture.open_handle(3, 1);
        assert_eq!(third, HandleId(3), "never an id the renderer may still hold");
        // An old id is answered here, never forwarded: it cannot reach the new service's handles.
        fixture.renderer.send(get_file(4, first)).unwrap();
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply, Reply { request: RequestId(4), result: CallResult::Failed(CosError::Abort) });
        fixture.renderer.send(release(first)).unwrap();
        // The live one is forwarded.
        fixture.renderer.send(get_file(5, third)).unwrap();
        let forwarded = fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(forwarded, BrokerToService::Call(HandleCall::GetFile { request: RequestId(5), handle: third }));
        assert!(!fixture.terminated.load(Ordering::SeqCst));
    }

    #[test]
    fn a_handle_serves_only_documents_of_the_origin_and_partition_that_opened_it() {
        for (frame, allowed) in [(2, true), (3, false), (4, false)] {
            let fixture = fixture();
            let handle = fixture.open_handle(1, 1);
            let call = HandleCall::CreateWritable { request: RequestId(2), handle };
            fixture.renderer.send(RendererToBroker::Call { frame: FrameId(frame), call }).unwrap();
            if allowed {
                // Same origin and partition (a transferred handle): forwarded, whatever its policy.
                let forwarded = fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(forwarded, BrokerToService::Call(call));
                assert!(!fixture.terminated.load(Ordering::SeqCst));
            } else {
                assert!(wait_terminated(&fixture), "frame {frame}");
                let forwarded = fixture.service.recv_timeout(Duration::from_millis(200));
                assert!(forwarded.is_err(), "nothing reaches the service: {forwarded:?}");
            }
        }
    }

    #[test]
    fn a_handle_id_never_issued_or_released_twice_is_a_bad_message() {
        let fixture = fixture();
        fixture.renderer.send(get_file(1, HandleId(77))).unwrap();
        assert!(wait_terminated(&fixture));
        let fixture = self::fixture();
        let handle = fixture.open_handle(1, 1);
        fixture.renderer.send(release(handle)).unwrap();
        let forwarded = fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(forwarded, BrokerToService::Call(HandleCall::ReleaseHandle { handle }));
        fixture.renderer.send(release(handle)).unwrap();
        assert!(wait_terminated(&fixture));
    }

    #[test]
    fn a_bad_message_report_counts_only_from_the_current_connection_and_names_only_its_renderer() {
        let mut fixture = fixture();
        let stale = fixture.service.try_clone().unwrap();
        fixture.restart(1);
        // The old generation's connection is shut: a report queued on it reaches nobody.
        let _ = stale.send(ServiceToBroker::BadMessage { reason: "stale".into() });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!fixture.terminated.load(Ordering::SeqCst));
        fixture.service.send(ServiceToBroker::BadMessage { reason: "malformed write frame".into() }).unwrap();
        assert!(wait_terminated(&fixture));
    }

    /// Asks for frame `frame`'s binding; returns the service's view of it (the context it was
    /// bound to and its end) and the renderer's end.
    fn bind(
        fixture: &Fixture,
        request: u64,
        frame: u64,
    ) -> (CallerContext, Pipe<Reply, RendererToBroker>, Pipe<RendererToBroker, Reply>) {
        fixture.renderer.send(RendererToBroker::Bind { request: RequestId(request), frame: FrameId(frame) }).unwrap();
        let forwarded = fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        let BrokerToService::BindDocument { frame: bound, caller, pipe } = forwarded else { panic!("{forwarded:?}") };
        assert_eq!(bound, FrameId(frame));
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.request, RequestId(request));
        let CallResult::Bound { pipe: renderer_end } = reply.result else { panic!("{:?}", reply.result) };
        (caller, Pipe::new(pipe.into_endpoint()), Pipe::new(renderer_end.into_endpoint()))
    }

    #[test]
    fn a_binding_is_bound_by_the_broker_to_its_documents_context() {
        let fixture = fixture();
        let (caller, service_end, renderer_end) = bind(&fixture, 1, 4);
        assert_eq!(caller.origin().to_string(), "https://b.example", "frame 4's record, not the renderer's word");
        assert_eq!(caller.partition(), Partition::Regular);
        // The two ends are one pipe: the renderer reaches the service without the broker.
        renderer_end.send(get(2, 4)).unwrap();
        assert_eq!(service_end.recv_timeout(Duration::from_secs(10)).unwrap(), get(2, 4));
        // A document the policy blocks gets no binding, and the service hears nothing.
        fixture.renderer.send(RendererToBroker::Bind { request: RequestId(3), frame: FrameId(2) }).unwrap();
        let reply = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result, CallResult::Failed(CosError::NotAllowed(NotAllowedKind::PermissionsPolicy)));
        assert!(matches!(fixture.service.recv_timeout(Duration::from_millis(200)), Err(IpcError::Timeout)));
        assert!(!fixture.terminated.load(Ordering::SeqCst));
        // Another renderer's document: a bad message.
        fixture.renderer.send(RendererToBroker::Bind { request: RequestId(4), frame: FrameId(9) }).unwrap();
        assert!(wait_terminated(&fixture));
    }

    /// A navigation (a new record), the document's removal or its renderer's end closes its
    /// binding: a lookup in flight is never answered on it, and the renderer cannot use it.
    #[test]
    fn a_binding_closes_with_its_document_and_a_lookup_in_flight_is_not_answered() {
        type Change = fn(&FrameTable);
        let changes: [(&str, Change); 3] = [
            ("navigated", |frames| {
                frames.insert(
                    FrameId(1),
                    FrameInfo::top_level(RendererId(1), Origin::from_url("https://c.example").unwrap()),
                )
            }),
            ("removed", |frames| frames.remove(FrameId(1))),
            ("renderer gone", |frames| frames.remove_renderer(RendererId(1))),
        ];
        for (what, change) in changes {
            let fixture = fixture();
            let (_, service_end, renderer_end) = bind(&fixture, 1, 1);
            renderer_end.send(get(2, 1)).unwrap();
            // The service has the lookup (in flight) when the document changes.
            assert_eq!(service_end.recv_timeout(Duration::from_secs(10)).unwrap(), get(2, 1));
            change(&fixture.stub.frames);
            let answer =
                Reply { request: RequestId(2), result: CallResult::Handle { handle: HandleId(1), create: false } };
            let _ = service_end.send(answer);
            let heard = renderer_end.recv_timeout(Duration::from_secs(10));
            assert!(matches!(heard, Err(IpcError::Disconnected)), "{what}: {heard:?}");
            assert!(renderer_end.send(get(3, 1)).is_err(), "{what}: the binding is unusable");
            assert!(matches!(service_end.recv_timeout(Duration::from_secs(10)), Err(IpcError::Disconnected)), "{what}");
        }
        // Another document's binding is untouched by a change of this one.
        let fixture = fixture();
        let (_, service_end, renderer_end) = bind(&fixture, 1, 4);
        fixture.stub.frames.remove(FrameId(1));
        renderer_end.send(get(2, 4)).unwrap();
        assert_eq!(service_end.recv_timeout(Duration::from_secs(10)).unwrap(), get(2, 4));
    }
}
