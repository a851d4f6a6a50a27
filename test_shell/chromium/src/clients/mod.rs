//! The real, unmodified client libraries at their real `https://` names, all on loopback.
//!
//! [`packages`] fetches the pinned npm packages once, at set-up time (`npm pack`), into a cache
//! directory; [`sites`] builds the loopback world a headless Chromium is pointed at: the model
//! hub (`huggingface.co`), the CDN serving the packages (`cdn.jsdelivr.net`) and two
//! application sites serving the client pages from `test_shell/chromium/clients/`; [`runner`]
//! runs every client page at both application sites through the bridge and measures what came
//! from the network and from Cross-Origin Storage; [`report`] judges and prints that.

pub mod packages;
pub mod report;
pub mod runner;
pub mod sites;

pub use report::ClientsReport;
pub use runner::{ClientsError, run};
