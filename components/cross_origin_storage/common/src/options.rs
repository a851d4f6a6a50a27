//! The `origins` option of a request and the `Cross-Origin-Storage-Allow-Origin` ceiling.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{CosError, TypeErrorKind};
use crate::origin::Origin;

/// The most origins one request may name, and the most one entry's list may ever hold.
pub const MAX_ORIGINS_LIST_LEN: usize = 100;

/// The `(DOMString or sequence<DOMString>) origins` member exactly as script passed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginsInput {
    /// The member was not present.
    #[default]
    Absent,
    /// A lone string (`"*"` or one origin).
    Single(String),
    /// A sequence of strings.
    Sequence(Vec<String>),
}

/// A validated `origins` option.
///
/// ```
/// use cos_common::{Origin, OriginsInput, OriginsOption};
///
/// let list = OriginsInput::Sequence(vec!["https://a.example".into(), "https://b.example".into()]);
/// let OriginsOption::List(origins) = OriginsOption::parse(&list)? else { unreachable!() };
/// assert_eq!(origins[0], Origin::from_url("https://a.example")?);
/// // WebIDL-level validation: a TypeError before anything is sent.
/// let bad = OriginsInput::Sequence(vec!["ftp://a.example".into()]);
/// assert_eq!(OriginsOption::parse(&bad).unwrap_err().name(), "TypeError");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Only valid values deserialise: a list is never empty, never longer than
/// [`MAX_ORIGINS_LIST_LEN`] and has no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOriginsOption", into = "RawOriginsOption")]
pub enum OriginsOption {
    /// No `origins` (or `origins: []`, **Decision** SPEC §2): the same-site baseline only.
    Omitted,
    /// An explicit list: each origin may read the entry without the Public Hash List.
    List(Vec<Origin>),
    /// `"*"`: the global grant, subject to the privacy gates.
    Global,
}

impl OriginsOption {
    /// Validates script input per SPEC §2. Runs whenever `origins` is present, create or not.
    pub fn parse(input: &OriginsInput) -> Result<Self, CosError> {
        match input {
            OriginsInput::Absent => Ok(Self::Omitted),
            OriginsInput::Single(value) if value == "*" => Ok(Self::Global),
            OriginsInput::Single(value) => Self::parse_list(std::slice::from_ref(value)),
            OriginsInput::Sequence(values) => Self::parse_list(values),
        }
    }

    fn parse_list(values: &[String]) -> Result<Self, CosError> {
        if values.len() > MAX_ORIGINS_LIST_LEN {
            return Err(CosError::Type(TypeErrorKind::TooManyOrigins));
        }
        let mut list: Vec<Origin> = Vec::with_capacity(values.len());
        for value in values {
            let origin = Origin::from_url(value).map_err(|_| CosError::Type(TypeErrorKind::InvalidOrigin))?;
            if !list.contains(&origin) {
                list.push(origin);
            }
        }
        Ok(if list.is_empty() { Self::Omitted } else { Self::List(list) })
    }
}

#[derive(Serialize, Deserialize)]
enum RawOriginsOption {
    Omitted,
    List(Vec<Origin>),
    Global,
}

impl TryFrom<RawOriginsOption> for OriginsOption {
    type Error = &'static str;
    fn try_from(raw: RawOriginsOption) -> Result<Self, Self::Error> {
        Ok(match raw {
            RawOriginsOption::Omitted => Self::Omitted,
            RawOriginsOption::Global => Self::Global,
            RawOriginsOption::List(list) => {
                if list.is_empty() || list.len() > MAX_ORIGINS_LIST_LEN {
                    return Err("origins list length out of range");
                }
                let distinct: BTreeSet<&Origin> = list.iter().collect();
                if distinct.len() != list.len() {
                    return Err("origins list has duplicates");
                }
                Self::List(list)
            }
        })
    }
}

impl From<OriginsOption> for RawOriginsOption {
    fn from(option: OriginsOption) -> Self {
        match option {
            OriginsOption::Omitted => Self::Omitted,
            OriginsOption::List(list) => Self::List(list),
            OriginsOption::Global => Self::Global,
        }
    }
}

