//! The service's public API: handles, writers and readers over the partitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cos_common::interface::{HandleRequest, WriteWarning, WriteWarnings};
use cos_common::{
    CallerContext, ContentHash, CosError, DataErrorKind, NotAllowedKind, OffTheRecordProfileId, Origin, OriginsOption,
    Partition, QuotaScope, Site,
};
use parking_lot::RwLock;

use crate::blob_store::{BlobSink, BlobSource, IO_CHUNK, Lent, PrefixHasher};
use crate::config::ServiceConfig;
use crate::error::{Failure, StoreError};
use crate::faults::Faults;
use crate::gates::{PrivacyGates, ProbeBudgets, PublicHashList, PublicHashListBuilder};
use crate::in_flight::Reservation;
use crate::integrity::{FileIdentity, Observation, stream_hashed};
use crate::partition::{ClearSiteDataReport, CommitOutcome, PartitionStore, RecoveryReport};
use crate::registry::{EntryRecord, OriginRecord};
use crate::revocation::{HandleState, IssuedFor};
use crate::shared_reads::{SHARED_READ_MIN_BYTES, SharedReads};

/// How often a lookup decides again when revocations keep running between its decision and the
/// registration of its handle, before it fails closed.
const MAX_DECISIONS: usize = 8;

/// The Cross-Origin Storage service: owns the store of the regular profile and the in-memory
/// stores of off-the-record profiles. Cheap to clone; every method may be called from any thread.
#[derive(Clone)]
pub struct StorageService {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    config: ServiceConfig,
    regular: Arc<PartitionStore>,
    off_the_record: RwLock<HashMap<OffTheRecordProfileId, Arc<PartitionStore>>>,
    gates: PrivacyGates,
    budgets: parking_lot::Mutex<HashMap<Partition, Arc<ProbeBudgets>>>,
    /// Sealed copies of verified entries for whole reads by descriptor, across partitions.
    shared: Arc<SharedReads>,
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        self.flush_budgets();
    }
}

impl ServiceInner {
    fn flush_budgets(&self) {
        let budgets: Vec<(Partition, Arc<ProbeBudgets>)> =
            self.budgets.lock().iter().map(|(p, b)| (*p, b.clone())).collect();
        for (partition, budget) in budgets {
            let store = match partition {
                Partition::Regular => Some(self.regular.clone()),
                Partition::OffTheRecord(id) => self.off_the_record.read().get(&id).cloned(),
            };
            if let Some(store) = store {
                budget.flush(store.registry());
            }
        }
    }
}

impl StorageService {
    /// Opens the store of `config.profile_dir`, recovering from any crash first. Fails if another
    /// process owns the profile or the directory is unusable.
    pub fn open(config: ServiceConfig) -> Result<(Self, RecoveryReport), StoreError> {
        let root = config.profile_dir.join("cos");
        let faults = Faults::of(&config);
        let shared = SharedReads::new(config.shared_read_bytes);
        let (regular, report) = PartitionStore::open_disk(&root, config.limits, faults, shared.clone())?;
        if report != RecoveryReport::default() {
            tracing::info!(?report, "storage service recovered the store");
        }
        let gates = PrivacyGates::new(&config.gates);
        let inner = ServiceInner {
            config,
            regular: Arc::new(regular),
            off_the_record: RwLock::new(HashMap::new()),
            gates,
            budgets: parking_lot::Mutex::new(HashMap::new()),
            shared,
        };
        Ok((Self { inner: Arc::new(inner) }, report))
    }

    fn partition(&self, partition: Partition) -> Result<Arc<PartitionStore>, Failure> {
        match partition {
            Partition::Regular => Ok(self.inner.regular.clone()),
            Partition::OffTheRecord(id) => {
                if let Some(store) = self.inner.off_the_record.read().get(&id) {
                    return Ok(store.clone());
                }
                let mut map = self.inner.off_the_record.write();
                if let Some(store) = map.get(&id) {
                    return Ok(store.clone());
                }
                let store = Arc::new(PartitionStore::in_memory(
                    self.inner.config.off_the_record_limits,
                    self.inner.shared.clone(),
                )?);
                map.insert(id, store.clone());
                Ok(store)
            }
        }
    }

