//! The messages of every COS interface, as pure data. Only `cos_ipc` knows how they travel; this
//! module says what they mean and who is trusted to send them.
//!
//! ```text
//!  renderer ──RendererToBroker──► broker stub (browser) ──BrokerToService──► storage service
//!  renderer ◄──────Reply───────── broker stub          ◄──ServiceToBroker── storage service
//!  renderer ◄═══ data pipe (WriterFrame / ReaderFrame), bound to one writer or one read ═══► service
//!  browser  ──BrowserToService──► storage service (control: configure, bind renderers, clear data)
//! ```
//!
//! Every field is a validated type, so decoding a message *is* validating it: a renderer that
//! sends bytes which do not decode is misbehaving (a bad message), because a well-behaved
//! renderer throws `TypeError` before sending anything.

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

/// A file handle of one renderer. The broker numbers them, in order, for as long as the renderer
/// lives: an id is never issued twice on a renderer's pipe, not even by a restarted service, so it
/// can never come to name another handle. The broker binds each id to the origin and partition
/// that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HandleId(pub u64);

/// Correlates a reply with its request on one connection; chosen by the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// The parts of a create request the service needs, as the broker supplies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOptions {
    /// The validated `origins` option.
    pub origins: OriginsOption,
    /// The writing document's `Cross-Origin-Storage-Allow-Origin` ceiling (known to the browser
    /// process, never taken from the renderer).
    pub allow_origin_ceiling: AllowOriginCeiling,
    /// The writing document's URL, kept as private provenance.
    pub document_url: Option<String>,
}

impl CreateOptions {
    /// A create request with no `origins` (the same-site baseline).
    pub fn same_site() -> Self {
        Self { origins: OriginsOption::Omitted, allow_origin_ceiling: AllowOriginCeiling::empty(), document_url: None }
    }

    /// A create request with the given `origins` and ceiling.
    pub fn with_origins(origins: OriginsOption, allow_origin_ceiling: AllowOriginCeiling) -> Self {
        Self { origins, allow_origin_ceiling, document_url: None }
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

/// Renderer → broker. **Untrusted**: the broker checks that `frame` belongs to the sending
/// renderer (otherwise: bad message) and applies the Permissions Policy before anything else.
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
    /// `handle.getFile()`. The reply carries a read data pipe.
    GetFile {
        /// Echoed in the reply.
        request: RequestId,
        /// The calling document: the one that opened the handle, or a same-origin document of the
        /// same partition that received it by transfer (anything else is a bad message).
        frame: FrameId,
        /// A handle this renderer received.
        handle: HandleId,
    },
    /// `handle.createWritable()`. The reply carries a write data pipe.
    CreateWritable {
        /// Echoed in the reply.
        request: RequestId,
        /// The calling document, as for [`GetFile`](Self::GetFile).
        frame: FrameId,
        /// A handle this renderer received.
        handle: HandleId,
    },
    /// The renderer dropped its last reference to a handle.
    ReleaseHandle {
        /// The handle.
        handle: HandleId,
    },
}

/// Broker → service, on the connection the browser bound for one renderer. Trusted: the caller
/// context comes from the browser's frame table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `getFile()` on a handle of this connection.
    GetFile {
        /// Echoed in the reply.
        request: RequestId,
        /// The handle.
        handle: HandleId,
    },
    /// `createWritable()` on a handle of this connection.
    CreateWritable {
        /// Echoed in the reply.
        request: RequestId,
        /// The handle.
        handle: HandleId,
    },
    /// Forget a handle.
    ReleaseHandle {
        /// The handle.
        handle: HandleId,
    },
}

/// Service → broker, on the connection the browser bound for one renderer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request this answers.
    pub request: RequestId,
    /// What happened.
    pub result: CallResult,
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallResult {
    /// `getFileHandle` succeeded.
    Handle {
        /// The new handle.
        handle: HandleId,
        /// Whether it came from a create request (starts unreadable).
        create: bool,
    },
    /// `getFile` succeeded; one attachment: the read data pipe.
    File {
        /// Size of the entry.
        size: u64,
    },
    /// `createWritable` succeeded; one attachment: the write data pipe.
    Writable,
    /// The request failed with this web error.
    Failed(CosError),
}

