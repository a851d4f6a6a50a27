//! The natives behind the realms' `URL` and `URLSearchParams` (js/web.js): the WHATWG URL
//! parser of the `url` crate, so that scripts see what a browser would (IDNA, percent-encoding,
//! default ports, dot segments) rather than a regular expression's idea of a URL.

use rquickjs::{Ctx, Function, Object};

/// The parts of a parsed URL in the order js/web.js reads them.
const PARTS: usize = 11;

/// Adds `urlParse`, `formDecode` and `formEncode` to the realm's host object.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, host: &Object<'js>) -> rquickjs::Result<()> {
    host.set("urlParse", Function::new(ctx.clone(), parse)?)?;
    host.set(
        "formDecode",
        Function::new(ctx.clone(), |query: String| -> Vec<String> {
            url::form_urlencoded::parse(query.as_bytes()).flat_map(|(k, v)| [k.into_owned(), v.into_owned()]).collect()
        })?,
    )?;
    host.set(
        "formEncode",
        Function::new(ctx.clone(), |pairs: Vec<String>| -> String {
            let mut encoder = url::form_urlencoded::Serializer::new(String::new());
            for pair in pairs.chunks_exact(2) {
                encoder.append_pair(&pair[0], &pair[1]);
            }
            encoder.finish()
        })?,
    )?;
    Ok(())
}

/// `input` parsed against `base` (both as `new URL(input, base)` takes them): `[href, origin,
/// protocol, username, password, host, hostname, port, pathname, search, hash]` with the URL
/// standard's getters' values, or nothing if either does not parse.
fn parse(input: String, base: Option<String>) -> Option<Vec<String>> {
    let url = match base {
        Some(base) => url::Url::parse(&base).ok()?.join(&input).ok()?,
        None => url::Url::parse(&input).ok()?,
    };
    let with_prefix = |prefix: &str, part: Option<&str>| match part {
        Some(part) if !part.is_empty() => format!("{prefix}{part}"),
        _ => String::new(),
    };
    let host = url.host_str().unwrap_or("").to_owned();
    let port = url.port().map(|p| p.to_string()).unwrap_or_default();
    let parts = vec![
        url.as_str().to_owned(),
        url.origin().ascii_serialization(),
        format!("{}:", url.scheme()),
        url.username().to_owned(),
        url.password().unwrap_or("").to_owned(),
        if port.is_empty() { host.clone() } else { format!("{host}:{port}") },
        host,
        port,
        url.path().to_owned(),
        with_prefix("?", url.query()),
        with_prefix("#", url.fragment()),
    ];
    debug_assert_eq!(parts.len(), PARTS);
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_url_standard() {
        let parts = parse("HTTPS://user:pw@Example.COM:443/a/../b?x=1#frag".into(), None).unwrap();
        assert_eq!(
            parts,
            [
                "https://user:pw@example.com/b?x=1#frag",
                "https://example.com",
                "https:",
                "user",
                "pw",
                "example.com",
                "example.com",
                "",
                "/b",
                "?x=1",
                "#frag"
            ]
        );
        assert_eq!(parse("c?".into(), Some("http://h:8080/a/b".into())).unwrap()[0], "http://h:8080/a/c?");
        assert_eq!(parse("not a url".into(), None), None);
    }
}
