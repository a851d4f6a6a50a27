//! The storage layer's own errors, for operators, and their single mapping to web errors.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cos_common::{CosError, QuotaScope};

/// Failures of the blob store or the registry. Messages name paths and causes: they go to the
/// operator's log and to embedders, never to web content ([`StoreError::to_web_error`] is the
/// one place that decides what script sees).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The registry database failed.
    #[error("registry database error: {0}")]
    Registry(#[from] redb::Error),
    /// The registry is held by another process (another storage service on this profile).
    #[error("the registry at {} is already open in another process; only one storage service may own a profile", path.display())]
    RegistryLocked {
        /// The registry file.
        path: PathBuf,
    },
    /// A stored record could not be decoded.
    #[error("corrupt registry record in table {table}: {reason}")]
    CorruptRecord {
        /// Which table.
        table: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A size or position does not fit this platform's address space.
    #[error("size out of range")]
    TooLarge,
    /// A failure shared by several operations: the one sync or commit a group of writes
    /// committed together depended on, reported to each of them.
    #[error("{0}")]
    Shared(Arc<StoreError>),
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io { action, path: path.to_owned(), source }
    }

    /// Whether the filesystem ran out of space (or of the user's disk quota).
    pub fn is_out_of_space(&self) -> bool {
        let source = match self {
            Self::Shared(error) => return error.is_out_of_space(),
            Self::Io { source, .. } | Self::Registry(redb::Error::Io(source)) => source,
            _ => return false,
        };
        matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
    }

    /// The error web content sees for this failure. Logs the operator-facing details once.
    pub fn to_web_error(&self) -> CosError {
        tracing::error!(error = %self, "storage operation failed");
        if self.is_out_of_space() { CosError::QuotaExceeded(QuotaScope::Global) } else { CosError::Unknown }
    }
}

macro_rules! registry_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(error: $ty) -> Self {
                Self::Registry(error.into())
            }
        }
    )*};
}
registry_error!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// An operation's failure before it reaches the web boundary: either a decision web content is
/// told about as-is (quota, verification) or an internal fault.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A deliberate refusal, already in web terms.
    Refused(CosError),
    /// An internal fault; [`StoreError::to_web_error`] decides what script sees.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl Failure {
    /// The one mapping to web errors.
    pub(crate) fn into_web(self) -> CosError {
        match self {
            Self::Refused(error) => error,
            Self::Store(error) => error.to_web_error(),
        }
    }
}
