//! The OS transport: one `AF_UNIX SOCK_SEQPACKET` socket per endpoint.
//!
//! Frame: one datagram per message, `[tag | attachment count]` (one byte) followed by the
//! payload; attachments travel as `SCM_RIGHTS`. The header byte exists because a zero-length
//! datagram cannot be told apart from end-of-file on a SEQPACKET socket (both read as 0 bytes),
//! and the count lets the receiver check that the descriptors it got are the ones that were sent.
//!
//! Blocking: `sendmsg`/`recvmsg` are called in blocking mode, but `EAGAIN` is handled by waiting
//! in `poll(2)` and retrying, because a peer that hands us a socket may keep a duplicate of it and
//! set `O_NONBLOCK` or `SO_RCVTIMEO` on the shared open file description behind our back.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::{Errno, FdFlags, fcntl_getfd, fcntl_setfd};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, Shutdown, SocketFlags, SocketType, getpeername, recvmsg, sendmsg, socketpair,
    sockopt,
};

use crate::{IpcError, MAX_ATTACHMENTS, MAX_MESSAGE_BYTES};

/// Length of the frame header in front of every payload.
pub(crate) const HEADER_LEN: usize = 1;
/// High nibble of the header byte; the low nibble is the attachment count.
const FRAME_TAG: u8 = 0xA0;
/// Header of a frame that carries one file ([`crate::Endpoint::send_file`]) instead of endpoints:
/// its descriptor is not checked to be a socket, and only a receiver that expects a file
/// accepts it.
const FILE_FRAME_HEADER: u8 = 0xB1;
const FRAME_TAG_MASK: u8 = 0xF0;
/// One byte more than the largest valid frame, so an over-long datagram is always detectable
/// even if the kernel did not report `MSG_TRUNC`.
const RECV_BUF_LEN: usize = HEADER_LEN + MAX_MESSAGE_BYTES + 1;
/// The smallest `SO_SNDBUF` that lets one maximum-size datagram through: Linux refuses a
/// datagram with `EMSGSIZE` when it exceeds `sk_sndbuf - 32`. The slack covers that and the
/// kernel's per-buffer bookkeeping.
const MIN_SEND_BUFFER: usize = HEADER_LEN + MAX_MESSAGE_BYTES + 4096;

/// Room for one more descriptor than we accept, so "too many" is seen as a count rather than
/// only as `MSG_CTRUNC`.
const RECV_CMSG_LEN: usize = rustix::cmsg_space!(ScmRights(MAX_ATTACHMENTS + 1));
const SEND_CMSG_LEN: usize = rustix::cmsg_space!(ScmRights(MAX_ATTACHMENTS));

thread_local! {
    /// The fixed receive buffer: allocated once per receiving thread, never sized by the peer.
    static RECV_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; RECV_BUF_LEN].into_boxed_slice());
}

/// Creates a connected `SOCK_SEQPACKET` pair (close-on-exec).
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    ensure_send_buffer(&a)?;
    ensure_send_buffer(&b)?;
    Ok((a, b))
}

/// Raises `SO_SNDBUF` when the system default is too small for one maximum-size datagram.
/// Left alone otherwise, so backpressure stays at the kernel default (see the crate docs).
pub(crate) fn ensure_send_buffer(fd: &OwnedFd) -> io::Result<()> {
    if sockopt::socket_send_buffer_size(fd)? >= MIN_SEND_BUFFER {
        return Ok(());
    }
    set_send_buffer(fd.as_fd(), MIN_SEND_BUFFER)
}

/// Sets `SO_SNDBUF` (the kernel caps it at `net.core.wmem_max` and doubles it for bookkeeping).
pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    // The option is a C int: ask for the most it can say rather than fail.
    Ok(sockopt::set_socket_send_buffer_size(fd, bytes.min(i32::MAX as usize))?)
}

