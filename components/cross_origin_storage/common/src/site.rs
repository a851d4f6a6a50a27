//! Schemeful sites and the Network Isolation Key.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::origin::{Origin, Scheme};

/// A schemeful site: scheme plus registrable domain (eTLD+1 by the Public Suffix List, private
/// registries included, and an unlisted TLD such as `.example` or `.test` counting as a public
/// suffix, as Chromium's `GetDomainAndRegistry` does). Ports are ignored. Hosts without a
/// registrable domain (IP addresses, `localhost`, single-label hosts, hosts that are themselves a
/// public suffix) use the whole host, as Chromium's `SchemefulSite` does.
///
/// ```
/// use cos_common::{NetworkIsolationKey, Origin, Site};
///
/// let site = |url| Site::of(&Origin::from_url(url).unwrap());
/// assert_eq!(site("https://a.b.example.co.uk:8443/").to_string(), "https://example.co.uk");
/// assert_eq!(site("https://user.github.io/").to_string(), "https://user.github.io"); // private registry
/// assert_eq!(site("http://127.0.0.1:8000/").to_string(), "http://127.0.0.1");
/// assert_ne!(site("http://app.example/"), site("https://app.example/")); // schemeful
///
/// // The broker's key for a frame: top-level site + the frame's own site.
/// let key = NetworkIsolationKey { top_level_site: site("https://news.example/"), frame_site: site("https://cdn.example/") };
/// assert_ne!(key.top_level_site, key.frame_site);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    scheme: Scheme,
    domain: String,
}

impl Site {
    /// The site of an origin.
    pub fn of(origin: &Origin) -> Site {
        Site { scheme: origin.scheme(), domain: registrable_domain_or_host(origin.host()).to_owned() }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The registrable domain, or the host where there is none.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Parses the exact serialisation [`Display`](fmt::Display) prints (`https://example.co.uk`).
    pub fn from_serialized(input: &str) -> Option<Site> {
        let origin = Origin::from_serialized(input).ok()?;
        if origin.port() != origin.scheme().default_port() {
            return None;
        }
        let site = Site::of(&origin);
        (site.domain == origin.host()).then_some(site)
    }
}

fn registrable_domain_or_host(host: &str) -> &str {
    if host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok() {
        return host;
    }
    match psl::domain(host.as_bytes()) {
        Some(domain) => {
            // psl returns a suffix of `host`, so the slice is at a char boundary.
            &host[host.len() - domain.as_bytes().len()..]
        }
        _ => host,
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.domain)
    }
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Site({self})")
    }
}

impl Serialize for Site {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Site {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Site::from_serialized(&text).ok_or_else(|| serde::de::Error::custom("not a site serialisation"))
    }
}

/// The Network Isolation Key analogue the broker attaches to every request: the site of the
/// top-level document and the site of the calling frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkIsolationKey {
    /// Site of the top-level browsing context (keys the probe budget).
    pub top_level_site: Site,
    /// Site of the frame that made the call.
    pub frame_site: Site,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(url: &str) -> String {
        Site::of(&Origin::from_url(url).unwrap()).to_string()
    }

    #[test]
    fn registrable_domain_by_psl() {
        assert_eq!(site("https://www.example.com"), "https://example.com");
        assert_eq!(site("https://a.b.example.co.uk:8443"), "https://example.co.uk");
        // Private registries count: each github.io user is its own site.
        assert_eq!(site("https://alice.github.io"), "https://alice.github.io");
        assert_eq!(site("https://cdn.alice.github.io"), "https://alice.github.io");
    }

    #[test]
    fn hosts_without_registrable_domain_use_the_host() {
        assert_eq!(site("http://localhost:3000"), "http://localhost");
        assert_eq!(site("http://app.localhost"), "http://app.localhost");
        assert_eq!(site("https://127.0.0.1:8443"), "https://127.0.0.1");
        assert_eq!(site("https://[::1]"), "https://[::1]");
        assert_eq!(site("https://github.io"), "https://github.io");
        assert_eq!(site("https://co.uk"), "https://co.uk");
        assert_eq!(site("https://intranet"), "https://intranet");
        // Unlisted TLDs act as public suffixes (Chromium includes unknown registries).
        assert_eq!(site("https://a.b.test"), "https://b.test");
        assert_eq!(site("https://www.a.example"), "https://a.example");
    }

    #[test]
    fn same_site_is_schemeful_and_ignores_ports() {
        let o = |s: &str| Origin::from_url(s).unwrap();
        assert!(o("https://a.example.com").is_same_site(&o("https://b.example.com:444")));
        assert!(!o("http://a.example.com").is_same_site(&o("https://a.example.com")));
        assert!(!o("https://alice.github.io").is_same_site(&o("https://bob.github.io")));
        assert!(!o("https://a.localhost").is_same_site(&o("https://b.localhost")));
        assert!(o("http://localhost:1").is_same_site(&o("http://localhost:2")));
    }

    #[test]
    fn serialisation_round_trips_strictly() {
        let parsed = Site::from_serialized("https://example.co.uk").unwrap();
        assert_eq!(parsed.to_string(), "https://example.co.uk");
        assert!(Site::from_serialized("https://www.example.co.uk").is_none());
        assert!(Site::from_serialized("https://example.co.uk:8443").is_none());
        assert!(Site::from_serialized("https://localhost").is_some());
    }
}
