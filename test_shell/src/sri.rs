//! Subresource Integrity metadata (the `integrity` member of a request): parsing, and checking
//! a body against it as it streams. Used by the browser's network service (whose verdict decides
//! whether a fetched resource is stored in COS) and by the renderer's `fetch` (whose verdict
//! decides whether the page gets the response).
//!
//! As the SRI specification says: tokens are `<algorithm>-<base64 digest>[?options]`, separated
//! by whitespace; unknown algorithms and malformed tokens are ignored (options too); only the
//! strongest algorithm present counts, and the body matches if any of its digests matches. No
//! usable token: nothing to check.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use cos_common::ContentHash;
use sha2::Digest;

/// The algorithms SRI knows, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`.
    Sha256,
    /// `sha384`.
    Sha384,
    /// `sha512`.
    Sha512,
}

/// Parsed metadata: the digests of the strongest algorithm present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    algorithm: Algorithm,
    digests: Vec<Vec<u8>>,
}

impl Integrity {
    /// Parses `integrity`; `None` when no token is usable (the request has no integrity check).
    pub fn parse(metadata: &str) -> Option<Self> {
        let mut best: Option<Integrity> = None;
        for token in metadata.split_ascii_whitespace() {
            let token = token.split_once('?').map_or(token, |(value, _options)| value);
            let Some((name, value)) = token.split_once('-') else { continue };
            let (algorithm, len) = match name.to_ascii_lowercase().as_str() {
                "sha256" => (Algorithm::Sha256, 32),
                "sha384" => (Algorithm::Sha384, 48),
                "sha512" => (Algorithm::Sha512, 64),
                _ => continue,
            };
            let digest = STANDARD_PAD_INDIFFERENT.decode(value).or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(value));
            let Some(digest) = digest.ok().filter(|d| d.len() == len) else { continue };
            match &mut best {
                Some(current) if current.algorithm == algorithm => current.digests.push(digest),
                Some(current) if current.algorithm > algorithm => {}
                _ => best = Some(Integrity { algorithm, digests: vec![digest] }),
            }
        }
        best
    }

    /// The hash COS is keyed by (SPEC §11): the request's only `sha256` value, when `sha256`
    /// is the strongest algorithm present. Several `sha256` values, or a stronger algorithm,
    /// leave COS out of the request.
    pub fn cos_hash(&self) -> Option<ContentHash> {
        match (self.algorithm, self.digests.as_slice()) {
            (Algorithm::Sha256, [digest]) => Some(ContentHash::from_bytes(digest.as_slice().try_into().ok()?)),
            _ => None,
        }
    }

    /// A checker fed the body as it streams.
    pub fn checker(&self) -> Checker {
        let hasher = match self.algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Checker { hasher, expected: self.digests.clone() }
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

/// Hashes a body as it streams; [`matches`](Self::matches) gives the verdict at its end.
pub struct Checker {
    hasher: Hasher,
    expected: Vec<Vec<u8>>,
}

impl Checker {
    /// The next piece of the body.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// Whether the whole body matched one of the digests.
    pub fn matches(self) -> bool {
        let digest: Vec<u8> = match self.hasher {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        self.expected.contains(&digest)
    }
}

/// `sha256-<base64>` of `bytes` (the demo's pages embed these, as a real page does).
pub fn sha256_metadata(bytes: &[u8]) -> String {
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes)))
}

/// `sha256-<base64>` of the digest given as 64 hex digits (empty if it is not one).
pub fn sha256_metadata_of_hex(hex: &str) -> String {
    ContentHash::from_hex(hex).map_or_else(String::new, |hash| {
        format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(hash.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(digest: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(digest)
    }

    fn check(metadata: &str, body: &[u8]) -> Option<bool> {
        let integrity = Integrity::parse(metadata)?;
        let mut checker = integrity.checker();
        for piece in body.chunks(3) {
            checker.update(piece);
        }
        Some(checker.matches())
    }

    #[test]
    fn the_strongest_algorithm_wins_and_any_of_its_values_matches() {
        let body = b"alert('hi')";
        let s256 = format!("sha256-{}", b64(&sha2::Sha256::digest(body)));
        let s384 = format!("sha384-{}", b64(&sha2::Sha384::digest(body)));
        let s512 = format!("sha512-{}", b64(&sha2::Sha512::digest(body)));
        let wrong384 = format!("sha384-{}", b64(&sha2::Sha384::digest(b"other")));
        assert_eq!(check(&s256, body), Some(true));
        assert_eq!(check(&s512, body), Some(true));
        assert_eq!(check(&format!("{s256} {wrong384}"), body), Some(false), "sha384 is stronger and fails");
        assert_eq!(check(&format!("{wrong384} {s384}"), body), Some(true), "any value of the strongest");
        assert_eq!(check(&format!("{s256}?foo=bar  {s512}?x"), body), Some(true), "options are ignored");
        assert_eq!(check(&sha256_metadata(body), body), Some(true));
        assert_eq!(check(&sha256_metadata(body), b"tampered"), Some(false));
        assert_eq!(sha256_metadata_of_hex(&hex_of(body)), sha256_metadata(body));
        assert_eq!(check("md5-abc sha256-notbase64! sha1-xyz", body), None, "no usable token");
        assert_eq!(check("", body), None);
    }

    #[test]
    fn cos_uses_a_lone_sha256_value_only() {
        let body = b"x";
        let s256 = sha256_metadata(body);
        let hash = Integrity::parse(&s256).unwrap().cos_hash().unwrap();
        assert_eq!(hash.to_hex(), hex_of(body));
        let other = sha256_metadata(b"y");
        assert_eq!(Integrity::parse(&format!("{s256} {other}")).unwrap().cos_hash(), None, "several values");
        let s384 = format!("sha384-{}", b64(&sha2::Sha384::digest(body)));
        assert_eq!(Integrity::parse(&format!("{s256} {s384}")).unwrap().cos_hash(), None, "a stronger algorithm");
        let url_safe = s256.replace('+', "-").replace('/', "_").trim_end_matches('=').to_owned();
        assert_eq!(Integrity::parse(&url_safe).unwrap().cos_hash(), Some(hash), "base64url, no padding");
    }

    fn hex_of(bytes: &[u8]) -> String {
        sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }
}
