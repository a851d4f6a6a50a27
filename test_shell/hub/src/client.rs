//! A tiny blocking HTTP/1.1 client: `http://` only, one request per connection
//! (`Connection: close`), bodies delimited by `Content-Length`, `chunked` or the end of the
//! connection. Redirects are not followed: a 3xx is returned like any other response.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::HubError;
use crate::http::{self, is_token};

/// Connecting gives up after this long (per resolved address).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A read or write that makes no progress for this long fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response header section accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Request headers the client manages itself.
const RESERVED_HEADERS: [&str; 4] = ["host", "connection", "content-length", "transfer-encoding"];

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in received order, names as received, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked framing removed).
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
    /// Header fields in received order, names as received, values trimmed.
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
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = response.body.read_body(&mut buf)?;
        if n == 0 {
            return Ok(response.head);
        }
        on_chunk(&buf[..n]);
    }
}

/// Sends `method url` (no request body) and returns once the response head has arrived; the
/// body is then read from the returned [`ResponseReader`]. This is what a `fetch` needs: status
/// and headers first, body on demand, and dropping the reader aborts the transfer.
pub fn open(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<ResponseReader, HubError> {
    if !is_token(method.as_bytes()) {
        return Err(HubError::InvalidHeader(format!("bad method {method:?}")));
    }
    let target = parse_url(url)?;
    let mut request =
        format!("{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", target.path, target.authority);
    for &(name, value) in headers {
        if !is_token(name.as_bytes()) {
            return Err(HubError::InvalidHeader(format!("bad header name {name:?}")));
        }
        if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(HubError::InvalidHeader(format!("{name} is set by the client")));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HubError::InvalidHeader(format!("control character in the value of {name}")));
        }
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value.trim_matches([' ', '\t']));
        request.push_str("\r\n");
    }
    request.push_str("\r\n");

    let mut stream = connect(&target.host, target.port)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    stream.write_all(request.as_bytes())?;
    let reader = BufReader::with_capacity(64 * 1024, stream);
    let (head, body) = read_response_head(reader, method == "HEAD")?;
    Ok(ResponseReader { head, body })
}

/// A response whose head has been read; the body is read through [`Read`] (chunked framing
/// removed; a body cut short is an error, not a silent end).
#[derive(Debug)]
pub struct ResponseReader {
    head: ResponseHead,
    body: BodyDecoder<BufReader<TcpStream>>,
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
        self.body.read_to_end_typed(&mut body)?;
        Ok(Response { status: self.head.status, headers: self.head.headers, body })
    }
}

impl Read for ResponseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read_body(buf).map_err(HubError::into_io)
    }
}

/// The parts of an `http://` URL the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written (brackets kept), for the `Host` header.
    pub authority: String,
    /// Path and query (`/` if empty); the fragment is dropped.
    pub path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, HubError> {
    let bad = |why: &str| HubError::InvalidUrl(format!("{url:?}: {why}"));
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only visible ASCII is allowed (percent-encode the rest)"));
    }
    let Some(scheme_end) = url.find("://") else { return Err(bad("not an absolute URL")) };
    if !url[..scheme_end].eq_ignore_ascii_case("http") {
        return Err(bad("only http:// is supported"));
    }
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(bad("credentials in URLs are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else { return Err(bad("unterminated IPv6 address")) };
        (host, after.strip_prefix(':').map_or(if after.is_empty() { Some("") } else { None }, Some))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, Some("")),
        }
    };
    let Some(port) = port else { return Err(bad("junk after the IPv6 address")) };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let port = if port.is_empty() {
        80
    } else if port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse().map_err(|_| bad("port out of range"))?
    } else {
        return Err(bad("bad port"));
    };
    let path = path.split('#').next().unwrap_or("");
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Ok(Target { host: host.to_owned(), port, authority: authority.to_owned(), path })
}

fn connect(host: &str, port: u16) -> Result<TcpStream, HubError> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| HubError::InvalidUrl(format!("{host:?} resolves to no address")), HubError::Io))
}