/// The ceiling a writing document's `Cross-Origin-Storage-Allow-Origin` response header puts on
/// the origins a list write may authorise (SPEC §5). It fails closed: no header, a `*` or any
/// token that is not an origin makes it empty.
///
/// ```
/// use cos_common::{AllowOriginCeiling, Origin};
///
/// let ceiling = AllowOriginCeiling::from_header(Some("https://a.example, https://b.example"));
/// assert!(ceiling.admits(&Origin::from_url("https://a.example")?));
/// assert!(!ceiling.admits(&Origin::from_url("https://c.example")?));
/// assert!(AllowOriginCeiling::from_header(Some("*")).is_empty()); // fails closed
/// assert!(AllowOriginCeiling::from_header(None).is_empty());
/// # Ok::<(), cos_common::OriginParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AllowOriginCeiling(BTreeSet<Origin>);

impl AllowOriginCeiling {
    /// The empty ceiling: list writes authorise nobody.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the header value the browser process saw on a response (SPEC §5): a
    /// comma-separated list of origins, spaces and tabs around each allowed. Empty list elements
    /// (`a,,b`, a trailing comma) are skipped, as HTTP's list syntax asks (RFC 9110 §5.6.1). Any
    /// other token that is not the serialisation of an http(s) origin — `*`, `null`, a path (even
    /// `/`), a query, credentials, another scheme, a non-ASCII or otherwise non-canonical spelling
    /// — empties the whole set. **Decision**: scheme and host compare ASCII case-insensitively and
    /// an explicit default port is allowed (`HTTPS://A.example:443` names `https://a.example`),
    /// since both still name exactly one origin.
    pub fn from_header(value: Option<&str>) -> Self {
        let Some(value) = value else { return Self::empty() };
        let mut origins = BTreeSet::new();
        for token in value.split(',') {
            let token = token.trim_matches([' ', '\t']);
            if token.is_empty() {
                continue;
            }
            match ceiling_token(token) {
                Some(origin) => {
                    origins.insert(origin);
                }
                None => return Self::empty(),
            }
        }
        Self(origins)
    }

    /// What both ceilings admit: a worker's ceiling is the intersection of its owners' (SPEC §5),
    /// so no owner's header is widened by another's.
    pub fn intersection(&self, other: &Self) -> Self {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// A ceiling naming exactly these origins.
    pub fn from_origins(origins: impl IntoIterator<Item = Origin>) -> Self {
        Self(origins.into_iter().collect())
    }

    /// Whether the ceiling admits `origin`.
    pub fn admits(&self, origin: &Origin) -> bool {
        self.0.contains(origin)
    }

    /// The number of origins admitted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is admitted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the ceiling to a requested option: a list keeps only admitted origins and falls
    /// back to [`OriginsOption::Omitted`] when none remain; `"*"` and omitted pass unchanged.
    /// Returns the narrowed option and how many origins were dropped.
    pub fn apply(&self, requested: OriginsOption) -> (OriginsOption, usize) {
        match requested {
            OriginsOption::List(list) => {
                let before = list.len();
                let kept: Vec<Origin> = list.into_iter().filter(|o| self.admits(o)).collect();
                let dropped = before - kept.len();
                (if kept.is_empty() { OriginsOption::Omitted } else { OriginsOption::List(kept) }, dropped)
            }
            other => (other, 0),
        }
    }
}

/// One header token as an origin: exactly an origin's serialisation up to the ASCII case of
/// scheme and host and an explicit default port; any other spelling (which the URL parser would
/// quietly repair: backslashes, percent-escapes, tabs inside, a missing `//`) is refused.
fn ceiling_token(token: &str) -> Option<Origin> {
    if !token.is_ascii() {
        return None;
    }
    let origin = Origin::from_origin_str(token).ok()?;
    let token = token.to_ascii_lowercase();
    let canonical = origin.to_string();
    let with_port = format!("{}://{}:{}", origin.scheme().as_str(), origin.host(), origin.port());
    (token == canonical || token == with_port).then_some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::from_url(s).unwrap()
    }