/// Checks that `fd` is a connected `AF_UNIX SOCK_SEQPACKET` socket — the only kind of
/// descriptor an endpoint may be. A listening or unconnected socket fails `getpeername`.
pub(crate) fn check_endpoint_socket(fd: BorrowedFd<'_>) -> Result<(), &'static str> {
    const NOT_SEQPACKET: &str = "descriptor is not a connected AF_UNIX SOCK_SEQPACKET socket";
    match (sockopt::socket_domain(fd), sockopt::socket_type(fd)) {
        (Ok(AddressFamily::UNIX), Ok(SocketType::SEQPACKET)) => {}
        _ => return Err(NOT_SEQPACKET),
    }
    getpeername(fd).map(drop).map_err(|_| NOT_SEQPACKET)
}

/// Sets `FD_CLOEXEC`, for a descriptor that was inherited without it (the bootstrap socket):
/// it must not leak further into this process's own children.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl_getfd(fd)?;
    Ok(fcntl_setfd(fd, flags | FdFlags::CLOEXEC)?)
}

/// `shutdown(SHUT_RDWR)`: the peer reads end-of-file after draining, its sends fail with `EPIPE`,
/// and a local `recv` blocked on this socket (any handle of it) wakes up with end-of-file.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) {
    // The only possible error (ENOTCONN: already shut down or never connected) is moot.
    let _ = rustix::net::shutdown(fd, Shutdown::Both);
}

fn is_disconnect(err: Errno) -> bool {
    matches!(err, Errno::PIPE | Errno::CONNRESET | Errno::CONNREFUSED | Errno::NOTCONN | Errno::SHUTDOWN)
}

/// Waits in `poll(2)` until `events` (or an error/hang-up) is signalled on `fd`, or until the
/// deadline. Returns `false` on timeout. A deadline already past still polls once, so a zero
/// timeout means "only what is already there" rather than "never".
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags, deadline: Option<Instant>) -> Result<bool, IpcError> {
    loop {
        let (timeout, last_try) = match deadline {
            None => (None, false),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let timeout = Timespec {
                    tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                    tv_nsec: left.subsec_nanos().into(),
                };
                (Some(timeout), left.is_zero())
            }
        };
        let mut pfd = [PollFd::new(&fd, events)];
        match poll(&mut pfd, timeout.as_ref()) {
            Ok(0) if last_try => return Ok(false),
            Ok(0) | Err(Errno::INTR) => {} // timed out (recheck the clock) or interrupted: again
            Ok(_) => return Ok(true),
            Err(err) => return Err(io::Error::from(err).into()),
        }
    }
}

/// Sends one frame. `fds` are borrowed: the kernel takes its own references, so the caller's
/// copies may be closed as soon as this returns.
pub(crate) fn send(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
    debug_assert!(bytes.len() <= MAX_MESSAGE_BYTES && fds.len() <= MAX_ATTACHMENTS);
    send_frame(fd, FRAME_TAG | fds.len() as u8, &[bytes], fds)
}

/// Sends one frame without attachments whose payload is `head` followed by `tail`, gathered by
/// the kernel (no copy into one buffer first).
pub(crate) fn send_parts(fd: BorrowedFd<'_>, head: &[u8], tail: &[u8]) -> Result<(), IpcError> {
    debug_assert!(head.len() + tail.len() <= MAX_MESSAGE_BYTES);
    send_frame(fd, FRAME_TAG, &[head, tail], &[])
}

/// Sends one frame carrying `file` (any descriptor; the receiver judges it).
pub(crate) fn send_file(fd: BorrowedFd<'_>, bytes: &[u8], file: BorrowedFd<'_>) -> Result<(), IpcError> {
    debug_assert!(bytes.len() <= MAX_MESSAGE_BYTES);
    send_frame(fd, FILE_FRAME_HEADER, &[bytes], &[file])
}

