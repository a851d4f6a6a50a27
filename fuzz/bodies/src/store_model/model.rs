//! The reference model of the store: entries and their grants, writers and their reservations,
//! handles and their revocation, accounting, eviction and clear-site-data, written from the
//! contract rather than from the service's code.

use std::collections::BTreeSet;

use cos_common::{CosError, DataErrorKind, QuotaScope};
use cos_storage_service::ClearSiteDataReport;

use super::input::{Requested, Step};
use super::{
    CONTENTS, MAX_ENTRY_BYTES, ON_PHL, ORIGINS, PER_ORIGIN_BYTES, READ_SLOTS, SHARE_BYTES, SITES, SLOTS, TOTAL_BYTES,
    hash, origins_of,
};

/// Visibility a verified write requests, after the Allow-Origin ceiling (SPEC §5): a list keeps
/// only the origins the ceiling admits and is the same as omitted when none remain (SPEC §2:
/// `origins: []` = omitted); `"*"` needs no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    Omitted,
    List(u8),
    Global,
}

impl Grant {
    pub(super) fn effective(requested: Requested, ceiling: u8) -> Self {
        match requested {
            Requested::Omitted => Self::Omitted,
            Requested::Global => Self::Global,
            Requested::List(mask) if mask & ceiling == 0 => Self::Omitted,
            Requested::List(mask) => Self::List(mask & ceiling),
        }
    }
}

/// An entry (SPEC §5): its storing origins, its origins list and its global flag. Its bytes are
/// `CONTENTS[c]`; it exists only after a verified write (SPEC §4).
#[derive(Debug, Clone, Default)]
pub(super) struct EntryModel {
    pub(super) storing: BTreeSet<usize>,
    pub(super) listed: BTreeSet<usize>,
    pub(super) global: bool,
}

/// A writable stream (SPEC §4 and the File System Standard's write/seek/truncate): the buffer,
/// the cursor, the error that killed it, if any, and what its in-flight reservation is checked
/// against: its origin's charge when it opened and the size of the entry it rewrites (if its
/// origin already stores it).
#[derive(Debug, Clone, Default)]
pub(super) struct WriterModel {
    pub(super) buffer: Vec<u8>,
    pub(super) cursor: u64,
    pub(super) failed: Option<CosError>,
    pub(super) committed: u64,
    pub(super) credit: u64,
}

impl WriterModel {
    /// The size a step would leave the buffer at (before any limit), or `None` for a step that
    /// does not resize.
    fn size_after(&self, step: &Step) -> Option<u64> {
        let len = self.buffer.len() as u64;
        match step {
            Step::Write(data) => Some(self.cursor.saturating_add(data.len() as u64).max(len)),
            Step::WriteAt(position, data) => Some(position.saturating_add(data.len() as u64).max(len)),
            Step::Seek(_) => None,
            Step::Truncate(size) => Some(*size),
        }
    }

    /// Bytes this writer holds in flight (nothing once it failed), and what its origin is charged
    /// for them.
    pub(super) fn held(&self) -> (u64, u64) {
        if self.failed.is_some() {
            return (0, 0);
        }
        let size = self.buffer.len() as u64;
        (size, size.saturating_sub(self.credit))
    }

    /// Applies a step the limits allow.
    fn apply(&mut self, step: &Step) {
        match step {
            Step::Write(data) => self.write_at(self.cursor, data),
            Step::WriteAt(position, data) => self.write_at(*position, data),
            // Seeking past the end is allowed; a later write zero-fills the gap.
            Step::Seek(position) => self.cursor = *position,
            // Truncate resizes (zero-filling when growing) and keeps the cursor inside the file.
            Step::Truncate(len) => {
                self.buffer.resize(*len as usize, 0);
                self.cursor = self.cursor.min(*len);
            }
        }
    }

    /// A write at `position` zero-fills any gap after the current end (even for empty data),
    /// overwrites, and leaves the cursor at `position + len`.
    fn write_at(&mut self, position: u64, data: &[u8]) {
        let (start, end) = (position as usize, position as usize + data.len());
        if self.buffer.len() < end {
            self.buffer.resize(end, 0);
        }
        self.buffer[start..end].copy_from_slice(data);
        self.cursor = end as u64;
    }

