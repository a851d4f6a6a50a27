//! The privacy gates of the global grant (SPEC §6). Storing, same-site and listed readers never
//! reach them; a reader that qualifies only through `origins: "*"` is disclosed an entry only if
//! the hash is on the Public Hash List (or, with availability gating, enough distinct sites stored
//! it), GREASE does not strike, and its top-level site is within its probe budget.
//!
//! Every read runs every check, whatever the outcome, so that a miss, a scope denial, a gate
//! and an exhausted budget take the same path to the same `NotFoundError`.

mod probe_budget;
mod public_hash_list;

use std::sync::Arc;

use cos_common::ContentHash;
use cos_common::interface::PublicHashListCounts;
use parking_lot::RwLock;

pub(crate) use probe_budget::ProbeBudgets;
pub use public_hash_list::{PublicHashList, PublicHashListBuilder, PublicHashListError};

use crate::registry::EntryHead;

/// Entries smaller than this may be GREASE'd (SPEC §6: "under 500 KiB").
pub const GREASE_MAX_SIZE: u64 = 500 * 1024;
/// GREASE strikes one global-grant read in this many.
pub const GREASE_ONE_IN: u32 = 100;
/// Default number of distinct hashes a top-level site may probe through the global path.
pub const DEFAULT_PROBE_BUDGET: u32 = 16;

/// Where GREASE decisions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GreaseMode {
    /// Production: 1% of eligible reads, drawn from the operating system's CSPRNG.
    #[default]
    Random,
    /// Test seam (`testing` feature only): strike every eligible read (`true`) or none
    /// (`false`), so that tests are deterministic.
    #[cfg(feature = "testing")]
    ForTests(bool),
}

impl GreaseMode {
    /// The mode a service process's configuration asks for: `Random` unless it fixes the outcome
    /// (`Some`). Only a build with the `testing` feature honours a fixed outcome; a product
    /// service always draws, whatever the browser sent.
    pub fn from_process_config(fixed: Option<bool>) -> Self {
        match fixed {
            #[cfg(feature = "testing")]
            Some(strike) => Self::ForTests(strike),
            #[cfg(not(feature = "testing"))]
            Some(_) => {
                tracing::warn!("ignoring a fixed GREASE outcome: this build has no test seams");
                Self::Random
            }
            None => Self::Random,
        }
    }
}

/// How the gates are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// The Public Hash List; `None`: fail closed (unless availability gating is on).
    pub public_hash_list: Option<PublicHashList>,
    /// Availability gating (off by default): disclose a global entry that is not on the list once
    /// at least this many distinct sites completed verified writes of it.
    pub availability_threshold: Option<u32>,
    /// GREASE source.
    pub grease: GreaseMode,
    /// Distinct hashes each top-level site may probe through the global path before user activation.
    pub probe_budget: u32,
    /// Whether a Public Hash List loaded or reloaded by the service uses its `HUGGING-FACE`
    /// section (default: yes; SPEC §6).
    pub hugging_face_section: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            public_hash_list: None,
            availability_threshold: None,
            grease: GreaseMode::Random,
            probe_budget: DEFAULT_PROBE_BUDGET,
            hugging_face_section: true,
        }
    }
}

/// The live gates of a running service (the list can be swapped while it runs).
pub(crate) struct PrivacyGates {
    public_hash_list: RwLock<Option<Arc<PublicHashList>>>,
    /// When the list in use was loaded (Unix milliseconds; 0 without a list).
    public_hash_list_loaded_ms: std::sync::atomic::AtomicU64,
    availability_threshold: Option<u32>,
    grease: GreaseMode,
}

impl PrivacyGates {
    pub(crate) fn new(config: &GateConfig) -> Self {
        Self {
            public_hash_list: RwLock::new(config.public_hash_list.clone().map(Arc::new)),
            public_hash_list_loaded_ms: std::sync::atomic::AtomicU64::new(if config.public_hash_list.is_some() {
                crate::partition::now_ms()
            } else {
                0
            }),
            availability_threshold: config.availability_threshold,
            grease: config.grease,
        }
    }

