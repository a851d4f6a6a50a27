//! Directories served from disk for one host (or every host) under a path prefix, the way the
//! web-platform-tests server serves a checkout: a file's extra response headers come from a
//! `<file>.headers` file beside it, and from `__dir__.headers` for every file of its directory
//! (lines `Name: value`).

use std::path::{Path, PathBuf};

use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use crate::server::Resource;

/// One directory served under `prefix` (which starts and ends with `/`).
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    pub(crate) host: Option<String>,
    pub(crate) prefix: String,
    pub(crate) root: PathBuf,
}

impl Directory {
    /// The file `path` (percent-decoded, no query) names under this directory, if any: only
    /// plain components below the root (no `..`, `.`, backslash or NUL), and `index.html` for a
    /// path ending in `/`.
    pub(crate) fn file_for(&self, host: Option<&str>, path: &str) -> Option<PathBuf> {
        if self.host.as_deref().is_some_and(|mine| Some(mine) != host) {
            return None;
        }
        let rest = path
            .strip_prefix(self.prefix.as_str())
            .or_else(|| (path == self.prefix.trim_end_matches('/')).then_some(""))?;
        let mut file = self.root.clone();
        for component in rest.split('/').filter(|c| !c.is_empty()) {
            if component == ".." || component == "." || component.contains(['\\', '\0']) {
                return None;
            }
            file.push(component);
        }
        if rest.is_empty() || rest.ends_with('/') {
            file.push("index.html");
        }
        Some(file)
    }
}

/// Reads `file` into a resource (its `Content-Type` by extension, its headers from the
/// `.headers` files); `None` when it is not a readable regular file.
pub(crate) fn load(file: &Path, content_type: HeaderValue) -> Option<Resource> {
    if !file.is_file() {
        return None;
    }
    let bytes = std::fs::read(file).ok()?;
    let mut headers = Vec::new();
    if let Some(dir) = file.parent() {
        headers.extend(headers_file(&dir.join("__dir__.headers")));
    }
    let mut own = file.as_os_str().to_owned();
    own.push(".headers");
    headers.extend(headers_file(Path::new(&own)));
    Some(Resource::in_memory(bytes, content_type, headers, StatusCode::OK))
}

/// The `Name: value` lines of a headers file (missing file: none; malformed lines skipped).
fn headers_file(path: &Path) -> Vec<(HeaderName, HeaderValue)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    parse_headers(&text)
}

/// Parses `Name: value` lines; lines that are not a valid header are skipped.
pub(crate) fn parse_headers(text: &str) -> Vec<(HeaderName, HeaderValue)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim()).ok()?;
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_root() {
        let dir = Directory { host: Some("a.test".into()), prefix: "/static/".into(), root: PathBuf::from("/srv") };
        let file = |host, path| dir.file_for(host, path);
        assert_eq!(file(Some("a.test"), "/static/x/y.js"), Some(PathBuf::from("/srv/x/y.js")));
        assert_eq!(file(Some("a.test"), "/static/"), Some(PathBuf::from("/srv/index.html")));
        assert_eq!(file(Some("a.test"), "/static"), Some(PathBuf::from("/srv/index.html")));
        assert_eq!(file(Some("a.test"), "/static/d/"), Some(PathBuf::from("/srv/d/index.html")));
        assert_eq!(file(Some("b.test"), "/static/x.js"), None, "another host");
        assert_eq!(file(Some("a.test"), "/other/x.js"), None);
        for hostile in ["/static/../etc/passwd", "/static/a/../../x", "/static/./x", "/static/a\\b", "/static/a\0"] {
            assert_eq!(file(Some("a.test"), hostile), None, "{hostile:?}");
        }
    }

    #[test]
    fn headers_files() {
        let parsed = parse_headers("Content-Type: text/plain\nbad line\nX-A:  1 \n\n: empty\n");
        let names: Vec<_> =
            parsed.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
        assert_eq!(names, [("content-type".to_owned(), "text/plain".to_owned()), ("x-a".to_owned(), "1".to_owned())]);
    }
}
