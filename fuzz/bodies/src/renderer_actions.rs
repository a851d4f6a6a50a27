//! `renderer_actions`: a compromised renderer drives the real broker stub and storage service (in
//! this process, over the in-process transport) with a sequence of actions built by
//! [`arbitrary`]: requests for its own and other renderers' frame ids, hashes of any shape, writes,
//! seeks, truncates, closes, aborts, reads, raw bytes on every pipe it holds, handles used from
//! documents of other origins and partitions, disconnects, user activations, floods, and restarts
//! of the storage service. Beside it, an honest renderer calls the web-facing API
//! (`cos_renderer`) with hash and `origins` strings of any shape, and the browser clears site
//! data.
//!
//! After every step the invariants hold, or the step panics:
//! - a foreign or unknown frame id, an undecodable message or any other protocol violation ends in
//!   a bad-message report naming the renderer, its pipe closing, and nothing else (no reply to the
//!   offending request, no commit from the offending writer); a well-formed action never does;
//! - nothing is ever readable without a verified write, and what is read is exactly the bytes
//!   whose SHA-256 was asked for;
//! - no read handle is ever granted outside the SPEC §5 grants (checked against an upper-bound
//!   model: storing and same-site origins, the origins list, the global flag for hashes on the
//!   Public Hash List; the gates may only narrow it);
//! - a create handle reads only after its own write verified (SPEC §4);
//! - no handle survives a restart of the service: a handle id is never issued twice to the same
//!   renderer, and every id issued before a restart answers `AbortError` from then on; a handle
//!   serves only documents of the origin and partition that opened it (any other document of the
//!   renderer using it is a bad message), and an id the renderer does not hold is a bad message;
//! - the per-renderer bounds hold: data pipes ([`MAX_DATA_PIPES_PER_RENDERER`]) and requests in
//!   flight ([`MAX_IN_FLIGHT_PER_RENDERER`]);
//! - at the end, the service still answers and the honest renderer can still store and read.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use cos_browser::{
    CosHost, FrameInfo, FrameOrigin, HostConfig, InProcessService, MAX_IN_FLIGHT_PER_RENDERER, ServiceLaunch,
};
use cos_common::interface::{
    CallResult, DATA_CHUNK_BYTES, FrameId, HandleCall, HandleId, ReaderEnd, ReaderFrame, ReaderRequest, RendererId,
    RendererToBroker, Reply, RequestId, ServiceProcessConfig, WriterEvent, WriterFrame,
};
use cos_common::{
    AllowOriginCeiling, ContentHash, CosError, NotAllowedKind, OffTheRecordProfileId, Origin, OriginsInput,
    OriginsOption, Partition, QuotaScope,
};
use cos_ipc::{BadMessageObserver, Endpoint, IpcError, Pipe};
use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, RendererConnection, ScriptContext, block_on};
use cos_storage_service::process::MAX_DATA_PIPES_PER_RENDERER;
use sha2::{Digest, Sha256};

use crate::scratch_dir;

/// How long a step may wait for an answer before the service counts as hung (a finding).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest action sequence one input runs.
const MAX_ACTIONS: usize = 48;

