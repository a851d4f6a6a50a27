//! The messages of every COS interface, declared once: serde types that `cos_ipc` encodes (the
//! wire format lives there and nowhere else). This module says what they mean and who is trusted
//! to send them.
//!
//! ```text
//!  renderer ──RendererToBroker──► broker stub (browser) ──BrokerToService──► storage service
//!  renderer ◄──────Reply───────── broker stub          ◄──ServiceToBroker── storage service
//!  renderer ══RendererToBroker══► storage service: a document's lookup binding, made by the
//!  renderer ◄══════Reply═══════════ broker and bound there to that document's caller context
//!  renderer ◄═══ data pipe (WriterFrame / ReaderFrame), bound to one writer or one read ═══► service
//!  browser  ──BrowserToService──► storage service (control: configure, bind renderers, clear data)
//! ```
//!
//! Every field is a validated type, so decoding a message *is* validating it: a renderer that
//! sends bytes which do not decode is misbehaving (a bad message), because a well-behaved
//! renderer throws `TypeError` before sending anything. That includes the pipes a message
//! carries: they are [`Attached`] fields, so a message with the wrong pipes does not decode.

use cos_ipc::{Attached, DataFrame};
use serde::{Deserialize, Serialize};

use crate::caller::{CallerContext, OffTheRecordProfileId, Partition};
use crate::error::CosError;
use crate::hash::ContentHash;
use crate::options::{AllowOriginCeiling, OriginsOption};
use crate::origin::Origin;
use crate::site::Site;

/// A document (frame or worker) in the browser's frame table. Chosen by the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FrameId(pub u64);

/// A renderer process, as the browser numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RendererId(pub u64);

/// A file handle of one renderer. On the renderer's pipe to its broker, the broker numbers them,
/// in order, for as long as the renderer lives: an id is never issued twice there, not even by a
/// restarted service, so it can never come to name another handle; the broker binds each id to the
/// origin and partition that opened it. On a document's lookup binding the service numbers them
/// (one sequence per renderer and service generation) and each is valid on that binding only,
/// which closes with its document and with the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HandleId(pub u64);

/// Correlates a reply with its request on one connection; chosen by the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Why a verified write did less than it asked for. The writing page's console hears it
/// (SPEC §5); the write itself succeeds. A closed set with fixed texts, so that no origin, hash or
/// other site's data can reach a page through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WriteWarning {
    /// The entry's origins list already holds its 100 origins: requested origins not on it were
    /// left out, the ones already on it kept.
    OriginsListFull,
    /// `origins: "*"` or a list was asked for by a document without a user activation since it
    /// loaded: the file was stored for the writer's site only.
    NoUserActivation,
}

impl WriteWarning {
    /// The console text (fixed).
    pub fn message(self) -> &'static str {
        match self {
            Self::OriginsListFull => {
                "Cross-Origin Storage: the file's origins list is full; origins not already on it were not added."
            }
            Self::NoUserActivation => {
                "Cross-Origin Storage: the file was stored for this site only; sharing it with other origins needs a user activation of the page first."
            }
        }
    }
}

/// The warnings of one verified write (each at most once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteWarnings(std::collections::BTreeSet<WriteWarning>);

impl WriteWarnings {
    /// No warning.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `warning`.
    pub fn add(&mut self, warning: WriteWarning) {
        self.0.insert(warning);
    }

    /// Whether `warning` is among them.
    pub fn contains(&self, warning: WriteWarning) -> bool {
        self.0.contains(&warning)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every warning, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = WriteWarning> + '_ {
        self.0.iter().copied()
    }
}

impl From<WriteWarning> for WriteWarnings {
    fn from(warning: WriteWarning) -> Self {
        Self([warning].into())
    }
}

/// The parts of a create request the service needs, as the broker supplies them (an embedder
/// builds them with `cos_browser`'s `FrameTable::create_options`, which applies the user-gesture
/// rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOptions {
    /// The validated `origins` option, as the browser lets the document have it (without a user
    /// activation it is [`OriginsOption::Omitted`] whatever the page asked for).
    pub origins: OriginsOption,
    /// The ceiling of the list scope: the writing document's `Cross-Origin-Storage-Allow-Origin`
    /// (known to the browser process, never taken from the renderer).
    pub allow_origin_ceiling: AllowOriginCeiling,
    /// The writing document's URL, kept as private provenance.
    pub document_url: Option<String>,
    /// Warnings the browser's decisions add to the write's verdict (the user-gesture rule).
    pub warnings: WriteWarnings,
}