impl CallResult {
    /// How many data pipes travel with this result.
    pub fn attachment_count(&self) -> usize {
        match self {
            Self::File { .. } | Self::Writable => 1,
            Self::Handle { .. } | Self::Failed(_) => 0,
        }
    }
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
    /// Availability gating: disclose a global entry not on the list once this many distinct
    /// sites stored it (`None`: off, the default).
    pub availability_threshold: Option<u32>,
    /// Distinct hashes a top-level site may probe through the global path (default 16).
    pub probe_budget: u32,
    /// Test seam only: GREASE every eligible read (`Some(true)`) or none (`Some(false)`);
    /// `None` (always, in a browser) draws 1% from the OS CSPRNG.
    pub grease_for_tests: Option<bool>,
    /// Apply the sandbox (tests of unsandboxed behaviour turn it off; production never does).
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
            availability_threshold: None,
            probe_budget: 16,
            grease_for_tests: None,
            sandbox: true,
        }
    }
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

/// Longest document URL kept as provenance (longer ones are cut), so every inspection item
/// fits one message.
pub const MAX_PROVENANCE_URL_BYTES: usize = 2048;

/// Browser → service control messages. Trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrowserToService {
    /// First message: how to open the store.
    Configure(ServiceProcessConfig),
    /// Serve a renderer on the attached endpoint (one attachment).
    BindRenderer {
        /// Which renderer (for logs).
        renderer: RendererId,
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
    /// Replace the Public Hash List without a restart. One attachment: a pipe over which the
    /// browser streams the list file's bytes, then an empty message.
    ReloadPublicHashList {
        /// Echoed in the `Done` reply.
        request: RequestId,
    },
    /// List a partition's entries and origins; one attachment: the pipe to stream
    /// [`InspectionItem`]s over. Answered with `Done` once the stream ended.
    Inspect {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
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
    /// Re-hash every blob of a partition, deleting damaged or missing ones; one attachment: the
    /// pipe to stream [`ScrubItem`]s over. Answered with `Done` once the stream ended.
    Scrub {
        /// Echoed in the `Done` reply.
        request: RequestId,
        /// Which store.
        partition: Partition,
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

/// The send queue each side of a data pipe asks for, so that several chunks are in flight.
pub const DATA_PIPE_SEND_BUFFER: usize = 2 << 20;

/// A frame on a write data pipe, renderer → service. **Untrusted.** Encoded by hand (tag byte,
/// little-endian integers, raw payload) so chunks are never copied through a serializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterFrame<'a> {
    /// Write `data` at `position` (or at the cursor when `None`).
    Write {
        /// Where.
        position: Option<u64>,
        /// At most [`DATA_CHUNK_BYTES`].
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

/// A data frame that does not decode: the peer is misbehaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed data-pipe frame")]
pub struct MalformedFrame;

const TAG_WRITE_AT: u8 = 1;
const TAG_WRITE: u8 = 2;
const TAG_SEEK: u8 = 3;
const TAG_TRUNCATE: u8 = 4;
const TAG_CLOSE: u8 = 5;
const TAG_ABORT: u8 = 6;

fn read_u64(bytes: &[u8]) -> Result<u64, MalformedFrame> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| MalformedFrame)?;
    Ok(u64::from_le_bytes(array))
}

impl<'a> WriterFrame<'a> {
    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            Self::Write { position: Some(position), data } => {
                out.push(TAG_WRITE_AT);
                out.extend_from_slice(&position.to_le_bytes());
                out.extend_from_slice(data);
            }
            Self::Write { position: None, data } => {
                out.push(TAG_WRITE);
                out.extend_from_slice(data);
            }
            Self::Seek(position) => {
                out.push(TAG_SEEK);
                out.extend_from_slice(&position.to_le_bytes());
            }
            Self::Truncate(size) => {
                out.push(TAG_TRUNCATE);
                out.extend_from_slice(&size.to_le_bytes());
            }
            Self::Close => out.push(TAG_CLOSE),
            Self::Abort => out.push(TAG_ABORT),
        }
    }

    /// Decodes one frame; payloads longer than [`DATA_CHUNK_BYTES`] are malformed.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, MalformedFrame> {
        let (&tag, rest) = bytes.split_first().ok_or(MalformedFrame)?;
        let frame = match tag {
            TAG_WRITE_AT => {
                if rest.len() < 8 {
                    return Err(MalformedFrame);
                }
                let (position, data) = rest.split_at(8);
                Self::Write { position: Some(read_u64(position)?), data }
            }
            TAG_WRITE => Self::Write { position: None, data: rest },
            TAG_SEEK => Self::Seek(read_u64(rest)?),
            TAG_TRUNCATE => Self::Truncate(read_u64(rest)?),
            TAG_CLOSE if rest.is_empty() => Self::Close,
            TAG_ABORT if rest.is_empty() => Self::Abort,
            _ => return Err(MalformedFrame),
        };
        if let Self::Write { data, .. } = frame
            && data.len() > DATA_CHUNK_BYTES
        {
            return Err(MalformedFrame);
        }
        Ok(frame)
    }
}

