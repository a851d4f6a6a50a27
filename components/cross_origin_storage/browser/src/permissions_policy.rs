//! The `cross-origin-storage` Permissions Policy feature (default allowlist `self`, SPEC §3), as
//! far as COS needs it: the document's `Permissions-Policy` header and its container's `allow`
//! attribute.
//!
//! ```
//! use cos_browser::permissions_policy::{Container, is_enabled};
//! use cos_common::Origin;
//!
//! let parent = Origin::from_url("https://app.example/")?;
//! let child = Origin::from_url("https://cdn.example/")?;
//! // Top-level documents have it unless their own header turns it off.
//! assert!(is_enabled(Some(&parent), None, None));
//! assert!(!is_enabled(Some(&parent), Some("cross-origin-storage=()"), None));
//! // Default allowlist `self`: a cross-origin iframe needs `allow="cross-origin-storage"`.
//! let bare = Container { parent_origin: Some(&parent), parent_allows: true, allow_attribute: None };
//! assert!(!is_enabled(Some(&child), None, Some(bare)));
//! let delegated = Container { allow_attribute: Some("cross-origin-storage"), ..bare };
//! assert!(is_enabled(Some(&child), None, Some(delegated)));
//! // Opaque origins never have it.
//! assert!(!is_enabled(None, None, Some(delegated)));
//! # Ok::<(), cos_common::OriginParseError>(())
//! ```

use cos_common::Origin;

/// The feature's name in headers and `allow` attributes.
pub const FEATURE: &str = "cross-origin-storage";

/// The embedding context of a child frame.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    /// Origin of the parent document (`None` if it is opaque).
    pub parent_origin: Option<&'a Origin>,
    /// Whether the feature is enabled in the parent document.
    pub parent_allows: bool,
    /// The iframe's `allow` attribute, if any.
    pub allow_attribute: Option<&'a str>,
}

/// Whether the feature is enabled in a new document of `origin` (`None`: opaque) whose response
/// carried `header` (`Permissions-Policy`), embedded by `container` (`None` for top-level
/// documents).
pub fn is_enabled(origin: Option<&Origin>, header: Option<&str>, container: Option<Container<'_>>) -> bool {
    let inherited = match container {
        None => true,
        Some(container) => {
            container.parent_allows
                && match allow_attribute_allowlist(container.allow_attribute) {
                    // Delegated by the container: the default target is the frame's own origin.
                    Some(allowlist) => allowlist.matches(origin, container.parent_origin, origin),
                    // Default allowlist `self`: only same-origin children.
                    None => origin.is_some() && origin == container.parent_origin,
                }
        }
    };
    inherited && header_allowlist(header).is_none_or(|allowlist| allowlist.matches(origin, origin, None))
}

#[derive(Debug, PartialEq, Eq)]
struct Allowlist {
    all: bool,
    own: bool,
    src: bool,
    origins: Vec<Origin>,
}

impl Allowlist {
    /// `own` is what `self` means here, `src` what `'src'` means (the frame's origin).
    fn matches(&self, target: Option<&Origin>, own: Option<&Origin>, src: Option<&Origin>) -> bool {
        let Some(target) = target else { return self.all };
        self.all
            || (self.own && own == Some(target))
            || (self.src && src == Some(target))
            || self.origins.contains(target)
    }
}

/// The allowlist for the feature in a `Permissions-Policy` header (a structured-field
/// dictionary), or `None` when the header does not mention the feature or does not parse (an
/// invalid header is ignored, as browsers do).
fn header_allowlist(header: Option<&str>) -> Option<Allowlist> {
    for member in split_top_level(header?, ',') {
        let Some((name, value)) = member.split_once('=') else { continue };
        if name.trim() != FEATURE {
            continue;
        }
        let value = value.trim();
        let inner = match value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            Some(inner) => inner,
            None => value,
        };
        let mut list = Allowlist { all: false, own: false, src: false, origins: Vec::new() };
        for token in inner.split_ascii_whitespace() {
            match token {
                "*" => list.all = true,
                "self" => list.own = true,
                quoted if quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"') => {
                    if let Ok(origin) = Origin::from_origin_str(&quoted[1..quoted.len() - 1]) {
                        list.origins.push(origin);
                    }
                }
                _ => return None,
            }
        }
        return Some(list);
    }
    None
}