    /// `getFileHandle(hash, options)` once the broker has checked the caller and validated the
    /// input. A read that fails for any reason is [`CosError::NotFound`].
    pub fn get_file_handle(
        &self,
        caller: &CallerContext,
        hash: ContentHash,
        request: HandleRequest,
    ) -> Result<FileHandle, CosError> {
        let _span = tracing::debug_span!(
            "get_file_handle",
            top_level_site = %caller.nik().top_level_site,
            frame_site = %caller.nik().frame_site,
            create = matches!(request, HandleRequest::Create(_)),
        )
        .entered();
        let partition = self.partition(caller.partition()).map_err(Failure::into_web)?;
        let create = match request {
            HandleRequest::Read => None,
            HandleRequest::Create(options) => {
                let (origins, dropped) = options.allow_origin_ceiling.apply(options.origins);
                if dropped > 0 {
                    tracing::info!(dropped, "origins outside the Allow-Origin ceiling were dropped");
                }
                Some(Arc::new(WriteIntent { origins, document_url: options.document_url, warnings: options.warnings }))
            }
        };
        for _ in 0..MAX_DECISIONS {
            let epoch = partition.handles().epoch();
            let (issued_for, mode) = match &create {
                None => match self.may_disclose(&partition, caller, &hash) {
                    Some(issued_for) => (issued_for, HandleMode::Read),
                    None => return Err(CosError::NotFound),
                },
                Some(intent) => (IssuedFor::Create, HandleMode::Create(intent.clone())),
            };
            let state = HandleState::new(caller.origin().clone(), issued_for);
            if let Some(ticket) = partition.handles().register(hash, &state, epoch) {
                let caller = caller.clone();
                return Ok(FileHandle { partition, caller, hash, mode, state, ticket });
            }
        }
        tracing::warn!("revocations kept overtaking a lookup; failing it closed");
        Err(if create.is_some() { CosError::Abort } else { CosError::NotFound })
    }

    /// Every failure (miss, scope, gate, budget, registry error) ends here as `None`: one path,
    /// one answer. Every step runs whatever the earlier ones found, and reads only rows whose
    /// cost does not depend on the entry (`registry::access`), so that the classes of
    /// `NotFoundError` cost the same; each refusal is then held to the configured floor. Returns
    /// why the read is allowed.
    fn may_disclose(
        &self,
        partition: &PartitionStore,
        caller: &CallerContext,
        hash: &ContentHash,
    ) -> Option<IssuedFor> {
        let started = Instant::now();
        let decision = self.decide_disclosure(partition, caller, hash);
        if decision.is_none() {
            // A refusal's own cost varies a little (a budget charge is written, the list is
            // searched, scheduling); holding every refusal to the same floor, busy-waiting (a
            // sleep's timer slack is far coarser), hides that from a renderer.
            let floor = self.inner.config.not_found_floor;
            while started.elapsed() < floor {
                std::hint::spin_loop();
            }
        }
        decision
    }

    fn decide_disclosure(
        &self,
        partition: &PartitionStore,
        caller: &CallerContext,
        hash: &ContentHash,
    ) -> Option<IssuedFor> {
        let access = partition.access(hash, &caller.nik().frame_site).unwrap_or_else(|error| {
            tracing::warn!(%error, "registry lookup failed; answering NotFound");
            None
        });
        // Storing, same-site and listed readers are never gated nor charged.
        if access.is_some_and(|access| access.ungated) {
            return Some(IssuedFor::UngatedRead);
        }
        // Everything else is a probe through the global path: misses and denials included.
        let budgets = self.budgets(caller.partition());
        let within_budget = budgets.charge(partition.registry(), &caller.nik().top_level_site, hash);
        let head = access.map(|access| access.head);
        let gate_allows = self.inner.gates.global_allows(hash, head.as_ref());
        let global = head.is_some_and(|head| head.global);
        (global && within_budget && gate_allows).then_some(IssuedFor::GlobalRead)
    }

    /// Distinct hashes a top-level site may probe per activation.
    pub(crate) fn probe_budget_limit(&self) -> u32 {
        self.inner.config.gates.probe_budget
    }

    /// The byte limits a partition has (or would have, once opened).
    pub(crate) fn limits_of(&self, partition: Partition) -> crate::StorageLimits {
        match partition {
            Partition::Regular => self.inner.regular.limits(),
            Partition::OffTheRecord(_) => self.inner.config.off_the_record_limits,
        }
    }

    /// What the Public Hash List in use holds, and when it was loaded (Unix milliseconds).
    pub(crate) fn public_hash_list_status(&self) -> (Option<cos_common::interface::PublicHashListCounts>, u64) {
        self.inner.gates.public_hash_list_status()
    }

    /// The probe budgets of a partition (created empty on first use).
    pub(crate) fn budgets(&self, partition: Partition) -> Arc<ProbeBudgets> {
        self.inner
            .budgets
            .lock()
            .entry(partition)
            .or_insert_with(|| Arc::new(ProbeBudgets::new(self.inner.config.gates.probe_budget)))
            .clone()
    }

    /// A user activation happened in a document whose top-level site is `site`: its probe budget
    /// starts over (the broker, which sees activations, reports them).
    pub fn notify_user_activation(&self, partition: Partition, site: &Site) {
        if let Ok(store) = self.partition(partition) {
            self.budgets(partition).replenish(store.registry(), site);
        }
    }

    /// Swaps in a new Public Hash List (`None`: no list, fail closed) without a restart.
    pub fn set_public_hash_list(&self, list: Option<PublicHashList>) {
        self.inner.gates.set_public_hash_list(list);
    }

    /// A parser for a Public Hash List this service will use (the configured sections).
    pub fn public_hash_list_builder(&self) -> PublicHashListBuilder {
        PublicHashListBuilder::new(self.inner.config.gates.hugging_face_section)
    }

