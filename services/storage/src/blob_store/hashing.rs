//! Incremental verification that stays correct under seeks, overwrites and truncates.

use sha2::{Digest, Sha256};

/// Hashes the prefix of the file that has been written strictly in order, so the common case
/// (sequential appends) never reads anything back; whatever the prefix does not cover is read
/// back at close.
///
/// Invariant: `hasher` holds the SHA-256 state of bytes `[0, hashed_len)` of the file, and those
/// bytes have not changed since they were hashed. A write or truncate that touches that range
/// resets the state to the empty prefix.
pub(crate) struct PrefixHasher {
    hasher: Sha256,
    hashed_len: u64,
}

impl PrefixHasher {
    pub(crate) fn new() -> Self {
        Self { hasher: Sha256::new(), hashed_len: 0 }
    }

    /// Continues from the state of bytes `[0, len)` hashed elsewhere (a shared file's group).
    pub(crate) fn resume(hasher: Sha256, len: u64) -> Self {
        Self { hasher, hashed_len: len }
    }

    /// Length of the prefix already hashed.
    pub(crate) fn hashed_len(&self) -> u64 {
        self.hashed_len
    }

    /// Notes that `data` is being written at `position`.
    pub(crate) fn observe_write(&mut self, position: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if position == self.hashed_len {
            self.hasher.update(data);
            self.hashed_len += data.len() as u64;
        } else if position < self.hashed_len {
            self.reset();
        }
        // A write past the prefix leaves the prefix intact; the gap is hashed at close.
    }

    /// Notes that the file is being resized to `len`.
    pub(crate) fn observe_truncate(&mut self, len: u64) {
        if len < self.hashed_len {
            self.reset();
        }
    }

    /// Feeds bytes read back from the file, starting exactly at `hashed_len`.
    pub(crate) fn feed_tail(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.hashed_len += data.len() as u64;
    }

    /// The digest of the whole file; the caller must have fed everything up to its size.
    pub(crate) fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays ops on a plain buffer and checks that prefix + tail always hashes the buffer.
    fn check(ops: &[(&str, u64, &[u8])]) {
        let mut file: Vec<u8> = Vec::new();
        let mut prefix = PrefixHasher::new();
        for &(op, position, data) in ops {
            match op {
                "w" => {
                    prefix.observe_write(position, data);
                    let end = position as usize + data.len();
                    if file.len() < end {
                        file.resize(end, 0);
                    }
                    file[position as usize..end].copy_from_slice(data);
                }
                "t" => {
                    prefix.observe_truncate(position);
                    file.resize(position as usize, 0);
                }
                _ => unreachable!(),
            }
        }
        let start = prefix.hashed_len() as usize;
        prefix.feed_tail(&file[start..]);
        let expected: [u8; 32] = Sha256::digest(&file).into();
        assert_eq!(prefix.finish(), expected, "{ops:?}");
    }

    #[test]
    fn sequential_appends() {
        check(&[("w", 0, b"hello "), ("w", 6, b"world")]);
    }

    #[test]
    fn overwrite_inside_prefix_resets() {
        check(&[("w", 0, b"hello world"), ("w", 0, b"J")]);
        check(&[("w", 0, b"hello world"), ("w", 10, b"D!")]);
    }

    #[test]
    fn gap_then_fill() {
        check(&[("w", 5, b"world"), ("w", 0, b"hello")]);
        check(&[("w", 0, b"ab"), ("w", 10, b"cd"), ("w", 2, b"xyz")]);
    }

    #[test]
    fn truncates() {
        check(&[("w", 0, b"hello world"), ("t", 5, b"")]);
        check(&[("w", 0, b"hello"), ("t", 9, b""), ("w", 9, b"!")]);
        check(&[("w", 0, b"hello"), ("t", 0, b""), ("w", 0, b"bye")]);
    }
}
