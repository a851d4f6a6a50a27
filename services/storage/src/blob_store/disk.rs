//! Blobs on disk.
//!
//! Layout under the store root (`<profile>/cos`):
//!
//! ```text
//! blobs/<hh>/<64 hex>   one immutable file per entry, <hh> = first byte of the hash
//! swap/<n>.tmp          one file per open writer; never survives a restart
//! ```
//!
//! A write streams into its swap file through a small I/O thread (the caller hashes chunk *n+1*
//! while the thread writes chunk *n*), then `close` reads back whatever was not hashed in order,
//! `fdatasync`s, and the store renames the file into `blobs/` and `fsync`s the directory.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use cos_common::ContentHash;
use crossbeam_channel::{Receiver, Sender};

use super::{BlobSource, IO_CHUNK, PrefixHasher, StagedBlob};
use crate::error::StoreError;
use crate::faults::{Faults, IoOp};

/// Bytes a writer writes synchronously before it starts its I/O thread: small files never pay
/// for a thread.
const PIPELINE_THRESHOLD: u64 = 2 * IO_CHUNK as u64;
/// Chunks queued for the I/O thread at most (bounds a writer's memory to a few MiB).
const PIPELINE_DEPTH: usize = 3;
/// The I/O thread asks the kernel to start writing dirty pages back after this many bytes, so
/// that the `fdatasync` at close has little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// The on-disk blob directory.
pub(crate) struct DiskBlobs {
    blobs_dir: PathBuf,
    swap_dir: PathBuf,
    next_swap: AtomicU64,
    faults: Faults,
}

impl DiskBlobs {
    /// Opens (creating) the layout under `root`.
    pub(crate) fn open_root(root: &Path, faults: Faults) -> Result<Self, StoreError> {
        let blobs_dir = root.join("blobs");
        let swap_dir = root.join("swap");
        for dir in [root, &blobs_dir, &swap_dir] {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create store directory", dir, e))?;
        }
        Ok(Self { blobs_dir, swap_dir, next_swap: AtomicU64::new(0), faults })
    }

    fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        self.blobs_dir.join(hash.shard()).join(hash.to_hex())
    }

    pub(crate) fn begin_write(&self) -> Result<DiskSink, StoreError> {
        let n = self.next_swap.fetch_add(1, Ordering::Relaxed);
        let path = self.swap_dir.join(format!("{}-{n}.tmp", std::process::id()));
        let file = self
            .faults
            .check(IoOp::Write)
            .and_then(|()| OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path))
            .map_err(|e| StoreError::io("create swap file", &path, e))?;
        Ok(DiskSink {
            swap: SwapFile { path, file: Arc::new(file), armed: true },
            sync_bytes: 0,
            pipeline: None,
            faults: self.faults.clone(),
        })
    }

    /// Renames a verified swap file to the blob of `hash`; returns the shard directory, whose
    /// sync ([`Self::sync_placed`]) makes the rename durable.
    pub(crate) fn place(&self, mut swap: SwapFile, hash: &ContentHash) -> Result<PathBuf, StoreError> {
        let shard = self.blobs_dir.join(hash.shard());
        if !shard.exists() {
            fs::create_dir_all(&shard).map_err(|e| StoreError::io("create blob shard", &shard, e))?;
            sync_dir(&self.blobs_dir, &self.faults)?;
        }
        let target = shard.join(hash.to_hex());
        self.faults
            .check(IoOp::Rename)
            .and_then(|()| fs::rename(&swap.path, &target))
            .map_err(|e| StoreError::io("install blob", &target, e))?;
        swap.armed = false;
        Ok(shard)
    }

    /// Syncs a shard directory blobs were renamed into. If this fails the renames may not be
    /// durable; the caller does not commit the rows, and a blob without a row is never visible
    /// (recovery deletes it at the next start).
    pub(crate) fn sync_placed(&self, shard: &Path) -> Result<(), StoreError> {
        sync_dir(shard, &self.faults)
    }

    pub(crate) fn open(&self, hash: &ContentHash) -> Result<Option<BlobSource>, StoreError> {
        let path = self.blob_path(hash);
        match File::open(&path) {
            Ok(file) => {
                let len = file.metadata().map_err(|e| StoreError::io("stat blob", &path, e))?.len();
                Ok(Some(BlobSource::Disk(Arc::new(file), len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("open blob", &path, e)),
        }
    }

    pub(crate) fn remove(&self, hash: &ContentHash) -> Result<(), StoreError> {
        let path = self.blob_path(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove blob", &path, e)),
        }
    }

    /// Deletes every swap file (left by a crash: no writer survives a restart). Returns how many.
    pub(crate) fn clear_swap(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in read_dir(&self.swap_dir)? {
            let path = entry.path();
            let result = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            result.map_err(|e| StoreError::io("remove stale swap file", &path, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Every blob on disk with its size. Files and directories that cannot be blobs (wrong
    /// names, wrong shard) are deleted: nothing else lives under `blobs/`.
    pub(crate) fn scan(&self) -> Result<HashMap<ContentHash, u64>, StoreError> {
        let mut found = HashMap::new();
        for shard in read_dir(&self.blobs_dir)? {
            let shard_path = shard.path();
            let shard_name = shard.file_name();
            let valid_shard = shard_name.len() == 2
                && shard_path.is_dir()
                && shard_name
                    .to_str()
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            if !valid_shard {
                remove_any(&shard_path)?;
                continue;
            }
            for blob in read_dir(&shard_path)? {
                let path = blob.path();
                let hash = blob.file_name().to_str().and_then(ContentHash::from_hex);
                match hash {
                    Some(hash) if hash.shard().as_str() == shard_name && path.is_file() => {
                        let len = blob.metadata().map_err(|e| StoreError::io("stat blob", &path, e))?.len();
                        found.insert(hash, len);
                    }
                    _ => remove_any(&path)?,
                }
            }
        }
        Ok(found)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
        .map_err(|e| StoreError::io("list directory", dir, e))
}

fn remove_any(path: &Path) -> Result<(), StoreError> {
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    result.map_err(|e| StoreError::io("remove stray file", path, e))
}

/// `fsync` a directory so that a rename or create inside it is durable.
fn sync_dir(dir: &Path, faults: &Faults) -> Result<(), StoreError> {
    faults
        .check(IoOp::Sync)
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// A swap file, deleted on drop unless it was installed.
pub(crate) struct SwapFile {
    path: PathBuf,
    file: Arc<File>,
    armed: bool,
}

impl SwapFile {
    /// The open swap file (the blob's inode once installed).
    pub(crate) fn file(&self) -> Arc<File> {
        self.file.clone()
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        if self.armed
            && let Err(error) = fs::remove_file(&self.path)
        {
            tracing::warn!(%error, path = %self.path.display(), "could not delete a swap file; it is removed at the next start");
        }
    }
}

/// A writer's swap file plus, once it has grown past [`PIPELINE_THRESHOLD`], its I/O thread.
pub(crate) struct DiskSink {
    swap: SwapFile,
    sync_bytes: u64,
    pipeline: Option<Pipeline>,
    faults: Faults,
}

enum IoJob {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

struct Pipeline {
    jobs: Sender<IoJob>,
    spare: Receiver<Vec<u8>>,
    thread: JoinHandle<io::Result<()>>,
}

impl Pipeline {
    fn start(file: Arc<File>, faults: Faults) -> io::Result<Self> {
        let (jobs, job_rx) = crossbeam_channel::bounded::<IoJob>(PIPELINE_DEPTH);
        let (spare_tx, spare) = crossbeam_channel::bounded::<Vec<u8>>(PIPELINE_DEPTH + 2);
        let thread = std::thread::Builder::new().name("cos-blob-writer".into()).spawn(move || {
            let mut since_writeback = 0u64;
            for job in job_rx {
                match job {
                    IoJob::Write(position, buffer) => {
                        faults.check(IoOp::Write)?;
                        file.write_all_at(&buffer, position)?;
                        since_writeback += buffer.len() as u64;
                        if since_writeback >= WRITEBACK_EVERY {
                            start_writeback(&file);
                            since_writeback = 0;
                        }
                        let _ = spare_tx.try_send(buffer);
                    }
                    IoJob::SetLen(len) => {
                        faults.check(IoOp::Write)?;
                        file.set_len(len)?;
                    }
                }
            }
            Ok(())
        })?;
        Ok(Self { jobs, spare, thread })
    }

    fn submit(&mut self, job: IoJob) -> Result<(), ()> {
        self.jobs.send(job).map_err(|_| ())
    }

    /// Waits for every queued job; returns the first I/O error.
    fn drain(self) -> io::Result<()> {
        drop(self.jobs);
        self.thread.join().unwrap_or_else(|_| Err(io::Error::other("blob writer thread panicked")))
    }
}

/// Starts asynchronous writeback of the file's dirty pages (Linux `sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`). Purely a hint: durability still comes from `fdatasync` at close.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is owned by `file`, which outlives the call; offset 0 with
        // length 0 means "to the end of the file"; the call only schedules I/O on that file.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range hint failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

impl DiskSink {
    pub(crate) fn write_at(&mut self, position: u64, data: &[u8]) -> Result<(), StoreError> {
        if self.pipeline.is_none() && self.sync_bytes + data.len() as u64 > PIPELINE_THRESHOLD {
            let pipeline = Pipeline::start(self.swap.file.clone(), self.faults.clone())
                .map_err(|e| StoreError::io("start writer thread", &self.swap.path, e))?;
            self.pipeline = Some(pipeline);
        }
        let Some(pipeline) = self.pipeline.as_mut() else {
            self.sync_bytes += data.len() as u64;
            return self
                .faults
                .check(IoOp::Write)
                .and_then(|()| self.swap.file.write_all_at(data, position))
                .map_err(|e| StoreError::io("write swap file", &self.swap.path, e));
        };
        let mut offset = position;
        for piece in data.chunks(IO_CHUNK) {
            let mut buffer = pipeline.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(IO_CHUNK));
            buffer.clear();
            buffer.extend_from_slice(piece);
            if pipeline.submit(IoJob::Write(offset, buffer)).is_err() {
                return Err(self.pipeline_failure());
            }
            offset += piece.len() as u64;
        }
        Ok(())
    }

    pub(crate) fn set_len(&mut self, len: u64) -> Result<(), StoreError> {
        match self.pipeline.as_mut() {
            Some(pipeline) => pipeline.submit(IoJob::SetLen(len)).map_err(|()| self.pipeline_failure()),
            None => self
                .faults
                .check(IoOp::Write)
                .and_then(|()| self.swap.file.set_len(len))
                .map_err(|e| StoreError::io("truncate swap file", &self.swap.path, e)),
        }
    }

    /// The I/O thread stopped early: it hit an error, which joining it returns.
    fn pipeline_failure(&mut self) -> StoreError {
        let error = match self.pipeline.take().map(Pipeline::drain) {
            Some(Err(e)) => e,
            _ => io::Error::other("blob writer thread stopped"),
        };
        StoreError::io("write swap file", &self.swap.path, error)
    }

    pub(crate) fn finish(
        mut self,
        mut prefix: PrefixHasher,
        size: u64,
    ) -> Result<(StagedBlob, ContentHash), StoreError> {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.drain().map_err(|e| StoreError::io("write swap file", &self.swap.path, e))?;
        }
        let file = &self.swap.file;
        let mut buffer =
            vec![0u8; IO_CHUNK.min(usize::try_from(size.saturating_sub(prefix.hashed_len())).unwrap_or(IO_CHUNK))];
        while prefix.hashed_len() < size {
            let want = buffer.len().min(usize::try_from(size - prefix.hashed_len()).unwrap_or(usize::MAX));
            let read = file
                .read_at(&mut buffer[..want], prefix.hashed_len())
                .map_err(|e| StoreError::io("read back swap file", &self.swap.path, e))?;
            if read == 0 {
                return Err(StoreError::io(
                    "read back swap file",
                    &self.swap.path,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "swap file shorter than written"),
                ));
            }
            prefix.feed_tail(&buffer[..read]);
        }
        let digest = ContentHash::from_bytes(prefix.finish());
        self.faults
            .check(IoOp::Sync)
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io("sync swap file", &self.swap.path, e))?;
        Ok((StagedBlob::Disk(self.swap), digest))
    }
}