    fn fail(&mut self, error: CosError) -> Result<(), CosError> {
        self.failed = Some(error.clone());
        Err(error)
    }
}

/// A create handle: who asked, for what, with which (ceiling-narrowed) grant; whether one of its
/// own writes has verified (*may read*, SPEC §4, per handle); its open writer.
#[derive(Debug, Clone)]
pub(super) struct SlotModel {
    pub(super) origin: usize,
    pub(super) content: usize,
    pub(super) grant: Grant,
    pub(super) may_read: bool,
    /// A grant it relied on was removed: it answers NotFoundError, its writer cannot commit.
    pub(super) revoked: bool,
    pub(super) writer: Option<WriterModel>,
}

/// A kept read handle: who holds it, on what, whether it came through the global grant alone,
/// and whether it was revoked.
#[derive(Debug, Clone)]
pub(super) struct ReadSlotModel {
    pub(super) origin: usize,
    pub(super) content: usize,
    pub(super) global_only: bool,
    pub(super) revoked: bool,
}

/// What a verified, committed close did.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Committed {
    pub(super) new_blob: bool,
    pub(super) newly_storing: bool,
    pub(super) listed_added: usize,
    pub(super) became_global: bool,
    pub(super) evicted_entries: usize,
    pub(super) evicted_bytes: u64,
}

/// When each stored content was last read (0: never) and created, by the store's clock, reads
/// not yet flushed included.
pub(super) type Clock = [Option<(u64, u64)>; CONTENTS.len()];

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) entries: [Option<EntryModel>; CONTENTS.len()],
    /// SPEC §7: each storing origin is charged the full size of each entry it stores.
    pub(super) charged: [u64; ORIGINS.len()],
    pub(super) slots: [Option<SlotModel>; SLOTS],
    pub(super) read_slots: [Option<ReadSlotModel>; READ_SLOTS],
}

pub(super) fn size(c: usize) -> u64 {
    CONTENTS[c].len() as u64
}

impl Model {
    pub(super) fn total_bytes(&self) -> u64 {
        (0..CONTENTS.len()).filter(|&c| self.entries[c].is_some()).map(size).sum()
    }

    /// SPEC §5, checked in order: storing origin, same-site with a storing origin, listed, then
    /// global — the only grant that consults the Public Hash List (SPEC §6).
    pub(super) fn visible(&self, reader: usize, c: usize) -> bool {
        self.ungated(reader, c) || self.entries[c].as_ref().is_some_and(|entry| entry.global && ON_PHL[c])
    }

    /// A grant the privacy gates never apply to: storing, same-site with a storing origin, or
    /// same-site with a listed one (listing an origin grants its site).
    pub(super) fn ungated(&self, reader: usize, c: usize) -> bool {
        let Some(entry) = &self.entries[c] else { return false };
        entry.storing.iter().chain(&entry.listed).any(|&granted| SITES[granted] == SITES[reader])
    }