    fn parse(input: OriginsInput) -> Result<OriginsOption, CosError> {
        OriginsOption::parse(&input)
    }

    #[test]
    fn absent_and_empty_list_are_omitted() {
        assert_eq!(parse(OriginsInput::Absent), Ok(OriginsOption::Omitted));
        assert_eq!(parse(OriginsInput::Sequence(vec![])), Ok(OriginsOption::Omitted));
    }

    #[test]
    fn star_is_global_only_as_a_lone_string() {
        assert_eq!(parse(OriginsInput::Single("*".into())), Ok(OriginsOption::Global));
        assert_eq!(parse(OriginsInput::Sequence(vec!["*".into()])), Err(CosError::Type(TypeErrorKind::InvalidOrigin)));
    }

    #[test]
    fn lone_string_is_a_list_of_one() {
        assert_eq!(
            parse(OriginsInput::Single("https://b.example/app/".into())),
            Ok(OriginsOption::List(vec![o("https://b.example")]))
        );
    }

    #[test]
    fn list_entries_are_urls_reduced_to_origins_and_deduplicated() {
        let list = vec!["https://b.example/x".into(), "https://b.example:443".into(), "http://c.example:8080/".into()];
        assert_eq!(
            parse(OriginsInput::Sequence(list)),
            Ok(OriginsOption::List(vec![o("https://b.example"), o("http://c.example:8080")]))
        );
    }

    #[test]
    fn bad_entries_are_type_errors() {
        for bad in ["data:text/plain,x", "file:///x", "not a url", "", "ws://a.example", "blob:null/x", "about:blank"] {
            assert_eq!(
                parse(OriginsInput::Sequence(vec!["https://ok.example".into(), bad.into()])),
                Err(CosError::Type(TypeErrorKind::InvalidOrigin)),
                "{bad:?}"
            );
            assert_eq!(parse(OriginsInput::Single(bad.into())), Err(CosError::Type(TypeErrorKind::InvalidOrigin)));
        }
    }

    #[test]
    fn more_than_100_entries_is_a_type_error_even_with_duplicates() {
        let hundred: Vec<String> = (0..100).map(|i| format!("https://o{i}.example")).collect();
        assert!(matches!(parse(OriginsInput::Sequence(hundred.clone())), Ok(OriginsOption::List(l)) if l.len() == 100));
        let mut many = hundred;
        many.push("https://o0.example".into());
        assert_eq!(parse(OriginsInput::Sequence(many)), Err(CosError::Type(TypeErrorKind::TooManyOrigins)));
    }

    #[test]
    fn deserialisation_rejects_invalid_lists() {
        let empty = postcard::to_allocvec(&RawOriginsOption::List(vec![])).unwrap();
        assert!(postcard::from_bytes::<OriginsOption>(&empty).is_err());
        let dup = postcard::to_allocvec(&RawOriginsOption::List(vec![o("https://a.example"), o("https://a.example")]))
            .unwrap();
        assert!(postcard::from_bytes::<OriginsOption>(&dup).is_err());
        let long = postcard::to_allocvec(&RawOriginsOption::List(
            (0..101).map(|i| o(&format!("https://o{i}.example"))).collect(),
        ))
        .unwrap();
        assert!(postcard::from_bytes::<OriginsOption>(&long).is_err());
        let good = OriginsOption::List(vec![o("https://a.example")]);
        let bytes = postcard::to_allocvec(&good).unwrap();
        assert_eq!(postcard::from_bytes::<OriginsOption>(&bytes).unwrap(), good);
    }

    #[test]
    fn ceiling_parses_origin_tokens() {
        let ceiling =
            AllowOriginCeiling::from_header(Some("https://b.example, http://c.example:8080 ,\thttps://D.example:443"));
        assert_eq!(ceiling.len(), 3);
        assert!(ceiling.admits(&o("https://b.example")));
        assert!(ceiling.admits(&o("http://c.example:8080")));
        assert!(ceiling.admits(&o("https://d.example")));
    }