impl CreateOptions {
    /// A create request with no `origins` (the same-site baseline).
    pub fn same_site() -> Self {
        Self::with_origins(OriginsOption::Omitted, AllowOriginCeiling::empty())
    }

    /// A create request with the given `origins` and ceiling.
    pub fn with_origins(origins: OriginsOption, allow_origin_ceiling: AllowOriginCeiling) -> Self {
        Self { origins, allow_origin_ceiling, document_url: None, warnings: WriteWarnings::none() }
    }
}

/// What a `getFileHandle` call asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleRequest {
    /// `create: false`: a read, answered only if the caller may see the entry.
    Read,
    /// `create: true`: always answered with a write handle.
    Create(CreateOptions),
}

/// A call on a handle, as the renderer makes it and as the broker forwards it to the service
/// (unchanged, once it checked the caller may use the handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleCall {
    /// `handle.getFile()`. The reply carries a read data pipe, or the whole entry if it is small
    /// ([`CallResult::InlineFile`]).
    GetFile {
        /// Echoed in the reply.
        request: RequestId,
        /// The handle.
        handle: HandleId,
    },
    /// `handle.createWritable()`. The reply carries a write data pipe.
    CreateWritable {
        /// Echoed in the reply.
        request: RequestId,
        /// The handle.
        handle: HandleId,
    },
    /// The renderer dropped its last reference to a handle: forget it.
    ReleaseHandle {
        /// The handle.
        handle: HandleId,
    },
}

impl HandleCall {
    /// The handle called on.
    pub fn handle(&self) -> HandleId {
        match *self {
            Self::GetFile { handle, .. } | Self::CreateWritable { handle, .. } | Self::ReleaseHandle { handle } => {
                handle
            }
        }
    }
}

/// Renderer → broker. **Untrusted**: the broker checks that `frame` belongs to the sending
/// renderer (otherwise: bad message) and applies the Permissions Policy before anything else.
/// The same messages go renderer → service on a document's lookup binding, where the service
/// accepts only lookups naming the bound document and calls on the handles the binding issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RendererToBroker {
    /// `getFileHandle(hash, {create, origins})` from a document of this renderer.
    GetFileHandle {
        /// Echoed in the reply.
        request: RequestId,
        /// The calling document.
        frame: FrameId,
        /// The validated hash.
        hash: ContentHash,
        /// `options.create`.
        create: bool,
        /// The validated `options.origins` (ignored by reads, but validated anyway).
        origins: OriginsOption,
    },
    /// Asks for a lookup binding for document `frame`: a pipe straight to the storage service,
    /// bound by the broker to that document's caller context (answered with
    /// [`CallResult::Bound`], or a failure after which the document keeps using the broker).
    /// Over the binding the renderer sends `GetFileHandle` without `create` (naming `frame`) and
    /// calls on the handles the binding issued; the service answers with [`Reply`]s. A
    /// navigation, the document's removal or a change of its record closes the binding.
    Bind {
        /// Echoed in the reply.
        request: RequestId,
        /// The document to bind.
        frame: FrameId,
    },
    /// A call on a handle this renderer received, from document `frame`: the one that opened the
    /// handle, or a same-origin document of the same partition that received it by transfer
    /// (anything else is a bad message). A release is no document's call (the last reference may
    /// outlive every document that held it), so its `frame` names the opener and is not checked.
    Call {
        /// The calling document.
        frame: FrameId,
        /// The call.
        call: HandleCall,
    },
}

/// Broker → service, on the connection the browser bound for one renderer. Trusted: the caller
/// context comes from the browser's frame table.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
// A message lives only between decode and dispatch; boxing the caller would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum BrokerToService {
    /// `getFileHandle` on behalf of `caller`.
    GetFileHandle {
        /// Echoed in the reply.
        request: RequestId,
        /// The id the handle gets if one is issued (the broker's numbering: never reused).
        handle: HandleId,
        /// Origin, Network Isolation Key and partition of the calling document.
        caller: CallerContext,
        /// The entry.
        hash: ContentHash,
        /// Read or create.
        kind: HandleRequest,
    },
    /// A call on a handle of this connection, as the renderer made it.
    Call(HandleCall),
    /// Serve document `frame`'s lookup binding on `pipe` (the renderer holds the other end),
    /// speaking for `caller` and nobody else: the context is fixed here, by the broker, for the
    /// binding's life. The renderer's messages on it are untrusted `RendererToBroker`s.
    BindDocument {
        /// The bound document (a binding's `GetFileHandle` must name it).
        frame: FrameId,
        /// Origin, Network Isolation Key and partition of that document.
        caller: CallerContext,
        /// The service's end of the binding.
        pipe: Attached,
    },
}

