//! A DevTools-protocol driver for headless Chromium over `--remote-debugging-pipe`: the
//! launcher ([`chromium`]) and the protocol client ([`client`]).

pub mod chromium;
pub mod client;

use std::path::PathBuf;

pub use chromium::{ChromiumProcess, find_chromium};
pub use client::{Client, Event};

/// What went wrong driving Chromium (operator-facing).
#[derive(Debug, thiserror::Error)]
pub enum DevToolsError {
    /// No Chromium to run.
    #[error("Chromium not found: install it (`apt-get install chromium`) or set CHROMIUM= to its executable{0}")]
    NotFound(String),
    /// Chromium could not be started.
    #[error("could not start Chromium at {path}: {error}")]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Chromium went away.
    #[error("Chromium exited; the end of its stderr:\n{stderr_tail}")]
    Died {
        /// The last lines Chromium wrote.
        stderr_tail: String,
    },
    /// A command failed.
    #[error("DevTools {method}: {message}")]
    Command {
        /// The method.
        method: String,
        /// Chromium's error message.
        message: String,
    },
    /// A command got no answer (a hang guard, not a timing assertion).
    #[error("DevTools {method}: no answer within {seconds} s")]
    Timeout {
        /// The method.
        method: String,
        /// The bound.
        seconds: u64,
    },
    /// An operating-system error.
    #[error("I/O: {0}")]
    Io(std::io::Error),
}
