//! The real, unmodified client libraries at their real `https://` names, all on loopback.
//!
//! [`packages`] fetches the pinned npm packages once, at set-up time (`npm pack`), into a cache
//! directory; [`sites`] builds the loopback world a headless Chromium is pointed at: the model
//! hub (`huggingface.co`), the CDN serving the packages (`cdn.jsdelivr.net`) and two
//! application sites serving the client pages from `test_shell/chromium/clients/`.

pub mod packages;
pub mod sites;
