//! Integrity on read: a blob damaged on disk (bit flip, truncation, replaced file) is never handed
//! out as valid.
//!
//! Every blob is verified when it is written. After a service start, the blobs on disk are
//! trusted again only once re-hashed: the first read of each entry checks it. A whole-entry read
//! hashes the bytes as they stream, on a second thread (overlapped with reading and sending), and
//! withholds the end of the stream until the digest matched; a range read first hashes the whole
//! entry. A mismatch fails the read with `NotFoundError`, deletes the entry for everyone and logs
//! it for the operator. [`scrub`](crate::StorageService::scrub) re-verifies a whole partition.
//! Each verification also records the identity of the file it verified ([`FileIdentity`]), so
//! that filling a sealed copy need not hash a file that provably has not changed since.
//! Off-the-record blobs live in memory and are never re-checked.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use cos_common::ContentHash;
pub use cos_common::interface::ScrubReport;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::blob_store::BlobSource;

/// Buffers in flight between the reading thread and the hashing thread: enough to keep both busy,
/// few enough to bound memory (each is one chunk).
const HASH_QUEUE: usize = 4;

/// The hashes whose blob on disk has been verified since this service started (written now, or
/// re-hashed on a first read or a scrub), each with the identity its file had then, when that
/// identity can vouch for later reads (see [`Observation`]).
#[derive(Default)]
pub(crate) struct VerifiedBlobs {
    hashes: Mutex<HashMap<ContentHash, Option<FileIdentity>>>,
}

impl VerifiedBlobs {
    pub(crate) fn contains(&self, hash: &ContentHash) -> bool {
        self.hashes.lock().contains_key(hash)
    }

    /// Marks `hash` verified, replacing any identity recorded before (a new file may have been
    /// installed) with `identity`.
    pub(crate) fn insert(&self, hash: ContentHash, identity: Option<FileIdentity>) {
        self.hashes.lock().insert(hash, identity);
    }

    /// Records the identity of a file whose bytes were verified, if `hash` is still verified (a
    /// mismatch found meanwhile wins over a late record).
    pub(crate) fn record(&self, hash: &ContentHash, identity: FileIdentity) {
        if let Some(slot) = self.hashes.lock().get_mut(hash) {
            *slot = Some(identity);
        }
    }

    /// The recorded identity of a verified blob's file, if any.
    pub(crate) fn identity(&self, hash: &ContentHash) -> Option<FileIdentity> {
        self.hashes.lock().get(hash).copied().flatten()
    }

    pub(crate) fn remove(&self, hash: &ContentHash) {
        self.hashes.lock().remove(hash);
    }
}

/// What `fstat` says about a blob file: which inode it is, its size, and when its data
/// (`mtime`) and its inode (`ctime`) last changed, to the nanosecond. Every change of the file
/// through the kernel sets `ctime` to the current time, which nobody but root (or whoever sets
/// the system clock back) can undo: an unchanged identity means unchanged bytes (see
/// ARCHITECTURE.md, "Integrity on read").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl FileIdentity {
    /// The identity of the open file now.
    pub(crate) fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }
}

/// A file's identity together with the coarse clock read just before it was taken.
///
/// The kernel stamps a change with its coarse clock, which advances in ticks (a few
/// milliseconds): a change made in the same tick as an observation, after it, may leave `ctime`
/// as observed. An observation is *settled* when the file's `ctime` is older than the coarse
/// clock read before the `fstat`: every later change is stamped at least that clock, so it is
/// seen. Only settled identities are recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation {
    identity: FileIdentity,
    settled: bool,
}

impl Observation {
    /// Observes the open file now.
    pub(crate) fn of(file: &File) -> io::Result<Self> {
        let clock = coarse_clock()?;
        let identity = FileIdentity::of(file)?;
        let settled = identity.ctime < clock;
        Ok(Self { identity, settled })
    }

