//! What the tests, benchmarks and fuzz bodies of the workspace share, written once: deterministic
//! data ([`rng`]), measurement helpers ([`measure`]), the callers and hashes every store test
//! starts from ([`callers`]) and the conformance files every JavaScript host runs
//! ([`conformance`]). With the `storage` feature, a scratch profile and the store's
//! write-then-read steps (`storage`); with `browser`, a storage service process behind a browser
//! host and the child roles of self-re-executing test binaries (`fixture`).
//!
//! Only ever a dev-dependency (or a dependency of a bench or fuzz crate): nothing here may reach
//! a product build.

pub mod callers;
pub mod conformance;
#[cfg(feature = "storage")]
pub mod fixture;
pub mod measure;
pub mod rng;
#[cfg(feature = "storage")]
pub mod storage;
