//! One partition of the store: a registry plus a blob store with its limits. The regular
//! profile has one on disk; each off-the-record profile has its own in memory.
//!
//! This module holds the partition, its lookups and the batched read times; the ways entries
//! arrive, leave and are repaired live beside it: [`commit`] (a verified write becomes an entry),
//! [`eviction`] (entries leave: eviction under the global cap, clear-site-data, deletion) and
//! [`recovery`] (registry and blob files brought back into agreement at start, and by a scrub).

mod commit;
mod eviction;
mod recovery;
#[cfg(feature = "testing")]
mod testing;

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cos_common::{ContentHash, Origin, Site};
use cos_ipc::SealedFile;
use parking_lot::Mutex;

pub use commit::CommitOutcome;
pub use eviction::ClearSiteDataReport;
pub use recovery::RecoveryReport;

use crate::blob_store::disk::DiskBlobs;
use crate::blob_store::memory::MemoryBlobs;
use crate::blob_store::{BlobSink, BlobSource, BlobStore};
use crate::config::StorageLimits;
use crate::error::StoreError;
use crate::faults::Faults;
use crate::in_flight::{InFlight, Reservation};
use crate::integrity::{FileIdentity, VerifiedBlobs};
use crate::registry::{EntryAccess, EntryRecord, OriginRecord, Registry, RegistryWrite};
use crate::revocation::IssuedHandles;
use crate::shared_reads::{FillPermit, PartitionKey, SharedReads, partition_key};

/// Read times are kept in memory and written with the next registry transaction, or once this
/// many distinct entries were read: a read never waits for a durable write.
const PENDING_READS_FLUSH_AT: usize = 256;

#[derive(Clone, Copy)]
struct PendingRead {
    last_ms: u64,
    count: u64,
}

pub(crate) struct PartitionStore {
    registry: Registry,
    blobs: BlobStore,
    limits: StorageLimits,
    /// Serialises registry commits with the blob renames and unlinks that go with them, so a
    /// file operation never races the row that describes it.
    commit_lock: Mutex<()>,
    /// Verified writes waiting for the commit lock; the next writer to take it commits them all
    /// as one group (see `commit`).
    commit_queue: commit::CommitQueue,
    /// Test seam: holds a group's leader before it takes the queue, so that a test can line
    /// writers up behind it.
    #[cfg(feature = "testing")]
    commit_gate: testing::CommitGate,
    pending_reads: Mutex<HashMap<ContentHash, PendingRead>>,
    /// Blobs re-hashed (or written) since the service started; see `integrity`.
    verified: VerifiedBlobs,
    /// The service's sealed copies of verified entries, and this partition's key there.
    shared: Arc<SharedReads>,
    shared_key: PartitionKey,
    /// Every live handle, so that removing a grant revokes the handles issued on it.
    handles: IssuedHandles,
    /// Bytes open writers hold, counted against the limits before any commit.
    in_flight: Arc<InFlight>,
    /// Entries evicted to make room since the store was opened (the internals page).
    evicted_entries: AtomicU64,
    /// Entries deleted because their blob did not match their hash since the store was opened.
    corrupt_removed: AtomicU64,
    /// Test seam: fills of sealed copies that hashed the blob.
    #[cfg(feature = "testing")]
    fill_hashes: AtomicU64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PartitionStore {
    /// Opens the on-disk store under `root`, repairing what a crash may have left.
    pub(crate) fn open_disk(
        root: &Path,
        limits: StorageLimits,
        faults: Faults,
        shared: Arc<SharedReads>,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::io("create store directory", root, e))?;
        // The registry's file lock makes this process the store's only owner before any file is touched.
        let registry = Registry::open_file(&root.join("registry.redb"), faults.clone())?;
        let blobs = DiskBlobs::open_root(root, faults)?;
        let report = if registry.was_shut_down_cleanly()? {
            recovery::reopen_clean(&registry, &blobs)?
        } else {
            recovery::recover(&registry, &blobs)?
        };
        let store = Self::new(registry, BlobStore::Disk(blobs), limits, shared);
        Ok((store, report))
    }

    /// A fresh in-memory store.
    pub(crate) fn in_memory(limits: StorageLimits, shared: Arc<SharedReads>) -> Result<Self, StoreError> {
        Ok(Self::new(Registry::in_memory()?, BlobStore::Memory(MemoryBlobs::default()), limits, shared))
    }

