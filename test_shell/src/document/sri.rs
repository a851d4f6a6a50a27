//! Subresource Integrity for module scripts, which the renderer's module loader fetches itself
//! (the W3C SRI rules: the strongest algorithm listed decides; unknown algorithms are ignored;
//! metadata with no known algorithm checks nothing).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash algorithms SRI knows, weakest first (their order is their strength).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => Sha256::digest(bytes).to_vec(),
            Algorithm::Sha384 => Sha384::digest(bytes).to_vec(),
            Algorithm::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// The `alg-base64` tokens of `metadata` that name a known algorithm (options after `?` dropped).
fn parse(metadata: &str) -> Vec<(Algorithm, &str)> {
    metadata
        .split_ascii_whitespace()
        .filter_map(|token| {
            let token = token.split('?').next().unwrap_or(token);
            let (algorithm, value) = token.split_once('-')?;
            let algorithm = match algorithm.to_ascii_lowercase().as_str() {
                "sha256" => Algorithm::Sha256,
                "sha384" => Algorithm::Sha384,
                "sha512" => Algorithm::Sha512,
                _ => return None,
            };
            Some((algorithm, value))
        })
        .collect()
}

/// Whether `bytes` match `metadata` (an `integrity` attribute or import attribute).
pub(crate) fn matches(metadata: &str, bytes: &[u8]) -> bool {
    let listed = parse(metadata);
    let Some(strongest) = listed.iter().map(|(algorithm, _)| *algorithm).max() else { return true };
    let actual = base64(&strongest.digest(bytes));
    listed.iter().filter(|(algorithm, _)| *algorithm == strongest).any(|(_, expected)| normalised(expected) == actual)
}

/// A digest as SRI writes it, without padding; base64url letters read as base64's.
fn normalised(value: &str) -> String {
    value.trim_end_matches('=').replace('-', "+").replace('_', "/")
}

/// Standard base64 without padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // `printf 'alert(1)' | openssl dgst -sha256 -binary | base64`
    const ALERT_SHA256: &str = "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=";

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg");
        assert_eq!(base64(b"fo"), "Zm8");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8");
    }

    #[test]
    fn the_strongest_listed_algorithm_decides() {
        assert!(matches(ALERT_SHA256, b"alert(1)"));
        assert!(!matches(ALERT_SHA256, b"alert(2)"));
        assert!(!matches(&format!("sha512-bogus {ALERT_SHA256}"), b"alert(1)"), "sha512 is stronger and fails");
        assert!(
            matches(&format!("sha256-bogus {ALERT_SHA256}?ct=text/javascript"), b"alert(1)"),
            "any of one algorithm"
        );
        assert!(matches("SHA256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF-pI", b"alert(1)"), "base64url, no padding");
    }

    #[test]
    fn metadata_without_a_known_algorithm_checks_nothing() {
        assert!(matches("", b"anything"));
        assert!(matches("md5-abc sha1-def", b"anything"));
    }
}