    /// Observes the open file until the observation is settled, waiting for the coarse clock to
    /// pass the file's last change (a tick at most, when the file changed just now); `None` if
    /// it does not settle or cannot be observed.
    pub(crate) fn settled_of(file: &File) -> Option<FileIdentity> {
        // Ticks are 1 to 10 ms (HZ 1000 to 100): a few more tries than the longest needs.
        for _ in 0..16 {
            let observation = Self::of(file).ok()?;
            if let Some(identity) = observation.settled() {
                return Some(identity);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        None
    }

    /// The identity, if it can vouch for the file's later reads.
    pub(crate) fn settled(&self) -> Option<FileIdentity> {
        self.settled.then_some(self.identity)
    }
}

/// The kernel's coarse real-time clock (`CLOCK_REALTIME_COARSE`), the one it stamps file changes
/// with, as (seconds, nanoseconds). Through libc, whose vDSO call needs no system call the
/// sandbox would have to allow.
fn coarse_clock() -> io::Result<(i64, i64)> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, which only
    // writes the clock's value into it.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((now.tv_sec, now.tv_nsec))
}

/// Reads the whole blob, `chunk` bytes at a time, each into a buffer that starts with `header`,
/// and hands every buffer to `send` while a second thread hashes the payloads. Returns the
/// digest, or `None` if `send` asked to stop (the peer went away).
pub(crate) fn stream_hashed(
    source: &BlobSource,
    header: &[u8],
    chunk: usize,
    mut send: impl FnMut(&[u8]) -> bool,
) -> io::Result<Option<[u8; 32]>> {
    let size = source.len();
    let skip = header.len();
    std::thread::scope(|scope| {
        let (to_hasher, hasher_input) = crossbeam_channel::bounded::<Vec<u8>>(HASH_QUEUE);
        let (recycle, recycled) = crossbeam_channel::bounded::<Vec<u8>>(HASH_QUEUE + 1);
        let hasher = scope.spawn(move || {
            let mut sha = Sha256::new();
            for buffer in hasher_input {
                sha.update(&buffer[skip..]);
                let _ = recycle.try_send(buffer);
            }
            let digest: [u8; 32] = sha.finalize().into();
            digest
        });
        let mut position = 0u64;
        let mut outcome = Ok(true);
        while position < size {
            let want = usize::try_from(size - position).unwrap_or(usize::MAX).min(chunk);
            let mut buffer = recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(skip + chunk));
            buffer.clear();
            buffer.extend_from_slice(header);
            buffer.resize(skip + want, 0);
            match source.read_at(position, &mut buffer[skip..]) {
                Ok(n) if n == want => {}
                Ok(_) => {
                    outcome = Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than its size"));
                    break;
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
            if !send(&buffer) {
                outcome = Ok(false);
                break;
            }
            position += want as u64;
            if to_hasher.send(buffer).is_err() {
                break; // the hasher cannot stop early; unreachable in practice
            }
        }
        drop(to_hasher);
        let digest = hasher.join().expect("the hashing thread does not panic");
        outcome.map(|complete| complete.then_some(digest))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn streams_every_byte_once_in_order_and_hashes_them() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let source = BlobSource::Memory(Arc::from(bytes.clone()));
        let mut seen = Vec::new();
        let digest = stream_hashed(&source, &[9], 64 * 1024, |frame| {
            assert_eq!(frame[0], 9, "every buffer starts with the header");
            seen.extend_from_slice(&frame[1..]);
            true
        })
        .unwrap();
        assert_eq!(seen, bytes);
        assert_eq!(digest, Some(Sha256::digest(&bytes).into()));
    }

    #[test]
    fn stops_when_the_peer_goes_away() {
        let source = BlobSource::Memory(Arc::from(vec![1u8; 100_000]));
        let mut calls = 0;
        let digest = stream_hashed(&source, &[], 10_000, |_| {
            calls += 1;
            calls < 3
        })
        .unwrap();
        assert_eq!((digest, calls), (None, 3));
    }

    #[test]
    fn an_empty_blob_has_the_empty_digest() {
        let source = BlobSource::Memory(Arc::from(Vec::new()));
        let digest = stream_hashed(&source, &[], 1024, |_| panic!("nothing to send")).unwrap();
        assert_eq!(digest, Some(Sha256::digest(b"").into()));
    }
}
