//! Where an embedder tees a fetched body that COS should store: a writer on the storage
//! service's write data pipe, committed only by [`StoreSink::finish`] (after SRI passed) and
//! verified against the hash by the service on close.

use std::time::Duration;

use cos_common::CosError;
use cos_common::interface::{DATA_CHUNK_BYTES, DATA_PIPE_SEND_BUFFER, WriteWarnings, WriterEvent, WriterFrame};
use cos_ipc::{Endpoint, IpcError};

use super::{HeldHandle, LoaderError};

/// A store in progress. Failures along the way (over the origin's limit, the service gone)
/// turn it into a no-op: later writes are dropped and [`finish`](Self::finish) reports the
/// first failure. Dropping it without `finish` aborts the store. Example: the
/// [`loader`](crate::loader) module's.
pub struct StoreSink {
    pipe: Endpoint,
    failed: Option<CosError>,
    done: bool,
    frame: Vec<u8>,
    _handle: HeldHandle,
}

impl std::fmt::Debug for StoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSink").field("failed", &self.failed).finish_non_exhaustive()
    }
}

impl StoreSink {
    pub(super) fn new(pipe: Endpoint, handle: HeldHandle) -> Self {
        if let Err(error) = pipe.set_send_buffer(DATA_PIPE_SEND_BUFFER) {
            tracing::debug!(%error, "could not deepen a store pipe's send queue");
        }
        Self { pipe, failed: None, done: false, frame: Vec::new(), _handle: handle }
    }

    /// Whether the store already failed (the rest of the body need not be teed).
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Appends the next piece of the body. Never fails the fetch: a failure only ends the store.
    pub fn write(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        // A failure the service reported asynchronously (e.g. the origin's limit reached).
        match self.pipe.recv_timeout(Duration::ZERO) {
            Err(IpcError::Timeout) => {}
            Ok(mut message) => {
                self.failed = Some(match message.decode::<WriterEvent>() {
                    Ok(WriterEvent::Failed(error)) => error,
                    _ => CosError::Unknown,
                });
                return;
            }
            Err(_) => {
                self.failed = Some(CosError::Abort);
                return;
            }
        }
        for chunk in data.chunks(DATA_CHUNK_BYTES) {
            if self.send(WriterFrame::Write { position: None, data: chunk }).is_err() {
                return;
            }
        }
    }

    fn send(&mut self, frame: WriterFrame<'_>) -> Result<(), ()> {
        let sent = match frame {
            // The chunk goes from the body's buffer straight into the socket, after its header.
            WriterFrame::Write { position, data } => {
                WriterFrame::write_header(position, data.len()).and_then(|head| self.pipe.send_parts(&head, data))
            }
            frame => cos_ipc::encode_into(&frame, std::mem::take(&mut self.frame)).and_then(|bytes| {
                self.frame = bytes;
                self.pipe.send(&self.frame, Vec::new())
            }),
        };
        sent.map_err(|_| {
            self.failed.get_or_insert(CosError::Abort);
        })
    }

    /// The body is complete and its integrity checked: the service verifies the bytes against
    /// the hash and commits the entry. Waits for its verdict: the warnings the requesting page's
    /// console should show (SPEC §5: a scope without a user activation, a full origins list).
    pub fn finish(mut self) -> Result<WriteWarnings, LoaderError> {
        self.done = true;
        if let Some(error) = self.failed.clone() {
            let _ = self.send(WriterFrame::Abort);
            return Err(LoaderError::Service(error));
        }
        if self.send(WriterFrame::Close).is_err() {
            return Err(LoaderError::Service(CosError::Abort));
        }
        loop {
            let mut message = self.pipe.recv().map_err(|_| LoaderError::Service(CosError::Abort))?;
            match message.decode::<WriterEvent>() {
                Ok(WriterEvent::Closed(result)) => return result.map_err(LoaderError::Service),
                Ok(WriterEvent::Failed(_)) => continue, // the close answer repeats it
                Err(_) => return Err(LoaderError::Service(CosError::Unknown)),
            }
        }
    }

    /// Nothing is stored (SRI failed, the network failed, the requester went away).
    pub fn abort(mut self) {
        self.done = true;
        let _ = self.send(WriterFrame::Abort);
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.send(WriterFrame::Abort);
        }
    }
}
