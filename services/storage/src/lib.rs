//! The Cross-Origin Storage service: a content-addressed blob store, its registry and the rules
//! that decide who may read what.
//!
//! - [`StorageService`] is the entry point: open it on a profile directory, then serve
//!   `getFileHandle` requests through [`StorageService::get_file_handle`]. Handles give
//!   [`WritableFile`]s (verified on close) and [`FileReader`]s.
//! - [`blob_store`](crate) keeps one immutable file per verified entry; [`registry`] records
//!   entries, grants and accounting in redb; [`visibility`] holds the grant rules; [`gate`] the
//!   decision behind the global grant.
//!
//! Every web-facing failure is a [`CosError`](cos_common::CosError); every internal one is a
//! [`StoreError`], converted once, in `error.rs`.

mod blob_store;
mod config;
mod error;
pub mod gate;
mod partition;
pub mod registry;
mod service;
pub mod visibility;

pub use config::{ServiceConfig, StorageLimits};
pub use error::StoreError;
pub use gate::{FailClosed, GlobalDisclosureGate, PublicHashList, PublicHashListError};
pub use partition::{ClearSiteDataReport, CommitOutcome, RecoveryReport};
pub use registry::{EntryRecord, OriginRecord, Provenance};
pub use service::{CreateOptions, FileHandle, FileReader, HandleRequest, StorageService, WritableFile};
