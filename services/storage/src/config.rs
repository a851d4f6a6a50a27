//! What the embedder configures.

use std::path::PathBuf;
use std::sync::Arc;

use crate::gate::{FailClosed, GlobalDisclosureGate};

const GIB: u64 = 1 << 30;

/// Byte limits of one partition (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// What one origin may be charged in total (each storing origin pays an entry's full size).
    pub per_origin_bytes: u64,
    /// What all blobs together may occupy.
    pub total_bytes: u64,
}

impl StorageLimits {
    /// The regular profile's defaults: the prototypes' 100 GiB sanity ceiling for the store and
    /// a fifth of it per origin. (Sizing them from the disk's capacity comes with eviction.)
    pub const REGULAR_DEFAULT: Self = Self { per_origin_bytes: 20 * GIB, total_bytes: 100 * GIB };

    /// Off-the-record defaults: the store lives in RAM, so it stays small.
    pub const OFF_THE_RECORD_DEFAULT: Self = Self { per_origin_bytes: GIB, total_bytes: 2 * GIB };

    /// The largest single entry these limits could ever admit.
    pub fn max_entry_bytes(&self) -> u64 {
        self.per_origin_bytes.min(self.total_bytes)
    }
}

/// Configuration of a [`StorageService`](crate::StorageService).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The browser profile directory; the store lives in its `cos/` subdirectory.
    pub profile_dir: PathBuf,
    /// Limits of the regular (on-disk) partition.
    pub limits: StorageLimits,
    /// Limits of each off-the-record (in-memory) partition.
    pub off_the_record_limits: StorageLimits,
    /// Decides disclosure through the global grant. Defaults to [`FailClosed`].
    pub global_gate: Arc<dyn GlobalDisclosureGate>,
}

impl ServiceConfig {
    /// Defaults for a profile directory.
    pub fn new(profile_dir: impl Into<PathBuf>) -> Self {
        Self {
            profile_dir: profile_dir.into(),
            limits: StorageLimits::REGULAR_DEFAULT,
            off_the_record_limits: StorageLimits::OFF_THE_RECORD_DEFAULT,
            global_gate: Arc::new(FailClosed),
        }
    }

    /// Replaces the global gate (e.g. with a [`PublicHashList`](crate::PublicHashList)).
    pub fn with_global_gate(mut self, gate: Arc<dyn GlobalDisclosureGate>) -> Self {
        self.global_gate = gate;
        self
    }

    /// Replaces the regular partition's limits.
    pub fn with_limits(mut self, limits: StorageLimits) -> Self {
        self.limits = limits;
        self
    }
}