/// Service → broker, on the connection the browser bound for one renderer.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceToBroker {
    /// The answer to a request (with its data pipe, if the result carries one).
    Reply(Reply),
    /// The renderer sent something on one of its data pipes that a well-behaved renderer never
    /// sends; the browser terminates it. It travels on that renderer's own connection, so the
    /// service can only ever report the renderer whose pipe misbehaved, and only while the
    /// connection is current.
    BadMessage {
        /// What was wrong (for the log).
        reason: String,
    },
}

/// The answer to one request (service → broker → renderer).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request this answers.
    pub request: RequestId,
    /// What happened.
    pub result: CallResult,
}

/// The outcome of a request.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallResult {
    /// `getFileHandle` succeeded.
    Handle {
        /// The new handle.
        handle: HandleId,
        /// Whether it came from a create request (starts unreadable).
        create: bool,
    },
    /// `getFile` succeeded.
    File {
        /// Size of the entry.
        size: u64,
        /// The read data pipe, bound to this read.
        pipe: Attached,
    },
    /// `getFile` succeeded for an entry of at most [`INLINE_READ_MAX_BYTES`]: the whole entry,
    /// verified against its hash just before this reply was sent, instead of a data pipe (one
    /// message answers both `getFile` and every later read of the `File`).
    InlineFile {
        /// The entry's bytes (its size is their length).
        bytes: InlineBytes,
    },
    /// `createWritable` succeeded.
    Writable {
        /// The write data pipe, bound to this writer.
        pipe: Attached,
    },
    /// `Bind` succeeded: the renderer's end of the document's lookup binding.
    Bound {
        /// The binding.
        pipe: Attached,
    },
    /// The request failed with this web error.
    Failed(CosError),
}

/// The storage service's process configuration, sent by the browser right after the handshake
/// and before the service locks itself down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProcessConfig {
    /// The profile directory (the store lives in its `cos/` subdirectory).
    pub profile_dir: String,
    /// Per-origin limit of the regular partition, in bytes.
    pub per_origin_bytes: u64,
    /// Total limit of the regular partition, in bytes.
    pub total_bytes: u64,
    /// The Public Hash List file, read at start (before the sandbox closes the filesystem).
    pub public_hash_list_path: Option<String>,
    /// Whether the list's `SHA-256 HUGGING-FACE` section is used (the proposal: SHOULD be, MAY
    /// be left out), at start and by every reload. Default: used.
    pub public_hash_list_hugging_face: bool,
    /// Availability gating: disclose a global entry not on the list once this many distinct
    /// sites stored it (`None`: off, the default).
    pub availability_threshold: Option<u32>,
    /// Distinct hashes a top-level site may probe through the global path (default 16).
    pub probe_budget: u32,
    /// Test seam only: GREASE every eligible read (`Some(true)`) or none (`Some(false)`);
    /// `None` (always, in a browser) draws 1% from the OS CSPRNG. A product build of the service
    /// (without its `testing` feature) ignores it, with a warning.
    pub grease_for_tests: Option<bool>,
    /// Apply the sandbox (tests of unsandboxed behaviour turn it off; production never does). A
    /// product build of the service process locks down whatever this says; only its `testing`
    /// feature honours `false`.
    pub sandbox: bool,
}

impl ServiceProcessConfig {
    /// A sandboxed service for `profile_dir` with the default limits (100 GiB store, 20 GiB per
    /// origin), no Public Hash List, no availability gating, a probe budget of 16 and real GREASE.
    pub fn new(profile_dir: impl Into<String>) -> Self {
        Self {
            profile_dir: profile_dir.into(),
            per_origin_bytes: 20 << 30,
            total_bytes: 100 << 30,
            public_hash_list_path: None,
            public_hash_list_hugging_face: true,
            availability_threshold: None,
            probe_budget: 16,
            grease_for_tests: None,
            sandbox: true,
        }
    }
}

