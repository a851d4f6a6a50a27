//! A small blocking HTTP/1.1 client over hyper: `http://` only, one request per connection
//! (`Connection: close`). Redirects are not followed: a 3xx is returned like any other
//! response.
//!
//! Callers are plain threads (the shell's browser process, tests), so requests run on one
//! process-wide tokio runtime and the calling thread blocks on them (which is why these
//! functions must not be called from inside a tokio runtime). Each response's
//! connection is driven by a task on that runtime, which is aborted when the response is
//! dropped.

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{self, HeaderName, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::HubError;

/// Connecting gives up after this long (per resolved address).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the response head, or for the next piece of the body, fails after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Request headers the client manages itself.
const RESERVED_HEADERS: [HeaderName; 4] =
    [header::HOST, header::CONNECTION, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];
/// Largest piece [`get_streaming`] hands over at once.
const STREAM_PIECE: usize = 64 * 1024;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, names lowercase (as hyper hands them over), values as received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (any transfer coding removed).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response's status and headers (the body is delivered separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Header fields, names lowercase (as hyper hands them over), values as received.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The runtime every request runs on, started on first use.
fn runtime() -> Result<&'static Runtime, HubError> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    // One worker drives the connections; callers block on their own requests.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("cos-hub-client")
        .enable_io()
        .enable_time()
        .build()?;
    // Another thread may have won the race; its runtime is kept and this one dropped.
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// The hyper error as a [`HubError`]: a body or head cut short is [`HubError::Truncated`],
/// an I/O failure underneath is [`HubError::Io`], a response hyper cannot parse is
/// [`HubError::MalformedResponse`].
fn from_hyper(error: hyper::Error) -> HubError {
    if error.is_incomplete_message() {
        return HubError::Truncated;
    }
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return match io_error.kind() {
                io::ErrorKind::UnexpectedEof => HubError::Truncated,
                kind => HubError::Io(io::Error::new(kind, error.to_string())),
            };
        }
        source = cause.source();
    }
    if error.is_parse() {
        HubError::MalformedResponse(error.to_string())
    } else {
        HubError::Io(io::Error::other(error))
    }
}

fn timed_out(what: &str) -> HubError {
    HubError::Io(io::Error::new(io::ErrorKind::TimedOut, format!("{what} took longer than {IO_TIMEOUT:?}")))
}

/// `GET url` with extra request `headers`; reads the whole body.
///
/// `Host` and `Connection: close` are sent by the client; passing `Host`, `Connection`,
/// `Content-Length` or `Transfer-Encoding` is an [`HubError::InvalidHeader`].
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, HubError> {
    open("GET", url, headers)?.into_response()
}

/// `GET url`, handing each piece of the body to `on_chunk` as it arrives (pieces of at most
/// 64 KiB); returns the status and headers once the body is complete.
pub fn get_streaming(
    url: &str,
    headers: &[(&str, &str)],
    on_chunk: impl FnMut(&[u8]),
) -> Result<ResponseHead, HubError> {
    let mut on_chunk = on_chunk;
    let mut response = open("GET", url, headers)?;
    while let Some(data) = response.next_data()? {
        for piece in data.chunks(STREAM_PIECE) {
            on_chunk(piece);
        }
    }
    Ok(response.head)
}

/// Where a URL points and what the request line and `Host` carry.
struct Target {
    /// Host name or IP address (IPv6 without brackets), for connecting.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    /// Path and query (`/` if empty); the fragment is dropped.
    path_and_query: String,
}

fn parse_url(url: &str) -> Result<Target, HubError> {
    parse_url_with(url, false)
}

/// `https` allows `https://` URLs too (their default port is 443); only for requests routed to
/// a loopback server that speaks plain HTTP ([`open_via`]).
fn parse_url_with(url: &str, https: bool) -> Result<Target, HubError> {
    let bad = |why: &str| HubError::InvalidUrl(format!("{url:?}: {why}"));
    // `Uri` lets bytes above ASCII through in the path; a request line must not carry them.
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only visible ASCII is allowed (percent-encode the rest)"));
    }
    // A fragment never goes on the wire.
    let without_fragment = url.split('#').next().unwrap_or(url);
    let uri: Uri = without_fragment.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let default_port = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTP => 80,
        Some(scheme) if https && *scheme == Scheme::HTTPS => 443,
        _ => return Err(bad("only http:// is supported")),
    };
    let Some(authority) = uri.authority() else { return Err(bad("no host")) };
    if authority.as_str().contains('@') {
        return Err(bad("credentials in URLs are not supported"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    // `Authority::port` is `None` both without a port and with one beyond `u16`.
    let port = match (authority.port(), &authority.as_str()[authority.host().len()..]) {
        (Some(port), _) => port.as_u16(),
        (None, "" | ":") => default_port,
        (None, _) => return Err(bad("port out of range")),
    };
    let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
        None => "/".to_owned(),
    };
    Ok(Target { host: host.to_owned(), port, authority: authority.as_str().to_owned(), path_and_query })
}

/// Builds the request, refusing methods and headers hyper would not put on the wire as given.
fn build_request(method: &str, target: &Target, headers: &[(&str, &str)]) -> Result<Request<Empty<Bytes>>, HubError> {
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| HubError::InvalidHeader(format!("bad method {method:?}")))?;
    let mut request = Request::new(Empty::new());
    *request.method_mut() = method;
    *request.uri_mut() =
        target.path_and_query.parse().map_err(|e: http::uri::InvalidUri| HubError::InvalidUrl(e.to_string()))?;
    let fields = request.headers_mut();
    let host = HeaderValue::from_str(&target.authority).map_err(|e| HubError::InvalidUrl(e.to_string()))?;
    fields.insert(header::HOST, host);
    fields.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for &(name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HubError::InvalidHeader(format!("bad header name {name:?}")))?;
        if RESERVED_HEADERS.contains(&name) {
            return Err(HubError::InvalidHeader(format!("{name} is set by the client")));
        }
        let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
            .map_err(|_| HubError::InvalidHeader(format!("control character in the value of {name}")))?;
        fields.append(name, value);
    }
    Ok(request)
}

