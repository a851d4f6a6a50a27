//! What the embedder configures.

use std::io;
use std::path::{Path, PathBuf};

use crate::gates::{GateConfig, PublicHashList};

const GIB: u64 = 1 << 30;

/// The prototypes' sanity ceiling for a whole store, however large the disk.
const TOTAL_CEILING_BYTES: u64 = 100 * GIB;

/// Byte limits of one partition (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// What one origin may be charged in total (each storing origin pays an entry's full size).
    /// A hard limit: a write past it is refused (`QuotaExceededError`) and never makes room by
    /// evicting.
    pub per_origin_bytes: u64,
    /// What all blobs together may occupy. A write of new bytes past it evicts the least recently
    /// read entries first (SPEC §7), or is refused when not enough may be evicted.
    pub total_bytes: u64,
    /// An origin's fair share of the store. An origin whose charge would exceed it may evict only
    /// entries it alone stores, so one heavy site cannot push everyone else's data out.
    pub share_bytes: u64,
}

impl StorageLimits {
    /// The regular profile's defaults when the disk's size is unknown: the prototypes' 100 GiB
    /// ceiling for the store, a fifth of it per origin and as the fair share.
    pub const REGULAR_DEFAULT: Self =
        Self { per_origin_bytes: 20 * GIB, total_bytes: TOTAL_CEILING_BYTES, share_bytes: Self::share_of(100 * GIB) };

    /// Off-the-record defaults: the store lives in RAM, so it stays small.
    pub const OFF_THE_RECORD_DEFAULT: Self =
        Self { per_origin_bytes: GIB, total_bytes: 2 * GIB, share_bytes: Self::share_of(2 * GIB) };

    /// Limits sized from the capacity of the disk holding the store, as the prototypes do: the
    /// store may take 60% of the disk (at most 100 GiB), one origin 20% of the disk (at most the
    /// store), and an origin's fair share is 20% of the store.
    pub const fn for_disk(capacity_bytes: u64) -> Self {
        let total_bytes = min(percent(capacity_bytes, 60), TOTAL_CEILING_BYTES);
        let per_origin_bytes = min(percent(capacity_bytes, 20), total_bytes);
        Self { per_origin_bytes, total_bytes, share_bytes: Self::share_of(total_bytes) }
    }

    /// The fair share that goes with a store of `total_bytes` (20% of it), for embedders that
    /// configure the store's size but not the share.
    pub const fn share_of(total_bytes: u64) -> u64 {
        percent(total_bytes, 20)
    }

    /// The largest single entry these limits could ever admit.
    pub fn max_entry_bytes(&self) -> u64 {
        self.per_origin_bytes.min(self.total_bytes)
    }
}

const fn min(a: u64, b: u64) -> u64 {
    if a < b { a } else { b }
}

/// `value * pct / 100`, exact and without overflow.
const fn percent(value: u64, pct: u64) -> u64 {
    (value as u128 * pct as u128 / 100) as u64
}

/// The size of the filesystem holding `path` (all of it, not what is free now): limits follow the
/// disk, not its momentary fill level, so they do not change from one start to the next.
pub fn disk_capacity(path: &Path) -> io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_blocks.saturating_mul(stats.f_frsize))
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
    /// The privacy gates of the global grant (by default: no Public Hash List, so no global
    /// disclosure; GREASE on; a probe budget of 16).
    pub gates: GateConfig,
    /// Test seam (`testing` feature only): injects disk failures into the regular partition's
    /// files.
    #[cfg(feature = "testing")]
    pub faults: Option<std::sync::Arc<crate::FaultInjector>>,
    /// How long every refused read takes at least (SPEC §6: no timing difference an attacker can
    /// measure); [`DEFAULT_NOT_FOUND_FLOOR`] unless the embedder measured its hardware.
    pub not_found_floor: std::time::Duration,
    /// What the sealed memory copies of verified entries, which whole reads hand out by
    /// descriptor, may hold in all (see ARCHITECTURE.md, "Integrity on read");
    /// [`default_shared_read_bytes`] unless set. 0 streams every read.
    pub shared_read_bytes: u64,
}

/// The default budget of the sealed copies: an eighth of the machine's RAM, at most 2 GiB (and
/// 256 MiB when the RAM cannot be measured). Each copy is resident memory of the service while
/// cached, shared by every reader that maps it.
pub fn default_shared_read_bytes() -> u64 {
    const CEILING: u64 = 2 * GIB;
    let info = rustix::system::sysinfo();
    let total: u64 = (info.totalram as u64).saturating_mul(u64::from(info.mem_unit.max(1)));
    if total == 0 { 256 << 20 } else { (total / 8).min(CEILING) }
}

/// Every refused read is held to this long in the service, whatever the reason. It must stay
/// above the slowest refusal decision, which `cargo bench -p cos_storage_service --bench
/// refusal_cost` measures for every class (ARCHITECTURE.md records the figures), and well below
/// an IPC round trip.
pub const DEFAULT_NOT_FOUND_FLOOR: std::time::Duration = std::time::Duration::from_micros(20);

