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
use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Instant;

use libc::c_int;

use crate::{IpcError, MAX_ATTACHMENTS, MAX_MESSAGE_BYTES};

/// Length of the frame header in front of every payload.
pub(crate) const HEADER_LEN: usize = 1;
/// High nibble of the header byte; the low nibble is the attachment count.
const FRAME_TAG: u8 = 0xA0;
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
// SAFETY: CMSG_SPACE is pure arithmetic on its argument; it dereferences nothing.
const RECV_CMSG_LEN: usize = unsafe { libc::CMSG_SPACE(((MAX_ATTACHMENTS + 1) * size_of::<c_int>()) as u32) } as usize;
// SAFETY: as above, pure arithmetic.
const SEND_CMSG_LEN: usize = unsafe { libc::CMSG_SPACE((MAX_ATTACHMENTS * size_of::<c_int>()) as u32) } as usize;

/// Control-message buffer with the alignment of `cmsghdr` (which starts with a `size_t`).
#[repr(C, align(8))]
struct CmsgBuf<const N: usize>([u8; N]);

thread_local! {
    /// The fixed receive buffer: allocated once per receiving thread, never sized by the peer.
    static RECV_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; RECV_BUF_LEN].into_boxed_slice());
}

/// Creates a connected `SOCK_SEQPACKET` pair (close-on-exec).
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as socketpair(2) requires.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    ensure_send_buffer(&a)?;
    ensure_send_buffer(&b)?;
    Ok((a, b))
}

fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` states the size of `value`.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Raises `SO_SNDBUF` when the system default is too small for one maximum-size datagram.
/// Left alone otherwise, so backpressure stays at the kernel default (see the crate docs).
pub(crate) fn ensure_send_buffer(fd: &OwnedFd) -> io::Result<()> {
    let current = getsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF)?;
    if usize::try_from(current).unwrap_or(0) >= MIN_SEND_BUFFER {
        return Ok(());
    }
    set_send_buffer(fd.as_fd(), MIN_SEND_BUFFER)
}

/// Sets `SO_SNDBUF` (the kernel caps it at `net.core.wmem_max` and doubles it for bookkeeping).
pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let wanted = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    // SAFETY: the option value points to a live c_int and the length matches it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const wanted).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that `fd` is a connected `AF_UNIX SOCK_SEQPACKET` socket — the only kind of
/// descriptor an endpoint may be. A listening or unconnected socket fails `getpeername`.
pub(crate) fn check_endpoint_socket(fd: BorrowedFd<'_>) -> Result<(), &'static str> {
    const NOT_SEQPACKET: &str = "descriptor is not a connected AF_UNIX SOCK_SEQPACKET socket";
    match (getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN), getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)) {
        (Ok(libc::AF_UNIX), Ok(libc::SOCK_SEQPACKET)) => {}
        _ => return Err(NOT_SEQPACKET),
    }
    let mut addr = MaybeUninit::<libc::sockaddr_un>::uninit();
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` has room for `len` bytes; the kernel writes at most that many.
    let rc = unsafe { libc::getpeername(fd.as_raw_fd(), addr.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(NOT_SEQPACKET);
    }
    Ok(())
}

/// Sets `FD_CLOEXEC`, for a descriptor that was inherited without it (the bootstrap socket):
/// it must not leak further into this process's own children.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor we borrow touch only its descriptor flags.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `shutdown(SHUT_RDWR)`: the peer reads end-of-file after draining, its sends fail with `EPIPE`,
/// and a local `recv` blocked on this socket (any handle of it) wakes up with end-of-file.
pub(crate) fn shutdown(fd: BorrowedFd<'_>) {
    // SAFETY: shutdown(2) on a borrowed descriptor; the only possible errors (ENOTCONN) are moot.
    unsafe {
        libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
    }
}

fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED | libc::ENOTCONN | libc::ESHUTDOWN)
    )
}

fn is_would_block(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == libc::EAGAIN || code == libc::EWOULDBLOCK)
}

/// Waits in `poll(2)` until `events` (or an error/hang-up) is signalled on `fd`, or until the
/// deadline. Returns `false` on timeout. A deadline already past still polls once, so a zero
/// timeout means "only what is already there" rather than "never".
fn wait_for(fd: BorrowedFd<'_>, events: libc::c_short, deadline: Option<Instant>) -> Result<bool, IpcError> {
    loop {
        let (timeout_ms, last_try): (c_int, bool) = match deadline {
            None => (-1, false),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up so we never wake just before the deadline and spin.
                let ms = left.as_nanos().div_ceil(1_000_000);
                (c_int::try_from(ms).unwrap_or(c_int::MAX), left.is_zero())
            }
        };
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
        // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc > 0 {
            return Ok(true);
        }
        if rc == 0 && last_try {
            return Ok(false);
        }
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err.into());
            }
        }
        // rc == 0: timed out (recheck the clock) or EINTR: loop.
    }
}

