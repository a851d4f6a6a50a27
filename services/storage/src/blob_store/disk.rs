//! Blobs on disk.
//!
//! Layout under the store root (`<profile>/cos`):
//!
//! ```text
//! blobs/<hh>/<64 hex>   one immutable file per entry, <hh> = first byte of the hash
//! swap/<pid>-<n>.tmp    one file per open writer (or group of writers of one hash at once, plus
//!                       a link per verified member); never survives a restart
//! ```
//!
//! A write streams into its swap file through a small I/O thread (the caller hashes chunk *n+1*
//! while the thread writes chunk *n*), then `close` reads back whatever was not hashed in order,
//! `fdatasync`s, and the store renames the file into `blobs/` and `fsync`s the directory. Writers
//! of the same hash at the same time share one swap file (see `coalesce`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use cos_common::ContentHash;
use crossbeam_channel::{Receiver, Sender};

use super::coalesce::{Coalescer, Group, Judged, Member, Seal, Step};
use super::{BlobSource, IO_CHUNK, PrefixHasher, StagedBlob};
use crate::error::StoreError;
use crate::faults::{Faults, IoOp};

/// Bytes a writer writes synchronously before it starts its I/O thread: small files never pay
/// for a thread.
const PIPELINE_THRESHOLD: u64 = 2 * IO_CHUNK as u64;
/// Jobs queued for the I/O thread at most (bounds a writer's memory to a few MiB: a job is a
/// received chunk of at most one message, or a copy of at most [`COPY_JOB_BYTES`]).
const PIPELINE_DEPTH: usize = 16;
/// The largest piece of a copied write handed to the I/O thread.
const COPY_JOB_BYTES: usize = 128 << 10;
/// The I/O thread asks the kernel to start writing dirty pages back after this many bytes, so
/// that the `fdatasync` at close has little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// The on-disk blob directory.
pub(crate) struct DiskBlobs {
    blobs_dir: PathBuf,
    swap: Arc<SwapArea>,
    /// Writers of the same hash at the same time share one swap file (see `coalesce`).
    coalescer: Arc<Coalescer>,
}

/// The swap directory: where writers' files are made.
pub(crate) struct SwapArea {
    dir: PathBuf,
    next: AtomicU64,
    faults: Faults,
    /// Bytes written to swap files since the store opened (test seam).
    #[cfg(feature = "testing")]
    written: AtomicU64,
}

impl SwapArea {
    fn new_name(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{}-{n}.tmp", std::process::id()))
    }

    fn create(&self) -> Result<SwapFile, StoreError> {
        let path = self.new_name();
        let file = self
            .faults
            .check(IoOp::Write)
            .and_then(|()| OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path))
            .map_err(|e| StoreError::io("create swap file", &path, e))?;
        Ok(SwapFile::new(path, Arc::new(file)))
    }

    /// Counts bytes written to swap files (only with the `testing` feature).
    fn count(&self, bytes: usize) {
        #[cfg(feature = "testing")]
        self.written.fetch_add(bytes as u64, Ordering::Relaxed);
        #[cfg(not(feature = "testing"))]
        let _ = bytes;
    }
}

impl DiskBlobs {
    /// Opens (creating) the layout under `root`.
    pub(crate) fn open_root(root: &Path, faults: Faults) -> Result<Self, StoreError> {
        let blobs_dir = root.join("blobs");
        let swap_dir = root.join("swap");
        for dir in [root, &blobs_dir, &swap_dir] {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create store directory", dir, e))?;
        }
        let swap = Arc::new(SwapArea {
            dir: swap_dir,
            next: AtomicU64::new(0),
            faults,
            #[cfg(feature = "testing")]
            written: AtomicU64::new(0),
        });
        Ok(Self { blobs_dir, swap, coalescer: Arc::default() })
    }

    fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        self.blobs_dir.join(hash.shard()).join(hash.to_hex())
    }

    /// A writer of `hash`: it joins the writers of the same hash streaming now, if any (see
    /// `coalesce`), or starts their group with a new swap file.
    pub(crate) fn begin_write(&self, hash: &ContentHash) -> Result<DiskSink, StoreError> {
        let area = &self.swap;
        let member = self.coalescer.join(hash, || Ok(area.create()?.into_parts()))?;
        Ok(DiskSink {
            area: self.swap.clone(),
            mode: Mode::Shared(member),
            sync_bytes: 0,
            pipeline: None,
            scratch: Vec::new(),
        })
    }

    /// Bytes written to swap files since the store opened.
    #[cfg(feature = "testing")]
    pub(crate) fn swap_bytes_written(&self) -> u64 {
        self.swap.written.load(Ordering::Relaxed)
    }

    /// Groups of writers sharing a swap file now.
    #[cfg(feature = "testing")]
    pub(crate) fn write_groups(&self) -> usize {
        self.coalescer.groups()
    }

    /// Renames a verified swap file to the blob of `hash`; returns the shard directory, whose
    /// sync ([`Self::sync_placed`]) makes the rename durable.
    ///
    /// The blob file it replaces (an identical rewrite installs too) is opened first and pushed
    /// to `replaced`: while it is open the rename only unlinks it, and the filesystem frees its
    /// blocks when the caller closes it — after the commit lock is released. Otherwise a rewrite
    /// of a model of tens of MiB frees them inside the rename, and every writer of the group and
    /// of the groups queued behind it waits for that.
    pub(crate) fn place(
        &self,
        mut swap: SwapFile,
        hash: &ContentHash,
        replaced: &mut Vec<File>,
    ) -> Result<PathBuf, StoreError> {
        let shard = self.blobs_dir.join(hash.shard());
        if !shard.exists() {
            fs::create_dir_all(&shard).map_err(|e| StoreError::io("create blob shard", &shard, e))?;
            sync_dir(&self.blobs_dir, &self.swap.faults)?;
        }
        let target = shard.join(hash.to_hex());
        // Absent (new bytes) or unreadable: nothing to keep open, the rename goes on.
        if let Ok(old) = File::open(&target) {
            replaced.push(old);
        }
        self.swap
            .faults
            .check(IoOp::Rename)
            .and_then(|()| fs::rename(&swap.path, &target))
            .map_err(|e| StoreError::io("install blob", &target, e))?;
        swap.armed = false;
        if swap.shared {
            // Renaming a name over another name of the same file does nothing (POSIX): when
            // another writer of a shared file installed it first, this writer's name is left.
            match fs::remove_file(&swap.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, "could not delete a swap file's second name; it is removed at the next start");
                }
                _ => {}
            }
        }
        Ok(shard)
    }

    /// Syncs a shard directory blobs were renamed into. If this fails the renames may not be
    /// durable; the caller does not commit the rows, and a blob without a row is never visible
    /// (recovery deletes it at the next start).
    pub(crate) fn sync_placed(&self, shard: &Path) -> Result<(), StoreError> {
        sync_dir(shard, &self.swap.faults)
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
        for entry in read_dir(&self.swap.dir)? {
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
    /// A name of a file other writers shared, which may be installed already under another name:
    /// the install must not leave this name behind.
    shared: bool,
}

impl SwapFile {
    fn new(path: PathBuf, file: Arc<File>) -> Self {
        Self { path, file, armed: true, shared: false }
    }

    /// The file and its name, no longer deleted on drop (a group owns them now).
    fn into_parts(mut self) -> (Arc<File>, PathBuf) {
        self.armed = false;
        (self.file.clone(), std::mem::take(&mut self.path))
    }
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

/// A writer's bytes: in a swap file shared with the other writers of its hash streaming now, or
/// in a private one; plus, once the writer has written past [`PIPELINE_THRESHOLD`] itself, its
/// I/O thread.
pub(crate) struct DiskSink {
    area: Arc<SwapArea>,
    mode: Mode,
    /// Bytes this writer wrote synchronously (before its I/O thread started).
    sync_bytes: u64,
    pipeline: Option<Pipeline>,
    /// Where bytes of the shared file are read to be compared (or copied out).
    scratch: Vec<u8>,
}

enum Mode {
    /// In a group of writers of the same hash (see `coalesce`).
    Shared(Member),
    /// Alone, as a writer that seeks, overwrites or truncates, or left its group.
    Private(SwapFile),
    /// Between the two, or after a failure.
    Gone,
}

/// A received chunk's buffer, lent to the I/O thread rather than copied for it. The writer
/// hashed the bytes in it before lending it; while it is shared nobody can change them, so the
/// bytes written are the bytes hashed. The I/O thread gives it back once written.
pub(crate) type Lent = Arc<Vec<u8>>;

enum IoJob {
    Write(u64, Vec<u8>),
    WriteLent(u64, Lent, Range<usize>),
    SetLen(u64),
}

struct Pipeline {
    jobs: Sender<IoJob>,
    spare: Receiver<Vec<u8>>,
    /// Lent buffers the I/O thread has written.
    returned: Receiver<Lent>,
    thread: JoinHandle<io::Result<()>>,
}

/// Where `data` lies in `lent`, if it is a part of it.
fn range_within(lent: &Lent, data: &[u8]) -> Option<Range<usize>> {
    let start = (data.as_ptr() as usize).checked_sub(lent.as_ptr() as usize)?;
    let end = start.checked_add(data.len())?;
    (end <= lent.len()).then_some(start..end)
}

/// Whose appends to a shared file a pipeline writes: the group hears each one that landed.
struct Appends {
    group: Arc<Group>,
    member: u64,
}

impl Pipeline {
    fn start(file: Arc<File>, area: Arc<SwapArea>, appends: Option<Appends>) -> io::Result<Self> {
        let (jobs, job_rx) = crossbeam_channel::bounded::<IoJob>(PIPELINE_DEPTH);
        let (spare_tx, spare) = crossbeam_channel::bounded::<Vec<u8>>(PIPELINE_DEPTH + 2);
        let (returned_tx, returned) = crossbeam_channel::bounded::<Lent>(PIPELINE_DEPTH + 2);
        let thread = std::thread::Builder::new().name("cos-blob-writer".into()).spawn(move || {
            let mut since_writeback = 0u64;
            let mut write = |position: u64, bytes: &[u8]| -> io::Result<()> {
                area.faults.check(IoOp::Write)?;
                file.write_all_at(bytes, position)?;
                area.count(bytes.len());
                if let Some(appends) = &appends {
                    appends.group.appended(position + bytes.len() as u64);
                }
                since_writeback += bytes.len() as u64;
                if since_writeback >= WRITEBACK_EVERY {
                    start_writeback(&file);
                    since_writeback = 0;
                }
                Ok(())
            };
            let run = || -> io::Result<()> {
                for job in job_rx {
                    match job {
                        IoJob::Write(position, buffer) => {
                            write(position, &buffer)?;
                            let _ = spare_tx.try_send(buffer);
                        }
                        IoJob::WriteLent(position, lent, range) => {
                            write(position, &lent[range])?;
                            let _ = returned_tx.try_send(lent);
                        }
                        IoJob::SetLen(len) => {
                            area.faults.check(IoOp::Write)?;
                            file.set_len(len)?;
                        }
                    }
                }
                Ok(())
            };
            let result = run();
            // Nothing of this writer reaches the file any more: what it claimed and did not
            // write is free for the other writers.
            if let Some(appends) = &appends {
                appends.group.release(appends.member);
            }
            result
        })?;
        Ok(Self { jobs, spare, returned, thread })
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

/// What a shared writer does next, decided while its group is borrowed.
enum Next {
    Compare(u64, usize),
    Append(u64, usize),
    Leave(u64),
    Failed,
}

impl DiskSink {
    fn path(&self) -> &Path {
        match &self.mode {
            Mode::Private(swap) => &swap.path,
            Mode::Shared(_) | Mode::Gone => Path::new("swap"),
        }
    }

    /// Writes `data` at `position`; `prefix` hashes what a private writer writes in order (a
    /// shared writer's appends are hashed by its group, and what it compares needs no hash).
    ///
    /// With `lent`, `data` is a part of that buffer, which the I/O thread may then write from
    /// instead of a copy (see [`Lent`]): the bytes are hashed here first, and the buffer cannot
    /// change while it is shared.
    pub(crate) fn write_at(
        &mut self,
        position: u64,
        data: &[u8],
        lent: Option<&Lent>,
        prefix: &mut PrefixHasher,
    ) -> Result<(), StoreError> {
        if let Mode::Shared(member) = &self.mode {
            // An empty write changes nothing (the caller zero-fills past the end with `set_len`).
            if position == member.len || data.is_empty() {
                return self.write_shared(data, lent, prefix);
            }
            self.go_private(false, prefix)?;
        }
        prefix.observe_write(position, data);
        self.write_private(position, data, lent)
    }

    /// A buffer the I/O thread has written and given back, for the next received chunk.
    pub(crate) fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        let returned = &self.pipeline.as_ref()?.returned;
        returned.try_iter().find_map(|lent| Arc::try_unwrap(lent).ok())
    }

    /// Appends `data` at the writer's length in its group: compared with what the file holds
    /// there, appended past it.
    fn write_shared(
        &mut self,
        mut data: &[u8],
        lent: Option<&Lent>,
        prefix: &mut PrefixHasher,
    ) -> Result<(), StoreError> {
        while !data.is_empty() {
            let Mode::Shared(member) = &self.mode else { break };
            let want = data.len().min(IO_CHUNK);
            let next = match member.next_step(want as u64) {
                Step::Compare(n) => Next::Compare(member.len, usize::try_from(n).unwrap_or(want).min(want)),
                Step::Append => Next::Append(member.len, want),
                Step::Leave => Next::Leave(member.len),
                Step::Failed => Next::Failed,
            };
            match next {
                Next::Compare(position, n) => {
                    let Mode::Shared(member) = &mut self.mode else { unreachable!() };
                    let file = member.group.file.clone();
                    if same_bytes(&file, position, &data[..n], &mut self.scratch)
                        .map_err(|e| StoreError::io("read shared swap file", Path::new("swap"), e))?
                    {
                        member.advance(n as u64);
                        data = &data[n..];
                    } else {
                        self.go_private(true, prefix)?;
                        prefix.observe_write(position, data);
                        return self.write_private(position, data, lent);
                    }
                }
                Next::Append(position, n) => {
                    self.append_shared(position, &data[..n], lent)?;
                    let Mode::Shared(member) = &mut self.mode else { unreachable!() };
                    member.advance(n as u64);
                    data = &data[n..];
                }
                Next::Leave(position) => {
                    self.go_private(false, prefix)?;
                    prefix.observe_write(position, data);
                    return self.write_private(position, data, lent);
                }
                Next::Failed => return Err(self.pipeline_failure()),
            }
        }
        Ok(())
    }

    /// Writes bytes this writer claimed at the end of its group's file.
    fn append_shared(&mut self, position: u64, data: &[u8], lent: Option<&Lent>) -> Result<(), StoreError> {
        let Mode::Shared(member) = &self.mode else { unreachable!("only a shared writer appends") };
        let (group, id) = (member.group.clone(), member.id);
        // Hashed before it can reach the file: the group's hash covers what was claimed, in order.
        group.hash_claimed(position, data);
        if self.pipeline.is_none() && self.sync_bytes + data.len() as u64 > PIPELINE_THRESHOLD {
            let appends = Some(Appends { group: group.clone(), member: id });
            match Pipeline::start(group.file.clone(), self.area.clone(), appends) {
                Ok(pipeline) => self.pipeline = Some(pipeline),
                Err(e) => {
                    group.release(id);
                    return Err(StoreError::io("start writer thread", Path::new("swap"), e));
                }
            }
        }
        if self.pipeline.is_none() {
            self.sync_bytes += data.len() as u64;
            let result = self.area.faults.check(IoOp::Write).and_then(|()| group.file.write_all_at(data, position));
            return match result {
                Ok(()) => {
                    self.area.count(data.len());
                    group.appended(position + data.len() as u64);
                    Ok(())
                }
                Err(e) => {
                    group.release(id);
                    Err(StoreError::io("write swap file", Path::new("swap"), e))
                }
            };
        }
        self.submit(position, data, lent)
    }

    fn write_private(&mut self, position: u64, data: &[u8], lent: Option<&Lent>) -> Result<(), StoreError> {
        let Mode::Private(swap) = &self.mode else {
            return Err(StoreError::io("write swap file", Path::new("swap"), io::Error::other("no swap file")));
        };
        if self.pipeline.is_none() && self.sync_bytes + data.len() as u64 > PIPELINE_THRESHOLD {
            let pipeline = Pipeline::start(swap.file.clone(), self.area.clone(), None)
                .map_err(|e| StoreError::io("start writer thread", &swap.path, e))?;
            self.pipeline = Some(pipeline);
        }
        if self.pipeline.is_none() {
            self.sync_bytes += data.len() as u64;
            self.area
                .faults
                .check(IoOp::Write)
                .and_then(|()| swap.file.write_all_at(data, position))
                .map_err(|e| StoreError::io("write swap file", &swap.path, e))?;
            self.area.count(data.len());
            return Ok(());
        }
        self.submit(position, data, lent)
    }

    /// Hands `data` to the I/O thread: the buffer it lies in when that is lent, else a copy,
    /// [`COPY_JOB_BYTES`] at a time.
    fn submit(&mut self, position: u64, data: &[u8], lent: Option<&Lent>) -> Result<(), StoreError> {
        let Some(pipeline) = self.pipeline.as_mut() else { unreachable!("a pipeline was started") };
        if let Some(lent) = lent
            && let Some(range) = range_within(lent, data)
        {
            debug_assert_eq!(lent[range.clone()].as_ptr(), data.as_ptr());
            if pipeline.submit(IoJob::WriteLent(position, lent.clone(), range)).is_err() {
                return Err(self.pipeline_failure());
            }
            return Ok(());
        }
        let mut offset = position;
        for piece in data.chunks(COPY_JOB_BYTES) {
            let mut buffer = pipeline.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(COPY_JOB_BYTES));
            buffer.clear();
            buffer.extend_from_slice(piece);
            if pipeline.submit(IoJob::Write(offset, buffer)).is_err() {
                return Err(self.pipeline_failure());
            }
            offset += piece.len() as u64;
        }
        Ok(())
    }

    pub(crate) fn set_len(&mut self, len: u64, prefix: &mut PrefixHasher) -> Result<(), StoreError> {
        if let Mode::Shared(member) = &self.mode {
            if member.len == len {
                return Ok(());
            }
            self.go_private(false, prefix)?;
        }
        prefix.observe_truncate(len);
        let Mode::Private(swap) = &self.mode else {
            return Err(StoreError::io("truncate swap file", Path::new("swap"), io::Error::other("no swap file")));
        };
        match self.pipeline.as_mut() {
            Some(pipeline) => pipeline.submit(IoJob::SetLen(len)).map_err(|()| self.pipeline_failure()),
            None => self
                .area
                .faults
                .check(IoOp::Write)
                .and_then(|()| swap.file.set_len(len))
                .map_err(|e| StoreError::io("truncate swap file", &swap.path, e)),
        }
    }

    /// Leaves the writer's group for a private swap file holding its bytes so far: the shared
    /// file itself when no one else can touch it, else a copy of the prefix it agreed with.
    /// `mismatch`: its bytes differ from the file's, so new writers should not join that group.
    /// `prefix` (which hashed nothing while the writer was shared) continues from the group's
    /// hash when that covers exactly the writer's bytes; otherwise the copy is hashed as it is
    /// made, or, when the file is kept, read back at close.
    fn go_private(&mut self, mismatch: bool, prefix: &mut PrefixHasher) -> Result<(), StoreError> {
        // This writer's own appends reach the file (or fail) first.
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.drain().map_err(|e| StoreError::io("write swap file", Path::new("swap"), e))?;
        }
        self.sync_bytes = 0;
        let Mode::Shared(mut member) = std::mem::replace(&mut self.mode, Mode::Gone) else { return Ok(()) };
        let len = member.len;
        let resumed = member.hash_state().map(|sha| PrefixHasher::resume(sha, len));
        if let Some((file, path, _)) = member.take_file(true) {
            if let Some(resumed) = resumed {
                *prefix = resumed;
            }
            let swap = SwapFile::new(path, file);
            // Bytes past `len` were appended by writers that have left: not this writer's.
            let file_len = swap.file.metadata().map_err(|e| StoreError::io("stat swap file", &swap.path, e))?.len();
            if file_len != len {
                self.area
                    .faults
                    .check(IoOp::Write)
                    .and_then(|()| swap.file.set_len(len))
                    .map_err(|e| StoreError::io("truncate swap file", &swap.path, e))?;
            }
            self.mode = Mode::Private(swap);
            return Ok(());
        }
        // Still in the group while copying: nothing below `len` changes meanwhile.
        self.mode = Mode::Private(self.area.create()?);
        let hash_copy = match resumed {
            Some(resumed) => {
                *prefix = resumed;
                None
            }
            None => Some(prefix),
        };
        self.copy_from(&member.group.file.clone(), len, hash_copy)?;
        member.leave(mismatch);
        Ok(())
    }

    /// Copies `[0, len)` of `source` into this writer's private file, hashing it into `prefix`
    /// if given.
    fn copy_from(&mut self, source: &File, len: u64, mut prefix: Option<&mut PrefixHasher>) -> Result<(), StoreError> {
        let mut position = 0;
        let mut buffer = std::mem::take(&mut self.scratch);
        buffer.resize(IO_CHUNK, 0);
        while position < len {
            let want = usize::try_from(len - position).unwrap_or(IO_CHUNK).min(IO_CHUNK);
            source
                .read_exact_at(&mut buffer[..want], position)
                .map_err(|e| StoreError::io("read shared swap file", Path::new("swap"), e))?;
            if let Some(prefix) = prefix.as_deref_mut() {
                prefix.observe_write(position, &buffer[..want]);
            }
            self.write_private(position, &buffer[..want], None)?;
            position += want as u64;
        }
        self.scratch = buffer;
        Ok(())
    }

    /// The I/O thread stopped early: it hit an error, which joining it returns.
    fn pipeline_failure(&mut self) -> StoreError {
        let error = match self.pipeline.take().map(Pipeline::drain) {
            Some(Err(e)) => e,
            _ => io::Error::other("blob writer thread stopped"),
        };
        if let Mode::Shared(member) = &self.mode {
            // A claim made after the thread stopped (and released what it held) will never be
            // written either; nothing of this writer can reach the file any more.
            member.group.release(member.id);
        }
        StoreError::io("write swap file", self.path(), error)
    }

    /// Completes every pending write, hashes whatever `prefix` does not cover and, if the bytes
    /// hash to `target`, makes them durable and returns them; `None` if they do not.
    pub(crate) fn finish(
        mut self,
        mut prefix: PrefixHasher,
        size: u64,
        target: &ContentHash,
    ) -> Result<Option<StagedBlob>, StoreError> {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.drain().map_err(|e| StoreError::io("write swap file", self.path(), e))?;
        }
        if let Mode::Shared(member) = &self.mode
            && member.len != size
        {
            // Cannot happen (a shared writer's size is what it appended or compared); stay safe.
            self.go_private(false, &mut prefix)?;
        }
        let swap = match std::mem::replace(&mut self.mode, Mode::Gone) {
            Mode::Shared(mut member) => {
                let seal = match member.judge(target) {
                    Judged::Sealed => Seal::Sealed,
                    Judged::Mismatch => return Ok(None),
                    Judged::Unknown => {
                        // `[0, size)` of the file are this writer's bytes and never change again.
                        if rehash(&member.group.file, size, &mut self.scratch)? != *target {
                            return Ok(None);
                        }
                        member.seal()
                    }
                };
                match seal {
                    Seal::Sealed => match member.take_file(false) {
                        Some((file, path, was_shared)) => {
                            let mut swap = SwapFile::new(path, file);
                            swap.shared = was_shared;
                            swap
                        }
                        None => {
                            let path = self.area.new_name();
                            member.link_as(&path).map_err(|e| StoreError::io("name shared swap file", &path, e))?;
                            let mut swap = SwapFile::new(path, member.group.file.clone());
                            swap.shared = true;
                            swap
                        }
                    },
                    Seal::Copy => {
                        self.mode = Mode::Private(self.area.create()?);
                        self.copy_from(&member.group.file.clone(), size, None)?;
                        drop(member);
                        if let Some(pipeline) = self.pipeline.take() {
                            pipeline.drain().map_err(|e| StoreError::io("write swap file", self.path(), e))?;
                        }
                        let Mode::Private(swap) = std::mem::replace(&mut self.mode, Mode::Gone) else { unreachable!() };
                        swap
                    }
                }
            }
            Mode::Private(swap) => {
                read_back(&swap, &mut prefix, size)?;
                if ContentHash::from_bytes(prefix.finish()) != *target {
                    return Ok(None);
                }
                swap
            }
            Mode::Gone => {
                return Err(StoreError::io("sync swap file", Path::new("swap"), io::Error::other("no swap file")));
            }
        };
        self.area
            .faults
            .check(IoOp::Sync)
            .and_then(|()| swap.file.sync_data())
            .map_err(|e| StoreError::io("sync swap file", &swap.path, e))?;
        Ok(Some(StagedBlob::Disk(swap)))
    }
}