    /// Whether `hash` is on the current Public Hash List (inspection views show it).
    pub fn is_on_public_hash_list(&self, hash: &ContentHash) -> bool {
        self.inner.gates.is_on_public_hash_list(hash)
    }

    /// Clears one origin's Cross-Origin Storage data in a partition (a user action in the browser,
    /// never triggered by the site itself).
    pub fn clear_site_data(&self, partition: Partition, origin: &Origin) -> Result<ClearSiteDataReport, StoreError> {
        match self.partition(partition) {
            Ok(store) => store.clear_origin(origin),
            Err(Failure::Store(error)) => Err(error),
            Err(Failure::Refused(_)) => unreachable!("opening a partition is never refused"),
        }
    }

    /// Discards an off-the-record profile's store and its probe budgets. Handles still open keep
    /// working on their detached copy until dropped; nothing of it is ever visible again.
    pub fn close_off_the_record(&self, id: OffTheRecordProfileId) {
        self.inner.off_the_record.write().remove(&id);
        self.inner.budgets.lock().remove(&Partition::OffTheRecord(id));
    }

    /// Bytes the open writers of a partition hold before their `close()` (what the in-flight
    /// limits count).
    pub fn inspect_bytes_in_flight(&self, partition: Partition) -> Result<u64, StoreError> {
        Ok(self.partition_for_inspection(partition)?.map_or(0, |p| p.bytes_in_flight()))
    }

    /// Browser-side inspection: the registry record of an entry (never exposed to renderers).
    pub fn inspect_entry(&self, partition: Partition, hash: &ContentHash) -> Result<Option<EntryRecord>, StoreError> {
        self.partition_for_inspection(partition)?.map_or(Ok(None), |p| p.entry(hash))
    }

    /// Browser-side inspection: what an origin is charged.
    pub fn inspect_origin(&self, partition: Partition, origin: &Origin) -> Result<OriginRecord, StoreError> {
        self.partition_for_inspection(partition)?.map_or(Ok(OriginRecord::default()), |p| p.origin_record(origin))
    }

    /// Browser-side inspection: bytes of all blobs in a partition.
    pub fn inspect_total_bytes(&self, partition: Partition) -> Result<u64, StoreError> {
        self.partition_for_inspection(partition)?.map_or(Ok(0), |p| p.total_bytes())
    }

    pub(crate) fn partition_for_inspection(
        &self,
        partition: Partition,
    ) -> Result<Option<Arc<PartitionStore>>, StoreError> {
        Ok(match partition {
            Partition::Regular => Some(self.inner.regular.clone()),
            Partition::OffTheRecord(id) => self.inner.off_the_record.read().get(&id).cloned(),
        })
    }

    /// Writes batched bookkeeping (read times, probe budgets) to the registry now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush_budgets();
        self.inner.regular.flush_reads()
    }

    /// Flushes, then marks the store as closed cleanly so that the next start skips the full
    /// reconciliation of registry rows and blob files (start-up stays fast on a large store).
    /// Call last, when no request can run any more: nothing may write to the store afterwards.
    pub fn shut_down_cleanly(&self) -> Result<(), StoreError> {
        self.inner.flush_budgets();
        self.inner.regular.mark_clean_shutdown()
    }

    /// Test seam: holds (`true`) or releases the next group commit of the regular partition
    /// before its leader takes the queue, so that a test can make writers meet at the commit
    /// point.
    #[cfg(feature = "testing")]
    pub fn hold_commits(&self, hold: bool) {
        self.inner.regular.hold_commits(hold);
    }

    /// Test seam: verified writes of the regular partition waiting in the commit queue.
    #[cfg(feature = "testing")]
    pub fn queued_commits(&self) -> usize {
        self.inner.regular.queued_commits()
    }

    /// Test seam: bytes the sealed copies for whole reads by descriptor hold (cached and being
    /// filled, in every partition), and how many copies are cached.
    #[cfg(feature = "testing")]
    pub fn shared_copies(&self) -> (u64, usize) {
        self.inner.regular.shared_copies()
    }

    /// Test seam: bytes written to the regular partition's swap files since the service opened
    /// (writers of the same hash at the same time share one file).
    #[cfg(feature = "testing")]
    pub fn swap_bytes_written(&self) -> u64 {
        self.inner.regular.swap_bytes_written()
    }

    /// Test seam: groups of writers of the regular partition sharing a swap file now.
    #[cfg(feature = "testing")]
    pub fn write_groups(&self) -> usize {
        self.inner.regular.write_groups()
    }

    /// Test seam: fills of sealed copies in the regular partition that hashed the blob (a fill
    /// of a blob whose file is unchanged since its verification does not).
    #[cfg(feature = "testing")]
    pub fn fill_hashes(&self) -> u64 {
        self.inner.regular.fill_hashes()
    }

    /// Test seam: registry transactions of the regular partition committed (or attempted) since
    /// the service opened.
    #[cfg(feature = "testing")]
    pub fn registry_commits(&self) -> u64 {
        self.inner.regular.registry_commits()
    }
}

