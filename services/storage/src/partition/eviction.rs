//! Entries leaving the store: eviction of the least recently read to make room under the
//! global cap (SPEC §7), clear-site-data for one origin, and deletion by the browser. Rows go
//! in a registry transaction first; blobs are unlinked only after it committed, so a failure
//! never leaves a row without its bytes.

use cos_common::{ContentHash, Origin};

use super::PartitionStore;
use crate::error::StoreError;
use crate::registry::{EntryRecord, OriginRecord, RegistryWrite};

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

impl PartitionStore {
    /// Picks the entries to evict so that `needed` bytes are freed, least recently read first
    /// (last read — counting batched reads not yet written — then creation, then hash). With
    /// `only_own`, only entries `writer` alone stores qualify. `None` when the candidates cannot
    /// free enough: then nothing is evicted at all. The entry being written never qualifies.
    pub(super) fn choose_victims(
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

    pub(super) fn unlink_blob(&self, hash: &ContentHash) -> Result<(), StoreError> {
        self.verified.remove(hash);
        self.shared.remove(self.shared_key, hash);
        self.blobs.remove(hash)
    }
}

/// Takes one entry of `size` bytes off an origin's account.
fn uncharge(account: &mut OriginRecord, size: u64) {
    account.charged_bytes = account.charged_bytes.saturating_sub(size);
    account.entries = account.entries.saturating_sub(1);
}

/// Uncharges every storer of an entry that is being deleted inside `txn`. The writer's account
/// is held in memory by the commit (and written back by it), so it is updated there.
pub(super) fn uncharge_storers(
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
