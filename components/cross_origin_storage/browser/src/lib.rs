//! The browser side of Cross-Origin Storage: the trusted process that knows who every document
//! is, brokers renderers' calls to the storage service, and keeps the service running.
//!
//! - [`FrameTable`]: frame id → origin, top-level site, renderer, Permissions Policy result,
//!   `Cross-Origin-Storage-Allow-Origin` ceiling, partition. The embedder fills it.
//! - [`CosHost`]: launches and supervises the storage service, and runs one broker stub per
//!   renderer. A stub accepts only its own renderer's frame ids, applies the policy checks,
//!   attaches the caller's origin and Network Isolation Key, and forwards to the service.
//! - [`Loader`]: the fetch integration for the embedder's network stack (SPEC §11): lookups
//!   that answer a request from COS, stores of fetched resources after their integrity check.
//!
//! Architecture invariant: nothing a renderer sends names an origin; the caller context comes
//! from the frame table only.
//!
//! The whole stack in one process, as a single-process embedder runs it (EMBEDDING.md has the
//! multi-process shapes): the service on a thread, a frame registered, a renderer's pipe
//! brokered, and that renderer's page storing and reading a file through `cos_renderer`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use cos_browser::{CosHost, FrameInfo, HostConfig, InProcessService, ServiceLaunch};
//! use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig};
//! use cos_common::{CosError, Origin};
//! use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, RendererConnection, ScriptContext};
//! use cos_storage_service::process::{LockDown, serve};
//!
//! # let profile = tempfile::tempdir()?;
//! # let hex = cos_test_support::callers::sha256_hex(b"weights");
//! // In-process, the service has no process to lock down; a multi-process embedder launches it
//! // sandboxed instead (`ServiceLaunch::Process`, see `CosHost`).
//! let run: InProcessService = Arc::new(|endpoint| {
//!     std::thread::spawn(move || serve(endpoint, |_| Ok(LockDown::default())));
//! });
//! let service = ServiceProcessConfig::new(profile.path().to_string_lossy());
//! let host = CosHost::start(HostConfig { launch: ServiceLaunch::InProcess(run), service })?;
//!
//! // The embedder's frame created: who the document is, decided by the browser.
//! let frame = FrameId(1);
//! host.frames().insert(frame, FrameInfo::top_level(RendererId(1), Origin::from_url("https://app.example/")?));
//!
//! // The renderer's COS pipe: the browser keeps one end, the renderer gets the other.
//! let (browser_end, renderer_end) = cos_ipc::Endpoint::pair_in_process();
//! host.register_renderer(RendererId(1), browser_end, || { /* kill that renderer */ });
//!
//! // In the renderer: `navigator.crossOriginStorage` of that frame.
//! let context =
//!     ScriptContext { frame, secure_context: true, policy_allows: true, service_worker: false, opaque_origin: false };
//! let manager = CrossOriginStorageManager::new(RendererConnection::new(renderer_end)?, context).unwrap();
//! let hash = CosHashDict::sha256(hex);
//! let read = cos_renderer::block_on(async {
//!     let create = CosOptions { create: true, ..CosOptions::default() };
//!     let mut writer = manager.get_file_handle(&hash, &create).await?.create_writable(false).await?;
//!     writer.write(b"weights")?;
//!     writer.close()?;
//!     manager.get_file_handle(&hash, &CosOptions::default()).await?.get_file().await?.read_all()
//! })?;
//! assert_eq!(read, b"weights");
//!
//! // The user clears the site's data in the browser's settings.
//! host.clear_site_data(cos_common::Partition::Regular, &Origin::from_url("https://app.example/")?)?;
//! let gone = cos_renderer::block_on(manager.get_file_handle(&hash, &CosOptions::default()));
//! assert_eq!(gone.unwrap_err(), CosError::NotFound);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod broker;
mod frame_table;
mod host;
pub mod loader;
pub mod permissions_policy;

pub use broker::MAX_IN_FLIGHT_PER_RENDERER;
pub use frame_table::{ContextKind, FrameInfo, FrameOrigin, FrameTable};
pub use host::{CosHost, HostConfig, HostError, InProcessService, ServiceLaunch};
pub use loader::{CosBody, Loader, LoaderError, StoreSink};
