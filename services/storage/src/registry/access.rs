//! The access index: what a read decision needs to know about an entry, in rows whose cost to
//! read does not depend on the entry.
//!
//! An [`EntryRecord`] grows with its storing origins, list and provenance; decoding it and
//! computing a site per storer made a refusal for a popular entry measurably slower than a miss
//! (SPEC §6: no timing difference an attacker can measure). The decision reads instead:
//!
//! | table           | key                                   | value                                 |
//! |-----------------|---------------------------------------|---------------------------------------|
//! | `entry_heads`   | 32-byte SHA-256                       | [`EntryHead`]: size, global flag, storing sites (16 bytes) |
//! | `entry_readers` | SHA-256 ‖ `S` ‖ site serialisation    | how many recorded storing origins have that site |
//! | `entry_readers` | SHA-256 ‖ `L` ‖ site serialisation    | how many listed origins have that site (listing grants the site, SPEC §5) |
//! | `entry_readers` | SHA-256 ‖ `O` ‖ origin serialisation  | 1: that origin is a recorded storing origin |
//!
//! Three point lookups, whatever the entry holds (the `O` rows serve writers: whether an identical
//! rewrite will be free, without decoding the record). The rows are derived from the entry's record
//! and written in the same transaction as the record (`RegistryWrite::put_entry` /
//! `remove_entry`), so they can only disagree with it after damage on disk; recovery rebuilds them
//! then (`RegistryWrite::reconcile_index`).

use std::collections::BTreeMap;

use cos_common::{ContentHash, Origin, Site};
use redb::TableDefinition;

use super::EntryRecord;

pub(super) const HEADS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entry_heads");
pub(super) const READERS: TableDefinition<&[u8], u32> = TableDefinition::new("entry_readers");

const HEAD_VERSION: u8 = 1;
const HEAD_BYTES: usize = 16;
const STORING_SITE_TAG: u8 = b'S';
const LISTED_SITE_TAG: u8 = b'L';
const STORING_ORIGIN_TAG: u8 = b'O';

/// The fixed-size part of an entry a read decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHead {
    /// Size of the blob in bytes (GREASE spares large entries).
    pub size: u64,
    /// Whether an `origins: "*"` write made it globally disclosable.
    pub global: bool,
    /// How many distinct sites its recorded storing origins belong to (availability gating).
    pub storing_sites: u32,
}

impl EntryHead {
    /// The head of `record`.
    pub fn of(record: &EntryRecord) -> Self {
        let sites = storing_sites(record).len();
        Self { size: record.size, global: record.global, storing_sites: u32::try_from(sites).unwrap_or(u32::MAX) }
    }

    pub(super) fn encode(&self) -> [u8; HEAD_BYTES] {
        let mut bytes = [0u8; HEAD_BYTES];
        bytes[0] = HEAD_VERSION;
        bytes[1] = u8::from(self.global);
        bytes[4..8].copy_from_slice(&self.storing_sites.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.size.to_le_bytes());
        bytes
    }

    /// `None` for anything but a well-formed current head (damage reads as a missing entry).
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; HEAD_BYTES] = bytes.try_into().ok()?;
        if bytes[0] != HEAD_VERSION || bytes[1] > 1 || bytes[2..4] != [0, 0] {
            return None;
        }
        Some(Self {
            global: bytes[1] == 1,
            storing_sites: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
            size: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        })
    }
}

/// What the index says about one reader and one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryAccess {
    /// The entry's fixed-size part.
    pub head: EntryHead,
    /// The reader is a storing origin, or same-site with a storing or a listed origin: a grant
    /// the privacy gates never apply to (SPEC §5).
    pub ungated: bool,
}

/// The recorded storing origins of `record`, counted per site.
pub(crate) fn storing_sites(record: &EntryRecord) -> BTreeMap<Site, u32> {
    let mut sites = BTreeMap::new();
    for origin in &record.storing_origins {
        *sites.entry(Site::of(origin)).or_insert(0u32) += 1;
    }
    sites
}

/// The key of "a storing origin of `hash` has site `site`".
pub(super) fn storing_site_key(hash: &ContentHash, site: &Site) -> Vec<u8> {
    key(hash, STORING_SITE_TAG, &site.to_string())
}

/// The key of "a list write of `hash` named an origin of site `site`".
pub(super) fn listed_site_key(hash: &ContentHash, site: &Site) -> Vec<u8> {
    key(hash, LISTED_SITE_TAG, &site.to_string())
}

/// The key of "`origin` is a recorded storing origin of `hash`".
pub(super) fn storing_origin_key(hash: &ContentHash, origin: &Origin) -> Vec<u8> {
    key(hash, STORING_ORIGIN_TAG, &origin.to_string())
}

fn key(hash: &ContentHash, tag: u8, text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(33 + text.len());
    key.extend_from_slice(hash.as_bytes());
    key.push(tag);
    key.extend_from_slice(text.as_bytes());
    key
}

/// The bounds of every reader row of `hash`: the hash followed by any tag (both tags lie strictly
/// between 0x00 and 0xff).
pub(super) fn reader_rows(hash: &ContentHash) -> ([u8; 33], [u8; 33]) {
    let mut start = [0u8; 33];
    start[..32].copy_from_slice(hash.as_bytes());
    let mut end = start;
    end[32] = 0xff;
    (start, end)
}

/// Every derived row of one entry: its head and its reader rows.
pub(super) struct DerivedRows {
    pub(super) head: EntryHead,
    pub(super) readers: BTreeMap<Vec<u8>, u32>,
}

impl DerivedRows {
    pub(super) fn of(hash: &ContentHash, record: &EntryRecord) -> Self {
        let mut readers = BTreeMap::new();
        for (site, count) in storing_sites(record) {
            readers.insert(storing_site_key(hash, &site), count);
        }
        for origin in &record.listed_origins {
            *readers.entry(listed_site_key(hash, &Site::of(origin))).or_insert(0) += 1;
        }
        for origin in &record.storing_origins {
            readers.insert(storing_origin_key(hash, origin), 1);
        }
        Self { head: EntryHead::of(record), readers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_damage_reads_as_absent() {
        let head = EntryHead { size: u64::MAX - 3, global: true, storing_sites: 77 };
        assert_eq!(EntryHead::decode(&head.encode()), Some(head));
        let mut damaged = head.encode();
        damaged[1] = 2;
        assert_eq!(EntryHead::decode(&damaged), None);
        assert_eq!(EntryHead::decode(&head.encode()[..15]), None);
        let mut newer = head.encode();
        newer[0] = 2;
        assert_eq!(EntryHead::decode(&newer), None, "a newer head is refused, not misread");
    }

    #[test]
    fn every_reader_row_of_a_hash_lies_within_its_bounds_and_no_other_hash_does() {
        let hash = ContentHash::from_bytes([7; 32]);
        let next = ContentHash::from_bytes([8; 32]);
        let (start, end) = reader_rows(&hash);
        let site = Site::of(&Origin::from_url("https://a.example").unwrap());
        let origin = Origin::from_url("https://\u{00fc}.example:8443").unwrap();
        for key in [storing_site_key(&hash, &site), listed_site_key(&hash, &site), storing_origin_key(&hash, &origin)] {
            assert!(key.as_slice() > start.as_slice() && key.as_slice() < end.as_slice());
        }
        assert!(storing_site_key(&next, &site).as_slice() > end.as_slice());
    }
}
