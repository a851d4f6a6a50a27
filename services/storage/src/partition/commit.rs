//! A verified write becoming an entry: one registry transaction that checks the writer's quota,
//! makes room under the global cap by eviction, records the entry and its accounting, and
//! installs the blob. The victims are chosen before anything changes and deleted in the same
//! transaction, so a refused or failed write never costs anyone their data.
//!
//! **Group commit.** Verified writes that reach the commit point while another commit holds the
//! partition's commit lock wait in a queue; whoever takes the lock next (the group's leader)
//! commits everything queued in one transaction: each member's phases run in turn, in arrival
//! order, against the rows the earlier members left in the transaction, then the blobs'
//! directories are synced once and the registry commits (and fsyncs) once. Each writer gets the
//! verdict it would have got alone, in that order: a refusal happens before the member changes
//! any row; a member whose rows or rename fail is failed alone and the transaction is started
//! again without it; a failure of the shared directory sync or commit fails every member.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use cos_common::interface::WriteWarnings;
use cos_common::{ContentHash, CosError, Origin, OriginsOption, QuotaScope, Site};
use parking_lot::{Condvar, Mutex};

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

/// A writer's verdict, filled in by whichever writer led its group.
type Verdict = Result<CommitOutcome, Failure>;

/// Where a queued write's bytes are.
enum Bytes {
    /// Still in the writer's swap file (or buffer).
    Staged(StagedBlob),
    /// Renamed into the blob store by an earlier attempt of the same group (whose transaction was
    /// then started again without a failed member); the directory still to be synced, if any.
    Placed(Option<PathBuf>),
    /// Gone: the member has its verdict.
    Taken,
}

/// A verified write waiting in the commit queue, owned so that the group's leader, on its own
/// thread, can commit it.
pub(super) struct QueuedWrite {
    bytes: Bytes,
    hash: ContentHash,
    size: u64,
    writer: Origin,
    requested: OriginsOption,
    document_url: Option<String>,
    handle: Arc<HandleState>,
    /// Names the write's verdict in the queue once its leader answered.
    ticket: u64,
    /// The verdict, once decided.
    verdict: Option<Verdict>,
}

impl QueuedWrite {
    fn describe(&self) -> VerifiedWrite<'_> {
        VerifiedWrite {
            hash: &self.hash,
            size: self.size,
            writer: &self.writer,
            requested: &self.requested,
            document_url: self.document_url.as_deref(),
        }
    }

    /// Refuses or fails the member; its swap file goes now (dropping it deletes it).
    fn fail(&mut self, failure: Failure) {
        self.bytes = Bytes::Taken;
        self.verdict = Some(Err(failure));
    }
}

/// What one member of a group did inside the shared transaction, until the commit tells whether
/// it happened.
struct Admitted {
    /// Index of the member in the group.
    member: usize,
    new_blob: bool,
    visibility: VisibilityChange,
    victims: Victims,
    evicted_bytes: u64,
}

/// A partition's commit queue: verified writes waiting for a leader, and the verdicts leaders
/// left for their writers.
#[derive(Default)]
pub(super) struct CommitQueue {
    state: Mutex<QueueState>,
    /// Signalled when a leader stops leading (its group's verdicts are in).
    answered: Condvar,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<QueuedWrite>,
    next_ticket: u64,
    /// A writer is committing a group now.
    leading: bool,
    verdicts: HashMap<u64, Verdict>,
}

impl CommitQueue {
    /// Writes waiting for a leader now.
    #[cfg(feature = "testing")]
    pub(super) fn len(&self) -> usize {
        self.state.lock().waiting.len()
    }
}

/// A writer's leadership of the queue; given up when dropped (also if the leader panicked, so
/// that the others are not left waiting for ever: they find no verdict and fail).
struct Leading<'a>(&'a CommitQueue);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.state.lock().leading = false;
        self.0.answered.notify_all();
    }
}

