//! The world one input runs in (the browser host with its in-process storage service, the
//! attacker, the honest renderer and the model) and every action's checks.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cos_browser::{CosHost, FrameInfo, HostConfig, InProcessService, MAX_IN_FLIGHT_PER_RENDERER, ServiceLaunch};
use cos_common::interface::{
    CallResult, DATA_CHUNK_BYTES, FrameId, HandleCall, HandleId, ReaderRequest, RendererId, RendererToBroker,
    RequestId, ServiceProcessConfig, WriterEvent, WriterFrame,
};
use cos_common::{ContentHash, CosError, NotAllowedKind, Origin, OriginsOption, Partition, QuotaScope};
use cos_ipc::{BadMessageObserver, Endpoint, IpcError, Pipe};
use cos_renderer::RendererConnection;
use cos_storage_service::process::MAX_DATA_PIPES_PER_RENDERER;
use cos_test_support::callers;

use super::attacker::{Attacker, HandleState, ReaderState, WriterState, pick_handle, read_range, send};
use super::input::{Action, DataChoice, FrameChoice, HandleChoice, HashChoice, OriginsChoice, Position};
use super::model::Model;
use super::{
    ANSWER_TIMEOUT, ATTACKER_SLOTS, CONTENTS, Caller, FLOOD_HASH, HASHES, HONEST_FRAMES, HONEST_RENDERER, ON_PHL,
    SLOT_BLOCKED, SLOT_OPAQUE, SLOT_TOP, attacker_frame_info, pool_origin,
};
use crate::scratch_dir;

pub(super) struct World {
    pub(super) host: CosHost,
    /// The running service's end of its control pipe: shutting it down is a crash.
    pub(super) service_control: Arc<std::sync::Mutex<Option<Endpoint>>>,
    pub(super) observer: BadMessageObserver,
    pub(super) model: Model,
    pub(super) attacker: Option<Attacker>,
    pub(super) incarnations: u64,
    pub(super) honest: Arc<RendererConnection>,
    pub(super) _profile: tempfile::TempDir,
}

impl Drop for World {
    /// The harness's handle on the service's end of the control pipe goes first: the host, when
    /// it drops, waits for that pipe to close as the sign that the service has stopped.
    fn drop(&mut self) {
        self.service_control.lock().expect("control slot").take();
    }
}

impl World {
    pub(super) fn new() -> Self {
        let profile = scratch_dir();
        let list_path = profile.path().join("public-hash-list.txt");
        let list: String = (0..4).filter(|&c| ON_PHL[c]).map(|c| format!("{}\n", HASHES[c].to_hex())).collect();
        std::fs::write(&list_path, list).expect("write the Public Hash List");
        let service_control: Arc<std::sync::Mutex<Option<Endpoint>>> = Arc::default();
        let control_slot = service_control.clone();
        let run: InProcessService = Arc::new(move |endpoint: Endpoint| {
            *control_slot.lock().expect("control slot") = endpoint.try_clone().ok();
            std::thread::spawn(move || {
                let _ = cos_storage_service::process::serve(endpoint, cos_storage_service::process::no_lock_down);
            });
        });
        let mut service = ServiceProcessConfig::new(profile.path().join("profile").to_string_lossy());
        service.per_origin_bytes = 1 << 20;
        service.total_bytes = 4 << 20;
        service.public_hash_list_path = Some(list_path.to_string_lossy().into_owned());
        service.probe_budget = 3;
        service.grease_for_tests = Some(false);
        service.sandbox = false;
        let host = CosHost::start(HostConfig { launch: ServiceLaunch::InProcess(run), service }).expect("start");
        for (frame, url) in HONEST_FRAMES {
            let origin = callers::origin(url);
            host.frames().insert(FrameId(frame), FrameInfo::top_level(HONEST_RENDERER, origin));
        }
        let (browser_end, renderer_end) = Endpoint::pair_in_process();
        host.register_renderer(HONEST_RENDERER, browser_end, || panic!("the honest renderer was terminated"));
        let honest = RendererConnection::new(renderer_end).expect("honest renderer connection");
        Self {
            host,
            service_control,
            observer: BadMessageObserver::new(),
            model: Model::default(),
            attacker: None,
            incarnations: 0,
            honest,
            _profile: profile,
        }
    }

