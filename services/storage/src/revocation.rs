//! Handles and the grants they rely on: every handle the service issues on a partition is
//! registered here, so that whatever removes a grant — clear-site-data, deleting an entry,
//! eviction, a damaged blob — also revokes the handles that were issued on it.
//!
//! Without this a handle outlives its grant: an origin that stored an entry, kept a handle and
//! cleared its own site data could ask through that handle, again and again and never charged,
//! whether anyone else still stores the bytes. A revoked handle answers `NotFoundError` on
//! `getFile()` and `createWritable()`, exactly like a miss, and a writer it opened cannot commit.
//!
//! Ordering: revocations run under the partition's commit lock, right after the commit that
//! removed the grant, and bump an epoch. A lookup notes the epoch before it reads the registry
//! and registers its handle only if no revocation ran meanwhile ([`IssuedHandles::register`]);
//! otherwise it decides again. So a handle is either issued after the grant was removed (and
//! judged on the new state) or registered before the sweep (and revoked by it).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cos_common::{ContentHash, Origin};
use parking_lot::Mutex;

use crate::registry::EntryRecord;
use crate::visibility::{ReadGrant, read_grant};

/// Why a handle was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssuedFor {
    /// A read through a grant the privacy gates never apply to (storing, same-site, listed).
    UngatedRead,
    /// A read through the global grant, after the gates and the probe budget agreed.
    GlobalRead,
    /// A create request (readable once one of its own writes verified).
    Create,
}

/// The shared state of one issued handle: what it may do now.
#[derive(Debug)]
pub(crate) struct HandleState {
    holder: Origin,
    issued_for: IssuedFor,
    may_read: AtomicBool,
    revoked: AtomicBool,
}

impl HandleState {
    pub(crate) fn new(holder: Origin, issued_for: IssuedFor) -> Arc<Self> {
        Arc::new(Self {
            holder,
            issued_for,
            may_read: AtomicBool::new(issued_for != IssuedFor::Create),
            revoked: AtomicBool::new(false),
        })
    }

    /// `getFile()` is allowed (SPEC §4: per handle).
    pub(crate) fn may_read(&self) -> bool {
        self.may_read.load(Ordering::Acquire)
    }

    /// One of this create handle's writes verified.
    pub(crate) fn allow_reading(&self) {
        self.may_read.store(true, Ordering::Release);
    }

    /// A grant this handle relied on was removed.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// Whether the handle currently rests on a read grant (a create handle only once it wrote).
    fn reads(&self) -> bool {
        self.issued_for != IssuedFor::Create || self.may_read()
    }
}

#[derive(Default)]
struct Issued {
    next: u64,
    by_hash: HashMap<ContentHash, HashMap<u64, Arc<HandleState>>>,
}

/// Every live handle of one partition, by entry.
#[derive(Default)]
pub(crate) struct IssuedHandles {
    issued: Mutex<Issued>,
    /// Bumped by every revocation sweep.
    epoch: AtomicU64,
}

impl IssuedHandles {
    /// The current revocation epoch; pass it to [`register`](Self::register).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Registers a handle decided while the epoch was `epoch`. `None` if a revocation ran since:
    /// the decision may rest on a removed grant and must be made again.
    pub(crate) fn register(&self, hash: ContentHash, state: &Arc<HandleState>, epoch: u64) -> Option<u64> {
        let mut issued = self.issued.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return None;
        }
        issued.next += 1;
        let ticket = issued.next;
        issued.by_hash.entry(hash).or_default().insert(ticket, state.clone());
        Some(ticket)
    }

    /// The handle `ticket` on `hash` was dropped.
    pub(crate) fn forget(&self, hash: &ContentHash, ticket: u64) {
        let mut issued = self.issued.lock();
        if let Some(handles) = issued.by_hash.get_mut(hash) {
            handles.remove(&ticket);
            if handles.is_empty() {
                issued.by_hash.remove(hash);
            }
        }
    }

    /// The entry `hash` was deleted for everyone: every handle that reads it is revoked. A create
    /// handle that has not written yet keeps its right to write.
    pub(crate) fn revoke_entry(&self, hash: &ContentHash) -> usize {
        let issued = self.issued.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let Some(handles) = issued.by_hash.get(hash) else { return 0 };
        revoke_where(handles.values(), |state| state.reads())
    }

    /// `origin`'s site data was cleared: every handle it holds is revoked, and on each entry the
    /// clear changed (`touched`: the entry after the clear, `None` if it was deleted) every other
    /// handle whose grant went with it — an ungated reader that no longer has an ungated grant,
    /// any reader of a deleted entry. A global-grant reader keeps its handle while the entry
    /// exists: the global flag is never cleared, and it already paid its probe.
    pub(crate) fn revoke_after_clear(&self, origin: &Origin, touched: &[(ContentHash, Option<EntryRecord>)]) -> usize {
        let issued = self.issued.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut revoked =
            revoke_where(issued.by_hash.values().flat_map(HashMap::values), |state| state.holder == *origin);
        for (hash, after) in touched {
            let Some(handles) = issued.by_hash.get(hash) else { continue };
            revoked += revoke_where(handles.values(), |state| {
                if !state.reads() {
                    return false;
                }
                match after {
                    None => true,
                    Some(_) if state.issued_for == IssuedFor::GlobalRead => false,
                    Some(entry) => read_grant(entry, &state.holder).is_none_or(|grant| grant == ReadGrant::Global),
                }
            });
        }
        revoked
    }
}

