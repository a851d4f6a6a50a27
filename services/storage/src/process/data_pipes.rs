//! The data pipes: one thread per open writer or read, bound to that writer or read, carrying
//! the renderer's bulk bytes directly (the broker is not on this path).

use std::io::IoSliceMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cos_common::interface::{
    DATA_CHUNK_BYTES, DATA_PIPE_SEND_BUFFER, ReaderEnd, ReaderFrame, ReaderRequest, RendererId, ServiceToBroker,
    WriterEvent, WriterFrame,
};
use cos_ipc::{BULK_PREFIX, Endpoint, IpcError, MAX_MESSAGE_BYTES, Pipe};

use super::renderer_session::BrokerConnection;
use crate::service::{FileReader, SharedRead, Streamed, WritableFile};

/// Releases one of a session's data-pipe slots when the pipe's thread ends.
pub(super) struct PipeSlot(Arc<AtomicUsize>);

impl PipeSlot {
    /// Holds a slot already counted in `open_pipes`.
    pub(super) fn new(open_pipes: Arc<AtomicUsize>) -> Self {
        Self(open_pipes)
    }
}

impl Drop for PipeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells the browser that a renderer misbehaved on a data pipe (the service cannot terminate
/// renderers itself; the broker reports the bad message). The report goes over that renderer's
/// own broker connection, so it can name no other renderer.
pub(super) struct DataPipeReporter {
    renderer: RendererId,
    to_broker: BrokerConnection,
}

impl DataPipeReporter {
    /// Reports on `to_broker`, the connection of `renderer`.
    pub(super) fn new(renderer: RendererId, to_broker: BrokerConnection) -> Self {
        Self { renderer, to_broker }
    }

    fn send(&self, reason: &str) {
        tracing::error!(renderer = self.renderer.0, reason, "bad message on a data pipe");
        let _ = self.to_broker.send(ServiceToBroker::BadMessage { reason: reason.into() });
    }
}

pub(super) fn serve_write(mut writer: WritableFile, endpoint: Endpoint, report: DataPipeReporter, slot: PipeSlot) {
    lower_this_threads_priority();
    let events: Pipe<WriterEvent, ()> = Pipe::new(endpoint);
    // Declared after the pipe, so it is released before the renderer can see the pipe end.
    let slot = slot;
    let mut failed = false;
    // Each frame is received straight into a buffer the writer can lend to its I/O thread once
    // it hashed the chunk in it (no copy on the service's side but the socket's), then take back.
    let mut inbox = vec![0u8; MAX_MESSAGE_BYTES];
    loop {
        let len = match events.endpoint().recv_vectored(&mut [IoSliceMut::new(&mut inbox)]) {
            Ok((len, attachments)) if attachments.is_empty() => len,
            // No write frame carries endpoints (they are closed).
            Ok(_) => return report.send("malformed write frame"),
            Err(IpcError::Disconnected) => return, // dropping the writer aborts it
            Err(error) if error.is_peer_misbehaviour() => return report.send(&error.to_string()),
            Err(error) => {
                tracing::warn!(%error, "write data pipe failed");
                return;
            }
        };
        let Ok(frame) = cos_ipc::decode_borrowed::<WriterFrame<'_>>(&inbox[..len]) else {
            return report.send("malformed write frame");
        };
        let result = match frame {
            // The chunk is the frame's last field, so it ends the received bytes.
            WriterFrame::Write { position, data } if inbox[len - data.len()..len].as_ptr() == data.as_ptr() => {
                let range = len - data.len()..len;
                let lent = Arc::new(std::mem::take(&mut inbox));
                let result = writer.write_lent(position, &lent, range);
                inbox = match Arc::try_unwrap(lent) {
                    Ok(inbox) => inbox,
                    // Lent to the I/O thread: take one it gave back, or a new one.
                    Err(_) => writer.spare_buffer().unwrap_or_else(|| vec![0u8; MAX_MESSAGE_BYTES]),
                };
                result
            }
            WriterFrame::Write { position: Some(position), data } => writer.write_at(position, data),
            WriterFrame::Write { position: None, data } => writer.write(data),
            WriterFrame::Seek(position) => writer.seek(position),
            WriterFrame::Truncate(size) => writer.truncate(size),
            WriterFrame::Close => {
                let result = writer.close().map(|outcome| outcome.warnings);
                // Free the slot first: the renderer may open the next stream as soon as it hears.
                drop(slot);
                let _ = events.send(WriterEvent::Closed(result));
                return;
            }
            WriterFrame::Abort => return writer.abort(),
        };
        if let Err(error) = result
            && !failed
        {
            // Reported once, as soon as it happens; the writer keeps answering with it.
            failed = true;
            if events.send(WriterEvent::Failed(error)).is_err() {
                return;
            }
        }
    }
}

pub(super) fn serve_read(file: FileReader, endpoint: Endpoint, report: DataPipeReporter, slot: PipeSlot) {
    lower_this_threads_priority();
    // Released before the pipe closes (locals drop in reverse order).
    let _slot = slot;
    if let Err(error) = endpoint.set_send_buffer(DATA_PIPE_SEND_BUFFER) {
        tracing::debug!(%error, "could not deepen a read pipe's send queue");
    }
    loop {
        let request: ReaderRequest = match endpoint.recv() {
            Ok(mut message) => match message.decode() {
                Ok(request) => request,
                Err(_) => return report.send("malformed read request"),
            },
            Err(error) if error.is_peer_misbehaviour() => return report.send(&error.to_string()),
            Err(_) => return,
        };
        let send = |frame: &[u8]| endpoint.send(frame, vec![]).is_ok();
        // Data frames go out as they are read; the end frame only once the bytes are verified.
        let outcome = match request {
            ReaderRequest::Read { offset, len } => file.stream(offset, len, BULK_PREFIX, DATA_CHUNK_BYTES, send),
            ReaderRequest::ReadShared => match file.read_shared(BULK_PREFIX, DATA_CHUNK_BYTES, send) {
                Ok(SharedRead::File(copy)) => match copy.try_clone_fd() {
                    Ok(fd) => {
                        let Ok(frame) = ReaderFrame::Message(ReaderEnd::Shared).encode() else { return };
                        if endpoint.send_file(&frame, fd).is_err() {
                            return;
                        }
                        continue;
                    }
                    // Out of descriptors: the bytes still go, as a stream.
                    Err(_) => file.stream(0, u64::MAX, BULK_PREFIX, DATA_CHUNK_BYTES, send),
                },
                Ok(SharedRead::Streamed(streamed)) => Ok(streamed),
                Err(error) => Err(error),
            },
        };
        let outcome = match outcome {
            Ok(Streamed::Complete) => Ok(()),
            Ok(Streamed::Stopped) => return,
            Err(error) => Err(error),
        };
        let end = match outcome {
            Ok(()) => ReaderEnd::End,
            Err(error) => ReaderEnd::Failed(error),
        };
        let Ok(last) = ReaderFrame::Message(end).encode() else { return };
        if endpoint.send(&last, vec![]).is_err() {
            return;
        }
    }
}

/// Bulk transfers (a data pipe's reads, writes and hashing, and the threads they start) run at a
/// lower priority than request handling, so that a renderer streaming gigabytes — or abusing its
/// limits — cannot stretch other renderers' lookups on a machine with few cores.
pub(super) fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value is per thread, and `PRIO_PROCESS` with `who = 0` names the
        // calling thread: the only form the seccomp policy allows, so no thread of the service
        // can touch another process's priority.
        if let Err(error) = rustix::process::setpriority_process(None, 10) {
            tracing::debug!(%error, "could not lower a data pipe's priority");
        }
    }
}