fn send_frame(fd: BorrowedFd<'_>, header: u8, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
    let header = [header];
    let mut iov = [IoSlice::new(&header), IoSlice::new(&[]), IoSlice::new(&[])];
    debug_assert!(parts.len() < iov.len());
    for (slot, part) in iov[1..].iter_mut().zip(parts) {
        *slot = IoSlice::new(part);
    }
    let payload: usize = parts.iter().map(|part| part.len()).sum();
    let mut space = [MaybeUninit::<u8>::uninit(); SEND_CMSG_LEN];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(IpcError::Encode(format!("{} attachments, at most {MAX_ATTACHMENTS} allowed", fds.len())));
    }
    loop {
        match sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(sent) => {
                // SEQPACKET sends are atomic: either the whole datagram was queued or nothing.
                debug_assert_eq!(sent, HEADER_LEN + payload);
                return Ok(());
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                wait_for(fd, PollFlags::OUT, None)?;
            }
            Err(err) if is_disconnect(err) => return Err(IpcError::Disconnected),
            Err(err) => return Err(io::Error::from(err).into()),
        }
    }
}

/// What a frame carried besides its payload.
pub(crate) enum Carried {
    /// Endpoint sockets (checked), possibly none.
    Endpoints(Vec<OwnedFd>),
    /// One file of [`send_file`] (not checked: its receiver does).
    File(OwnedFd),
}

