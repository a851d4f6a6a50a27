//! `File` for a COS entry: immutable bytes read through the entry's data pipe, or held whole
//! when the service answered `getFile` with a small entry's verified bytes.

use std::ops::{Deref, DerefMut};

use cos_common::CosError;
use cos_common::interface::{DATA_CHUNK_BYTES, ReaderEnd, ReaderFrame, ReaderRequest, SHARED_READ_MIN_BYTES};
use cos_ipc::{Endpoint, IpcError, Mapping, Received, SealedFile};
use parking_lot::{Mutex, MutexGuard};

/// An opened entry. Reads stream through a data pipe bound to this file; the bytes are never
/// copied into the renderer until asked for. A small entry (at most
/// [`INLINE_READ_MAX_BYTES`](cos_common::interface::INLINE_READ_MAX_BYTES)) came whole with
/// `getFile`'s reply, verified by the service, and every read of it is answered from those bytes
/// without asking the service again.
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
    body: Body,
    /// Whether whole reads may ask for a sealed memory file (see [`File::read_whole`]).
    takes_files: bool,
}

/// Where a [`File`]'s bytes come from.
enum Body {
    /// The entry's data pipe.
    Pipe(Mutex<Endpoint>),
    /// The whole entry, as the `getFile` reply carried it.
    Inline(Box<[u8]>),
}

/// The bytes of a whole-file read ([`File::read_whole`]): the renderer's own buffer, or a
/// private mapping of the service's sealed, verified copy. Either way they are this renderer's
/// to change (a mapping is copy-on-write): writes never reach the service or another reader.
#[derive(Debug)]
pub enum FileBytes {
    /// Received through the data pipe.
    Owned(Vec<u8>),
    /// Mapped from a sealed memory file (no copy).
    Mapped(Mapping),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(bytes) => bytes,
            Self::Mapped(mapping) => mapping,
        }
    }
}

impl DerefMut for FileBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Owned(bytes) => bytes,
            Self::Mapped(mapping) => mapping,
        }
    }
}

impl File {
    pub(crate) fn new(name: String, size: u64, pipe: Endpoint, takes_files: bool) -> Self {
        Self { name, size, body: Body::Pipe(Mutex::new(pipe)), takes_files }
    }

    /// A file whose whole bytes came with the `getFile` reply.
    pub(crate) fn inline(name: String, bytes: Vec<u8>) -> Self {
        Self { name, size: bytes.len() as u64, body: Body::Inline(bytes.into_boxed_slice()), takes_files: false }
    }

