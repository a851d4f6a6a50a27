//! Bringing registry and blob files back into agreement: at start (after a clean shutdown only
//! the swap directory is cleared; after a crash every row and blob file is reconciled) and by a
//! scrub, which re-hashes every blob while the service runs.

use std::collections::BTreeMap;

use cos_common::ContentHash;

use super::PartitionStore;
use crate::blob_store::disk::DiskBlobs;
use crate::blob_store::{BlobStore, IO_CHUNK};
use crate::error::StoreError;
use crate::integrity::{ScrubReport, stream_hashed};
use crate::registry::{OriginRecord, Registry};

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

impl PartitionStore {
    /// The blob of `hash` did not match its hash: the entry is deleted for everyone, unless a
    /// verified write replaced the blob meanwhile. Returns whether it was deleted.
    pub(crate) fn remove_corrupt(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        if self.verified.contains(hash) {
            return Ok(false);
        }
        tracing::error!(hash = %hash.to_hex(), "a blob on disk does not match its hash: deleting the entry");
        let deleted = self.delete_entry(hash)?;
        if deleted {
            self.corrupt_removed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(deleted)
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
                    let observed = source.observe();
                    let digest = stream_hashed(&source, &[], IO_CHUNK, |_| true);
                    report.entries_checked += 1;
                    report.bytes_checked += source.len();
                    match digest {
                        Ok(Some(digest)) if digest == *hash.as_bytes() => {
                            self.mark_verified(&hash, observed.and_then(|o| o.settled()));
                        }
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

/// Opening after a clean shutdown: every commit completed and every unlink after one ran, so
/// rows and blob files agree and only the (normally empty) swap directory needs clearing. The
/// mark is cleared, durably, before anything is served: a crash from now on means full recovery
/// next time. Damage done to blob files while the service was down is still caught: the first
/// read of each blob after a start re-hashes it.
pub(super) fn reopen_clean(registry: &Registry, blobs: &DiskBlobs) -> Result<RecoveryReport, StoreError> {
    let stale_swap_files = blobs.clear_swap()?;
    let entries = registry.entry_count()? as usize;
    let txn = registry.write()?;
    txn.set_clean_shutdown(false)?;
    txn.commit()?;
    Ok(RecoveryReport { entries, stale_swap_files, after_clean_shutdown: true, ..Default::default() })
}

/// Brings registry and blob files back into agreement after a crash: swap files go; rows whose
/// blob is missing (or has another size) go; blobs without a row go; accounting is recomputed
/// from the surviving rows.
pub(super) fn recover(registry: &Registry, blobs: &DiskBlobs) -> Result<RecoveryReport, StoreError> {
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