/// Points `msg`'s control data at `cmsg` holding one `SCM_RIGHTS` message with `fds` (nothing
/// when `fds` is empty). `msg` must not outlive `cmsg`.
fn attach_descriptors<const N: usize>(msg: &mut libc::msghdr, cmsg: &mut CmsgBuf<N>, fds: &[RawFd]) {
    if fds.is_empty() {
        return;
    }
    let data_len = size_of_val(fds) as u32;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
    assert!(space <= N, "too many descriptors for the control buffer");
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points to an aligned buffer of N >= CMSG_SPACE(data_len) bytes (checked
    // above), so CMSG_FIRSTHDR returns a pointer to a cmsghdr inside it with room for `fds.len()`
    // ints behind CMSG_DATA; we write exactly that many, unaligned-safe.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(data_len) as _;
        let data = libc::CMSG_DATA(header).cast::<c_int>();
        for (i, raw) in fds.iter().enumerate() {
            ptr::write_unaligned(data.add(i), *raw);
        }
    }
}

/// Sends one frame. `fds` are borrowed: the kernel takes its own references, so the caller's
/// copies may be closed as soon as this returns.
pub(crate) fn send(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> Result<(), IpcError> {
    debug_assert!(bytes.len() <= MAX_MESSAGE_BYTES && fds.len() <= MAX_ATTACHMENTS);
    let header = [FRAME_TAG | fds.len() as u8];
    let mut iov = [
        libc::iovec { iov_base: header.as_ptr() as *mut _, iov_len: HEADER_LEN },
        libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() },
    ];
    let mut cmsg = CmsgBuf([0u8; SEND_CMSG_LEN]);
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    attach_descriptors(&mut msg, &mut cmsg, fds);
    loop {
        // SAFETY: `msg` points to the live iovecs and control buffer above for the whole call.
        let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if rc >= 0 {
            // SEQPACKET sends are atomic: either the whole datagram was queued or nothing.
            debug_assert_eq!(rc as usize, HEADER_LEN + bytes.len());
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if is_would_block(&err) {
            wait_for(fd, libc::POLLOUT, None)?;
            continue;
        }
        if is_disconnect(&err) {
            return Err(IpcError::Disconnected);
        }
        return Err(err.into());
    }
}

/// Receives one frame: the payload and the attached descriptors, each already checked to be an
/// endpoint socket. `None` deadline = block.
pub(crate) fn recv(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(Vec<u8>, Vec<OwnedFd>), IpcError> {
    let mut recv = Some(|buf: &mut [u8]| recv_into(fd, deadline, buf));
    let result = RECV_BUF.try_with(|cell| cell.try_borrow_mut().ok().map(|mut buf| (recv.take().unwrap())(&mut buf)));
    match result {
        Ok(Some(result)) => result,
        // Thread-local storage is being torn down: use a one-off buffer of the same fixed size.
        _ => (recv.take().unwrap())(&mut vec![0; RECV_BUF_LEN]),
    }
}

fn recv_into(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    buf: &mut [u8],
) -> Result<(Vec<u8>, Vec<OwnedFd>), IpcError> {
    debug_assert_eq!(buf.len(), RECV_BUF_LEN);
    let mut iov = [libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }];
    let (len, fds) = recv_iov(fd, deadline, &mut iov, buf.len())?;
    let fds = check_frame(buf[0], fds)?;
    Ok((buf[HEADER_LEN..len].to_vec(), fds))
}

/// Receives one frame's payload straight into `bufs`, in order, with no intermediate copy.
/// Returns the payload length. A payload longer than the buffers is `Oversized` (discarded).
pub(crate) fn recv_vectored(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    bufs: &mut [io::IoSliceMut<'_>],
) -> Result<(usize, Vec<OwnedFd>), IpcError> {
    let mut header = [0u8; HEADER_LEN];
    // One spare byte past the caller's buffers, so an over-long datagram is always detected.
    let mut spare = [0u8; 1];
    let mut iov = Vec::with_capacity(bufs.len() + 2);
    iov.push(libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: HEADER_LEN });
    let mut capacity = HEADER_LEN + 1;
    for buf in bufs.iter_mut() {
        capacity += buf.len();
        iov.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() });
    }
    iov.push(libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: 1 });
    let (len, fds) = recv_iov(fd, deadline, &mut iov, capacity)?;
    let fds = check_frame(header[0], fds)?;
    Ok((len - HEADER_LEN, fds))
}