    #[test]
    fn ceiling_fails_closed() {
        for value in [
            None,
            Some("*"),
            Some("https://b.example, *"),
            Some("https://b.example, nonsense"),
            Some(""),
            Some("https://b.example/path"),
            Some("data:,x"),
        ] {
            assert!(AllowOriginCeiling::from_header(value).is_empty(), "{value:?}");
        }
    }

    #[test]
    fn ceiling_skips_empty_list_elements() {
        for value in [
            "https://b.example,,https://c.example",
            "https://b.example, ,https://c.example,",
            ",https://b.example,https://c.example",
        ] {
            let ceiling = AllowOriginCeiling::from_header(Some(value));
            assert_eq!(
                ceiling,
                AllowOriginCeiling::from_origins([o("https://b.example"), o("https://c.example")]),
                "{value:?}"
            );
        }
        for value in [",", " , ,\t", " "] {
            assert!(AllowOriginCeiling::from_header(Some(value)).is_empty(), "{value:?}");
        }
    }

    #[test]
    fn ceiling_accepts_case_and_an_explicit_default_port_only() {
        let ceiling =
            AllowOriginCeiling::from_header(Some("HTTPS://B.Example, http://c.example:80, https://[::1]:8443"));
        assert_eq!(
            ceiling,
            AllowOriginCeiling::from_origins([o("https://b.example"), o("http://c.example"), o("https://[::1]:8443")])
        );
    }

    #[test]
    fn any_token_that_is_not_an_origin_serialisation_empties_the_ceiling() {
        for bad in [
            "null",
            "*",
            "https://b.example/",
            "https://b.example/path",
            "https://b.example?",
            "https://b.example#x",
            "https://user@b.example",
            "https:b.example",
            "https:\\\\b.example",
            "https://b.ex\tample",
            "https://b%2Eexample",
            "https://b.example:99999",
            "https://",
            "b.example",
            "//b.example",
            "ws://b.example",
            "ftp://b.example",
            "file:///x",
            "data:,x",
            "blob:https://b.example/uuid",
            "about:blank",
            "https://bücher.example",
            "\"https://b.example\"",
            "https://b.example https://c.example",
        ] {
            let value = format!("https://ok.example, {bad}");
            assert!(AllowOriginCeiling::from_header(Some(&value)).is_empty(), "{bad:?}");
        }
        // The punycode spelling of an IDN is its serialisation.
        assert_eq!(AllowOriginCeiling::from_header(Some("https://xn--bcher-kva.example")).len(), 1);
    }

    #[test]
    fn intersection_admits_what_every_ceiling_admits() {
        let a = AllowOriginCeiling::from_header(Some("https://b.example, https://c.example"));
        let b = AllowOriginCeiling::from_header(Some("https://c.example, https://d.example"));
        assert_eq!(a.intersection(&b), AllowOriginCeiling::from_origins([o("https://c.example")]));
        assert!(a.intersection(&AllowOriginCeiling::empty()).is_empty());
        assert_eq!(a.intersection(&a), a);
    }

    #[test]
    fn ceiling_narrows_lists_only() {
        let ceiling = AllowOriginCeiling::from_header(Some("https://b.example"));
        let list = OriginsOption::List(vec![o("https://b.example"), o("https://c.example")]);
        assert_eq!(ceiling.apply(list), (OriginsOption::List(vec![o("https://b.example")]), 1));
        assert_eq!(
            AllowOriginCeiling::empty().apply(OriginsOption::List(vec![o("https://b.example")])),
            (OriginsOption::Omitted, 1)
        );
        assert_eq!(AllowOriginCeiling::empty().apply(OriginsOption::Global), (OriginsOption::Global, 0));
        assert_eq!(AllowOriginCeiling::empty().apply(OriginsOption::Omitted), (OriginsOption::Omitted, 0));
    }
}
