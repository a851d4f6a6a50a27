//! The registry's stored values: versioned serde records encoded with postcard.
//!
//! Each table's value is an enum whose variant is the record version (postcard writes the variant
//! index first), so a newer build can read every older version and an older build refuses a
//! newer one instead of misreading it. Add `V2` beside `V1`; never change `V1`.

use std::collections::BTreeSet;

use cos_common::Origin;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// How many provenance records an entry keeps (the first writers; enough for inspection views).
pub const MAX_PROVENANCE_RECORDS: usize = 16;

/// One entry of the store: a verified blob and who may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Size of the blob in bytes.
    pub size: u64,
    /// Every origin that completed a verified write of these bytes (charged `size` each).
    pub storing_origins: BTreeSet<Origin>,
    /// Origins granted read access by a list write; grows only, capped at 100.
    pub listed_origins: Vec<Origin>,
    /// Set by an `origins: "*"` write; never cleared.
    pub global: bool,
    /// When the first verified write committed (Unix milliseconds).
    pub created_ms: u64,
    /// When the blob was last opened for reading (Unix milliseconds; batched, may lag).
    pub last_read_ms: u64,
    /// How many times the blob was opened for reading (batched, may lag).
    pub read_count: u64,
    /// Who stored it from where; private to the browser, never shown to script.
    pub provenance: Vec<Provenance>,
}

/// One verified write's origin, document and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The writing origin.
    pub origin: Origin,
    /// The writing document's URL, when the broker supplied it.
    pub document_url: Option<String>,
    /// When the write committed (Unix milliseconds).
    pub time_ms: u64,
}

/// Per-origin accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginRecord {
    /// Sum of the sizes of the entries this origin stores.
    pub charged_bytes: u64,
    /// Number of entries this origin stores.
    pub entries: u64,
}

/// The hashes one top-level site has probed through the global path since its last user
/// activation (SPEC §6 probe budget).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// Distinct digests charged, in the order they were first probed.
    pub probed: Vec<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
enum VersionedBudget {
    V1(BudgetRecord),
}

impl BudgetRecord {
    /// Encodes the current version.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(&VersionedBudget::V1(self.clone())).expect("budget records always serialise")
    }

    /// Decodes any known version.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match postcard::from_bytes(bytes).map_err(|e| corrupt("budgets", e))? {
            VersionedBudget::V1(record) => Ok(record),
        }
    }
}

#[derive(Serialize, Deserialize)]
enum VersionedEntry {
    V1(EntryRecord),
}

#[derive(Serialize, Deserialize)]
enum VersionedOrigin {
    V1(OriginRecord),
}

fn corrupt(table: &'static str, error: postcard::Error) -> StoreError {
    StoreError::CorruptRecord { table, reason: error.to_string() }
}

impl EntryRecord {
    /// Encodes the current version.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(&VersionedEntry::V1(self.clone())).expect("entry records always serialise")
    }

    /// Decodes any known version.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match postcard::from_bytes(bytes).map_err(|e| corrupt("entries", e))? {
            VersionedEntry::V1(record) => Ok(record),
        }
    }
}

impl OriginRecord {
    /// Encodes the current version.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(&VersionedOrigin::V1(*self)).expect("origin records always serialise")
    }

    /// Decodes any known version.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match postcard::from_bytes(bytes).map_err(|e| corrupt("origins", e))? {
            VersionedOrigin::V1(record) => Ok(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_version_tag() {
        let origin: Origin = "https://a.example".parse().unwrap();
        let record = EntryRecord {
            size: 7,
            storing_origins: [origin.clone()].into(),
            listed_origins: vec!["https://b.example".parse().unwrap()],
            global: true,
            created_ms: 1,
            last_read_ms: 2,
            read_count: 3,
            provenance: vec![Provenance { origin, document_url: Some("https://a.example/app".into()), time_ms: 1 }],
        };
        let bytes = record.encode();
        assert_eq!(bytes[0], 0, "V1 is variant 0");
        assert_eq!(EntryRecord::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn unknown_versions_and_garbage_are_corrupt_not_panics() {
        assert!(matches!(EntryRecord::decode(&[1, 2, 3]), Err(StoreError::CorruptRecord { .. })));
        assert!(matches!(EntryRecord::decode(&[]), Err(StoreError::CorruptRecord { .. })));
        assert!(matches!(OriginRecord::decode(&[9]), Err(StoreError::CorruptRecord { .. })));
        let good = OriginRecord { charged_bytes: 5, entries: 1 }.encode();
        assert_eq!(OriginRecord::decode(&good).unwrap().charged_bytes, 5);
    }
}
