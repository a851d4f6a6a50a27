//! What the shell's browser process tells its renderer processes, and what they answer. The
//! shell's own test protocol (not part of COS): it only exists so that pages run in renderer
//! processes the way a browser's would.

use serde::{Deserialize, Serialize};

/// How a renderer reaches its broker stub (`test_shell run --renderer-transport`).
#[derive(Debug, Serialize, Deserialize)]
pub enum CosLink {
    /// A `cos_ipc` pipe (the default).
    CosIpc(cos_ipc::Attached),
    /// An `ipc-channel` link, bootstrapped as an embedder would: the renderer connects to this
    /// `IpcOneShotServer`, sends it a sender, and receives its `RendererLink` on it.
    IpcChannel {
        /// The one-shot server's name.
        server: String,
    },
}

/// Browser → renderer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RendererCommand {
    /// First message: the renderer's pipes, and the bound of its control messages.
    Init {
        /// The largest message either side may send on the control pipe
        /// ([`Channel`](crate::channel::Channel)), so that the renderer fails a too large
        /// reply itself rather than have the browser drop it.
        message_limit: u64,
        /// The renderer's COS link to its broker stub, over the transport `test_shell run
        /// --renderer-transport` chose.
        cos: CosLink,
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
        /// The frame id the browser registered for the service workers this document
        /// registers (a frame of the service-worker kind): their requests name it, so the
        /// browser tells them apart from the page's (COS fails closed for them).
        service_worker_frame: u64,
        /// The document's markup (an HTML response's body); `None`: an empty document. Answered
        /// by `Iframes`: the document's `<iframe>` elements, for the browser to create.
        document: Option<String>,
    },
    /// Run a frame's document (its scripts and links, in HTML's order) until its window's
    /// `load` event; `children` are the frame ids of its `<iframe>`s in document order
    /// (`None` where no child frame was made).
    RunDocument {
        /// The frame.
        frame: u64,
        /// The child frames of its `<iframe>` elements.
        children: Vec<Option<u64>>,
        /// Give up after this many seconds.
        timeout_secs: u64,
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
    /// Wait for the testharness a frame's document loaded itself (an `.html` test) to
    /// complete; answers `TestResults`.
    AwaitTests {
        /// The frame.
        frame: u64,
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
    /// A realm wrote a console line while the renderer ran a command; sent before the
    /// command's answer, so the browser prints lines in the order they were written.
    Console {
        /// Which `console` method.
        level: crate::console::Level,
        /// The realm's origin (for display only; the browser trusts nothing else in it).
        origin: String,
        /// The line.
        text: String,
    },
    /// A created frame's `<iframe>` elements in document order (`CreateFrame`'s answer).
    Iframes(Vec<crate::document::IframeElement>),
    /// The command failed (a host error, not a script's).
    Failed(String),
}

/// Renderer → browser on the renderer's network pipe: fetch `url` for `frame`, answering on
/// `response` (one pipe per request, so a slow reader only stalls itself).
#[derive(Debug, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The frame (or the page of the worker) making the request; the browser attributes the
    /// request to that frame's origin, never to one the renderer names.
    pub frame: u64,
    /// An absolute http URL.
    pub url: String,
    /// The request's `integrity` metadata, if any (parsed by the browser, SRI's rules).
    pub integrity: Option<RequestText>,
    /// The request's `crossOriginStorage` member, if present (SPEC §11).
    pub cross_origin_storage: Option<FetchScope>,
    /// The pipe the [`FetchResponse`] messages come back on.
    pub response: cos_ipc::Attached,
}

/// A request's `crossOriginStorage` member, validated: `''` (and `[]`) is the same-site scope
/// (`OriginsOption::Omitted`), `'*'` the global one, a sequence a list; the dictionary form adds
/// `contentType`. Decoding validates it again (an invalid list does not decode: a bad message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchScope {
    /// Who may read what the fetch stores.
    pub origins: cos_common::OriginsOption,
    /// The `Content-Type` of a response served from COS (none otherwise).
    pub content_type: Option<RequestText>,
}

/// Request text that fits a header value: at most [`RequestText::MAX_BYTES`] of visible ASCII,
/// spaces and tabs. Only such text decodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestText(String);

