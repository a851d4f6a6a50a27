//! Store helpers for the storage service's own tests: a profile in a scratch directory and the
//! write-then-read steps every test repeats.
//!
//! The helpers return the service's errors rather than unwrapping them, so each test states what
//! it expects.

use std::path::{Path, PathBuf};

use cos_common::{CallerContext, ContentHash, CosError};
use cos_storage_service::{
    CommitOutcome, CreateOptions, HandleRequest, RecoveryReport, ServiceConfig, StorageLimits, StorageService,
};

use crate::callers::hash_of;

/// A browser profile in a scratch directory, deleted when dropped.
#[derive(Debug)]
pub struct Profile {
    dir: tempfile::TempDir,
    limits: Option<StorageLimits>,
}

impl Profile {
    /// A profile whose store is sized from the disk, as a browser's is.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("a scratch directory"), limits: None }
    }

    /// A profile whose store has the given `limits`.
    pub fn with_limits(limits: StorageLimits) -> Self {
        Self { limits: Some(limits), ..Self::new() }
    }

    /// The profile directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The service's configuration for this profile.
    pub fn config(&self) -> ServiceConfig {
        let config = ServiceConfig::new(self.path());
        match self.limits {
            Some(limits) => config.with_limits(limits),
            None => config,
        }
    }

    /// Opens the service on the profile, whatever recovery found.
    pub fn open(&self) -> StorageService {
        self.reopen().0
    }

    /// Opens the service on a profile that must need no recovery (a fresh one).
    pub fn open_fresh(&self) -> StorageService {
        let (service, report) = self.reopen();
        assert_eq!(report, RecoveryReport::default(), "a fresh store needs no recovery");
        service
    }

    /// Opens the service again, with what recovery found.
    pub fn reopen(&self) -> (StorageService, RecoveryReport) {
        StorageService::open(self.config()).expect("the store opens")
    }

    /// The store's directory inside the profile.
    pub fn root(&self) -> PathBuf {
        self.path().join("cos")
    }

    /// Where the blob of `hash` lives.
    pub fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        blob_path(self.path(), hash)
    }

    /// Blob files in the store.
    pub fn blob_files(&self) -> usize {
        let shards = std::fs::read_dir(self.root().join("blobs")).expect("the blob directory");
        shards.map(|shard| std::fs::read_dir(shard.expect("a shard").path()).expect("a shard").count()).sum()
    }

    /// Swap files in the store (writers in flight, or left by a crash until recovery).
    pub fn swap_files(&self) -> usize {
        std::fs::read_dir(self.root().join("swap")).expect("the swap directory").count()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::new()
    }
}

/// Opens the service on `profile_dir` with the default configuration.
pub fn open(profile_dir: &Path) -> StorageService {
    StorageService::open(ServiceConfig::new(profile_dir)).expect("the store opens").0
}

/// Where the blob of `hash` lives in the store of `profile_dir`.
pub fn blob_path(profile_dir: &Path, hash: &ContentHash) -> PathBuf {
    profile_dir.join("cos").join("blobs").join(hash.shard()).join(hash.to_hex())
}

/// Stores `bytes` for `who` with `options`, in one write.
pub fn store_with(
    service: &StorageService,
    who: &CallerContext,
    bytes: &[u8],
    options: CreateOptions,
) -> Result<CommitOutcome, CosError> {
    store_in_pieces(service, who, bytes, options, bytes.len().max(1))
}

/// Stores `bytes` for `who` with `options`, written `piece` bytes at a time (as the data pipe
/// delivers them).
pub fn store_in_pieces(
    service: &StorageService,
    who: &CallerContext,
    bytes: &[u8],
    options: CreateOptions,
    piece: usize,
) -> Result<CommitOutcome, CosError> {
    let handle = service.get_file_handle(who, hash_of(bytes), HandleRequest::Create(options))?;
    let mut writer = handle.create_writable()?;
    for piece in bytes.chunks(piece) {
        writer.write(piece)?;
    }
    writer.close()
}

/// Stores `bytes` for `who`, readable by its own site only.
pub fn store(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> Result<CommitOutcome, CosError> {
    store_with(service, who, bytes, CreateOptions::same_site())
}

/// The whole content of `hash`, as `who` may read it.
pub fn read_hash(service: &StorageService, who: &CallerContext, hash: ContentHash) -> Result<Vec<u8>, CosError> {
    service.get_file_handle(who, hash, HandleRequest::Read)?.get_file()?.read_all()
}

/// The whole content stored under the hash of `bytes`, as `who` may read it.
pub fn read(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> Result<Vec<u8>, CosError> {
    read_hash(service, who, hash_of(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callers::caller;

    #[test]
    fn stored_bytes_read_back_and_survive_a_restart() {
        let profile = Profile::new();
        let app = caller("https://app.example");
        let service = profile.open_fresh();
        let outcome = store_in_pieces(&service, &app, b"hello, store", CreateOptions::same_site(), 5).unwrap();
        assert!(outcome.new_blob);
        assert_eq!(read(&service, &app, b"hello, store").unwrap(), b"hello, store");
        drop(service);
        assert_eq!((profile.blob_files(), profile.swap_files()), (1, 0));
        assert!(profile.blob_path(&hash_of(b"hello, store")).is_file());
        assert_eq!(read(&profile.open(), &app, b"hello, store").unwrap(), b"hello, store");
    }
}
