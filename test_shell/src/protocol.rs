//! What the shell's browser process tells its renderer processes, and what they answer. The
//! shell's own test protocol (not part of COS): it only exists so that pages run in renderer
//! processes the way a browser's would.

use serde::{Deserialize, Serialize};

/// Browser → renderer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RendererCommand {
    /// First message.
    Init {
        /// The renderer's COS pipe to its broker stub.
        cos: cos_ipc::Attached,
        /// Its network pipe to the browser's network service ([`FetchRequest`]).
        network: cos_ipc::Attached,
    },
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

/// Renderer → browser on the renderer's network pipe: fetch `url` for `frame`. One attachment:
/// the pipe the response comes back on (one per request, so a slow reader only stalls itself).
#[derive(Debug, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The frame (or the page of the worker) making the request; the browser attributes the
    /// request to that frame's origin, never to one the renderer names.
    pub frame: u64,
    /// An absolute http URL.
    pub url: String,
}

/// Browser → renderer on a request's response pipe, one message each: a head, body chunks, then
/// the end or a failure. Framed by hand (a tag byte, then raw bytes) so that body bytes are
/// never re-encoded.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchResponse {
    /// Status and header fields.
    Head {
        /// The status code.
        status: u16,
        /// Header fields in received order.
        headers: Vec<(String, String)>,
    },
    /// The next piece of the body (at most [`FETCH_CHUNK`] bytes).
    Body(Vec<u8>),
    /// The body is complete.
    End,
    /// The request failed (network error, or refused by the browser).
    Failed(String),
}

/// Body bytes per [`FetchResponse::Body`] message: under the pipes' 160 KiB message limit.
pub const FETCH_CHUNK: usize = 128 * 1024;

const TAG_HEAD: u8 = 0;
const TAG_BODY: u8 = 1;
const TAG_END: u8 = 2;
const TAG_FAILED: u8 = 3;

impl FetchResponse {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FetchResponse::Head { status, headers } => {
                let mut bytes = vec![TAG_HEAD];
                bytes.extend(postcard::to_allocvec(&(status, headers)).expect("a head always encodes"));
                bytes
            }
            FetchResponse::Body(body) => Self::body_message(body),
            FetchResponse::End => vec![TAG_END],
            FetchResponse::Failed(reason) => [&[TAG_FAILED][..], reason.as_bytes()].concat(),
        }
    }

    /// A body message for `body` without building a `FetchResponse` first.
    pub fn body_message(body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(body.len() + 1);
        bytes.push(TAG_BODY);
        bytes.extend_from_slice(body);
        bytes
    }

    /// Parses a message; `None` for anything malformed.
    pub fn decode(bytes: &[u8]) -> Option<FetchResponse> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            TAG_HEAD => {
                postcard::from_bytes(rest).ok().map(|(status, headers)| FetchResponse::Head { status, headers })
            }
            TAG_BODY => Some(FetchResponse::Body(rest.to_vec())),
            TAG_END if rest.is_empty() => Some(FetchResponse::End),
            TAG_FAILED => Some(FetchResponse::Failed(String::from_utf8_lossy(rest).into_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_responses_round_trip() {
        let messages = [
            FetchResponse::Head { status: 206, headers: vec![("Content-Range".into(), "bytes 0-1/2".into())] },
            FetchResponse::Body(vec![0, 1, 2, 255]),
            FetchResponse::Body(Vec::new()),
            FetchResponse::End,
            FetchResponse::Failed("no route".into()),
        ];
        for message in messages {
            assert_eq!(FetchResponse::decode(&message.encode()), Some(message));
        }
        assert_eq!(FetchResponse::decode(&[]), None);
        assert_eq!(FetchResponse::decode(&[9]), None);
        assert_eq!(FetchResponse::decode(&[TAG_END, 0]), None);
    }
}