/// What a create handle will request when its write verifies.
#[derive(Debug)]
struct WriteIntent {
    origins: OriginsOption,
    document_url: Option<String>,
    /// What the browser's decisions already warn about (the user-gesture rule).
    warnings: WriteWarnings,
}

#[derive(Debug, Clone)]
enum HandleMode {
    Read,
    Create(Arc<WriteIntent>),
}

/// A `FileSystemFileHandle` for one hash, as returned to one caller.
///
/// *May read* is per handle (SPEC §4): a read handle may read; a create handle may read only
/// after one of its own writers verified. A handle is revoked when a grant it relied on is removed
/// (clear-site-data, deletion, eviction, a damaged blob; see `revocation`): it then answers
/// `NotFoundError`, like a miss.
pub struct FileHandle {
    partition: Arc<PartitionStore>,
    caller: CallerContext,
    hash: ContentHash,
    mode: HandleMode,
    state: Arc<HandleState>,
    /// Its registration among the partition's handles.
    ticket: u64,
}

impl Drop for FileHandle {
    fn drop(&mut self) {
        self.partition.handles().forget(&self.hash, self.ticket);
    }
}

impl FileHandle {
    /// The entry's hash (`name` is its hex form).
    pub fn hash(&self) -> &ContentHash {
        &self.hash
    }

    /// Whether this handle came from a create request.
    pub fn is_create(&self) -> bool {
        matches!(self.mode, HandleMode::Create(_))
    }

    /// Whether `getFile()` would be allowed now (revocation aside).
    pub fn may_read(&self) -> bool {
        self.state.may_read()
    }

    /// Whether a grant this handle relied on was removed since it was issued.
    pub fn is_revoked(&self) -> bool {
        self.state.is_revoked()
    }

    /// `isSameEntry()`: handles name the same entry exactly when their hashes are equal.
    pub fn is_same_entry(&self, other: &FileHandle) -> bool {
        self.hash == other.hash
    }

    /// `getFile()`: opens the entry for reading.
    pub fn get_file(&self) -> Result<FileReader, CosError> {
        if self.state.is_revoked() {
            return Err(CosError::NotFound);
        }
        if !self.may_read() {
            return Err(CosError::NotAllowed(NotAllowedKind::HandleNotReadable));
        }
        match self.partition.open_blob(&self.hash) {
            Ok(Some(source)) => {
                let check = self.partition.needs_check(&self.hash).then(|| {
                    Arc::new(PendingCheck {
                        partition: self.partition.clone(),
                        hash: self.hash,
                        observed: source.observe(),
                        done: AtomicBool::new(false),
                    })
                });
                Ok(FileReader { source, check, partition: Arc::downgrade(&self.partition), hash: self.hash })
            }
            Ok(None) => Err(CosError::NotFound),
            Err(error) => {
                tracing::warn!(%error, "opening a blob failed; answering NotFound");
                Err(CosError::NotFound)
            }
        }
    }

    /// `createWritable()`: a new, empty writer (even with `keepExistingData: true`).
    pub fn create_writable(&self) -> Result<WritableFile, CosError> {
        if self.state.is_revoked() {
            return Err(CosError::NotFound);
        }
        let HandleMode::Create(intent) = &self.mode else {
            return Err(CosError::NotAllowed(NotAllowedKind::HandleNotWritable));
        };
        let reservation = self.partition.reserve(self.caller.origin(), &self.hash).map_err(|e| e.to_web_error())?;
        let sink = self.partition.begin_write(&self.hash).map_err(|e| e.to_web_error())?;
        Ok(WritableFile {
            partition: self.partition.clone(),
            writer: self.caller.origin().clone(),
            target: self.hash,
            intent: intent.clone(),
            handle: self.state.clone(),
            max_size: self.partition.limits().max_entry_bytes(),
            state: WriterState::Open { sink: Box::new(sink), prefix: PrefixHasher::new(), reservation },
            cursor: 0,
            size: 0,
        })
    }
}

#[allow(clippy::large_enum_variant, reason = "one per writer, and almost always the open one")]
enum WriterState {
    Open {
        sink: Box<BlobSink>,
        prefix: PrefixHasher,
        /// The bytes the sink holds, counted against the limits (released with the state).
        reservation: Reservation,
    },
    /// A write failed; the swap area and its reservation are gone and every later call reports
    /// this error.
    Errored(CosError),
}

/// A `FileSystemWritableFileStream` for one create handle. Bytes go to a private swap area;
/// nothing is visible to anyone until [`close`](Self::close) verifies them. Dropping it without
/// closing aborts it.
pub struct WritableFile {
    partition: Arc<PartitionStore>,
    writer: Origin,
    target: ContentHash,
    intent: Arc<WriteIntent>,
    handle: Arc<HandleState>,
    max_size: u64,
    state: WriterState,
    cursor: u64,
    size: u64,
}

impl WritableFile {
    /// The current size of the written data.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The position the next plain `write` goes to.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// `write(data)`: writes at the cursor and advances it.
    pub fn write(&mut self, data: &[u8]) -> Result<(), CosError> {
        self.write_at(self.cursor, data)
    }