async fn connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, HubError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out"))),
        }
    }
    Err(last.map_or_else(|| HubError::InvalidUrl(format!("{host:?} resolves to no address")), HubError::Io))
}

/// Aborts the task driving a connection when the response is dropped (which closes it).
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `method url` (no request body) and returns once the response head has arrived; the
/// body is then read from the returned [`ResponseReader`]. This is what a `fetch` needs: status
/// and headers first, body on demand, and dropping the reader aborts the transfer.
pub fn open(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<ResponseReader, HubError> {
    let target = parse_url(url)?;
    send(method, &target, None, headers)
}

/// Like [`open`], but connects to `connect_to` whatever host the URL names, and accepts
/// `https://` URLs too: the request goes over plain HTTP with the URL's `Host`, as a browser's
/// host resolver rules would send it to a loopback server standing in for that host (which
/// then serves the host's files, [`Hub::add_for_host`](crate::Hub::add_for_host)).
pub fn open_via(
    method: &str,
    url: &str,
    connect_to: std::net::SocketAddr,
    headers: &[(&str, &str)],
) -> Result<ResponseReader, HubError> {
    let target = parse_url_with(url, true)?;
    send(method, &target, Some(connect_to), headers)
}

fn send(
    method: &str,
    target: &Target,
    connect_to: Option<std::net::SocketAddr>,
    headers: &[(&str, &str)],
) -> Result<ResponseReader, HubError> {
    let request = build_request(method, target, headers)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let stream = match connect_to {
            Some(addr) => connect(&addr.ip().to_string(), addr.port()).await?,
            None => connect(&target.host, target.port).await?,
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(from_hyper)?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "hub client connection failed");
            }
        }));
        let response = match tokio::time::timeout(IO_TIMEOUT, sender.send_request(request)).await {
            Ok(response) => response.map_err(from_hyper)?,
            Err(_) => return Err(timed_out("the response head")),
        };
        let (parts, body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let head = ResponseHead { status: parts.status.as_u16(), headers };
        Ok(ResponseReader { head, body, pending: Bytes::new(), runtime, _sender: sender, _driver: driver })
    })
}

/// A response whose head has been read; the body is read through [`Read`] (a body cut short
/// is an error, not a silent end).
pub struct ResponseReader {
    head: ResponseHead,
    body: Incoming,
    /// Received but not yet read.
    pending: Bytes,
    runtime: &'static Runtime,
    /// Kept so that hyper does not treat the connection as abandoned mid-body.
    _sender: SendRequest<Empty<Bytes>>,
    _driver: AbortOnDrop,
}

impl std::fmt::Debug for ResponseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseReader").field("head", &self.head).finish_non_exhaustive()
    }
}

impl ResponseReader {
    /// The status and headers.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// Reads the rest of the body into a [`Response`].
    pub fn into_response(mut self) -> Result<Response, HubError> {
        let mut body = Vec::new();
        while let Some(data) = self.next_data()? {
            body.extend_from_slice(&data);
        }
        Ok(Response { status: self.head.status, headers: self.head.headers, body })
    }

    /// The next non-empty piece of the body; `None` at its end.
    fn next_data(&mut self) -> Result<Option<Bytes>, HubError> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        loop {
            let frame = self.runtime.block_on(async { tokio::time::timeout(IO_TIMEOUT, self.body.frame()).await });
            match frame {
                Err(_) => return Err(timed_out("the next piece of the body")),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(from_hyper(e)),
                Ok(Some(Ok(frame))) => {
                    // Trailers (no data) are skipped.
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl Read for ResponseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            match self.next_data().map_err(HubError::into_io)? {
                Some(data) => self.pending = data,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c#frag").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("127.0.0.1", 8080, "127.0.0.1:8080"));
        assert_eq!(t.path_and_query, "/a/b?c");
        let t = parse_url("HTTP://example.test").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path_and_query.as_str()), ("example.test", 80, "/"));
        let t = parse_url("http://h?q=1").unwrap();
        assert_eq!(t.path_and_query, "/?q=1");
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("::1", 9, "[::1]:9"));
        assert_eq!(parse_url("http://[::1]/").unwrap().port, 80);
        assert_eq!(parse_url("http://h:/").unwrap().port, 80);
        assert!(matches!(parse_url("http://h:65536/"), Err(HubError::InvalidUrl(_))));
        assert!(matches!(parse_url("https://h/"), Err(HubError::InvalidUrl(_))));
        let t = parse_url_with("https://a.test/x", true).unwrap();
        assert_eq!((t.port, t.authority.as_str(), t.path_and_query.as_str()), (443, "a.test", "/x"));
    }
}
