//! One partition of the store: a registry plus a blob store with its limits. The regular
//! profile has one on disk; each off-the-record profile has its own in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use cos_common::{ContentHash, CosError, Origin, OriginsOption, QuotaScope, Site};
use parking_lot::Mutex;

use crate::blob_store::disk::DiskBlobs;
use crate::blob_store::memory::MemoryBlobs;
use crate::blob_store::{BlobSink, BlobSource, BlobStore, IO_CHUNK, StagedBlob};
use crate::config::StorageLimits;
use crate::error::{Failure, StoreError};
use crate::faults::Faults;
use crate::in_flight::{InFlight, Reservation};
use crate::integrity::{ScrubReport, VerifiedBlobs, stream_hashed};
use crate::registry::records::MAX_PROVENANCE_RECORDS;
use crate::registry::{EntryAccess, EntryRecord, OriginRecord, Provenance, Registry, RegistryWrite};
use crate::revocation::{HandleState, IssuedHandles};
use crate::visibility::{StoringSlot, VisibilityChange, apply_verified_write, storing_slot};

/// Read times are kept in memory and written with the next registry transaction, or once this
/// many distinct entries were read: a read never waits for a durable write.
const PENDING_READS_FLUSH_AT: usize = 256;

/// What recovery found and repaired when the on-disk store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries in the registry.
    pub entries: usize,
    /// Swap files left by writers that never finished (deleted).
    pub stale_swap_files: usize,
    /// Registry rows whose blob was missing or had the wrong size (dropped).
    pub rows_without_blob: usize,
    /// Registry rows that could not be decoded (dropped, with their blob).
    pub corrupt_rows: usize,
    /// Blob files no registry row names (deleted).
    pub orphan_blobs: usize,
    /// Whether per-origin charges or the total had to be recomputed.
    pub accounting_repaired: bool,
    /// The previous run shut down cleanly, so registry and blob files were known to agree and
    /// their reconciliation (a scan of every blob file and row) was skipped.
    pub after_clean_shutdown: bool,
    /// Whether the access index (what read decisions consult) disagreed with the entry rows and
    /// was rewritten from them.
    pub index_repaired: bool,
}

/// What a verified write did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The bytes were new to the store (a blob was installed); otherwise they confirmed an
    /// existing entry and the swap copy was discarded.
    pub new_blob: bool,
    /// How the entry's visibility changed.
    pub visibility: VisibilityChange,
    /// Entries deleted (for every storer) to make room under the global cap (SPEC §7 eviction).
    pub evicted_entries: usize,
    /// Bytes those evicted entries occupied.
    pub evicted_bytes: u64,
}