/// Reads one line (ending in `\n`, which is removed with any `\r` before it) of at most
/// `limit` bytes. `Ok(None)` at a clean EOF before any byte.
fn read_line(reader: &mut impl BufRead, limit: usize) -> Result<Option<Vec<u8>>, HubError> {
    let mut line = Vec::new();
    let n = reader.take(limit as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > limit {
            HubError::MalformedResponse("line too long".into())
        } else {
            HubError::Truncated
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Reads the status line and headers (skipping interim 1xx responses) and works out how the
/// body is delimited; the returned decoder owns `reader`.
pub(crate) fn read_response_head<R: BufRead>(
    mut reader: R,
    head_request: bool,
) -> Result<(ResponseHead, BodyDecoder<R>), HubError> {
    let malformed = |why: &str| HubError::MalformedResponse(why.to_owned());
    let mut budget = MAX_RESPONSE_HEAD;
    loop {
        let Some(status_line) = read_line(&mut reader, budget)? else { return Err(HubError::Truncated) };
        budget = budget.saturating_sub(status_line.len() + 2);
        let status = parse_status_line(&status_line).ok_or_else(|| malformed("bad status line"))?;
        let mut headers = Vec::new();
        loop {
            if budget == 0 {
                return Err(malformed("response head larger than 64 KiB"));
            }
            let line = read_line(&mut reader, budget)?.ok_or(HubError::Truncated)?;
            budget = budget.saturating_sub(line.len() + 2);
            if line.is_empty() {
                break;
            }
            if matches!(line.first(), Some(b' ' | b'\t')) {
                return Err(malformed("obsolete line folding"));
            }
            let colon = line.iter().position(|&b| b == b':').ok_or_else(|| malformed("header line without colon"))?;
            let name = &line[..colon];
            if !is_token(name) {
                return Err(malformed("bad header name"));
            }
            let value = http::trim_ows(&line[colon + 1..]);
            headers.push((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()));
        }
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(malformed("unexpected protocol switch"));
            }
            continue; // Interim response; the real one follows.
        }
        let head = ResponseHead { status, headers };
        let framing = framing(&head, head_request)?;
        return Ok((head, BodyDecoder { reader, framing }));
    }
}

/// `HTTP/1.x SP 3DIGIT [SP reason]` → the status code.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let [minor, b' ', d0, d1, d2, after @ ..] = rest else { return None };
    if !minor.is_ascii_digit() || !matches!(after.first(), None | Some(b' ')) {
        return None;
    }
    let mut status = 0u16;
    for d in [d0, d1, d2] {
        if !d.is_ascii_digit() {
            return None;
        }
        status = status * 10 + u16::from(d - b'0');
    }
    (100..=999).contains(&status).then_some(status)
}

