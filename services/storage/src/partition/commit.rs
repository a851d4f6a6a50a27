//! A verified write becoming an entry: one registry transaction that checks the writer's quota,
//! makes room under the global cap by eviction, records the entry and its accounting, and
//! installs the blob. The victims are chosen before anything changes and deleted in the same
//! transaction, so a refused or failed write never costs anyone their data.

use cos_common::interface::WriteWarnings;
use cos_common::{ContentHash, CosError, Origin, OriginsOption, QuotaScope, Site};

use super::eviction::uncharge_storers;
use super::{PartitionStore, now_ms};
use crate::blob_store::StagedBlob;
use crate::error::{Failure, StoreError};
use crate::registry::records::MAX_PROVENANCE_RECORDS;
use crate::registry::{EntryRecord, OriginRecord, Provenance, RegistryWrite};
use crate::revocation::HandleState;
use crate::visibility::{StoringSlot, VisibilityChange, apply_verified_write, storing_slot};

/// What a verified write did to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// What the writing page's console hears (SPEC §5); filled in by the writer's `close`.
    pub warnings: WriteWarnings,
}

/// The verified write being committed, as its writer described it.
struct VerifiedWrite<'a> {
    hash: &'a ContentHash,
    size: u64,
    writer: &'a Origin,
    requested: &'a OriginsOption,
    document_url: Option<&'a str>,
}

/// The rows a commit changes, as read at the start of its transaction and updated in memory
/// until they are written back together.
struct Draft {
    now: u64,
    /// The writer's account.
    account: OriginRecord,
    /// The entry as it will be: the existing row, or a new one with no storer yet.
    entry: EntryRecord,
    /// The store had no entry for these bytes.
    new_blob: bool,
}

/// Entries (with their rows) deleted to make room for the write.
type Victims = Vec<(ContentHash, EntryRecord)>;

