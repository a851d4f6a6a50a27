//! [`Endpoint`]: one end of a message pipe, over either transport.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::in_process::EndCore;
use crate::os::Carried;
use crate::{IpcError, MAX_ATTACHMENTS, MAX_MESSAGE_BYTES, os};

/// The error for a file where only endpoints may come (the file is closed).
const UNEXPECTED_FILE: IpcError = IpcError::BadAttachment("a file attached where none is expected");

/// Endpoints from what an OS frame carried; a file there is refused.
fn os_endpoints(carried: Carried) -> Result<Vec<Endpoint>, IpcError> {
    match carried {
        Carried::Endpoints(fds) => Ok(fds.into_iter().map(|fd| Endpoint { inner: Inner::Os(fd) }).collect()),
        Carried::File(_) => Err(UNEXPECTED_FILE),
    }
}

/// One end of a bidirectional, message-oriented pipe.
///
/// Messages are delivered whole and in order, with up to [`MAX_ATTACHMENTS`] endpoints attached
/// (moved to the receiver). `Endpoint` is `Send + Sync`: one thread may block in `recv` while
/// others `send` on the same handle or on a [`try_clone`](Endpoint::try_clone).
///
/// Dropping the last handle of an end disconnects the pipe: the peer receives the messages
/// already sent, then [`IpcError::Disconnected`]; the peer's sends fail with `Disconnected`.
pub struct Endpoint {
    inner: Inner,
}

enum Inner {
    /// An `AF_UNIX SOCK_SEQPACKET` socket.
    Os(OwnedFd),
    /// A queue pair inside this process.
    InProcess(Arc<EndCore>),
}

/// A received message: its payload and the endpoints that came with it (now owned by the caller).
#[derive(Debug)]
pub struct Message {
    /// The payload, at most [`MAX_MESSAGE_BYTES`] long.
    pub bytes: Vec<u8>,
    /// Endpoints attached by the sender, at most [`MAX_ATTACHMENTS`].
    pub attachments: Vec<Endpoint>,
}

impl Message {
    /// Decodes the message as a `T`, handing the attachments to its endpoint fields; see
    /// [`decode_with_attachments`](crate::decode_with_attachments). `T` may borrow bulk bytes
    /// from the payload.
    pub fn decode<'a, T: serde::Deserialize<'a>>(&'a mut self) -> Result<T, IpcError> {
        let attachments = std::mem::take(&mut self.attachments);
        crate::decode_with_attachments(&self.bytes, attachments)
    }
}

impl Endpoint {
    /// Creates a connected pair of OS endpoints (a `SOCK_SEQPACKET` socketpair, close-on-exec),
    /// which can be passed to other processes as attachments or through [`crate::launch`].
    pub fn pair() -> io::Result<(Endpoint, Endpoint)> {
        let (a, b) = os::pair()?;
        Ok((Endpoint { inner: Inner::Os(a) }, Endpoint { inner: Inner::Os(b) }))
    }

    /// Creates a connected pair of in-process endpoints with the same semantics as [`pair`]
    /// (ordering, size limits, backpressure, disconnection), for single-process mode and tests.
    /// They can only travel over in-process endpoints.
    ///
    /// [`pair`]: Endpoint::pair
    pub fn pair_in_process() -> (Endpoint, Endpoint) {
        let (a, b) = EndCore::pair();
        (Endpoint { inner: Inner::InProcess(a) }, Endpoint { inner: Inner::InProcess(b) })
    }

