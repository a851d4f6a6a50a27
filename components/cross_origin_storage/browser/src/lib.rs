//! The browser side of Cross-Origin Storage: the trusted process that knows who every document
//! is, brokers renderers' calls to the storage service, and keeps the service running.
//!
//! - [`FrameTable`]: frame id → origin, top-level site, renderer, Permissions Policy result,
//!   `Cross-Origin-Storage-Allow-Origin` ceiling, partition. The embedder fills it.
//! - [`CosHost`]: launches and supervises the storage service, and runs one broker stub per
//!   renderer. A stub accepts only its own renderer's frame ids, applies the policy checks,
//!   attaches the caller's origin and Network Isolation Key, and forwards to the service.
//! - [`Loader`]: the fetch integration for the embedder's network stack (SPEC §11): lookups
//!   that answer a request from COS, stores of fetched resources after their integrity check.
//!
//! Architecture invariant: nothing a renderer sends names an origin; the caller context comes
//! from the frame table only.

mod broker;
mod frame_table;
mod host;
pub mod loader;
pub mod permissions_policy;

pub use broker::MAX_IN_FLIGHT_PER_RENDERER;
pub use frame_table::{ContextKind, FrameInfo, FrameOrigin, FrameTable};
pub use host::{CosHost, HostConfig, HostError, InProcessService, ServiceLaunch};
pub use loader::{CosBody, Loader, LoaderError, StoreSink};