impl RequestText {
    /// The longest text accepted.
    pub const MAX_BYTES: usize = 8 * 1024;

    /// The text, if it is acceptable.
    pub fn new(text: String) -> Option<Self> {
        let fits = text.len() <= Self::MAX_BYTES && text.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        fits.then_some(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestText {
    type Error = &'static str;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(text).ok_or("not header text")
    }
}

impl From<RequestText> for String {
    fn from(text: RequestText) -> String {
        text.0
    }
}

/// Browser → renderer on a request's response pipe, one message each: a head, body chunks, then
/// the end or a failure. Encoded with postcard (`cos_ipc::encode` / `cos_ipc::decode`) like the
/// other messages.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchResponse {
    /// Status and header fields.
    Head {
        /// The status code.
        status: u16,
        /// Header fields (names lowercase).
        headers: Vec<(String, String)>,
        /// The response's URL (the last one after redirects).
        url: String,
        /// Whether a redirect was followed.
        redirected: bool,
    },
    /// The next piece of the body (at most [`FETCH_CHUNK`] bytes).
    Body(#[serde(with = "byte_string")] Vec<u8>),
    /// The body is complete.
    End,
    /// The request failed (network error, or refused by the browser).
    Failed(String),
    /// Sent before [`End`](Self::End) when the browser stored the response in Cross-Origin
    /// Storage and the verdict has warnings for the page's console (fixed texts, SPEC §5).
    StoreWarnings(cos_common::interface::WriteWarnings),
}

/// Body bytes per [`FetchResponse::Body`] message: under the pipes' 160 KiB message limit.
pub const FETCH_CHUNK: usize = 128 * 1024;

/// `Vec<u8>` as one serde byte string. serde's default for `Vec<u8>` is a sequence of `u8`s:
/// the same bytes in postcard, but produced and checked one element at a time, which is most of
/// the cost of a 128 KiB body message.
mod byte_string {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(ByteBuf)
    }

    struct ByteBuf;

    impl<'de> Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_text_and_scopes_validate_on_decode() {
        assert!(RequestText::new("sha256-abc= sha384-x?y".into()).is_some());
        assert!(RequestText::new("a\nb".into()).is_none());
        assert!(RequestText::new("x".repeat(RequestText::MAX_BYTES + 1)).is_none());
        let bad = cos_ipc::encode(&"line\nbreak".to_owned()).unwrap();
        assert!(cos_ipc::decode::<RequestText>(&bad).is_err());
        let scope =
            FetchScope { origins: cos_common::OriginsOption::Global, content_type: RequestText::new("text/x".into()) };
        let bytes = cos_ipc::encode(&scope).unwrap();
        assert_eq!(cos_ipc::decode::<FetchScope>(&bytes).unwrap(), scope);
    }

    #[test]
    fn fetch_responses_round_trip() {
        let messages = [
            FetchResponse::Head {
                status: 206,
                headers: vec![("content-range".into(), "bytes 0-1/2".into())],
                url: "https://a.test/x".into(),
                redirected: true,
            },
            FetchResponse::Body(vec![0, 1, 2, 255]),
            FetchResponse::Body(Vec::new()),
            FetchResponse::Body(vec![7; FETCH_CHUNK]),
            FetchResponse::End,
            FetchResponse::Failed("no route".into()),
            FetchResponse::StoreWarnings(cos_common::interface::WriteWarning::NoUserActivation.into()),
        ];
        for message in messages {
            let bytes = cos_ipc::encode(&message).unwrap();
            assert_eq!(cos_ipc::decode::<FetchResponse>(&bytes).unwrap(), message);
        }
        // A body is a length and the bytes themselves, nothing per byte.
        let body = cos_ipc::encode(&FetchResponse::Body(vec![9; 1000])).unwrap();
        assert_eq!(body.len(), 1 + 2 + 1000);
        assert!(body.ends_with(&[9; 1000]));
        for malformed in [&[][..], &[9], &[2, 0], &[1, 5, 1, 2]] {
            assert!(cos_ipc::decode::<FetchResponse>(malformed).is_err(), "{malformed:?}");
        }
    }
}
