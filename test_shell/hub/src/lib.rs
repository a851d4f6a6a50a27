//! The loopback "hub" of the Cross-Origin Storage test shell.
//!
//! [`Hub`] serves model files the way the Hugging Face Hub does, so JavaScript clients
//! (Transformers.js-style) can be exercised for real:
//!
//! * `GET /<repo>/resolve/main/<path>` returns the file's bytes;
//! * `GET /<repo>/raw/main/<path>` returns its Git LFS pointer ([`LfsPointer`]):
//!   `version https://git-lfs.github.com/spec/v1\noid sha256:<hex>\nsize <bytes>\n` when the
//!   file is in Git LFS (by default the large binary kinds, [`is_lfs_by_default`]), and the
//!   file's own bytes when it is not (`config.json`, `tokenizer.json`, ...), as the Hub does;
//! * other added paths (e.g. `/runtime/ort-wasm.wasm`) are served as-is, without a pointer;
//! * anything else is `404`.
//!
//! It is hyper's HTTP/1.1 server on a tokio runtime that the [`Hub`] owns, on a background
//! thread, bound to `127.0.0.1:0` (keep-alive, `HEAD`, single `Range`s, CORS). Started with
//! [`Hub::start_with`] and TLS names, the same port also serves TLS with a certificate made at
//! start, and files can be served per host ([`Hub::add_for_host`], [`FileOptions`]), so a
//! browser can reach several `https://` sites on it by their real names. The hub decides
//! what each request gets; hyper parses and frames the messages. It counts the body bytes it
//! sends, in total and per `X-COS-Origin` request header (which the shell's browser process sets
//! to attribute traffic to an origin), and logs every request.
//!
//! The crate also has a small blocking client over hyper ([`get`], [`get_streaming`], [`open`]),
//! which the shell's browser process uses to implement `fetch`: callers are plain threads.
//!
//! ```
//! use cos_test_hub::{Hub, LfsPointer, get};
//!
//! let hub = Hub::start()?;
//! let file = hub.add("/Xenova/tiny/resolve/main/onnx/model.onnx", b"weights".to_vec());
//!
//! let response = get(&hub.url(&file.path), &[("X-COS-Origin", "https://a.test")])?;
//! assert_eq!(response.body, b"weights");
//!
//! let pointer = get(&hub.url("/Xenova/tiny/raw/main/onnx/model.onnx"), &[])?;
//! let pointer = LfsPointer::parse(std::str::from_utf8(&pointer.body).unwrap()).unwrap();
//! assert_eq!((pointer.sha256_hex, pointer.size), (file.sha256_hex, 7));
//! assert_eq!(hub.bytes_served_to("https://a.test"), 7);
//! hub.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod client;
mod content;
mod deadline;
mod directory;
mod echo;
mod range;
mod server;
mod tls;

pub use client::{
    CONNECT_TIMEOUT, IO_TIMEOUT, Response, ResponseHead, ResponseReader, get, get_streaming, open, open_via,
};
pub use content::LfsPointer;
pub use server::{
    FileOptions, Hub, HubFile, HubOptions, IDLE_TIMEOUT, MAX_CONNECTIONS, ORIGIN_HEADER, RequestLog, ServedCategory,
    is_lfs_by_default,
};

/// Why [`Hub::start_with`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubStartError {
    /// Binding the port or starting the runtime failed.
    #[error("the hub could not start: {0}")]
    Io(#[from] std::io::Error),
    /// The certificate could not be made (e.g. a name that is neither a DNS name nor an IP).
    #[error("making the hub's TLS certificate failed: {0}")]
    Certificate(rcgen::Error),
    /// rustls refused the configuration.
    #[error("configuring TLS failed: {0}")]
    Tls(rustls::Error),
}

/// Errors of the HTTP client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Connecting, sending or receiving failed (including timeouts).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The URL is not a supported `http://` URL.
    #[error("invalid URL {0}")]
    InvalidUrl(String),
    /// A request method or header was refused before anything was sent.
    #[error("invalid request: {0}")]
    InvalidHeader(String),
    /// The server's response is not valid HTTP/1.x (as hyper parses it).
    #[error("malformed response: {0}")]
    MalformedResponse(String),
    /// The connection ended before the response (head or body) was complete.
    #[error("connection closed before the response was complete")]
    Truncated,
}

impl HubError {
    /// As an `io::Error` (for [`std::io::Read`]): I/O errors unwrapped, a truncated body as
    /// `UnexpectedEof`, the rest as `InvalidData`.
    fn into_io(self) -> std::io::Error {
        match self {
            HubError::Io(e) => e,
            HubError::Truncated => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, HubError::Truncated),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}
