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

mod connection;
mod executor;
mod file;
mod handle;
mod manager;
mod writable;

pub use connection::{MAX_IN_FLIGHT, RendererConnection};
pub use executor::block_on;
pub use file::File;
pub use handle::{FileSystemFileHandle, PermissionMode, PermissionState};
pub use manager::{CosHashDict, CosOptions, CrossOriginStorageManager, ScriptContext};
pub use writable::FileSystemWritableFileStream;