/// One `recvmsg` into `iov` (`capacity` bytes in all): returns the datagram's real length and
/// its descriptors, after the checks that do not depend on the frame header.
fn recv_iov(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
    iov: &mut [libc::iovec],
    capacity: usize,
) -> Result<(usize, Vec<OwnedFd>), IpcError> {
    loop {
        let mut flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC;
        if deadline.is_some() {
            if !wait_for(fd, libc::POLLIN, deadline)? {
                return Err(IpcError::Timeout);
            }
            flags |= libc::MSG_DONTWAIT;
        }
        let mut cmsg = CmsgBuf([0u8; RECV_CMSG_LEN]);
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = RECV_CMSG_LEN as _;
        // SAFETY: `msg` points to the caller's iovecs (each describing writable memory that
        // outlives the call, `capacity` bytes in all) and to `cmsg` (RECV_CMSG_LEN writable
        // bytes); the kernel writes no more than those lengths.
        let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if is_would_block(&err) {
                // Another handle took the datagram, or someone set O_NONBLOCK/SO_RCVTIMEO.
                if deadline.is_none() {
                    wait_for(fd, libc::POLLIN, None)?;
                }
                continue;
            }
            if is_disconnect(&err) {
                return Err(IpcError::Disconnected);
            }
            return Err(err.into());
        }
        // Take ownership of every received descriptor before looking at anything else, so that
        // each error path below closes them.
        let (fds, unexpected_cmsg) = take_descriptors(&msg);
        let len = rc as usize;
        if len == 0 {
            // End of file. (A zero-length datagram from a peer reads the same; our frames are
            // never empty, so treating it as a hang-up loses nothing.)
            return Err(IpcError::Disconnected);
        }
        if msg.msg_flags & libc::MSG_TRUNC != 0 || len >= capacity {
            return Err(IpcError::Oversized { len: len - HEADER_LEN });
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(IpcError::BadAttachment("control data truncated (too many descriptors)"));
        }
        if unexpected_cmsg {
            return Err(IpcError::BadAttachment("unexpected control message"));
        }
        return Ok((len, fds));
    }
}

/// Wraps every descriptor of every `SCM_RIGHTS` message in an `OwnedFd`; reports whether any
/// other kind of control message arrived.
fn take_descriptors(msg: &libc::msghdr) -> (Vec<OwnedFd>, bool) {
    let mut fds = Vec::new();
    let mut unexpected = false;
    // SAFETY: `msg` was filled by a successful recvmsg: msg_control/msg_controllen describe the
    // control data the kernel wrote, so CMSG_FIRSTHDR/CMSG_NXTHDR yield headers inside it (or
    // null), each header's cmsg_len covers its data, and for SCM_RIGHTS that data is an array of
    // descriptors newly installed in our table that nothing else owns yet.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(msg);
        while !header.is_null() {
            let level = (*header).cmsg_level;
            let kind = (*header).cmsg_type;
            if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
                let data_len = ((*header).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                let data = libc::CMSG_DATA(header).cast::<c_int>();
                for i in 0..data_len / size_of::<c_int>() {
                    fds.push(OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i))));
                }
            } else {
                unexpected = true;
            }
            header = libc::CMSG_NXTHDR(msg, header);
        }
    }
    (fds, unexpected)
}

/// Validates a received frame's header against its descriptors (length checks are done).
fn check_frame(header: u8, fds: Vec<OwnedFd>) -> Result<Vec<OwnedFd>, IpcError> {
    if fds.len() > MAX_ATTACHMENTS {
        return Err(IpcError::BadAttachment("too many attachments"));
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
    Ok(fds)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Raw-socket helpers for tests that play a misbehaving peer.

    use super::*;

    /// Sends `bytes` verbatim (no frame header) with `fds` attached.
    pub(crate) fn raw_send(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() };
        let mut cmsg = CmsgBuf([0u8; 256]);
        // SAFETY: an all-zero msghdr is valid.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        attach_descriptors(&mut msg, &mut cmsg, fds);
        // SAFETY: `msg` refers to live buffers for the duration of the call.
        let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// A frame header byte as `send` writes it.
    pub(crate) fn frame_header(attachments: usize) -> u8 {
        FRAME_TAG | attachments as u8
    }

    /// Sets `SO_SNDBUF` (the kernel doubles it).
    pub(crate) fn set_send_buffer(fd: BorrowedFd<'_>, bytes: c_int) {
        // SAFETY: option value is a live c_int of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const bytes).cast(),
                size_of::<c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    }

    /// `SO_SNDBUF` as the kernel reports it.
    pub(crate) fn send_buffer(fd: BorrowedFd<'_>) -> c_int {
        getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap()
    }

    /// Creates a pipe; both ends close-on-exec.
    pub(crate) fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [-1; 2];
        // SAFETY: `fds` is a writable array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 succeeded; both descriptors are new and unowned.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }
}
