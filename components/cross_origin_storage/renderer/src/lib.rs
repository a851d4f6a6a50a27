//! The renderer side of Cross-Origin Storage: what a DOM binding (Blink-, Servo- or QuickJS-
//! style) calls to implement `navigator.crossOriginStorage`.
//!
//! [`CrossOriginStorageManager`] validates like WebIDL (TypeError locally, after the
//! Permissions Policy check), sends the request to the broker over the renderer's COS pipe and
//! resolves with a [`FileSystemFileHandle`]. Files and writable streams use a data pipe of their
//! own, straight to the storage service.
//!
//! Architecture invariant: no origin appears anywhere in this crate. Requests name a frame id;
//! the browser knows who that frame is.
//!
//! Control calls (`get_file_handle`, `get_file`, `create_writable`) are `async`: they wait for
//! the broker's reply, which a background thread delivers. Data-pipe operations (reads, writes,
//! `close`) are synchronous and apply backpressure: they block while the service is busy with
//! the previous chunk.
//!
//! What a DOM binding does for a page's store-then-read (the set-up — a browser host with its
//! storage service, this renderer's pipe registered with it — is hidden; EMBEDDING.md shows it
//! for each engine shape):
//!
//! ```
//! use cos_common::CosError;
//! use cos_renderer::{CosHashDict, CosOptions, block_on};
//! # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
//! # let manager = &document.manager;
//! # let hex = cos_test_support::callers::sha256_hex(b"model weights");
//!
//! // const hash = {algorithm: "SHA-256", value: hex};
//! let hash = CosHashDict::sha256(hex);
//! block_on(async {
//!     // getFileHandle(hash, {create: true}) → createWritable() → write(bytes) → close()
//!     let create = CosOptions { create: true, ..CosOptions::default() };
//!     let mut writer = manager.get_file_handle(&hash, &create).await?.create_writable(false).await?;
//!     writer.write(b"model weights")?;
//!     writer.close()?; // verified against the hash; visible from now on
//!
//!     // getFileHandle(hash) → getFile() → arrayBuffer()
//!     let file = manager.get_file_handle(&hash, &CosOptions::default()).await?.get_file().await?;
//!     assert_eq!(file.read_all()?, b"model weights");
//!     Ok::<(), CosError>(())
//! })?;
//! # Ok::<(), CosError>(())
//! ```

mod connection;
mod executor;
mod file;
mod handle;
mod manager;
mod writable;

pub use connection::{MAX_IN_FLIGHT, RendererConnection};
pub use executor::block_on;
pub use file::{File, FileBytes};
pub use handle::{FileSystemFileHandle, PermissionMode, PermissionState};
pub use manager::{CosHashDict, CosOptions, CrossOriginStorageManager, ScriptContext};
pub use writable::FileSystemWritableFileStream;