    /// A step on the slot's writer: if it grows the writer, the largest-entry limit, then its
    /// in-flight reservation against its origin's limit and the store's cap; a refused step
    /// kills the stream.
    pub(super) fn write_step(&mut self, slot: usize, step: &Step) -> Result<(), CosError> {
        let state = self.slots[slot].as_ref().expect("a slot with a writer");
        let writer = state.writer.as_ref().expect("a slot with a writer");
        if let Some(error) = &writer.failed {
            return Err(error.clone());
        }
        // Only growth is checked, as the store reserves: a step that leaves the size as it is
        // or shrinks it always succeeds, even while the origin is over its limit (its other
        // writers and commits may have put it there after this writer opened).
        let grows = writer.size_after(step).filter(|&size| size > writer.buffer.len() as u64);
        if let Some(size) = grows {
            let error = if size > MAX_ENTRY_BYTES {
                Some(QuotaScope::Origin)
            } else {
                let o = state.origin;
                let others = (0..SLOTS).filter(|&other| other != slot).filter_map(|other| {
                    let other = self.slots[other].as_ref()?;
                    Some((other.origin, other.writer.as_ref()?.held()))
                });
                let (mut origin_held, mut total_held) = (size.saturating_sub(writer.credit), size);
                for (other_origin, (bytes, charged)) in others {
                    total_held += bytes;
                    if other_origin == o {
                        origin_held += charged;
                    }
                }
                if writer.committed + origin_held > PER_ORIGIN_BYTES {
                    Some(QuotaScope::Origin)
                } else if total_held > TOTAL_BYTES {
                    Some(QuotaScope::Global)
                } else {
                    None
                }
            };
            if let Some(scope) = error {
                let writer = self.slots[slot].as_mut().and_then(|s| s.writer.as_mut()).expect("a writer");
                return writer.fail(CosError::QuotaExceeded(scope));
            }
        }
        self.slots[slot].as_mut().and_then(|s| s.writer.as_mut()).expect("a writer").apply(step);
        Ok(())
    }

    /// A fresh writer for origin `o` on content `c`: its reservation is measured against what `o`
    /// is charged now, less `c` if `o` already stores it.
    pub(super) fn new_writer(&self, o: usize, c: usize) -> WriterModel {
        let stores = self.entries[c].as_ref().is_some_and(|e| e.storing.contains(&o));
        WriterModel { committed: self.charged[o], credit: if stores { size(c) } else { 0 }, ..Default::default() }
    }

    /// The entry `c` was deleted for everyone: every handle that read it is revoked (a create
    /// handle that has not written keeps its right to write).
    fn revoke_entry(&mut self, c: usize) {
        for state in self.slots.iter_mut().flatten().filter(|s| s.content == c && s.may_read) {
            state.revoked = true;
        }
        for state in self.read_slots.iter_mut().flatten().filter(|s| s.content == c) {
            state.revoked = true;
        }
    }

    /// `close()` of the slot's writer (SPEC §4 verify on close, §7 limits, §5 merge).
    pub(super) fn close(&mut self, slot: usize, clock: &Clock) -> Option<Result<Committed, CosError>> {
        let state = self.slots[slot].as_mut()?;
        let writer = state.writer.take()?;
        let (o, c, grant) = (state.origin, state.content, state.grant);
        if let Some(error) = writer.failed {
            return Some(Err(error));
        }
        // Verify the final bytes; a mismatch stores nothing. Nothing written is a DataError too,
        // unless the target is the empty content.
        if writer.buffer != CONTENTS[c] {
            let kind =
                if writer.buffer.is_empty() { DataErrorKind::NothingWritten } else { DataErrorKind::HashMismatch };
            return Some(Err(CosError::Data(kind)));
        }
        // The handle was revoked while it wrote (its origin's site data was cleared).
        if state.revoked {
            return Some(Err(CosError::Abort));
        }
        // Quota: a new storing origin is charged the full size; an identical rewrite by an
        // existing storer is free. The origin's limit is checked before the store's cap (the
        // library's order; SPEC §8 names both QuotaExceededError).
        let existing = self.entries[c].as_ref();
        let newly_storing = existing.is_none_or(|e| !e.storing.contains(&o));
        if newly_storing && self.charged[o] + size(c) > PER_ORIGIN_BYTES {
            return Some(Err(CosError::QuotaExceeded(QuotaScope::Origin)));
        }
        let new_blob = existing.is_none();
        // The global cap: new bytes that do not fit evict the least recently read entries
        // (SPEC §7) or, when not enough may go, are refused with nothing evicted.
        let (mut evicted_entries, mut evicted_bytes) = (0, 0);
        if new_blob && self.total_bytes() + size(c) > TOTAL_BYTES {
            let Some(victims) = self.victims(o, c, clock) else {
                return Some(Err(CosError::QuotaExceeded(QuotaScope::Global)));
            };
            for v in victims {
                let victim = self.entries[v].take().expect("victims exist");
                // Deleted for every storer, each uncharged.
                for storer in victim.storing {
                    self.charged[storer] -= size(v);
                }
                self.revoke_entry(v);
                evicted_entries += 1;
                evicted_bytes += size(v);
            }
        }
        // Upgrade-only merge (SPEC §5): the writer becomes a storing origin, a list grows, "*"
        // sets the global flag; nothing is ever removed.
        let entry = self.entries[c].get_or_insert_with(EntryModel::default);
        entry.storing.insert(o);
        let mut listed_added = 0;
        let mut became_global = false;
        match grant {
            Grant::Omitted => {}
            Grant::List(mask) => {
                for listed in origins_of(mask) {
                    listed_added += usize::from(entry.listed.insert(listed));
                }
            }
            Grant::Global => {
                became_global = !entry.global;
                entry.global = true;
            }
        }
        if newly_storing {
            self.charged[o] += size(c);
        }
        if let Some(state) = self.slots[slot].as_mut() {
            state.may_read = true;
        }
        Some(Ok(Committed { new_blob, newly_storing, listed_added, became_global, evicted_entries, evicted_bytes }))
    }

