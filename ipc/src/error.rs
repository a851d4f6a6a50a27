//! The one error type of the crate.

use crate::MAX_MESSAGE_BYTES;

/// Why a pipe operation failed.
///
/// [`Decode`](IpcError::Decode), [`Oversized`](IpcError::Oversized) and
/// [`BadAttachment`](IpcError::BadAttachment) on a *receive* mean that the peer sent something a
/// well-behaved peer never sends; [`IpcError::is_peer_misbehaviour`] groups them so a broker can
/// treat them as a bad message (terminate the peer) rather than as an ordinary disconnect.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The peer closed its end (or one of the ends was shut down); no more messages will come.
    #[error("the pipe is disconnected")]
    Disconnected,
    /// A message is larger than [`MAX_MESSAGE_BYTES`]: refused before sending, or received from a
    /// peer (a received datagram is discarded by the kernel past our fixed buffer, so `len` is
    /// what the kernel reported, and nothing of that size was allocated).
    #[error("message of {len} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    Oversized {
        /// Payload length of the offending message.
        len: usize,
    },
    /// A received message carried descriptors we do not accept: too many, truncated control data,
    /// something that is not an `AF_UNIX SOCK_SEQPACKET` socket, or a count that disagrees with
    /// the frame header. Also the answer of [`crate::launch::launch`] to a child that sent the
    /// wrong handshake token. Every received descriptor has been closed.
    #[error("bad attachment: {0}")]
    BadAttachment(&'static str),
    /// The bytes received do not decode as the expected message type (including trailing bytes).
    #[error("cannot decode message: {0}")]
    Decode(String),
    /// A message could not be encoded: serialisation failed, the encoding would exceed
    /// [`MAX_MESSAGE_BYTES`], or more than [`crate::MAX_ATTACHMENTS`] endpoints were attached.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// [`crate::Endpoint::recv_timeout`] (or the launch handshake) saw nothing in time.
    #[error("timed out waiting for a message")]
    Timeout,
    /// An in-process endpoint was to travel over an OS pipe (or the reverse), or an in-process
    /// endpoint was asked for its file descriptor. The two transports cannot carry each other.
    #[error("endpoint belongs to the other transport (in-process vs OS)")]
    WrongTransport,
    /// An operating-system error that is not one of the cases above.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl IpcError {
    /// True when the error can only be caused by a misbehaving peer (a compromised or buggy
    /// process): the caller should report a bad message and drop (or kill) that peer.
    ///
    /// Note that `Oversized` is also what a local `send` of too large a message returns; only on
    /// the receive side does it indicate the peer.
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(self, IpcError::Decode(_) | IpcError::Oversized { .. } | IpcError::BadAttachment(_))
    }
}
