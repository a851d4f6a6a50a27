//! Synthetic stores for benchmarks: a profile filled with many small entries at once, written
//! straight into the on-disk layout (one registry transaction per batch instead of one verified,
//! durable write each), so that start-up can be measured against a large registry without
//! spending minutes on fsyncs first.

use std::collections::BTreeSet;
use std::path::Path;

use cos_common::{ContentHash, Origin};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::faults::Faults;
use crate::registry::{EntryRecord, OriginRecord, Provenance, Registry};

/// Entries written per registry transaction.
const BATCH: u64 = 10_000;

/// What [`populate`] added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Populated {
    /// Entries added (each a blob file and a registry row).
    pub entries: u64,
    /// Bytes of blob content added.
    pub bytes: u64,
}

/// The content of synthetic entry `index`: small, distinct, and recognisable in a hex dump.
pub fn synthetic_content(index: u64) -> Vec<u8> {
    let mut content = b"cos synthetic entry ".to_vec();
    content.extend_from_slice(&index.to_le_bytes());
    content
}

/// Digest `index` of a synthetic Public Hash List: the SHA-256 of `index` as 4 little-endian bytes.
pub fn synthetic_list_digest(index: u32) -> ContentHash {
    ContentHash::from_bytes(Sha256::digest(index.to_le_bytes()).into())
}

/// Writes a Public Hash List of `digests` synthetic digests ([`synthetic_list_digest`]`(0..digests)`)
/// to `path`, in the list's text format.
pub fn write_public_hash_list(path: &Path, digests: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "// Public Hash List (synthetic, {digests} digests)\n// ===BEGIN SHA-256===")?;
    for i in 0..digests {
        writeln!(out, "{}", synthetic_list_digest(i))?;
    }
    writeln!(out, "// ===END SHA-256===")?;
    out.flush()
}

/// Adds `count` entries (contents [`synthetic_content`]`(0..count)`, stored by `origin` with
/// `origins: "*"`) to the store of `profile_dir`, which no service may have open. Every entry is
/// whole: its blob re-hashes to its name and its row charges `origin`, so the service opens the
/// profile as if the entries had been stored through it. `progress` sees the entries done so far.
pub fn populate(
    profile_dir: &Path,
    count: u64,
    origin: &Origin,
    mut progress: impl FnMut(u64),
) -> Result<Populated, StoreError> {
    let root = profile_dir.join("cos");
    let blobs = root.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| StoreError::io("create store directory", &blobs, e))?;
    let registry = Registry::open_file(&root.join("registry.redb"), Faults::none())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let mut added = Populated { entries: 0, bytes: 0 };
    let mut start = 0;
    while start < count {
        let end = (start + BATCH).min(count);
        let txn = registry.write()?;
        let mut account = txn.origin(origin)?;
        let mut total = txn.total_bytes()?;
        for index in start..end {
            let content = synthetic_content(index);
            let hash = ContentHash::from_bytes(Sha256::digest(&content).into());
            if txn.entry(&hash)?.is_some() {
                continue;
            }
            let dir = blobs.join(hash.shard());
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create blob directory", &dir, e))?;
            let path = dir.join(hash.to_hex());
            std::fs::write(&path, &content).map_err(|e| StoreError::io("write blob", &path, e))?;
            let size = content.len() as u64;
            let record = EntryRecord {
                size,
                storing_origins: BTreeSet::from([origin.clone()]),
                listed_origins: Vec::new(),
                global: true,
                created_ms: now,
                last_read_ms: 0,
                read_count: 0,
                provenance: vec![Provenance { origin: origin.clone(), document_url: None, time_ms: now }],
            };
            txn.put_entry(&hash, &record)?;
            account = OriginRecord { charged_bytes: account.charged_bytes + size, entries: account.entries + 1 };
            total += size;
            added.entries += 1;
            added.bytes += size;
        }
        txn.put_origin(origin, &account)?;
        txn.set_total_bytes(total)?;
        txn.commit()?;
        start = end;
        progress(start);
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceConfig, StorageService};

    #[test]
    fn a_populated_store_opens_with_every_entry_whole() {
        let profile = tempfile::tempdir().unwrap();
        let origin = Origin::from_url("https://fixtures.example").unwrap();
        let mut seen = Vec::new();
        let added = populate(profile.path(), 25, &origin, |done| seen.push(done)).unwrap();
        assert_eq!(added.entries, 25);
        assert_eq!(seen, [25]);
        let (service, report) = StorageService::open(ServiceConfig::new(profile.path())).unwrap();
        let clean = crate::RecoveryReport { entries: 25, ..Default::default() };
        assert_eq!(report, clean, "recovery found nothing to repair");
        let scrub = service.scrub(cos_common::Partition::Regular, |_, _| {}).unwrap();
        assert_eq!((scrub.entries_checked, scrub.corrupt_removed, scrub.missing_removed), (25, 0, 0));
        drop(service);
        // Populating again adds nothing twice.
        assert_eq!(populate(profile.path(), 30, &origin, |_| {}).unwrap().entries, 5);
    }

    #[test]
    fn a_synthetic_public_hash_list_loads_with_every_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        write_public_hash_list(&path, 100).unwrap();
        let list = crate::PublicHashList::load(&path).unwrap();
        assert_eq!(list.len(), 100);
        assert!(list.contains(&synthetic_list_digest(99)) && !list.contains(&synthetic_list_digest(100)));
    }
}
