//! `FileSystemWritableFileStream` over a write data pipe.

use std::time::Duration;

use cos_common::CosError;
use cos_common::interface::{DATA_CHUNK_BYTES, DATA_PIPE_SEND_BUFFER, WriteWarnings, WriterEvent, WriterFrame};
use cos_ipc::{Endpoint, IpcError};

/// A writer for one create handle. Nothing is visible to anyone until [`close`](Self::close)
/// verified the bytes; dropping the stream aborts it.
///
/// ```
/// use cos_common::CosError;
/// use cos_renderer::{CosHashDict, CosOptions, block_on};
/// # let document = cos_test_support::fixture::DocumentFixture::new("https://app.example");
/// # let manager = &document.manager;
/// # let hash = CosHashDict::sha256(cos_test_support::callers::sha256_hex(b"hello"));
/// let create = CosOptions { create: true, ..CosOptions::default() };
/// let handle = block_on(manager.get_file_handle(&hash, &create))?;
///
/// // Seeks and truncates are fine: the service hashes what the file holds at close.
/// let mut writer = block_on(handle.create_writable(false))?;
/// writer.write(b"hellXXXX")?;
/// writer.truncate(4)?;
/// writer.write_at(4, b"o")?;
/// let warnings = writer.close()?; // printed to the page's console by the binding (SPEC §5)
/// assert!(warnings.is_empty());
///
/// // Bytes that do not hash to the handle's value are refused, and nothing becomes visible.
/// let mut writer = block_on(handle.create_writable(false))?;
/// writer.write(b"jello")?;
/// assert_eq!(writer.close().unwrap_err().name(), "DataError");
/// # Ok::<(), CosError>(())
/// ```
pub struct FileSystemWritableFileStream {
    pipe: Endpoint,
    errored: Option<CosError>,
    frame: Vec<u8>,
}

impl FileSystemWritableFileStream {
    pub(crate) fn new(pipe: Endpoint) -> Self {
        if let Err(error) = pipe.set_send_buffer(DATA_PIPE_SEND_BUFFER) {
            tracing::debug!(%error, "could not deepen a write pipe's send queue");
        }
        Self { pipe, errored: None, frame: Vec::new() }
    }

    /// Picks up a failure the service reported asynchronously.
    fn check(&mut self) -> Result<(), CosError> {
        if let Some(error) = &self.errored {
            return Err(error.clone());
        }
        match self.pipe.recv_timeout(Duration::ZERO) {
            Ok(mut message) => {
                let error = match message.decode::<WriterEvent>() {
                    Ok(WriterEvent::Failed(error)) => error,
                    _ => CosError::Unknown,
                };
                self.errored = Some(error.clone());
                Err(error)
            }
            Err(IpcError::Timeout) => Ok(()),
            Err(error) => Err(self.lost(error)),
        }
    }

    fn lost(&mut self, error: IpcError) -> CosError {
        tracing::debug!(%error, "write data pipe failed");
        self.errored = Some(CosError::Abort);
        CosError::Abort
    }

    fn send(&mut self, frame: WriterFrame<'_>) -> Result<(), CosError> {
        let sent = match frame {
            // The chunk goes from the caller's buffer straight into the socket, after its header.
            WriterFrame::Write { position, data } => {
                WriterFrame::write_header(position, data.len()).and_then(|head| self.pipe.send_parts(&head, data))
            }
            // One buffer for every other frame.
            frame => cos_ipc::encode_into(&frame, std::mem::take(&mut self.frame)).and_then(|bytes| {
                self.frame = bytes;
                self.pipe.send(&self.frame, Vec::new())
            }),
        };
        sent.map_err(|error| self.lost(error))
    }

    /// `write(data)`: at the cursor.
    pub fn write(&mut self, data: &[u8]) -> Result<(), CosError> {
        self.check()?;
        for chunk in data.chunks(DATA_CHUNK_BYTES) {
            self.send(WriterFrame::Write { position: None, data: chunk })?;
        }
        if data.is_empty() {
            self.send(WriterFrame::Write { position: None, data })?;
        }
        Ok(())
    }

    /// `write({type: "write", position, data})`.
    pub fn write_at(&mut self, position: u64, data: &[u8]) -> Result<(), CosError> {
        self.check()?;
        let mut chunks = data.chunks(DATA_CHUNK_BYTES);
        let first = chunks.next().unwrap_or(&[]);
        self.send(WriterFrame::Write { position: Some(position), data: first })?;
        for chunk in chunks {
            self.send(WriterFrame::Write { position: None, data: chunk })?;
        }
        Ok(())
    }

    /// `seek(position)`.
    pub fn seek(&mut self, position: u64) -> Result<(), CosError> {
        self.check()?;
        self.send(WriterFrame::Seek(position))
    }

    /// `truncate(size)`.
    pub fn truncate(&mut self, size: u64) -> Result<(), CosError> {
        self.check()?;
        self.send(WriterFrame::Truncate(size))
    }

    /// `close()`: waits until the service verified and committed the bytes, or says why not. A
    /// success carries the warnings the DOM binding prints to the page's console (SPEC §5: a
    /// full origins list, a scope withheld for want of a user activation).
    pub fn close(mut self) -> Result<WriteWarnings, CosError> {
        if let Some(error) = &self.errored {
            return Err(error.clone());
        }
        self.send(WriterFrame::Close)?;
        loop {
            let mut message = self.pipe.recv().map_err(|error| self.lost(error))?;
            match message.decode::<WriterEvent>() {
                Ok(WriterEvent::Closed(result)) => return result,
                Ok(WriterEvent::Failed(_)) => continue, // the close answer repeats it
                Err(_) => return Err(CosError::Unknown),
            }
        }
    }

    /// `abort()`.
    pub fn abort(mut self) {
        let _ = self.send(WriterFrame::Abort);
    }

    /// Whether the stream has failed (every later call reports the error).
    pub fn error(&self) -> Option<&CosError> {
        self.errored.as_ref()
    }
}
