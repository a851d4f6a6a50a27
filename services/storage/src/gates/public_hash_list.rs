//! The Public Hash List (SPEC §6): a text file of SHA-256 digests, one lowercase hex digest a
//! line, with `//` comments and `// ===BEGIN ...===` section markers; held as a sorted array.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use cos_common::ContentHash;

/// A Public Hash List: the SHA-256 digests that may be disclosed cross-site, held as a sorted
/// array (32 bytes a digest, binary search).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PublicHashList {
    digests: Vec<[u8; 32]>,
}

/// Why a Public Hash List could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PublicHashListError {
    /// A line that is neither blank, a `//` comment nor a lowercase digest.
    #[error("line {line} of the Public Hash List is not a lowercase SHA-256 hex digest or a // comment")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// The file could not be read.
    #[error("could not read the Public Hash List: {0}")]
    Io(#[from] std::io::Error),
}

impl PartialEq for PublicHashListError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::BadLine { line: a }, Self::BadLine { line: b }) => a == b,
            _ => false,
        }
    }
}

/// Parses a list fed in pieces (as it arrives over a pipe), without holding its text.
#[derive(Default)]
pub struct PublicHashListBuilder {
    digests: Vec<[u8; 32]>,
    partial: Vec<u8>,
    line: usize,
}

impl PublicHashListBuilder {
    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), PublicHashListError> {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.line_done(&bytes[..newline])?;
            } else {
                self.partial.extend_from_slice(&bytes[..newline]);
                let line = std::mem::take(&mut self.partial);
                self.line_done(&line)?;
            }
            bytes = &bytes[newline + 1..];
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > 4096 {
            // No valid line is this long; do not let a broken file grow the buffer.
            return Err(PublicHashListError::BadLine { line: self.line + 1 });
        }
        Ok(())
    }

    fn line_done(&mut self, raw: &[u8]) -> Result<(), PublicHashListError> {
        self.line += 1;
        let text = std::str::from_utf8(raw).map_err(|_| PublicHashListError::BadLine { line: self.line })?;
        let text = text.trim();
        if text.is_empty() || text.starts_with("//") {
            return Ok(());
        }
        let hash = ContentHash::from_hex(text).ok_or(PublicHashListError::BadLine { line: self.line })?;
        self.digests.push(*hash.as_bytes());
        Ok(())
    }

    /// Ends the input and returns the list.
    pub fn finish(mut self) -> Result<PublicHashList, PublicHashListError> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line_done(&line)?;
        }
        Ok(PublicHashList::from_digests(self.digests))
    }
}

impl PublicHashList {
    /// Parses the list format: one lowercase hex digest a line; blank lines, `//` comments and
    /// `// ===BEGIN ...===` section markers are ignored; surrounding whitespace is trimmed.
    pub fn parse(text: &str) -> Result<Self, PublicHashListError> {
        let mut builder = PublicHashListBuilder::default();
        builder.feed(text.as_bytes())?;
        builder.finish()
    }

    /// Loads a list file, streaming it (the text is never held whole).
    pub fn load(path: &Path) -> Result<Self, PublicHashListError> {
        let file = std::fs::File::open(path)?;
        // One digest line is 65 bytes: reserve once instead of doubling (which would briefly
        // hold 1.5× the list).
        let expected = usize::try_from(file.metadata()?.len() / 65).unwrap_or(0);
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut builder = PublicHashListBuilder { digests: Vec::with_capacity(expected + 16), ..Default::default() };
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                return builder.finish();
            }
            let n = chunk.len();
            builder.feed(chunk)?;
            reader.consume(n);
        }
    }

    /// Loads a list from any reader (used for a list streamed over a pipe).
    pub fn read_from(mut reader: impl Read) -> Result<Self, PublicHashListError> {
        let mut builder = PublicHashListBuilder::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return builder.finish();
            }
            builder.feed(&buf[..n])?;
        }
    }

    /// Memory held by the digests.
    pub fn heap_bytes(&self) -> usize {
        self.digests.capacity() * 32
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
        assert_eq!(PublicHashList::parse(&text), Err(PublicHashListError::BadLine { line: 2 }));
        assert_eq!(PublicHashList::parse("# not a comment"), Err(PublicHashListError::BadLine { line: 1 }));
    }

    #[test]
    fn pieces_split_anywhere_parse_the_same() {
        let text = format!("// header\r\n{A}\r\n{B}");
        for split in 0..text.len() {
            let mut builder = PublicHashListBuilder::default();
            builder.feed(&text.as_bytes()[..split]).unwrap();
            builder.feed(&text.as_bytes()[split..]).unwrap();
            assert_eq!(builder.finish().unwrap().len(), 2, "split at {split}");
        }
        let overlong = "a".repeat(5000);
        assert!(PublicHashListBuilder::default().feed(overlong.as_bytes()).is_err());
    }
}
