//! `File` for a COS entry: immutable bytes read through the entry's data pipe.

use std::io::IoSliceMut;

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

    /// Reads a range into a new buffer (`slice(start, end).arrayBuffer()`). The data pipe
    /// delivers each chunk straight into the result: no intermediate copy.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CosError> {
        let expected = usize::try_from(len.min(self.size.saturating_sub(offset))).map_err(|_| CosError::Unknown)?;
        // Zeroed pages from the allocator are mapped lazily; mapping them in one call up front
        // is cheaper than a page fault per 4 KiB during the transfer.
        let mut out = vec![0u8; expected];
        prefault(&mut out);
        let pipe = self.pipe.lock();
        let request =
            cos_ipc::encode(&ReaderRequest::Read { offset, len: expected as u64 }).map_err(|_| CosError::Unknown)?;
        pipe.send(&request, Vec::new()).map_err(abort)?;
        let mut filled = 0;
        loop {
            let mut tag = [0u8; 1];
            // Room for the end or error frame's body once `out` is full.
            let mut tail = [0u8; 256];
            let (len, _) = pipe
                .recv_vectored(&mut [
                    IoSliceMut::new(&mut tag),
                    IoSliceMut::new(&mut out[filled..]),
                    IoSliceMut::new(&mut tail),
                ])
                .map_err(abort)?;
            let body = len.saturating_sub(1);
            let remaining = expected - filled;
            if tag[0] == ReaderFrame::DATA_TAG {
                if body > remaining {
                    return Err(CosError::Unknown); // more than was asked for: a broken service
                }
                filled += body;
                continue;
            }
            // Not data: reassemble the frame from wherever its body landed, and decode it.
            let mut frame = Vec::with_capacity(len);
            frame.push(tag[0]);
            let in_out = body.min(remaining);
            frame.extend_from_slice(&out[filled..filled + in_out]);
            frame.extend_from_slice(&tail[..body - in_out]);
            return match ReaderFrame::decode(&frame).map_err(|_| CosError::Unknown)? {
                ReaderFrame::End if filled == expected => Ok(out),
                ReaderFrame::End => Err(CosError::NotFound), // the blob was shorter than recorded
                ReaderFrame::Failed(error) => Err(error),
                ReaderFrame::Data(_) => Err(CosError::Unknown),
            };
        }
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

/// Asks the kernel to map a large buffer's pages now (`MADV_POPULATE_WRITE`, Linux 5.14+): one
/// call instead of a fault per page. Purely an optimisation; failures are ignored.
fn prefault(buffer: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        const PAGE: usize = 4096;
        if buffer.len() < (1 << 20) {
            return;
        }
        let start = buffer.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let end = (start + buffer.len()) & !(PAGE - 1);
        if end > aligned {
            // SAFETY: [aligned, end) lies inside `buffer`, which we own and which outlives the
            // call; MADV_POPULATE_WRITE only maps pages (zero-filled, as they already read) and
            // never changes their contents.
            unsafe { libc::madvise(aligned as *mut libc::c_void, end - aligned, MADV_POPULATE_WRITE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}
