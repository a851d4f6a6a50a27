//! HTTP/1.1 message syntax shared by the server and the client: request-head parsing, `Range`
//! parsing, tokens and percent-decoding. Everything here is a pure function over bytes, so it is
//! fuzzed directly by the unit tests; nothing may panic on any input.

/// Largest request header section the server accepts (request line, header lines and the empty
/// line that ends them). Beyond it: `431 Request Header Fields Too Large`.
pub(crate) const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Whether `b` is an RFC 9110 `tchar` (the characters of methods and header names).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty RFC 9110 token.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// The method, case preserved (methods are case-sensitive).
    pub method: String,
    /// The request-target exactly as received (visible ASCII only).
    pub target: String,
    /// The minor version of `HTTP/1.x` (0 or 1).
    pub minor: u8,
    /// Header fields in order; names as received, values with surrounding whitespace removed
    /// (non-UTF-8 bytes replaced).
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Every value of the header `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first value of the header `name` (case-insensitive).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    /// Whether a comma-separated header (`Connection`) lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request head was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x syntax: `400 Bad Request`.
    Malformed(&'static str),
    /// A well-formed `HTTP/<d>.<d>` version other than 1.0 / 1.1: `505`.
    Version,
    /// The header section exceeds [`MAX_REQUEST_HEAD`]: `431`.
    TooLarge,
}

/// Number of empty lines (`CRLF` or bare `LF`) at the start of `buf`, in bytes. RFC 9112 §2.2:
/// a server should ignore at least one empty line received before the request-line.
pub(crate) fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\r', b'\n', ..]) => i += 2,
            Some([b'\n', ..]) => i += 1,
            _ => return i,
        }
    }
}

/// Tries to parse one request head at the start of `buf` (after leading empty lines have been
/// removed). `Ok(None)`: incomplete, read more. `Ok(Some((head, len)))`: the head occupies
/// `buf[..len]`. Lines end in `CRLF` or a bare `LF`.
pub(crate) fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(MAX_REQUEST_HEAD)];
    let Some(end) = find_head_end(window) else {
        return if buf.len() >= MAX_REQUEST_HEAD { Err(HeadError::TooLarge) } else { Ok(None) };
    };
    let mut lines = window[..end].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::Malformed("empty request"))?;
    let (method, target, minor) = parse_request_line(request_line)?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break; // The terminating empty line (the split also yields one after it).
        }
        headers.push(parse_field_line(line)?);
    }
    Ok(Some((RequestHead { method, target, minor, headers }, end)))
}

/// Index just past the empty line that ends the header section, if `buf` holds it.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, u8), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("request line is not `method SP target SP version`"));
    };
    if !is_token(method) {
        return Err(HeadError::Malformed("bad method"));
    }
    if target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed("bad request-target"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(HeadError::Version);
        }
        _ => return Err(HeadError::Malformed("bad HTTP version")),
    };
    // Both are visible ASCII by now, so these conversions cannot fail.
    let method = String::from_utf8_lossy(method).into_owned();
    let target = String::from_utf8_lossy(target).into_owned();
    Ok((method, target, minor))
}

fn parse_field_line(line: &[u8]) -> Result<(String, String), HeadError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HeadError::Malformed("obsolete line folding"));
    }
    let colon = line.iter().position(|&b| b == b':').ok_or(HeadError::Malformed("header line without colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) {
        return Err(HeadError::Malformed("bad header name"));
    }
    let value = trim_ows(value);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HeadError::Malformed("control character in header value"));
    }
    Ok((String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()))
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Parses a non-empty run of ASCII digits, saturating at `u64::MAX`. `None` if `s` is empty or
/// has any other character.
pub(crate) fn parse_decimal_saturating(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// Parses a `Content-Length` value exactly (digits only, no overflow).
pub(crate) fn parse_content_length(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The outcome of a `Range` header against a representation of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeRequest {
    /// Serve the whole representation (no range, or one the server ignores: another unit,
    /// several ranges, or an invalid range such as `bytes=5-2`).
    Full,
    /// Serve bytes `start..=end` with `206`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive), `< size`.
        end: u64,
    },
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// Interprets one `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for a
/// representation of `size` bytes, per RFC 9110 §14.
pub(crate) fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some((unit, set)) = value.trim().split_once('=') else { return RangeRequest::Full };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else { return RangeRequest::Full };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last `n` bytes.
        let Some(n) = parse_decimal_saturating(last) else { return RangeRequest::Full };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial { start: size - n.min(size), end: size - 1 };
    }
    let Some(start) = parse_decimal_saturating(first) else { return RangeRequest::Full };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match parse_decimal_saturating(last) {
            Some(end) if end >= start => end,
            _ => return RangeRequest::Full, // Invalid (`b < a` or not digits): ignored.
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end: end.min(size - 1) }
}