/// What clearing one origin's site data removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearSiteDataReport {
    /// Entries the origin no longer stores or is listed on, but that other storers keep.
    pub entries_released: usize,
    /// Entries deleted because no storing origin remained.
    pub entries_deleted: usize,
    /// Bytes freed on disk (or in memory).
    pub bytes_freed: u64,
}

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
    pending_reads: Mutex<HashMap<ContentHash, PendingRead>>,
    /// Blobs re-hashed (or written) since the service started; see `integrity`.
    verified: VerifiedBlobs,
    /// Every live handle, so that removing a grant revokes the handles issued on it.
    handles: IssuedHandles,
    /// Bytes open writers hold, counted against the limits before any commit.
    in_flight: Arc<InFlight>,
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
    ) -> Result<(Self, RecoveryReport), StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::io("create store directory", root, e))?;
        // The registry's file lock makes this process the store's only owner before any file is touched.
        let registry = Registry::open_file(&root.join("registry.redb"), faults.clone())?;
        let blobs = DiskBlobs::open_root(root, faults)?;
        let report = if registry.was_shut_down_cleanly()? {
            reopen_clean(&registry, &blobs)?
        } else {
            recover(&registry, &blobs)?
        };
        let store = Self::new(registry, BlobStore::Disk(blobs), limits);
        Ok((store, report))
    }

    /// A fresh in-memory store.
    pub(crate) fn in_memory(limits: StorageLimits) -> Result<Self, StoreError> {
        Ok(Self::new(Registry::in_memory()?, BlobStore::Memory(MemoryBlobs::default()), limits))
    }

    fn new(registry: Registry, blobs: BlobStore, limits: StorageLimits) -> Self {
        Self {
            registry,
            blobs,
            limits,
            commit_lock: Mutex::new(()),
            pending_reads: Mutex::new(HashMap::new()),
            verified: VerifiedBlobs::default(),
            handles: IssuedHandles::default(),
            in_flight: Arc::default(),
        }
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

    /// What a read decision needs about `hash` for a reader of `origin` (site `site`), at a cost
    /// that does not depend on the entry (see `registry::access`).
    pub(crate) fn access(
        &self,
        hash: &ContentHash,
        origin: &Origin,
        site: &Site,
    ) -> Result<Option<EntryAccess>, StoreError> {
        self.registry.access(hash, origin, site)
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

    pub(crate) fn begin_write(&self) -> Result<BlobSink, StoreError> {
        self.blobs.begin_write()
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

    /// Makes verified bytes an entry (or confirms the existing one) in one registry transaction:
    /// quota checks, eviction of least recently read entries when new bytes would pass the
    /// global cap (SPEC §7), blob install, entry and accounting rows. The victims are chosen
    /// before anything changes and deleted in the same transaction, so a refused or failed write
    /// never costs anyone their data; their blobs are unlinked only after the commit. `handle` is
    /// the writer's create handle: if a grant it relied on was revoked while it wrote (its site
    /// data was cleared), nothing is committed and the writer sees `AbortError`.
    #[allow(clippy::too_many_arguments, reason = "one verified write, described once")]
    pub(crate) fn commit_verified(
        &self,
        staged: StagedBlob,
        hash: &ContentHash,
        size: u64,
        writer: &Origin,
        requested: &OriginsOption,
        document_url: Option<&str>,
        handle: &HandleState,
    ) -> Result<CommitOutcome, Failure> {
        let _commit = self.commit_lock.lock();
        // Revocations run under this lock too, so this check and the commit are one step.
        if handle.is_revoked() {
            return Err(Failure::Refused(CosError::Abort));
        }
        let txn = self.registry.write()?;
        let now = now_ms();
        let mut account = txn.origin(writer)?;
        let existing = txn.entry(hash)?;
        let new_blob = existing.is_none();
        let mut entry = existing.unwrap_or_else(|| EntryRecord {
            size,
            storing_origins: Default::default(),
            listed_origins: Vec::new(),
            global: false,
            created_ms: now,
            last_read_ms: 0,
            read_count: 0,
            provenance: Vec::new(),
        });
        let same_site_storers = txn.storing_origins_in_site(hash, &Site::of(writer))?;
        let slot = storing_slot(&entry, writer, same_site_storers).map_err(Failure::Refused)?;
        if slot == StoringSlot::Recorded
            && account.charged_bytes.saturating_add(entry.size) > self.limits.per_origin_bytes
        {
            return Err(Failure::Refused(CosError::QuotaExceeded(QuotaScope::Origin)));
        }
        let mut total = txn.total_bytes()?;
        // The global cap makes room by eviction; the per-origin limit above never does.
        let victims = if new_blob && total.saturating_add(size) > self.limits.total_bytes {
            let needed = total.saturating_add(size) - self.limits.total_bytes;
            // Over its fair share, a writer may push out only what it alone stores.
            let only_own = account.charged_bytes.saturating_add(size) > self.limits.share_bytes;
            // More than the whole store holds cannot be freed; spare the scan.
            let chosen =
                if needed <= total { self.choose_victims(&txn, hash, writer, only_own, needed)? } else { None };
            match chosen {
                Some(victims) => victims,
                None => return Err(Failure::Refused(CosError::QuotaExceeded(QuotaScope::Global))),
            }
        } else {
            Vec::new()
        };
        let evicted_bytes: u64 = victims.iter().map(|(_, victim)| victim.size).sum();
        for (victim_hash, victim) in &victims {
            uncharge_storers(&txn, victim, writer, &mut account)?;
            txn.remove_entry(victim_hash)?;
        }
        total = total.saturating_sub(evicted_bytes);

        let visibility = apply_verified_write(&mut entry, writer, slot, requested);
        if visibility.newly_storing {
            account.charged_bytes += entry.size;
            account.entries += 1;
            if entry.provenance.len() < MAX_PROVENANCE_RECORDS {
                entry.provenance.push(Provenance {
                    origin: writer.clone(),
                    document_url: document_url.map(truncated_url),
                    time_ms: now,
                });
            }
        }
        txn.put_entry(hash, &entry)?;
        txn.put_origin(writer, &account)?;
        // Only now: a refused commit must not swallow the batched read times.
        self.apply_pending_reads(&txn)?;
        if new_blob {
            txn.set_total_bytes(total + size)?;
        }
        // The verified bytes are installed whether or not the store already had them, so that a
        // close costs the same either way: creates are never charged to a probe budget, and a
        // faster close for known bytes would tell anyone holding a file whether some other site
        // stored it (ARCHITECTURE.md, "A close costs the same"). For known bytes this also
        // replaces a blob that may have been damaged on disk since the service started.
        self.blobs.install(staged, hash)?;
        if let Err(error) = txn.commit() {
            // Whether the row landed is unknown (a failed fsync may still have written it),
            // so the blob stays: the entry is whole or absent, never a row without its
            // bytes. A blob without a row is invisible, and recovery deletes it at the next
            // start. The victims' rows are still there, and so are their blobs.
            return Err(error.into());
        }
        self.verified.insert(*hash);
        if !victims.is_empty() {
            tracing::info!(
                entries = victims.len(),
                bytes = evicted_bytes,
                "evicted least recently read entries to fit a write under the global cap"
            );
            for (victim_hash, _) in &victims {
                self.handles.revoke_entry(victim_hash);
                // The rows are gone; a blob left behind is an orphan that recovery deletes.
                if let Err(error) = self.unlink_blob(victim_hash) {
                    tracing::warn!(%error, "could not remove an evicted blob");
                }
            }
        }
        Ok(CommitOutcome { new_blob, visibility, evicted_entries: victims.len(), evicted_bytes })
    }

    /// Picks the entries to evict so that `needed` bytes are freed, least recently read first
    /// (last read — counting batched reads not yet written — then creation, then hash). With
    /// `only_own`, only entries `writer` alone stores qualify. `None` when the candidates cannot
    /// free enough: then nothing is evicted at all. The entry being written never qualifies.
    fn choose_victims(
        &self,
        txn: &RegistryWrite,
        target: &ContentHash,
        writer: &Origin,
        only_own: bool,
        needed: u64,
    ) -> Result<Option<Vec<(ContentHash, EntryRecord)>>, StoreError> {
        let mut candidates: Vec<(ContentHash, EntryRecord)> = txn
            .entries()?
            .into_iter()
            .filter(|(hash, entry)| {
                // An empty entry frees nothing; evicting it would only lose data.
                hash != target
                    && entry.size > 0
                    && (!only_own || (entry.storing_origins.len() == 1 && entry.storing_origins.contains(writer)))
            })
            .collect();
        self.merge_pending_reads(&mut candidates);
        candidates.sort_by_key(|(hash, entry)| (entry.last_read_ms, entry.created_ms, *hash));
        let mut freed = 0u64;
        let mut victims = Vec::new();
        for candidate in candidates {
            if freed >= needed {
                break;
            }
            freed = freed.saturating_add(candidate.1.size);
            victims.push(candidate);
        }
        Ok((freed >= needed).then_some(victims))
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

    /// Clear-site-data for one origin (SPEC §7): it stops being a storing origin and leaves every
    /// list; entries nobody stores any more are deleted with their blobs (revoke-and-GC).
    pub(crate) fn clear_origin(&self, origin: &Origin) -> Result<ClearSiteDataReport, StoreError> {
        let _commit = self.commit_lock.lock();
        let txn = self.registry.write()?;
        self.apply_pending_reads(&txn)?;
        let mut report = ClearSiteDataReport::default();
        let mut doomed = Vec::new();
        let mut touched = Vec::new();
        let mut total = txn.total_bytes()?;
        for (hash, mut entry) in txn.entries()? {
            let was_storing = entry.storing_origins.remove(origin);
            let listed_before = entry.listed_origins.len();
            entry.listed_origins.retain(|o| o != origin);
            if !was_storing && entry.listed_origins.len() == listed_before {
                continue;
            }
            entry.provenance.retain(|p| &p.origin != origin);
            if entry.storing_origins.is_empty() {
                txn.remove_entry(&hash)?;
                total = total.saturating_sub(entry.size);
                report.entries_deleted += 1;
                report.bytes_freed += entry.size;
                doomed.push(hash);
                touched.push((hash, None));
            } else {
                txn.put_entry(&hash, &entry)?;
                report.entries_released += 1;
                touched.push((hash, Some(entry)));
            }
        }
        txn.put_origin(origin, &OriginRecord::default())?;
        txn.set_total_bytes(total)?;
        txn.commit()?;
        let revoked = self.handles.revoke_after_clear(origin, &touched);
        if revoked > 0 {
            tracing::info!(revoked, "clearing site data revoked open handles");
        }
        for hash in doomed {
            self.unlink_blob(&hash)?;
        }
        Ok(report)
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

    /// Deletes an entry for everyone (a browser action): every storer is uncharged, the row goes,
    /// and the blob is unlinked after the commit. Readers that already opened it keep their bytes.
    /// `false` when there was no such entry.
    pub(crate) fn delete_entry(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let _commit = self.commit_lock.lock();
        let txn = self.registry.write()?;
        self.apply_pending_reads(&txn)?;
        let Some(entry) = txn.entry(hash)? else {
            txn.commit()?;
            return Ok(false);
        };
        for storer in &entry.storing_origins {
            let mut account = txn.origin(storer)?;
            uncharge(&mut account, entry.size);
            txn.put_origin(storer, &account)?;
        }
        txn.remove_entry(hash)?;
        txn.set_total_bytes(txn.total_bytes()?.saturating_sub(entry.size))?;
        txn.commit()?;
        self.handles.revoke_entry(hash);
        self.unlink_blob(hash)?;
        Ok(true)
    }

    fn unlink_blob(&self, hash: &ContentHash) -> Result<(), StoreError> {
        self.verified.remove(hash);
        self.blobs.remove(hash)
    }

    /// Whether the blob of `hash` must be re-hashed before its bytes may be trusted: on disk and
    /// not verified since the service started.
    pub(crate) fn needs_check(&self, hash: &ContentHash) -> bool {
        matches!(self.blobs, BlobStore::Disk(_)) && !self.verified.contains(hash)
    }

    /// Records that the blob of `hash` re-hashed correctly.
    pub(crate) fn mark_verified(&self, hash: &ContentHash) {
        self.verified.insert(*hash);
    }

    /// The blob of `hash` did not match its hash: the entry is deleted for everyone, unless a
    /// verified write replaced the blob meanwhile. Returns whether it was deleted.
    pub(crate) fn remove_corrupt(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        if self.verified.contains(hash) {
            return Ok(false);
        }
        tracing::error!(hash = %hash.to_hex(), "a blob on disk does not match its hash: deleting the entry");
        self.delete_entry(hash)
    }

    /// Re-hashes every blob of the partition (on disk: in memory there is nothing to check),
    /// deleting entries whose blob is damaged or missing. `progress` hears after each entry.
    pub(crate) fn scrub(&self, mut progress: impl FnMut(&ScrubReport, u64)) -> Result<ScrubReport, StoreError> {
        let mut report = ScrubReport::default();
        if !matches!(self.blobs, BlobStore::Disk(_)) {
            return Ok(report);
        }
        let entries = self.registry.all_entries()?;
        let total = entries.len() as u64;
        for (hash, _) in entries {
            // Forget it first: a writer that re-verifies it during the check keeps it.
            self.verified.remove(&hash);
            match self.blobs.open(&hash)? {
                None => {
                    tracing::error!(hash = %hash.to_hex(), "scrub: an entry's blob is missing: deleting the entry");
                    if self.delete_entry(&hash)? {
                        report.missing_removed += 1;
                    }
                }
                Some(source) => {
                    let digest = stream_hashed(&source, &[], IO_CHUNK, |_| true);
                    report.entries_checked += 1;
                    report.bytes_checked += source.len();
                    match digest {
                        Ok(Some(digest)) if digest == *hash.as_bytes() => self.mark_verified(&hash),
                        Ok(_) | Err(_) => {
                            if self.remove_corrupt(&hash)? {
                                report.corrupt_removed += 1;
                            }
                        }
                    }
                }
            }
            progress(&report, total);
        }
        Ok(report)
    }
}

/// Takes one entry of `size` bytes off an origin's account.
fn uncharge(account: &mut OriginRecord, size: u64) {
    account.charged_bytes = account.charged_bytes.saturating_sub(size);
    account.entries = account.entries.saturating_sub(1);
}

/// Uncharges every storer of an entry that is being deleted inside `txn`. The writer's account
/// is held in memory by the commit (and written back by it), so it is updated there.
fn uncharge_storers(
    txn: &RegistryWrite,
    entry: &EntryRecord,
    writer: &Origin,
    writer_account: &mut OriginRecord,
) -> Result<(), StoreError> {
    for storer in &entry.storing_origins {
        if storer == writer {
            uncharge(writer_account, entry.size);
        } else {
            let mut account = txn.origin(storer)?;
            uncharge(&mut account, entry.size);
            txn.put_origin(storer, &account)?;
        }
    }
    Ok(())
}

impl Drop for PartitionStore {
    fn drop(&mut self) {
        let pending = !self.pending_reads.lock().is_empty();
        if pending && let Err(error) = self.flush_reads() {
            tracing::warn!(%error, "could not record read times at shutdown");
        }
    }
}

/// Brings registry and blob files back into agreement after a crash: swap files go; rows whose
/// blob is missing (or has another size) go; blobs without a row go; accounting is recomputed
/// from the surviving rows.
/// Opening after a clean shutdown: every commit completed and every unlink after one ran, so
/// rows and blob files agree and only the (normally empty) swap directory needs clearing. The
/// mark is cleared, durably, before anything is served: a crash from now on means full recovery
/// next time. Damage done to blob files while the service was down is still caught: the first
/// read of each blob after a start re-hashes it.
fn reopen_clean(registry: &Registry, blobs: &DiskBlobs) -> Result<RecoveryReport, StoreError> {
    let stale_swap_files = blobs.clear_swap()?;
    let entries = registry.entry_count()? as usize;
    let txn = registry.write()?;
    txn.set_clean_shutdown(false)?;
    txn.commit()?;
    Ok(RecoveryReport { entries, stale_swap_files, after_clean_shutdown: true, ..Default::default() })
}

fn recover(registry: &Registry, blobs: &DiskBlobs) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport { stale_swap_files: blobs.clear_swap()?, ..Default::default() };
    let mut on_disk = blobs.scan()?;
    let txn = registry.write()?;
    let mut charges: BTreeMap<String, OriginRecord> = BTreeMap::new();
    let mut total = 0u64;
    let mut surviving = Vec::new();
    for (hash, decoded) in registry.all_entries()? {
        let entry = match decoded {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(%error, "dropping an undecodable registry row");
                report.corrupt_rows += 1;
                txn.remove_entry(&hash)?;
                continue;
            }
        };
        if on_disk.remove(&hash) != Some(entry.size) {
            report.rows_without_blob += 1;
            txn.remove_entry(&hash)?;
            blobs.remove(&hash)?;
            continue;
        }
        report.entries += 1;
        total += entry.size;
        for origin in &entry.storing_origins {
            let account = charges.entry(origin.to_string()).or_default();
            account.charged_bytes += entry.size;
            account.entries += 1;
        }
        surviving.push((hash, entry));
    }
    report.index_repaired = txn.reconcile_index(&surviving)?;
    for hash in on_disk.keys() {
        blobs.remove(hash)?;
        report.orphan_blobs += 1;
    }
    for (key, stored) in registry.all_origins()? {
        let expected = charges.remove(&key).unwrap_or_default();
        if stored != Some(expected) {
            report.accounting_repaired = true;
            txn.put_origin_key(&key, &expected)?;
        }
    }
    for (key, expected) in charges {
        report.accounting_repaired = true;
        txn.put_origin_key(&key, &expected)?;
    }
    if txn.total_bytes()? != total {
        report.accounting_repaired = true;
        txn.set_total_bytes(total)?;
    }
    txn.commit()?;
    Ok(report)
}

/// A document URL cut to [`MAX_PROVENANCE_URL_BYTES`] (at a character boundary), so a huge URL
/// cannot bloat the registry or an inspection message.
fn truncated_url(url: &str) -> String {
    let mut end = url.len().min(cos_common::interface::MAX_PROVENANCE_URL_BYTES);
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    url[..end].to_owned()
}
