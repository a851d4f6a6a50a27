//! Fault injection: every write, sync and rename of the blob store and of the registry goes
//! through [`FaultInjector::check`], so that a test can make the n-th one fail the way a full or
//! failing disk would (`ENOSPC`, `EIO` on write, a failed `fsync`, a failed `rename`).
//!
//! An armed injector fails exactly one operation, then disarms itself: the fault has cleared.
//!
//! The injector exists only with the `testing` feature. Without it, [`Faults`] holds nothing and
//! every check is a constant `Ok`, so a product build has no way to make its own I/O fail.

use std::fmt;
use std::io;
#[cfg(feature = "testing")]
use std::ops::Bound;
#[cfg(feature = "testing")]
use std::sync::Arc;
#[cfg(feature = "testing")]
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "testing")]
use parking_lot::Mutex;

/// A disk failure to inject.
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A write (or a file growing) fails with `ENOSPC`: the disk is full.
    NoSpace,
    /// A write fails with `EIO`.
    WriteFailed,
    /// An `fsync`/`fdatasync` fails with `EIO`.
    SyncFailed,
    /// A `rename` fails with `EIO`.
    RenameFailed,
}

/// The I/O operations an injector counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "testing"), allow(dead_code, reason = "only an injector tells them apart"))]
pub(crate) enum IoOp {
    Write,
    Sync,
    Rename,
}

#[cfg(feature = "testing")]
impl Fault {
    fn hits(self, op: IoOp) -> bool {
        matches!(
            (self, op),
            (Self::NoSpace | Self::WriteFailed, IoOp::Write)
                | (Self::SyncFailed, IoOp::Sync)
                | (Self::RenameFailed, IoOp::Rename)
        )
    }

    fn error(self) -> io::Error {
        match self {
            Self::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
            Self::WriteFailed | Self::SyncFailed | Self::RenameFailed => io::Error::from_raw_os_error(libc::EIO),
        }
    }
}

/// Fails the n-th matching I/O operation of a store (test seam: see
/// [`ServiceConfig::with_fault_injector`](crate::ServiceConfig::with_fault_injector)).
#[cfg(feature = "testing")]
#[derive(Debug, Default)]
pub struct FaultInjector {
    armed: Mutex<Option<(Fault, u64)>>,
    injected: AtomicU64,
}

#[cfg(feature = "testing")]
impl FaultInjector {
    /// A disarmed injector, to share with a store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes the operation after the next `skip` operations that `fault` applies to fail.
    pub fn arm(&self, fault: Fault, skip: u64) {
        *self.armed.lock() = Some((fault, skip));
    }

    /// Fails nothing more.
    pub fn disarm(&self) {
        *self.armed.lock() = None;
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Acquire)
    }

    /// Called before every counted operation: the injected error, if this one is to fail.
    pub(crate) fn check(&self, op: IoOp) -> io::Result<()> {
        let mut armed = self.armed.lock();
        let Some((fault, skip)) = armed.as_mut() else { return Ok(()) };
        if !fault.hits(op) {
            return Ok(());
        }
        if *skip > 0 {
            *skip -= 1;
            return Ok(());
        }
        let error = fault.error();
        *armed = None;
        self.injected.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(?op, %error, "injected an I/O fault");
        Err(error)
    }
}

/// An optional injector, as the store's file code holds it.
#[derive(Clone, Default)]
pub(crate) struct Faults {
    #[cfg(feature = "testing")]
    injector: Option<Arc<FaultInjector>>,
}

impl Faults {
    /// The store's injector, if its configuration has one.
    #[cfg(feature = "testing")]
    pub(crate) fn of(config: &crate::ServiceConfig) -> Self {
        Self { injector: config.faults.clone() }
    }

    /// No injector: a product build's configuration cannot carry one.
    #[cfg(not(feature = "testing"))]
    pub(crate) fn of(_config: &crate::ServiceConfig) -> Self {
        Self::none()
    }

    /// No injector: every operation goes through.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Called before every counted operation: the injected error, if this one is to fail.
    #[cfg(feature = "testing")]
    pub(crate) fn check(&self, op: IoOp) -> io::Result<()> {
        match &self.injector {
            Some(injector) => injector.check(op),
            None => Ok(()),
        }
    }

    /// Without the test seam nothing can fail an operation on purpose.
    #[cfg(not(feature = "testing"))]
    #[inline(always)]
    pub(crate) fn check(&self, _op: IoOp) -> io::Result<()> {
        Ok(())
    }

    /// Whether an injector is attached (so the registry needs the counting file backend).
    #[cfg(feature = "testing")]
    pub(crate) fn is_active(&self) -> bool {
        self.injector.is_some()
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "testing")]
        if self.is_active() {
            return f.write_str("Faults(injector)");
        }
        f.write_str("Faults(none)")
    }
}

/// The registry's file, with its writes and syncs counted by the injector.
#[cfg(feature = "testing")]
#[derive(Debug)]
pub(crate) struct FaultyFileBackend {
    inner: redb::backends::FileBackend,
    faults: Faults,
}

#[cfg(feature = "testing")]
impl FaultyFileBackend {
    pub(crate) fn new(file: std::fs::File, faults: Faults) -> Result<Self, redb::DatabaseError> {
        Ok(Self { inner: redb::backends::FileBackend::new(file)?, faults })
    }
}

#[cfg(feature = "testing")]
impl redb::StorageBackend for FaultyFileBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check(IoOp::Write)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check(IoOp::Sync)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.check(IoOp::Write)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[test]
    fn fails_exactly_the_chosen_operation_once() {
        let injector = FaultInjector::new();
        injector.arm(Fault::SyncFailed, 2);
        assert!(injector.check(IoOp::Write).is_ok(), "writes are not counted for a sync fault");
        assert!(injector.check(IoOp::Sync).is_ok());
        assert!(injector.check(IoOp::Sync).is_ok());
        assert_eq!(injector.check(IoOp::Sync).unwrap_err().raw_os_error(), Some(libc::EIO));
        assert!(injector.check(IoOp::Sync).is_ok(), "the fault cleared");
        assert_eq!(injector.injected(), 1);
    }

    #[test]
    fn a_full_disk_is_enospc() {
        let injector = FaultInjector::new();
        injector.arm(Fault::NoSpace, 0);
        let error = injector.check(IoOp::Write).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }
}