fn revoke_where<'a>(
    handles: impl Iterator<Item = &'a Arc<HandleState>>,
    mut condition: impl FnMut(&HandleState) -> bool,
) -> usize {
    let mut revoked = 0;
    for state in handles {
        if !state.is_revoked() && condition(state) {
            state.revoke();
            revoked += 1;
        }
    }
    revoked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(url: &str) -> Origin {
        Origin::from_url(url).unwrap()
    }

    const H: ContentHash = ContentHash::from_bytes([1; 32]);

    fn entry(storers: &[&str], listed: &[&str]) -> EntryRecord {
        EntryRecord {
            size: 1,
            storing_origins: storers.iter().map(|s| o(s)).collect(),
            listed_origins: listed.iter().map(|s| o(s)).collect(),
            global: true,
            created_ms: 0,
            last_read_ms: 0,
            read_count: 0,
            provenance: vec![],
        }
    }

    fn issue(handles: &IssuedHandles, holder: &str, issued_for: IssuedFor) -> Arc<HandleState> {
        let state = HandleState::new(o(holder), issued_for);
        handles.register(H, &state, handles.epoch()).unwrap();
        state
    }

    #[test]
    fn a_decision_made_before_a_revocation_is_not_registered() {
        let handles = IssuedHandles::default();
        let epoch = handles.epoch();
        handles.revoke_entry(&ContentHash::from_bytes([9; 32]));
        let state = HandleState::new(o("https://a.example"), IssuedFor::UngatedRead);
        assert_eq!(handles.register(H, &state, epoch), None, "decide again");
        assert!(handles.register(H, &state, handles.epoch()).is_some());
    }

    #[test]
    fn deleting_an_entry_revokes_its_readers_but_not_an_unwritten_create_handle() {
        let handles = IssuedHandles::default();
        let reader = issue(&handles, "https://a.example", IssuedFor::GlobalRead);
        let unwritten = issue(&handles, "https://b.example", IssuedFor::Create);
        let written = issue(&handles, "https://c.example", IssuedFor::Create);
        written.allow_reading();
        assert_eq!(handles.revoke_entry(&H), 2);
        assert!(reader.is_revoked() && written.is_revoked() && !unwritten.is_revoked());
    }

    #[test]
    fn clearing_an_origin_revokes_its_handles_and_the_grants_that_came_from_it() {
        let handles = IssuedHandles::default();
        let cleared = issue(&handles, "https://a.example", IssuedFor::Create);
        let same_site_via_cleared = issue(&handles, "https://www.a.example", IssuedFor::UngatedRead);
        let listed = issue(&handles, "https://l.example", IssuedFor::UngatedRead);
        let other_storer = issue(&handles, "https://b.example", IssuedFor::UngatedRead);
        let global = issue(&handles, "https://g.example", IssuedFor::GlobalRead);
        let forgotten = issue(&handles, "https://a.example", IssuedFor::UngatedRead);
        handles.forget(&H, 6);
        // After the clear, b.example still stores it and l.example is still listed.
        let after = entry(&["https://b.example"], &["https://l.example"]);
        assert_eq!(handles.revoke_after_clear(&o("https://a.example"), &[(H, Some(after))]), 2);
        assert!(cleared.is_revoked(), "every handle of the cleared origin");
        assert!(same_site_via_cleared.is_revoked(), "its same-site grant came from the cleared origin");
        assert!(!listed.is_revoked() && !other_storer.is_revoked() && !global.is_revoked());
        assert!(!forgotten.is_revoked(), "a dropped handle is no longer reachable");
        // The entry is deleted by the next clear: everyone who reads it loses it.
        assert_eq!(handles.revoke_after_clear(&o("https://b.example"), &[(H, None)]), 3);
        assert!(listed.is_revoked() && other_storer.is_revoked() && global.is_revoked());
    }
}