    /// Sends one message, moving `attachments` to the peer.
    ///
    /// Blocks while the peer's queue is full (about 208 KiB in flight, the Linux default socket
    /// buffer: two maximum-size messages or a few hundred small ones), so a peer that stops
    /// reading stalls its senders rather than growing memory.
    ///
    /// Errors: [`IpcError::Oversized`] if `bytes` exceeds [`MAX_MESSAGE_BYTES`];
    /// [`IpcError::Encode`] for more than [`MAX_ATTACHMENTS`] attachments;
    /// [`IpcError::WrongTransport`] if an attachment belongs to the other transport;
    /// [`IpcError::Disconnected`] if the peer is gone or either end was shut down. The attachments
    /// are consumed (closed) whatever the outcome.
    pub fn send(&self, bytes: &[u8], attachments: Vec<Endpoint>) -> Result<(), IpcError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(IpcError::Oversized { len: bytes.len() });
        }
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(IpcError::Encode(format!(
                "{} attachments, at most {MAX_ATTACHMENTS} allowed",
                attachments.len()
            )));
        }
        match &self.inner {
            Inner::Os(fd) => {
                let mut fds = Vec::with_capacity(attachments.len());
                for attachment in &attachments {
                    match &attachment.inner {
                        Inner::Os(attached) => fds.push(attached.as_fd()),
                        Inner::InProcess(_) => return Err(IpcError::WrongTransport),
                    }
                }
                // `attachments` stay open until the kernel has taken its references.
                let result = os::send(fd.as_fd(), bytes, &fds);
                drop(attachments);
                result
            }
            Inner::InProcess(core) => {
                if attachments.iter().any(|a| !a.is_in_process()) {
                    return Err(IpcError::WrongTransport);
                }
                core.send(bytes.to_vec(), attachments, None)
            }
        }
    }

    /// Sends one message without attachments whose payload is `head` followed by `tail`, as
    /// [`send`](Endpoint::send) would send them joined, but without joining them first: a bulk
    /// sender puts a small encoded header before data it only borrows, and the kernel gathers
    /// both (one copy of the data, into the socket).
    ///
    /// Errors as for [`send`](Endpoint::send).
    pub fn send_parts(&self, head: &[u8], tail: &[u8]) -> Result<(), IpcError> {
        let len = head.len().saturating_add(tail.len());
        if len > MAX_MESSAGE_BYTES {
            return Err(IpcError::Oversized { len });
        }
        match &self.inner {
            Inner::Os(fd) => os::send_parts(fd.as_fd(), head, tail),
            Inner::InProcess(core) => core.send([head, tail].concat(), Vec::new(), None),
        }
    }

    /// Sends one message with a file attached instead of endpoints (on Linux, as an `SCM_RIGHTS`
    /// descriptor): only [`recv_with_file`](Endpoint::recv_with_file) accepts it; every other
    /// receive refuses it as [`IpcError::BadAttachment`]. The receiver must judge the file itself
    /// (see [`SealedFile`](crate::SealedFile)). Over in-process endpoints the descriptor is
    /// moved as it is.
    pub fn send_file(&self, bytes: &[u8], file: OwnedFd) -> Result<(), IpcError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(IpcError::Oversized { len: bytes.len() });
        }
        match &self.inner {
            Inner::Os(fd) => os::send_file(fd.as_fd(), bytes, file.as_fd()),
            Inner::InProcess(core) => core.send(bytes.to_vec(), Vec::new(), Some(file)),
        }
    }

    /// Receives the next message, which may carry one file sent by
    /// [`send_file`](Endpoint::send_file) but no endpoints (a message with endpoints is
    /// [`IpcError::BadAttachment`], and they are closed). Otherwise like
    /// [`recv`](Endpoint::recv).
    pub fn recv_with_file(&self) -> Result<(Vec<u8>, Option<OwnedFd>), IpcError> {
        let (bytes, attachments, file) = match &self.inner {
            Inner::Os(fd) => match os::recv(fd.as_fd(), None)? {
                (bytes, Carried::File(file)) => (bytes, Vec::new(), Some(file)),
                (bytes, Carried::Endpoints(fds)) => {
                    (bytes, fds.into_iter().map(Endpoint::from_checked).collect(), None)
                }
            },
            Inner::InProcess(core) => {
                let packet = core.recv(None)?;
                (packet.bytes, packet.attachments, packet.file)
            }
        };
        if !attachments.is_empty() {
            return Err(IpcError::BadAttachment("an endpoint attached where only a file may come"));
        }
        Ok((bytes, file))
    }

    fn from_checked(fd: OwnedFd) -> Endpoint {
        Endpoint { inner: Inner::Os(fd) }
    }

    /// Receives the next message, blocking until one arrives.
    ///
    /// Errors: [`IpcError::Disconnected`] once the peer is gone (after its queued messages) or
    /// either end was shut down; peer misbehaviour ([`IpcError::Oversized`],
    /// [`IpcError::BadAttachment`], [`IpcError::Decode`] for a malformed frame) for a datagram
    /// that `send` never produces — that datagram is discarded and its descriptors closed.
    pub fn recv(&self) -> Result<Message, IpcError> {
        self.recv_until(None)
    }

    /// Like [`recv`](Endpoint::recv), but gives up with [`IpcError::Timeout`] after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, IpcError> {
        // A timeout too large to represent is as good as none.
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Asks for a deeper send queue on this end (`SO_SNDBUF`, capped by the system's
    /// `net.core.wmem_max`): for bulk data pipes, so that several chunks are in flight and the
    /// two sides do not take turns. Control pipes keep the default, so backpressure stays tight.
    /// A no-op for in-process endpoints.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        match &self.inner {
            Inner::Os(fd) => os::set_send_buffer(fd.as_fd(), bytes),
            Inner::InProcess(_) => Ok(()),
        }
    }

    /// Receives the next message's payload directly into `bufs`, in order (no intermediate
    /// copy: for bulk data). Returns the payload length and the attachments. A payload longer
    /// than the buffers is [`IpcError::Oversized`], and the message is discarded.
    pub fn recv_vectored(&self, bufs: &mut [io::IoSliceMut<'_>]) -> Result<(usize, Vec<Endpoint>), IpcError> {
        match &self.inner {
            Inner::Os(fd) => {
                let (len, carried) = os::recv_vectored(fd.as_fd(), None, bufs)?;
                Ok((len, os_endpoints(carried)?))
            }
            Inner::InProcess(core) => {
                let packet = core.recv(None)?;
                if packet.file.is_some() {
                    return Err(UNEXPECTED_FILE);
                }
                let capacity: usize = bufs.iter().map(|b| b.len()).sum();
                if packet.bytes.len() > capacity {
                    return Err(IpcError::Oversized { len: packet.bytes.len() });
                }
                let mut rest = packet.bytes.as_slice();
                for buf in bufs.iter_mut() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
                Ok((packet.bytes.len(), packet.attachments))
            }
        }
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Message, IpcError> {
        match &self.inner {
            Inner::Os(fd) => {
                let (bytes, carried) = os::recv(fd.as_fd(), deadline)?;
                Ok(Message { bytes, attachments: os_endpoints(carried)? })
            }
            Inner::InProcess(core) => {
                let packet = core.recv(deadline)?;
                if packet.file.is_some() {
                    return Err(UNEXPECTED_FILE);
                }
                Ok(Message { bytes: packet.bytes, attachments: packet.attachments })
            }
        }
    }

    /// Returns another handle on the same end (a `dup` for OS endpoints), e.g. so that one
    /// thread receives while others send. The end stays open until every handle is dropped.
    pub fn try_clone(&self) -> io::Result<Endpoint> {
        let inner = match &self.inner {
            Inner::Os(fd) => Inner::Os(fd.try_clone()?),
            Inner::InProcess(core) => Inner::InProcess(core.clone()),
        };
        Ok(Endpoint { inner })
    }

    /// Shuts the pipe down in both directions, for every handle of this end: the peer receives
    /// what was already sent and then `Disconnected`, a `recv` blocked on this end (in any thread
    /// or clone) wakes up with `Disconnected`, and sends on either side fail with
    /// `Disconnected`. Unlike dropping, it works while other threads hold handles.
    pub fn shutdown(&self) {
        match &self.inner {
            Inner::Os(fd) => os::shutdown(fd.as_fd()),
            Inner::InProcess(core) => core.shutdown(),
        }
    }

    /// Whether `other` is this very handle (the same descriptor, or the same in-process end
    /// object), not merely an end of the same pipe.
    pub(crate) fn is_same_handle(&self, other: &Endpoint) -> bool {
        match (&self.inner, &other.inner) {
            (Inner::Os(a), Inner::Os(b)) => a.as_raw_fd() == b.as_raw_fd(),
            (Inner::InProcess(a), Inner::InProcess(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// True for endpoints made by [`pair_in_process`](Endpoint::pair_in_process).
    pub fn is_in_process(&self) -> bool {
        matches!(self.inner, Inner::InProcess(_))
    }

    /// Gives up the endpoint's socket, e.g. to hand it to a child process by other means.
    /// [`IpcError::WrongTransport`] for in-process endpoints.
    pub fn into_owned_fd(self) -> Result<OwnedFd, IpcError> {
        match self.inner {
            Inner::Os(fd) => Ok(fd),
            Inner::InProcess(_) => Err(IpcError::WrongTransport),
        }
    }

    /// Wraps a socket obtained by other means (an inherited descriptor). Refuses anything but a
    /// connected `AF_UNIX SOCK_SEQPACKET` socket with [`IpcError::BadAttachment`] (the descriptor
    /// is then closed), and sets close-on-exec on it so it does not leak into our own children.
    pub fn from_owned_fd(fd: OwnedFd) -> Result<Endpoint, IpcError> {
        os::check_endpoint_socket(fd.as_fd()).map_err(IpcError::BadAttachment)?;
        os::set_cloexec(fd.as_fd())?;
        os::ensure_send_buffer(&fd)?;
        Ok(Endpoint { inner: Inner::Os(fd) })
    }

    /// The socket, for tests that play a misbehaving peer.
    #[cfg(test)]
    pub(crate) fn os_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            Inner::Os(fd) => fd.as_fd(),
            Inner::InProcess(_) => panic!("not an OS endpoint"),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Os(fd) => f.debug_tuple("Endpoint::Os").field(&fd.as_raw_fd()).finish(),
            Inner::InProcess(core) => f.debug_tuple("Endpoint::InProcess").field(&Arc::as_ptr(core)).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::test_support::{frame_header, pipe, raw_send, send_buffer, set_send_buffer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    type PairFn = fn() -> (Endpoint, Endpoint);

    fn os_pair() -> (Endpoint, Endpoint) {
        Endpoint::pair().unwrap()
    }

    /// Every behavioural test runs against both transports.
    const TRANSPORTS: [(&str, PairFn); 2] = [("os", os_pair), ("in-process", Endpoint::pair_in_process)];

    fn for_each_transport(test: impl Fn(PairFn)) {
        for (name, make) in TRANSPORTS {
            eprintln!("transport: {name}");
            test(make);
        }
    }

    fn assert_disconnected(result: Result<Message, IpcError>) {
        match result {
            Err(IpcError::Disconnected) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_both_directions_in_order() {
        for_each_transport(|make| {
            let (a, b) = make();
            a.send(b"one", vec![]).unwrap();
            a.send(b"", vec![]).unwrap();
            a.send(&vec![7; MAX_MESSAGE_BYTES], vec![]).unwrap();
            assert_eq!(b.recv().unwrap().bytes, b"one");
            let empty = b.recv().unwrap();
            assert!(empty.bytes.is_empty() && empty.attachments.is_empty());
            assert_eq!(b.recv().unwrap().bytes, vec![7; MAX_MESSAGE_BYTES]);
            b.send(b"back", vec![]).unwrap();
            assert_eq!(a.recv().unwrap().bytes, b"back");
        });
    }

    #[test]
    fn endpoints_travel_as_attachments_and_work() {
        for_each_transport(|make| {
            let (a, b) = make();
            let (c, d) = make();
            let (e, f) = make();
            a.send(b"take these", vec![d, f]).unwrap();
            let message = b.recv().unwrap();
            assert_eq!(message.bytes, b"take these");
            let [d, f]: [Endpoint; 2] = message.attachments.try_into().unwrap();
            c.send(b"to d", vec![]).unwrap();
            assert_eq!(d.recv().unwrap().bytes, b"to d");
            f.send(b"from f", vec![]).unwrap();
            assert_eq!(e.recv().unwrap().bytes, b"from f");
            // The transferred end is the only handle now: dropping it disconnects its peer.
            drop(d);
            assert_disconnected(c.recv());
        });
    }

    #[test]
    fn a_file_travels_only_to_a_receiver_that_expects_one() {
        for_each_transport(|make| {
            let (a, b) = make();
            let sealed = crate::SealedFile::from_bytes(b"bytes").unwrap();
            a.send_file(b"here", sealed.try_clone_fd().unwrap()).unwrap();
            let (bytes, file) = b.recv_with_file().unwrap();
            assert_eq!(bytes, b"here");
            let file = crate::SealedFile::from_received(file.unwrap(), 5).unwrap();
            assert_eq!(&file.map(false).unwrap()[..], b"bytes");
            // Without a file, `recv_with_file` is a plain receive.
            a.send(b"plain", vec![]).unwrap();
            assert!(matches!(b.recv_with_file().unwrap(), (bytes, None) if bytes == b"plain"));
            // Every other receive refuses a file, and `recv_with_file` refuses endpoints.
            a.send_file(b"", sealed.try_clone_fd().unwrap()).unwrap();
            assert!(matches!(b.recv(), Err(IpcError::BadAttachment(_))));
            a.send_file(b"", sealed.try_clone_fd().unwrap()).unwrap();
            let mut buf = [0u8; 8];
            assert!(matches!(b.recv_vectored(&mut [io::IoSliceMut::new(&mut buf)]), Err(IpcError::BadAttachment(_))));
            a.send(b"", vec![make().0]).unwrap();
            assert!(matches!(b.recv_with_file(), Err(IpcError::BadAttachment(_))));
        });
    }

    #[test]
    fn send_limits() {
        for_each_transport(|make| {
            let (a, b) = make();
            let err = a.send(&vec![0; MAX_MESSAGE_BYTES + 1], vec![]).unwrap_err();
            assert!(matches!(err, IpcError::Oversized { len } if len == MAX_MESSAGE_BYTES + 1), "{err:?}");
            let too_many: Vec<Endpoint> = (0..=MAX_ATTACHMENTS).map(|_| make().0).collect();
            assert!(matches!(a.send(b"x", too_many), Err(IpcError::Encode(_))));
            // Nothing was sent by either refusal.
            assert!(matches!(b.recv_timeout(Duration::from_millis(10)), Err(IpcError::Timeout)));
        });
    }

    #[test]
    fn transports_do_not_mix() {
        let (os_a, _os_b) = Endpoint::pair().unwrap();
        let (local_a, _local_b) = Endpoint::pair_in_process();
        assert!(matches!(os_a.send(b"", vec![Endpoint::pair_in_process().0]), Err(IpcError::WrongTransport)));
        assert!(matches!(local_a.send(b"", vec![Endpoint::pair().unwrap().0]), Err(IpcError::WrongTransport)));
        assert!(matches!(local_a.into_owned_fd(), Err(IpcError::WrongTransport)));
        assert!(!os_a.is_in_process());
    }

    #[test]
    fn drop_disconnects_after_queued_messages() {
        for_each_transport(|make| {
            let (a, b) = make();
            a.send(b"last words", vec![]).unwrap();
            drop(a);
            assert_eq!(b.recv().unwrap().bytes, b"last words");
            assert_disconnected(b.recv());
            assert_disconnected(b.recv_timeout(Duration::from_secs(5)));
            assert!(matches!(b.send(b"anyone?", vec![]), Err(IpcError::Disconnected)));
        });
    }

    #[test]
    fn unread_attachments_are_released_when_the_receiver_goes() {
        for_each_transport(|make| {
            let (a, b) = make();
            let (c, d) = make();
            a.send(b"never read", vec![d]).unwrap();
            drop(b);
            // `d` was in b's queue; closing b releases it, so c sees the disconnect.
            assert_disconnected(c.recv());
        });
    }

    #[test]
    fn shutdown_disconnects_peer_and_wakes_local_receiver() {
        for_each_transport(|make| {
            let (a, b) = make();
            let a = Arc::new(a);
            let blocked = {
                let a = a.clone();
                thread::spawn(move || a.recv())
            };
            b.send(b"queued", vec![]).unwrap();
            // The blocked receiver may or may not have taken "queued" before shutdown; either
            // way it must end, and the next receive on that end must report the shutdown.
            let clone = a.try_clone().unwrap();
            a.shutdown();
            let taken = match blocked.join().unwrap() {
                Ok(message) => {
                    assert_eq!(message.bytes, b"queued");
                    true
                }
                Err(IpcError::Disconnected) => false,
                Err(other) => panic!("{other:?}"),
            };
            if !taken {
                // Messages queued before the shutdown are still delivered, then the end.
                assert_eq!(clone.recv().unwrap().bytes, b"queued");
            }
            assert_disconnected(clone.recv());
            assert_disconnected(b.recv());
            assert!(matches!(b.send(b"x", vec![]), Err(IpcError::Disconnected)));
            assert!(matches!(a.send(b"x", vec![]), Err(IpcError::Disconnected)));
        });
    }

    #[test]
    fn shutdown_wakes_a_receiver_blocked_on_an_empty_pipe() {
        for_each_transport(|make| {
            let (a, _b) = make();
            let a = Arc::new(a);
            let blocked = {
                let a = a.clone();
                thread::spawn(move || a.recv())
            };
            a.shutdown();
            assert_disconnected(blocked.join().unwrap());
        });
    }

    #[test]
    fn recv_vectored_scatters_without_copies_and_bounds_the_length() {
        for (a, b) in [Endpoint::pair().unwrap(), Endpoint::pair_in_process()] {
            a.send(b"xhello world", Vec::new()).unwrap();
            let (mut head, mut body) = ([0u8; 1], [0u8; 16]);
            let (len, attachments) =
                b.recv_vectored(&mut [io::IoSliceMut::new(&mut head), io::IoSliceMut::new(&mut body)]).unwrap();
            assert_eq!((len, attachments.len()), (12, 0));
            assert_eq!(&head, b"x");
            assert_eq!(&body[..11], b"hello world");
            a.send(&[7u8; 18], Vec::new()).unwrap();
            let result = b.recv_vectored(&mut [io::IoSliceMut::new(&mut head), io::IoSliceMut::new(&mut body)]);
            assert!(matches!(result, Err(IpcError::Oversized { .. })), "{result:?}");
            // The over-long message was discarded; the pipe still works.
            a.send(b"ok", Vec::new()).unwrap();
            assert_eq!(b.recv().unwrap().bytes, b"ok");
        }
    }

    #[test]
    fn send_parts_is_one_message_of_both_parts_and_bounded() {
        for (a, b) in [Endpoint::pair().unwrap(), Endpoint::pair_in_process()] {
            a.send_parts(b"head:", b"tail").unwrap();
            a.send_parts(b"", b"").unwrap();
            assert_eq!(b.recv().unwrap().bytes, b"head:tail");
            assert_eq!(b.recv().unwrap().bytes, b"");
            let tail = vec![1u8; MAX_MESSAGE_BYTES];
            assert!(
                matches!(a.send_parts(b"x", &tail), Err(IpcError::Oversized { len }) if len == MAX_MESSAGE_BYTES + 1)
            );
            a.send_parts(b"", &tail).unwrap();
            assert_eq!(b.recv().unwrap().bytes.len(), MAX_MESSAGE_BYTES);
        }
    }

    #[test]
    fn recv_timeout_times_out_and_then_receives() {
        for_each_transport(|make| {
            let (a, b) = make();
            assert!(matches!(b.recv_timeout(Duration::from_millis(20)), Err(IpcError::Timeout)));
            assert!(matches!(b.recv_timeout(Duration::ZERO), Err(IpcError::Timeout)));
            // A zero timeout still returns what is already queued.
            a.send(b"queued", vec![]).unwrap();
            assert_eq!(b.recv_timeout(Duration::ZERO).unwrap().bytes, b"queued");
            a.send(b"now", vec![]).unwrap();
            assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap().bytes, b"now");
            // A timeout too large for `Instant` means "no timeout".
            a.send(b"max", vec![]).unwrap();
            assert_eq!(b.recv_timeout(Duration::MAX).unwrap().bytes, b"max");
        });
    }

    #[test]
    fn try_clone_shares_the_end() {
        for_each_transport(|make| {
            let (a, b) = make();
            let a2 = a.try_clone().unwrap();
            let receiver = thread::spawn(move || b.recv().map(|m| m.bytes));
            a2.send(b"via clone", vec![]).unwrap();
            assert_eq!(receiver.join().unwrap().unwrap(), b"via clone");
            // Dropping one handle does not close the end.
            let (c, d) = make();
            let c2 = c.try_clone().unwrap();
            drop(c);
            c2.send(b"still open", vec![]).unwrap();
            assert_eq!(d.recv().unwrap().bytes, b"still open");
            drop(c2);
            assert_disconnected(d.recv());
        });
    }

    #[test]
    fn backpressure_blocks_a_sender_nobody_reads() {
        for_each_transport(|make| {
            const COUNT: usize = 64; // 10 MiB: far beyond any socket buffer
            let (a, b) = make();
            let sent = Arc::new(AtomicUsize::new(0));
            let sender = {
                let sent = sent.clone();
                thread::spawn(move || {
                    for i in 0..COUNT {
                        a.send(&vec![i as u8; MAX_MESSAGE_BYTES], vec![]).unwrap();
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            // Let the sender run until it has made progress (bounded wait). A sender without
            // backpressure would finish all COUNT sends in a few milliseconds; with it, it can
            // never get past the buffer, however long we wait, so the assertion cannot flake.
            for _ in 0..200 {
                if sent.load(Ordering::SeqCst) > 0 {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            thread::sleep(Duration::from_millis(200));
            let before_reading = sent.load(Ordering::SeqCst);
            assert!((1..=4).contains(&before_reading), "{before_reading} sends completed with nobody reading");
            assert!(!sender.is_finished());
            for i in 0..COUNT {
                let message = b.recv().unwrap();
                assert_eq!(message.bytes.len(), MAX_MESSAGE_BYTES);
                assert_eq!(message.bytes[0], i as u8);
            }
            sender.join().unwrap();
        });
    }

    #[test]
    fn blocked_sender_sees_the_peer_go_away() {
        for_each_transport(|make| {
            let (a, b) = make();
            let sender = thread::spawn(move || {
                loop {
                    if let Err(err) = a.send(&[0; MAX_MESSAGE_BYTES], vec![]) {
                        return err;
                    }
                }
            });
            drop(b);
            assert!(matches!(sender.join().unwrap(), IpcError::Disconnected));
        });
    }

    #[test]
    fn blocked_sender_is_woken_by_local_shutdown() {
        for_each_transport(|make| {
            let (a, _b) = make();
            let a = Arc::new(a);
            let sender = {
                let a = a.clone();
                thread::spawn(move || {
                    loop {
                        if let Err(err) = a.send(&[0; MAX_MESSAGE_BYTES], vec![]) {
                            return err;
                        }
                    }
                })
            };
            a.shutdown();
            assert!(matches!(sender.join().unwrap(), IpcError::Disconnected));
        });
    }

    // ---- OS transport only: a misbehaving peer writing raw datagrams ----

    /// True once every copy of the pipe's read end is closed (writing then fails with EPIPE;
    /// Rust ignores SIGPIPE).
    fn read_end_closed(write_end: &OwnedFd) -> bool {
        rustix::io::write(write_end, b"x") == Err(rustix::io::Errno::PIPE)
    }

    #[test]
    fn oversized_datagram_is_refused_on_receive() {
        let (a, b) = Endpoint::pair().unwrap();
        let mut frame = vec![frame_header(0)];
        frame.extend_from_slice(&vec![1; MAX_MESSAGE_BYTES + 1]);
        raw_send(a.os_fd(), &frame, &[]).unwrap();
        let err = b.recv().unwrap_err();
        assert!(matches!(err, IpcError::Oversized { len } if len == MAX_MESSAGE_BYTES + 1), "{err:?}");
        assert!(err.is_peer_misbehaviour());

        // Far larger than our buffer (the peer raised its own SO_SNDBUF): the kernel reports the
        // real length and drops the rest; we never allocate it.
        set_send_buffer(a.os_fd(), 2 << 20);
        let huge = 2 * 1024 * 1024;
        if send_buffer(a.os_fd()) > huge + 4096 {
            raw_send(a.os_fd(), &vec![frame_header(0); huge], &[]).unwrap();
            let err = b.recv().unwrap_err();
            assert!(matches!(err, IpcError::Oversized { len } if len == huge - 1), "{err:?}");
        }
        // The pipe is still usable afterwards.
        a.send(b"fine", vec![]).unwrap();
        assert_eq!(b.recv().unwrap().bytes, b"fine");
    }

    #[test]
    fn non_socket_attachment_is_refused_and_closed() {
        let (a, b) = Endpoint::pair().unwrap();
        let (read_end, write_end) = pipe();
        raw_send(a.os_fd(), &[frame_header(1)], &[read_end.as_fd()]).unwrap();
        drop(read_end);
        assert!(!read_end_closed(&write_end), "the copy in flight keeps the pipe open");
        let err = b.recv().unwrap_err();
        assert!(matches!(err, IpcError::BadAttachment(_)), "{err:?}");
        assert!(err.is_peer_misbehaviour());
        assert!(read_end_closed(&write_end), "the received descriptor leaked");

        // /dev/null is not a socket either.
        let null = std::fs::File::open("/dev/null").unwrap();
        raw_send(a.os_fd(), &[frame_header(1)], &[null.as_fd()]).unwrap();
        assert!(matches!(b.recv(), Err(IpcError::BadAttachment(_))));
    }

    #[test]
    fn a_file_frame_carries_exactly_one_descriptor_and_others_close_it() {
        const FILE_FRAME: u8 = 0xB1;
        let (a, b) = Endpoint::pair().unwrap();
        let ((r1, w1), (r2, w2)) = (pipe(), pipe());
        raw_send(a.os_fd(), &[FILE_FRAME], &[r1.as_fd(), r2.as_fd()]).unwrap();
        raw_send(a.os_fd(), &[FILE_FRAME], &[]).unwrap();
        drop((r1, r2));
        assert!(matches!(b.recv_with_file(), Err(IpcError::BadAttachment(_))), "two descriptors");
        assert!(read_end_closed(&w1) && read_end_closed(&w2), "a received descriptor leaked");
        assert!(matches!(b.recv_with_file(), Err(IpcError::BadAttachment(_))), "none");
        // A receiver that expects endpoints closes a file it is sent.
        let (r3, w3) = pipe();
        a.send_file(b"", r3).unwrap();
        assert!(matches!(b.recv(), Err(IpcError::BadAttachment(_))));
        assert!(read_end_closed(&w3), "the refused file leaked");
    }

    #[test]
    fn wrong_kind_of_socket_is_refused() {
        let (a, b) = Endpoint::pair().unwrap();
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let (stream, _other) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None).unwrap();
        raw_send(a.os_fd(), &[frame_header(1)], &[stream.as_fd()]).unwrap();
        assert!(matches!(b.recv(), Err(IpcError::BadAttachment(_))));
    }

    #[test]
    fn too_many_descriptors_are_refused_and_closed() {
        let (a, b) = Endpoint::pair().unwrap();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..MAX_ATTACHMENTS + 3).map(|_| pipe()).collect();
        let raw: Vec<_> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        raw_send(a.os_fd(), &[frame_header(MAX_ATTACHMENTS)], &raw).unwrap();
        let write_ends: Vec<OwnedFd> = pipes.into_iter().map(|(_, w)| w).collect();
        let err = b.recv().unwrap_err();
        assert!(matches!(err, IpcError::BadAttachment(_)), "{err:?}");
        for w in &write_ends {
            assert!(read_end_closed(w), "a received descriptor leaked");
        }
    }

    #[test]
    fn attachment_count_must_match_header() {
        let (a, b) = Endpoint::pair().unwrap();
        let (_c, d) = Endpoint::pair().unwrap();
        raw_send(a.os_fd(), &[frame_header(0)], &[d.os_fd()]).unwrap();
        assert!(matches!(b.recv(), Err(IpcError::BadAttachment(_))));
        raw_send(a.os_fd(), &[frame_header(2)], &[d.os_fd()]).unwrap();
        assert!(matches!(b.recv(), Err(IpcError::BadAttachment(_))));
    }

    #[test]
    fn malformed_header_is_a_decode_error() {
        let (a, b) = Endpoint::pair().unwrap();
        raw_send(a.os_fd(), &[0x00, 1, 2, 3], &[]).unwrap();
        let err = b.recv().unwrap_err();
        assert!(matches!(err, IpcError::Decode(_)) && err.is_peer_misbehaviour(), "{err:?}");
    }

    #[test]
    fn from_owned_fd_checks_the_descriptor() {
        let (a, b) = Endpoint::pair().unwrap();
        let a = Endpoint::from_owned_fd(a.into_owned_fd().unwrap()).unwrap();
        a.send(b"rewrapped", vec![]).unwrap();
        assert_eq!(b.recv().unwrap().bytes, b"rewrapped");
        let (read_end, _write_end) = pipe();
        assert!(matches!(Endpoint::from_owned_fd(read_end), Err(IpcError::BadAttachment(_))));
    }

    #[test]
    fn a_peer_setting_nonblocking_does_not_break_blocking_recv() {
        let (a, b) = Endpoint::pair().unwrap();
        // O_NONBLOCK on the shared open file description: what a peer holding a duplicate could do.
        rustix::io::ioctl_fionbio(b.os_fd(), true).unwrap();
        let receiver = thread::spawn(move || b.recv().map(|m| m.bytes));
        thread::sleep(Duration::from_millis(20));
        a.send(b"late", vec![]).unwrap();
        assert_eq!(receiver.join().unwrap().unwrap(), b"late");
    }

    #[test]
    fn endpoint_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Endpoint>();
        check::<Message>();
    }
}
