//! `File` for a COS entry: immutable bytes read through the entry's data pipe.

use cos_common::CosError;
use cos_common::interface::{DATA_CHUNK_BYTES, ReaderEnd, ReaderFrame, ReaderRequest};
use cos_ipc::{Endpoint, IpcError, Received};
use parking_lot::Mutex;

/// An opened entry. Reads stream through a data pipe bound to this file; the bytes are never
/// copied into the renderer until asked for.
///
/// ```
/// use cos_common::CosError;
/// use cos_renderer::{CosHashDict, CosOptions, block_on};
/// # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
/// # let manager = &document.manager;
/// # let hash = CosHashDict::sha256(cos_test_support::callers::sha256_hex(b"0123456789"));
/// # block_on(async {
/// #     let create = CosOptions { create: true, ..CosOptions::default() };
/// #     let mut writer = manager.get_file_handle(&hash, &create).await?.create_writable(false).await?;
/// #     writer.write(b"0123456789")?;
/// #     writer.close()
/// # })?;
/// let file = block_on(async { manager.get_file_handle(&hash, &CosOptions::default()).await?.get_file().await })?;
/// assert_eq!(file.size(), 10);
/// // `file.slice(2, 6).arrayBuffer()`, and a read past the end, clamped to the file.
/// assert_eq!(file.read_range(2, 4)?, b"2345");
/// assert_eq!(file.read_range(8, 100)?, b"89");
/// // Streaming into the binding's own buffers (a `ReadableStream`), chunk by chunk.
/// let mut streamed = Vec::new();
/// assert_eq!(file.read_with(0, u64::MAX, |chunk| streamed.extend_from_slice(chunk))?, 10);
/// # Ok::<(), CosError>(())
/// ```
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
            match ReaderFrame::decode(&message.bytes, DATA_CHUNK_BYTES).map_err(|_| CosError::Unknown)? {
                ReaderFrame::Bulk(data) => {
                    received += data.len() as u64;
                    sink(data);
                }
                ReaderFrame::Message(ReaderEnd::End) => return Ok(received),
                ReaderFrame::Message(ReaderEnd::Failed(error)) => return Err(error),
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
            match pipe.recv_data_into::<ReaderEnd>(&mut out[filled..]) {
                Ok(Received::Bulk(len)) => filled += len,
                Ok(Received::Message(ReaderEnd::End)) if filled == expected => return Ok(out),
                // The blob was shorter than recorded.
                Ok(Received::Message(ReaderEnd::End)) => return Err(CosError::NotFound),
                Ok(Received::Message(ReaderEnd::Failed(error))) => return Err(error),
                // More than was asked for, or bytes a service never sends: a broken service.
                Err(error) if error.is_peer_misbehaviour() => return Err(CosError::Unknown),
                Err(error) => return Err(abort(error)),
            }
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
