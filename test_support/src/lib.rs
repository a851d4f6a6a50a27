//! What the tests, benchmarks and fuzz bodies of the workspace share, written once: deterministic
//! data ([`rng`]), measurement helpers ([`measure`]) and the callers and hashes every store test
//! starts from ([`callers`]).
//!
//! Only ever a dev-dependency (or a dependency of a bench or fuzz crate): nothing here may reach
//! a product build.

pub mod callers;
pub mod measure;
pub mod rng;
