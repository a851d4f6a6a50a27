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

    /// Uses a new service connection (after the service started or restarted) and serves its
    /// replies on the calling thread until it breaks.
    pub(crate) fn run_service_loop(self: &Arc<Self>, generation: u64, connection: ServiceConnection) {
        let receiver = match connection.try_clone() {
            Ok(receiver) => receiver,
            Err(error) => {
                tracing::error!(%error, "could not read from the service connection");
                return;
            }
        };
        {
            let mut slot = self.service.lock();
            if slot.as_ref().is_some_and(|(current, _)| *current >= generation) {
                return;
            }
            if let Some((_, old)) = slot.replace((generation, Arc::new(connection))) {
                old.endpoint().shutdown();
            }
        }
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
