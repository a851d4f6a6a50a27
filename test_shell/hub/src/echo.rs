//! The echo resource: a response whose body, type, status and extra headers come from the
//! request's query string, so a test can make any response it needs without adding a file
//! (`?body=hello&content-type=text/plain&status=404&header=X-A:%201`).

use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use crate::server::Resource;

/// The response an echo request asks for; `None` when the query does not parse (a bad
/// escape, a status outside 200..=599, a header that is not one).
pub(crate) fn respond(query: Option<&str>) -> Option<Resource> {
    let mut body = Vec::new();
    let mut content_type = HeaderValue::from_static("text/plain; charset=utf-8");
    let mut status = StatusCode::OK;
    let mut headers = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = form_decode(value)?;
        match form_decode(key)?.as_slice() {
            b"body" => body = value,
            b"content-type" => content_type = HeaderValue::from_bytes(&value).ok()?,
            b"status" => {
                let code: u16 = std::str::from_utf8(&value).ok()?.parse().ok()?;
                if !(200..=599).contains(&code) {
                    return None;
                }
                status = StatusCode::from_u16(code).ok()?;
            }
            b"header" => {
                let text = std::str::from_utf8(&value).ok()?;
                let (name, value) = text.split_once(':')?;
                headers.push((
                    HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
                    HeaderValue::from_str(value.trim()).ok()?,
                ));
            }
            _ => {}
        }
    }
    Some(Resource::in_memory(body, content_type, headers, status))
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn form_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&h| char::from(h).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|&l| char::from(l).to_digit(16))?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(form_decode("a+b%20c%2B").unwrap(), b"a b c+");
        assert!(form_decode("%zz").is_none());
        assert!(form_decode("%2").is_none());
    }

    #[test]
    fn refused_queries() {
        for bad in ["status=99", "status=600", "status=x", "header=nocolon", "header=bad%20name:1", "body=%g0"] {
            assert!(respond(Some(bad)).is_none(), "{bad}");
        }
        assert!(respond(None).is_some());
    }
}
