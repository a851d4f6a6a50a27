//! Tuple origins (http and https only), our own serde-friendly type.
//!
//! `url::Origin` cannot cross processes (opaque origins carry a process-local counter) and has no
//! serde support, so COS keeps its own: only tuple origins with scheme `http` or `https` exist.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The two schemes a COS origin may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// `http:` (only `http://localhost` and friends are secure contexts, but lists may name any).
    Http,
    /// `https:`.
    Https,
}

impl Scheme {
    /// The scheme as written in URLs, without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    /// The port a URL of this scheme uses when none is written.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Why a string is not a COS origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginParseError {
    /// The URL parser rejected it.
    #[error("not a valid URL")]
    Unparseable,
    /// It parses, but its origin is opaque (`data:`, `file:`, `blob:` of an opaque origin, ...).
    #[error("the URL's origin is opaque")]
    Opaque,
    /// A tuple origin whose scheme is neither http nor https (`ws:`, `ftp:`, ...).
    #[error("only http and https origins are allowed")]
    UnsupportedScheme,
    /// A string that should be an origin's serialisation carries a path, query, credentials or
    /// non-canonical spelling.
    #[error("not an origin serialisation")]
    NotAnOrigin,
}

/// An http(s) tuple origin: scheme, host (ASCII-serialised, IPv6 in brackets) and port.
///
/// The port is always present internally and left out of the serialisation when it is the
/// scheme's default, exactly like the HTML origin serialisation.
///
/// An embedder converts its own origin type through the serialisation (Servo's
/// `ImmutableOrigin::ascii_serialization`, Chromium's `url::Origin::Serialize`); an opaque
/// origin has none, and is `cos_browser::FrameOrigin::Opaque` in the browser's frame table.
///
/// ```
/// use cos_common::Origin;
///
/// let origin = Origin::from_url("https://App.Example:443/models/index.html?x#y")?;
/// assert_eq!(origin.to_string(), "https://app.example");
/// assert_eq!(Origin::from_serialized("https://app.example")?, origin);
/// assert!(Origin::from_url("http://localhost:8000/")?.is_potentially_trustworthy());
/// assert!(origin.is_same_site(&Origin::from_url("https://cdn.app.example/")?));
/// // Only http(s) tuple origins: `null` (an opaque origin's serialisation) is not one.
/// assert!(Origin::from_serialized("null").is_err());
/// assert!(Origin::from_url("data:text/html,hi").is_err());
/// # Ok::<(), cos_common::OriginParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of any URL (path, query and fragment are ignored), as SPEC §2 asks for the
    /// entries of an `origins` list.
    pub fn from_url(input: &str) -> Result<Self, OriginParseError> {
        let url = url::Url::parse(input).map_err(|_| OriginParseError::Unparseable)?;
        Self::from_parsed_url(&url)
    }

    fn from_parsed_url(url: &url::Url) -> Result<Self, OriginParseError> {
        match url.origin() {
            url::Origin::Opaque(_) => Err(OriginParseError::Opaque),
            url::Origin::Tuple(scheme, host, port) => {
                let scheme = match scheme.as_str() {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    _ => return Err(OriginParseError::UnsupportedScheme),
                };
                Ok(Self { scheme, host: host.to_string(), port })
            }
        }
    }

    /// Parses a string that names an origin and nothing more: `https://a.example`,
    /// `https://A.example:443/` and `http://[::1]:8080` are accepted; a path, query, fragment or
    /// credentials are not. Used for header tokens.
    pub fn from_origin_str(input: &str) -> Result<Self, OriginParseError> {
        let url = url::Url::parse(input).map_err(|_| OriginParseError::Unparseable)?;
        let origin = Self::from_parsed_url(&url)?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none()
            && url.scheme() == origin.scheme.as_str();
        if bare { Ok(origin) } else { Err(OriginParseError::NotAnOrigin) }
    }

    /// Parses the exact serialisation this type prints (what is stored on disk and sent over
    /// IPC); any other spelling is rejected, so stored values stay canonical.
    pub fn from_serialized(input: &str) -> Result<Self, OriginParseError> {
        let origin = Self::from_origin_str(input)?;
        if origin.to_string() == input { Ok(origin) } else { Err(OriginParseError::NotAnOrigin) }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host, ASCII-serialised (punycode for IDN, brackets around IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether documents of this origin are secure contexts: whether it is "potentially
    /// trustworthy" (Secure Contexts §3.1): https, or a loopback host (`localhost`,
    /// `*.localhost`, 127.0.0.0/8, `[::1]`), which no other machine can answer for.
    pub fn is_potentially_trustworthy(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let loopback_ip = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        self.scheme == Scheme::Https || host == "localhost" || host.ends_with(".localhost") || loopback_ip
    }

    /// The port, with the scheme's default filled in.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether `self` and `other` have the same schemeful site.
    pub fn is_same_site(&self, other: &Origin) -> bool {
        crate::Site::of(self) == crate::Site::of(other)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

impl FromStr for Origin {
    type Err = OriginParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_serialized(s)
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_serialized(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_loopback_hosts_are_potentially_trustworthy() {
        for (url, trustworthy) in [
            ("https://a.example", true),
            ("http://a.example", false),
            ("http://localhost:8080", true),
            ("http://app.localhost", true),
            ("http://127.0.0.2", true),
            ("http://[::1]", true),
            ("http://10.0.0.1", false),
        ] {
            assert_eq!(Origin::from_url(url).unwrap().is_potentially_trustworthy(), trustworthy, "{url}");
        }
    }

    #[test]
    fn default_ports_are_normalised() {
        assert_eq!(Origin::from_url("https://a.example:443/x").unwrap().to_string(), "https://a.example");
        assert_eq!(Origin::from_url("http://a.example:80").unwrap().to_string(), "http://a.example");
        let custom = Origin::from_url("https://a.example:8443/").unwrap();
        assert_eq!(custom.to_string(), "https://a.example:8443");
        assert_eq!(custom.port(), 8443);
        assert_eq!(Origin::from_url("https://a.example").unwrap().port(), 443);
    }

    #[test]
    fn hosts_are_canonicalised() {
        assert_eq!(Origin::from_url("HTTPS://A.Example/").unwrap().to_string(), "https://a.example");
        assert_eq!(Origin::from_url("https://bücher.example").unwrap().host(), "xn--bcher-kva.example");
        assert_eq!(Origin::from_url("http://[::1]:8080/").unwrap().to_string(), "http://[::1]:8080");
        assert_eq!(Origin::from_url("http://127.1/").unwrap().host(), "127.0.0.1");
    }

    #[test]
    fn only_http_tuple_origins() {
        assert_eq!(Origin::from_url("data:text/plain,hi"), Err(OriginParseError::Opaque));
        assert_eq!(Origin::from_url("file:///etc/passwd"), Err(OriginParseError::Opaque));
        assert_eq!(Origin::from_url("blob:null/1234"), Err(OriginParseError::Opaque));
        assert_eq!(Origin::from_url("about:blank"), Err(OriginParseError::Opaque));
        assert_eq!(Origin::from_url("wss://a.example"), Err(OriginParseError::UnsupportedScheme));
        assert_eq!(Origin::from_url("ftp://a.example"), Err(OriginParseError::UnsupportedScheme));
        assert_eq!(Origin::from_url("not a url"), Err(OriginParseError::Unparseable));
        assert_eq!(Origin::from_url("https://"), Err(OriginParseError::Unparseable));
        assert_eq!(Origin::from_url(""), Err(OriginParseError::Unparseable));
        assert_eq!(Origin::from_url("a.example"), Err(OriginParseError::Unparseable));
        // blob: URLs of a tuple origin take the inner origin.
        assert_eq!(Origin::from_url("blob:https://a.example/uuid").unwrap().to_string(), "https://a.example");
    }

    #[test]
    fn origin_strings_carry_nothing_else() {
        assert!(Origin::from_origin_str("https://a.example").is_ok());
        assert!(Origin::from_origin_str("https://A.example:443/").is_ok());
        for bad in [
            "https://a.example/x",
            "https://a.example?q",
            "https://a.example#f",
            "https://u@a.example",
            "blob:https://a.example/x",
        ] {
            assert_eq!(Origin::from_origin_str(bad), Err(OriginParseError::NotAnOrigin), "{bad}");
        }
    }

    #[test]
    fn serialized_form_is_strict_and_round_trips() {
        let origin: Origin = "https://a.example:8443".parse().unwrap();
        assert_eq!(origin.to_string(), "https://a.example:8443");
        assert!("https://a.example:443".parse::<Origin>().is_err());
        assert!("https://A.example".parse::<Origin>().is_err());
        assert!("https://a.example/".parse::<Origin>().is_err());
    }
}
