//! Whole-file reads by descriptor: sealed memory copies of verified entries, in a bounded cache.
//!
//! A whole read of an entry that asks for it ([`ReaderRequest::ReadShared`]) is answered with a
//! descriptor of a *sealed memory file* holding the entry's bytes, which the renderer maps: no
//! copy per read. The blob file itself is never handed out: without fs-verity, a same-user
//! holder of its descriptor could make it writable (`fchmod`, reopen through `/proc`) and change
//! the bytes every other reader sees. A sealed memory file can change for nobody.
//!
//! **Invariant:** every cached file holds bytes whose SHA-256 is the entry's hash: hashed while
//! the file was filled, or copied from a blob file whose identity (inode, size, ctime, mtime) is
//! the one recorded when it was verified in this service generation, so a blob file changed
//! after its verification is never copied into one unhashed (ARCHITECTURE.md, "Integrity on
//! read"). An
//! entry's file leaves the cache when the entry's blob leaves its partition (deletion,
//! eviction, clear-site-data, damage), when its partition is dropped, or when newer fills need
//! the room; descriptors already handed out stay valid (they are the same immutable bytes).
//!
//! **Bound:** the cached files and the fills in progress together stay within one byte budget
//! (`ServiceConfig::shared_read_bytes`), least recently used first out; an entry larger than
//! the budget, or arriving while fills hold the room, is streamed instead.
//!
//! [`ReaderRequest::ReadShared`]: cos_common::interface::ReaderRequest::ReadShared

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cos_common::ContentHash;
use cos_ipc::SealedFile;
use parking_lot::Mutex;

pub use cos_common::interface::SHARED_READ_MIN_BYTES;

/// Identifies a partition in the cache (each `PartitionStore` draws one).
pub(crate) type PartitionKey = u64;

static NEXT_PARTITION: AtomicU64 = AtomicU64::new(1);

/// A fresh key for a new partition.
pub(crate) fn partition_key() -> PartitionKey {
    NEXT_PARTITION.fetch_add(1, Ordering::Relaxed)
}

/// The service's sealed copies of verified entries, shared by every partition.
pub(crate) struct SharedReads {
    budget: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<(PartitionKey, ContentHash), Cached>,
    /// Bytes of the cached files.
    cached: u64,
    /// Bytes reserved by fills in progress.
    filling: u64,
    /// Use counter, for least-recently-used eviction.
    clock: u64,
}

struct Cached {
    file: Arc<SealedFile>,
    last_used: u64,
}

/// Room reserved for one fill; given back when dropped unless the fill was cached.
pub(crate) struct FillPermit {
    cache: Arc<SharedReads>,
    size: u64,
}

impl Drop for FillPermit {
    fn drop(&mut self) {
        self.cache.state.lock().filling -= self.size;
    }
}

impl SharedReads {
    /// A cache holding at most `budget` bytes.
    pub(crate) fn new(budget: u64) -> Arc<Self> {
        Arc::new(Self { budget, state: Mutex::new(State::default()) })
    }

    /// The sealed copy of an entry, if cached (and marks it used).
    pub(crate) fn get(&self, partition: PartitionKey, hash: &ContentHash) -> Option<Arc<SealedFile>> {
        let mut state = self.state.lock();
        state.clock += 1;
        let now = state.clock;
        let cached = state.entries.get_mut(&(partition, *hash))?;
        cached.last_used = now;
        Some(cached.file.clone())
    }

    /// Reserves room for a fill of `size` bytes, evicting least recently used copies as needed;
    /// `None` if it cannot fit (the read is then streamed).
    pub(crate) fn begin_fill(self: &Arc<Self>, size: u64) -> Option<FillPermit> {
        let mut state = self.state.lock();
        if size > self.budget.saturating_sub(state.filling) {
            return None;
        }
        while state.cached + state.filling + size > self.budget {
            let oldest = state.entries.iter().min_by_key(|(_, cached)| cached.last_used).map(|(key, _)| *key)?;
            let evicted = state.entries.remove(&oldest).expect("just found");
            state.cached -= evicted.file.len();
        }
        state.filling += size;
        Some(FillPermit { cache: self.clone(), size })
    }

