//! What the hub decides from request header values once hyper has parsed the message: which
//! bytes a `Range` asks for, whether an `If-None-Match` matches, and the decoded request path.
//! hyper checks the syntax of the message; these are the HTTP semantics it leaves to the
//! application.

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

/// Parses a non-empty run of ASCII digits, saturating at `u64::MAX` (a position beyond any file
/// is still a position: `bytes=99999999999999999999-` is unsatisfiable, not malformed).
fn parse_decimal_saturating(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// Interprets one `Range` header value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for a
/// representation of `size` bytes, per RFC 9110 §14. Several ranges are served as the whole
/// file: a multipart response is more than any client of the hub needs.
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
            // RFC 9110 says an invalid range is ignored, not refused.
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end: end.min(size - 1) }
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches).
pub(crate) fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
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
mod tests {
    use super::*;

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
            ("bytes=1-2-3", 10, Full),
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
    fn etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
