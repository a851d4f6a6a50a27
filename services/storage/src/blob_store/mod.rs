//! The content-addressed blob store: one immutable file per verified entry, written through a
//! swap file and installed by atomic rename only after its SHA-256 matched.
//!
//! Two backends share one interface: [`disk`] for the regular profile and [`memory`] for
//! off-the-record profiles.

mod coalesce;
pub(crate) mod disk;
mod hashing;
pub(crate) mod memory;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cos_common::ContentHash;

pub(crate) use disk::Lent;
pub(crate) use hashing::PrefixHasher;

use crate::error::StoreError;
use crate::integrity::Observation;

/// Largest piece handed to the I/O pipeline and read back at a time; big enough for ~3 GiB/s
/// syscalls, small enough to keep a writer's memory bounded.
pub(crate) const IO_CHUNK: usize = 1 << 20;

/// Where a blob lives.
pub(crate) enum BlobStore {
    /// Files under the profile directory.
    Disk(disk::DiskBlobs),
    /// Buffers in memory (off-the-record).
    Memory(memory::MemoryBlobs),
}

impl BlobStore {
    /// Starts a new swap area for one writer of `hash` (on disk, shared with the other writers
    /// of `hash` streaming now: see `coalesce`).
    pub(crate) fn begin_write(&self, hash: &ContentHash) -> Result<BlobSink, StoreError> {
        Ok(match self {
            Self::Disk(disk) => BlobSink::Disk(disk.begin_write(hash)?),
            Self::Memory(_) => BlobSink::Memory(Vec::new()),
        })
    }

    /// Makes verified bytes the blob of `hash` (the caller guarantees the hash matched). On disk
    /// the rename is durable only once the returned directory is synced ([`Self::sync_dir`]),
    /// which a group of installs shares. A blob file the install replaces is pushed to
    /// `replaced`, still open: see [`disk::DiskBlobs::place`].
    pub(crate) fn place(
        &self,
        staged: StagedBlob,
        hash: &ContentHash,
        replaced: &mut Vec<File>,
    ) -> Result<Option<PathBuf>, StoreError> {
        match (self, staged) {
            (Self::Disk(disk), StagedBlob::Disk(swap)) => disk.place(swap, hash, replaced).map(Some),
            (Self::Memory(memory), StagedBlob::Memory(bytes)) => {
                memory.install(hash, bytes);
                Ok(None)
            }
            _ => unreachable!("a staged blob always comes from its own store"),
        }
    }

    /// Makes the renames [`Self::place`] did into `dir` durable.
    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        match self {
            Self::Disk(disk) => disk.sync_placed(dir),
            Self::Memory(_) => Ok(()),
        }
    }

    /// Opens the blob of `hash` for reading, or `None` when there is no such file.
    pub(crate) fn open(&self, hash: &ContentHash) -> Result<Option<BlobSource>, StoreError> {
        match self {
            Self::Disk(disk) => disk.open(hash),
            Self::Memory(memory) => Ok(memory.open(hash)),
        }
    }

    /// Deletes the blob of `hash` (open readers keep their view).
    pub(crate) fn remove(&self, hash: &ContentHash) -> Result<(), StoreError> {
        match self {
            Self::Disk(disk) => disk.remove(hash),
            Self::Memory(memory) => {
                memory.remove(hash);
                Ok(())
            }
        }
    }
}

/// The bytes of one writer before verification.
pub(crate) enum BlobSink {
    /// A swap file with its I/O pipeline.
    Disk(disk::DiskSink),
    /// A growable buffer.
    Memory(Vec<u8>),
}