impl PartitionStore {
    /// Makes verified bytes an entry (or confirms the existing one) in one registry transaction:
    /// quota checks, eviction of least recently read entries when new bytes would pass the
    /// global cap (SPEC §7), blob install, entry and accounting rows. The victims are chosen
    /// before anything changes and deleted in the same transaction, so a refused or failed write
    /// never costs anyone their data; their blobs are unlinked only after the commit. `handle` is
    /// the writer's create handle: if a grant it relied on was revoked while it wrote (its site
    /// data was cleared), nothing is committed and the writer sees `AbortError`.
    ///
    /// Writes that arrive while another commit runs are committed together by the first of them
    /// to take the commit lock (see the module's documentation); each returns only once its
    /// group's transaction is durable, or failed.
    #[allow(clippy::too_many_arguments, reason = "one verified write, described once")]
    pub(crate) fn commit_verified(
        &self,
        staged: StagedBlob,
        hash: &ContentHash,
        size: u64,
        writer: &Origin,
        requested: &OriginsOption,
        document_url: Option<&str>,
        handle: &Arc<HandleState>,
    ) -> Result<CommitOutcome, Failure> {
        let queue = &self.commit_queue;
        let mut state = queue.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push(QueuedWrite {
            bytes: Bytes::Staged(staged),
            hash: *hash,
            size,
            writer: writer.clone(),
            requested: requested.clone(),
            document_url: document_url.map(str::to_owned),
            handle: handle.clone(),
            ticket,
            verdict: None,
        });
        // Followers wait here, not on the commit lock, so that an answered writer returns at
        // once instead of queueing behind the next group's fsync.
        loop {
            if let Some(verdict) = state.verdicts.remove(&ticket) {
                return verdict;
            }
            if !state.leading {
                break;
            }
            queue.answered.wait(&mut state);
        }
        // This writer leads: its own write is still queued, since every leader answers all it
        // took before it stops leading.
        state.leading = true;
        drop(state);
        let leading = Leading(queue);
        // Blob files the group's installs replaced, closed (and their blocks freed) only once
        // the commit lock is released and the members are answered.
        let mut replaced = Vec::new();
        let group = {
            let _commit = self.commit_lock.lock();
            #[cfg(feature = "testing")]
            self.commit_gate.wait_open();
            // Taken only now: whoever queued while this leader waited for the lock joins.
            let mut group = std::mem::take(&mut queue.state.lock().waiting);
            self.commit_group(&mut group, &mut replaced);
            group
        };
        let mut state = queue.state.lock();
        for member in group {
            let verdict = member.verdict.unwrap_or(Err(Failure::Refused(CosError::Unknown)));
            state.verdicts.insert(member.ticket, verdict);
        }
        let verdict = state.verdicts.remove(&ticket);
        drop(state);
        drop(leading);
        drop(replaced);
        verdict.unwrap_or(Err(Failure::Refused(CosError::Unknown)))
    }

    /// Commits a group in one transaction and leaves each member's verdict in it. A member whose
    /// rows or rename fail gets that failure, and the transaction is begun again without it, so
    /// that its half-written rows cannot reach the others' commit; every attempt decides at least
    /// one member, so this ends.
    fn commit_group(&self, group: &mut [QueuedWrite], replaced: &mut Vec<File>) {
        loop {
            let waiting: Vec<usize> = (0..group.len()).filter(|&i| group[i].verdict.is_none()).collect();
            if waiting.is_empty() {
                return;
            }
            if self.attempt_group(group, &waiting, replaced) {
                return;
            }
        }
    }

    /// One attempt at committing the undecided members `waiting`. False when a member failed
    /// alone and the others are to be tried again in a new transaction.
    fn attempt_group(&self, group: &mut [QueuedWrite], waiting: &[usize], replaced: &mut Vec<File>) -> bool {
        let txn = match self.registry.write() {
            Ok(txn) => txn,
            Err(error) => {
                fail_all(group, waiting, error);
                return true;
            }
        };
        let mut admitted = Vec::new();
        for &member in waiting {
            // Revocations run under the commit lock too, so this check and the commit are one step.
            if group[member].handle.is_revoked() {
                group[member].fail(Failure::Refused(CosError::Abort));
                continue;
            }
            match self.admit(&txn, &group[member].describe()) {
                Ok((new_blob, visibility, victims, evicted_bytes)) => {
                    admitted.push(Admitted { member, new_blob, visibility, victims, evicted_bytes });
                }
                // Refusals come before the member changes any row: the others go on.
                Err(Failure::Refused(error)) => group[member].fail(Failure::Refused(error)),
                Err(Failure::Store(error)) => {
                    // Some of its rows may be in the transaction: drop it (it aborts) and begin
                    // again without this member.
                    group[member].fail(Failure::Store(error));
                    return false;
                }
            }
        }
        if admitted.is_empty() {
            return true;
        }
        let members: Vec<usize> = admitted.iter().map(|a| a.member).collect();
        // Only now, and only for a transaction that commits something: a refused commit must not
        // swallow the batched read times.
        if let Err(error) = self.apply_pending_reads(&txn) {
            fail_all(group, &members, error);
            return true;
        }
        // The verified bytes are installed whether or not the store already had them, so that a
        // close costs the same either way: creates are never charged to a probe budget, and a
        // faster close for known bytes would tell anyone holding a file whether some other site
        // stored it (ARCHITECTURE.md, "A close costs the same"). For known bytes this also
        // replaces a blob that may have been damaged on disk since the service started.
        let mut dirs = BTreeSet::new();
        for &member in &members {
            let write = &mut group[member];
            let placed = match std::mem::replace(&mut write.bytes, Bytes::Taken) {
                Bytes::Staged(staged) => self.blobs.place(staged, &write.hash, replaced),
                Bytes::Placed(dir) => Ok(dir),
                Bytes::Taken => unreachable!("an undecided member still has its bytes"),
            };
            match placed {
                Ok(dir) => {
                    dirs.extend(dir.clone());
                    write.bytes = Bytes::Placed(dir);
                }
                Err(error) => {
                    // Rows of this member are in the transaction: begin again without it. The
                    // blobs already renamed stay placed for the next attempt; one whose member is
                    // then refused is a blob without a row, invisible, deleted by recovery.
                    write.fail(Failure::Store(error));
                    return false;
                }
            }
        }
        // One sync per blob directory the group renamed into, shared by the members. If it fails
        // the renames may not be durable, so nothing commits (a blob without a row is never
        // visible, and recovery deletes it at the next start).
        for dir in &dirs {
            if let Err(error) = self.blobs.sync_dir(dir) {
                fail_all(group, &members, error);
                return true;
            }
        }
        if let Err(error) = txn.commit() {
            // Whether the rows landed is unknown (a failed fsync may still have written them),
            // so the blobs stay: each entry is whole or absent, never a row without its bytes. A
            // blob without a row is invisible, and recovery deletes it at the next start. The
            // victims' rows are still there, and so are their blobs.
            fail_all(group, &members, error);
            return true;
        }
        self.release_victims(group, &admitted);
        for admitted in admitted {
            let write = &mut group[admitted.member];
            // A new file may have been installed: its identity is recorded by its writer.
            self.verified.insert(write.hash, None);
            write.bytes = Bytes::Taken;
            write.verdict = Some(Ok(CommitOutcome {
                new_blob: admitted.new_blob,
                visibility: admitted.visibility,
                evicted_entries: admitted.victims.len(),
                evicted_bytes: admitted.evicted_bytes,
                warnings: WriteWarnings::none(),
            }));
        }
        true
    }

