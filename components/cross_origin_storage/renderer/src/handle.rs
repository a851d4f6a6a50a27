//! `FileSystemFileHandle` for a COS entry.

use std::sync::Arc;

use cos_common::interface::{CallResult, FrameId, HandleCall, HandleId, RendererToBroker};
use cos_common::{ContentHash, CosError, InvalidStateKind, NotAllowedKind};

use crate::connection::RendererConnection;
use crate::file::File;
use crate::writable::FileSystemWritableFileStream;

/// The `mode` of a permission descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionMode {
    /// `"read"`.
    Read,
    /// `"readwrite"`.
    ReadWrite,
}

/// A permission state. COS never answers `"prompt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionState {
    /// `"granted"`.
    Granted,
    /// `"denied"`.
    Denied,
}

struct HandleInner {
    connection: Arc<RendererConnection>,
    /// The document that opened the handle; a release names it (see `RendererToBroker::Call`).
    opener: FrameId,
    id: HandleId,
    hash: ContentHash,
    create: bool,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        let call = HandleCall::ReleaseHandle { handle: self.id };
        self.connection.notify(RendererToBroker::Call { frame: self.opener, call });
    }
}

/// A handle on one entry, as one document (or worker) holds it. Cheap to clone; the service
/// forgets it when the last clone drops.
///
/// Its calls name the document that holds it: the broker lets only documents of the origin and
/// partition that opened the handle use it. A DOM binding that transfers a handle to another
/// same-origin document (`postMessage`) gives the receiver [`adopted_by`](Self::adopted_by) it.
///
/// ```
/// use cos_common::CosError;
/// use cos_common::interface::FrameId;
/// use cos_renderer::{CosHashDict, CosOptions, PermissionMode, PermissionState, block_on};
/// # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
/// # let manager = &document.manager;
/// # let hex = cos_test_support::callers::sha256_hex(b"runtime.wasm bytes");
/// let create = CosOptions { create: true, ..CosOptions::default() };
/// let handle = block_on(manager.get_file_handle(&CosHashDict::sha256(hex.clone()), &create))?;
/// assert_eq!((handle.kind(), handle.name()), ("file", hex));
/// assert_eq!(handle.query_permission(PermissionMode::ReadWrite), PermissionState::Granted);
/// // Entries are immutable and shared: only the browser removes them.
/// assert_eq!(handle.remove().unwrap_err().name(), "NotAllowedError");
///
/// // Posted to a same-origin document (frame 2), the copy calls in the receiver's name.
/// let received = handle.adopted_by(FrameId(2));
/// assert!(received.is_same_entry(&handle));
/// assert_eq!(received.frame(), FrameId(2));
/// # Ok::<(), CosError>(())
/// ```
#[derive(Clone)]
pub struct FileSystemFileHandle {
    inner: Arc<HandleInner>,
    frame: FrameId,
}

impl std::fmt::Debug for FileSystemFileHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSystemFileHandle")
            .field("hash", &self.inner.hash)
            .field("frame", &self.frame)
            .field("create", &self.inner.create)
            .finish_non_exhaustive()
    }
}

impl FileSystemFileHandle {
    pub(crate) fn new(
        connection: Arc<RendererConnection>,
        frame: FrameId,
        id: HandleId,
        hash: ContentHash,
        create: bool,
    ) -> Self {
        Self { inner: Arc::new(HandleInner { connection, opener: frame, id, hash, create }), frame }
    }

    /// The same handle held by `frame`, a same-origin document of the same partition that
    /// received it by transfer. Readability stays the handle's own (SPEC §4).
    pub fn adopted_by(&self, frame: FrameId) -> Self {
        Self { inner: self.inner.clone(), frame }
    }

    /// The document that holds this copy of the handle.
    pub fn frame(&self) -> FrameId {
        self.frame
    }

    /// `kind`: always `"file"`.
    pub fn kind(&self) -> &'static str {
        "file"
    }

    /// `name`: the hash's hex value.
    pub fn name(&self) -> String {
        self.inner.hash.to_hex()
    }

    /// The entry's hash.
    pub fn hash(&self) -> ContentHash {
        self.inner.hash
    }

    /// Whether the handle came from a create request.
    pub fn is_create(&self) -> bool {
        self.inner.create
    }

    /// `getFile()`.
    pub async fn get_file(&self) -> Result<File, CosError> {
        let (handle, frame) = (self.inner.id, self.frame);
        let call = |request| RendererToBroker::Call { frame, call: HandleCall::GetFile { request, handle } };
        match self.inner.connection.call(call).await {
            CallResult::File { size, pipe } => {
                Ok(File::new(self.name(), size, pipe.into_endpoint(), self.inner.connection.takes_files()))
            }
            CallResult::InlineFile { bytes } => Ok(File::inline(self.name(), bytes.into_vec())),
            CallResult::Failed(error) => Err(error),
            _ => Err(CosError::Unknown),
        }
    }

    /// `createWritable({keepExistingData})`: always starts empty (SPEC §4).
    pub async fn create_writable(&self, _keep_existing_data: bool) -> Result<FileSystemWritableFileStream, CosError> {
        let (handle, frame) = (self.inner.id, self.frame);
        let call = |request| RendererToBroker::Call { frame, call: HandleCall::CreateWritable { request, handle } };
        match self.inner.connection.call(call).await {
            CallResult::Writable { pipe } => Ok(FileSystemWritableFileStream::new(pipe.into_endpoint())),
            CallResult::Failed(error) => Err(error),
            _ => Err(CosError::Unknown),
        }
    }

    /// `isSameEntry(other)`: equal hashes.
    pub fn is_same_entry(&self, other: &FileSystemFileHandle) -> bool {
        self.inner.hash == other.inner.hash
    }

    /// `queryPermission({mode})`: `"granted"` for read; for readwrite only on create handles.
    pub fn query_permission(&self, mode: PermissionMode) -> PermissionState {
        match (mode, self.inner.create) {
            (PermissionMode::Read, _) | (PermissionMode::ReadWrite, true) => PermissionState::Granted,
            (PermissionMode::ReadWrite, false) => PermissionState::Denied,
        }
    }

    /// `requestPermission({mode})`: the same answer, never a prompt.
    pub fn request_permission(&self, mode: PermissionMode) -> PermissionState {
        self.query_permission(mode)
    }

    /// `move()`: entries are immutable.
    pub fn move_to(&self) -> Result<(), CosError> {
        Err(CosError::NotAllowed(NotAllowedKind::EntryImmutable))
    }

    /// `remove()`: entries are shared; only the browser removes them.
    pub fn remove(&self) -> Result<(), CosError> {
        Err(CosError::NotAllowed(NotAllowedKind::EntryImmutable))
    }

    /// `createSyncAccessHandle()`.
    pub fn create_sync_access_handle(&self) -> Result<(), CosError> {
        Err(CosError::InvalidState(InvalidStateKind::SyncAccessHandle))
    }
}
