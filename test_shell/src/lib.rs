//! The Cross-Origin Storage test shell as a library: the JavaScript host, pages with the COS
//! stack behind them, and the demo. The `test_shell` binary is a thin command line over it.
//!
//! ```
//! use std::time::Duration;
//! use test_shell::js::{JsHost, TESTHARNESS_JS};
//!
//! let host = JsHost::new(false)?;
//! let realm = host.realm()?;
//! host.eval(&realm, "testharness.js", TESTHARNESS_JS)?;
//! host.eval(&realm, "adds.js", "test(() => assert_equals(1 + 1, 2), 'adds');")?;
//! let results = host.run_tests(Duration::from_secs(10))?;
//! assert_eq!((results[0].name.as_str(), results[0].status.as_str()), ("adds", "PASS"));
//! # Ok::<(), test_shell::js::JsError>(())
//! ```

pub mod channel;
pub mod console;
mod cos_js;
pub use cos_js::generate as generated_bytes;
pub mod demo;
pub mod document;
mod harness;
pub mod internals;
pub use harness::{ScenarioConfig, run_scenario};
mod fetch;
pub mod js;
pub mod logging;
mod network;
pub mod page;
pub mod protocol;
pub mod renderer;
pub mod servers;
pub mod sri;
mod url_js;
