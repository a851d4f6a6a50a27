//! The in-process transport: the same semantics as the OS one, between threads.
//!
//! Each direction is a queue with a byte budget that mirrors a Linux socket's send buffer: a
//! message is accepted while fewer than [`SEND_BUDGET`] bytes are in flight, so at most two
//! maximum-size messages wait and a sender blocks beyond that, exactly where the OS transport
//! blocks. A plain `Mutex` + `Condvar` queue is used rather than a channel because `shutdown`
//! must wake blocked senders *and* receivers of both ends through shared handles.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::{Endpoint, IpcError};

/// Bytes in flight per direction before `send` blocks: Linux's default `SO_SNDBUF` (208 KiB).
pub(crate) const SEND_BUDGET: usize = 212_992;
/// Charged per message on top of its length, like the kernel's per-datagram overhead (the
/// `truesize` of a small skb), so floods of tiny messages are bounded too: measured on Linux
/// 6.18, 278 empty datagrams fit in the default buffer, and 212 992 / 768 gives the same.
const PER_MESSAGE_COST: usize = 768;

/// One queued message.
pub(crate) struct Packet {
    pub(crate) bytes: Vec<u8>,
    pub(crate) attachments: Vec<Endpoint>,
    /// A file sent with [`Endpoint::send_file`] (never together with endpoints).
    pub(crate) file: Option<std::os::fd::OwnedFd>,
    cost: usize,
}

struct State {
    queue: VecDeque<Packet>,
    in_flight: usize,
    closed: bool,
}

/// One direction of a pipe.
struct Direction {
    state: Mutex<State>,
    readable: Condvar,
    writable: Condvar,
}

impl Direction {
    fn new() -> Arc<Self> {
        Arc::new(Direction {
            state: Mutex::new(State { queue: VecDeque::new(), in_flight: 0, closed: false }),
            readable: Condvar::new(),
            writable: Condvar::new(),
        })
    }

    /// Marks the direction closed and wakes everyone; queued messages stay readable (like a
    /// socket's receive queue after `shutdown`).
    fn close(&self) {
        self.state.lock().closed = true;
        self.readable.notify_all();
        self.writable.notify_all();
    }

    /// Closes and drops whatever is queued, like the kernel does when the receiving socket is
    /// closed: attached endpoints in those messages are released, so their peers disconnect.
    fn close_and_discard(&self) {
        let discarded = {
            let mut state = self.state.lock();
            state.closed = true;
            state.in_flight = 0;
            std::mem::take(&mut state.queue)
        };
        self.readable.notify_all();
        self.writable.notify_all();
        // Dropped outside the lock: an attachment's drop may close a direction too, possibly
        // this one (an endpoint sent towards itself).
        drop(discarded);
    }

    fn send(
        &self,
        bytes: Vec<u8>,
        attachments: Vec<Endpoint>,
        file: Option<std::os::fd::OwnedFd>,
    ) -> Result<(), IpcError> {
        let cost = bytes.len() + PER_MESSAGE_COST;
        let mut state = self.state.lock();
        loop {
            if state.closed {
                drop(state);
                // `attachments` are dropped after the lock is released.
                return Err(IpcError::Disconnected);
            }
            if state.in_flight < SEND_BUDGET {
                break;
            }
            self.writable.wait(&mut state);
        }
        state.in_flight += cost;
        state.queue.push_back(Packet { bytes, attachments, file, cost });
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    fn recv(&self, deadline: Option<Instant>) -> Result<Packet, IpcError> {
        let mut state = self.state.lock();
        loop {
            if let Some(packet) = state.queue.pop_front() {
                state.in_flight -= packet.cost;
                drop(state);
                self.writable.notify_all();
                return Ok(packet);
            }
            if state.closed {
                return Err(IpcError::Disconnected);
            }
            match deadline {
                None => self.readable.wait(&mut state),
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        return Err(IpcError::Timeout);
                    }
                    self.readable.wait_until(&mut state, deadline);
                }
            }
        }
    }
}

/// One end. Shared by every handle of that end (`Endpoint::try_clone`), and by messages in flight
/// that carry it; dropping the last reference closes the end, like closing a socket's last fd.
pub(crate) struct EndCore {
    outbound: Arc<Direction>,
    inbound: Arc<Direction>,
}

impl EndCore {
    pub(crate) fn pair() -> (Arc<EndCore>, Arc<EndCore>) {
        let a_to_b = Direction::new();
        let b_to_a = Direction::new();
        (
            Arc::new(EndCore { outbound: a_to_b.clone(), inbound: b_to_a.clone() }),
            Arc::new(EndCore { outbound: b_to_a, inbound: a_to_b }),
        )
    }

    pub(crate) fn send(
        &self,
        bytes: Vec<u8>,
        attachments: Vec<Endpoint>,
        file: Option<std::os::fd::OwnedFd>,
    ) -> Result<(), IpcError> {
        self.outbound.send(bytes, attachments, file)
    }

    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Result<Packet, IpcError> {
        self.inbound.recv(deadline)
    }

    pub(crate) fn shutdown(&self) {
        self.outbound.close();
        self.inbound.close();
    }
}

impl Drop for EndCore {
    fn drop(&mut self) {
        self.outbound.close();
        self.inbound.close_and_discard();
    }
}
