//! A COS entry answering a fetch: its size, and its bytes streamed from the storage service's
//! read data pipe chunk by chunk (never held whole), or, for a small entry, the verified bytes
//! the service's `getFile` reply carried.

use cos_common::CosError;
use cos_common::interface::{DATA_CHUNK_BYTES, ReaderEnd, ReaderFrame, ReaderRequest};
use cos_ipc::Endpoint;

use super::{HeldHandle, LoaderError};

/// The body of a lookup hit. Dropping it (read or not) releases the read and its handle.
/// Example: the [`loader`](crate::loader) module's.
pub struct CosBody {
    size: u64,
    source: Source,
    _handle: HeldHandle,
}

/// Where a body's bytes come from.
enum Source {
    /// The read data pipe.
    Pipe(Endpoint),
    /// The whole entry, hashed by the service just before it answered.
    Inline(Vec<u8>),
}

impl std::fmt::Debug for CosBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosBody").field("size", &self.size).finish_non_exhaustive()
    }
}

impl CosBody {
    pub(super) fn new(size: u64, pipe: Endpoint, handle: HeldHandle) -> Self {
        Self { size, source: Source::Pipe(pipe), _handle: handle }
    }

    pub(super) fn inline(bytes: Vec<u8>, handle: HeldHandle) -> Self {
        Self { size: bytes.len() as u64, source: Source::Inline(bytes), _handle: handle }
    }

    /// The entry's size (the response's `Content-Length`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams the whole entry into `sink`, a chunk (at most 128 KiB) at a time as the service
    /// sends it; `sink` returns `false` to stop (its consumer went away). The service checks
    /// the bytes against the hash as they go (SPEC §8): a damaged blob ends in an error after
    /// the bytes it sent, so the embedder must treat the body as failed, not complete. (A small
    /// entry arrived whole and already checked with the lookup: it is handed over at once.)
    pub fn stream(self, mut sink: impl FnMut(&[u8]) -> bool) -> Result<(), LoaderError> {
        let pipe = match &self.source {
            Source::Pipe(pipe) => pipe,
            Source::Inline(bytes) => return if sink(bytes) { Ok(()) } else { Err(LoaderError::ConsumerGone) },
        };
        let gone = |_| LoaderError::Service(CosError::Abort);
        let request = cos_ipc::encode(&ReaderRequest::Read { offset: 0, len: self.size })
            .map_err(|_| LoaderError::Service(CosError::Unknown))?;
        pipe.send(&request, Vec::new()).map_err(gone)?;
        let mut received = 0u64;
        loop {
            let message = pipe.recv().map_err(gone)?;
            match ReaderFrame::decode(&message.bytes, DATA_CHUNK_BYTES)
                .map_err(|_| LoaderError::Service(CosError::Unknown))?
            {
                ReaderFrame::Bulk(data) => {
                    received += data.len() as u64;
                    if received > self.size {
                        return Err(LoaderError::Service(CosError::Unknown));
                    }
                    if !sink(data) {
                        return Err(LoaderError::ConsumerGone);
                    }
                }
                ReaderFrame::Message(ReaderEnd::End) if received == self.size => return Ok(()),
                ReaderFrame::Message(ReaderEnd::End) => return Err(LoaderError::Service(CosError::NotFound)),
                ReaderFrame::Message(ReaderEnd::Failed(error)) => return Err(LoaderError::Service(error)),
                // Never an answer to `Read`: a broken service.
                ReaderFrame::Message(ReaderEnd::Shared) => return Err(LoaderError::Service(CosError::Unknown)),
            }
        }
    }
}
