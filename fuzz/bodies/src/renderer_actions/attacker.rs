//! One incarnation of the compromised renderer process: its pipe, the handles it was given, the
//! data pipes it holds, and the helpers that speak its side of the protocol.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cos_common::OriginsOption;
use cos_common::interface::{
    DATA_CHUNK_BYTES, FrameId, HandleId, ReaderEnd, ReaderFrame, ReaderRequest, RendererId, RendererToBroker, Reply,
    RequestId,
};
use cos_ipc::{Endpoint, Pipe};

use super::ANSWER_TIMEOUT;
use super::input::HandleChoice;

#[derive(Debug)]
pub(super) struct HandleState {
    pub(super) id: HandleId,
    pub(super) slot: u64,
    pub(super) content: Option<usize>,
    pub(super) create: bool,
    pub(super) may_read: bool,
    pub(super) origins: OriginsOption,
    pub(super) released: bool,
    /// Issued by a service generation that has since gone: it answers `AbortError`.
    pub(super) stale: bool,
    /// Site data was cleared since it was issued, so its grant may have been revoked (it may then
    /// answer `NotFoundError`, and its writers `AbortError`).
    pub(super) maybe_revoked: bool,
}

pub(super) struct WriterState {
    pub(super) endpoint: Endpoint,
    pub(super) handle: usize,
}

pub(super) struct ReaderState {
    pub(super) endpoint: Endpoint,
    pub(super) content: Option<usize>,
    pub(super) size: u64,
}

/// One incarnation of the compromised renderer process.
pub(super) struct Attacker {
    pub(super) renderer: RendererId,
    pub(super) base_frame: u64,
    pub(super) pipe: Pipe<RendererToBroker, Reply>,
    pub(super) terminated: Arc<AtomicBool>,
    pub(super) handles: Vec<HandleState>,
    pub(super) writers: Vec<WriterState>,
    pub(super) readers: Vec<ReaderState>,
    pub(super) next_request: u64,
    /// The broker's next handle id for this renderer (it numbers them from 1, for good).
    pub(super) next_handle: u64,
    /// Ids below this were issued before the last service restart.
    pub(super) current_from: u64,
    /// Every handle id this renderer was ever given: none may come twice.
    pub(super) ids_seen: BTreeSet<HandleId>,
}

impl Attacker {
    pub(super) fn frame(&self, slot: u64) -> FrameId {
        FrameId(self.base_frame + slot)
    }

    pub(super) fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Data pipes this renderer holds that the service may still be serving.
    pub(super) fn open_pipes(&self) -> usize {
        self.writers.len() + self.readers.len()
    }
}

pub(super) fn send(pipe: &Pipe<RendererToBroker, Reply>, message: RendererToBroker) {
    pipe.send(message).expect("the renderer's pipe is open while it behaves");
}

pub(super) fn pick_handle(attacker: &Attacker, choice: &HandleChoice) -> (HandleId, Option<usize>) {
    match choice {
        HandleChoice::Received(i) if !attacker.handles.is_empty() => {
            let i = usize::from(*i) % attacker.handles.len();
            (attacker.handles[i].id, Some(i))
        }
        HandleChoice::Received(_) => (HandleId(u64::MAX - 1), None),
        HandleChoice::Any(id) => {
            let id = HandleId(*id);
            (id, attacker.handles.iter().position(|h| h.id == id))
        }
    }
}

/// Reads `[offset, offset + len)` (clamped) over a read pipe.
pub(super) fn read_range(endpoint: &Endpoint, offset: u64, len: u64) -> Vec<u8> {
    let request = cos_ipc::encode(&ReaderRequest::Read { offset, len }).expect("encode");
    endpoint.send(&request, vec![]).expect("the read pipe is open");
    let mut bytes = Vec::new();
    loop {
        let message = endpoint.recv_timeout(ANSWER_TIMEOUT).expect("the read pipe answers");
        match ReaderFrame::decode(&message.bytes, DATA_CHUNK_BYTES).expect("reader frames decode") {
            ReaderFrame::Bulk(data) => bytes.extend_from_slice(data),
            ReaderFrame::Message(ReaderEnd::End) => return bytes,
            ReaderFrame::Message(ReaderEnd::Failed(error)) => panic!("reading a verified entry failed: {error:?}"),
            ReaderFrame::Message(ReaderEnd::Shared) => panic!("a file answered a plain read"),
        }
    }
}