/// How a response body is delimited (RFC 9112 §6.3).
fn framing(head: &ResponseHead, head_request: bool) -> Result<Framing, HubError> {
    if head_request || (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
        return Ok(Framing::Done);
    }
    let codings: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked { remaining: 0, started: false }
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for (_, value) in head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        for part in value.split(',').map(str::trim) {
            let n = http::parse_content_length(part)
                .ok_or_else(|| HubError::MalformedResponse(format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(HubError::MalformedResponse("conflicting Content-Length values".into()));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, |remaining| Framing::Fixed { remaining }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: this many bytes left.
    Fixed { remaining: u64 },
    /// `Transfer-Encoding: chunked`: bytes left in the current chunk; `started` once the first
    /// chunk-size line has been read (each later chunk is preceded by the previous one's CRLF).
    Chunked { remaining: u64, started: bool },
    /// Delimited by the server closing the connection.
    UntilClose,
    /// Body complete.
    Done,
}

/// Decodes a response body from `reader` according to its framing.
#[derive(Debug)]
pub(crate) struct BodyDecoder<R> {
    reader: R,
    framing: Framing,
}

impl<R: BufRead> BodyDecoder<R> {
    /// Reads body bytes into `out`; `Ok(0)` at the end of the body (or if `out` is empty).
    pub(crate) fn read_body(&mut self, out: &mut [u8]) -> Result<usize, HubError> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Fixed { remaining: 0 } => self.framing = Framing::Done,
                Framing::Fixed { remaining } => {
                    let n = self.read_some(out, remaining)?;
                    self.framing = Framing::Fixed { remaining: remaining - n as u64 };
                    return Ok(n);
                }
                Framing::UntilClose => {
                    let n = read_retrying(&mut self.reader, out)?;
                    if n == 0 {
                        self.framing = Framing::Done;
                    }
                    return Ok(n);
                }
                Framing::Chunked { remaining: 0, started } => {
                    if started {
                        let crlf = read_line(&mut self.reader, 2)?.ok_or(HubError::Truncated)?;
                        if !crlf.is_empty() {
                            return Err(HubError::MalformedResponse("chunk data longer than its size".into()));
                        }
                    }
                    let line = read_line(&mut self.reader, MAX_CHUNK_LINE)?.ok_or(HubError::Truncated)?;
                    let size = parse_chunk_size(&line)
                        .ok_or_else(|| HubError::MalformedResponse("bad chunk size line".into()))?;
                    if size == 0 {
                        self.skip_trailers()?;
                        self.framing = Framing::Done;
                    } else {
                        self.framing = Framing::Chunked { remaining: size, started: true };
                    }
                }
                Framing::Chunked { remaining, started } => {
                    let n = self.read_some(out, remaining)?;
                    self.framing = Framing::Chunked { remaining: remaining - n as u64, started };
                    return Ok(n);
                }
            }
        }
    }

    /// Reads at least one and at most `limit` bytes; EOF is [`HubError::Truncated`].
    fn read_some(&mut self, out: &mut [u8], limit: u64) -> Result<usize, HubError> {
        let want = usize::try_from(limit).map_or(out.len(), |limit| limit.min(out.len()));
        match read_retrying(&mut self.reader, &mut out[..want])? {
            0 => Err(HubError::Truncated),
            n => Ok(n),
        }
    }

    fn skip_trailers(&mut self) -> Result<(), HubError> {
        let mut budget = MAX_RESPONSE_HEAD;
        loop {
            let line = read_line(&mut self.reader, budget)?.ok_or(HubError::Truncated)?;
            if line.is_empty() {
                return Ok(());
            }
            budget = budget.saturating_sub(line.len() + 2);
            if budget == 0 {
                return Err(HubError::MalformedResponse("trailer section too large".into()));
            }
        }
    }

    /// Reads the rest of the body, appending to `body`.
    pub(crate) fn read_to_end_typed(&mut self, body: &mut Vec<u8>) -> Result<(), HubError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read_body(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            body.extend_from_slice(&buf[..n]);
        }
    }
}

fn read_retrying(reader: &mut impl Read, out: &mut [u8]) -> Result<usize, HubError> {
    loop {
        match reader.read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return Ok(result?),
        }
    }
}

