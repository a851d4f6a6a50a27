//! Test seams of a partition (`testing` feature only): holding group commits so that a test can
//! make writers meet at the commit point, and counting what is queued and committed.

use parking_lot::{Condvar, Mutex};

use super::PartitionStore;

/// A gate a group's leader waits at, after taking the commit lock and before taking the queue.
#[derive(Default)]
pub(super) struct CommitGate {
    held: Mutex<bool>,
    opened: Condvar,
}

impl CommitGate {
    /// Waits while the gate is held.
    pub(super) fn wait_open(&self) {
        let mut held = self.held.lock();
        while *held {
            self.opened.wait(&mut held);
        }
    }

    fn set(&self, hold: bool) {
        *self.held.lock() = hold;
        if !hold {
            self.opened.notify_all();
        }
    }
}

impl PartitionStore {
    /// Holds (or releases) the next group's leader before it takes the commit queue.
    pub(crate) fn hold_commits(&self, hold: bool) {
        self.commit_gate.set(hold);
    }

    /// Verified writes waiting in the commit queue now.
    pub(crate) fn queued_commits(&self) -> usize {
        self.commit_queue.len()
    }

    /// Bytes written to swap files since the partition opened (0 in memory).
    pub(crate) fn swap_bytes_written(&self) -> u64 {
        match &self.blobs {
            crate::blob_store::BlobStore::Disk(disk) => disk.swap_bytes_written(),
            crate::blob_store::BlobStore::Memory(_) => 0,
        }
    }

    /// Groups of writers sharing a swap file now.
    pub(crate) fn write_groups(&self) -> usize {
        match &self.blobs {
            crate::blob_store::BlobStore::Disk(disk) => disk.write_groups(),
            crate::blob_store::BlobStore::Memory(_) => 0,
        }
    }

    /// Registry transactions committed (or attempted) since the partition opened.
    pub(crate) fn registry_commits(&self) -> u64 {
        self.registry.commits()
    }
}
