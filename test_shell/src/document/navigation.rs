//! The browser side of a document load: the request for a frame's document, made by the
//! browser as `fetch` is (attributed to the frame's origin), whose response headers feed the
//! frame table (SPEC §12).

use std::io::Read;

use crate::servers::OriginServers;

/// The largest document the browser hands a renderer; a larger one loads as an empty document.
pub(crate) const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// A loaded document: its response headers and, for an HTML response, its markup.
#[derive(Debug, Default)]
pub(crate) struct Navigation {
    /// The response's header fields (names lowercase); empty when nothing answered with a 2xx.
    pub(crate) headers: Vec<(String, String)>,
    /// The body of a `text/html` 2xx response.
    pub(crate) html: Option<String>,
}

/// Requests the document at `url` from the origin servers (or the URL's own loopback address).
/// Nothing served (no server, a non-2xx status): an empty document without headers, as the
/// shell's frames were before they had documents. The request carries no origin, so it is not
/// counted in the servers' per-origin bytes (`shell.network.bytes`): those count what pages
/// fetch, so "the second site downloaded nothing" stays checkable.
pub(crate) fn navigate(servers: &OriginServers, url: &str) -> Navigation {
    let mut reader = match servers.open("GET", url, &[]) {
        Ok(reader) => reader,
        Err(error) => {
            tracing::debug!(url, %error, "no document: an empty one");
            return Navigation::default();
        }
    };
    let head = reader.head().clone();
    if !(200..300).contains(&head.status) {
        return Navigation::default();
    }
    let html = is_html(&head.headers).then(|| {
        let mut body = Vec::new();
        match (&mut reader).take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut body) {
            Ok(_) if body.len() as u64 <= MAX_DOCUMENT_BYTES => Some(String::from_utf8_lossy(&body).into_owned()),
            Ok(_) => {
                tracing::warn!(url, "a document larger than {MAX_DOCUMENT_BYTES} bytes: an empty one instead");
                None
            }
            Err(error) => {
                tracing::warn!(url, %error, "a document's body failed: an empty one instead");
                None
            }
        }
    });
    Navigation { headers: head.headers, html: html.flatten() }
}

/// Whether the response is `text/html` (its MIME type's essence, parameters ignored).
fn is_html(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/html"))
    })
}

/// The headers a frame is judged by: the response's, with every field the opener's `options`
/// name replaced by the opener's (a scenario's explicit headers win over what was served).
pub(crate) fn effective_headers(served: &[(String, String)], options: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> =
        served.iter().filter(|(name, _)| !options.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))).cloned().collect();
    headers.extend(options.iter().cloned());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_recognised_by_its_mime_essence() {
        let header = |value: &str| vec![("content-type".to_owned(), value.to_owned())];
        assert!(is_html(&header("text/html")));
        assert!(is_html(&header("Text/HTML; charset=utf-8")));
        assert!(!is_html(&header("text/plain")));
        assert!(!is_html(&header("text/htmlx")));
        assert!(!is_html(&[]));
    }

    #[test]
    fn the_openers_headers_replace_the_served_ones_by_name() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let served = vec![
            pair("permissions-policy", "cross-origin-storage=()"),
            pair("cross-origin-storage-allow-origin", "https://a.example"),
        ];
        let options = vec![pair("Permissions-Policy", "cross-origin-storage=*")];
        assert_eq!(
            effective_headers(&served, &options),
            vec![
                pair("cross-origin-storage-allow-origin", "https://a.example"),
                pair("Permissions-Policy", "cross-origin-storage=*")
            ]
        );
    }

    #[test]
    fn nothing_served_is_an_empty_document() {
        let servers = OriginServers::default();
        let navigation = navigate(&servers, "http://127.0.0.1:9/nothing-listens-here");
        assert!(navigation.html.is_none() && navigation.headers.is_empty());
        let navigation = navigate(&servers, "https://unserved.example/");
        assert!(navigation.html.is_none() && navigation.headers.is_empty(), "a 404 of the origin servers");
    }

    #[test]
    fn a_served_document_brings_its_headers_and_markup() {
        let servers = OriginServers::default();
        let hub = servers.hub().unwrap();
        let options = cos_test_hub::FileOptions::default().host("doc.example").header(
            http::HeaderName::from_static("permissions-policy"),
            http::HeaderValue::from_static("cross-origin-storage=()"),
        );
        hub.add_with("/index.html", b"<p>hi</p>".to_vec(), &options);
        hub.add_for_host("doc.example", "/data.bin", vec![1, 2, 3]);
        let navigation = navigate(&servers, "https://doc.example/index.html");
        assert_eq!(navigation.html.as_deref(), Some("<p>hi</p>"));
        assert!(navigation.headers.iter().any(|(n, v)| n == "permissions-policy" && v == "cross-origin-storage=()"));
        let navigation = navigate(&servers, "https://doc.example/data.bin");
        assert!(navigation.html.is_none(), "not HTML: an empty document");
        assert!(!navigation.headers.is_empty(), "whose headers still count");
        hub.add_for_host("doc.example", "/huge.html", vec![b' '; MAX_DOCUMENT_BYTES as usize + 1]);
        let navigation = navigate(&servers, "https://doc.example/huge.html");
        assert!(navigation.html.is_none(), "past the bound: an empty document");
    }
}