/// Hashes what `prefix` does not cover (after seeks, overwrites or truncates) by reading it back.
fn read_back(swap: &SwapFile, prefix: &mut PrefixHasher, size: u64) -> Result<(), StoreError> {
    let mut buffer =
        vec![0u8; IO_CHUNK.min(usize::try_from(size.saturating_sub(prefix.hashed_len())).unwrap_or(IO_CHUNK))];
    while prefix.hashed_len() < size {
        let want = buffer.len().min(usize::try_from(size - prefix.hashed_len()).unwrap_or(usize::MAX));
        let read = swap
            .file
            .read_at(&mut buffer[..want], prefix.hashed_len())
            .map_err(|e| StoreError::io("read back swap file", &swap.path, e))?;
        if read == 0 {
            return Err(StoreError::io(
                "read back swap file",
                &swap.path,
                io::Error::new(io::ErrorKind::UnexpectedEof, "swap file shorter than written"),
            ));
        }
        prefix.feed_tail(&buffer[..read]);
    }
    Ok(())
}

/// The SHA-256 of `[0, len)` of `file`, read back.
fn rehash(file: &File, len: u64, scratch: &mut Vec<u8>) -> Result<ContentHash, StoreError> {
    let mut prefix = PrefixHasher::new();
    scratch.resize(IO_CHUNK, 0);
    while prefix.hashed_len() < len {
        let want = usize::try_from(len - prefix.hashed_len()).unwrap_or(IO_CHUNK).min(IO_CHUNK);
        file.read_exact_at(&mut scratch[..want], prefix.hashed_len())
            .map_err(|e| StoreError::io("read back shared swap file", Path::new("swap"), e))?;
        prefix.feed_tail(&scratch[..want]);
    }
    Ok(ContentHash::from_bytes(prefix.finish()))
}

/// Whether `file` holds exactly `data` at `position`.
fn same_bytes(file: &File, position: u64, data: &[u8], scratch: &mut Vec<u8>) -> io::Result<bool> {
    scratch.resize(data.len(), 0);
    file.read_exact_at(scratch, position)?;
    Ok(scratch[..] == *data)
}