/// The contents anyone can store: empty, tiny, one chunk, and more than one data-pipe chunk.
static CONTENTS: LazyLock<[Vec<u8>; 4]> = LazyLock::new(|| {
    let pattern = |len: usize, seed: u8| (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    [Vec::new(), b"cos!".to_vec(), pattern(1000, 7), pattern(DATA_CHUNK_BYTES + 4096, 11)]
});

static HASHES: LazyLock<[ContentHash; 4]> =
    LazyLock::new(|| std::array::from_fn(|c| ContentHash::from_bytes(Sha256::digest(&CONTENTS[c]).into())));

/// What flooded lookups ask for: bytes nobody stores.
const FLOOD_HASH: ContentHash = ContentHash::from_bytes([0xf1; 32]);

/// Which contents the Public Hash List names (only these may be disclosed by the global grant).
const ON_PHL: [bool; 4] = [false, true, false, true];

/// Origins the `origins` lists and clear-site-data pick from.
const ORIGIN_POOL: [&str; 5] =
    ["https://a.example", "https://www.a.example", "https://b.example", "https://c.example", "http://a.example"];

fn pool_origin(i: u8) -> Origin {
    Origin::from_url(ORIGIN_POOL[usize::from(i) % ORIGIN_POOL.len()]).expect("pool origin")
}

// ---------------------------------------------------------------------------------------------
// The documents
// ---------------------------------------------------------------------------------------------

/// The attacker renderer's documents (one set per incarnation of the process).
const ATTACKER_SLOTS: u64 = 5;
/// Slot 0: `https://a.example`, top level, with a `Cross-Origin-Storage-Allow-Origin` header.
const SLOT_TOP: u64 = 0;
/// Slot 2: Permissions Policy blocks COS.
const SLOT_BLOCKED: u64 = 2;
/// Slot 3: `https://a.example` in an off-the-record profile.
const SLOT_OFF_THE_RECORD: u64 = 3;
/// Slot 4: an opaque origin.
const SLOT_OPAQUE: u64 = 4;

const OFF_THE_RECORD: Partition = Partition::OffTheRecord(OffTheRecordProfileId(7));
const HONEST_RENDERER: RendererId = RendererId(2);
/// The honest renderer's documents: `https://c.example` and `https://b.example`, both top level.
const HONEST_FRAMES: [(u64, &str); 2] = [(1, "https://c.example"), (2, "https://b.example")];

fn attacker_frame_info(renderer: RendererId, slot: u64) -> FrameInfo {
    let a = Origin::from_url("https://a.example").expect("origin");
    let mut info = FrameInfo::top_level(renderer, a.clone());
    match slot {
        SLOT_TOP => {
            info.allow_origin_ceiling = AllowOriginCeiling::from_header(Some("https://b.example, https://c.example"));
        }
        1 => {
            // A cross-site iframe: its own origin, a.example's top-level site.
            info.origin = FrameOrigin::Tuple(Origin::from_url("https://b.example").expect("origin"));
        }
        SLOT_BLOCKED => {
            info.origin = FrameOrigin::Tuple(Origin::from_url("https://www.a.example").expect("origin"));
            info.cos_allowed = false;
        }
        SLOT_OFF_THE_RECORD => info.partition = OFF_THE_RECORD,
        _ => info.origin = FrameOrigin::Opaque,
    }
    info
}

/// Who a document is, for the model.
#[derive(Debug, Clone)]
struct Caller {
    origin: Origin,
    partition: Partition,
    ceiling: AllowOriginCeiling,
}

impl Caller {
    fn of(info: &FrameInfo) -> Option<Self> {
        let FrameOrigin::Tuple(origin) = &info.origin else { return None };
        Some(Self { origin: origin.clone(), partition: info.partition, ceiling: info.allow_origin_ceiling.clone() })
    }
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Arbitrary)]
enum FrameChoice {
    /// One of the attacker's own documents (slot modulo [`ATTACKER_SLOTS`]).
    Own(u8),
    /// A document of the honest renderer.
    Foreign(bool),
    /// A frame id nobody registered.
    Unknown(u32),
}

#[derive(Debug, Arbitrary)]
enum HashChoice {
    Content(u8),
    Raw([u8; 32]),
}