    /// One member's phases inside the group's transaction, against the rows the members before
    /// it left there: its quota, room under the global cap, its rows. Returns whether its bytes
    /// are new, the visibility change, its victims and the bytes they freed.
    fn admit(
        &self,
        txn: &RegistryWrite,
        write: &VerifiedWrite<'_>,
    ) -> Result<(bool, VisibilityChange, Victims, u64), Failure> {
        let mut draft = Draft::read(txn, write)?;
        let slot = self.storing_slot_within_quota(txn, &draft, write)?;
        let (victims, total) = self.make_room(txn, &draft, write)?;
        let evicted_bytes = evict(txn, &victims, write.writer, &mut draft.account)?;
        let total = total.saturating_sub(evicted_bytes);
        let visibility = self.record_write(txn, &mut draft, write, slot, total)?;
        Ok((draft.new_blob, visibility, victims, evicted_bytes))
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

    /// Writes the entry and the writer's account as the write leaves them, with (for new bytes)
    /// the store's new total, all into `txn`.
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
        if draft.new_blob {
            txn.set_total_bytes(total + write.size)?;
        }
        Ok(visibility)
    }

    /// After the commit: the victims' handles are revoked and their blobs unlinked — except a
    /// victim that a later member of the group wrote again, whose row and blob are that member's
    /// (in the serial order the group stands for, its handles would have been revoked before the
    /// new entry existed, and no handle can be issued on it in between).
    fn release_victims(&self, group: &[QueuedWrite], admitted: &[Admitted]) {
        let mut released = HashSet::new();
        for member in admitted {
            if !member.victims.is_empty() {
                tracing::info!(
                    entries = member.victims.len(),
                    bytes = member.evicted_bytes,
                    "evicted least recently read entries to fit a write under the global cap"
                );
            }
            self.evicted_entries.fetch_add(member.victims.len() as u64, std::sync::atomic::Ordering::Relaxed);
            released.extend(member.victims.iter().map(|(hash, _)| *hash));
            released.remove(&group[member.member].hash);
        }
        for victim_hash in released {
            self.handles.revoke_entry(&victim_hash);
            // The rows are gone; a blob left behind is an orphan that recovery deletes.
            if let Err(error) = self.unlink_blob(&victim_hash) {
                tracing::warn!(%error, "could not remove an evicted blob");
            }
        }
    }
}

/// Fails every member in `members` with one shared failure (of the directory sync or the commit
/// they all depended on): none of them is answered success.
fn fail_all(group: &mut [QueuedWrite], members: &[usize], error: StoreError) {
    let shared = Arc::new(error);
    for &member in members {
        group[member].fail(Failure::Store(StoreError::Shared(shared.clone())));
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
