//! The Public Hash List (SPEC §6): the proposal's `public-hash-list.dat`, a text file in the
//! style of the Public Suffix List, held as a sorted array of 32-byte digests.
//!
//! ```text
//! // Public Hash List (PHL)
//! // VERSION: 2026-09-14T09:25:20Z
//! // COMMIT: d5092c6
//! // ===BEGIN SHA-256===
//! // provenance comments ...
//! 0925e8ad7bd971391a8b1e98be8e87a6971919eb5b60c196485941c3c1df089a
//! // ===END SHA-256===
//! // ===BEGIN SHA-256 HUGGING-FACE===
//! ...
//! // ===END SHA-256 HUGGING-FACE===
//! // ===BEGIN SHA-256 MANUAL===
//! ...
//! // ===END SHA-256 MANUAL===
//! ```
//!
//! Significant lines are bare lowercase SHA-256 digests; every other line is blank or a `//`
//! comment. The core (`SHA-256`) and `MANUAL` sections are always used; the `HUGGING-FACE`
//! section is used unless the service is configured to omit it (the proposal: SHOULD be used,
//! MAY be omitted). The project's earlier, simpler files are a subset: digests before any
//! marker, or in a section the file never closes, count as core. **Decision**: the order of
//! digests is not checked (the list is sorted at load) and a digest may appear in several
//! sections; a marker naming another section, a section opened twice or inside another, and an
//! `END` that closes nothing reject the file, naming the line.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use cos_common::ContentHash;
use cos_common::interface::PublicHashListCounts;

/// A Public Hash List: the SHA-256 digests that may be disclosed cross-site, held as a sorted
/// array (32 bytes a digest, binary search).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PublicHashList {
    digests: Vec<[u8; 32]>,
    counts: PublicHashListCounts,
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
    /// A `// ===BEGIN …===` or `// ===END …===` marker that names no known section, opens a
    /// section twice or inside another, or closes one that is not open.
    #[error("line {line} of the Public Hash List is a section marker out of place or of an unknown section")]
    BadSection {
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
            (Self::BadSection { line: a }, Self::BadSection { line: b }) => a == b,
            _ => false,
        }
    }
}

/// The sections of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// `SHA-256`: popularity-corroborated resources, always used.
    Core,
    /// `SHA-256 HUGGING-FACE`: model-hub resources, used unless configured off.
    HuggingFace,
    /// `SHA-256 MANUAL`: reviewed additions, always used.
    Manual,
}

impl Section {
    const ALL: [Section; 3] = [Section::Core, Section::HuggingFace, Section::Manual];