/// What a Public Hash List held when the service loaded it: digests per section (the
/// `HUGGING-FACE` section is counted even when the service leaves it out) and the header's
/// `VERSION` and `COMMIT`. Operator-facing (logs, `CosHost::reload_public_hash_list`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicHashListCounts {
    /// Digest lines of the core (`SHA-256`) section, and of lines before any section.
    pub core: u64,
    /// Digest lines of the `SHA-256 HUGGING-FACE` section.
    pub hugging_face: u64,
    /// Digest lines of the `SHA-256 MANUAL` section.
    pub manual: u64,
    /// Whether the Hugging Face section is used.
    pub hugging_face_used: bool,
    /// Distinct digests on the list as used.
    pub distinct: u64,
    /// The header's `VERSION`, if any.
    pub version: Option<String>,
    /// The header's `COMMIT`, if any.
    pub commit: Option<String>,
}

/// One entry as the browser's "View by Resource" shows it (inspection only: never sent to a
/// renderer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// The entry's SHA-256.
    pub hash: ContentHash,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Origins that completed a verified write of it (each is charged `size`).
    pub storing_origins: std::collections::BTreeSet<Origin>,
    /// Origins a list write granted read access.
    pub listed_origins: Vec<Origin>,
    /// Whether an `origins: "*"` write made it globally disclosable (subject to the gates).
    pub global: bool,
    /// Whether the current Public Hash List names it, i.e. whether the global flag discloses
    /// anything: the user sees which globally shared entries are really reachable cross-site.
    pub on_public_hash_list: bool,
    /// When the first verified write committed (Unix milliseconds).
    pub created_ms: u64,
    /// When it was last opened for reading (Unix milliseconds; 0: never), counting reads not yet
    /// written to the registry.
    pub last_read_ms: u64,
    /// How often it was opened for reading, counting reads not yet written to the registry.
    pub read_count: u64,
    /// Who stored it from which document, and when (never shown to script).
    pub provenance: Vec<ProvenanceInfo>,
}

/// One verified write's origin, document and time, as inspection shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceInfo {
    /// The writing origin.
    pub origin: Origin,
    /// The writing document's URL, when known.
    pub document_url: Option<String>,
    /// When the write committed (Unix milliseconds).
    pub time_ms: u64,
}

/// One origin as the browser's "View by Origin" shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginInfo {
    /// The storing origin.
    pub origin: Origin,
    /// What it is charged against its limits (the full size of every entry it stores).
    pub charged_bytes: u64,
    /// How many entries it stores.
    pub entries: u64,
}

/// Streamed over the pipe attached to [`BrowserToService::Inspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InspectionItem {
    /// One entry; its origin lists may continue in [`EntryOrigins`](Self::EntryOrigins) items.
    Entry(EntryInfo),
    /// More storing and listed origins of the last [`Entry`](Self::Entry), so that no entry,
    /// however many origins it records, is too large for one message.
    EntryOrigins {
        /// Storing origins to add.
        storing: Vec<Origin>,
        /// Listed origins to append.
        listed: Vec<Origin>,
    },
    /// One origin.
    Origin(OriginInfo),
    /// Nothing follows.
    End,
}

/// What a scrub of a partition found (browser-side inspection: re-hashing every blob).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Entries whose blob was re-hashed.
    pub entries_checked: u64,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Entries whose blob no longer matched its hash (deleted).
    pub corrupt_removed: u64,
    /// Entries whose blob was missing (deleted).
    pub missing_removed: u64,
}

/// Streamed over the pipe attached to [`BrowserToService::Scrub`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScrubItem {
    /// After each entry: the findings so far, of `total` entries.
    Progress {
        /// Findings so far.
        report: ScrubReport,
        /// Entries to check in all.
        total: u64,
    },
    /// The scrub is complete (or failed: the `Done` reply says which).
    End,
}