    /// The current attacker process, started (with fresh frame ids) if there is none.
    pub(super) fn attacker(&mut self) -> &mut Attacker {
        if self.attacker.is_none() {
            self.incarnations += 1;
            let renderer = RendererId(100 + self.incarnations);
            let base_frame = 1000 * self.incarnations;
            for slot in 0..ATTACKER_SLOTS {
                self.host.frames().insert(FrameId(base_frame + slot), attacker_frame_info(renderer, slot));
            }
            let (browser_end, renderer_end) = Endpoint::pair_in_process();
            let terminated = Arc::new(AtomicBool::new(false));
            let flag = terminated.clone();
            self.host.register_renderer(renderer, browser_end, move || flag.store(true, Ordering::Release));
            self.attacker = Some(Attacker {
                renderer,
                base_frame,
                pipe: Pipe::new(renderer_end),
                terminated,
                handles: Vec::new(),
                writers: Vec::new(),
                readers: Vec::new(),
                next_request: 0,
                next_handle: 1,
                current_from: 1,
                ids_seen: BTreeSet::new(),
            });
        }
        self.attacker.as_mut().expect("just started")
    }

    pub(super) fn caller(&self, slot: u64) -> Option<Caller> {
        let attacker = self.attacker.as_ref()?;
        Caller::of(&self.host.frames().get(attacker.frame(slot))?)
    }