/// `1*HEXDIG [ BWS ";" extensions ]` → the size; `None` if malformed or above `u64::MAX`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next().map(http::trim_ows)?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| Some(acc << 4 | u64::from(char::from(d).to_digit(16)?)))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;
    use crate::http::tests::Rng;

    fn decode(raw: &[u8], head_request: bool) -> Result<(ResponseHead, Vec<u8>), HubError> {
        let (head, mut decoder) = read_response_head(raw, head_request)?;
        let mut body = Vec::new();
        decoder.read_to_end_typed(&mut body)?;
        Ok((head, body))
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c#frag").unwrap();
        assert_eq!(
            t,
            Target { host: "127.0.0.1".into(), port: 8080, authority: "127.0.0.1:8080".into(), path: "/a/b?c".into() }
        );
        let t = parse_url("HTTP://example.test").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("example.test", 80, "/"));
        let t = parse_url("http://h?q=1").unwrap();
        assert_eq!(t.path, "/?q=1");
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("::1", 9, "[::1]:9"));
        let t = parse_url("http://[::1]/").unwrap();
        assert_eq!(t.port, 80);
        for bad in [
            "https://h/",
            "h/x",
            "http:///x",
            "http://u@h/",
            "http://h:99999/",
            "http://h:x/",
            "http://[::1/",
            "http://[::1]x/",
            "http://h/a b",
            "http://h/\u{e9}",
        ] {
            assert!(matches!(parse_url(bad), Err(HubError::InvalidUrl(_))), "{bad}");
        }
    }

    #[test]
    fn content_length_body() {
        let (head, body) =
            decode(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhelloEXTRA", false).unwrap();
        assert_eq!((head.status, body.as_slice(), head.header("x-a")), (200, &b"hello"[..], Some("b")));
        assert!(matches!(
            decode(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", false),
            Err(HubError::Truncated)
        ));
        let (_, body) = decode(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", true).unwrap();
        assert!(body.is_empty(), "HEAD has no body");
        assert!(decode(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", false).is_err());
    }

    #[test]
    fn chunked_body_interim_and_until_close() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n1\r\n \r\nC\r\nworld, again\r\n0\r\nTrailer: x\r\n\r\n";
        let (head, body) = decode(raw, false).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(body, b"hello world, again");
        assert!(matches!(
            decode(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", false),
            Err(HubError::Truncated)
        ));
        assert!(
            decode(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", false).is_err()
        );
        assert!(decode(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false).is_err());
        let (_, body) = decode(b"HTTP/1.0 200 OK\r\n\r\nuntil close", false).unwrap();
        assert_eq!(body, b"until close");
        let (head, body) = decode(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false).unwrap();
        assert_eq!((head.status, body.len()), (304, 0));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 404"), Some(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 301 Moved Permanently"), Some(301));
        for bad in
            [&b"HTTP/1.1 20 OK"[..], b"HTTP/2 200 OK", b"HTTP/1.1 2000", b"HTTP/1.1 099 x", b"", b"HTTP/1.1 2x0 OK"]
        {
            assert_eq!(parse_status_line(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"ff"), Some(255));
        assert_eq!(parse_chunk_size(b"A ; name=value"), Some(10));
        assert_eq!(parse_chunk_size(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_chunk_size(b"1ffffffffffffffff"), None);
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"-1"), None);
    }

    #[test]
    fn fuzz_response_parser_never_panics() {
        let mut rng = Rng(2);
        let seeds: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 206 Partial\r\n\r\nbody",
        ];
        for i in 0..20_000 {
            let mut input = if i % 4 == 0 {
                let n = rng.below(120);
                rng.bytes(n)
            } else {
                seeds[rng.below(seeds.len())].to_vec()
            };
            rng.mutate(&mut input);
            let _ = decode(&input, rng.next().is_multiple_of(5));
        }
    }

    /// A one-shot server answering every connection with `response`, returning the requests.
    fn fake_server(response: &'static [u8]) -> (String, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert_ne!(n, 0);
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response).unwrap();
            request
        });
        (url, handle)
    }

    #[test]
    fn get_against_a_chunked_server() {
        let (url, server) = fake_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: yes\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let response = get(&format!("{url}/some/path?q=1"), &[("X-COS-Origin", "https://a.test")]).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"abcde");
        assert_eq!(response.header("x-test"), Some("yes"));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("GET /some/path?q=1 HTTP/1.1\r\nHost: 127.0.0.1:"), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
        assert!(request.contains("\r\nX-COS-Origin: https://a.test\r\n"), "{request}");
    }

    #[test]
    fn streaming_and_redirects_returned_as_is() {
        let (url, server) = fake_server(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 4\r\n\r\nmove");
        let mut chunks = Vec::new();
        let head = get_streaming(&url, &[], |c| chunks.extend_from_slice(c)).unwrap();
        assert_eq!((head.status, head.header("location")), (302, Some("/elsewhere")));
        assert_eq!(chunks, b"move");
        server.join().unwrap();
    }

    #[test]
    fn truncated_body_is_an_error() {
        let (url, server) = fake_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
        assert!(matches!(get(&url, &[]), Err(HubError::Truncated)));
        server.join().unwrap();
    }

    #[test]
    fn reserved_and_bad_request_headers_are_refused() {
        for headers in [
            &[("Host", "x")][..],
            &[("connection", "keep-alive")],
            &[("Content-Length", "1")],
            &[("Transfer-Encoding", "chunked")],
            &[("Bad Name", "x")],
            &[("X", "a\r\nInjected: 1")],
        ] {
            assert!(matches!(get("http://127.0.0.1:9/", headers), Err(HubError::InvalidHeader(_))), "{headers:?}");
        }
        assert!(matches!(open("G E T", "http://127.0.0.1:9/", &[]), Err(HubError::InvalidHeader(_))));
    }
}
