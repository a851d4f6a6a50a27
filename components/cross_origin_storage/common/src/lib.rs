//! Pure types shared by every Cross-Origin Storage (COS) crate.
//!
//! Architecture invariant: this crate does no I/O and contains no `unsafe`. Every type here can
//! only hold valid values (a [`ContentHash`] is always 32 bytes of SHA-256, an [`Origin`] is
//! always an http(s) tuple origin), so code that receives one need not re-check it; code that
//! receives *bytes* from an untrusted peer re-validates by deserialising through these types.
//!
//! ```
//! use cos_common::{ContentHash, CosError, Origin, OriginsInput, OriginsOption, Site};
//!
//! // The `{algorithm, value}` dictionary of SPEC §2.
//! let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
//! assert_eq!(ContentHash::parse("sha-256", empty)?.to_string(), empty);
//! assert_eq!(ContentHash::parse("md5", empty).unwrap_err().name(), "TypeError");
//!
//! // Schemeful sites decide same-site reads.
//! let app = Origin::from_url("https://app.example.co.uk:8443/index.html").unwrap();
//! assert_eq!(app.to_string(), "https://app.example.co.uk:8443");
//! assert_eq!(Site::of(&app).to_string(), "https://example.co.uk");
//!
//! // `origins: "*"` is the global grant; `origins: []` is the same as leaving it out.
//! assert_eq!(OriginsOption::parse(&OriginsInput::Single("*".into()))?, OriginsOption::Global);
//! assert_eq!(OriginsOption::parse(&OriginsInput::Sequence(vec![]))?, OriginsOption::Omitted);
//! # Ok::<(), CosError>(())
//! ```

#![forbid(unsafe_code)]

mod caller;
mod error;
mod hash;
pub mod interface;
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