    pub(super) fn run(&mut self, action: &Action) {
        // A well-formed step never ends in a bad-message report (a bad one consumes its own).
        let unexpected = self.observer.take();
        assert!(unexpected.is_empty(), "bad-message report after a well-formed action: {unexpected:?}");
        match action {
            Action::GetFileHandle { frame, hash, create, origins } => {
                self.get_file_handle(frame, hash, *create, origins)
            }
            Action::GetFile { handle, frame } => self.get_file(handle, frame),
            Action::CreateWritable { handle, frame } => self.create_writable(handle, frame),
            Action::ReleaseHandle { handle } => {
                let attacker = self.attacker();
                let (id, known) = pick_handle(attacker, handle);
                let live = known.is_some_and(|i| !attacker.handles[i].released && !attacker.handles[i].stale);
                if let Some(i) = known {
                    attacker.handles[i].released = true;
                }
                let release = HandleCall::ReleaseHandle { handle: id };
                send(&attacker.pipe, RendererToBroker::Call { frame: attacker.frame(SLOT_TOP), call: release });
                // Releasing a stale id is harmless; anything but a live or stale one is a lie.
                if !live && id.0 >= attacker.current_from {
                    self.expect_termination(None, None, "release of a handle the renderer does not hold");
                }
            }
            Action::Write { writer, position, data } => self.write(*writer, *position, data),
            Action::WriteContent { writer } => {
                let Some(w) = self.writer_index(*writer) else { return };
                let attacker = self.attacker.as_ref().expect("has writers");
                let content = attacker.handles[attacker.writers[w].handle].content;
                for piece in CONTENTS[content.unwrap_or(1)].chunks(DATA_CHUNK_BYTES) {
                    self.send_frame(w, WriterFrame::Write { position: None, data: piece });
                }
            }
            Action::Seek { writer, position } => {
                if let Some(w) = self.writer_index(*writer) {
                    self.send_frame(w, WriterFrame::Seek(position.get()));
                }
            }
            Action::Truncate { writer, size } => {
                if let Some(w) = self.writer_index(*writer) {
                    self.send_frame(w, WriterFrame::Truncate(size.get()));
                }
            }
            Action::Close { writer } => self.close(*writer),
            Action::Abort { writer } => {
                if let Some(w) = self.writer_index(*writer) {
                    self.send_frame(w, WriterFrame::Abort);
                    self.attacker.as_mut().expect("has writers").writers.remove(w);
                }
            }
            Action::DropWriter { writer } => {
                if let Some(w) = self.writer_index(*writer) {
                    self.attacker.as_mut().expect("has writers").writers.remove(w);
                }
            }
            Action::RawWriterFrame { writer, bytes } => {
                let Some(w) = self.writer_index(*writer) else { return };
                if cos_ipc::decode_borrowed::<WriterFrame<'_>>(bytes).is_ok() {
                    return; // well-formed frames are the typed actions' business
                }
                let attacker = self.attacker.as_ref().expect("has writers");
                let _ = attacker.writers[w].endpoint.send(bytes, vec![]);
                self.expect_termination(None, Some(w), "malformed write frame");
            }
            Action::Read { reader, offset, len } => self.read(*reader, offset.get(), len.get()),
            Action::RawReaderMessage { reader, bytes } => {
                let Some(r) = self.reader_index(*reader) else { return };
                if cos_ipc::decode::<ReaderRequest>(bytes).is_ok() {
                    return;
                }
                let attacker = self.attacker.as_ref().expect("has readers");
                let _ = attacker.readers[r].endpoint.send(bytes, vec![]);
                self.expect_termination(None, None, "malformed read request");
            }
            Action::DropReader { reader } => {
                if let Some(r) = self.reader_index(*reader) {
                    self.attacker.as_mut().expect("has readers").readers.remove(r);
                }
            }
            Action::RawBrokerMessage(bytes) => {
                if cos_ipc::decode::<RendererToBroker>(bytes).is_ok() {
                    return;
                }
                let attacker = self.attacker();
                let _ = attacker.pipe.endpoint().send(bytes, vec![]);
                self.expect_termination(None, None, "undecodable message");
            }
            Action::MessageWithAttachment => {
                let attacker = self.attacker();
                let request = attacker.request_id();
                let frame = attacker.frame(SLOT_TOP);
                let call = HandleCall::GetFile { request, handle: HandleId(1) };
                let message = cos_ipc::encode(&RendererToBroker::Call { frame, call }).expect("encode");
                let (stowaway, _other) = Endpoint::pair_in_process();
                let _ = attacker.pipe.endpoint().send(&message, vec![stowaway]);
                self.expect_termination(Some(request), None, "pipe attached to a request");
            }
            Action::Flood { n } => self.flood(usize::from(*n % 320) + 1),
            Action::Disconnect => {
                // The process exits: every pipe it held closes.
                self.attacker = None;
            }
            Action::RestartService => self.restart_service(),
            Action::UserActivation { frame } => {
                let id = self.resolve_frame(frame);
                self.host.notify_user_activation(id);
            }
            Action::ClearSiteData { origin } => {
                let origin = pool_origin(*origin);
                self.host.clear_site_data(Partition::Regular, &origin).expect("clear site data");
                self.model.clear(&origin);
                if let Some(attacker) = self.attacker.as_mut() {
                    attacker.handles.iter_mut().for_each(|handle| handle.maybe_revoked = true);
                }
            }
            Action::HonestStore { frame, content, origins, hash } => {
                self.honest_store(*frame, usize::from(*content) % 4, origins, hash);
            }
            Action::HonestRead { frame, hash } => self.honest_read(*frame, hash),
        }
    }

    fn resolve_frame(&mut self, frame: &FrameChoice) -> FrameId {
        match frame {
            FrameChoice::Own(slot) => {
                let slot = u64::from(*slot) % ATTACKER_SLOTS;
                self.attacker().frame(slot)
            }
            FrameChoice::Foreign(second) => FrameId(HONEST_FRAMES[usize::from(*second)].0),
            FrameChoice::Unknown(n) => FrameId(10_000_000 + u64::from(*n)),
        }
    }

    fn get_file_handle(&mut self, frame: &FrameChoice, hash: &HashChoice, create: bool, origins: &OriginsChoice) {
        let frame_id = self.resolve_frame(frame);
        let (hash, content) = match hash {
            HashChoice::Content(c) => {
                let c = usize::from(*c) % 4;
                (HASHES[c], Some(c))
            }
            HashChoice::Raw(bytes) => {
                let hash = ContentHash::from_bytes(*bytes);
                (hash, (0..4).find(|&c| HASHES[c] == hash))
            }
        };
        let origins = match origins {
            OriginsChoice::Omitted => OriginsOption::Omitted,
            OriginsChoice::Global => OriginsOption::Global,
            OriginsChoice::List(indices) => {
                let mut list: Vec<Origin> = Vec::new();
                for origin in indices.iter().map(|&i| pool_origin(i)) {
                    if !list.contains(&origin) {
                        list.push(origin);
                    }
                }
                if list.is_empty() { OriginsOption::Omitted } else { OriginsOption::List(list) }
            }
        };
        let attacker = self.attacker();
        let request = attacker.request_id();
        let own_slot = (frame_id.0 >= attacker.base_frame && frame_id.0 < attacker.base_frame + ATTACKER_SLOTS)
            .then(|| frame_id.0 - attacker.base_frame);
        send(
            &attacker.pipe,
            RendererToBroker::GetFileHandle { request, frame: frame_id, hash, create, origins: origins.clone() },
        );
        let Some(slot) = own_slot else {
            return self.expect_termination(Some(request), None, "frame id of another renderer or of nobody");
        };
        let result = self.reply(request);
        if slot == SLOT_BLOCKED || slot == SLOT_OPAQUE {
            assert!(matches!(result, CallResult::Failed(CosError::NotAllowed(_))), "slot {slot}: {result:?}");
            return;
        }
        // The broker numbers every request it forwards, issued or not.
        let attacker = self.attacker.as_mut().expect("alive");
        let expected_id = HandleId(attacker.next_handle);
        attacker.next_handle += 1;
        let caller = self.caller(slot).expect("a tuple origin");
        let attacker = self.attacker.as_mut().expect("alive");
        match result {
            CallResult::Handle { handle, create: answered_create } => {
                assert_eq!(answered_create, create, "the handle's kind is the request's");
                assert_eq!(handle, expected_id, "the broker's numbering");
                assert!(attacker.ids_seen.insert(handle), "handle id {handle:?} issued twice to one renderer");
                if !create {
                    // SPEC §4/§5: a read handle exists only for a verified entry within the grants.
                    let c = content.unwrap_or_else(|| panic!("read handle for {hash:?}, which nobody could write"));
                    assert!(
                        self.model.may_read(caller.partition, c, &caller.origin),
                        "read handle outside the grants: {caller:?} content {c}, grants {:?}",
                        self.model.entries.get(&(caller.partition, c))
                    );
                }
                attacker.handles.push(HandleState {
                    id: handle,
                    slot,
                    content,
                    create,
                    may_read: !create,
                    origins,
                    released: false,
                    stale: false,
                    maybe_revoked: false,
                });
            }
            CallResult::Failed(CosError::NotFound) if !create => {}
            other => panic!("getFileHandle(create: {create}) from slot {slot}: {other:?}"),
        }
    }

    /// Sends a request on a handle the renderer picks, from a document it picks, and waits for
    /// the answer. A document of another renderer or of nobody, a handle the renderer does not
    /// hold, or a document of another origin or partition than the handle's is a bad message
    /// (`None`); a handle from before a service restart must get `AbortError` (`None`);
    /// otherwise returns the handle's index, the answer, its pipes and the data pipes held before.
    fn handle_request(
        &mut self,
        choice: &HandleChoice,
        frame: &FrameChoice,
        message: impl FnOnce(RequestId, FrameId, HandleId) -> RendererToBroker,
    ) -> Option<(usize, CallResult, usize)> {
        let frame_id = self.resolve_frame(frame);
        let attacker = self.attacker();
        let (id, known) = pick_handle(attacker, choice);
        let pipes_before = attacker.open_pipes();
        let request = attacker.request_id();
        let own_slot = (frame_id.0 >= attacker.base_frame && frame_id.0 < attacker.base_frame + ATTACKER_SLOTS)
            .then(|| frame_id.0 - attacker.base_frame);
        let live = known.filter(|&i| !attacker.handles[i].released && !attacker.handles[i].stale);
        let current_from = attacker.current_from;
        send(&attacker.pipe, message(request, frame_id, id));
        let Some(slot) = own_slot else {
            self.expect_termination(Some(request), None, "a handle call from another renderer's document");
            return None;
        };
        let Some(i) = live else {
            if id.0 < current_from {
                let result = self.reply(request);
                assert_eq!(result, CallResult::Failed(CosError::Abort), "a handle from before a restart");
                return None;
            }
            self.expect_termination(Some(request), None, "a handle the renderer does not hold");
            return None;
        };
        let handle_slot = self.attacker.as_ref().expect("alive").handles[i].slot;
        let (caller, owner) = (self.caller(slot), self.caller(handle_slot));
        let same = match (&caller, &owner) {
            (Some(caller), Some(owner)) => caller.origin == owner.origin && caller.partition == owner.partition,
            _ => false,
        };
        if !same {
            self.expect_termination(Some(request), None, "a handle used by a document of another origin or partition");
            return None;
        }
        let result = self.reply(request);
        Some((i, result, pipes_before))
    }

    fn get_file(&mut self, choice: &HandleChoice, frame: &FrameChoice) {
        let Some((i, result, pipes_before)) = self.handle_request(choice, frame, |request, frame, handle| {
            RendererToBroker::Call { frame, call: HandleCall::GetFile { request, handle } }
        }) else {
            return;
        };
        let attacker = self.attacker.as_mut().expect("alive");
        let handle = &attacker.handles[i];
        match result {
            CallResult::File { size, pipe } => {
                assert!(handle.may_read, "getFile succeeded on a handle that may not read: {handle:?}");
                assert!(pipes_before < MAX_DATA_PIPES_PER_RENDERER, "a data pipe past the renderer's bound");
                let content = handle.content.expect("a readable handle has a content");
                assert_eq!(size, CONTENTS[content].len() as u64, "size of content {content}");
                let endpoint = pipe.into_endpoint();
                attacker.readers.push(ReaderState { endpoint, content: Some(content), size });
            }
            CallResult::InlineFile { bytes } => {
                assert!(handle.may_read, "getFile succeeded on a handle that may not read: {handle:?}");
                assert!(pipes_before < MAX_DATA_PIPES_PER_RENDERER, "an inline read past the renderer's bound");
                let content = handle.content.expect("a readable handle has a content");
                assert!(bytes[..] == CONTENTS[content][..], "an inline read of content {content} carried other bytes");
            }
            CallResult::Failed(CosError::NotAllowed(NotAllowedKind::HandleNotReadable)) => {
                assert!(!handle.may_read, "a readable handle refused to read");
            }
            CallResult::Failed(CosError::NotFound) => {}
            CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer)) => {}
            other => panic!("getFile on {handle:?}: {other:?}"),
        }
    }

    fn create_writable(&mut self, choice: &HandleChoice, frame: &FrameChoice) {
        let Some((i, result, pipes_before)) = self.handle_request(choice, frame, |request, frame, handle| {
            RendererToBroker::Call { frame, call: HandleCall::CreateWritable { request, handle } }
        }) else {
            return;
        };
        let attacker = self.attacker.as_mut().expect("alive");
        let handle = &attacker.handles[i];
        match result {
            CallResult::Writable { pipe } => {
                assert!(handle.create, "a read handle opened a writer: {handle:?}");
                assert!(pipes_before < MAX_DATA_PIPES_PER_RENDERER, "a data pipe past the renderer's bound");
                let endpoint = pipe.into_endpoint();
                attacker.writers.push(WriterState { endpoint, handle: i });
            }
            CallResult::Failed(CosError::NotAllowed(NotAllowedKind::HandleNotWritable)) => {
                assert!(!handle.create, "a create handle refused a writer");
            }
            CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer)) => {}
            CallResult::Failed(CosError::NotFound) => {
                assert!(handle.maybe_revoked, "only a revoked handle answers createWritable with NotFoundError");
            }
            other => panic!("createWritable on {handle:?}: {other:?}"),
        }
    }

    fn writer_index(&self, choice: u8) -> Option<usize> {
        let writers = self.attacker.as_ref()?.writers.len();
        (writers > 0).then(|| usize::from(choice) % writers)
    }

    fn reader_index(&self, choice: u8) -> Option<usize> {
        let readers = self.attacker.as_ref()?.readers.len();
        (readers > 0).then(|| usize::from(choice) % readers)
    }

    fn send_frame(&mut self, writer: usize, frame: WriterFrame<'_>) {
        let bytes = cos_ipc::encode(&frame).expect("a frame encodes");
        let attacker = self.attacker.as_ref().expect("has writers");
        // A send fails only if the service already ended the stream; close reports why.
        let _ = attacker.writers[writer].endpoint.send(&bytes, vec![]);
    }

    fn write(&mut self, writer: u8, position: Option<Position>, data: &DataChoice) {
        let Some(w) = self.writer_index(writer) else { return };
        let oversized;
        let data: &[u8] = match data {
            DataChoice::Piece { content, start, len } => {
                let content = &CONTENTS[usize::from(*content) % 4];
                let start = usize::from(*start).min(content.len());
                &content[start..(start + usize::from(*len)).min(content.len())]
            }
            DataChoice::Bytes(bytes) => bytes,
            DataChoice::Oversized => {
                oversized = vec![0u8; DATA_CHUNK_BYTES + 1];
                &oversized
            }
        };
        self.send_frame(w, WriterFrame::Write { position: position.map(Position::get), data });
        if data.len() > DATA_CHUNK_BYTES {
            self.expect_termination(None, Some(w), "oversized write frame");
        }
    }

    fn close(&mut self, writer: u8) {
        let Some(w) = self.writer_index(writer) else { return };
        self.send_frame(w, WriterFrame::Close);
        let attacker = self.attacker.as_mut().expect("has writers");
        let state = attacker.writers.remove(w);
        let closed = loop {
            let message = match state.endpoint.recv_timeout(ANSWER_TIMEOUT) {
                Ok(message) => message,
                Err(IpcError::Timeout) => panic!("close() was never answered"),
                Err(error) => panic!("the write pipe ended without an answer to close(): {error}"),
            };
            match cos_ipc::decode::<WriterEvent>(&message.bytes).expect("the service's writer events decode") {
                WriterEvent::Failed(_) => continue,
                WriterEvent::Closed(result) => break result,
            }
        };
        let handle = &mut attacker.handles[state.handle];
        match closed {
            Ok(_warnings) => {
                // Verified: only the exact bytes of a content can have matched its hash.
                let content = handle.content.unwrap_or_else(|| panic!("a write verified against {handle:?}"));
                handle.may_read = true;
                let (slot, origins, id, released) = (handle.slot, handle.origins.clone(), handle.id, handle.released);
                let caller = self.caller(slot).expect("writers belong to tuple origins");
                self.model.commit(&caller, content, &origins);
                // A writer outlives the release of its handle; a released handle reads nothing.
                if !released {
                    self.read_back(id, content);
                }
            }
            Err(CosError::Data(_) | CosError::QuotaExceeded(_)) => {}
            Err(CosError::Abort) if handle.maybe_revoked => {}
            Err(other) => panic!("close() failed with {other:?}"),
        }
    }

    /// Right after a verified write, the handle reads exactly the content (SPEC §4).
    fn read_back(&mut self, id: HandleId, content: usize) {
        let attacker = self.attacker.as_mut().expect("alive");
        let request = attacker.request_id();
        let slot = attacker.handles.iter().find(|h| h.id == id).expect("a handle of this renderer").slot;
        let frame = attacker.frame(slot);
        send(&attacker.pipe, RendererToBroker::Call { frame, call: HandleCall::GetFile { request, handle: id } });
        match self.reply(request) {
            CallResult::File { size, pipe } => {
                let endpoint = pipe.into_endpoint();
                let bytes = read_range(&endpoint, 0, size);
                assert!(bytes == CONTENTS[content], "a verified entry reads back other bytes");
            }
            CallResult::InlineFile { bytes } => {
                assert!(bytes[..] == CONTENTS[content][..], "a verified entry reads back other bytes inline");
            }
            // The renderer's data pipes may all be in use; a concurrent clear may have deleted it.
            CallResult::Failed(CosError::QuotaExceeded(QuotaScope::Renderer) | CosError::NotFound) => {}
            other => panic!("getFile right after a verified write: {other:?}"),
        }
    }

    fn read(&mut self, reader: u8, offset: u64, len: u64) {
        let Some(r) = self.reader_index(reader) else { return };
        let attacker = self.attacker.as_ref().expect("has readers");
        let state = &attacker.readers[r];
        let bytes = read_range(&state.endpoint, offset, len);
        let content = &CONTENTS[state.content.expect("readers read contents")];
        assert_eq!(state.size, content.len() as u64);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
        let end = usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX).min(content.len());
        assert!(bytes == content[start..end.max(start)], "read({offset}, {len}) returned other bytes");
    }

    fn flood(&mut self, n: usize) {
        let attacker = self.attacker();
        let first = attacker.next_request + 1;
        attacker.next_request += n as u64;
        let frame = attacker.frame(SLOT_TOP);
        // Sent from a second thread while this one reads answers, as a renderer's IO thread does:
        // a sender that never read would stall on backpressure.
        let sender = attacker.pipe.try_clone().expect("clone the renderer's pipe");
        let flooder = std::thread::spawn(move || {
            for request in first..first + n as u64 {
                // A lookup of bytes nobody stores: the service answers NotFoundError.
                let message = RendererToBroker::GetFileHandle {
                    request: RequestId(request),
                    frame,
                    hash: FLOOD_HASH,
                    create: false,
                    origins: OriginsOption::Omitted,
                };
                if sender.send(message).is_err() {
                    return; // cut off mid-flood
                }
            }
        });
        let attacker = self.attacker.as_ref().expect("alive");
        let mut answered = BTreeSet::new();
        while answered.len() < n {
            match attacker.pipe.recv_timeout(ANSWER_TIMEOUT) {
                Ok(reply) => {
                    assert_eq!(reply.result, CallResult::Failed(CosError::NotFound), "a flooded request");
                    assert!((first..first + n as u64).contains(&reply.request.0), "an answer to nothing asked");
                    assert!(answered.insert(reply.request), "{:?} answered twice", reply.request);
                }
                Err(IpcError::Disconnected) => {
                    // Terminated: only a flood past the bound may end like this.
                    assert!(n > MAX_IN_FLIGHT_PER_RENDERER, "terminated after {n} requests in flight");
                    let report = self.observer.wait(ANSWER_TIMEOUT).expect("a bad-message report");
                    assert_eq!(report.peer, format!("renderer-{}", attacker.renderer.0));
                    assert!(attacker.terminated.load(Ordering::Acquire), "the embedder was asked to kill it");
                    self.attacker = None;
                    flooder.join().expect("the flooding thread");
                    return;
                }
                Err(error) => panic!("waiting for flooded answers: {error}"),
            }
        }
        flooder.join().expect("the flooding thread");
        // Each lookup the broker forwarded took a handle id.
        self.attacker.as_mut().expect("alive").next_handle += n as u64;
    }

    /// The storage service dies; the browser notices, restarts it and binds every broker to the
    /// new one. The attacker's data pipes died with the old service; every handle it holds is
    /// stale from now on.
    fn restart_service(&mut self) {
        let generation = self.host.service_generation();
        let control =
            self.service_control.lock().expect("control slot").take().expect("the running service's control pipe");
        control.shutdown();
        assert!(self.host.wait_for_generation(generation + 1, ANSWER_TIMEOUT), "the service was restarted");
        if let Some(attacker) = self.attacker.as_mut() {
            attacker.writers.clear();
            attacker.readers.clear();
            for handle in &mut attacker.handles {
                handle.stale = true;
            }
            attacker.current_from = attacker.next_handle;
        }
    }

    /// The step was a protocol violation: the renderer must be reported and cut off, and nothing
    /// else may happen (no answer to `bad_request`, no commit from `bad_writer`).
    fn expect_termination(&mut self, bad_request: Option<RequestId>, bad_writer: Option<usize>, what: &str) {
        let attacker = self.attacker.take().expect("a renderer to terminate");
        let report = self.observer.wait(ANSWER_TIMEOUT).unwrap_or_else(|| panic!("{what}: no bad-message report"));
        assert_eq!(report.peer, format!("renderer-{}", attacker.renderer.0), "{what}: the report names the renderer");
        assert!(attacker.terminated.load(Ordering::Acquire), "{what}: the embedder was asked to kill the renderer");
        loop {
            match attacker.pipe.recv_timeout(ANSWER_TIMEOUT) {
                Ok(reply) => {
                    assert_ne!(Some(reply.request), bad_request, "{what}: the offending request was answered")
                }
                Err(IpcError::Disconnected) => break,
                Err(error) => panic!("{what}: the renderer's pipe stayed open ({error})"),
            }
        }
        if let Some(w) = bad_writer {
            while let Ok(message) = attacker.writers[w].endpoint.recv_timeout(ANSWER_TIMEOUT) {
                let event = cos_ipc::decode::<WriterEvent>(&message.bytes).expect("writer events decode");
                assert!(!matches!(event, WriterEvent::Closed(Ok(_))), "{what}: the offending writer committed");
            }
        }
    }

    /// The answer to `request`: the only one outstanding.
    /// Its pipes travel in the result: decoding checked them.
    pub(super) fn reply(&mut self, request: RequestId) -> CallResult {
        let attacker = self.attacker.as_ref().expect("alive");
        match attacker.pipe.recv_timeout(ANSWER_TIMEOUT) {
            Ok(reply) => {
                assert_eq!(reply.request, request, "an answer to another request");
                reply.result
            }
            Err(error) => panic!("a well-formed request went unanswered: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed sequence through a restart of the service: the handles from before answer
    /// `AbortError` (checked inside `World::run`), new ones are numbered after them and work, and
    /// a handle used from a document of another origin ends the renderer.
    #[test]
    fn no_handle_survives_a_restart_and_none_crosses_origins() {
        let own = |slot| FrameChoice::Own(slot);
        let actions = [
            Action::GetFileHandle {
                frame: own(0),
                hash: HashChoice::Content(1),
                create: true,
                origins: OriginsChoice::Omitted,
            },
            Action::CreateWritable { handle: HandleChoice::Received(0), frame: own(0) },
            Action::WriteContent { writer: 0 },
            Action::Close { writer: 0 },
            Action::GetFileHandle {
                frame: own(0),
                hash: HashChoice::Content(1),
                create: false,
                origins: OriginsChoice::Omitted,
            },
            Action::CreateWritable { handle: HandleChoice::Received(0), frame: own(0) },
            Action::RestartService,
            Action::GetFile { handle: HandleChoice::Received(0), frame: own(0) },
            Action::GetFile { handle: HandleChoice::Received(1), frame: own(1) },
            Action::Close { writer: 0 },
            Action::ReleaseHandle { handle: HandleChoice::Received(1) },
            Action::GetFileHandle {
                frame: own(0),
                hash: HashChoice::Content(1),
                create: false,
                origins: OriginsChoice::Omitted,
            },
            Action::GetFile { handle: HandleChoice::Received(2), frame: own(0) },
            Action::Read { reader: 0, offset: Position::Small(0), len: Position::Small(100) },
            Action::RestartService,
            Action::GetFileHandle {
                frame: own(3),
                hash: HashChoice::Content(1),
                create: true,
                origins: OriginsChoice::Omitted,
            },
            Action::GetFile { handle: HandleChoice::Received(3), frame: own(0) },
        ];
        let mut world = World::new();
        for action in &actions {
            world.run(action);
        }
        assert!(world.attacker.is_none(), "the last call used an off-the-record handle from a regular document");
        assert_eq!(world.incarnations, 1);
        world.still_works();
    }
}