#[derive(Debug, Arbitrary)]
enum OriginsChoice {
    Omitted,
    Global,
    /// Pool indices (duplicates removed; empty means omitted).
    List(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum HandleChoice {
    /// A handle this incarnation received (index modulo their number).
    Received(u8),
    /// Any id at all.
    Any(u64),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Position {
    Small(u16),
    Any(u64),
}

impl Position {
    fn get(self) -> u64 {
        match self {
            Self::Small(n) => u64::from(n),
            Self::Any(n) => n,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum DataChoice {
    /// A piece of a content.
    Piece { content: u8, start: u16, len: u16 },
    /// Bytes of the fuzzer's choosing.
    Bytes(Vec<u8>),
    /// One byte more than a data frame may carry: a protocol violation.
    Oversized,
}

#[derive(Debug, Arbitrary)]
enum HashText {
    /// The content's hex digest, as clients send it.
    Content(u8),
    /// The content's digest in upper case.
    Upper(u8),
    /// Any value.
    Text(String),
    /// Any algorithm name with a content's digest.
    Algorithm(String, u8),
}

impl HashText {
    fn dict(&self) -> CosHashDict {
        let hex = |c: &u8| HASHES[usize::from(*c) % 4].to_hex();
        match self {
            Self::Content(c) => CosHashDict::sha256(hex(c)),
            Self::Upper(c) => CosHashDict::sha256(hex(c).to_uppercase()),
            Self::Text(text) => CosHashDict::sha256(text.clone()),
            Self::Algorithm(algorithm, c) => CosHashDict { algorithm: algorithm.clone(), value: hex(c) },
        }
    }
}

#[derive(Debug, Arbitrary)]
enum HonestOrigins {
    Absent,
    Star,
    Pool(Vec<u8>),
    Strings(Vec<String>),
}

impl HonestOrigins {
    fn input(&self) -> OriginsInput {
        match self {
            Self::Absent => OriginsInput::Absent,
            Self::Star => OriginsInput::Single("*".into()),
            Self::Pool(indices) => OriginsInput::Sequence(
                indices.iter().map(|&i| ORIGIN_POOL[usize::from(i) % ORIGIN_POOL.len()].to_owned()).collect(),
            ),
            Self::Strings(strings) if strings.len() == 1 => OriginsInput::Single(strings[0].clone()),
            Self::Strings(strings) => OriginsInput::Sequence(strings.clone()),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Action {
    GetFileHandle {
        frame: FrameChoice,
        hash: HashChoice,
        create: bool,
        origins: OriginsChoice,
    },
    GetFile {
        handle: HandleChoice,
        frame: FrameChoice,
    },
    CreateWritable {
        handle: HandleChoice,
        frame: FrameChoice,
    },
    ReleaseHandle {
        handle: HandleChoice,
    },
    Write {
        writer: u8,
        position: Option<Position>,
        data: DataChoice,
    },
    /// Writes the handle's whole content at the cursor, chunk by chunk.
    WriteContent {
        writer: u8,
    },
    Seek {
        writer: u8,
        position: Position,
    },
    Truncate {
        writer: u8,
        size: Position,
    },
    Close {
        writer: u8,
    },
    Abort {
        writer: u8,
    },
    DropWriter {
        writer: u8,
    },
    RawWriterFrame {
        writer: u8,
        bytes: Vec<u8>,
    },
    Read {
        reader: u8,
        offset: Position,
        len: Position,
    },
    RawReaderMessage {
        reader: u8,
        bytes: Vec<u8>,
    },
    DropReader {
        reader: u8,
    },
    RawBrokerMessage(Vec<u8>),
    MessageWithAttachment,
    /// `n` requests without waiting for answers.
    Flood {
        n: u16,
    },
    /// The renderer process goes away (a new one takes its place at the next attacker action).
    Disconnect,
    /// The storage service crashes; the browser restarts it and binds every broker again.
    RestartService,
    UserActivation {
        frame: FrameChoice,
    },
    ClearSiteData {
        origin: u8,
    },
    HonestStore {
        frame: bool,
        content: u8,
        origins: HonestOrigins,
        hash: HashText,
    },
    HonestRead {
        frame: bool,
        hash: HashText,
    },
}

// ---------------------------------------------------------------------------------------------
// The upper-bound model of SPEC §5
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Grants {
    storing: BTreeSet<Origin>,
    listed: BTreeSet<Origin>,
    global: bool,
}

/// Every grant a verified write ever made, per partition and content. Clearing site data removes
/// what SPEC §7 removes; eviction is not modelled, which only makes the bound looser.
#[derive(Debug, Default)]
struct Model {
    entries: HashMap<(Partition, usize), Grants>,
}

impl Model {
    fn commit(&mut self, caller: &Caller, content: usize, requested: &OriginsOption) {
        let entry = self.entries.entry((caller.partition, content)).or_default();
        entry.storing.insert(caller.origin.clone());
        match caller.ceiling.apply(requested.clone()).0 {
            OriginsOption::Omitted => {}
            OriginsOption::List(list) => entry.listed.extend(list),
            OriginsOption::Global => entry.global = true,
        }
    }

    fn may_read(&self, partition: Partition, content: usize, reader: &Origin) -> bool {
        let Some(entry) = self.entries.get(&(partition, content)) else { return false };
        entry.storing.iter().any(|storer| storer.is_same_site(reader))
            || entry.listed.contains(reader)
            || (entry.global && ON_PHL[content])
    }

    fn clear(&mut self, origin: &Origin) {
        self.entries.retain(|(partition, _), entry| {
            if *partition == Partition::Regular {
                entry.storing.remove(origin);
                entry.listed.remove(origin);
            }
            !entry.storing.is_empty()
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The attacker
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct HandleState {
    id: HandleId,
    slot: u64,
    content: Option<usize>,
    create: bool,
    may_read: bool,
    origins: OriginsOption,
    released: bool,
    /// Issued by a service generation that has since gone: it answers `AbortError`.
    stale: bool,
    /// Site data was cleared since it was issued, so its grant may have been revoked (it may then
    /// answer `NotFoundError`, and its writers `AbortError`).
    maybe_revoked: bool,
}

struct WriterState {
    endpoint: Endpoint,
    handle: usize,
}

struct ReaderState {
    endpoint: Endpoint,
    content: Option<usize>,
    size: u64,
}

/// One incarnation of the compromised renderer process.
struct Attacker {
    renderer: RendererId,
    base_frame: u64,
    pipe: Pipe<RendererToBroker, Reply>,
    terminated: Arc<AtomicBool>,
    handles: Vec<HandleState>,
    writers: Vec<WriterState>,
    readers: Vec<ReaderState>,
    next_request: u64,
    /// The broker's next handle id for this renderer (it numbers them from 1, for good).
    next_handle: u64,
    /// Ids below this were issued before the last service restart.
    current_from: u64,
    /// Every handle id this renderer was ever given: none may come twice.
    ids_seen: BTreeSet<HandleId>,
}

impl Attacker {
    fn frame(&self, slot: u64) -> FrameId {
        FrameId(self.base_frame + slot)
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Data pipes this renderer holds that the service may still be serving.
    fn open_pipes(&self) -> usize {
        self.writers.len() + self.readers.len()
    }
}

struct World {
    host: CosHost,
    /// The running service's end of its control pipe: shutting it down is a crash.
    service_control: Arc<std::sync::Mutex<Option<Endpoint>>>,
    observer: BadMessageObserver,
    model: Model,
    attacker: Option<Attacker>,
    incarnations: u64,
    honest: Arc<RendererConnection>,
    _profile: tempfile::TempDir,
}

impl Drop for World {
    /// The harness's handle on the service's end of the control pipe goes first: the host, when
    /// it drops, waits for that pipe to close as the sign that the service has stopped.
    fn drop(&mut self) {
        self.service_control.lock().expect("control slot").take();
    }
}

impl World {
    fn new() -> Self {
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
            let origin = Origin::from_url(url).expect("origin");
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
    fn attacker(&mut self) -> &mut Attacker {
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

    fn caller(&self, slot: u64) -> Option<Caller> {
        let attacker = self.attacker.as_ref()?;
        Caller::of(&self.host.frames().get(attacker.frame(slot))?)
    }

    fn run(&mut self, action: &Action) {
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
            Ok(()) => {
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
                assert_ne!(event, WriterEvent::Closed(Ok(())), "{what}: the offending writer committed");
            }
        }
    }

    /// The answer to `request`: the only one outstanding.
    /// Its pipes travel in the result: decoding checked them.
    fn reply(&mut self, request: RequestId) -> CallResult {
        let attacker = self.attacker.as_ref().expect("alive");
        match attacker.pipe.recv_timeout(ANSWER_TIMEOUT) {
            Ok(reply) => {
                assert_eq!(reply.request, request, "an answer to another request");
                reply.result
            }
            Err(error) => panic!("a well-formed request went unanswered: {error}"),
        }
    }

    fn honest_manager(&self, second: bool) -> (CrossOriginStorageManager, Caller) {
        let (frame, url) = HONEST_FRAMES[usize::from(second)];
        let context = ScriptContext {
            frame: FrameId(frame),
            secure_context: true,
            policy_allows: true,
            service_worker: false,
            opaque_origin: false,
        };
        let manager = CrossOriginStorageManager::new(self.honest.clone(), context).expect("a secure context");
        let caller = Caller {
            origin: Origin::from_url(url).expect("origin"),
            partition: Partition::Regular,
            ceiling: AllowOriginCeiling::empty(),
        };
        (manager, caller)
    }

    fn honest_store(&mut self, second: bool, content: usize, origins: &HonestOrigins, hash: &HashText) {
        let (manager, caller) = self.honest_manager(second);
        let dict = hash.dict();
        let input = origins.input();
        let parsed_hash = ContentHash::parse(&dict.algorithm, &dict.value);
        let parsed_origins = OriginsOption::parse(&input);
        let bytes = &CONTENTS[content];
        let outcome = block_on(async {
            let options = CosOptions { create: true, origins: input };
            let handle = manager.get_file_handle(&dict, &options).await?;
            let mut writer = handle.create_writable(false).await?;
            for piece in bytes.chunks(DATA_CHUNK_BYTES) {
                writer.write(piece)?;
            }
            writer.close()?;
            handle.get_file().await?.read_all()
        });
        let (Ok(hash), Ok(requested)) = (parsed_hash, parsed_origins) else {
            assert!(matches!(outcome, Err(CosError::Type(_))), "invalid input must be a TypeError: {outcome:?}");
            return;
        };
        match outcome {
            Ok(read) => {
                assert_eq!(hash, HASHES[content], "a write verified against another hash");
                assert!(read == *bytes, "a verified entry reads back other bytes");
                self.model.commit(&caller, content, &requested);
            }
            Err(CosError::Data(_)) => assert_ne!(hash, HASHES[content], "the right bytes failed to verify"),
            Err(CosError::QuotaExceeded(_) | CosError::NotFound) => {}
            Err(other) => panic!("honest store: {other:?}"),
        }
    }

    fn honest_read(&mut self, second: bool, hash: &HashText) {
        let (manager, caller) = self.honest_manager(second);
        let dict = hash.dict();
        let outcome = block_on(async {
            let handle = manager.get_file_handle(&dict, &CosOptions::default()).await?;
            handle.get_file().await?.read_all()
        });
        let Ok(hash) = ContentHash::parse(&dict.algorithm, &dict.value) else {
            assert!(matches!(outcome, Err(CosError::Type(_))), "an invalid hash must be a TypeError: {outcome:?}");
            return;
        };
        match outcome {
            Ok(bytes) => {
                assert_eq!(crate::sha256(&bytes), hash, "a read returned bytes of another hash");
                let c = (0..4).find(|&c| HASHES[c] == hash).expect("only contents can be stored");
                assert!(self.model.may_read(Partition::Regular, c, &caller.origin), "read outside the grants");
            }
            Err(CosError::NotFound) => {}
            Err(other) => panic!("honest read: {other:?}"),
        }
    }

    /// After the sequence: the service answers, and the honest renderer stores and reads.
    fn still_works(&mut self) {
        self.host.ping().expect("the service still answers");
        self.honest_store(false, 1, &HonestOrigins::Absent, &HashText::Content(1));
        let (manager, _) = self.honest_manager(false);
        let dict = HashText::Content(1).dict();
        let read = block_on(async {
            manager.get_file_handle(&dict, &CosOptions::default()).await?.get_file().await?.read_all()
        });
        assert_eq!(read.as_deref(), Ok(CONTENTS[1].as_slice()), "the honest renderer reads what it stored");
    }
}

fn send(pipe: &Pipe<RendererToBroker, Reply>, message: RendererToBroker) {
    pipe.send(message).expect("the renderer's pipe is open while it behaves");
}

fn pick_handle(attacker: &Attacker, choice: &HandleChoice) -> (HandleId, Option<usize>) {
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
fn read_range(endpoint: &Endpoint, offset: u64, len: u64) -> Vec<u8> {
    let request = cos_ipc::encode(&ReaderRequest::Read { offset, len }).expect("encode");
    endpoint.send(&request, vec![]).expect("the read pipe is open");
    let mut bytes = Vec::new();
    loop {
        let message = endpoint.recv_timeout(ANSWER_TIMEOUT).expect("the read pipe answers");
        match ReaderFrame::decode(&message.bytes, DATA_CHUNK_BYTES).expect("reader frames decode") {
            ReaderFrame::Bulk(data) => bytes.extend_from_slice(data),
            ReaderFrame::Message(ReaderEnd::End) => return bytes,
            ReaderFrame::Message(ReaderEnd::Failed(error)) => panic!("reading a verified entry failed: {error:?}"),
        }
    }
}

/// The fuzz target: a world, then the actions `data` describes, then the final checks; and no
/// thread of the world outlives it.
pub fn renderer_actions(data: &[u8]) {
    let threads_before = crate::thread_count();
    let actions: Vec<Action> = crate::sequence(data, MAX_ACTIONS);
    let mut world = World::new();
    for action in &actions {
        world.run(action);
    }
    let unexpected = world.observer.take();
    assert!(unexpected.is_empty(), "bad-message report after a well-formed action: {unexpected:?}");
    world.still_works();
    // The host waits for the service to close its store; brokers and reply threads end as
    // their pipes close.
    drop(world);
    crate::wait_for_threads_to_end(threads_before, ANSWER_TIMEOUT);
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