/// The storage service's own state for one partition, as the browser's internals page shows it
/// (inspection only: never sent to a renderer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// What the Public Hash List in use held (`None`: no list, the global grant discloses
    /// nothing).
    pub public_hash_list: Option<PublicHashListCounts>,
    /// When that list was loaded (Unix milliseconds; 0 without a list).
    pub public_hash_list_loaded_ms: u64,
    /// The partition's byte limits: per origin, the whole store, an origin's fair share.
    pub per_origin_bytes: u64,
    /// What all blobs together may occupy.
    pub total_bytes: u64,
    /// An origin's fair share of the store (beyond it, it may evict only its own entries).
    pub share_bytes: u64,
    /// Distinct hashes a top-level site may probe through the global path per activation.
    pub probe_budget: u32,
    /// Entries evicted to make room since the service started.
    pub evicted_entries: u64,
    /// Entries deleted because their blob no longer matched their hash since the service started.
    pub corrupt_removed: u64,
}

/// One top-level site's probe budget (SPEC §6), as the internals page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeBudgetInfo {
    /// The top-level site's serialisation.
    pub site: String,
    /// Distinct hashes it probed since its last user activation.
    pub spent: u64,
}

/// Streamed over the pipe attached to [`BrowserToService::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusItem {
    /// The service's state; first.
    Service(ServiceStatus),
    /// One top-level site's budget (one item each, so that no number of sites breaks the stream).
    Budget(ProbeBudgetInfo),
    /// Nothing follows.
    End,
}

/// Longest document URL kept as provenance (longer ones are cut), so every inspection item
/// fits one message.
pub const MAX_PROVENANCE_URL_BYTES: usize = 2048;

/// Browser → service control messages. Trusted.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrowserToService {
    /// First message: how to open the store.
    Configure(ServiceProcessConfig),
    /// Serve a renderer on `connection`.
    BindRenderer {
        /// Which renderer (for logs).
        renderer: RendererId,
        /// The renderer's connection (the broker holds the other end).
        connection: Attached,
    },
    /// Clear one origin's COS data (a user action).
    ClearSiteData {
        /// Echoed in the reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
        /// Whose data.
        origin: Origin,
    },
    /// A user activation in a document of `top_level_site`: its probe budget starts over.
    UserActivation {
        /// Which store's budgets.
        partition: Partition,
        /// The top-level site of the activated document.
        top_level_site: Site,
    },
    /// Replace the Public Hash List without a restart.
    ReloadPublicHashList {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// The browser streams the list file's bytes over it, then an empty message.
        list: Attached,
    },
    /// List a partition's entries and origins. Answered with `Done` once the stream ended.
    Inspect {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
        /// The pipe to stream [`InspectionItem`]s over.
        stream: Attached,
    },
    /// Delete an entry for everyone (a user action in "View by Resource").
    DeleteEntry {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
        /// The entry.
        hash: ContentHash,
    },
    /// Re-hash every blob of a partition, deleting damaged or missing ones. Answered with `Done`
    /// once the stream ended.
    Scrub {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
        /// The pipe to stream [`ScrubItem`]s over.
        stream: Attached,
    },
    /// Report the service's state for a partition (the internals page). Answered with `Done`
    /// once the stream ended.
    Status {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
        /// The pipe to stream [`StatusItem`]s over.
        stream: Attached,
    },
    /// Discard an off-the-record profile's store.
    CloseOffTheRecord {
        /// The profile.
        profile: OffTheRecordProfileId,
    },
    /// Liveness check.
    Ping {
        /// Echoed in the reply.
        request: RequestId,
    },
    /// Flush and exit.
    Shutdown,
}

/// Service → browser control messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceToBrowser {
    /// The store is open and the sandbox applied; requests may flow.
    Ready {
        /// Entries found at start.
        entries: u64,
        /// Whether the sandbox is fully enforced.
        sandboxed: bool,
    },
    /// The store could not be opened; the message is for the operator's log.
    Failed {
        /// Operator-facing description.
        message: String,
    },
    /// Only in the service's `--sandbox-self-test` mode, right after `Ready`: whether each
    /// forbidden operation, tried inside the locked-down process, was blocked.
    SandboxSelfTest {
        /// Opening `/etc/passwd`.
        open_outside_store_blocked: bool,
        /// A TCP connection to 127.0.0.1.
        tcp_connect_blocked: bool,
        /// Executing `/bin/true`.
        exec_blocked: bool,
    },
    /// What a reloaded Public Hash List held; sent just before the `Done` of its
    /// [`BrowserToService::ReloadPublicHashList`].
    PublicHashListLoaded {
        /// The reload request.
        request: RequestId,
        /// Digests per section.
        counts: PublicHashListCounts,
    },
    /// Answer to a control request.
    Done {
        /// The request.
        request: RequestId,
        /// `Ok` or the web error.
        result: Result<(), CosError>,
    },
}

