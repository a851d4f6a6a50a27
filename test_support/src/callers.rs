//! The callers and hashes every store test starts from, so that each test file says only what
//! it checks.

use cos_common::{CallerContext, ContentHash, Origin};
use sha2::{Digest, Sha256};

/// The SHA-256 of `bytes` as the API names a file.
pub fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash::from_bytes(Sha256::digest(bytes).into())
}

/// The SHA-256 of `bytes` in lowercase hex, as pages and logs spell it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The origin of `url`; panics on a URL the tests should never write.
pub fn origin(url: &str) -> Origin {
    Origin::from_url(url).unwrap_or_else(|e| panic!("test origin {url}: {e:?}"))
}

/// A top-level document of `url`'s origin (its own partition).
pub fn caller(url: &str) -> CallerContext {
    CallerContext::top_level(origin(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_agree() {
        assert_eq!(hash_of(b"abc").to_hex(), sha256_hex(b"abc"));
        assert_eq!(caller("https://a.test/x").origin(), &origin("https://a.test"));
    }
}