/// Percent-decodes a URL path. `None` if an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_owned());
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| char::from(h).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|&l| char::from(l).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic PRNG for the fuzz-style tests (SplitMix64).
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }

        /// Mutates `v` in place a few times: flips, inserts of syntax-relevant bytes, deletes,
        /// truncation.
        pub(crate) fn mutate(&mut self, v: &mut Vec<u8>) {
            const INTERESTING: &[u8] = b"\r\n :\t-=,;%\x00\x7f\xff0123456789abcdefHTTP/";
            for _ in 0..1 + self.below(4) {
                let at = self.below(v.len() + 1);
                match self.below(5) {
                    0 if at < v.len() => v[at] = self.next() as u8,
                    1 => v.insert(at, INTERESTING[self.below(INTERESTING.len())]),
                    2 if at < v.len() => {
                        v.remove(at);
                    }
                    3 => v.truncate(at),
                    _ => {
                        let n = self.below(8);
                        let extra = self.bytes(n);
                        v.splice(at..at, extra);
                    }
                }
            }
        }
    }

    fn head(s: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request_head(s.as_bytes())
    }

    #[test]
    fn parses_a_request() {
        let text = "GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nX-COS-Origin:  https://a.test \r\nRange:bytes=0-1\r\n\r\nNEXT";
        let (h, len) = head(text).unwrap().unwrap();
        assert_eq!(len, text.len() - 4);
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/a/b?c=d");
        assert_eq!(h.minor, 1);
        assert_eq!(h.value("x-cos-origin"), Some("https://a.test"));
        assert_eq!(h.value("RANGE"), Some("bytes=0-1"));
        assert_eq!(h.headers.len(), 3);
    }

    #[test]
    fn bare_lf_and_http10() {
        let (h, len) = head("HEAD / HTTP/1.0\nConnection: Keep-Alive, foo\n\n").unwrap().unwrap();
        assert_eq!((h.minor, len), (0, 45));
        assert!(h.has_token("connection", "keep-alive"));
        assert!(!h.has_token("connection", "close"));
    }

    #[test]
    fn incomplete_and_errors() {
        assert_eq!(head("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(head(""), Ok(None));
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Version));
        for bad in [
            "GARBAGE\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 \r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\n\r\n",
            "GET / HTTX/1.1\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(HeadError::Malformed(_))), "{bad:?}: {:?}", head(bad));
        }
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST_HEAD, b'a');
        assert_eq!(parse_request_head(&big), Err(HeadError::TooLarge));
        // Exactly the limit, terminator included, is accepted.
        big.truncate(MAX_REQUEST_HEAD - 4);
        big.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse_request_head(&big), Ok(Some((_, MAX_REQUEST_HEAD)))));
    }

    #[test]
    fn leading_empty_lines_are_counted() {
        assert_eq!(leading_empty_lines(b"\r\n\n\r\nGET"), 5);
        assert_eq!(leading_empty_lines(b"\r"), 0);
        assert_eq!(leading_empty_lines(b""), 0);
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let cases: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-0", 10, Partial { start: 0, end: 0 }),
            ("bytes=2-5", 10, Partial { start: 2, end: 5 }),
            ("bytes=2-", 10, Partial { start: 2, end: 9 }),
            ("bytes=2-100", 10, Partial { start: 2, end: 9 }),
            ("bytes=-3", 10, Partial { start: 7, end: 9 }),
            ("bytes=-30", 10, Partial { start: 0, end: 9 }),
            ("Bytes = 1 - 2 ", 10, Partial { start: 1, end: 2 }),
            ("bytes=9-99999999999999999999999", 10, Partial { start: 9, end: 9 }),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Unsatisfiable),
            ("bytes=5-2", 10, Full),
            ("bytes=0-1,3-4", 10, Full),
            ("items=0-1", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=+1-2", 10, Full),
            ("bytes", 10, Full),
            ("", 10, Full),
        ];
        for &(value, size, want) in cases {
            assert_eq!(parse_range(value, size), want, "{value:?} of {size}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b/%C3%A9").as_deref(), Some("/a b/\u{e9}"));
        assert_eq!(percent_decode("/plain").as_deref(), Some("/plain"));
        assert_eq!(percent_decode("/bad%2"), None);
        assert_eq!(percent_decode("/bad%zz"), None);
        assert_eq!(percent_decode("/bad%ff"), None);
    }

    #[test]
    fn fuzz_request_parser_never_panics() {
        let mut rng = Rng(1);
        let seeds: &[&[u8]] = &[
            b"GET /m/resolve/main/a.onnx HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\nX-COS-Origin: o\r\n\r\n",
            b"HEAD / HTTP/1.0\nConnection: keep-alive\n\n",
            b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ];
        for i in 0..20_000 {
            let mut input = if i % 3 == 0 {
                let n = rng.below(200);
                rng.bytes(n)
            } else {
                seeds[rng.below(seeds.len())].to_vec()
            };
            rng.mutate(&mut input);
            let skip = leading_empty_lines(&input);
            if let Ok(Some((h, len))) = parse_request_head(&input[skip..]) {
                assert!(len <= input.len() - skip);
                for (_, v) in &h.headers {
                    let _ = parse_range(v, rng.next() % 100);
                    let _ = percent_decode(v);
                }
            }
        }
        for _ in 0..20_000 {
            let n = rng.below(40);
            let bytes = rng.bytes(n);
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse_range(&s, rng.next() % 4);
            let _ = parse_range(&format!("bytes={s}"), rng.next());
            let _ = percent_decode(&s);
        }
    }
}
