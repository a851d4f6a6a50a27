//! One broker stub per renderer process: the only way a renderer reaches the storage service.

use std::collections::HashSet;
use std::sync::Arc;

use cos_common::CosError;
use cos_common::interface::CreateOptions;
use cos_common::interface::{
    BrokerToService, CallResult, HandleRequest, RendererId, RendererToBroker, Reply, RequestId,
};
use cos_ipc::{Endpoint, IpcError, Peer, Pipe, report_bad_message};
use parking_lot::Mutex;

use crate::frame_table::FrameTable;

/// Requests a renderer may have outstanding at once. `cos_renderer` never exceeds it (it queues),
/// so a renderer that does is misbehaving.
pub const MAX_IN_FLIGHT_PER_RENDERER: usize = 256;

pub(crate) type ServiceConnection = Pipe<BrokerToService, Reply>;

pub(crate) struct BrokerStub {
    renderer: RendererId,
    peer: Arc<Peer>,
    to_renderer: Pipe<Reply, RendererToBroker>,
    frames: Arc<FrameTable>,
    service: Mutex<Option<(u64, Arc<ServiceConnection>)>>,
    in_flight: Mutex<HashSet<RequestId>>,
}

impl BrokerStub {
    pub(crate) fn new(renderer: RendererId, endpoint: Endpoint, frames: Arc<FrameTable>, peer: Arc<Peer>) -> Arc<Self> {
        peer.add_endpoint(&endpoint);
        Arc::new(Self {
            renderer,
            peer,
            to_renderer: Pipe::new(endpoint),
            frames,
            service: Mutex::new(None),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn renderer(&self) -> RendererId {
        self.renderer
    }

    pub(crate) fn peer(&self) -> &Arc<Peer> {
        &self.peer
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
            match receiver.recv() {
                Ok((message, attachments)) => {
                    if !attachments.is_empty() {
                        self.bad_message("a renderer never sends pipes to the broker");
                        break;
                    }
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
        if let Some((_, connection)) = self.service.lock().take() {
            connection.endpoint().shutdown();
        }
        on_exit();
    }

    fn bad_message(&self, reason: &str) {
        report_bad_message(&self.peer, reason);
    }

    /// Err(reason) means the renderer misbehaved.
    fn handle(&self, message: RendererToBroker) -> Result<(), &'static str> {
        match message {
            RendererToBroker::GetFileHandle { request, frame, hash, create, origins } => {
                let info = self.frames.get(frame).ok_or("unknown frame id")?;
                if info.renderer != self.renderer {
                    return Err("frame id of another renderer");
                }
                let caller = match info.authorize() {
                    Ok(caller) => caller,
                    Err(error) => return self.reply(request, CallResult::Failed(error)),
                };
                let kind = if create {
                    HandleRequest::Create(CreateOptions {
                        origins,
                        allow_origin_ceiling: info.allow_origin_ceiling.clone(),
                        document_url: info.url.clone(),
                    })
                } else {
                    HandleRequest::Read
                };
                self.forward(request, BrokerToService::GetFileHandle { request, caller, hash, kind })
            }
            RendererToBroker::GetFile { request, handle } => {
                self.forward(request, BrokerToService::GetFile { request, handle })
            }
            RendererToBroker::CreateWritable { request, handle } => {
                self.forward(request, BrokerToService::CreateWritable { request, handle })
            }
            RendererToBroker::ReleaseHandle { handle } => {
                if let Some(connection) = self.connection() {
                    let _ = connection.send(&BrokerToService::ReleaseHandle { handle }, vec![]);
                }
                Ok(())
            }
        }
    }

    fn connection(&self) -> Option<Arc<ServiceConnection>> {
        self.service.lock().as_ref().map(|(_, connection)| connection.clone())
    }

    fn forward(&self, request: RequestId, message: BrokerToService) -> Result<(), &'static str> {
        {
            let mut in_flight = self.in_flight.lock();
            if in_flight.len() >= MAX_IN_FLIGHT_PER_RENDERER {
                return Err("too many requests in flight");
            }
            if !in_flight.insert(request) {
                return Err("request id reused while in flight");
            }
        }
        let sent = self.connection().map(|connection| connection.send(&message, vec![]));
        if !matches!(sent, Some(Ok(()))) {
            // The service is down or restarting: the caller sees AbortError, the next call reconnects.
            self.in_flight.lock().remove(&request);
            return self.reply(request, CallResult::Failed(CosError::Abort));
        }
        Ok(())
    }

    fn reply(&self, request: RequestId, result: CallResult) -> Result<(), &'static str> {
        let _ = self.to_renderer.send(&Reply { request, result }, vec![]);
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
        let mut slot = self.service.lock();
        if slot.as_ref().is_some_and(|(current, _)| *current >= generation) {
            return None;
        }
        if let Some((_, old)) = slot.replace((generation, Arc::new(connection))) {
            old.endpoint().shutdown();
        }
        Some(receiver)
    }

    /// Forwards the service's replies (with their data pipes) to the renderer until the
    /// connection breaks, then fails whatever was still in flight.
    pub(crate) fn serve_replies(&self, generation: u64, receiver: ServiceConnection) {
        loop {
            match receiver.recv() {
                Ok((mut reply, attachments)) => {
                    if attachments.len() != reply.result.attachment_count() {
                        tracing::error!(renderer = self.renderer.0, "service reply with the wrong number of pipes");
                        reply.result = CallResult::Failed(CosError::Unknown);
                        drop(attachments);
                        self.deliver(reply, Vec::new());
                    } else {
                        self.deliver(reply, attachments);
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

    fn deliver(&self, reply: Reply, attachments: Vec<Endpoint>) {
        if !self.in_flight.lock().remove(&reply.request) {
            return; // already answered with AbortError
        }
        if let Err(error) = self.to_renderer.send(&reply, attachments) {
            tracing::debug!(renderer = self.renderer.0, %error, "renderer gone before its reply");
        }
    }

    /// Fails every call in flight with `AbortError` (SPEC §8) if `generation` is still current.
    pub(crate) fn service_lost(&self, generation: u64) {
        {
            let mut slot = self.service.lock();
            if slot.as_ref().is_some_and(|(current, _)| *current == generation) {
                *slot = None;
            } else if slot.is_some() {
                return;
            }
        }
        let aborted: Vec<RequestId> = self.in_flight.lock().drain().collect();
        for request in aborted {
            let _ = self.reply(request, CallResult::Failed(CosError::Abort));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use cos_common::interface::{FrameId, HandleId};
    use cos_common::{ContentHash, NotAllowedKind, Origin, OriginsOption};

    use super::*;
    use crate::frame_table::FrameInfo;

    struct Fixture {
        renderer: Pipe<RendererToBroker, Reply>,
        service: Pipe<Reply, BrokerToService>,
        terminated: Arc<AtomicBool>,
    }

    /// A broker for renderer 1 (frames 1 and 2; frame 9 belongs to renderer 2), bound to a fake
    /// service that only receives.
    fn fixture() -> Fixture {
        let frames = Arc::new(FrameTable::default());
        let origin = Origin::from_url("https://a.example").unwrap();
        frames.insert(FrameId(1), FrameInfo::top_level(RendererId(1), origin.clone()));
        let mut blocked = FrameInfo::top_level(RendererId(1), origin.clone());
        blocked.cos_allowed = false;
        frames.insert(FrameId(2), blocked);
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
        std::thread::spawn(move || stub.serve_replies(1, receiver));
        Fixture { renderer: Pipe::new(renderer_end), service: Pipe::new(fake_service_end), terminated }
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
    fn requests_reach_the_service_with_the_callers_context() {
        let fixture = fixture();
        fixture.renderer.send(&get(1, 1), vec![]).unwrap();
        let (forwarded, _) = fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        let BrokerToService::GetFileHandle { request, caller, kind, .. } = forwarded else { panic!("{forwarded:?}") };
        assert_eq!(request, RequestId(1));
        assert_eq!(caller.origin().to_string(), "https://a.example");
        assert_eq!(caller.nik().top_level_site.to_string(), "https://a.example");
        assert_eq!(kind, HandleRequest::Read);
        // The service's answer goes back to the renderer.
        let reply = Reply { request, result: CallResult::Handle { handle: HandleId(4), create: false } };
        fixture.service.send(&reply, vec![]).unwrap();
        assert_eq!(fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap().0, reply);
    }

    #[test]
    fn the_policy_is_applied_before_the_service_sees_anything() {
        let fixture = fixture();
        fixture.renderer.send(&get(1, 2), vec![]).unwrap();
        let (reply, _) = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result, CallResult::Failed(CosError::NotAllowed(NotAllowedKind::PermissionsPolicy)));
        assert!(matches!(fixture.service.recv_timeout(Duration::from_millis(200)), Err(IpcError::Timeout)));
        assert!(!fixture.terminated.load(Ordering::SeqCst));
    }

    #[test]
    fn another_renderers_frame_is_a_bad_message() {
        let fixture = fixture();
        fixture.renderer.send(&get(1, 9), vec![]).unwrap();
        assert!(wait_terminated(&fixture));
        assert!(matches!(fixture.renderer.recv_timeout(Duration::from_secs(10)), Err(IpcError::Disconnected)));
    }

    #[test]
    fn unknown_frames_and_attachments_are_bad_messages() {
        let fixture = fixture();
        fixture.renderer.send(&get(1, 12345), vec![]).unwrap();
        assert!(wait_terminated(&fixture));
        let second = fixture_with_attachment();
        assert!(wait_terminated(&second));
    }

    fn fixture_with_attachment() -> Fixture {
        let fixture = fixture();
        let (stray, _keep) = Endpoint::pair_in_process();
        fixture.renderer.send(&get(1, 1), vec![stray]).unwrap();
        fixture
    }

    #[test]
    fn reusing_a_request_id_in_flight_is_a_bad_message() {
        let fixture = fixture();
        fixture.renderer.send(&get(5, 1), vec![]).unwrap();
        fixture.renderer.send(&get(5, 1), vec![]).unwrap();
        assert!(wait_terminated(&fixture));
    }

    #[test]
    fn more_than_the_in_flight_bound_is_a_bad_message() {
        let fixture = fixture();
        // The fake service never answers, so every request stays in flight.
        for request in 0..MAX_IN_FLIGHT_PER_RENDERER as u64 {
            fixture.renderer.send(&get(request, 1), vec![]).unwrap();
        }
        for _ in 0..MAX_IN_FLIGHT_PER_RENDERER {
            fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert!(!fixture.terminated.load(Ordering::SeqCst), "up to the bound is fine");
        fixture.renderer.send(&get(100_000, 1), vec![]).unwrap();
        assert!(wait_terminated(&fixture));
    }

    #[test]
    fn losing_the_service_fails_calls_in_flight_with_abort_error() {
        let fixture = fixture();
        fixture.renderer.send(&get(1, 1), vec![]).unwrap();
        fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(fixture.service);
        let (reply, _) = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply, Reply { request: RequestId(1), result: CallResult::Failed(CosError::Abort) });
        // With no service, new calls fail the same way (the supervisor rebinds after a restart).
        fixture.renderer.send(&get(2, 1), vec![]).unwrap();
        let (reply, _) = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result, CallResult::Failed(CosError::Abort));
    }

    #[test]
    fn a_reply_with_the_wrong_number_of_pipes_becomes_unknown_error() {
        let fixture = fixture();
        fixture.renderer.send(&get(1, 1), vec![]).unwrap();
        fixture.service.recv_timeout(Duration::from_secs(10)).unwrap();
        let reply = Reply { request: RequestId(1), result: CallResult::Writable };
        fixture.service.send(&reply, vec![]).unwrap();
        let (reply, pipes) = fixture.renderer.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reply.result, CallResult::Failed(CosError::Unknown));
        assert!(pipes.is_empty());
    }
}
