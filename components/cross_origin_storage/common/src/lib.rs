//! Pure types shared by every Cross-Origin Storage (COS) crate.
//!
//! Architecture invariant: this crate does no I/O and contains no `unsafe`. Every type here can
//! only hold valid values (a [`ContentHash`] is always 32 bytes of SHA-256, an [`Origin`] is
//! always an http(s) tuple origin), so code that receives one need not re-check it; code that
//! receives *bytes* from an untrusted peer re-validates by deserialising through these types.

#![forbid(unsafe_code)]

mod caller;
mod error;
mod hash;
mod options;
mod origin;
mod site;

pub use caller::{CallerContext, OffTheRecordProfileId, Partition};
pub use error::NOT_FOUND_MESSAGE;
pub use error::{CosError, DataErrorKind, InvalidStateKind, NotAllowedKind, QuotaScope, TypeErrorKind};
pub use hash::{ContentHash, HashAlgorithm};
pub use options::{AllowOriginCeiling, MAX_ORIGINS_LIST_LEN, OriginsInput, OriginsOption};
pub use origin::{Origin, OriginParseError, Scheme};
pub use site::{NetworkIsolationKey, Site};
