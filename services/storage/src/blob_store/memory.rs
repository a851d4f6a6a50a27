//! Blobs in memory, for off-the-record profiles: nothing touches the disk, everything is gone
//! when the profile closes.

use std::collections::HashMap;
use std::sync::Arc;

use cos_common::ContentHash;
use parking_lot::RwLock;

use super::BlobSource;

/// The in-memory blob map.
#[derive(Default)]
pub(crate) struct MemoryBlobs {
    blobs: RwLock<HashMap<ContentHash, Arc<[u8]>>>,
}

impl MemoryBlobs {
    pub(crate) fn install(&self, hash: &ContentHash, bytes: Arc<[u8]>) {
        self.blobs.write().insert(*hash, bytes);
    }

    pub(crate) fn open(&self, hash: &ContentHash) -> Option<BlobSource> {
        self.blobs.read().get(hash).cloned().map(BlobSource::Memory)
    }

    pub(crate) fn remove(&self, hash: &ContentHash) {
        self.blobs.write().remove(hash);
    }
}