    /// `write({type: "write", position, data})`: moves the cursor to `position`, then writes.
    /// Writing past the end fills the gap with zeros.
    pub fn write_at(&mut self, position: u64, data: &[u8]) -> Result<(), CosError> {
        self.write_from(position, data, None)
    }

    /// `write_at` (or `write` when `position` is `None`) of `lent[range]`, a chunk received into
    /// that buffer: the writer may hand the buffer itself to its I/O thread after hashing it
    /// (see [`Lent`]) instead of copying the chunk.
    pub(crate) fn write_lent(
        &mut self,
        position: Option<u64>,
        lent: &Lent,
        range: std::ops::Range<usize>,
    ) -> Result<(), CosError> {
        self.write_from(position.unwrap_or(self.cursor), &lent[range], Some(lent))
    }

    /// A buffer the writer's I/O thread has written and given back, for the next chunk to be
    /// received into.
    pub(crate) fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        match &mut self.state {
            WriterState::Open { sink, .. } => sink.spare_buffer(),
            WriterState::Errored(_) => None,
        }
    }

    fn write_from(&mut self, position: u64, data: &[u8], lent: Option<&Lent>) -> Result<(), CosError> {
        let Some(end) = position.checked_add(data.len() as u64) else {
            return Err(match &self.state {
                WriterState::Errored(error) => error.clone(),
                WriterState::Open { .. } => self.fail(CosError::QuotaExceeded(QuotaScope::Origin)),
            });
        };
        self.reserve(end.max(self.size))?;
        let WriterState::Open { sink, prefix, .. } = &mut self.state else { return Err(self.stored_error()) };
        let result = if data.is_empty() && end > self.size {
            // An empty write past the end still zero-fills up to its position (File System
            // Standard), which a zero-byte pwrite would not do.
            sink.set_len(end, prefix)
        } else {
            sink.write_at(position, data, lent, prefix)
        };
        if let Err(error) = result {
            return Err(self.fail(error.to_web_error()));
        }
        self.cursor = end;
        self.size = self.size.max(end);
        Ok(())
    }

    /// `seek(position)`: moves the cursor (past the end is allowed).
    pub fn seek(&mut self, position: u64) -> Result<(), CosError> {
        if let WriterState::Errored(error) = &self.state {
            return Err(error.clone());
        }
        self.cursor = position;
        Ok(())
    }

    /// `truncate(size)`: resizes, zero-filling when growing; the cursor stays within the file.
    pub fn truncate(&mut self, size: u64) -> Result<(), CosError> {
        self.reserve(size)?;
        let WriterState::Open { sink, prefix, .. } = &mut self.state else { return Err(self.stored_error()) };
        if let Err(error) = sink.set_len(size, prefix) {
            return Err(self.fail(error.to_web_error()));
        }
        self.size = size;
        self.cursor = self.cursor.min(size);
        Ok(())
    }

    /// `close()`: verifies the final bytes against the hash and, if they match, commits them.
    /// On a mismatch nothing is stored and `DataError` is returned; if the handle was revoked
    /// while it wrote (its origin's site data was cleared), `AbortError`. A success carries the
    /// warnings for the writing page (SPEC §5): the browser's, and a full origins list.
    pub fn close(mut self) -> Result<CommitOutcome, CosError> {
        let state = std::mem::replace(&mut self.state, WriterState::Errored(CosError::Unknown));
        let WriterState::Open { sink, prefix, reservation } = state else {
            let WriterState::Errored(error) = state else { unreachable!() };
            return Err(error);
        };
        // Held until the bytes are committed (or discarded) below.
        let _reservation = reservation;
        let Some(staged) = (*sink).finish(prefix, self.size, &self.target).map_err(|e| e.to_web_error())? else {
            return Err(CosError::Data(if self.size == 0 {
                DataErrorKind::NothingWritten
            } else {
                DataErrorKind::HashMismatch
            }));
        };
        // Renaming keeps the inode: this is the file the commit installs.
        let installed = staged.file();
        let outcome = self
            .partition
            .commit_verified(
                staged,
                &self.target,
                self.size,
                &self.writer,
                &self.intent.origins,
                self.intent.document_url.as_deref(),
                &self.handle,
            )
            .map_err(Failure::into_web)?;
        // What this writer installed, as it is now: a fill that finds the blob file unchanged
        // need not hash it again (only entries large enough to be handed out are ever filled).
        if self.size >= SHARED_READ_MIN_BYTES
            && let Some(identity) = installed.as_deref().and_then(Observation::settled_of)
        {
            self.partition.record_identity(&self.target, identity);
        }
        self.handle.allow_reading();
        let mut outcome = outcome;
        outcome.warnings = self.intent.warnings.clone();
        if outcome.visibility.listed_dropped_over_cap > 0 {
            outcome.warnings.add(WriteWarning::OriginsListFull);
        }
        Ok(outcome)
    }

    /// `abort()`: discards everything written.
    pub fn abort(self) {}

    /// Makes the writer `size` bytes large as far as the limits go: beyond the largest entry the
    /// limits admit, or past the in-flight limits, the stream fails (it could never commit, and
    /// its bytes must not fill the disk or memory first).
    fn reserve(&mut self, size: u64) -> Result<(), CosError> {
        if let WriterState::Errored(error) = &self.state {
            return Err(error.clone());
        }
        if size > self.max_size {
            return Err(self.fail(CosError::QuotaExceeded(QuotaScope::Origin)));
        }
        let WriterState::Open { reservation, .. } = &mut self.state else { return Err(self.stored_error()) };
        if let Err(error) = reservation.resize(size) {
            return Err(self.fail(error));
        }
        Ok(())
    }

    fn fail(&mut self, error: CosError) -> CosError {
        self.state = WriterState::Errored(error.clone());
        error
    }

    fn stored_error(&self) -> CosError {
        match &self.state {
            WriterState::Errored(error) => error.clone(),
            WriterState::Open { .. } => CosError::Unknown,
        }
    }
}