    fn marker_name(self) -> &'static str {
        match self {
            Self::Core => "SHA-256",
            Self::HuggingFace => "SHA-256 HUGGING-FACE",
            Self::Manual => "SHA-256 MANUAL",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Longest `VERSION` / `COMMIT` value kept for the load report.
const MAX_HEADER_VALUE: usize = 128;

/// Parses a list fed in pieces (as it arrives over a pipe), without holding its text.
pub struct PublicHashListBuilder {
    digests: Vec<[u8; 32]>,
    partial: Vec<u8>,
    line: usize,
    hugging_face: bool,
    /// The section open now (`None`: before the first marker, or between sections).
    open: Option<Section>,
    /// Sections already opened once.
    seen: [bool; 3],
    counts: PublicHashListCounts,
}

impl Default for PublicHashListBuilder {
    fn default() -> Self {
        Self::new(true)
    }
}

impl PublicHashListBuilder {
    /// A parser that uses the `HUGGING-FACE` section or leaves it out (its digests are still
    /// checked and counted).
    pub fn new(hugging_face: bool) -> Self {
        Self {
            digests: Vec::new(),
            partial: Vec::new(),
            line: 0,
            hugging_face,
            open: None,
            seen: [false; 3],
            counts: PublicHashListCounts { hugging_face_used: hugging_face, ..PublicHashListCounts::default() },
        }
    }

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
        if text.is_empty() {
            return Ok(());
        }
        if let Some(comment) = text.strip_prefix("//") {
            return self.comment(comment.trim());
        }
        let hash = ContentHash::from_hex(text).ok_or(PublicHashListError::BadLine { line: self.line })?;
        let section = self.open.unwrap_or(Section::Core);
        let counted = match section {
            Section::Core => &mut self.counts.core,
            Section::HuggingFace => &mut self.counts.hugging_face,
            Section::Manual => &mut self.counts.manual,
        };
        *counted += 1;
        if section != Section::HuggingFace || self.hugging_face {
            self.digests.push(*hash.as_bytes());
        }
        Ok(())
    }

    /// A `//` line: a section marker, a header field, or provenance (ignored).
    fn comment(&mut self, comment: &str) -> Result<(), PublicHashListError> {
        let line = self.line;
        let bad = || PublicHashListError::BadSection { line };
        if let Some(marker) = comment.strip_prefix("===") {
            let marker = marker.strip_suffix("===").ok_or_else(bad)?;
            let (begin, name) = if let Some(name) = marker.strip_prefix("BEGIN ") {
                (true, name)
            } else if let Some(name) = marker.strip_prefix("END ") {
                (false, name)
            } else {
                return Err(bad());
            };
            let section = Section::ALL.into_iter().find(|s| s.marker_name() == name).ok_or_else(bad)?;
            match (begin, self.open) {
                (true, None) if !self.seen[section.index()] => {
                    self.seen[section.index()] = true;
                    self.open = Some(section);
                }
                (false, Some(open)) if open == section => self.open = None,
                _ => return Err(bad()),
            }
            return Ok(());
        }
        // Header fields come before the first section; later ones are provenance.
        if !self.seen.contains(&true) {
            let keep = |value: &str| value.trim().chars().take(MAX_HEADER_VALUE).collect::<String>();
            if let Some(version) = comment.strip_prefix("VERSION:") {
                self.counts.version.get_or_insert_with(|| keep(version));
            } else if let Some(commit) = comment.strip_prefix("COMMIT:") {
                self.counts.commit.get_or_insert_with(|| keep(commit));
            }
        }
        Ok(())
    }

    /// Ends the input and returns the list. A section still open at the end is closed (the
    /// project's earlier files never close theirs).
    pub fn finish(mut self) -> Result<PublicHashList, PublicHashListError> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line_done(&line)?;
        }
        let mut list = PublicHashList::from_digests(self.digests);
        self.counts.distinct = list.digests.len() as u64;
        list.counts = self.counts;
        Ok(list)
    }
}

impl PublicHashList {
    /// Parses the list format (see the module), every section used.
    pub fn parse(text: &str) -> Result<Self, PublicHashListError> {
        Self::parse_with(text, true)
    }

    /// Parses the list format, using the `HUGGING-FACE` section only if `hugging_face`.
    pub fn parse_with(text: &str, hugging_face: bool) -> Result<Self, PublicHashListError> {
        let mut builder = PublicHashListBuilder::new(hugging_face);
        builder.feed(text.as_bytes())?;
        builder.finish()
    }

    /// Loads a list file, streaming it (the text is never held whole), every section used.
    pub fn load(path: &Path) -> Result<Self, PublicHashListError> {
        Self::load_with(path, true)
    }

    /// Loads a list file, using the `HUGGING-FACE` section only if `hugging_face`.
    pub fn load_with(path: &Path, hugging_face: bool) -> Result<Self, PublicHashListError> {
        let file = std::fs::File::open(path)?;
        // One digest line is 65 bytes: reserve once instead of doubling (which would briefly
        // hold 1.5× the list).
        let expected = usize::try_from(file.metadata()?.len() / 65).unwrap_or(0);
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut builder = PublicHashListBuilder::new(hugging_face);
        builder.digests.reserve_exact(expected + 16);
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
        let counts = PublicHashListCounts { distinct: digests.len() as u64, ..PublicHashListCounts::default() };
        Self { digests, counts }
    }

