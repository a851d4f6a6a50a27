//! [`DataFrame`]: the framing of bulk data pipes, where chunks must not pass through a
//! serializer.
//!
//! A data frame is either *bulk* bytes, which travel as they are after a one-byte prefix, or a
//! declared (postcard) message. A sender reads file bytes straight into its buffer after
//! [`BULK_PREFIX`]; a receiver scatters them straight into their destination
//! ([`Endpoint::recv_data_into`]). Bytes a well-behaved peer never sends — an unknown prefix, a
//! message that does not decode, bulk beyond the receiver's bound, any attachment — are peer
//! misbehaviour.

use std::io::IoSliceMut;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};

use crate::{Endpoint, IpcError};

const BULK: u8 = 0;
const MESSAGE: u8 = 1;

/// What a sender puts before bulk bytes it reads straight into its send buffer.
pub const BULK_PREFIX: &[u8] = &[BULK];

/// Room for a declared message that arrives where bulk was expected (its bytes first land in
/// the bulk destination and the rest here): data-pipe messages are small.
const MESSAGE_TAIL: usize = 1024;

/// One frame of a data pipe: bulk bytes, or a declared message `M`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFrame<'a, M> {
    /// Raw bytes (a chunk of the data the pipe carries).
    Bulk(&'a [u8]),
    /// A declared message (a command, the end of the data, an error).
    Message(M),
}

impl<M: Serialize> DataFrame<'_, M> {
    /// Encodes the frame as one message payload.
    pub fn encode(&self) -> Result<Vec<u8>, IpcError> {
        match self {
            Self::Bulk(bytes) => Ok([BULK_PREFIX, bytes].concat()),
            Self::Message(message) => {
                let mut out = vec![MESSAGE];
                out.extend_from_slice(&crate::encode(message)?);
                Ok(out)
            }
        }
    }
}

impl<'a, M: Deserialize<'a>> DataFrame<'a, M> {
    /// Decodes one frame; bulk longer than `max_bulk` is [`IpcError::Oversized`].
    pub fn decode(bytes: &'a [u8], max_bulk: usize) -> Result<Self, IpcError> {
        match bytes.split_first() {
            Some((&BULK, bulk)) if bulk.len() <= max_bulk => Ok(Self::Bulk(bulk)),
            Some((&BULK, bulk)) => Err(IpcError::Oversized { len: bulk.len() }),
            Some((&MESSAGE, message)) => crate::codec::decode_borrowed(message).map(Self::Message),
            _ => Err(IpcError::Decode("unknown data frame".into())),
        }
    }
}

/// What [`Endpoint::recv_data_into`] received.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<M> {
    /// This many bulk bytes, now at the start of the destination.
    Bulk(usize),
    /// A declared message.
    Message(M),
}

impl Endpoint {
    /// Receives the next data frame; bulk bytes land straight in `out` (no intermediate copy),
    /// and bulk longer than `out` is [`IpcError::Oversized`]. A frame with attachments is
    /// [`IpcError::BadAttachment`] (they are closed).
    pub fn recv_data_into<M: DeserializeOwned>(&self, out: &mut [u8]) -> Result<Received<M>, IpcError> {
        let mut prefix = [0u8; 1];
        let mut tail = [0u8; MESSAGE_TAIL];
        let capacity = out.len();
        let (len, attachments) =
            self.recv_vectored(&mut [IoSliceMut::new(&mut prefix), IoSliceMut::new(out), IoSliceMut::new(&mut tail)])?;
        if !attachments.is_empty() {
            return Err(IpcError::BadAttachment("an endpoint attached to a data frame"));
        }
        let body = len.saturating_sub(1);
        match prefix[0] {
            _ if len == 0 => Err(IpcError::Decode("empty data frame".into())),
            BULK if body <= capacity => Ok(Received::Bulk(body)),
            BULK => Err(IpcError::Oversized { len: body }),
            _ => {
                // A message: reassemble it from wherever its bytes landed.
                let in_out = body.min(capacity);
                let mut frame = Vec::with_capacity(len);
                frame.push(prefix[0]);
                frame.extend_from_slice(&out[..in_out]);
                frame.extend_from_slice(&tail[..body - in_out]);
                match DataFrame::<M>::decode(&frame, 0)? {
                    DataFrame::Message(message) => Ok(Received::Message(message)),
                    DataFrame::Bulk(_) => Err(IpcError::Decode("unknown data frame".into())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    enum End {
        Done,
        Failed(String),
    }

    #[test]
    fn frames_round_trip_and_bulk_is_bounded() {
        for frame in [DataFrame::Bulk(&b"abc"[..]), DataFrame::Bulk(&[]), DataFrame::Message(End::Failed("x".into()))] {
            let bytes = frame.encode().unwrap();
            assert_eq!(DataFrame::decode(&bytes, 3).unwrap(), frame);
        }
        let bytes = DataFrame::<End>::Bulk(b"abcd").encode().unwrap();
        assert!(matches!(DataFrame::<End>::decode(&bytes, 3), Err(IpcError::Oversized { len: 4 })));
        for bad in [&[][..], &[2], &[MESSAGE, 9], &[MESSAGE, 0, 0]] {
            assert!(DataFrame::<End>::decode(bad, 8).unwrap_err().is_peer_misbehaviour(), "{bad:?}");
        }
    }

    #[test]
    fn bulk_lands_in_place_and_messages_are_reassembled() {
        for (a, b) in [Endpoint::pair().unwrap(), Endpoint::pair_in_process()] {
            let mut out = [0u8; 4];
            a.send(&DataFrame::<End>::Bulk(b"wxyz").encode().unwrap(), vec![]).unwrap();
            assert_eq!(b.recv_data_into::<End>(&mut out).unwrap(), Received::Bulk(4));
            assert_eq!(&out, b"wxyz");
            let failed = End::Failed("a reason longer than the destination".into());
            a.send(&DataFrame::Message(failed.clone()).encode().unwrap(), vec![]).unwrap();
            assert_eq!(b.recv_data_into::<End>(&mut out).unwrap(), Received::Message(failed));
            a.send(&DataFrame::<End>::Bulk(b"12345").encode().unwrap(), vec![]).unwrap();
            assert!(matches!(b.recv_data_into::<End>(&mut out), Err(IpcError::Oversized { len: 5 })));
            let (stray, _keep) =
                if a.is_in_process() { Endpoint::pair_in_process() } else { Endpoint::pair().unwrap() };
            a.send(&DataFrame::Message(End::Done).encode().unwrap(), vec![stray]).unwrap();
            assert!(matches!(b.recv_data_into::<End>(&mut out), Err(IpcError::BadAttachment(_))));
        }
    }
}