    /// Replaces the Public Hash List (`None`: no list, fail closed).
    pub(crate) fn set_public_hash_list(&self, list: Option<PublicHashList>) {
        let loaded_ms = if list.is_some() { crate::partition::now_ms() } else { 0 };
        *self.public_hash_list.write() = list.map(Arc::new);
        self.public_hash_list_loaded_ms.store(loaded_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the list in use holds, and when it was loaded (Unix milliseconds).
    pub(crate) fn public_hash_list_status(&self) -> (Option<PublicHashListCounts>, u64) {
        let counts = self.public_hash_list.read().as_ref().map(|list| list.counts().clone());
        (counts, self.public_hash_list_loaded_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether `hash` is on the current Public Hash List.
    pub(crate) fn is_on_public_hash_list(&self, hash: &ContentHash) -> bool {
        self.public_hash_list.read().as_ref().is_some_and(|list| list.contains(hash))
    }

    /// The global grant's verdict for an entry (or for a miss, so that both cost the same).
    /// Always consults the list, the availability count and the GREASE source.
    pub(crate) fn global_allows(&self, hash: &ContentHash, entry: Option<&EntryHead>) -> bool {
        let on_list = self.is_on_public_hash_list(hash);
        let available = match (self.availability_threshold, entry) {
            (Some(threshold), Some(entry)) => entry.storing_sites >= threshold,
            _ => false,
        };
        let strike = self.grease_strikes();
        let small = entry.is_some_and(|entry| entry.size < GREASE_MAX_SIZE);
        entry.is_some() && (on_list || available) && !(small && strike)
    }

    fn grease_strikes(&self) -> bool {
        match self.grease {
            #[cfg(feature = "testing")]
            GreaseMode::ForTests(strike) => strike,
            GreaseMode::Random => {
                let mut bytes = [0u8; 4];
                // The getrandom syscall (flags 0): the one source the seccomp policy allows.
                if let Err(error) = getrandom::fill(&mut bytes) {
                    // No randomness: err on the side of privacy for this read.
                    tracing::warn!(%error, "getrandom failed; treating the read as GREASE'd");
                    return true;
                }
                u32::from_le_bytes(bytes) % GREASE_ONE_IN == 0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cos_common::Origin;

    fn entry(size: u64, storers: &[&str]) -> EntryHead {
        EntryHead::of(&crate::registry::EntryRecord {
            size,
            storing_origins: storers.iter().map(|s| Origin::from_url(s).unwrap()).collect(),
            listed_origins: vec![],
            global: true,
            created_ms: 0,
            last_read_ms: 0,
            read_count: 0,
            provenance: vec![],
        })
    }

    fn gates(list: Option<&[ContentHash]>, threshold: Option<u32>, grease: GreaseMode) -> PrivacyGates {
        PrivacyGates::new(&GateConfig {
            public_hash_list: list.map(|l| PublicHashList::from_hashes(l.iter().copied())),
            availability_threshold: threshold,
            grease,
            probe_budget: DEFAULT_PROBE_BUDGET,
            hugging_face_section: true,
        })
    }

    const ON: ContentHash = ContentHash::from_bytes([1; 32]);
    const OFF: ContentHash = ContentHash::from_bytes([2; 32]);

    #[test]
    fn the_list_decides_and_no_list_fails_closed() {
        let big = entry(GREASE_MAX_SIZE, &["https://a.example"]);
        let with_list = gates(Some(&[ON]), None, GreaseMode::ForTests(false));
        assert!(with_list.global_allows(&ON, Some(&big)));
        assert!(!with_list.global_allows(&OFF, Some(&big)));
        assert!(!with_list.global_allows(&ON, None), "a miss is never allowed");
        assert!(!gates(None, None, GreaseMode::ForTests(false)).global_allows(&ON, Some(&big)));
        with_list.set_public_hash_list(None);
        assert!(!with_list.global_allows(&ON, Some(&big)), "unloading the list fails closed");
    }

    #[test]
    fn availability_counts_distinct_sites() {
        let g = gates(None, Some(2), GreaseMode::ForTests(false));
        let one_site = entry(1 << 20, &["https://a.example", "https://www.a.example"]);
        let two_sites = entry(1 << 20, &["https://a.example", "https://b.example"]);
        assert!(!g.global_allows(&OFF, Some(&one_site)), "two origins of one site are one site");
        assert!(g.global_allows(&OFF, Some(&two_sites)));
    }

    #[test]
    fn grease_strikes_only_small_entries() {
        let g = gates(Some(&[ON]), None, GreaseMode::ForTests(true));
        assert!(!g.global_allows(&ON, Some(&entry(GREASE_MAX_SIZE - 1, &["https://a.example"]))));
        assert!(g.global_allows(&ON, Some(&entry(GREASE_MAX_SIZE, &["https://a.example"]))));
    }

    #[test]
    fn random_grease_is_about_one_percent() {
        let g = gates(Some(&[ON]), None, GreaseMode::Random);
        let small = entry(10, &["https://a.example"]);
        let denied = (0..20_000).filter(|_| !g.global_allows(&ON, Some(&small))).count();
        // Expected 200; the bounds are ±8 standard deviations, so this fails only if it is broken.
        assert!((90..=310).contains(&denied), "{denied} of 20000");
    }
}
