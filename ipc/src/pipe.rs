//! [`Pipe`]: a typed view of an [`Endpoint`].

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Endpoint, IpcError, decode, encode};

/// A typed view of an endpoint: sends `Out`, receives `In` (postcard-encoded, size-bounded).
///
/// The two ends of a pipe are usually `Pipe<A, B>` and `Pipe<B, A>`. Every received message is
/// validated by decoding it; a message that does not decode is [`IpcError::Decode`] (peer
/// misbehaviour) and its attachments are closed.
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

    /// Encodes and sends `message` with `attachments`; see [`Endpoint::send`] (an encoding over
    /// the size limit is [`IpcError::Encode`]).
    pub fn send(&self, message: &Out, attachments: Vec<Endpoint>) -> Result<(), IpcError> {
        let bytes = encode(message)?;
        self.endpoint.send(&bytes, attachments)
    }

    /// Receives and decodes the next message; see [`Endpoint::recv`].
    pub fn recv(&self) -> Result<(In, Vec<Endpoint>), IpcError> {
        let message = self.endpoint.recv()?;
        Ok((decode(&message.bytes)?, message.attachments))
    }

    /// Like [`recv`](Pipe::recv) with a timeout ([`IpcError::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(In, Vec<Endpoint>), IpcError> {
        let message = self.endpoint.recv_timeout(timeout)?;
        Ok((decode(&message.bytes)?, message.attachments))
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
    use serde::Deserialize;
    use std::rc::Rc;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Request {
        Get { id: u64 },
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
            client.send(&Request::Get { id: 3 }, vec![data_there]).unwrap();
            let (request, attachments) = service.recv().unwrap();
            assert_eq!(request, Request::Get { id: 3 });
            attachments[0].send(b"bulk", vec![]).unwrap();
            assert_eq!(data_here.recv().unwrap().bytes, b"bulk");
            service.try_clone().unwrap().send(&Reply::Found { id: 3, size: 9 }, vec![]).unwrap();
            let (reply, _) = client.recv_timeout(Duration::from_secs(10)).unwrap();
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
        assert_eq!(service.recv().unwrap().0, Request::Get { id: 1 });
        drop(a);
        assert!(matches!(service.into_endpoint().recv(), Err(IpcError::Disconnected)));
    }

    #[test]
    fn pipe_is_send_and_sync_even_for_non_send_types() {
        fn check<T: Send + Sync>() {}
        check::<Pipe<Request, Reply>>();
        check::<Pipe<Rc<u8>, Rc<u8>>>();
    }
}
