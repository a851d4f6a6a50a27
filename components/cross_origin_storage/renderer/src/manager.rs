//! `navigator.crossOriginStorage`.

use std::sync::Arc;

use cos_common::interface::{CallResult, FrameId, RendererToBroker};
use cos_common::{ContentHash, CosError, NotAllowedKind, OriginsInput, OriginsOption};

use crate::connection::RendererConnection;
use crate::handle::FileSystemFileHandle;

/// What the renderer itself knows about the calling global (it mirrors the browser's frame
/// table so that web-facing errors come out in the right order; the broker re-checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptContext {
    /// The calling document or worker.
    pub frame: FrameId,
    /// Whether it is a secure context (`https:` or `http://localhost`): otherwise the attribute
    /// is absent.
    pub secure_context: bool,
    /// The `cross-origin-storage` Permissions Policy result.
    pub policy_allows: bool,
    /// Whether the global is a service worker.
    pub service_worker: bool,
    /// Whether the calling origin is opaque.
    pub opaque_origin: bool,
}

/// The `CosHash` dictionary as script passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosHashDict {
    /// `algorithm`.
    pub algorithm: String,
    /// `value`.
    pub value: String,
}

impl CosHashDict {
    /// `{algorithm: "SHA-256", value}`.
    pub fn sha256(value: impl Into<String>) -> Self {
        Self { algorithm: "SHA-256".into(), value: value.into() }
    }
}

/// The `CosOptions` dictionary as script passed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CosOptions {
    /// `create` (default false).
    pub create: bool,
    /// `origins`.
    pub origins: OriginsInput,
}

/// `CrossOriginStorageManager`: one per global (`[SameObject]`).
///
/// The binding creates it once per global from the renderer's connection and what the renderer
/// knows about the global, and maps a `CosError` to the `DOMException` (or `TypeError`) of the
/// same name. The order of the checks is SPEC §3's: who may call, then validation, then the
/// browser.
///
/// ```
/// use cos_common::{CosError, OriginsInput};
/// use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, ScriptContext, block_on};
/// # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
/// # let manager = &document.manager;
/// # let connection = cos_renderer::RendererConnection::new(cos_ipc::Endpoint::pair_in_process().0)?;
/// let context = manager.context();
///
/// // No attribute at all in an insecure context.
/// let insecure = ScriptContext { secure_context: false, ..context };
/// assert!(CrossOriginStorageManager::new(connection.clone(), insecure).is_none());
///
/// block_on(async {
///     // Validation is local: a TypeError before anything is sent.
///     let bad = CosHashDict { algorithm: "MD5".into(), value: "00".into() };
///     let error = manager.get_file_handle(&bad, &CosOptions::default()).await.unwrap_err();
///     assert_eq!(error.name(), "TypeError");
///
///     // A frame whose Permissions Policy blocks the feature: NotAllowedError, even for bad input.
///     let blocked = CrossOriginStorageManager::new(connection, ScriptContext { policy_allows: false, ..context });
///     let error = blocked.unwrap().get_file_handle(&bad, &CosOptions::default()).await.unwrap_err();
///     assert_eq!(error.name(), "NotAllowedError");
///
///     // A lookup of bytes nobody stored: NotFoundError, whatever the reason.
///     let unknown = CosHashDict::sha256("ab".repeat(32));
///     let error = manager.get_file_handle(&unknown, &CosOptions::default()).await.unwrap_err();
///     assert_eq!(error, CosError::NotFound);
///
///     // `{create: true, origins: "*"}` is validated like WebIDL, then decided by the browser.
///     let global = CosOptions { create: true, origins: OriginsInput::Single("*".into()) };
///     let handle = manager.get_file_handle(&unknown, &global).await?;
///     assert!(handle.is_create());
///     Ok::<(), CosError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CrossOriginStorageManager {
    connection: Arc<RendererConnection>,
    context: ScriptContext,
}

impl CrossOriginStorageManager {
    /// The manager for a global, or `None` where the attribute is absent (insecure contexts).
    pub fn new(connection: Arc<RendererConnection>, context: ScriptContext) -> Option<Self> {
        context.secure_context.then_some(Self { connection, context })
    }

    /// The global this manager belongs to.
    pub fn context(&self) -> ScriptContext {
        self.context
    }

    /// SPEC §3, checked before validation.
    fn check_allowed(&self) -> Result<(), CosError> {
        if self.context.service_worker {
            return Err(CosError::NotAllowed(NotAllowedKind::ServiceWorker));
        }
        if !self.context.policy_allows {
            return Err(CosError::NotAllowed(NotAllowedKind::PermissionsPolicy));
        }
        if self.context.opaque_origin {
            return Err(CosError::NotAllowed(NotAllowedKind::OpaqueOrigin));
        }
        Ok(())
    }

    fn validate(hash: &CosHashDict, options: &CosOptions) -> Result<(ContentHash, OriginsOption), CosError> {
        let hash = ContentHash::parse(&hash.algorithm, &hash.value)?;
        let origins = OriginsOption::parse(&options.origins)?;
        Ok((hash, origins))
    }

    /// `getFileHandle(hash, options)`.
    pub async fn get_file_handle(
        &self,
        hash: &CosHashDict,
        options: &CosOptions,
    ) -> Result<FileSystemFileHandle, CosError> {
        self.check_allowed()?;
        let (hash, origins) = Self::validate(hash, options)?;
        self.send_get(hash, options.create, origins).await
    }

    async fn send_get(
        &self,
        hash: ContentHash,
        create: bool,
        origins: OriginsOption,
    ) -> Result<FileSystemFileHandle, CosError> {
        let frame = self.context.frame;
        // A lookup goes over the document's binding, straight to the service; a create asks the
        // broker, whose decision depends on browser state that changes (user activation).
        let get = |request| RendererToBroker::GetFileHandle { request, frame, hash, create, origins: origins.clone() };
        let mut connection =
            if create { self.connection.clone() } else { self.connection.lookup_connection(frame).await };
        let mut reply = connection.call(get);
        if reply.unsent() && !create {
            // The binding had closed (a service restart) and nothing was sent on it:
            // ask again, over a new binding or the broker.
            connection = self.connection.lookup_connection(frame).await;
            reply = connection.call(get);
        }
        match reply.await {
            CallResult::Handle { handle, create } => {
                Ok(FileSystemFileHandle::new(connection, frame, handle, hash, create))
            }
            CallResult::Failed(error) => Err(error),
            _ => Err(CosError::Unknown),
        }
    }

    /// `requestFileHandle(hash, options)`: the deprecated alias of [`get_file_handle`](Self::get_file_handle).
    pub async fn request_file_handle(
        &self,
        hash: &CosHashDict,
        options: &CosOptions,
    ) -> Result<FileSystemFileHandle, CosError> {
        self.get_file_handle(hash, options).await
    }

    /// `requestFileHandles(hashes, options)`: all or nothing; any miss is one `NotFoundError`
    /// that never says which hash missed.
    pub async fn request_file_handles(
        &self,
        hashes: &[CosHashDict],
        options: &CosOptions,
    ) -> Result<Vec<FileSystemFileHandle>, CosError> {
        self.check_allowed()?;
        let mut validated = Vec::with_capacity(hashes.len());
        for hash in hashes {
            validated.push(Self::validate(hash, options)?);
        }
        let mut handles = Vec::with_capacity(validated.len());
        let mut failure = None;
        for (hash, origins) in validated {
            match self.send_get(hash, options.create, origins).await {
                Ok(handle) => handles.push(handle),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            None => Ok(handles),
            Some(error) => Err(error),
        }
    }
}
