//! The Cross-Origin Storage service: a content-addressed blob store, its registry and the rules
//! that decide who may read what.
//!
//! - [`StorageService`] is the entry point: open it on a profile directory, then serve
//!   `getFileHandle` requests through [`StorageService::get_file_handle`]. Handles give
//!   [`WritableFile`]s (verified on close) and [`FileReader`]s.
//! - `blob_store` keeps one immutable file per verified entry; [`registry`] records
//!   entries, grants and accounting in redb; [`visibility`] holds the grant rules; [`gates`] the
//!   decision behind the global grant.
//!
//! Every web-facing failure is a [`CosError`](cos_common::CosError); every internal one is a
//! [`StoreError`], converted once, in `error.rs`.
//!
//! ```
//! use cos_common::{CallerContext, ContentHash, CosError, Origin};
//! use cos_storage_service::{CreateOptions, HandleRequest, ServiceConfig, StorageService};
//!
//! let profile = tempfile::tempdir()?;
//! let (service, _recovery) = StorageService::open(ServiceConfig::new(profile.path()))?;
//! let app = CallerContext::top_level(Origin::from_url("https://app.example")?);
//! let other = CallerContext::top_level(Origin::from_url("https://other.example")?);
//! let hash = ContentHash::parse("SHA-256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")?;
//!
//! // Nothing is visible until close() has verified the bytes against the hash.
//! let handle = service.get_file_handle(&app, hash, HandleRequest::Create(CreateOptions::same_site()))?;
//! let mut writer = handle.create_writable()?;
//! writer.write(b"abc")?;
//! writer.close()?;
//!
//! let file = service.get_file_handle(&app, hash, HandleRequest::Read)?.get_file()?;
//! assert_eq!(file.read_all()?, b"abc");
//! // Stored without `origins`: a cross-site reader is told the entry does not exist.
//! let denied = service.get_file_handle(&other, hash, HandleRequest::Read).err();
//! assert_eq!(denied, Some(CosError::NotFound));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blob_store;
mod config;
mod error;
mod faults;
#[cfg(feature = "testing")]
pub mod fixtures;
pub mod gates;
mod in_flight;
mod inspection;
mod integrity;
mod partition;
pub mod process;
pub mod registry;
mod revocation;
pub mod sandbox;
mod service;
mod shared_reads;
pub mod visibility;

pub use config::{DEFAULT_NOT_FOUND_FLOOR, ServiceConfig, StorageLimits, default_shared_read_bytes, disk_capacity};
pub use cos_common::interface::{CreateOptions, HandleRequest};
pub use cos_common::interface::{EntryInfo, OriginInfo, ProvenanceInfo};
pub use error::StoreError;
#[cfg(feature = "testing")]
pub use faults::{Fault, FaultInjector};
pub use gates::{GateConfig, GreaseMode, PublicHashList, PublicHashListBuilder, PublicHashListError};
pub use integrity::ScrubReport;
pub use partition::{ClearSiteDataReport, CommitOutcome, RecoveryReport};
pub use registry::{EntryRecord, OriginRecord, Provenance};
pub use service::{FileHandle, FileReader, SharedRead, StorageService, Streamed, WritableFile};
pub use shared_reads::SHARED_READ_MIN_BYTES;