impl ServiceConfig {
    /// Defaults for a profile directory: limits sized from the disk it lives on
    /// ([`StorageLimits::for_disk`]; the nearest existing ancestor is measured when the directory
    /// does not exist yet), or [`StorageLimits::REGULAR_DEFAULT`] when the disk cannot be measured.
    /// Measuring needs `statfs`, which the service's seccomp policy does not allow: make the
    /// configuration before [`lock_down`](crate::sandbox::lock_down).
    pub fn new(profile_dir: impl Into<PathBuf>) -> Self {
        let profile_dir = profile_dir.into();
        let limits = match measure_disk(&profile_dir) {
            Ok(capacity) => StorageLimits::for_disk(capacity),
            Err(error) => {
                tracing::warn!(
                    %error,
                    path = %profile_dir.display(),
                    "cannot measure the profile's disk; using the fixed default storage limits"
                );
                StorageLimits::REGULAR_DEFAULT
            }
        };
        Self {
            profile_dir,
            limits,
            off_the_record_limits: StorageLimits::OFF_THE_RECORD_DEFAULT,
            gates: GateConfig::default(),
            #[cfg(feature = "testing")]
            faults: None,
            not_found_floor: DEFAULT_NOT_FOUND_FLOOR,
            shared_read_bytes: default_shared_read_bytes(),
        }
    }

    /// Holds every refused read to `floor` instead of [`DEFAULT_NOT_FOUND_FLOOR`]. Raise it on
    /// hardware where `refusal_cost` measures slower decisions; never lower it below them.
    pub fn with_not_found_floor(mut self, floor: std::time::Duration) -> Self {
        self.not_found_floor = floor;
        self
    }

    /// Test seam (`testing` feature only): routes every write, sync and rename of the on-disk
    /// store through `injector`.
    #[cfg(feature = "testing")]
    pub fn with_fault_injector(mut self, injector: std::sync::Arc<crate::FaultInjector>) -> Self {
        self.faults = Some(injector);
        self
    }

    /// Uses a Public Hash List for the global grant.
    pub fn with_public_hash_list(mut self, list: PublicHashList) -> Self {
        self.gates.public_hash_list = Some(list);
        self
    }

    /// Replaces the whole gate configuration.
    pub fn with_gates(mut self, gates: GateConfig) -> Self {
        self.gates = gates;
        self
    }

    /// Sets the budget of the sealed copies whole reads hand out by descriptor (0: always stream).
    pub fn with_shared_read_bytes(mut self, bytes: u64) -> Self {
        self.shared_read_bytes = bytes;
        self
    }

    /// Replaces the regular partition's limits.
    pub fn with_limits(mut self, limits: StorageLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// The capacity of the filesystem `path` is (or will be) on: the profile directory may not exist
/// before the store creates it, so the nearest existing ancestor stands in for it.
fn measure_disk(path: &Path) -> io::Result<u64> {
    let existing = path.ancestors().find(|p| !p.as_os_str().is_empty() && p.exists()).unwrap_or(Path::new("."));
    match disk_capacity(existing)? {
        0 => Err(io::Error::other("the filesystem reports a capacity of 0")),
        capacity => Ok(capacity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_disk_follows_the_prototypes() {
        // 100 GiB disk: store 60 GiB, origin 20 GiB, share 12 GiB.
        let limits = StorageLimits::for_disk(100 * GIB);
        assert_eq!(limits.total_bytes, 60 * GIB);
        assert_eq!(limits.per_origin_bytes, 20 * GIB);
        assert_eq!(limits.share_bytes, 12 * GIB);
        // Exact arithmetic on sizes that are not multiples of 100.
        let limits = StorageLimits::for_disk(1001);
        assert_eq!((limits.total_bytes, limits.per_origin_bytes, limits.share_bytes), (600, 200, 120));
    }

    #[test]
    fn for_disk_caps_the_store_at_100_gib() {
        // 1 TiB disk: 60% would be 614.4 GiB; the store stops at 100 GiB, and so does one origin
        // (20% of the disk = 204.8 GiB > the store).
        let limits = StorageLimits::for_disk(1024 * GIB);
        assert_eq!(limits.total_bytes, 100 * GIB);
        assert_eq!(limits.per_origin_bytes, 100 * GIB);
        assert_eq!(limits.share_bytes, 20 * GIB);
        // Just below the ceiling: 60% of 166 GiB = 99.6 GiB is kept as is.
        let limits = StorageLimits::for_disk(166 * GIB);
        assert_eq!(limits.total_bytes, 166 * GIB * 6 / 10);
        assert_eq!(limits.per_origin_bytes, 166 * GIB / 5);
        // No overflow at the extreme.
        let limits = StorageLimits::for_disk(u64::MAX);
        assert_eq!((limits.total_bytes, limits.per_origin_bytes, limits.share_bytes), (100 * GIB, 100 * GIB, 20 * GIB));
        assert_eq!(StorageLimits::for_disk(0), StorageLimits { per_origin_bytes: 0, total_bytes: 0, share_bytes: 0 });
    }

    #[test]
    fn defaults_have_a_share_below_the_store() {
        for limits in [StorageLimits::REGULAR_DEFAULT, StorageLimits::OFF_THE_RECORD_DEFAULT] {
            assert_eq!(limits.share_bytes, limits.total_bytes / 5);
            assert!(limits.per_origin_bytes <= limits.total_bytes);
        }
    }

    #[test]
    fn disk_capacity_measures_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(disk_capacity(dir.path()).unwrap() > 0);
        assert!(disk_capacity(&dir.path().join("missing")).is_err());
        // A profile that does not exist yet is measured on its nearest existing ancestor.
        let config = ServiceConfig::new(dir.path().join("not/yet/created"));
        assert_eq!(config.limits, StorageLimits::for_disk(disk_capacity(dir.path()).unwrap()));
    }
}