/// Service → renderer on a write data pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriterEvent {
    /// A write failed; the stream is errored and every later operation reports this.
    Failed(CosError),
    /// The answer to [`WriterFrame::Close`]: verified and committed, or why not.
    Closed(Result<(), CosError>),
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
}

/// Service → renderer on a read data pipe: a tag byte then the payload, encoded by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderFrame<'a> {
    /// Up to [`DATA_CHUNK_BYTES`] of the requested range, in order.
    Data(&'a [u8]),
    /// The requested range is complete.
    End,
    /// The read failed (always `NotFoundError` for the entry's own failures).
    Failed(CosError),
}

const TAG_DATA: u8 = ReaderFrame::DATA_TAG;
const TAG_END: u8 = 2;
const TAG_FAILED: u8 = 3;

impl<'a> ReaderFrame<'a> {
    /// The first byte of a [`ReaderFrame::Data`] frame; the payload follows directly, so a sender
    /// may read file bytes straight into a buffer after this byte.
    pub const DATA_TAG: u8 = 1;

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Data(data) => {
                out.push(TAG_DATA);
                out.extend_from_slice(data);
            }
            Self::End => out.push(TAG_END),
            Self::Failed(error) => {
                out.push(TAG_FAILED);
                out.extend_from_slice(&postcard::to_allocvec(error).expect("errors always serialise"));
            }
        }
    }

    /// Decodes one frame.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, MalformedFrame> {
        let (&tag, rest) = bytes.split_first().ok_or(MalformedFrame)?;
        match tag {
            TAG_DATA if rest.len() <= DATA_CHUNK_BYTES => Ok(Self::Data(rest)),
            TAG_END if rest.is_empty() => Ok(Self::End),
            TAG_FAILED => postcard::from_bytes(rest).map(Self::Failed).map_err(|_| MalformedFrame),
            _ => Err(MalformedFrame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_frames_round_trip() {
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
            let mut bytes = Vec::new();
            frame.encode_into(&mut bytes);
            assert_eq!(WriterFrame::decode(&bytes), Ok(frame));
        }
    }

    #[test]
    fn malformed_writer_frames_are_rejected() {
        for bytes in [&[][..], &[0], &[9], &[TAG_SEEK, 1, 2], &[TAG_CLOSE, 0], &[TAG_WRITE_AT, 1, 2, 3]] {
            assert_eq!(WriterFrame::decode(bytes), Err(MalformedFrame), "{bytes:?}");
        }
        let mut oversized = vec![TAG_WRITE];
        oversized.resize(DATA_CHUNK_BYTES + 2, 0);
        assert_eq!(WriterFrame::decode(&oversized), Err(MalformedFrame));
    }

    #[test]
    fn reader_frames_round_trip() {
        for frame in [ReaderFrame::Data(b"abc"), ReaderFrame::End, ReaderFrame::Failed(CosError::NotFound)] {
            let mut bytes = Vec::new();
            frame.encode_into(&mut bytes);
            assert_eq!(ReaderFrame::decode(&bytes), Ok(frame));
        }
        assert_eq!(ReaderFrame::decode(&[TAG_FAILED, 200]), Err(MalformedFrame));
    }
}
