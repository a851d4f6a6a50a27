//! Web-facing errors. Each variant is a DOMException name of SPEC §8 (or TypeError); messages are
//! fixed texts chosen here, so they can never carry a path, a hash or another origin's data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The one message every failed read reports (SPEC §6: misses, scope, gates and budget look
/// identical).
pub const NOT_FOUND_MESSAGE: &str = "The requested file could not be found.";

/// A failure as web content sees it: a DOM binding throws a `DOMException` named
/// [`name`](Self::name) with [`message`](Self::message) (a `TypeError` for
/// [`Type`](Self::Type)). Messages are fixed texts: no path, hash or other origin reaches a page.
///
/// ```
/// use cos_common::CosError;
///
/// let error = CosError::NotFound;
/// assert_eq!(error.name(), "NotFoundError");
/// assert_eq!(error.message(), cos_common::NOT_FOUND_MESSAGE);
/// assert_eq!(CosError::Abort.name(), "AbortError"); // the service restarted: try again
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CosError {
    /// `NotFoundError`: miss, out of scope, gated, GREASE, over budget, in-flight only.
    #[error("NotFoundError: {NOT_FOUND_MESSAGE}")]
    NotFound,
    /// `NotAllowedError`.
    #[error("NotAllowedError: {0}")]
    NotAllowed(NotAllowedKind),
    /// `TypeError` (a JavaScript TypeError, thrown before anything is looked up).
    #[error("TypeError: {0}")]
    Type(TypeErrorKind),
    /// `DataError`: the written bytes do not hash to the requested value.
    #[error("DataError: {0}")]
    Data(DataErrorKind),
    /// `QuotaExceededError`.
    #[error("QuotaExceededError: {0}")]
    QuotaExceeded(QuotaScope),
    /// `InvalidStateError`.
    #[error("InvalidStateError: {0}")]
    InvalidState(InvalidStateKind),
    /// `DataCloneError`: a handle cannot be transferred to another origin.
    #[error("DataCloneError: File handles from Cross-Origin Storage can only be transferred within the same origin.")]
    DataClone,
    /// `AbortError`: the storage service went away mid-operation (the next call reconnects).
    #[error("AbortError: The storage service was interrupted; try again.")]
    Abort,
    /// `UnknownError`: an internal failure (I/O, registry); details go to the browser's log only.
    #[error("UnknownError: The storage service failed to complete the operation.")]
    Unknown,
}

impl CosError {
    /// The DOMException (or `TypeError`) name script sees.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NotFound => "NotFoundError",
            Self::NotAllowed(_) => "NotAllowedError",
            Self::Type(_) => "TypeError",
            Self::Data(_) => "DataError",
            Self::QuotaExceeded(_) => "QuotaExceededError",
            Self::InvalidState(_) => "InvalidStateError",
            Self::DataClone => "DataCloneError",
            Self::Abort => "AbortError",
            Self::Unknown => "UnknownError",
        }
    }

    /// The message script sees (without the name).
    pub fn message(&self) -> String {
        let full = self.to_string();
        match full.split_once(": ") {
            Some((_, message)) => message.to_owned(),
            None => full,
        }
    }
}

macro_rules! message_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text,)+ })
            }
        }
    };
}

message_enum! {
    /// Why a call was not allowed.
    NotAllowedKind {
        /// The `cross-origin-storage` Permissions Policy feature is not enabled for the frame.
        PermissionsPolicy => "The 'cross-origin-storage' feature is not enabled by Permissions Policy in this document.",
        /// Service workers may not use COS.
        ServiceWorker => "Cross-Origin Storage is not available in service workers.",
        /// Sandboxed frames and `data:` documents have opaque origins.
        OpaqueOrigin => "Cross-Origin Storage is not available to documents with an opaque origin.",
        /// `getFile()` on a create handle whose own write has not verified.
        HandleNotReadable => "This handle was created for writing; it becomes readable once its own write has been verified.",
        /// `createWritable()` on a handle obtained for reading.
        HandleNotWritable => "This handle was obtained for reading; request it with {create: true} to write.",
        /// `move()` or `remove()`: entries are immutable and shared.
        EntryImmutable => "Cross-Origin Storage entries cannot be moved or removed by script.",
    }
}

message_enum! {
    /// Which validation rule a request broke.
    TypeErrorKind {
        /// `algorithm` is not SHA-256.
        UnsupportedAlgorithm => "Only SHA-256 is supported.",
        /// `value` is not 64 lowercase hex digits.
        MalformedHashValue => "The hash value must be 64 lowercase hexadecimal characters.",
        /// An `origins` entry is not an http(s) URL with a tuple origin.
        InvalidOrigin => "Each entry of 'origins' must be an http or https URL.",
        /// More than 100 `origins`.
        TooManyOrigins => "'origins' may name at most 100 origins.",
        /// A required dictionary member is missing or has the wrong type.
        MissingMember => "The hash dictionary requires 'algorithm' and 'value' strings.",
        /// A write/seek/truncate argument is invalid.
        InvalidWriteParams => "Invalid parameters for the writable stream operation.",
    }
}

message_enum! {
    /// Why a write did not verify.
    DataErrorKind {
        /// The final bytes hash to something else.
        HashMismatch => "The written data does not match the requested hash.",
        /// `close()` with nothing written.
        NothingWritten => "Nothing was written; the empty file does not match the requested hash.",
    }
}

message_enum! {
    /// Which limit a write exceeded.
    QuotaScope {
        /// The caller's own per-origin limit.
        Origin => "The origin's Cross-Origin Storage limit would be exceeded.",
        /// The whole store's cap.
        Global => "Cross-Origin Storage is full.",
        /// The per-renderer bound on open handles or streams.
        Renderer => "Too many Cross-Origin Storage handles or streams are open in this renderer.",
        /// The entry already records as many storing origins as an entry may hold.
        Entry => "This file already has as many storing origins as Cross-Origin Storage records.",
    }
}

message_enum! {
    /// Why an object was in the wrong state.
    InvalidStateKind {
        /// `createSyncAccessHandle()` is not supported on COS handles.
        SyncAccessHandle => "Synchronous access handles are not available for Cross-Origin Storage.",
        /// The writable stream was already closed, aborted or errored.
        StreamClosed => "The writable stream is closed.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        assert_eq!(CosError::NotFound.name(), "NotFoundError");
        assert_eq!(CosError::NotFound.message(), NOT_FOUND_MESSAGE);
        assert_eq!(CosError::Type(TypeErrorKind::UnsupportedAlgorithm).name(), "TypeError");
        assert_eq!(CosError::Type(TypeErrorKind::UnsupportedAlgorithm).message(), "Only SHA-256 is supported.");
        assert_eq!(CosError::QuotaExceeded(QuotaScope::Global).name(), "QuotaExceededError");
        assert_eq!(CosError::Unknown.name(), "UnknownError");
    }

    #[test]
    fn messages_never_mention_paths() {
        let all = [
            CosError::NotFound,
            CosError::NotAllowed(NotAllowedKind::HandleNotReadable),
            CosError::Data(DataErrorKind::HashMismatch),
            CosError::QuotaExceeded(QuotaScope::Origin),
            CosError::InvalidState(InvalidStateKind::StreamClosed),
            CosError::DataClone,
            CosError::Abort,
            CosError::Unknown,
        ];
        for error in all {
            let text = error.to_string();
            assert!(!text.contains('/') || text.contains("{create"), "{text}");
        }
    }
}
