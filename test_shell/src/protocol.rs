//! What the shell's browser process tells its renderer processes, and what they answer. The
//! shell's own test protocol (not part of COS): it only exists so that pages run in renderer
//! processes the way a browser's would.

use serde::{Deserialize, Serialize};

/// Browser → renderer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RendererCommand {
    /// First message; one attachment: the renderer's COS pipe to its broker stub.
    Init,
    /// Create a frame (its own realm) for a document at `url`.
    CreateFrame {
        /// The browser's frame id.
        frame: u64,
        /// The document's URL.
        url: String,
        /// Whether it is a secure context (otherwise `navigator.crossOriginStorage` is absent).
        secure: bool,
        /// The `cross-origin-storage` Permissions Policy result.
        policy_allows: bool,
        /// The parent frame of an iframe (`window.parent`).
        parent: Option<u64>,
    },
    /// Discard a frame and its realm.
    CloseFrame {
        /// The frame.
        frame: u64,
    },
    /// Run scripts in a frame, in order (each `(file name, source)`).
    Eval {
        /// The frame.
        frame: u64,
        /// The scripts.
        scripts: Vec<(String, String)>,
    },
    /// Evaluate an expression (possibly a promise) in a frame; answers `Evaluated`.
    Evaluate {
        /// The frame.
        frame: u64,
        /// The expression.
        expression: String,
        /// Give up after this many seconds.
        timeout_secs: u64,
    },
    /// Run the testharness in a frame after `scripts`; answers `TestResults`.
    RunTests {
        /// The frame.
        frame: u64,
        /// Scripts to run after the harness (includes, then the test file).
        scripts: Vec<(String, String)>,
        /// Give up after this many seconds.
        timeout_secs: u64,
    },
}

/// Renderer → browser.
#[derive(Debug, Serialize, Deserialize)]
pub enum RendererReply {
    /// The command succeeded (no value).
    Done,
    /// An `Evaluate`'s outcome: the value as JSON, or the rejection as text.
    Evaluated(Result<String, String>),
    /// `RunTests`' results: (name, status, message).
    TestResults(Vec<(String, String, Option<String>)>),
    /// A download progressed (the demo's progress bar): (file, bytes so far, total).
    Progress(String, f64, f64),
    /// The command failed (a host error, not a script's).
    Failed(String),
}