    /// Caches a filled, verified copy, if `still_present()` (asked under the cache's lock, so a
    /// removal of the entry either sees the copy or keeps it out).
    pub(crate) fn insert(
        &self,
        permit: FillPermit,
        partition: PartitionKey,
        hash: ContentHash,
        file: Arc<SealedFile>,
        still_present: impl FnOnce() -> bool,
    ) {
        let mut state = self.state.lock();
        if !still_present() || file.len() != permit.size {
            return; // the permit gives its room back
        }
        state.filling -= permit.size;
        std::mem::forget(permit);
        state.clock += 1;
        let last_used = state.clock;
        state.cached += file.len();
        if let Some(previous) = state.entries.insert((partition, hash), Cached { file, last_used }) {
            state.cached -= previous.file.len();
        }
    }

    /// Drops an entry's copy (its blob left the partition).
    pub(crate) fn remove(&self, partition: PartitionKey, hash: &ContentHash) {
        let mut state = self.state.lock();
        if let Some(removed) = state.entries.remove(&(partition, *hash)) {
            state.cached -= removed.file.len();
        }
    }

    /// Drops every copy of a partition (it is going away).
    pub(crate) fn remove_partition(&self, partition: PartitionKey) {
        let mut state = self.state.lock();
        let mut freed = 0;
        state.entries.retain(|(key, _), cached| {
            let keep = *key != partition;
            if !keep {
                freed += cached.file.len();
            }
            keep
        });
        state.cached -= freed;
    }

    /// Bytes of the cached copies and of the fills in progress.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn held_bytes(&self) -> u64 {
        let state = self.state.lock();
        state.cached + state.filling
    }

    /// How many copies are cached.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> ContentHash {
        ContentHash::from_bytes([n; 32])
    }

    fn fill(cache: &Arc<SharedReads>, n: u8, size: usize) -> bool {
        let Some(permit) = cache.begin_fill(size as u64) else { return false };
        let file = Arc::new(SealedFile::from_bytes(&vec![n; size]).unwrap());
        cache.insert(permit, 1, hash(n), file, || true);
        true
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_copy_goes_first() {
        let cache = SharedReads::new(300);
        assert!(fill(&cache, 1, 100) && fill(&cache, 2, 100) && fill(&cache, 3, 100));
        assert!(cache.get(1, &hash(1)).is_some(), "1 is now the most recently used");
        assert!(fill(&cache, 4, 100));
        assert_eq!(cache.held_bytes(), 300);
        assert!(cache.get(1, &hash(2)).is_none(), "2 was the least recently used");
        assert!(cache.get(1, &hash(1)).is_some());
        assert!(!fill(&cache, 5, 301), "larger than the budget");
        let permit = cache.begin_fill(250).unwrap();
        assert!(cache.held_bytes() <= 300 && cache.len() == 0, "a fill makes room first");
        assert!(cache.begin_fill(100).is_none(), "fills in progress hold their room");
        drop(permit);
        assert_eq!(cache.held_bytes(), 0);
    }

    #[test]
    fn a_copy_of_an_entry_removed_during_its_fill_is_not_kept() {
        let cache = SharedReads::new(1000);
        let permit = cache.begin_fill(10).unwrap();
        let file = Arc::new(SealedFile::from_bytes(&[7; 10]).unwrap());
        cache.insert(permit, 1, hash(7), file, || false);
        assert_eq!((cache.len(), cache.held_bytes()), (0, 0));
        assert!(fill(&cache, 8, 10) && fill(&cache, 9, 10));
        cache.remove(1, &hash(8));
        assert!(cache.get(1, &hash(8)).is_none());
        cache.remove_partition(1);
        assert_eq!((cache.len(), cache.held_bytes()), (0, 0));
    }
}