impl BlobSink {
    /// Writes `data` at `position` (positions past the end leave a zero-filled gap). `prefix`
    /// hashes the writer's bytes as they are written in order (a shared disk writer's are hashed
    /// by its group instead: see `coalesce`).
    /// With `lent`, `data` is a part of that buffer, which a disk writer's I/O thread may write
    /// from instead of a copy (see [`Lent`]).
    pub(crate) fn write_at(
        &mut self,
        position: u64,
        data: &[u8],
        lent: Option<&Lent>,
        prefix: &mut PrefixHasher,
    ) -> Result<(), StoreError> {
        match self {
            Self::Disk(sink) => sink.write_at(position, data, lent, prefix),
            Self::Memory(buffer) => {
                let start = usize::try_from(position).map_err(|_| StoreError::TooLarge)?;
                let end = start.checked_add(data.len()).ok_or(StoreError::TooLarge)?;
                prefix.observe_write(position, data);
                if buffer.len() < end {
                    buffer.resize(end, 0);
                }
                buffer[start..end].copy_from_slice(data);
                Ok(())
            }
        }
    }

    /// A buffer a disk writer's I/O thread has written and given back.
    pub(crate) fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        match self {
            Self::Disk(sink) => sink.spare_buffer(),
            Self::Memory(_) => None,
        }
    }

    /// Resizes to `len` bytes.
    pub(crate) fn set_len(&mut self, len: u64, prefix: &mut PrefixHasher) -> Result<(), StoreError> {
        match self {
            Self::Disk(sink) => sink.set_len(len, prefix),
            Self::Memory(buffer) => {
                prefix.observe_truncate(len);
                buffer.resize(usize::try_from(len).map_err(|_| StoreError::TooLarge)?, 0);
                Ok(())
            }
        }
    }

    /// Completes every pending write and hashes whatever `prefix` does not cover; if the bytes
    /// hash to `target`, makes them durable and returns them, else `None`.
    pub(crate) fn finish(
        self,
        mut prefix: PrefixHasher,
        size: u64,
        target: &ContentHash,
    ) -> Result<Option<StagedBlob>, StoreError> {
        match self {
            Self::Disk(sink) => sink.finish(prefix, size, target),
            Self::Memory(buffer) => {
                debug_assert_eq!(buffer.len() as u64, size);
                let start = usize::try_from(prefix.hashed_len()).map_err(|_| StoreError::TooLarge)?;
                prefix.feed_tail(&buffer[start..]);
                let matched = ContentHash::from_bytes(prefix.finish()) == *target;
                Ok(matched.then(|| StagedBlob::Memory(Arc::from(buffer))))
            }
        }
    }
}

/// Verified bytes waiting to be installed; dropping it discards them (and the swap file).
pub(crate) enum StagedBlob {
    /// A fsynced swap file.
    Disk(disk::SwapFile),
    /// The final buffer.
    Memory(Arc<[u8]>),
}

impl StagedBlob {
    /// The file that becomes the blob when installed (renaming keeps the inode), so that its
    /// writer can record the identity of what it installed.
    pub(crate) fn file(&self) -> Option<Arc<File>> {
        match self {
            Self::Disk(swap) => Some(swap.file()),
            Self::Memory(_) => None,
        }
    }
}

/// An open blob. Blobs are immutable, and an open source keeps its bytes even if the entry is
/// deleted meanwhile.
#[derive(Clone)]
pub(crate) enum BlobSource {
    /// An open file and its size.
    Disk(Arc<File>, u64),
    /// Shared bytes.
    Memory(Arc<[u8]>),
}

impl BlobSource {
    /// Size in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Disk(_, len) => *len,
            Self::Memory(bytes) => bytes.len() as u64,
        }
    }

    /// The open file's identity now, for a blob on disk (see `integrity::Observation`).
    pub(crate) fn observe(&self) -> Option<Observation> {
        match self {
            Self::Disk(file, _) => {
                Observation::of(file).inspect_err(|error| tracing::debug!(%error, "could not observe a blob file")).ok()
            }
            Self::Memory(_) => None,
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; 0 means end of blob.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Disk(file, len) => {
                let remaining = len.saturating_sub(offset);
                let want = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let mut done = 0;
                while done < want {
                    match file.read_at(&mut buf[done..want], offset + done as u64) {
                        Ok(0) => {
                            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than recorded"));
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
            Self::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
        }
    }
}