/// An open entry (`File`): immutable bytes, readable at any offset. Keeps its bytes even if the
/// entry is deleted while it is open.
///
/// The first read of an entry since the service started re-hashes its blob (see `integrity`): no
/// read ever completes with bytes that do not match the hash.
#[derive(Clone)]
pub struct FileReader {
    source: BlobSource,
    /// Present while this blob still has to be re-hashed.
    check: Option<Arc<PendingCheck>>,
    /// Where its sealed copy is cached. Weak: an open file must not keep a closed store (and
    /// its registry lock) alive; without its partition it reads the blob it holds.
    partition: std::sync::Weak<PartitionStore>,
    hash: ContentHash,
}

/// How a [`FileReader::read_shared`] was answered.
#[derive(Debug)]
pub enum SharedRead {
    /// The whole entry, verified, in a sealed memory file (to hand out as a descriptor).
    File(Arc<cos_ipc::SealedFile>),
    /// It was streamed to the sink instead (small, unverified or uncached entry, or no room).
    Streamed(Streamed),
}

/// A blob not yet re-hashed since the service started.
struct PendingCheck {
    partition: Arc<PartitionStore>,
    hash: ContentHash,
    /// The blob file as observed before any of it was read, recorded if the hash matches.
    observed: Option<Observation>,
    done: AtomicBool,
}

impl PendingCheck {
    /// Judges the re-hashed digest: a match trusts the blob from now on; a mismatch deletes the
    /// entry and fails the read.
    fn conclude(&self, digest: [u8; 32]) -> Result<(), CosError> {
        if digest == *self.hash.as_bytes() {
            self.done.store(true, Ordering::Release);
            self.partition.mark_verified(&self.hash, self.observed.and_then(|observed| observed.settled()));
            return Ok(());
        }
        if let Err(error) = self.partition.remove_corrupt(&self.hash) {
            tracing::error!(%error, "could not delete an entry whose blob is damaged");
        }
        Err(CosError::NotFound)
    }
}

/// How a [`FileReader::stream`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streamed {
    /// Every byte of the range was handed over, and the bytes are verified.
    Complete,
    /// The sink asked to stop.
    Stopped,
}

fn read_failed(error: std::io::Error) -> CosError {
    tracing::warn!(%error, "reading a blob failed");
    CosError::NotFound
}

