//! `File` for a COS entry: immutable bytes read through the entry's data pipe.

use cos_common::CosError;
use cos_common::interface::{ReaderFrame, ReaderRequest};
use cos_ipc::{Endpoint, IpcError};
use parking_lot::Mutex;

/// An opened entry. Reads stream through a data pipe bound to this file; the bytes are never
/// copied into the renderer until asked for.
pub struct File {
    name: String,
    size: u64,
    pipe: Mutex<Endpoint>,
}

impl File {
    pub(crate) fn new(name: String, size: u64, pipe: Endpoint) -> Self {
        Self { name, size, pipe: Mutex::new(pipe) }
    }

    /// `name`: the hash's hex value.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `size`.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams `len` bytes from `offset` (clamped to the file) into `sink`, chunk by chunk.
    /// Blocks while the data flows.
    pub fn read_with(&self, offset: u64, len: u64, mut sink: impl FnMut(&[u8])) -> Result<u64, CosError> {
        let pipe = self.pipe.lock();
        let request = cos_ipc::encode(&ReaderRequest::Read { offset, len }).map_err(|_| CosError::Unknown)?;
        pipe.send(&request, Vec::new()).map_err(abort)?;
        let mut received = 0u64;
        loop {
            let message = pipe.recv().map_err(abort)?;
            match ReaderFrame::decode(&message.bytes).map_err(|_| CosError::Unknown)? {
                ReaderFrame::Data(data) => {
                    received += data.len() as u64;
                    sink(data);
                }
                ReaderFrame::End => return Ok(received),
                ReaderFrame::Failed(error) => return Err(error),
            }
        }
    }

    /// Reads a range into a new buffer (`slice(start, end).arrayBuffer()`).
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CosError> {
        let expected = len.min(self.size.saturating_sub(offset));
        let mut out = Vec::with_capacity(usize::try_from(expected).map_err(|_| CosError::Unknown)?);
        self.read_with(offset, len, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// Reads the whole file (`arrayBuffer()`).
    pub fn read_all(&self) -> Result<Vec<u8>, CosError> {
        self.read_range(0, self.size)
    }
}

/// The service went away mid-read (SPEC §8: AbortError; the next call reconnects).
fn abort(error: IpcError) -> CosError {
    tracing::debug!(%error, "read data pipe failed");
    CosError::Abort
}
