//! The control pipe between the shell's browser and a renderer, for messages of any size. One
//! IPC datagram holds at most [`MAX_MESSAGE_BYTES`], while a `frame.eval` argument or result,
//! a script or a console line can be far larger, so a large message goes as a run of pieces
//! that the receiver joins. The receiver bounds the joined size ([`Channel::with_limit`]): a
//! renderer is untrusted, and the browser must not buffer whatever it claims to send.

use std::marker::PhantomData;

use cos_ipc::{Endpoint, IpcError, MAX_MESSAGE_BYTES};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The default bound of one message, pieces joined: far above any test's needs, far below what
/// would hurt the browser.
pub const DEFAULT_MESSAGE_LIMIT: usize = 256 << 20;

/// A whole message in one datagram (the only kind that may carry endpoints).
const TAG_WHOLE: u8 = 0;
/// A piece of a large message; more follow.
const TAG_PART: u8 = 1;
/// The last piece of a large message.
const TAG_LAST: u8 = 2;
/// Bytes of the encoding per datagram, after the tag byte.
const PIECE: usize = MAX_MESSAGE_BYTES - 1;

/// Why a message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The pipe failed (the peer went away, or a datagram was malformed).
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// The message does not fit the limit; a received one was read to its end and dropped.
    #[error("a message of {len} bytes exceeds the limit of {limit} bytes (test_shell run --message-limit)")]
    TooLarge {
        /// The message's size (for a received one, as much as arrived before its end).
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The peer broke the framing.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

/// A typed control pipe that carries messages of any size up to its limit.
pub struct Channel<Out, In> {
    endpoint: Endpoint,
    limit: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out: Serialize, In: DeserializeOwned> Channel<Out, In> {
    /// A channel over `endpoint` with the [`DEFAULT_MESSAGE_LIMIT`].
    pub fn new(endpoint: Endpoint) -> Self {
        Self::with_limit(endpoint, DEFAULT_MESSAGE_LIMIT)
    }

    /// A channel over `endpoint` whose messages (either way) may encode to at most `limit` bytes.
    pub fn with_limit(endpoint: Endpoint, limit: usize) -> Self {
        Self { endpoint, limit, _types: PhantomData }
    }

    /// Changes the limit (e.g. to the one the peer announced).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Sends `message`. A message that carries endpoints ([`cos_ipc::Attached`] fields) goes
    /// through the transport's declared encoding and must fit one datagram; any other may be of
    /// any size up to the limit.
    pub fn send(&self, message: Out) -> Result<(), ChannelError> {
        // An `Attached` field refuses to serialize outside the transport's encoder, before it
        // gives its endpoint up: such a message takes the declared path below.
        let Ok(bytes) = postcard::to_allocvec(&message) else {
            let (bytes, attachments) = cos_ipc::encode_with_attachments(message)?;
            return Ok(self.endpoint.send(&[&[TAG_WHOLE][..], &bytes].concat(), attachments)?);
        };
        if bytes.len() > self.limit {
            return Err(ChannelError::TooLarge { len: bytes.len(), limit: self.limit });
        }
        if bytes.len() <= PIECE {
            return Ok(self.endpoint.send(&[&[TAG_WHOLE][..], &bytes].concat(), Vec::new())?);
        }
        let mut datagram = Vec::with_capacity(MAX_MESSAGE_BYTES);
        let count = bytes.len().div_ceil(PIECE);
        for (index, piece) in bytes.chunks(PIECE).enumerate() {
            datagram.clear();
            datagram.push(if index + 1 == count { TAG_LAST } else { TAG_PART });
            datagram.extend_from_slice(piece);
            self.endpoint.send(&datagram, Vec::new())?;
        }
        Ok(())
    }

    /// Receives the next message, joining its pieces. A message over the limit is read to its
    /// last piece without being kept (so the channel stays usable) and reported as
    /// [`ChannelError::TooLarge`].
    pub fn recv(&self) -> Result<In, ChannelError> {
        let mut joined: Vec<u8> = Vec::new();
        let mut len = 0usize;
        loop {
            let message = self.endpoint.recv()?;
            let (&tag, rest) = message.bytes.split_first().ok_or(ChannelError::Malformed("an empty datagram"))?;
            match tag {
                TAG_WHOLE if len == 0 => return Ok(cos_ipc::decode_with_attachments(rest, message.attachments)?),
                TAG_PART | TAG_LAST => {
                    if !message.attachments.is_empty() {
                        return Err(ChannelError::Malformed("endpoints attached to a piece"));
                    }
                    len = len.saturating_add(rest.len());
                    if len <= self.limit {
                        joined.extend_from_slice(rest);
                    } else {
                        // Give back what was buffered at once; the rest is only counted.
                        joined = Vec::new();
                    }
                    if tag == TAG_LAST {
                        if len > self.limit {
                            return Err(ChannelError::TooLarge { len, limit: self.limit });
                        }
                        return Ok(cos_ipc::decode_with_attachments(&joined, Vec::new())?);
                    }
                }
                TAG_WHOLE => return Err(ChannelError::Malformed("a whole message inside a large one")),
                _ => return Err(ChannelError::Malformed("an unknown tag")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(limit: usize) -> (Channel<String, String>, Channel<String, String>) {
        let (a, b) = Endpoint::pair().unwrap();
        (Channel::with_limit(a, limit), Channel::with_limit(b, limit))
    }

    #[test]
    fn messages_of_every_size_arrive_whole() {
        let (a, b) = pair(DEFAULT_MESSAGE_LIMIT);
        let sender = std::thread::spawn(move || {
            for len in [0, 1, PIECE - 8, PIECE, PIECE + 1, 3 * PIECE, 4 << 20] {
                a.send("x".repeat(len)).unwrap();
            }
            a
        });
        for len in [0, 1, PIECE - 8, PIECE, PIECE + 1, 3 * PIECE, 4 << 20] {
            assert_eq!(b.recv().unwrap().len(), len);
        }
        sender.join().unwrap();
    }

    #[test]
    fn an_oversized_message_is_refused_and_the_next_one_still_arrives() {
        let (a, _) = pair(DEFAULT_MESSAGE_LIMIT);
        let (big_sender, receiver) = {
            let (x, y) = Endpoint::pair().unwrap();
            (Channel::<String, String>::new(x), Channel::<String, String>::with_limit(y, 1 << 20))
        };
        let sender = std::thread::spawn(move || {
            big_sender.send("y".repeat(3 << 20)).unwrap();
            big_sender.send("after".to_owned()).unwrap();
        });
        match receiver.recv() {
            Err(ChannelError::TooLarge { len, limit }) => assert!(len > limit && limit == 1 << 20),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(receiver.recv().unwrap(), "after");
        sender.join().unwrap();
        let local = Channel::<String, String>::with_limit(a.endpoint.try_clone().unwrap(), 10);
        assert!(matches!(local.send("z".repeat(11)), Err(ChannelError::TooLarge { .. })));
    }

    #[test]
    fn a_message_with_an_endpoint_carries_it_and_a_stray_endpoint_is_refused() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct WithPipe {
            pipe: cos_ipc::Attached,
        }
        let (a, b) = Endpoint::pair().unwrap();
        let (sender, receiver) = (Channel::<WithPipe, WithPipe>::new(a), Channel::<WithPipe, WithPipe>::new(b));
        let (ours, theirs) = Endpoint::pair().unwrap();
        sender.send(WithPipe { pipe: theirs.into() }).unwrap();
        let received = receiver.recv().unwrap().pipe.into_endpoint();
        received.send(b"through", Vec::new()).unwrap();
        assert_eq!(ours.recv().unwrap().bytes, b"through");

        // A peer attaching an endpoint to a message whose type declares none is refused.
        let (raw, b) = Endpoint::pair().unwrap();
        let receiver = Channel::<String, String>::new(b);
        let bytes = [&[TAG_WHOLE][..], &postcard::to_allocvec("hi").unwrap()].concat();
        raw.send(&bytes, vec![Endpoint::pair().unwrap().0]).unwrap();
        assert!(matches!(receiver.recv(), Err(ChannelError::Ipc(cos_ipc::IpcError::BadAttachment(_)))));
    }
}
