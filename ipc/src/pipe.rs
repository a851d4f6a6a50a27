//! [`Pipe`]: a typed view of an [`Endpoint`].

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Endpoint, IpcError, decode_with_attachments, encode_with_attachments};

/// A typed view of an endpoint: sends `Out`, receives `In` (postcard-encoded, size-bounded).
///
/// The two ends of a pipe are usually `Pipe<A, B>` and `Pipe<B, A>`. Endpoints travel as
/// [`Attached`](crate::Attached) fields of the messages. Every received message is validated by
/// decoding it, endpoints included; a message that does not decode is [`IpcError::Decode`], one
/// whose endpoints do not match its fields [`IpcError::BadAttachment`] (both peer misbehaviour),
/// and its attachments are closed.
pub struct Pipe<Out, In> {
    endpoint: Endpoint,
    // `fn(Out) -> In`: the pipe neither owns an `Out` nor an `In`, so it is Send + Sync (and
    // variance-neutral) whatever the message types are.
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out: Serialize, In: DeserializeOwned> Pipe<Out, In> {
    /// Wraps an endpoint.
    pub fn new(endpoint: Endpoint) -> Self {
        Pipe { endpoint, _types: PhantomData }
    }

    /// The untyped endpoint, e.g. to `shutdown` it.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Unwraps the endpoint.
    pub fn into_endpoint(self) -> Endpoint {
        self.endpoint
    }

    /// Encodes and sends `message`, moving the endpoints it carries to the peer; see
    /// [`Endpoint::send`] (an encoding over the size limit is [`IpcError::Encode`]).
    pub fn send(&self, message: Out) -> Result<(), IpcError> {
        let (bytes, attachments) = encode_with_attachments(message)?;
        self.endpoint.send(&bytes, attachments)
    }

    /// Receives and decodes the next message; see [`Endpoint::recv`].
    pub fn recv(&self) -> Result<In, IpcError> {
        let message = self.endpoint.recv()?;
        decode_with_attachments(&message.bytes, message.attachments)
    }

    /// Like [`recv`](Pipe::recv) with a timeout ([`IpcError::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<In, IpcError> {
        let message = self.endpoint.recv_timeout(timeout)?;
        decode_with_attachments(&message.bytes, message.attachments)
    }

    /// Another handle on the same end; see [`Endpoint::try_clone`].
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Pipe::new(self.endpoint.try_clone()?))
    }
}

impl<Out, In> fmt::Debug for Pipe<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pipe").field(&self.endpoint).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attached, encode};
    use serde::Deserialize;
    use std::rc::Rc;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Request {
        Get { id: u64 },
        Stream { id: u64, data: Attached },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Reply {
        Found { id: u64, size: u32 },
    }

    #[test]
    fn typed_round_trip_on_both_transports() {
        for (a, b) in [Endpoint::pair().unwrap(), Endpoint::pair_in_process()] {
            let client: Pipe<Request, Reply> = Pipe::new(a);
            let service: Pipe<Reply, Request> = Pipe::new(b);
            let (data_here, data_there) =
                if client.endpoint().is_in_process() { Endpoint::pair_in_process() } else { Endpoint::pair().unwrap() };
            client.send(Request::Stream { id: 3, data: data_there.into() }).unwrap();
            let Request::Stream { id: 3, data } = service.recv().unwrap() else { panic!("wrong message") };
            data.into_endpoint().send(b"bulk", vec![]).unwrap();
            assert_eq!(data_here.recv().unwrap().bytes, b"bulk");
            service.try_clone().unwrap().send(Reply::Found { id: 3, size: 9 }).unwrap();
            let reply = client.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(reply, Reply::Found { id: 3, size: 9 });
        }
    }

    #[test]
    fn undecodable_message_is_peer_misbehaviour() {
        let (a, b) = Endpoint::pair().unwrap();
        let service: Pipe<Reply, Request> = Pipe::new(b);
        a.send(&[0xff, 0xff], vec![]).unwrap();
        let err = service.recv().unwrap_err();
        assert!(matches!(err, IpcError::Decode(_)) && err.is_peer_misbehaviour(), "{err:?}");
        // Still usable: the next message decodes.
        a.send(&encode(&Request::Get { id: 1 }).unwrap(), vec![]).unwrap();
        assert_eq!(service.recv().unwrap(), Request::Get { id: 1 });
        drop(a);
        assert!(matches!(service.into_endpoint().recv(), Err(IpcError::Disconnected)));
    }

    /// A hostile peer's attachments never disagree with the message's endpoint fields: missing,
    /// extra, out-of-range or twice-claimed endpoints are bad attachments, and the pipe goes on.
    #[test]
    fn endpoint_fields_must_match_the_attachments() {
        for (a, b) in [Endpoint::pair().unwrap(), Endpoint::pair_in_process()] {
            let make = || if a.is_in_process() { Endpoint::pair_in_process() } else { Endpoint::pair().unwrap() };
            let service: Pipe<Reply, (Request, Request)> = Pipe::new(b);
            let get = encode(&(Request::Get { id: 1 }, Request::Get { id: 2 })).unwrap();
            // Two `Stream`s naming attachment `index_a` and `index_b`.
            let streams = |index_a: u8, index_b: u8| [vec![1, 1, index_a], vec![1, 2, index_b]].concat();
            let cases: Vec<(Vec<u8>, usize)> = vec![
                (get.clone(), 1),     // an endpoint no field claims
                (streams(0, 1), 1),   // index out of range
                (streams(0, 0), 2),   // claimed twice (and one left over)
                (streams(0, 0), 1),   // claimed twice
                (streams(0, 1), 0),   // no endpoints at all
                (streams(7, 200), 4), // far out of range
            ];
            for (bytes, count) in cases {
                let attachments: Vec<Endpoint> = (0..count).map(|_| make().0).collect();
                a.send(&bytes, attachments).unwrap();
                let err = service.recv().unwrap_err();
                assert!(matches!(err, IpcError::BadAttachment(_)) && err.is_peer_misbehaviour(), "{err:?}");
            }
            // Matching fields and attachments decode, in either index order.
            a.send(&streams(1, 0), vec![make().0, make().0]).unwrap();
            assert!(matches!(service.recv().unwrap(), (Request::Stream { .. }, Request::Stream { .. })));
            a.send(&get, vec![]).unwrap();
            assert_eq!(service.recv().unwrap(), (Request::Get { id: 1 }, Request::Get { id: 2 }));
        }
    }

    #[test]
    fn endpoints_travel_only_as_fields_of_a_consumed_message() {
        let (data, _peer) = Endpoint::pair_in_process();
        let message = Request::Stream { id: 1, data: data.into() };
        assert!(matches!(encode(&message), Err(IpcError::Encode(_))), "plain encoding refuses endpoints");
        let (bytes, attachments) = crate::encode_with_attachments(message).unwrap();
        assert_eq!((bytes, attachments.len()), (vec![1, 1, 0], 1));
        assert!(matches!(crate::decode::<Request>(&[1, 1, 0]), Err(IpcError::Decode(_))));
        let too_many: Vec<Request> =
            (0..=MAX).map(|id| Request::Stream { id, data: Endpoint::pair_in_process().0.into() }).collect();
        assert!(matches!(crate::encode_with_attachments(too_many), Err(IpcError::Encode(_))));
    }

    const MAX: u64 = crate::MAX_ATTACHMENTS as u64;

    #[test]
    fn pipe_is_send_and_sync_even_for_non_send_types() {
        fn check<T: Send + Sync>() {}
        check::<Pipe<Request, Reply>>();
        check::<Pipe<Rc<u8>, Rc<u8>>>();
    }
}
