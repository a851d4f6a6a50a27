//! postcard encoding with the message size bound enforced while encoding.
//!
//! Only this crate knows the wire format: callers hand in serde types and get serde types back.

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};

use crate::{IpcError, MAX_MESSAGE_BYTES};

/// A postcard output flavour that refuses to grow past [`MAX_MESSAGE_BYTES`], so encoding a
/// runaway value fails early instead of first building a huge buffer and then refusing to send it.
struct BoundedVec(Vec<u8>);

impl postcard::ser_flavors::Flavor for BoundedVec {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.0.len() + data.len() > MAX_MESSAGE_BYTES {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Encodes `message` with postcard; fails with [`IpcError::Encode`] if the encoding would exceed
/// [`MAX_MESSAGE_BYTES`] (checked while encoding: at most that much is ever buffered).
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, IpcError> {
    encode_into(message, Vec::new())
}

/// Like [`encode`], but into `buffer` (cleared first), so a sender of many frames reuses one
/// allocation.
pub fn encode_into<T: Serialize>(message: &T, mut buffer: Vec<u8>) -> Result<Vec<u8>, IpcError> {
    buffer.clear();
    postcard::serialize_with_flavor(message, BoundedVec(buffer)).map_err(|e| match e {
        postcard::Error::SerializeBufferFull => {
            IpcError::Encode(format!("encoding exceeds the limit of {MAX_MESSAGE_BYTES} bytes"))
        }
        other => IpcError::Encode(other.to_string()),
    })
}

/// Decodes a postcard message; any error, including bytes left over after the value, is
/// [`IpcError::Decode`]. Trailing bytes are refused because a well-behaved peer never sends them:
/// accepting them would let two different byte strings mean the same message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IpcError> {
    decode_borrowed(bytes)
}

/// Like [`decode`], for a message that borrows from `bytes` (bulk data is not copied out).
pub fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, IpcError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| IpcError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(IpcError::Decode(format!("{} trailing bytes after the message", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Request {
        Ping(u32),
        Blob { name: String, bytes: Vec<u8> },
    }

    #[test]
    fn round_trip() {
        let message = Request::Blob { name: "a".into(), bytes: vec![1, 2, 3] };
        let bytes = encode(&message).unwrap();
        assert_eq!(decode::<Request>(&bytes).unwrap(), message);
        assert_eq!(decode::<Request>(&encode(&Request::Ping(7)).unwrap()).unwrap(), Request::Ping(7));
    }

    #[test]
    fn encode_refuses_more_than_the_limit() {
        let fits = Request::Blob { name: String::new(), bytes: vec![0; MAX_MESSAGE_BYTES - 8] };
        assert!(encode(&fits).unwrap().len() <= MAX_MESSAGE_BYTES);
        let too_big = Request::Blob { name: String::new(), bytes: vec![0; MAX_MESSAGE_BYTES] };
        assert!(matches!(encode(&too_big), Err(IpcError::Encode(_))));
    }

    #[test]
    fn decode_errors() {
        // Unknown variant.
        assert!(matches!(decode::<Request>(&[9]), Err(IpcError::Decode(_))));
        // Truncated.
        let bytes = encode(&Request::Blob { name: "abc".into(), bytes: vec![1; 10] }).unwrap();
        assert!(matches!(decode::<Request>(&bytes[..bytes.len() - 1]), Err(IpcError::Decode(_))));
        // Trailing bytes.
        let mut bytes = encode(&Request::Ping(1)).unwrap();
        bytes.push(0);
        let err = decode::<Request>(&bytes).unwrap_err();
        assert!(matches!(err, IpcError::Decode(_)) && err.is_peer_misbehaviour(), "{err}");
        // A length prefix far beyond the input must fail, not allocate it.
        let mut bytes = vec![1, 0];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(decode::<Request>(&bytes), Err(IpcError::Decode(_))));
    }
}