    /// The entries origin `o` evicts to fit new content `c`: least recently read first, then
    /// oldest, then lowest hash; never `c` itself; an empty entry frees nothing and stays. Over its
    /// share, `o` may take only entries it alone stores. `None` when they cannot free enough.
    fn victims(&self, o: usize, c: usize, clock: &Clock) -> Option<Vec<usize>> {
        let needed = self.total_bytes() + size(c) - TOTAL_BYTES;
        let only_own = self.charged[o] + size(c) > SHARE_BYTES;
        let mut candidates: Vec<usize> = (0..CONTENTS.len())
            .filter(|&v| v != c && size(v) > 0)
            .filter(|&v| self.entries[v].as_ref().is_some_and(|e| !only_own || e.storing == BTreeSet::from([o])))
            .collect();
        candidates.sort_by_key(|&v| {
            let (last_read, created) = clock[v].expect("the store lists every entry the model has");
            (last_read, created, hash(v))
        });
        let mut freed = 0;
        let mut victims = Vec::new();
        for v in candidates {
            if freed >= needed {
                break;
            }
            freed += size(v);
            victims.push(v);
        }
        (freed >= needed).then_some(victims)
    }

    /// SPEC §7 clear site data: the origin stops storing and leaves every list; entries left
    /// without a storing origin are deleted; its charge is reset. Every handle of the origin is
    /// revoked, and on each entry the clear touched, every other handle whose grant went with it:
    /// readers of a deleted entry, and ungated readers (or written create handles) that have no
    /// ungated grant left. A global-grant reader keeps its handle while the entry exists.
    pub(super) fn clear(&mut self, o: usize) -> ClearSiteDataReport {
        let mut report = ClearSiteDataReport::default();
        let mut touched = Vec::new();
        for c in 0..CONTENTS.len() {
            let Some(entry) = self.entries[c].as_mut() else { continue };
            let was_storing = entry.storing.remove(&o);
            let was_listed = entry.listed.remove(&o);
            if !was_storing && !was_listed {
                continue;
            }
            touched.push(c);
            if entry.storing.is_empty() {
                self.entries[c] = None;
                report.entries_deleted += 1;
                report.bytes_freed += size(c);
            } else {
                report.entries_released += 1;
            }
        }
        self.charged[o] = 0;
        for c in touched {
            let deleted = self.entries[c].is_none();
            let lost: Vec<bool> = (0..ORIGINS.len()).map(|holder| deleted || !self.ungated(holder, c)).collect();
            for state in self.slots.iter_mut().flatten().filter(|s| s.content == c && s.may_read) {
                state.revoked |= lost[state.origin];
            }
            for state in self.read_slots.iter_mut().flatten().filter(|s| s.content == c) {
                state.revoked |= deleted || (!state.global_only && lost[state.origin]);
            }
        }
        for state in self.slots.iter_mut().flatten().filter(|s| s.origin == o) {
            state.revoked = true;
        }
        for state in self.read_slots.iter_mut().flatten().filter(|s| s.origin == o) {
            state.revoked = true;
        }
        report
    }
}