/// Largest data payload in one data-pipe frame: with its header it stays one datagram.
pub const DATA_CHUNK_BYTES: usize = 128 * 1024;

/// Entries smaller than this are never handed out as a sealed memory file
/// ([`ReaderRequest::ReadShared`]): a descriptor, its checks and a mapping cost more than
/// sending the bytes, which the `getFile` reply then carries ([`INLINE_READ_MAX_BYTES`]). The
/// renderer asks for a descriptor only from this size on, and the service answers a smaller
/// entry with the stream whatever it was asked.
pub const SHARED_READ_MIN_BYTES: u64 = 64 * 1024;

/// Entries of at most this many bytes are answered whole inside the `getFile` reply
/// ([`CallResult::InlineFile`]): no data pipe, no service thread, no second round trip. Every
/// smaller size than the descriptor path's ([`SHARED_READ_MIN_BYTES`]) is inline, so each whole
/// read is one message either way. The reply stays well inside one message
/// (`cos_ipc::MAX_MESSAGE_BYTES`) and inside a socket's default send queue, and hashing this much
/// on every read costs about one round trip.
pub const INLINE_READ_MAX_BYTES: usize = 64 * 1024 - 1;

const _: () = assert!(INLINE_READ_MAX_BYTES as u64 + 1 == SHARED_READ_MIN_BYTES);

/// The bytes of a whole entry carried in a reply ([`CallResult::InlineFile`]): at most
/// [`INLINE_READ_MAX_BYTES`], refused on decoding beyond.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineBytes(Vec<u8>);

impl InlineBytes {
    /// `bytes`, if there are at most [`INLINE_READ_MAX_BYTES`] of them.
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() <= INLINE_READ_MAX_BYTES).then_some(Self(bytes))
    }

    /// The bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl std::ops::Deref for InlineBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for InlineBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InlineBytes({} bytes)", self.0.len())
    }
}

impl Serialize for InlineBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for InlineBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bounded;

        impl serde::de::Visitor<'_> for Bounded {
            type Value = InlineBytes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "at most {INLINE_READ_MAX_BYTES} bytes")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<InlineBytes, E> {
                if bytes.len() > INLINE_READ_MAX_BYTES {
                    return Err(E::invalid_length(bytes.len(), &self));
                }
                Ok(InlineBytes(bytes.to_vec()))
            }
        }

        deserializer.deserialize_bytes(Bounded)
    }
}

/// The send queue each side of a data pipe asks for, so that several chunks are in flight.
pub const DATA_PIPE_SEND_BUFFER: usize = 2 << 20;

/// A frame on a write data pipe, renderer → service. **Untrusted.** `data` is borrowed from the
/// received message, so a chunk is never copied on its way to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriterFrame<'a> {
    /// Write `data` at `position` (or at the cursor when `None`).
    Write {
        /// Where.
        position: Option<u64>,
        /// At most [`DATA_CHUNK_BYTES`] (more does not decode).
        #[serde(borrow, with = "chunk")]
        data: &'a [u8],
    },
    /// Move the cursor.
    Seek(u64),
    /// Resize.
    Truncate(u64),
    /// Verify and commit; the service answers with [`WriterEvent::Closed`].
    Close,
    /// Discard.
    Abort,
}

impl WriterFrame<'_> {
    /// The encoding of `Write { position, data }` without `data`'s bytes, which follow it in
    /// the frame: a sender passes this header and the borrowed chunk to
    /// `cos_ipc::Endpoint::send_parts`, so the chunk is copied once (into the socket) rather
    /// than first into an encoded frame. Sent together they are exactly the frame's encoding.
    pub fn write_header(position: Option<u64>, len: usize) -> Result<Vec<u8>, cos_ipc::IpcError> {
        // Bytes are encoded as their length, then themselves: the empty chunk's encoding ends
        // with the length 0, which becomes `len`.
        let mut header = cos_ipc::encode(&WriterFrame::Write { position, data: &[] })?;
        let empty_len = header.pop();
        debug_assert_eq!(empty_len, Some(0));
        header.extend_from_slice(&cos_ipc::encode(&(len as u64))?);
        Ok(header)
    }
}

