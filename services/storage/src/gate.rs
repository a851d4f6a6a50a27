//! The decision that guards the global grant. Storing, same-site and listed readers never reach
//! it; a reader that qualifies only through `origins: "*"` is disclosed the entry only if the
//! gate agrees (SPEC §6). The privacy gates (availability, GREASE, probe budget) plug in here.

use std::fmt;

use cos_common::{CallerContext, ContentHash};

use crate::registry::EntryRecord;

/// Decides whether an entry may be disclosed through its global grant.
pub trait GlobalDisclosureGate: Send + Sync + fmt::Debug {
    /// Whether `caller` may see `entry` (named `hash`) through the global grant.
    fn allows(&self, hash: &ContentHash, entry: &EntryRecord, caller: &CallerContext) -> bool;
}

/// No global disclosure at all: SPEC §6's behaviour when no Public Hash List is loaded.
#[derive(Debug, Default, Clone, Copy)]
pub struct FailClosed;

impl GlobalDisclosureGate for FailClosed {
    fn allows(&self, _: &ContentHash, _: &EntryRecord, _: &CallerContext) -> bool {
        false
    }
}

/// A Public Hash List: the SHA-256 digests that may be disclosed cross-site, held as a sorted
/// array (32 bytes a digest, binary search).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PublicHashList {
    digests: Vec<[u8; 32]>,
}

/// A line of a Public Hash List that is neither blank, a `//` comment nor a lowercase digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the Public Hash List is not a lowercase SHA-256 hex digest or a // comment")]
pub struct PublicHashListError {
    /// 1-based line number.
    pub line: usize,
}

impl PublicHashList {
    /// Parses the list format: one lowercase hex digest a line; blank lines, `//` comments and
    /// `// ===BEGIN ...===` section markers are ignored; surrounding whitespace is trimmed.
    pub fn parse(text: &str) -> Result<Self, PublicHashListError> {
        let mut digests = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            let hash = ContentHash::from_hex(line).ok_or(PublicHashListError { line: index + 1 })?;
            digests.push(*hash.as_bytes());
        }
        Ok(Self::from_digests(digests))
    }

    /// A list of exactly these hashes.
    pub fn from_hashes(hashes: impl IntoIterator<Item = ContentHash>) -> Self {
        Self::from_digests(hashes.into_iter().map(|h| *h.as_bytes()).collect())
    }

    fn from_digests(mut digests: Vec<[u8; 32]>) -> Self {
        digests.sort_unstable();
        digests.dedup();
        digests.shrink_to_fit();
        Self { digests }
    }

    /// Whether `hash` is on the list.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.digests.binary_search(hash.as_bytes()).is_ok()
    }

    /// Number of distinct digests.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

impl fmt::Debug for PublicHashList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicHashList({} digests)", self.digests.len())
    }
}

impl GlobalDisclosureGate for PublicHashList {
    fn allows(&self, hash: &ContentHash, _: &EntryRecord, _: &CallerContext) -> bool {
        self.contains(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const B: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn parses_sections_comments_and_blank_lines() {
        let text = format!("// Public Hash List\n// ===BEGIN SHA-256===\n{A}\n\n  {B}  \n{A}\n// ===END SHA-256===\n");
        let list = PublicHashList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&A.parse().unwrap()));
        assert!(list.contains(&B.parse().unwrap()));
        assert!(!list.contains(&ContentHash::from_bytes([7; 32])));
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let text = format!("{A}\n{}\n", A.to_uppercase());
        assert_eq!(PublicHashList::parse(&text), Err(PublicHashListError { line: 2 }));
        assert_eq!(PublicHashList::parse("# not a comment"), Err(PublicHashListError { line: 1 }));
    }
}
