//! Bytes in flight: what open writers hold before their `close()`, counted against the same
//! limits as committed bytes.
//!
//! A writer's swap file (on disk) or buffer (off the record, in memory) grows with every write and
//! truncate long before the commit checks any limit. Unbounded, three writers truncating to
//! 1 GiB each would make the service allocate 3 GiB, and 64 writers per renderer could fill the
//! disk with swap. So a writer reserves its size as it grows, and the reservation is refused with
//! `QuotaExceededError` when:
//!
//! - **per origin**: what the origin is charged (read when the writer opened) plus what all its
//!   writers hold would pass the per-origin limit. A writer rewriting an entry its origin already
//!   stores is credited that entry's size, since an identical rewrite costs nothing (SPEC §7);
//! - **per partition**: what all writers of the partition hold would pass the partition's total
//!   limit. Committed bytes do not count here: a full store makes room by evicting at commit, and
//!   a write must be able to reach that point. So a partition holds at most its total limit
//!   committed plus its total limit in flight (off the record: twice its memory budget at worst).
//!
//! The reservation is released when the writer closes, aborts, fails, or its renderer goes away
//! (dropping the writer).

use std::collections::HashMap;
use std::sync::Arc;

use cos_common::{CosError, Origin, QuotaScope};
use parking_lot::Mutex;

use crate::config::StorageLimits;

#[derive(Default)]
struct Held {
    total: u64,
    by_origin: HashMap<Origin, u64>,
}

/// The bytes every open writer of one partition holds.
#[derive(Default)]
pub(crate) struct InFlight {
    held: Mutex<Held>,
}

impl InFlight {
    /// Bytes all writers of the partition hold now.
    pub(crate) fn total(&self) -> u64 {
        self.held.lock().total
    }

    /// Bytes `origin`'s writers hold now (net of their rewrite credits).
    #[cfg(test)]
    pub(crate) fn of_origin(&self, origin: &Origin) -> u64 {
        self.held.lock().by_origin.get(origin).copied().unwrap_or(0)
    }
}

/// One writer's share of its partition's [`InFlight`]; released when dropped.
pub(crate) struct Reservation {
    pool: Arc<InFlight>,
    origin: Origin,
    limits: StorageLimits,
    /// What the origin was charged when the writer opened.
    committed: u64,
    /// The size of the entry the writer's origin already stores, if it does (else 0).
    credit: u64,
    /// The writer's size as reserved.
    bytes: u64,
}

impl Reservation {
    /// An empty reservation for a writer of `origin`, which is charged `committed` and would
    /// rewrite `credit` bytes it already stores.
    pub(crate) fn new(pool: Arc<InFlight>, origin: Origin, limits: StorageLimits, committed: u64, credit: u64) -> Self {
        Self { pool, origin, limits, committed, credit, bytes: 0 }
    }

    /// Makes the reservation `size` bytes: growing is checked against both limits (nothing
    /// changes on refusal), shrinking always succeeds.
    pub(crate) fn resize(&mut self, size: u64) -> Result<(), CosError> {
        let charged = |bytes: u64| bytes.saturating_sub(self.credit);
        let mut held = self.pool.held.lock();
        let origin_now = held.by_origin.get(&self.origin).copied().unwrap_or(0);
        let origin_after = origin_now.saturating_sub(charged(self.bytes)).saturating_add(charged(size));
        let total_after = held.total.saturating_sub(self.bytes).saturating_add(size);
        if size > self.bytes {
            if self.committed.saturating_add(origin_after) > self.limits.per_origin_bytes {
                return Err(CosError::QuotaExceeded(QuotaScope::Origin));
            }
            if total_after > self.limits.total_bytes {
                return Err(CosError::QuotaExceeded(QuotaScope::Global));
            }
        }
        held.total = total_after;
        if origin_after == 0 {
            held.by_origin.remove(&self.origin);
        } else {
            held.by_origin.insert(self.origin.clone(), origin_after);
        }
        self.bytes = size;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = self.resize(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StorageLimits = StorageLimits { per_origin_bytes: 100, total_bytes: 150, share_bytes: 150 };

    fn o(url: &str) -> Origin {
        Origin::from_url(url).unwrap()
    }

    #[test]
    fn an_origins_writers_share_its_limit_with_what_it_already_stores() {
        let pool = Arc::new(InFlight::default());
        let mut first = Reservation::new(pool.clone(), o("https://a.example"), LIMITS, 30, 0);
        let mut second = Reservation::new(pool.clone(), o("https://a.example"), LIMITS, 30, 0);
        first.resize(50).unwrap();
        assert_eq!(second.resize(21), Err(CosError::QuotaExceeded(QuotaScope::Origin)));
        second.resize(20).unwrap();
        assert_eq!(pool.of_origin(&o("https://a.example")), 70);
        first.resize(10).unwrap();
        second.resize(60).unwrap();
        drop(first);
        drop(second);
        assert_eq!((pool.total(), pool.of_origin(&o("https://a.example"))), (0, 0));
    }

    #[test]
    fn a_rewrite_of_stored_bytes_is_credited_but_still_held_by_the_partition() {
        let pool = Arc::new(InFlight::default());
        // The origin is at its limit, and 40 of its bytes are the entry it rewrites.
        let mut rewrite = Reservation::new(pool.clone(), o("https://a.example"), LIMITS, 100, 40);
        rewrite.resize(40).unwrap();
        assert_eq!(rewrite.resize(41), Err(CosError::QuotaExceeded(QuotaScope::Origin)));
        assert_eq!(pool.total(), 40);
        let mut other = Reservation::new(pool.clone(), o("https://b.example"), LIMITS, 0, 0);
        other.resize(100).unwrap();
        let mut third = Reservation::new(pool.clone(), o("https://c.example"), LIMITS, 0, 0);
        assert_eq!(third.resize(11), Err(CosError::QuotaExceeded(QuotaScope::Global)), "the partition's total");
        third.resize(10).unwrap();
    }
}
