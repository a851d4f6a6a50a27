//! The content address of an entry: a SHA-256 digest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CosError, TypeErrorKind};

/// The hash algorithms COS accepts. **Decision** (SPEC §2): SHA-256 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256, the only algorithm the Public Hash List and Chromium's prototype use.
    Sha256,
}

impl HashAlgorithm {
    /// Parses a WebCrypto algorithm name, compared ASCII case-insensitively.
    pub fn parse(name: &str) -> Result<Self, CosError> {
        if name.eq_ignore_ascii_case("SHA-256") {
            Ok(Self::Sha256)
        } else {
            Err(CosError::Type(TypeErrorKind::UnsupportedAlgorithm))
        }
    }

    /// The canonical WebCrypto name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
        }
    }
}

/// A SHA-256 digest naming one entry.
///
/// ```
/// use cos_common::ContentHash;
///
/// let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; // SHA-256 of ""
/// let hash = ContentHash::parse("SHA-256", hex)?;
/// assert_eq!(hash, ContentHash::from_hex(hex).unwrap());
/// assert_eq!(hash.to_hex(), hex);
/// // SPEC §2: the algorithm name is case-insensitive; the value must be 64 lowercase hex digits.
/// assert!(ContentHash::parse("sha-256", hex).is_ok());
/// assert_eq!(ContentHash::parse("SHA-256", &hex.to_uppercase()).unwrap_err().name(), "TypeError");
/// # Ok::<(), cos_common::CosError>(())
/// ```
///
/// It can only be built from 32 bytes or from a validated `{algorithm, value}` pair, so its
/// [`Display`](fmt::Display) form (64 lowercase hex digits) is always safe as a file name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 64;

    /// Wraps a raw digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Validates the web-facing `{algorithm, value}` dictionary exactly as SPEC §2 says:
    /// `algorithm` is `SHA-256` in any ASCII case, `value` is exactly 64 lowercase hex digits.
    pub fn parse(algorithm: &str, value: &str) -> Result<Self, CosError> {
        HashAlgorithm::parse(algorithm)?;
        Self::from_hex(value).ok_or(CosError::Type(TypeErrorKind::MalformedHashValue))
    }

    /// Parses 64 lowercase hex digits; anything else (uppercase, other lengths, non-hex) is `None`.
    pub fn from_hex(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        if bytes.len() != Self::HEX_LEN {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *slot = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
        }
        Some(Self(out))
    }

    /// The 64-digit lowercase hex form (also what `Display` prints).
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The first byte as two hex digits: the fan-out directory of the blob store.
    pub fn shard(&self) -> String {
        format!("{:02x}", self.0[0])
    }
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl FromStr for ContentHash {
    type Err = CosError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s).ok_or(CosError::Type(TypeErrorKind::MalformedHashValue))
    }
}

// On the wire and on disk a hash is its 32 raw bytes: fixed size, nothing to re-validate.
impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_canonical_sha256() {
        let hash = ContentHash::parse("SHA-256", EMPTY).unwrap();
        assert_eq!(hash.to_string(), EMPTY);
        assert_eq!(hash.shard(), "e3");
    }

    #[test]
    fn algorithm_is_ascii_case_insensitive_and_same_entry() {
        let upper = ContentHash::parse("SHA-256", EMPTY).unwrap();
        for name in ["sha-256", "Sha-256", "sHa-256"] {
            assert_eq!(ContentHash::parse(name, EMPTY).unwrap(), upper);
        }
    }

    #[test]
    fn rejects_other_algorithms() {
        for name in ["md5", "SHA-1", "SHA-384", "SHA-512", "SHA256", "sha_256", "", " SHA-256", "SHA-256 "] {
            assert_eq!(
                ContentHash::parse(name, EMPTY),
                Err(CosError::Type(TypeErrorKind::UnsupportedAlgorithm)),
                "{name:?}"
            );
        }
        // Non-ASCII case folding must not sneak in (U+017F LATIN SMALL LETTER LONG S etc.).
        assert!(ContentHash::parse("\u{17f}HA-256", EMPTY).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            &EMPTY[..63],              // 63 chars
            &format!("{EMPTY}0")[..],  // 65 chars
            &EMPTY.to_uppercase()[..], // uppercase
            &format!("{}A", &EMPTY[..63])[..],
            &format!("{}g", &EMPTY[..63])[..],
            &format!("{} ", &EMPTY[..63])[..],
            "",
            &format!("0x{}", &EMPTY[..62])[..],
        ];
        for value in bad {
            assert_eq!(
                ContentHash::parse("SHA-256", value),
                Err(CosError::Type(TypeErrorKind::MalformedHashValue)),
                "{value:?}"
            );
        }
        // Multi-byte characters with a 64-byte UTF-8 length are still rejected.
        let sneaky = format!("{}é", &EMPTY[..62]);
        assert_eq!(sneaky.len(), 64);
        assert!(ContentHash::from_hex(&sneaky).is_none());
    }

    #[test]
    fn algorithm_is_checked_before_value() {
        assert_eq!(ContentHash::parse("md5", "nope"), Err(CosError::Type(TypeErrorKind::UnsupportedAlgorithm)));
    }

    #[test]
    fn serde_round_trip_is_raw_bytes() {
        let hash = ContentHash::parse("SHA-256", EMPTY).unwrap();
        let bytes = postcard::to_allocvec(&hash).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(postcard::from_bytes::<ContentHash>(&bytes).unwrap(), hash);
    }
}