impl PartitionStore {
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
        let write = VerifiedWrite { hash, size, writer, requested, document_url };
        let _commit = self.commit_lock.lock();
        // Revocations run under this lock too, so this check and the commit are one step.
        if handle.is_revoked() {
            return Err(Failure::Refused(CosError::Abort));
        }
        let txn = self.registry.write()?;
        let mut draft = Draft::read(&txn, &write)?;
        let slot = self.storing_slot_within_quota(&txn, &draft, &write)?;
        let (victims, total) = self.make_room(&txn, &draft, &write)?;
        let evicted_bytes = evict(&txn, &victims, writer, &mut draft.account)?;
        let total = total.saturating_sub(evicted_bytes);
        let visibility = self.record_write(&txn, &mut draft, &write, slot, total)?;
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
        self.release_victims(&victims, evicted_bytes);
        Ok(CommitOutcome {
            new_blob: draft.new_blob,
            visibility,
            evicted_entries: victims.len(),
            evicted_bytes,
            warnings: WriteWarnings::none(),
        })
    }

    /// The writer's storing slot, refused when recording it would take the writer's account
    /// past the per-origin limit (which, unlike the global cap, never makes room by eviction).
    fn storing_slot_within_quota(
        &self,
        txn: &RegistryWrite,
        draft: &Draft,
        write: &VerifiedWrite<'_>,
    ) -> Result<StoringSlot, Failure> {
        let same_site_storers = txn.storing_origins_in_site(write.hash, &Site::of(write.writer))?;
        let slot = storing_slot(&draft.entry, write.writer, same_site_storers).map_err(Failure::Refused)?;
        if slot == StoringSlot::Recorded
            && draft.account.charged_bytes.saturating_add(draft.entry.size) > self.limits.per_origin_bytes
        {
            return Err(Failure::Refused(CosError::QuotaExceeded(QuotaScope::Origin)));
        }
        Ok(slot)
    }

    /// The entries to evict so that new bytes fit under the global cap (none when they already
    /// fit or are not new), with the store's total before the eviction. Refused when eviction
    /// cannot free enough.
    fn make_room(
        &self,
        txn: &RegistryWrite,
        draft: &Draft,
        write: &VerifiedWrite<'_>,
    ) -> Result<(Victims, u64), Failure> {
        let total = txn.total_bytes()?;
        let size = write.size;
        if !draft.new_blob || total.saturating_add(size) <= self.limits.total_bytes {
            return Ok((Vec::new(), total));
        }
        let needed = total.saturating_add(size) - self.limits.total_bytes;
        // Over its fair share, a writer may push out only what it alone stores.
        let only_own = draft.account.charged_bytes.saturating_add(size) > self.limits.share_bytes;
        // More than the whole store holds cannot be freed; spare the scan.
        let chosen =
            if needed <= total { self.choose_victims(txn, write.hash, write.writer, only_own, needed)? } else { None };
        match chosen {
            Some(victims) => Ok((victims, total)),
            None => Err(Failure::Refused(CosError::QuotaExceeded(QuotaScope::Global))),
        }
    }

    /// Writes the entry and the writer's account as the write leaves them, with the batched read
    /// times and (for new bytes) the store's new total, all into `txn`.
    fn record_write(
        &self,
        txn: &RegistryWrite,
        draft: &mut Draft,
        write: &VerifiedWrite<'_>,
        slot: StoringSlot,
        total: u64,
    ) -> Result<VisibilityChange, StoreError> {
        let visibility = apply_verified_write(&mut draft.entry, write.writer, slot, write.requested);
        if visibility.newly_storing {
            draft.account.charged_bytes += draft.entry.size;
            draft.account.entries += 1;
            if draft.entry.provenance.len() < MAX_PROVENANCE_RECORDS {
                draft.entry.provenance.push(Provenance {
                    origin: write.writer.clone(),
                    document_url: write.document_url.map(truncated_url),
                    time_ms: draft.now,
                });
            }
        }
        txn.put_entry(write.hash, &draft.entry)?;
        txn.put_origin(write.writer, &draft.account)?;
        // Only now: a refused commit must not swallow the batched read times.
        self.apply_pending_reads(txn)?;
        if draft.new_blob {
            txn.set_total_bytes(total + write.size)?;
        }
        Ok(visibility)
    }

    /// After the commit: the victims' handles are revoked and their blobs unlinked.
    fn release_victims(&self, victims: &Victims, evicted_bytes: u64) {
        if victims.is_empty() {
            return;
        }
        tracing::info!(
            entries = victims.len(),
            bytes = evicted_bytes,
            "evicted least recently read entries to fit a write under the global cap"
        );
        for (victim_hash, _) in victims {
            self.handles.revoke_entry(victim_hash);
            // The rows are gone; a blob left behind is an orphan that recovery deletes.
            if let Err(error) = self.unlink_blob(victim_hash) {
                tracing::warn!(%error, "could not remove an evicted blob");
            }
        }
    }
}

impl Draft {
    /// The writer's account and the entry for the written hash, as `txn` sees them.
    fn read(txn: &RegistryWrite, write: &VerifiedWrite<'_>) -> Result<Self, StoreError> {
        let now = now_ms();
        let account = txn.origin(write.writer)?;
        let existing = txn.entry(write.hash)?;
        let new_blob = existing.is_none();
        let entry = existing.unwrap_or_else(|| EntryRecord {
            size: write.size,
            storing_origins: Default::default(),
            listed_origins: Vec::new(),
            global: false,
            created_ms: now,
            last_read_ms: 0,
            read_count: 0,
            provenance: Vec::new(),
        });
        Ok(Self { now, account, entry, new_blob })
    }
}

/// Deletes the victims' rows inside `txn`, uncharging their storers (the writer's account is the
/// draft's, written back with the entry). Returns the bytes they occupied.
fn evict(
    txn: &RegistryWrite,
    victims: &Victims,
    writer: &Origin,
    writer_account: &mut OriginRecord,
) -> Result<u64, StoreError> {
    for (victim_hash, victim) in victims {
        uncharge_storers(txn, victim, writer, writer_account)?;
        txn.remove_entry(victim_hash)?;
    }
    Ok(victims.iter().map(|(_, victim)| victim.size).sum())
}

/// A document URL cut to [`MAX_PROVENANCE_URL_BYTES`] (at a character boundary), so a huge URL
/// cannot bloat the registry or an inspection message.
///
/// [`MAX_PROVENANCE_URL_BYTES`]: cos_common::interface::MAX_PROVENANCE_URL_BYTES
fn truncated_url(url: &str) -> String {
    let mut end = url.len().min(cos_common::interface::MAX_PROVENANCE_URL_BYTES);
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    url[..end].to_owned()
}
