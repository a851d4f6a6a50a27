//! Message pipes between the Cross-Origin Storage processes (browser, renderers, storage
//! service), typed views over them, and child-process launch.
//!
//! **Transport.** An [`Endpoint`] is one end of an `AF_UNIX SOCK_SEQPACKET` socketpair: one
//! message is one datagram (a one-byte frame header, then the payload), other endpoints travel
//! as `SCM_RIGHTS` attachments. A received datagram lands in a fixed per-thread buffer one byte
//! longer than the largest valid frame, so the size limit is checked before anything is
//! allocated and nothing is ever sized by a peer-supplied length. Every received descriptor is
//! owned (`OwnedFd`) before it is inspected and must be a connected `AF_UNIX SOCK_SEQPACKET`
//! socket. The same API also runs between threads ([`Endpoint::pair_in_process`]) with the same
//! limits, ordering, backpressure and disconnect semantics, for single-process mode and tests.
//!
//! **Why not `ipc-channel`.** Its Unix receiver (0.23.1, `platform/unix/mod.rs`) trusts the
//! sender's fragment header: it calls `reserve_exact` with the sender's total size and
//! `channels.pop().unwrap()` when a fragment claims more data without a channel, so a
//! compromised renderer could make the browser allocate arbitrary memory or panic. Messages here
//! are therefore single datagrams of at most [`MAX_MESSAGE_BYTES`]; bulk data is chunked by the
//! caller (or travels in shared memory).
//!
//! **Encoding.** [`Pipe`] sends and receives serde types with postcard ([`encode`], [`decode`]);
//! only this crate knows the wire format. Endpoints a message carries are typed fields
//! ([`Attached`]): decoding hands each its attachment and fails when they disagree, so no
//! receiver counts attachments. Bulk data pipes frame chunks as [`DataFrame`]s, whose bytes never
//! pass through a serializer. A message that does not decode, an oversized datagram or a bad
//! attachment is peer misbehaviour ([`IpcError::is_peer_misbehaviour`]).
//!
//! **Processes.** [`launch`](launch::launch) self-execs a child with `--type=` and a one-shot
//! token; the child calls [`launch::bootstrap_from_args`] first thing in `main`.
//!
//! ```
//! use cos_ipc::{Endpoint, Pipe};
//!
//! let (a, b) = Endpoint::pair()?;
//! let client: Pipe<String, u32> = Pipe::new(a);
//! let service: Pipe<u32, String> = Pipe::new(b);
//! client.send("hello".to_owned())?;
//! let text = service.recv()?;
//! service.send(text.len() as u32)?;
//! assert_eq!(client.recv()?, 5);
//! # Ok::<(), cos_ipc::IpcError>(())
//! ```

mod attached;
mod bad_message;
mod codec;
mod data_frame;
mod endpoint;
mod error;
mod in_process;
#[cfg(feature = "ipc-channel")]
pub mod ipc_channel;
pub mod launch;
mod os;
mod pipe;
mod sealed;

pub use attached::{Attached, decode_with_attachments, encode_with_attachments};
pub use bad_message::{BadMessageObserver, BadMessageReport, Peer, report_bad_message};
pub use codec::{decode, decode_borrowed, encode, encode_into};
pub use data_frame::{BULK_PREFIX, DataFrame, Received};
pub use endpoint::{Endpoint, Message};
pub use error::IpcError;
pub use pipe::Pipe;
pub use sealed::{Mapping, REQUIRED_SEALS, SealedFile, SealedFileBuilder};

/// The largest payload of one message: one datagram, below Linux's default 208 KiB socket
/// buffer so that a single send never needs a larger buffer (larger data is sent in chunks).
pub const MAX_MESSAGE_BYTES: usize = 160 * 1024;

/// The most endpoints one message may carry. Each received endpoint costs a descriptor, so the
/// bound keeps a peer from exhausting ours through one message.
pub const MAX_ATTACHMENTS: usize = 4;
