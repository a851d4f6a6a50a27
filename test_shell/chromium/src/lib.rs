//! Hosts `navigator.crossOriginStorage` in real headless Chromium.
//!
//! Chromium plays the renderer; the trusted side (broker stubs, the sandboxed storage service)
//! is ours. See ARCHITECTURE.md, "The Chromium bridge".

pub mod clients;
