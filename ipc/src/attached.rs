//! [`Attached`]: an endpoint carried by a message, as a typed field.
//!
//! A message type declares the endpoints it carries by holding `Attached` fields, the way a
//! mojom struct declares its handles. On the wire such a field is the index of the endpoint in
//! the message's attachment list. Encoding moves each endpoint out of the message into that list;
//! decoding takes each one back by its index. Decoding fails ([`IpcError::BadAttachment`]) for an
//! index out of range, an endpoint claimed twice, or an endpoint no field claimed; so a receiver
//! never counts attachments itself, and every received endpoint ends up in a field or closed.

use std::cell::RefCell;
use std::fmt;

use parking_lot::Mutex;
use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{self, Serialize, Serializer};

use crate::{Endpoint, IpcError, MAX_ATTACHMENTS};

/// An endpoint travelling inside a message (moved to the receiver with it).
///
/// Only [`Pipe::send`](crate::Pipe::send) / [`encode_with_attachments`] can encode it (they take
/// the message by value), and only [`Pipe::recv`](crate::Pipe::recv) /
/// [`decode_with_attachments`] can decode it; plain [`encode`](crate::encode) and
/// [`decode`](crate::decode) refuse a message that carries one.
pub struct Attached {
    // Serialisation sees `&self` but must move the endpoint into the attachment list; the lock
    // is that hand-over. Only a message consumed by encoding is ever left empty.
    end: Mutex<Option<Endpoint>>,
}

impl Attached {
    /// Wraps an endpoint for a message field.
    pub fn new(endpoint: Endpoint) -> Self {
        Self { end: Mutex::new(Some(endpoint)) }
    }

    /// The endpoint.
    pub fn into_endpoint(self) -> Endpoint {
        self.end.into_inner().expect("only a message consumed by encoding gives its endpoints up")
    }
}

impl From<Endpoint> for Attached {
    fn from(endpoint: Endpoint) -> Self {
        Self::new(endpoint)
    }
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end.try_lock() {
            Some(end) => f.debug_tuple("Attached").field(&*end).finish(),
            None => f.write_str("Attached(<being encoded>)"),
        }
    }
}

/// Two fields are equal when they hold the very same endpoint handle.
impl PartialEq for Attached {
    fn eq(&self, other: &Self) -> bool {
        if std::ptr::eq(self, other) {
            return true;
        }
        match (&*self.end.lock(), &*other.end.lock()) {
            (Some(a), Some(b)) => a.is_same_handle(b),
            _ => false,
        }
    }
}

impl Eq for Attached {}

/// The attachment list of a message being encoded or decoded on this thread, and the first
/// thing that went wrong with it (postcard drops a custom error's text, so it is kept here).
struct Table<T> {
    list: Vec<T>,
    fault: Option<&'static str>,
}

impl<T> Table<T> {
    fn new(list: Vec<T>) -> Self {
        Self { list, fault: None }
    }
}

thread_local! {
    /// The endpoints of the message being encoded on this thread, in field order.
    static ENCODING: RefCell<Option<Table<Endpoint>>> = const { RefCell::new(None) };
    /// The endpoints of the message being decoded on this thread; a slot is emptied when a field
    /// claims it.
    static DECODING: RefCell<Option<Table<Option<Endpoint>>>> = const { RefCell::new(None) };
}

impl Serialize for Attached {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = ENCODING.with_borrow_mut(|table| {
            let Some(table) = table else {
                return Err("an endpoint travels only with Pipe::send or encode_with_attachments");
            };
            let index = if table.list.len() >= MAX_ATTACHMENTS {
                Err("more endpoints than a message may carry")
            } else {
                self.end.lock().take().ok_or("an endpoint encoded twice").map(|endpoint| {
                    table.list.push(endpoint);
                    table.list.len() - 1
                })
            };
            if let Err(reason) = index {
                table.fault.get_or_insert(reason);
            }
            index
        });
        match index {
            // MAX_ATTACHMENTS fits a byte.
            Ok(index) => serializer.serialize_u8(index as u8),
            Err(reason) => Err(ser::Error::custom(reason)),
        }
    }
}

impl<'de> Deserialize<'de> for Attached {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = usize::from(u8::deserialize(deserializer)?);
        let endpoint = DECODING.with_borrow_mut(|table| {
            let table = table.as_mut().ok_or("endpoints decode only with the message's attachments")?;
            let endpoint = match table.list.get_mut(index) {
                None => Err("endpoint index out of range"),
                Some(slot) => slot.take().ok_or("endpoint claimed twice"),
            };
            if let Err(reason) = endpoint {
                table.fault.get_or_insert(reason);
            }
            endpoint
        });
        endpoint.map(Attached::new).map_err(de::Error::custom)
    }
}

/// Restores a thread-local slot when dropped, so that an unwinding or nested codec call never
/// leaves another message's attachments behind.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    previous: Option<T>,
}

impl<T: 'static> Restore<T> {
    fn install(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Self {
        let previous = key.replace(Some(value));
        Self { key, previous }
    }

    fn take(mut self) -> Option<T> {
        let current = self.key.replace(self.previous.take());
        std::mem::forget(self);
        current
    }
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.key.replace(self.previous.take());
    }
}

/// Encodes `message` (see [`encode`](crate::encode)) and moves the endpoints its [`Attached`]
/// fields hold into the returned list, in field order. At most [`MAX_ATTACHMENTS`]. Pass the
/// message itself, not a reference: its endpoints leave it.
pub fn encode_with_attachments<T: Serialize>(message: T) -> Result<(Vec<u8>, Vec<Endpoint>), IpcError> {
    let scope = Restore::install(&ENCODING, Table::new(Vec::new()));
    let bytes = crate::codec::encode(&message);
    let table = scope.take().unwrap_or_else(|| Table::new(Vec::new()));
    if let Some(reason) = table.fault {
        return Err(IpcError::Encode(reason.to_owned()));
    }
    Ok((bytes?, table.list))
}

/// Decodes `bytes` (see [`decode`](crate::decode)), handing `attachments` to the message's
/// [`Attached`] fields by index. Every attachment must be claimed exactly once: an index out of
/// range, a second claim or an endpoint no field claims is [`IpcError::BadAttachment`] (peer
/// misbehaviour), and every endpoint not placed in a field is closed.
pub fn decode_with_attachments<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    attachments: Vec<Endpoint>,
) -> Result<T, IpcError> {
    let scope = Restore::install(&DECODING, Table::new(attachments.into_iter().map(Some).collect()));
    let decoded = crate::codec::decode_borrowed::<T>(bytes);
    let table = scope.take().unwrap_or_else(|| Table::new(Vec::new()));
    if let Some(reason) = table.fault {
        return Err(IpcError::BadAttachment(reason));
    }
    let message = decoded?;
    if table.list.iter().any(Option::is_some) {
        return Err(IpcError::BadAttachment("an endpoint no field of the message claims"));
    }
    Ok(message)
}