    /// The data pipe, or the bytes of `[offset, offset + len)` clamped to the file.
    fn source(&self, offset: u64, len: u64) -> Result<&Mutex<Endpoint>, &[u8]> {
        match &self.body {
            Body::Pipe(pipe) => Ok(pipe),
            Body::Inline(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(bytes.len());
                Err(&bytes[start..end])
            }
        }
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
        let pipe = match self.source(offset, len) {
            Ok(pipe) => pipe.lock(),
            Err(bytes) => {
                sink(bytes);
                return Ok(bytes.len() as u64);
            }
        };
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
                // Never an answer to `Read`: a broken service.
                ReaderFrame::Message(ReaderEnd::Shared) => return Err(CosError::Unknown),
            }
        }
    }

    /// Reads a range into a new buffer (`slice(start, end).arrayBuffer()`). The data pipe
    /// delivers each chunk straight into the result: no intermediate copy.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CosError> {
        let pipe = match self.source(offset, len) {
            Ok(pipe) => pipe,
            Err(bytes) => return Ok(bytes.to_vec()),
        };
        let expected = usize::try_from(len.min(self.size.saturating_sub(offset))).map_err(|_| CosError::Unknown)?;
        // Zeroed pages from the allocator are mapped lazily; mapping them in one call up front
        // is cheaper than a page fault per 4 KiB during the transfer.
        let mut out = vec![0u8; expected];
        prefault(&mut out);
        let pipe = pipe.lock();
        let request =
            cos_ipc::encode(&ReaderRequest::Read { offset, len: expected as u64 }).map_err(|_| CosError::Unknown)?;
        pipe.send(&request, Vec::new()).map_err(abort)?;
        Self::receive_into(&pipe, out, 0)
    }

    /// Receives the rest of a stream into `out`, of which `filled` bytes have arrived.
    fn receive_into(pipe: &MutexGuard<'_, Endpoint>, mut out: Vec<u8>, mut filled: usize) -> Result<Vec<u8>, CosError> {
        let expected = out.len();
        loop {
            match pipe.recv_data_into::<ReaderEnd>(&mut out[filled..]) {
                Ok(Received::Bulk(len)) => filled += len,
                Ok(Received::Message(ReaderEnd::End)) if filled == expected => return Ok(out),
                // The blob was shorter than recorded.
                Ok(Received::Message(ReaderEnd::End)) => return Err(CosError::NotFound),
                Ok(Received::Message(ReaderEnd::Failed(error))) => return Err(error),
                // Only ever sent with a file, which `recv_data_into` refuses.
                Ok(Received::Message(ReaderEnd::Shared)) => return Err(CosError::Unknown),
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

    /// Reads the whole file (`arrayBuffer()`) without a copy when it can: a file of at least
    /// [`SHARED_READ_MIN_BYTES`] whose bytes the service holds verified in a sealed memory file
    /// arrives as that file's descriptor and is mapped privately ([`FileBytes::Mapped`], pages
    /// faulted in as they are touched); otherwise it is streamed as by
    /// [`read_all`](Self::read_all). A descriptor that is not sealed against changes or whose
    /// size is not the file's is refused, and the read fails (`UnknownError`).
    pub fn read_whole(&self) -> Result<FileBytes, CosError> {
        self.read_whole_with(false)
    }

    /// Like [`read_whole`](Self::read_whole), but a mapping has every page mapped before it is
    /// returned (`MAP_POPULATE`), as a buffer filled by a copy would.
    pub fn read_whole_populated(&self) -> Result<FileBytes, CosError> {
        self.read_whole_with(true)
    }

    fn read_whole_with(&self, populate: bool) -> Result<FileBytes, CosError> {
        let pipe = match self.source(0, self.size) {
            Ok(pipe) if self.takes_files && self.size >= SHARED_READ_MIN_BYTES => pipe.lock(),
            Ok(_) => return self.read_all().map(FileBytes::Owned),
            Err(bytes) => return Ok(FileBytes::Owned(bytes.to_vec())),
        };
        let expected = usize::try_from(self.size).map_err(|_| CosError::Unknown)?;
        let request = cos_ipc::encode(&ReaderRequest::ReadShared).map_err(|_| CosError::Unknown)?;
        pipe.send(&request, Vec::new()).map_err(abort)?;
        let (bytes, file) = pipe
            .recv_with_file()
            .map_err(|error| if error.is_peer_misbehaviour() { CosError::Unknown } else { abort(error) })?;
        let frame = ReaderFrame::decode(&bytes, DATA_CHUNK_BYTES).map_err(|_| CosError::Unknown)?;
        match (frame, file) {
            (ReaderFrame::Message(ReaderEnd::Shared), Some(file)) => {
                let sealed = SealedFile::from_received(file, self.size).map_err(|reason| {
                    tracing::warn!(reason, "refused the service's descriptor for a whole read");
                    CosError::Unknown
                })?;
                let mapping = sealed.map(populate).map_err(|error| {
                    tracing::warn!(%error, "could not map a file's sealed copy");
                    CosError::Unknown
                })?;
                Ok(FileBytes::Mapped(mapping))
            }
            // A file with anything else, or the answer without its file: a broken service.
            (_, Some(_)) | (ReaderFrame::Message(ReaderEnd::Shared), None) => Err(CosError::Unknown),
            // Streamed instead: the first chunk is here, the rest lands in place.
            (ReaderFrame::Bulk(data), None) => {
                if data.len() > expected {
                    return Err(CosError::Unknown);
                }
                let mut out = vec![0u8; expected];
                prefault(&mut out);
                out[..data.len()].copy_from_slice(data);
                let filled = data.len();
                Self::receive_into(&pipe, out, filled).map(FileBytes::Owned)
            }
            (ReaderFrame::Message(ReaderEnd::End), None) => Err(CosError::NotFound),
            (ReaderFrame::Message(ReaderEnd::Failed(error)), None) => Err(error),
        }
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

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use super::*;

    const SIZE: usize = 100_000;

    /// A `File` whose service end answers its one request with `answer`'s frame and file.
    fn read_answered_with(answer: impl FnOnce() -> Option<OwnedFd> + Send + 'static) -> Result<FileBytes, CosError> {
        let (renderer_end, service_end) = Endpoint::pair().unwrap();
        let service = std::thread::spawn(move || {
            let mut request = service_end.recv().unwrap();
            assert_eq!(request.decode::<ReaderRequest>().unwrap(), ReaderRequest::ReadShared);
            let frame = ReaderFrame::Message(ReaderEnd::Shared).encode().unwrap();
            match answer() {
                Some(file) => service_end.send_file(&frame, file).unwrap(),
                None => service_end.send(&frame, vec![]).unwrap(),
            }
        });
        let file = File::new("name".into(), SIZE as u64, renderer_end, true);
        let result = file.read_whole();
        service.join().unwrap();
        result
    }

    fn bytes() -> Vec<u8> {
        (0..SIZE).map(|i| (i * 7) as u8).collect()
    }

    #[test]
    fn a_file_that_came_inline_answers_every_read_from_its_bytes() {
        let file = File::inline("name".into(), b"0123456789".to_vec());
        assert_eq!(file.size(), 10);
        assert_eq!(&file.read_whole().unwrap()[..], b"0123456789");
        assert_eq!(file.read_range(2, 4).unwrap(), b"2345");
        assert_eq!(file.read_range(8, 100).unwrap(), b"89");
        assert_eq!(file.read_range(11, 1).unwrap(), b"");
        let mut streamed = Vec::new();
        assert_eq!(file.read_with(7, u64::MAX, |chunk| streamed.extend_from_slice(chunk)).unwrap(), 3);
        assert_eq!(streamed, b"789");
    }

    #[test]
    fn a_sealed_descriptor_of_the_files_size_is_mapped() {
        let result =
            read_answered_with(|| Some(cos_ipc::SealedFile::from_bytes(&bytes()).unwrap().try_clone_fd().unwrap()));
        let mut mapped = result.unwrap();
        assert!(matches!(mapped, FileBytes::Mapped(_)));
        assert!(mapped[..] == bytes()[..]);
        mapped[0] ^= 1; // the page is its own (copy-on-write)
    }

    #[test]
    fn a_descriptor_without_seals_or_of_the_wrong_size_is_refused() {
        // A memory file of the right size and bytes, never sealed: its sender could still change it.
        let unsealed = || {
            // SAFETY: a valid C string and flags; the new descriptor is checked and then owned here.
            let fd = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: `fd` was just created and nothing else owns it.
            let file = std::fs::File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            std::io::Write::write_all(&mut &file, &bytes()).unwrap();
            Some(OwnedFd::from(file))
        };

        assert_eq!(read_answered_with(unsealed).unwrap_err(), CosError::Unknown);
        let short = || Some(cos_ipc::SealedFile::from_bytes(&bytes()[1..]).unwrap().try_clone_fd().unwrap());
        assert_eq!(read_answered_with(short).unwrap_err(), CosError::Unknown);
        let long = || {
            let mut longer = bytes();
            longer.push(0);
            Some(cos_ipc::SealedFile::from_bytes(&longer).unwrap().try_clone_fd().unwrap())
        };
        assert_eq!(read_answered_with(long).unwrap_err(), CosError::Unknown);
        assert_eq!(read_answered_with(|| None).unwrap_err(), CosError::Unknown, "the answer without its file");
    }
}