/// The allowlist for the feature in an iframe `allow` attribute (`feature [allowlist]; ...`),
/// or `None` when it is not mentioned. A bare feature name means `'src'`.
fn allow_attribute_allowlist(attribute: Option<&str>) -> Option<Allowlist> {
    for directive in attribute?.split(';') {
        let mut tokens = directive.split_ascii_whitespace();
        if tokens.next() != Some(FEATURE) {
            continue;
        }
        let mut list = Allowlist { all: false, own: false, src: false, origins: Vec::new() };
        let mut any = false;
        for token in tokens {
            any = true;
            match token {
                "*" => list.all = true,
                "'self'" => list.own = true,
                "'src'" => list.src = true,
                "'none'" => {}
                other => {
                    if let Ok(origin) = Origin::from_url(other) {
                        list.origins.push(origin);
                    }
                }
            }
        }
        if !any {
            list.src = true;
        }
        return Some(list);
    }
    None
}

fn split_top_level(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (index, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == separator && depth == 0 && !quoted => {
                parts.push(&value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::from_url(s).unwrap()
    }

    #[test]
    fn top_level_documents_are_enabled_unless_the_header_says_otherwise() {
        let a = o("https://a.example");
        assert!(is_enabled(Some(&a), None, None));
        assert!(is_enabled(Some(&a), Some("geolocation=()"), None));
        assert!(!is_enabled(Some(&a), Some("cross-origin-storage=()"), None));
        assert!(!is_enabled(Some(&a), Some("geolocation=(), cross-origin-storage=()"), None));
        assert!(is_enabled(Some(&a), Some("cross-origin-storage=self"), None));
        assert!(is_enabled(Some(&a), Some("cross-origin-storage=*"), None));
        assert!(is_enabled(Some(&a), Some(r#"cross-origin-storage=(self "https://b.example")"#), None));
        assert!(!is_enabled(Some(&a), Some(r#"cross-origin-storage=("https://b.example")"#), None));
        assert!(is_enabled(Some(&a), Some("cross-origin-storage=(garbage"), None), "invalid headers are ignored");
    }

    #[test]
    fn same_origin_children_inherit_cross_origin_children_need_allow() {
        let (a, b) = (o("https://a.example"), o("https://b.example"));
        let container = |allow| Container { parent_origin: Some(&a), parent_allows: true, allow_attribute: allow };
        assert!(is_enabled(Some(&a), None, Some(container(None))));
        assert!(!is_enabled(Some(&b), None, Some(container(None))));
        assert!(is_enabled(Some(&b), None, Some(container(Some("cross-origin-storage")))));
        assert!(is_enabled(Some(&b), None, Some(container(Some("camera; cross-origin-storage 'src'")))));
        assert!(is_enabled(Some(&b), None, Some(container(Some("cross-origin-storage https://b.example")))));
        assert!(!is_enabled(Some(&b), None, Some(container(Some("cross-origin-storage https://c.example")))));
        assert!(!is_enabled(Some(&b), None, Some(container(Some("cross-origin-storage 'none'")))));
        assert!(!is_enabled(Some(&b), None, Some(container(Some("camera")))));
    }

    #[test]
    fn a_blocked_parent_blocks_every_descendant_and_the_header_still_applies() {
        let a = o("https://a.example");
        let blocked = Container {
            parent_origin: Some(&a),
            parent_allows: false,
            allow_attribute: Some("cross-origin-storage *"),
        };
        assert!(!is_enabled(Some(&a), None, Some(blocked)));
        let open = Container { parent_origin: Some(&a), parent_allows: true, allow_attribute: None };
        assert!(!is_enabled(Some(&a), Some("cross-origin-storage=()"), Some(open)));
    }

    #[test]
    fn opaque_documents_match_only_star() {
        let a = o("https://a.example");
        assert!(!is_enabled(
            None,
            None,
            Some(Container { parent_origin: Some(&a), parent_allows: true, allow_attribute: None })
        ));
        assert!(is_enabled(None, Some("cross-origin-storage=*"), None));
    }
}