/// Receives one frame: the payload and what it carried (endpoint sockets already checked).
/// `None` deadline = block.
pub(crate) fn recv(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(Vec<u8>, Carried), IpcError> {
    let mut recv = Some(|buf: &mut [u8]| recv_into(fd, deadline, buf));
    let result = RECV_BUF.try_with(|cell| cell.try_borrow_mut().ok().map(|mut buf| (recv.take().unwrap())(&mut buf)));
    match result {
        Ok(Some(result)) => result,
        // Thread-local storage is being torn down: use a one-off buffer of the same fixed size.
        _ => (recv.take().unwrap())(&mut vec![0; RECV_BUF_LEN]),
    }
}

fn recv_into(fd: BorrowedFd<'_>, deadline: Option<Instant>, buf: &mut [u8]) -> Result<(Vec<u8>, Carried), IpcError> {
    debug_assert_eq!(buf.len(), RECV_BUF_LEN);
    let capacity = buf.len();
    let (len, fds) = recv_iov(fd, deadline, &mut [IoSliceMut::new(buf)], capacity)?;
    let fds = check_frame(buf[0], fds)?;
    Ok((buf[HEADER_LEN..len].to_vec(), fds))
}

/// Receives one frame's payload straight into `bufs`, in order, with no intermediate copy.
/// Returns the payload length. A payload longer than the buffers is `Oversized` (discarded).
pub(crate) fn recv_vectored(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    bufs: &mut [IoSliceMut<'_>],
) -> Result<(usize, Carried), IpcError> {
    let mut header = [0u8; HEADER_LEN];
    // One spare byte past the caller's buffers, so an over-long datagram is always detected.
    let mut spare = [0u8; 1];
    let mut capacity = HEADER_LEN + 1;
    let mut iov = Vec::with_capacity(bufs.len() + 2);
    iov.push(IoSliceMut::new(&mut header));
    for buf in bufs.iter_mut() {
        capacity += buf.len();
        iov.push(IoSliceMut::new(buf));
    }
    iov.push(IoSliceMut::new(&mut spare));
    let (len, fds) = recv_iov(fd, deadline, &mut iov, capacity)?;
    drop(iov);
    let fds = check_frame(header[0], fds)?;
    Ok((len - HEADER_LEN, fds))
}

/// One `recvmsg` into `iov` (`capacity` bytes in all): returns the datagram's real length and
/// its descriptors, after the checks that do not depend on the frame header.
fn recv_iov(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    iov: &mut [IoSliceMut<'_>],
    capacity: usize,
) -> Result<(usize, Vec<OwnedFd>), IpcError> {
    loop {
        let mut flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC;
        if deadline.is_some() {
            if !wait_for(fd, PollFlags::IN, deadline)? {
                return Err(IpcError::Timeout);
            }
            flags |= RecvFlags::DONTWAIT;
        }
        let mut space = [MaybeUninit::<u8>::uninit(); RECV_CMSG_LEN];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = match recvmsg(fd, iov, &mut control, flags) {
            Ok(received) => received,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                // Another handle took the datagram, or someone set O_NONBLOCK/SO_RCVTIMEO.
                if deadline.is_none() {
                    wait_for(fd, PollFlags::IN, None)?;
                }
                continue;
            }
            Err(err) if is_disconnect(err) => return Err(IpcError::Disconnected),
            Err(err) => return Err(io::Error::from(err).into()),
        };
        // Take ownership of every received descriptor before looking at anything else, so that
        // each error path below closes them. (Control messages of kinds rustix does not parse
        // carry no descriptors, and the kernel sends none of them unless we ask: we never set
        // SO_PASSCRED, SO_PASSSEC or SO_PASSPIDFD.)
        let mut fds = Vec::new();
        let mut unexpected_cmsg = false;
        for message in control.drain() {
            match message {
                RecvAncillaryMessage::ScmRights(rights) => fds.extend(rights),
                _ => unexpected_cmsg = true,
            }
        }
        let len = received.bytes;
        if len == 0 {
            // End of file. (A zero-length datagram from a peer reads the same; our frames are
            // never empty, so treating it as a hang-up loses nothing.)
            return Err(IpcError::Disconnected);
        }
        if received.flags.contains(ReturnFlags::TRUNC) || len >= capacity {
            return Err(IpcError::Oversized { len: len - HEADER_LEN });
        }
        if received.flags.contains(ReturnFlags::CTRUNC) {
            return Err(IpcError::BadAttachment("control data truncated (too many descriptors)"));
        }
        if unexpected_cmsg {
            return Err(IpcError::BadAttachment("unexpected control message"));
        }
        return Ok((len, fds));
    }
}

/// Validates a received frame's header against its descriptors (length checks are done).
fn check_frame(header: u8, mut fds: Vec<OwnedFd>) -> Result<Carried, IpcError> {
    if fds.len() > MAX_ATTACHMENTS {
        return Err(IpcError::BadAttachment("too many attachments"));
    }
    if header == FILE_FRAME_HEADER {
        return match (fds.pop(), fds.is_empty()) {
            (Some(file), true) => Ok(Carried::File(file)),
            _ => Err(IpcError::BadAttachment("a file frame must carry exactly one descriptor")),
        };
    }
    if header & FRAME_TAG_MASK != FRAME_TAG {
        return Err(IpcError::Decode(format!("bad frame header {header:#04x}")));
    }
    if usize::from(header & !FRAME_TAG_MASK) != fds.len() {
        return Err(IpcError::BadAttachment("attachment count does not match the frame header"));
    }
    for fd in &fds {
        check_endpoint_socket(fd.as_fd()).map_err(IpcError::BadAttachment)?;
    }
    Ok(Carried::Endpoints(fds))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Raw-socket helpers for tests that play a misbehaving peer.

    use super::*;

    /// Sends `bytes` verbatim (no frame header) with `fds` attached.
    pub(crate) fn raw_send(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(16))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(fds.is_empty() || control.push(SendAncillaryMessage::ScmRights(fds)));
        sendmsg(fd, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL)?;
        Ok(())
    }

    /// A frame header byte as `send` writes it.
    pub(crate) fn frame_header(attachments: usize) -> u8 {
        FRAME_TAG | attachments as u8
    }

    /// Sets `SO_SNDBUF` (the kernel doubles it).
    pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) {
        sockopt::set_socket_send_buffer_size(fd, bytes).unwrap();
    }

    /// `SO_SNDBUF` as the kernel reports it.
    pub(crate) fn send_buffer(fd: BorrowedFd<'_>) -> usize {
        sockopt::socket_send_buffer_size(fd).unwrap()
    }

    /// Creates a pipe; both ends close-on-exec.
    pub(crate) fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
    }
}