/// A data chunk as serde bytes (one length, then the bytes: no per-byte encoding), refused on
/// decoding beyond [`DATA_CHUNK_BYTES`].
mod chunk {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    use super::DATA_CHUNK_BYTES;

    pub(super) fn serialize<S: Serializer>(data: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(data)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'de [u8], D::Error> {
        struct Chunk;

        impl<'de> Visitor<'de> for Chunk {
            type Value = &'de [u8];

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {DATA_CHUNK_BYTES} bytes")
            }

            fn visit_borrowed_bytes<E: de::Error>(self, data: &'de [u8]) -> Result<&'de [u8], E> {
                if data.len() > DATA_CHUNK_BYTES {
                    return Err(E::invalid_length(data.len(), &self));
                }
                Ok(data)
            }
        }

        deserializer.deserialize_bytes(Chunk)
    }
}

/// Service → renderer on a write data pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriterEvent {
    /// A write failed; the stream is errored and every later operation reports this.
    Failed(CosError),
    /// The answer to [`WriterFrame::Close`]: verified and committed (with the warnings for the
    /// writing page's console), or why not.
    Closed(Result<WriteWarnings, CosError>),
}

/// Renderer → service on a read data pipe. **Untrusted.**
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderRequest {
    /// Send `len` bytes from `offset` (clamped to the entry) as data frames, then an end frame.
    Read {
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Send the whole entry, as [`ReaderEnd::Shared`] with a sealed memory file attached when
    /// the service holds a verified copy or can make one now (the first read of an entry in a
    /// service generation is streamed and verified instead), else as `Read` of the whole entry
    /// would. Only a
    /// renderer that maps descriptors asks (not over the ipc-channel link, which relays bytes
    /// only); either way it receives exactly the entry's bytes, nothing more.
    ReadShared,
}

/// Service → renderer on a read data pipe: `Bulk` chunks of up to [`DATA_CHUNK_BYTES`] of the
/// requested range, in order (read straight from the blob into the message after
/// [`cos_ipc::BULK_PREFIX`], received straight into the result), then one [`ReaderEnd`].
pub type ReaderFrame<'a> = DataFrame<'a, ReaderEnd>;

/// How a read on a read data pipe ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderEnd {
    /// The requested range is complete.
    End,
    /// The read failed (always `NotFoundError` for the entry's own failures).
    Failed(CosError),
    /// The answer to [`ReaderRequest::ReadShared`] when the whole entry is in the sealed memory
    /// file this frame carries (sent with `Endpoint::send_file`; nothing follows it). The
    /// receiver maps it only after checking its seals and that its size is the entry's
    /// (`cos_ipc::SealedFile::from_received`).
    Shared,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_header_and_its_chunk_are_the_frame() {
        let data = vec![9u8; DATA_CHUNK_BYTES];
        for position in [None, Some(0), Some(127), Some(128), Some(1 << 40), Some(u64::MAX)] {
            for len in [0, 1, 127, 128, 16_383, 16_384, DATA_CHUNK_BYTES - 1, DATA_CHUNK_BYTES] {
                let chunk = &data[..len];
                let mut joined = WriterFrame::write_header(position, len).unwrap();
                joined.extend_from_slice(chunk);
                assert_eq!(joined, cos_ipc::encode(&WriterFrame::Write { position, data: chunk }).unwrap());
                assert_eq!(
                    cos_ipc::decode_borrowed::<WriterFrame<'_>>(&joined).unwrap(),
                    WriterFrame::Write { position, data: chunk }
                );
            }
        }
    }

    #[test]
    fn writer_frames_round_trip_without_copying_data() {
        let data = [7u8; 300];
        for frame in [
            WriterFrame::Write { position: Some(42), data: &data },
            WriterFrame::Write { position: None, data: &data },
            WriterFrame::Write { position: None, data: &[] },
            WriterFrame::Seek(u64::MAX),
            WriterFrame::Truncate(3),
            WriterFrame::Close,
            WriterFrame::Abort,
        ] {
            let bytes = cos_ipc::encode(&frame).unwrap();
            let decoded: WriterFrame<'_> = cos_ipc::decode_borrowed(&bytes).unwrap();
            assert_eq!(decoded, frame);
            if let WriterFrame::Write { data, .. } = decoded {
                assert!(data.is_empty() || bytes.as_ptr_range().contains(&data.as_ptr()), "borrowed");
            }
        }
    }

    #[test]
    fn malformed_writer_frames_are_rejected() {
        for bytes in [&[][..], &[9], &[2, 1, 2], &[3, 0], &[0, 1, 1, 2, 3]] {
            assert!(cos_ipc::decode_borrowed::<WriterFrame<'_>>(bytes).is_err(), "{bytes:?}");
        }
        let oversized = vec![0u8; DATA_CHUNK_BYTES + 1];
        let bytes = cos_ipc::encode(&WriterFrame::Write { position: None, data: &oversized }).unwrap();
        assert!(cos_ipc::decode_borrowed::<WriterFrame<'_>>(&bytes).is_err());
    }

    #[test]
    fn write_warnings_are_fixed_texts_and_round_trip() {
        let mut warnings = WriteWarnings::from(WriteWarning::NoUserActivation);
        warnings.add(WriteWarning::OriginsListFull);
        warnings.add(WriteWarning::OriginsListFull);
        assert_eq!(
            warnings.iter().collect::<Vec<_>>(),
            [WriteWarning::OriginsListFull, WriteWarning::NoUserActivation]
        );
        let event = WriterEvent::Closed(Ok(warnings));
        assert_eq!(cos_ipc::decode::<WriterEvent>(&cos_ipc::encode(&event).unwrap()).unwrap(), event);
        for warning in [WriteWarning::OriginsListFull, WriteWarning::NoUserActivation] {
            assert!(warning.message().starts_with("Cross-Origin Storage: ") && !warning.message().contains("://"));
        }
    }

    #[test]
    fn inline_bytes_round_trip_up_to_their_bound_and_no_further() {
        let largest = InlineBytes::new(vec![5; INLINE_READ_MAX_BYTES]).unwrap();
        let reply = Reply { request: RequestId(3), result: CallResult::InlineFile { bytes: largest } };
        let encoded = cos_ipc::encode(&reply).unwrap();
        assert!(encoded.len() < cos_ipc::MAX_MESSAGE_BYTES);
        assert_eq!(cos_ipc::decode::<Reply>(&encoded).unwrap(), reply);

        assert!(InlineBytes::new(vec![0; INLINE_READ_MAX_BYTES + 1]).is_none());
        // A peer that encodes more than the bound anyway: the reply does not decode.
        #[derive(Serialize)]
        enum ForgedResult<'a> {
            _Handle,
            _File,
            InlineFile {
                #[serde(with = "serde_bytes_forged")]
                bytes: &'a [u8],
            },
        }
        mod serde_bytes_forged {
            pub(super) fn serialize<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(bytes)
            }
        }
        #[derive(Serialize)]
        struct ForgedReply<'a> {
            request: RequestId,
            result: ForgedResult<'a>,
        }
        let too_many = vec![0u8; INLINE_READ_MAX_BYTES + 1];
        let forged = cos_ipc::encode(&ForgedReply {
            request: RequestId(3),
            result: ForgedResult::InlineFile { bytes: &too_many },
        })
        .unwrap();
        assert!(cos_ipc::decode::<Reply>(&forged).is_err());
        let fitting = vec![0u8; INLINE_READ_MAX_BYTES];
        let forged = cos_ipc::encode(&ForgedReply {
            request: RequestId(3),
            result: ForgedResult::InlineFile { bytes: &fitting },
        })
        .unwrap();
        assert!(cos_ipc::decode::<Reply>(&forged).is_ok(), "the forged layout is the real one");
    }

    #[test]
    fn reader_frames_round_trip() {
        for frame in [
            ReaderFrame::Bulk(b"abc"),
            ReaderFrame::Message(ReaderEnd::End),
            ReaderFrame::Message(ReaderEnd::Failed(CosError::NotFound)),
        ] {
            let bytes = frame.encode().unwrap();
            assert_eq!(ReaderFrame::decode(&bytes, DATA_CHUNK_BYTES).unwrap(), frame);
        }
        let failed = ReaderFrame::Message(ReaderEnd::Failed(CosError::NotFound)).encode().unwrap();
        assert!(ReaderFrame::decode(&[failed[0], 1, 200], DATA_CHUNK_BYTES).is_err());
    }
}