impl FileReader {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.source.len()
    }

    /// Hands `[offset, offset + len)` (clamped to the entry) to `send`, `chunk` bytes at a time,
    /// each in a buffer that starts with `header` (so a data-pipe frame needs no copy); `send`
    /// returns `false` to stop. If the blob has not been re-hashed since the service started, a
    /// whole-entry range is hashed as it streams and only completes if it matched; any other
    /// range is served after hashing the whole blob. A mismatch deletes the entry and answers
    /// `NotFoundError`.
    pub fn stream(
        &self,
        offset: u64,
        len: u64,
        header: &[u8],
        chunk: usize,
        mut send: impl FnMut(&[u8]) -> bool,
    ) -> Result<Streamed, CosError> {
        let chunk = chunk.max(1);
        let size = self.size();
        let end = offset.saturating_add(len).min(size);
        let start = offset.min(end);
        if let Some(check) = self.pending_check()
            && start == 0
            && end == size
        {
            return match stream_hashed(&self.source, header, chunk, &mut send).map_err(read_failed)? {
                Some(digest) => check.conclude(digest).map(|()| Streamed::Complete),
                None => Ok(Streamed::Stopped),
            };
        }
        self.check_whole_blob()?;
        // While a sealed copy is cached, its bytes (verified when it was filled) are served rather
        // than the blob's, which may have been damaged on disk since.
        let copy = self.shared_copy();
        let mut buffer = Vec::with_capacity(header.len() + chunk.min(usize::try_from(end - start).unwrap_or(chunk)));
        let mut position = start;
        while position < end {
            let want = usize::try_from(end - position).unwrap_or(usize::MAX).min(chunk);
            buffer.clear();
            buffer.extend_from_slice(header);
            buffer.resize(header.len() + want, 0);
            let target = &mut buffer[header.len()..];
            let n = match &copy {
                Some(copy) => copy.read_at(position, target),
                None => self.source.read_at(position, target),
            }
            .map_err(read_failed)?;
            if n == 0 {
                return Err(CosError::NotFound);
            }
            buffer.truncate(header.len() + n);
            if !send(&buffer) {
                return Ok(Streamed::Stopped);
            }
            position += n as u64;
        }
        Ok(Streamed::Complete)
    }

    /// The whole entry, hashed now and handed out only if the digest is the entry's hash (for
    /// a `getFile` reply that carries a small entry itself, [`CallResult::InlineFile`]). Every
    /// such read re-hashes, whether or not the blob was verified in this generation: so a blob
    /// damaged on disk after its verification — even beneath the filesystem — is never handed
    /// out this way. `None` if the entry is larger than `max` (the caller then opens a data
    /// pipe). A mismatch answers `NotFoundError`: a blob not verified yet is deleted, as on any
    /// first read; one verified earlier is forgotten as verified, so its next read deletes it.
    ///
    /// [`CallResult::InlineFile`]: cos_common::interface::CallResult::InlineFile
    pub fn read_inline(&self, max: usize) -> Option<Result<Vec<u8>, CosError>> {
        use sha2::{Digest, Sha256};

        let size = usize::try_from(self.size()).ok().filter(|&size| size <= max)?;
        let mut bytes = vec![0u8; size];
        let read = self.source.read_at(0, &mut bytes).map_err(read_failed);
        Some(read.and_then(|n| {
            if n != size {
                return Err(CosError::NotFound);
            }
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            match self.pending_check() {
                Some(check) => check.conclude(digest)?,
                None if digest != *self.hash.as_bytes() => {
                    tracing::error!(
                        hash = %self.hash.to_hex(),
                        "a blob verified earlier no longer matches its hash; its next read checks it again"
                    );
                    if let Some(partition) = self.partition.upgrade() {
                        partition.forget_verified(&self.hash);
                    }
                    return Err(CosError::NotFound);
                }
                None => {}
            }
            Ok(bytes)
        }))
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end). The blob is
    /// re-hashed first if it has not been since the service started.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, CosError> {
        self.check_whole_blob()?;
        match self.shared_copy() {
            Some(copy) => copy.read_at(offset, buf),
            None => self.source.read_at(offset, buf),
        }
        .map_err(read_failed)
    }

    /// The whole entry, for a reader that accepts a descriptor: its sealed copy if one is cached
    /// ([`SharedRead::File`]). Otherwise, if the entry is large enough and the budget has room,
    /// a new copy is filled from the blob: a blob verified in this generation whose file is
    /// unchanged since (its recorded identity) is copied without a hash, any other is hashed as
    /// it fills; a verified blob is then answered with the new copy; the first read of a blob
    /// not verified yet is streamed to `send` as [`stream`](Self::stream) streams it (and
    /// verified), the copy filled alongside for the next read. Else the entry is just streamed.
    /// A copy is sealed and cached only if its digest matched or its file was unchanged, so it
    /// never holds bytes other than the entry's, and a blob file changed after its verification
    /// is never copied unhashed. A mismatch fails the read with
    /// `NotFoundError` (a blob not verified yet is deleted, as on any first read; one that was
    /// verified earlier is forgotten as verified, so its next read deletes it).
    pub fn read_shared(
        &self,
        header: &[u8],
        chunk: usize,
        mut send: impl FnMut(&[u8]) -> bool,
    ) -> Result<SharedRead, CosError> {
        let size = self.size();
        if let Some(copy) = self.shared_copy() {
            return Ok(SharedRead::File(copy));
        }
        let partition = self.partition.upgrade();
        let permit = match &partition {
            Some(partition) if size >= SHARED_READ_MIN_BYTES => partition.begin_shared_fill(size),
            _ => None,
        };
        let builder = permit.as_ref().and_then(|_| {
            cos_ipc::SealedFileBuilder::new(size)
                .inspect_err(|error| tracing::debug!(%error, "no sealed copy: creating it failed"))
                .ok()
        });
        let (Some(partition), Some(permit), Some(builder)) = (partition, permit, builder) else {
            return self.stream(0, size, header, chunk, send).map(SharedRead::Streamed);
        };
        // A verified blob is not streamed: the copy is filled and handed out, without hashing if
        // its file is provably unchanged since its verification.
        let streaming = self.pending_check().is_some();
        if !streaming && self.fill_unchanged(&partition, &builder) {
            match builder.seal() {
                Ok(copy) => {
                    let copy = Arc::new(copy);
                    partition.cache_shared_copy(permit, &self.hash, copy.clone());
                    return Ok(SharedRead::File(copy));
                }
                Err(error) => {
                    tracing::debug!(%error, "no sealed copy: sealing it failed");
                    drop(permit);
                    return self.stream(0, size, header, chunk, send).map(SharedRead::Streamed);
                }
            }
        }
        // Otherwise the copy is filled and hashed on a second thread; a first read streams as it
        // fills, so the stream is verified as always. What a matching hash vouches for is the
        // file as observed before it was read.
        let observed = if streaming { None } else { self.source.observe() };
        #[cfg(feature = "testing")]
        partition.count_fill_hash();
        let (skip, mut position, mut filled) = (if streaming { header.len() } else { 0 }, 0u64, true);
        let fill_header = if streaming { header } else { &[] };
        let digest = stream_hashed(&self.source, fill_header, chunk.max(1), |frame| {
            let payload = &frame[skip..];
            if filled && let Err(error) = builder.write_at(position, payload) {
                tracing::debug!(%error, "no sealed copy: filling it failed");
                filled = false;
            }
            position += payload.len() as u64;
            // Without a stream, a failed fill stops at once (the bytes are then streamed below).
            if streaming { send(frame) } else { filled }
        })
        .map_err(read_failed)?;
        if !streaming && !filled {
            drop(permit);
            return self.stream(0, size, header, chunk, send).map(SharedRead::Streamed);
        }
        let Some(digest) = digest else { return Ok(SharedRead::Streamed(Streamed::Stopped)) };
        match self.pending_check() {
            Some(check) => check.conclude(digest)?,
            None if digest != *self.hash.as_bytes() => {
                tracing::error!(
                    hash = %self.hash.to_hex(),
                    "a blob verified earlier no longer matches its hash; its next read checks it again"
                );
                partition.forget_verified(&self.hash);
                return Err(CosError::NotFound);
            }
            None => {
                if let Some(identity) = observed.and_then(|observed| observed.settled()) {
                    partition.record_identity(&self.hash, identity);
                }
            }
        }
        let copy = if filled {
            builder.seal().inspect_err(|error| tracing::debug!(%error, "no sealed copy: sealing it failed")).ok()
        } else {
            None
        };
        match copy.map(Arc::new) {
            Some(copy) => {
                partition.cache_shared_copy(permit, &self.hash, copy.clone());
                // Even if the entry went away meanwhile (the copy is then not cached), this reader
                // opened it and may read its bytes.
                Ok(if streaming { SharedRead::Streamed(Streamed::Complete) } else { SharedRead::File(copy) })
            }
            None if streaming => Ok(SharedRead::Streamed(Streamed::Complete)),
            None => self.stream(0, size, header, chunk, send).map(SharedRead::Streamed),
        }
    }

    /// Fills `builder` from the blob file without hashing it, if the file's identity was recorded
    /// when it was verified in this generation; true if the identity, taken *after* the copy, is
    /// still that one. Any change to the file since then (also during the copy) set its `ctime`
    /// to a later time, so an equal identity means these are the verified bytes (see
    /// ARCHITECTURE.md, "Integrity on read"). False: the caller hashes the blob as it refills.
    fn fill_unchanged(&self, partition: &PartitionStore, builder: &cos_ipc::SealedFileBuilder) -> bool {
        let (Some(recorded), BlobSource::Disk(file, _)) = (partition.verified_identity(&self.hash), &self.source)
        else {
            return false;
        };
        if let Err(error) = builder.fill_from(&**file) {
            tracing::debug!(%error, "copying a blob into its sealed copy failed; hashing it instead");
            return false;
        }
        let unchanged = FileIdentity::of(file).is_ok_and(|now| now == recorded);
        if !unchanged {
            tracing::warn!(hash = %self.hash.to_hex(), "a verified blob file changed since its verification; hashing it");
        }
        unchanged
    }

    /// The entry's sealed copy, if its partition is open and has one cached.
    fn shared_copy(&self) -> Option<Arc<cos_ipc::SealedFile>> {
        self.partition.upgrade()?.shared_copy(&self.hash)
    }

    fn pending_check(&self) -> Option<&PendingCheck> {
        self.check.as_deref().filter(|check| !check.done.load(Ordering::Acquire))
    }

    /// Re-hashes the whole blob if it still needs it (before serving a part of it).
    fn check_whole_blob(&self) -> Result<(), CosError> {
        let Some(check) = self.pending_check() else { return Ok(()) };
        let digest = stream_hashed(&self.source, &[], IO_CHUNK, |_| true).map_err(read_failed)?;
        check.conclude(digest.expect("a sink that never stops"))
    }

    /// Reads `len` bytes (fewer at the end) from `offset` into a new buffer.
    pub fn read_range(&self, offset: u64, len: usize) -> Result<Vec<u8>, CosError> {
        let available = usize::try_from(self.size().saturating_sub(offset)).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(len.min(available));
        self.stream(offset, len as u64, &[], IO_CHUNK, |piece| {
            out.extend_from_slice(piece);
            true
        })?;
        Ok(out)
    }

    /// Reads the whole entry.
    pub fn read_all(&self) -> Result<Vec<u8>, CosError> {
        self.read_range(0, usize::try_from(self.size()).map_err(|_| CosError::NotFound)?)
    }
}