    /// What the file held, per section (the load report; a list built from hashes reports only
    /// its distinct count).
    pub fn counts(&self) -> &PublicHashListCounts {
        &self.counts
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

    const C: &str = "2e43196f0b263f8ad3a912056cc166a1a44d49baabca1e17b21034bd6202345f";
    const D: &str = "8e7b8aa80d35fc7bc6fc3653280b6185fc84989eb968effeb14a6195d101911b";

    /// A file in the proposal's format: header, core, Hugging Face and manual sections.
    fn three_sections() -> String {
        format!(
            "// Public Hash List (PHL)\n// Generated by public-hash-list\n//\n// VERSION: 2026-09-14T09:25:20Z\n\
             // COMMIT: d5092c6\n// Algorithm: SHA-256 (lowercase hex, 64 chars)\n//\n\
             // ===BEGIN SHA-256===\n// Ubiquitous, corroborated resources.\n//\n// e.g. https://code.jquery.com/x.js\n\
             {A}\n{B}\n// ===END SHA-256===\n//\n// ===BEGIN SHA-256 HUGGING-FACE===\n// VERSION: not a header\n\
             {C}\n{A}\n// ===END SHA-256 HUGGING-FACE===\n//\n// ===BEGIN SHA-256 MANUAL===\n{D}\n\
             // ===END SHA-256 MANUAL===\n"
        )
    }

    fn has(list: &PublicHashList, hex: &str) -> bool {
        list.contains(&hex.parse().unwrap())
    }

    #[test]
    fn every_section_is_used_and_counted() {
        let list = PublicHashList::parse(&three_sections()).unwrap();
        assert!(has(&list, A) && has(&list, B) && has(&list, C) && has(&list, D));
        let counts = list.counts();
        assert_eq!((counts.core, counts.hugging_face, counts.manual, counts.distinct), (2, 2, 1, 4));
        assert!(counts.hugging_face_used);
        assert_eq!(counts.version.as_deref(), Some("2026-09-14T09:25:20Z"));
        assert_eq!(counts.commit.as_deref(), Some("d5092c6"));
    }

    #[test]
    fn the_hugging_face_section_may_be_left_out() {
        let list = PublicHashList::parse_with(&three_sections(), false).unwrap();
        assert!(!has(&list, C), "only the Hugging Face section names it");
        assert!(has(&list, A), "also in the core section");
        assert!(has(&list, B) && has(&list, D), "core and manual are always used");
        let counts = list.counts();
        assert_eq!((counts.core, counts.hugging_face, counts.manual, counts.distinct), (2, 2, 1, 3));
        assert!(!counts.hugging_face_used);
    }

    #[test]
    fn order_and_duplicates_across_sections_do_not_matter() {
        let text = format!(
            "// ===BEGIN SHA-256===\n{D}\n{A}\n{D}\n// ===END SHA-256===\n\
             // ===BEGIN SHA-256 MANUAL===\n{A}\n// ===END SHA-256 MANUAL===\n"
        );
        let list = PublicHashList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list.counts().core, list.counts().manual, list.counts().distinct), (3, 1, 2));
        assert!(list.digests.windows(2).all(|pair| pair[0] < pair[1]), "held sorted, 32 bytes each");
    }

    #[test]
    fn the_earlier_simpler_files_still_load() {
        for text in [format!("{A}\n{B}\n"), format!("// list\n// ===BEGIN SHA-256===\n{A}\n{B}\n")] {
            let list = PublicHashList::parse(&text).unwrap();
            assert_eq!((list.len(), list.counts().core), (2, 2), "{text:?}");
        }
    }

    #[test]
    fn misplaced_or_unknown_markers_reject_the_file_naming_the_line() {
        let bad = |text: String, line: usize| {
            assert_eq!(PublicHashList::parse(&text), Err(PublicHashListError::BadSection { line }), "{text:?}");
        };
        bad(format!("{A}\n// ===BEGIN SHA-512===\n"), 2);
        bad(format!("// ===BEGIN SHA-256===\n{A}\n// ===BEGIN SHA-256 MANUAL===\n"), 3);
        bad(format!("// ===END SHA-256===\n{A}\n"), 1);
        bad("// ===BEGIN SHA-256===\n// ===END SHA-256 MANUAL===\n".into(), 2);
        bad("// ===BEGIN SHA-256===\n// ===END SHA-256===\n// ===BEGIN SHA-256===\n".into(), 3);
        bad("// ===BEGIN SHA-256\n".into(), 1);
        bad("// ===SHA-256===\n".into(), 1);
        let err = PublicHashList::parse("// ===BEGIN SHA-1===\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
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