    fn new(registry: Registry, blobs: BlobStore, limits: StorageLimits, shared: Arc<SharedReads>) -> Self {
        Self {
            registry,
            blobs,
            limits,
            commit_lock: Mutex::new(()),
            commit_queue: commit::CommitQueue::default(),
            #[cfg(feature = "testing")]
            commit_gate: testing::CommitGate::default(),
            pending_reads: Mutex::new(HashMap::new()),
            verified: VerifiedBlobs::default(),
            shared,
            shared_key: partition_key(),
            handles: IssuedHandles::default(),
            in_flight: Arc::default(),
            evicted_entries: AtomicU64::new(0),
            corrupt_removed: AtomicU64::new(0),
            #[cfg(feature = "testing")]
            fill_hashes: AtomicU64::new(0),
        }
    }

    /// Entries evicted and entries removed as corrupt since the store was opened.
    pub(crate) fn maintenance_counts(&self) -> (u64, u64) {
        (self.evicted_entries.load(Ordering::Relaxed), self.corrupt_removed.load(Ordering::Relaxed))
    }

    pub(crate) fn limits(&self) -> StorageLimits {
        self.limits
    }

    /// The partition's registry (the privacy gates keep their probe budgets there).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn entry(&self, hash: &ContentHash) -> Result<Option<EntryRecord>, StoreError> {
        self.registry.entry(hash)
    }

    /// What a read decision needs about `hash` for a reader of site `site`, at a cost that does
    /// not depend on the entry (see `registry::access`).
    pub(crate) fn access(&self, hash: &ContentHash, site: &Site) -> Result<Option<EntryAccess>, StoreError> {
        self.registry.access(hash, site)
    }

    /// The handles issued on this partition (revocation).
    pub(crate) fn handles(&self) -> &IssuedHandles {
        &self.handles
    }

    /// A new writer's reservation of in-flight bytes, for `writer` writing `hash`.
    pub(crate) fn reserve(&self, writer: &Origin, hash: &ContentHash) -> Result<Reservation, StoreError> {
        let (committed, credit) = self.registry.writer_standing(hash, writer)?;
        Ok(Reservation::new(self.in_flight.clone(), writer.clone(), self.limits, committed, credit))
    }

    /// Bytes the partition's open writers hold now.
    pub(crate) fn bytes_in_flight(&self) -> u64 {
        self.in_flight.total()
    }

    pub(crate) fn origin_record(&self, origin: &Origin) -> Result<OriginRecord, StoreError> {
        self.registry.origin(origin)
    }

    pub(crate) fn total_bytes(&self) -> Result<u64, StoreError> {
        self.registry.total_bytes()
    }

    pub(crate) fn begin_write(&self, hash: &ContentHash) -> Result<BlobSink, StoreError> {
        self.blobs.begin_write(hash)
    }

    /// Opens the blob of a disclosed entry and notes the read for LRU bookkeeping.
    pub(crate) fn open_blob(&self, hash: &ContentHash) -> Result<Option<BlobSource>, StoreError> {
        let source = self.blobs.open(hash)?;
        if source.is_some() {
            let flush_now = {
                let mut pending = self.pending_reads.lock();
                let slot = pending.entry(*hash).or_insert(PendingRead { last_ms: 0, count: 0 });
                slot.last_ms = now_ms();
                slot.count += 1;
                pending.len() >= PENDING_READS_FLUSH_AT
            };
            if flush_now && let Err(error) = self.flush_reads() {
                tracing::warn!(%error, "could not record read times");
            }
        }
        Ok(source)
    }

    /// The last step of a clean shutdown: batched read times written and the registry marked
    /// as closed cleanly, so the next start may skip reconciling rows and blob files. Nothing
    /// may write to this store afterwards.
    pub(crate) fn mark_clean_shutdown(&self) -> Result<(), StoreError> {
        let _commit = self.commit_lock.lock();
        let txn = self.registry.write()?;
        self.apply_pending_reads(&txn)?;
        txn.set_clean_shutdown(true)?;
        txn.commit()
    }

    /// Writes batched read times to the registry.
    pub(crate) fn flush_reads(&self) -> Result<(), StoreError> {
        let _commit = self.commit_lock.lock();
        let txn = self.registry.write()?;
        self.apply_pending_reads(&txn)?;
        txn.commit()
    }

    fn apply_pending_reads(&self, txn: &RegistryWrite) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *self.pending_reads.lock());
        for (hash, read) in pending {
            if let Some(mut entry) = txn.entry(&hash)? {
                entry.last_read_ms = entry.last_read_ms.max(read.last_ms);
                entry.read_count = entry.read_count.saturating_add(read.count);
                txn.put_entry_times(&hash, &entry)?;
            }
        }
        Ok(())
    }

    /// Folds the batched (not yet written) read times and counts into `entries`, so that a read
    /// counts from the moment it happened.
    fn merge_pending_reads(&self, entries: &mut [(ContentHash, EntryRecord)]) {
        let pending = self.pending_reads.lock();
        if pending.is_empty() {
            return;
        }
        for (hash, entry) in entries {
            if let Some(read) = pending.get(hash) {
                entry.last_read_ms = entry.last_read_ms.max(read.last_ms);
                entry.read_count = entry.read_count.saturating_add(read.count);
            }
        }
    }

    /// Every entry, sorted by hash, with the batched read times and counts folded in (for the
    /// browser's inspection views). Undecodable rows are left to recovery and not listed.
    pub(crate) fn list_entries(&self) -> Result<Vec<(ContentHash, EntryRecord)>, StoreError> {
        // Under the commit lock no flush can move reads from memory to the registry between the
        // two reads below, so no read is counted twice or missed.
        let _commit = self.commit_lock.lock();
        let mut entries: Vec<_> =
            self.registry.all_entries()?.into_iter().filter_map(|(hash, entry)| Some((hash, entry.ok()?))).collect();
        self.merge_pending_reads(&mut entries);
        entries.sort_by_key(|(hash, _)| *hash);
        Ok(entries)
    }

    /// Every origin that is charged for something, sorted by origin.
    pub(crate) fn list_origins(&self) -> Result<Vec<(Origin, OriginRecord)>, StoreError> {
        let mut origins: Vec<_> = self
            .registry
            .all_origins()?
            .into_iter()
            .filter_map(|(key, record)| Some((key.parse::<Origin>().ok()?, record?)))
            .collect();
        origins.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(origins)
    }

    /// Whether the blob of `hash` must be re-hashed before its bytes may be trusted: on disk and
    /// not verified since the service started.
    pub(crate) fn needs_check(&self, hash: &ContentHash) -> bool {
        matches!(self.blobs, BlobStore::Disk(_)) && !self.verified.contains(hash)
    }

    /// Records that the blob of `hash` re-hashed correctly, with its file's identity as observed
    /// before it was read (if settled: see `integrity::Observation`).
    pub(crate) fn mark_verified(&self, hash: &ContentHash, identity: Option<FileIdentity>) {
        self.verified.insert(*hash, identity);
    }

    /// Records the identity of a file whose bytes were verified as the blob of `hash` (a fresh
    /// install, or a fill that re-hashed it), if the blob is still trusted.
    pub(crate) fn record_identity(&self, hash: &ContentHash, identity: FileIdentity) {
        self.verified.record(hash, identity);
    }

    /// The identity the blob file of `hash` had when it was verified in this generation: a fill
    /// that finds it unchanged need not hash the blob again. `None` if the blob is not verified,
    /// or its identity was not recorded.
    pub(crate) fn verified_identity(&self, hash: &ContentHash) -> Option<FileIdentity> {
        self.verified.identity(hash)
    }

    /// The blob of `hash`, verified earlier, no longer matched: it must be re-hashed (and is
    /// then deleted) before anyone trusts it again.
    pub(crate) fn forget_verified(&self, hash: &ContentHash) {
        self.verified.remove(hash);
    }

    /// The sealed copy of the entry `hash`, if cached.
    pub(crate) fn shared_copy(&self, hash: &ContentHash) -> Option<Arc<SealedFile>> {
        self.shared.get(self.shared_key, hash)
    }

    /// Reserves room for a sealed copy of `size` bytes.
    pub(crate) fn begin_shared_fill(&self, size: u64) -> Option<FillPermit> {
        self.shared.begin_fill(size)
    }

    /// Caches a sealed copy of `hash` whose bytes were just verified, unless the entry went away
    /// meanwhile (its removal then either drops the copy or is seen here).
    pub(crate) fn cache_shared_copy(&self, permit: FillPermit, hash: &ContentHash, file: Arc<SealedFile>) {
        self.shared.insert(permit, self.shared_key, *hash, file, || matches!(self.registry.entry(hash), Ok(Some(_))));
    }

    /// Test seam: counts a fill of a sealed copy that hashed the blob.
    #[cfg(feature = "testing")]
    pub(crate) fn count_fill_hash(&self) {
        self.fill_hashes.fetch_add(1, Ordering::Relaxed);
    }

    /// Test seam: fills of sealed copies that hashed the blob since the store was opened.
    #[cfg(feature = "testing")]
    pub(crate) fn fill_hashes(&self) -> u64 {
        self.fill_hashes.load(Ordering::Relaxed)
    }

    /// Test seam: bytes the service's sealed copies hold (all partitions) and how many there are.
    #[cfg(feature = "testing")]
    pub(crate) fn shared_copies(&self) -> (u64, usize) {
        (self.shared.held_bytes(), self.shared.len())
    }
}

impl Drop for PartitionStore {
    fn drop(&mut self) {
        self.shared.remove_partition(self.shared_key);
        let pending = !self.pending_reads.lock().is_empty();
        if pending && let Err(error) = self.flush_reads() {
            tracing::warn!(%error, "could not record read times at shutdown");
        }
    }
}
