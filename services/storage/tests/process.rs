//! The storage service's request loop ([`cos_storage_service::process::serve`]) driven over the
//! in-process transport exactly as the browser drives it: `Configure`, wait for `Ready`, then
//! `BindRenderer` with one endpoint per renderer, over which the broker's `BrokerToService`
//! requests go and `ServiceToBroker` replies (with their data pipes) and bad-message reports come
//! back.
//!
//! Every receive is bounded (`WAIT`), so a hang fails the test instead of blocking CI; no test
//! asserts on timing.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cos_common::interface::{
    BrokerToService, BrowserToService, CallResult, CreateOptions, DATA_CHUNK_BYTES, FrameId, HandleCall, HandleId,
    HandleRequest, INLINE_READ_MAX_BYTES, InspectionItem, ReaderEnd, ReaderFrame, ReaderRequest, RendererToBroker,
    Reply, RequestId, ServiceToBroker, ServiceToBrowser, WriterEvent, WriterFrame,
};
use cos_common::{
    CallerContext, ContentHash, CosError, DataErrorKind, OffTheRecordProfileId, Origin, OriginsOption, Partition,
    QuotaScope,
};
use cos_ipc::{Endpoint, IpcError, Pipe};
use cos_storage_service::process::{MAX_BINDINGS_PER_RENDERER, MAX_DATA_PIPES_PER_RENDERER};
use cos_storage_service::{ServiceConfig, StorageService};
use cos_test_support::callers::{caller, hash_of, origin};
use cos_test_support::fixture::{ServiceThread, WAIT};

const GIB: u64 = 1 << 30;

type ConnectionPipe = Pipe<BrokerToService, ServiceToBroker>;

/// Deterministic, non-repeating-looking test content.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7).to_le_bytes()[0] ^ seed).collect()
}

/// Waits (bounded) for a thread to finish and returns its result.
fn join_bounded<T>(handle: JoinHandle<T>) -> T {
    let deadline = Instant::now() + WAIT;
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the thread did not finish within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.join().expect("the thread panicked")
}

/// The browser's side of one storage service: the service's request loop on a thread, with
/// generous limits.
fn service() -> ServiceThread {
    service_with_limits(20 * GIB, 100 * GIB)
}

/// The same with the given limits.
fn service_with_limits(per_origin_bytes: u64, total_bytes: u64) -> ServiceThread {
    ServiceThread::start_with(|config| {
        config.per_origin_bytes = per_origin_bytes;
        config.total_bytes = total_bytes;
    })
}

/// Binding a renderer connection, as `CosHost::bind` does, into this test's broker.
trait Bind {
    fn bind(&self, renderer: u64) -> Renderer;
}

impl Bind for ServiceThread {
    fn bind(&self, renderer: u64) -> Renderer {
        let pipe = ConnectionPipe::new(self.bind_renderer(renderer));
        Renderer { pipe, next_request: Cell::new(1), next_handle: Cell::new(1) }
    }
}

/// The broker's connection to the service for one renderer.
struct Renderer {
    pipe: ConnectionPipe,
    next_request: Cell<u64>,
    /// The broker numbers handles; the service takes the id it is given.
    next_handle: Cell<u64>,
}

impl Renderer {
    /// Sends one request and returns its reply, checking the request id (decoding checked the
    /// pipes).
    fn call(&self, make: impl FnOnce(RequestId) -> BrokerToService) -> CallResult {
        let request = RequestId(self.next_request.get());
        self.next_request.set(request.0 + 1);
        self.pipe.send(make(request)).unwrap();
        let reply = self.pipe.recv_timeout(WAIT).expect("no reply from the service");
        let ServiceToBroker::Reply(reply) = reply else { panic!("expected a reply, got {reply:?}") };
        assert_eq!(reply.request, request, "reply to the wrong request");
        reply.result
    }

    /// The next message on this connection, which must be a bad-message report; its reason.
    fn next_report(&self) -> String {
        match self.pipe.recv_timeout(WAIT) {
            Ok(ServiceToBroker::BadMessage { reason }) => reason,
            other => panic!("expected a bad-message report on this connection, got {other:?}"),
        }
    }

    fn get_file_handle(&self, caller: &CallerContext, hash: ContentHash, kind: HandleRequest) -> CallResult {
        let handle = HandleId(self.next_handle.get());
        self.next_handle.set(handle.0 + 1);
        let result =
            self.call(|request| BrokerToService::GetFileHandle { request, handle, caller: caller.clone(), hash, kind });
        if let CallResult::Handle { handle: issued, .. } = result {
            assert_eq!(issued, handle, "the service issues the id the broker chose");
        }
        result
    }

    fn create_handle(&self, caller: &CallerContext, hash: ContentHash) -> HandleId {
        match self.get_file_handle(caller, hash, HandleRequest::Create(CreateOptions::same_site())) {
            CallResult::Handle { handle, create: true } => handle,
            other => panic!("expected a create handle, got {other:?}"),
        }
    }

    fn read_handle(&self, caller: &CallerContext, hash: ContentHash) -> Result<HandleId, CosError> {
        match self.get_file_handle(caller, hash, HandleRequest::Read) {
            CallResult::Handle { handle, create: false } => Ok(handle),
            CallResult::Failed(error) => Err(error),
            other => panic!("expected a read handle, got {other:?}"),
        }
    }

    fn create_writable(&self, handle: HandleId) -> Result<Writer, CosError> {
        match self.call(|request| BrokerToService::Call(HandleCall::CreateWritable { request, handle })) {
            CallResult::Writable { pipe } => Ok(Writer { endpoint: pipe.into_endpoint() }),
            CallResult::Failed(error) => Err(error),
            other => panic!("unexpected answer to CreateWritable: {other:?}"),
        }
    }

    fn get_file(&self, handle: HandleId) -> Result<ReadPipe, CosError> {
        ReadPipe::from_reply(self.call(|request| BrokerToService::Call(HandleCall::GetFile { request, handle })))
    }

    fn release(&self, handle: HandleId) {
        self.pipe.send(BrokerToService::Call(HandleCall::ReleaseHandle { handle })).unwrap();
    }

    /// Stores `bytes` as `caller` (same-site), through a create handle and a write pipe.
    fn store(&self, caller: &CallerContext, bytes: &[u8]) {
        let handle = self.create_handle(caller, hash_of(bytes));
        let writer = self.create_writable(handle).unwrap();
        writer.write_all(bytes);
        assert_eq!(writer.close(), Ok(()));
    }

    /// Reads the whole entry as `caller`.
    fn read_entry(&self, caller: &CallerContext, hash: ContentHash) -> Result<Vec<u8>, CosError> {
        let reader = self.get_file(self.read_handle(caller, hash)?)?;
        reader.read(0, reader.size)
    }
}

/// The renderer's end of a write data pipe.
struct Writer {
    endpoint: Endpoint,
}

impl Writer {
    fn send(&self, frame: WriterFrame<'_>) {
        self.endpoint.send(&cos_ipc::encode(&frame).unwrap(), vec![]).unwrap();
    }

    /// Writes at the cursor in chunks of at most `DATA_CHUNK_BYTES`.
    fn write_all(&self, bytes: &[u8]) {
        for chunk in bytes.chunks(DATA_CHUNK_BYTES) {
            self.send(WriterFrame::Write { position: None, data: chunk });
        }
    }

    fn next_event(&self) -> WriterEvent {
        let mut message = self.endpoint.recv_timeout(WAIT).expect("no event on the write pipe");
        message.decode().expect("undecodable writer event")
    }

    /// Sends `Close` and returns the `Closed` result (any other event fails the test).
    fn close(&self) -> Result<(), CosError> {
        self.send(WriterFrame::Close);
        match self.next_event() {
            WriterEvent::Closed(result) => result.map(drop),
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    /// Asserts that the service has closed its end of the pipe.
    fn assert_closed_by_service(&self) {
        match self.endpoint.recv_timeout(WAIT) {
            Err(IpcError::Disconnected) => {}
            other => panic!("expected the write pipe to be closed, got {other:?}"),
        }
    }
}

/// The renderer's end of a read data pipe, or the bytes of a small entry the `getFile` reply
/// carried instead (`inline`; then `endpoint` is a spare pipe nothing answers on).
struct ReadPipe {
    size: u64,
    endpoint: Endpoint,
    inline: Option<Vec<u8>>,
}

impl ReadPipe {
    fn from_reply(result: CallResult) -> Result<Self, CosError> {
        match result {
            CallResult::File { size, pipe } => Ok(Self { size, endpoint: pipe.into_endpoint(), inline: None }),
            CallResult::InlineFile { bytes } => {
                let (endpoint, _) = Endpoint::pair_in_process();
                Ok(Self { size: bytes.len() as u64, endpoint, inline: Some(bytes.into_vec()) })
            }
            CallResult::Failed(error) => Err(error),
            other => panic!("unexpected answer to GetFile: {other:?}"),
        }
    }

    fn request(&self, offset: u64, len: u64) {
        assert!(self.inline.is_none(), "a streamed read of an entry that came inline");
        let bytes = cos_ipc::encode(&ReaderRequest::Read { offset, len }).unwrap();
        self.endpoint.send(&bytes, vec![]).unwrap();
    }

    /// Collects `Data` frames until `End` (or `Failed`).
    fn collect(&self) -> Result<Vec<u8>, CosError> {
        let mut out = Vec::new();
        loop {
            let message = self.endpoint.recv_timeout(WAIT).expect("no frame on the read pipe");
            assert!(message.attachments.is_empty());
            match ReaderFrame::decode(&message.bytes, DATA_CHUNK_BYTES).expect("malformed reader frame") {
                ReaderFrame::Bulk(data) => {
                    assert!(!data.is_empty() && data.len() <= DATA_CHUNK_BYTES, "{} bytes in one frame", data.len());
                    out.extend_from_slice(data);
                }
                ReaderFrame::Message(ReaderEnd::End) => return Ok(out),
                ReaderFrame::Message(ReaderEnd::Failed(error)) => return Err(error),
                ReaderFrame::Message(ReaderEnd::Shared) => panic!("a file frame without its file"),
            }
        }
    }

    /// Asks for the whole entry by descriptor: the sealed file's descriptor, or the streamed bytes.
    fn read_shared(&self) -> Result<Result<OwnedFd, Vec<u8>>, CosError> {
        self.endpoint.send(&cos_ipc::encode(&ReaderRequest::ReadShared).unwrap(), vec![]).unwrap();
        let (bytes, file) = self.endpoint.recv_with_file().expect("no frame on the read pipe");
        match (ReaderFrame::decode(&bytes, DATA_CHUNK_BYTES).expect("malformed reader frame"), file) {
            (ReaderFrame::Message(ReaderEnd::Shared), Some(file)) => Ok(Ok(file)),
            (ReaderFrame::Bulk(first), None) => {
                let mut out = first.to_vec();
                out.extend(self.collect()?);
                Ok(Err(out))
            }
            (ReaderFrame::Message(ReaderEnd::Failed(error)), None) => Err(error),
            other => panic!("unexpected answer to ReadShared: {other:?}"),
        }
    }

    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, CosError> {
        if let Some(bytes) = &self.inline {
            let start = (offset as usize).min(bytes.len());
            return Ok(bytes[start..start.saturating_add(len as usize).min(bytes.len())].to_vec());
        }
        self.request(offset, len);
        self.collect()
    }
}

#[test]
fn full_round_trip_write_overwrite_close_then_ranged_and_whole_reads() {
    let browser = service();
    let renderer = browser.bind(1);
    let writer_origin = caller("https://a.example");
    // Three chunks: two full ones and a short tail, so a read crosses chunk boundaries.
    let data = content(2 * DATA_CHUNK_BYTES + 1234, 0x5a);
    let hash = hash_of(&data);

    let handle = renderer.create_handle(&writer_origin, hash);
    let writer = renderer.create_writable(handle).unwrap();
    // Write garbage where part of the data goes, then the data at the cursor, then overwrite the
    // garbage with the right bytes at an explicit position.
    let garbage = vec![0xee; 5000];
    writer.send(WriterFrame::Write { position: None, data: &garbage });
    writer.send(WriterFrame::Write { position: None, data: &data[5000..DATA_CHUNK_BYTES] });
    for chunk in data[DATA_CHUNK_BYTES..].chunks(DATA_CHUNK_BYTES) {
        writer.send(WriterFrame::Write { position: None, data: chunk });
    }
    writer.send(WriterFrame::Write { position: Some(0), data: &data[..5000] });
    assert_eq!(writer.close(), Ok(()));
    writer.assert_closed_by_service();

    // A same-site origin reads it through another handle.
    let reader_origin = caller("https://www.a.example");
    let read = renderer.read_handle(&reader_origin, hash).unwrap();
    assert_ne!(read, handle);
    let reader = renderer.get_file(read).unwrap();
    assert_eq!(reader.size, data.len() as u64);

    // A middle range spanning a chunk boundary, then the whole file, on the same pipe.
    let (start, end) = (DATA_CHUNK_BYTES - 777, DATA_CHUNK_BYTES + 4321);
    assert_eq!(reader.read(start as u64, (end - start) as u64).unwrap(), &data[start..end]);
    assert_eq!(reader.read(0, reader.size).unwrap(), data);
    // Past the end is clamped: a range running off the end, then an empty range.
    assert_eq!(reader.read(reader.size - 10, 1000).unwrap(), &data[data.len() - 10..]);
    assert_eq!(reader.read(reader.size + 5, 10).unwrap(), b"");

    // The create handle became readable with its own verified write.
    let own = renderer.get_file(handle).unwrap();
    assert_eq!(own.read(0, own.size).unwrap(), data);
}

/// Past its first 2 MiB a writer lends each received chunk's buffer to its I/O thread and
/// reuses only the buffers the thread gave back: were a buffer reused while still queued, the
/// file would hold later chunks where the hash saw earlier ones, and an entry whose bytes do not
/// hash to its name would be installed.
#[test]
fn chunks_lent_to_the_io_thread_reach_the_blob_as_they_were_hashed() {
    let browser = service();
    let renderer = browser.bind(1);
    let origin = caller("https://a.example");
    // Every chunk different, so a chunk written in another's place changes the file.
    let data: Vec<u8> = (0..96u8).flat_map(|seed| content(DATA_CHUNK_BYTES, seed)).collect();
    let hash = hash_of(&data);
    let writer = renderer.create_writable(renderer.create_handle(&origin, hash)).unwrap();
    writer.write_all(&data);
    assert_eq!(writer.close(), Ok(()));
    let on_disk = std::fs::read(cos_test_support::storage::blob_path(browser.profile_dir(), &hash)).unwrap();
    assert!(on_disk == data, "the blob holds other bytes than were hashed");
    assert!(renderer.read_entry(&origin, hash).unwrap() == data);
}

#[test]
fn mismatching_write_closes_with_data_error_and_stores_nothing() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let expected = content(10_000, 1);
    let hash = hash_of(&expected);

    let handle = renderer.create_handle(&who, hash);
    let writer = renderer.create_writable(handle).unwrap();
    let mut wrong = expected.clone();
    wrong[9_999] ^= 1;
    writer.write_all(&wrong);
    assert_eq!(writer.close(), Err(CosError::Data(DataErrorKind::HashMismatch)));
    writer.assert_closed_by_service();

    // Closing with nothing written is the other DataError.
    let empty = renderer.create_writable(handle).unwrap();
    assert_eq!(empty.close(), Err(CosError::Data(DataErrorKind::NothingWritten)));

    // Nothing was stored: reads are NotFound, and the create handle stays unreadable.
    assert_eq!(renderer.read_handle(&who, hash), Err(CosError::NotFound));
    assert_eq!(renderer.read_handle(&caller("https://www.a.example"), hash), Err(CosError::NotFound));
    assert_eq!(
        renderer.get_file(handle).err(),
        Some(CosError::NotAllowed(cos_common::NotAllowedKind::HandleNotReadable))
    );
}

#[test]
fn malformed_write_frames_are_reported_on_the_culprits_own_connection() {
    let browser = service();
    let innocent = browser.bind(3);
    let culprit = browser.bind(7);
    let who = caller("https://a.example");
    let hash = hash_of(b"never written");

    // An unknown tag byte.
    let writer = culprit.create_writable(culprit.create_handle(&who, hash)).unwrap();
    writer.endpoint.send(&[0x99], vec![]).unwrap();
    assert_eq!(culprit.next_report(), "malformed write frame");
    writer.assert_closed_by_service();

    // A write frame whose payload is one byte over DATA_CHUNK_BYTES (still a valid IPC message).
    let writer = culprit.create_writable(culprit.create_handle(&who, hash)).unwrap();
    let oversized = vec![0u8; DATA_CHUNK_BYTES + 1];
    writer.send(WriterFrame::Write { position: Some(0), data: &oversized });
    assert_eq!(culprit.next_report(), "malformed write frame");
    writer.assert_closed_by_service();
    // The other renderer's connection heard nothing (its next message answers its own request).
    assert!(matches!(innocent.pipe.recv_timeout(Duration::from_millis(100)), Err(IpcError::Timeout)));

    // The connection itself keeps working (terminating the renderer is the browser's call).
    let bytes = content(3000, 9);
    culprit.store(&who, &bytes);
    assert_eq!(culprit.read_entry(&who, hash_of(&bytes)).unwrap(), bytes);
    assert_eq!(innocent.read_entry(&who, hash_of(&bytes)).unwrap(), bytes);
    // And nothing else was reported: the next control message answers a ping.
    assert_eq!(browser.control_request(RequestId(99), BrowserToService::Ping { request: RequestId(99) }), Ok(()));
}

#[test]
fn write_errors_are_reported_at_once_and_only_once() {
    let browser = service_with_limits(1000, 100 * GIB);
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let writer = renderer.create_writable(renderer.create_handle(&who, hash_of(b"x"))).unwrap();

    // Far beyond what the origin may store: reported without waiting for Close.
    writer.send(WriterFrame::Write { position: Some(5000), data: b"x" });
    assert_eq!(writer.next_event(), WriterEvent::Failed(CosError::QuotaExceeded(QuotaScope::Origin)));

    // Later operations fail too, but are not reported again: the next event answers Close.
    writer.send(WriterFrame::Write { position: None, data: b"x" });
    writer.send(WriterFrame::Truncate(1));
    writer.send(WriterFrame::Seek(0));
    assert_eq!(writer.close(), Err(CosError::QuotaExceeded(QuotaScope::Origin)));
    writer.assert_closed_by_service();

    // A write within the limit on a fresh writer still works.
    renderer.store(&who, b"x");
}

#[test]
fn unknown_handle_ids_are_aborts() {
    let browser = service();
    let first = browser.bind(1);
    let second = browser.bind(2);
    let who = caller("https://a.example");

    for handle in [HandleId(0), HandleId(1), HandleId(12_345), HandleId(u64::MAX)] {
        assert_eq!(first.get_file(handle).err(), Some(CosError::Abort));
        assert_eq!(first.create_writable(handle).err(), Some(CosError::Abort));
    }
    // Releasing an unknown handle is silently ignored; the connection still answers.
    first.release(HandleId(77));

    // Handle ids are per connection: one issued on `first` is unknown on `second`.
    let issued = first.create_handle(&who, hash_of(b"abc"));
    assert!(first.create_writable(issued).is_ok());
    assert_eq!(second.create_writable(issued).err(), Some(CosError::Abort));
    assert_eq!(second.get_file(issued).err(), Some(CosError::Abort));
}

#[test]
fn data_pipes_per_renderer_are_bounded_and_released() {
    let browser = service();
    let renderer = browser.bind(1);
    let other = browser.bind(2);
    let who = caller("https://a.example");
    let stored = content(1000, 3);
    other.store(&who, &stored);
    let read = renderer.read_handle(&who, hash_of(&stored)).unwrap();

    let handle = renderer.create_handle(&who, hash_of(b"bounded"));
    let mut writers: Vec<Writer> =
        (0..MAX_DATA_PIPES_PER_RENDERER).map(|_| renderer.create_writable(handle).unwrap()).collect();
    let full = Some(CosError::QuotaExceeded(QuotaScope::Renderer));
    assert_eq!(renderer.create_writable(handle).err(), full);
    // Writers and reads share the bound.
    assert_eq!(renderer.get_file(read).err(), full);
    // Other renderers are not affected.
    assert!(other.create_writable(other.create_handle(&who, hash_of(b"other"))).is_ok());

    // The slot comes back when the pipe's thread ends, shortly after the pipe closes.
    let reopen = |renderer: &Renderer| -> Writer {
        let deadline = Instant::now() + WAIT;
        loop {
            match renderer.create_writable(handle) {
                Ok(writer) => return writer,
                Err(error) => assert_eq!(Some(error), full),
            }
            assert!(Instant::now() < deadline, "no data-pipe slot was released within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Dropping the renderer's end aborts the writer.
    drop(writers.pop());
    writers.push(reopen(&renderer));
    assert_eq!(renderer.create_writable(handle).err(), full);
    // So does an explicit Abort frame.
    writers[0].send(WriterFrame::Abort);
    writers[0].assert_closed_by_service();
    writers[0] = reopen(&renderer);
    assert_eq!(renderer.create_writable(handle).err(), full);

    // The writers still work: one of them completes a write.
    let last = writers.pop().unwrap();
    last.write_all(b"bounded");
    assert_eq!(last.close(), Ok(()));
    // Its slot comes back too, usable by a read.
    let deadline = Instant::now() + WAIT;
    let reader = loop {
        match renderer.get_file(read) {
            Ok(reader) => break reader,
            Err(error) => assert_eq!(Some(error), full),
        }
        assert!(Instant::now() < deadline, "no data-pipe slot was released within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(reader.read(0, reader.size).unwrap(), stored);
}

#[test]
fn a_stalled_reader_stalls_only_itself() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let data = content(4 << 20, 7);
    let hash = hash_of(&data);
    renderer.store(&who, &data);

    // Ask for everything and never read: the pipe's thread blocks once the queue is full.
    let stalled = renderer.get_file(renderer.read_handle(&who, hash).unwrap()).unwrap();
    stalled.request(0, stalled.size);
    // Not a timing assertion: this only makes it likely the stall has begun before we go on.
    std::thread::sleep(Duration::from_millis(50));

    // The same connection still answers, and a second read of the same entry completes.
    let again = renderer.read_handle(&caller("https://www.a.example"), hash).unwrap();
    let second = renderer.get_file(again).unwrap();
    assert_eq!(second.read(0, second.size).unwrap(), data);
    // A second renderer connection works too.
    let other = browser.bind(2);
    assert_eq!(other.read_entry(&who, hash).unwrap(), data);
    other.store(&who, b"meanwhile");
    // As does the control pipe.
    assert_eq!(browser.control_request(RequestId(5), BrowserToService::Ping { request: RequestId(5) }), Ok(()));

    // The stalled reader resumes intact when it finally reads.
    assert_eq!(stalled.collect().unwrap(), data);
}

#[test]
fn release_handle_frees_the_handle() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let bytes = content(500, 4);
    let hash = hash_of(&bytes);
    let create = renderer.create_handle(&who, hash);
    let writer = renderer.create_writable(create).unwrap();
    writer.write_all(&bytes);
    assert_eq!(writer.close(), Ok(()));

    let read = renderer.read_handle(&who, hash).unwrap();
    let kept = renderer.read_handle(&who, hash).unwrap();
    assert!(renderer.get_file(read).is_ok());

    renderer.release(read);
    renderer.release(create);
    assert_eq!(renderer.get_file(read).err(), Some(CosError::Abort));
    assert_eq!(renderer.get_file(create).err(), Some(CosError::Abort));
    assert_eq!(renderer.create_writable(create).err(), Some(CosError::Abort));
    // Only the released handles are gone.
    let reader = renderer.get_file(kept).unwrap();
    assert_eq!(reader.read(0, reader.size).unwrap(), bytes);
    // Ids are not reused: a new handle gets a fresh one.
    let fresh = renderer.read_handle(&who, hash).unwrap();
    assert!(![read, create, kept].contains(&fresh), "{fresh:?} reused");
}

#[test]
fn clear_site_data_and_ping_answer_on_the_control_pipe() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let bytes = content(2000, 5);
    let hash = hash_of(&bytes);

    assert_eq!(browser.control_request(RequestId(1), BrowserToService::Ping { request: RequestId(1) }), Ok(()));
    renderer.store(&who, &bytes);
    let open_before_clearing = renderer.read_handle(&caller("https://www.a.example"), hash).unwrap();
    assert_eq!(renderer.read_entry(&caller("https://www.a.example"), hash).unwrap(), bytes);

    // Clearing an origin that stored nothing changes nothing.
    let clear = |request: u64, url: &str| {
        let request = RequestId(request);
        browser.control_request(
            request,
            BrowserToService::ClearSiteData { request, partition: Partition::Regular, origin: origin(url) },
        )
    };
    assert_eq!(clear(2, "https://b.example"), Ok(()));
    assert_eq!(renderer.read_entry(&who, hash).unwrap(), bytes);

    // Clearing the only storing origin deletes the entry for everyone.
    assert_eq!(clear(3, "https://a.example"), Ok(()));
    assert_eq!(renderer.read_handle(&who, hash), Err(CosError::NotFound));
    assert_eq!(renderer.read_handle(&caller("https://www.a.example"), hash), Err(CosError::NotFound));
    assert_eq!(renderer.get_file(open_before_clearing).err(), Some(CosError::NotFound));
    assert_eq!(browser.control_request(RequestId(4), BrowserToService::Ping { request: RequestId(4) }), Ok(()));
}

#[test]
fn shutdown_returns_ok_and_keeps_the_data_on_disk() {
    let mut browser = service();
    let bytes = content(100_000, 6);
    let hash = hash_of(&bytes);
    {
        let renderer = browser.bind(1);
        renderer.store(&caller("https://a.example"), &bytes);
        // The broker's connection goes away with the renderer (its thread holds the store).
    }
    browser.control.send(BrowserToService::Shutdown).unwrap();
    assert_eq!(join_bounded(browser.take_thread()), Ok(()));
    // `serve` returned only after every connection and pipe thread ended: the store is free.
    let (service, report) = StorageService::open(ServiceConfig::new(browser.profile_dir())).unwrap();
    assert_eq!(report.entries, 1);
    let reader =
        service.get_file_handle(&caller("https://a.example"), hash, HandleRequest::Read).unwrap().get_file().unwrap();
    assert_eq!(reader.read_all().unwrap(), bytes);
}

#[test]
fn dropping_the_control_endpoint_stops_the_service() {
    let mut browser = service();
    let service = browser.take_thread();
    let profile = browser.hang_up();
    assert_eq!(join_bounded(service), Ok(()));
    // Nothing is left holding the store.
    assert!(StorageService::open(ServiceConfig::new(profile.path())).is_ok());
}

#[test]
fn shutdown_ends_live_connections_and_their_pipes() {
    let mut browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let writer = renderer.create_writable(renderer.create_handle(&who, hash_of(b"late"))).unwrap();
    writer.write_all(b"la");
    browser.control.send(BrowserToService::Shutdown).unwrap();
    assert_eq!(join_bounded(browser.take_thread()), Ok(()));
    // The renderer's connection and its open writer were ended, not left serving.
    writer.assert_closed_by_service();
    assert!(matches!(renderer.pipe.recv_timeout(WAIT), Err(IpcError::Disconnected)));
    // Nothing holds the store, and nothing was stored after the shutdown.
    let (service, report) = StorageService::open(ServiceConfig::new(browser.profile_dir())).unwrap();
    assert_eq!(report.entries, 0);
    assert_eq!(service.get_file_handle(&who, hash_of(b"late"), HandleRequest::Read).err(), Some(CosError::NotFound));
}

#[test]
fn an_overflowing_write_position_errors_the_stream() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let writer = renderer.create_writable(renderer.create_handle(&who, hash_of(b"abc"))).unwrap();
    writer.send(WriterFrame::Write { position: None, data: b"abc" });
    writer.send(WriterFrame::Write { position: Some(u64::MAX), data: b"x" });
    assert_eq!(writer.next_event(), WriterEvent::Failed(CosError::QuotaExceeded(QuotaScope::Origin)));
    assert_eq!(writer.close(), Err(CosError::QuotaExceeded(QuotaScope::Origin)));
    assert_eq!(renderer.read_entry(&who, hash_of(b"abc")), Err(CosError::NotFound));
}

#[test]
fn an_entry_with_a_thousand_long_storing_origins_is_listed_whole() {
    use cos_storage_service::visibility::MAX_STORING_ORIGINS;
    let browser = service();
    let renderer = browser.bind(1);
    // Off the record (in memory), so the thousand commits take no fsyncs.
    let partition = Partition::OffTheRecord(OffTheRecordProfileId(4));
    let bytes = b"stored by a thousand sites".as_slice();
    let long_label = "x".repeat(180);
    let storers: Vec<Origin> =
        (0..MAX_STORING_ORIGINS).map(|i| origin(&format!("https://{long_label}.s{i}.example"))).collect();
    for storer in &storers {
        let who = CallerContext::top_level(storer.clone()).in_partition(partition);
        renderer.store(&who, bytes);
    }
    // Together more than one message may carry: the listing cuts the entry into pieces.
    let (ours, theirs) = Endpoint::pair_in_process();
    let message = BrowserToService::Inspect { request: RequestId(5), partition, stream: theirs.into() };
    browser.control.send(message).unwrap();
    let stream: Pipe<(), InspectionItem> = Pipe::new(ours);
    let (mut entries, mut pieces, mut origins) = (Vec::new(), 0, 0);
    loop {
        match stream.recv_timeout(WAIT).expect("the inspection stream") {
            InspectionItem::Entry(entry) => entries.push(entry),
            InspectionItem::EntryOrigins { storing, listed } => {
                pieces += 1;
                let entry = entries.last_mut().expect("pieces follow their entry");
                entry.storing_origins.extend(storing);
                entry.listed_origins.extend(listed);
            }
            InspectionItem::Origin(_) => origins += 1,
            InspectionItem::End => break,
        }
    }
    match browser.next_control_message() {
        ServiceToBrowser::Done { request: RequestId(5), result } => assert_eq!(result, Ok(())),
        other => panic!("expected Done, got {other:?}"),
    }
    assert_eq!(entries.len(), 1);
    assert!(pieces >= 5, "{pieces} pieces for ~190 KB of origins");
    assert_eq!(entries[0].storing_origins, storers.into_iter().collect());
    assert_eq!(origins, MAX_STORING_ORIGINS, "every storing origin is charged and listed");
}

/// A renderer that receives an entry's sealed copy tries every way it has to change the bytes
/// behind it (it runs as the service's user, with no sandbox): none works, another origin's
/// renderer still reads the entry's bytes, and the blob on disk is untouched. (A descriptor of the
/// blob file itself would fall to the `fchmod` + reopen: the holder owns the inode.)
#[test]
fn a_handed_out_descriptor_cannot_change_what_anyone_reads() {
    use rustix::fs::{Mode, OFlags, SealFlags};

    let browser = service();
    let (one, two) = (browser.bind(1), browser.bind(2));
    let (a, b) = (caller("https://a.example"), caller("https://b.example"));
    let data = content(3 * DATA_CHUNK_BYTES + 99, 0x33);
    let hash = hash_of(&data);
    one.store(&a, &data);
    two.store(&b, &data);
    let reader = one.get_file(one.read_handle(&a, hash).unwrap()).unwrap();
    // Verified when written: its whole read is by descriptor.
    let fd = reader.read_shared().unwrap().expect("a descriptor");
    let file = cos_ipc::SealedFile::from_received(fd, data.len() as u64).expect("sealed, of the entry's size");
    let fd = file.as_fd();

    assert!(rustix::io::pwrite(fd, b"evil", 0).is_err(), "pwrite");
    assert!(rustix::io::write(fd, b"evil").is_err(), "write");
    assert!(rustix::fs::ftruncate(fd, 1).is_err(), "shrink");
    assert!(rustix::fs::ftruncate(fd, data.len() as u64 + 4096).is_err(), "grow");
    let _ = rustix::fs::fchmod(fd, Mode::from_raw_mode(0o666));
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    if let Ok(reopened) = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
        assert!(rustix::io::pwrite(&reopened, b"evil", 0).is_err(), "write through /proc/self/fd");
    }
    // SAFETY: asks for a new shared writable mapping, which the kernel must refuse; if it did not,
    // the mapping is written once and unmapped, touching no memory of ours.
    unsafe {
        let len = data.len();
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let mapped = libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0);
        if mapped != libc::MAP_FAILED {
            mapped.cast::<u8>().write(b'!');
            libc::munmap(mapped, len);
            panic!("a shared writable mapping of the copy was allowed");
        }
    }
    assert!(rustix::fs::fcntl_add_seals(fd, SealFlags::FUTURE_WRITE).is_err(), "the seals are sealed");
    // Its own private mapping may change: copy-on-write, for it alone.
    let mut mine = file.map(false).unwrap();
    mine[0] ^= 0xff;

    let other = two.get_file(two.read_handle(&b, hash).unwrap()).unwrap();
    let shared = cos_ipc::SealedFile::from_received(other.read_shared().unwrap().expect("a descriptor"), other.size);
    assert!(shared.unwrap().map(true).unwrap()[..] == data[..], "another origin maps the entry's bytes");
    assert_eq!(other.read(0, other.size).unwrap(), data, "and streams them");
    let on_disk = std::fs::read(cos_test_support::storage::blob_path(browser.profile_dir(), &hash)).unwrap();
    assert!(on_disk == data, "the blob on disk is untouched");
}

/// A renderer may send the request for a descriptor again and again: it gets the same sealed
/// copy, and nothing else. An entry too small for one has no pipe to ask on: it came whole.
#[test]
fn asking_for_a_descriptor_gets_nothing_extra() {
    let browser = service();
    let renderer = browser.bind(1);
    let a = caller("https://a.example");
    let small = content(1000, 1);
    renderer.store(&a, &small);
    let reader = renderer.get_file(renderer.read_handle(&a, hash_of(&small)).unwrap()).unwrap();
    assert_eq!(reader.inline.as_deref(), Some(&small[..]), "a small entry comes with getFile");
    let big = content(200_000, 2);
    renderer.store(&a, &big);
    let reader = renderer.get_file(renderer.read_handle(&a, hash_of(&big)).unwrap()).unwrap();
    for _ in 0..3 {
        let fd = reader.read_shared().unwrap().expect("a descriptor");
        let file = cos_ipc::SealedFile::from_received(fd, big.len() as u64).unwrap();
        assert!(file.map(false).unwrap()[..] == big[..]);
    }
    // Plain reads on the same pipe still work after descriptors went out.
    assert_eq!(reader.read(10, 20).unwrap(), &big[10..30]);
}

// ----- document bindings -------------------------------------------------------------------------

/// The renderer's end of a document's binding, as `cos_renderer` speaks on it.
struct BoundDocument {
    pipe: Pipe<RendererToBroker, Reply>,
    frame: FrameId,
    next_request: Cell<u64>,
}

impl Renderer {
    /// Binds document `frame` to `caller`, as the broker does, and returns the renderer's end.
    fn bind_document(&self, frame: u64, caller: &CallerContext) -> BoundDocument {
        let (service_end, renderer_end) = Endpoint::pair_in_process();
        let message =
            BrokerToService::BindDocument { frame: FrameId(frame), caller: caller.clone(), pipe: service_end.into() };
        self.pipe.send(message).unwrap();
        BoundDocument { pipe: Pipe::new(renderer_end), frame: FrameId(frame), next_request: Cell::new(1) }
    }
}

impl BoundDocument {
    fn call(&self, make: impl FnOnce(RequestId) -> RendererToBroker) -> CallResult {
        let request = RequestId(self.next_request.get());
        self.next_request.set(request.0 + 1);
        self.pipe.send(make(request)).unwrap();
        let reply = self.pipe.recv_timeout(WAIT).expect("no reply on the binding");
        assert_eq!(reply.request, request, "reply to the wrong request");
        reply.result
    }

    fn lookup(&self, hash: ContentHash) -> Result<HandleId, CosError> {
        let frame = self.frame;
        let get = |request| RendererToBroker::GetFileHandle {
            request,
            frame,
            hash,
            create: false,
            origins: OriginsOption::Omitted,
        };
        match self.call(get) {
            CallResult::Handle { handle, create: false } => Ok(handle),
            CallResult::Failed(error) => Err(error),
            other => panic!("expected a read handle, got {other:?}"),
        }
    }

    fn get_file(&self, handle: HandleId) -> Result<ReadPipe, CosError> {
        let frame = self.frame;
        ReadPipe::from_reply(
            self.call(|request| RendererToBroker::Call { frame, call: HandleCall::GetFile { request, handle } }),
        )
    }

    fn assert_closed_by_service(&self) {
        match self.pipe.recv_timeout(WAIT) {
            Err(IpcError::Disconnected) => {}
            other => panic!("expected the binding to be closed, got {other:?}"),
        }
    }
}

#[test]
fn a_binding_answers_as_the_document_it_was_bound_to() {
    let browser = service();
    let renderer = browser.bind(1);
    let (a, b) = (caller("https://a.example"), caller("https://b.example"));
    let bytes = content(5000, 1);
    renderer.store(&a, &bytes);
    let as_a = renderer.bind_document(10, &a);
    let as_b = renderer.bind_document(11, &b);
    let handle = as_a.lookup(hash_of(&bytes)).unwrap();
    let reader = as_a.get_file(handle).unwrap();
    assert_eq!(reader.read(0, reader.size).unwrap(), bytes);
    // The context is the binding's: b's document does not see a's entry, whatever it sends.
    assert_eq!(as_b.lookup(hash_of(&bytes)), Err(CosError::NotFound));
    assert_eq!(as_a.lookup(hash_of(b"never stored")), Err(CosError::NotFound));
    // Nothing was reported.
    assert!(matches!(renderer.pipe.recv_timeout(Duration::from_millis(100)), Err(IpcError::Timeout)));
}

/// What a well-behaved renderer never sends on a binding is reported over its own broker
/// connection (the broker terminates it), and the binding closes.
#[test]
fn bad_messages_on_a_binding_are_reported_on_the_renderers_own_connection() {
    let browser = service();
    let innocent = browser.bind(2);
    let culprit = browser.bind(1);
    let who = caller("https://a.example");
    let hash = hash_of(b"anything");
    type Send = Box<dyn Fn(&BoundDocument)>;
    let messages: Vec<(&str, Send)> = vec![
        ("undecodable", Box::new(|bound| bound.pipe.endpoint().send(&[0xff, 0x13], vec![]).unwrap())),
        (
            "attachment",
            Box::new(|bound| {
                let bytes =
                    cos_ipc::encode(&RendererToBroker::Bind { request: RequestId(1), frame: bound.frame }).unwrap();
                bound.pipe.endpoint().send(&bytes, vec![Endpoint::pair_in_process().0]).unwrap()
            }),
        ),
        (
            "create",
            Box::new(move |bound| {
                let create = RendererToBroker::GetFileHandle {
                    request: RequestId(1),
                    frame: bound.frame,
                    hash,
                    create: true,
                    origins: OriginsOption::Omitted,
                };
                bound.pipe.send(create).unwrap()
            }),
        ),
        (
            "another document",
            Box::new(move |bound| {
                let other = RendererToBroker::GetFileHandle {
                    request: RequestId(1),
                    frame: FrameId(bound.frame.0 + 1),
                    hash,
                    create: false,
                    origins: OriginsOption::Omitted,
                };
                bound.pipe.send(other).unwrap()
            }),
        ),
        (
            "bind",
            Box::new(|bound| {
                bound.pipe.send(RendererToBroker::Bind { request: RequestId(1), frame: bound.frame }).unwrap()
            }),
        ),
        (
            "unknown handle",
            Box::new(|bound| {
                let call = HandleCall::GetFile { request: RequestId(1), handle: HandleId(12_345) };
                bound.pipe.send(RendererToBroker::Call { frame: bound.frame, call }).unwrap()
            }),
        ),
        (
            "unknown release",
            Box::new(|bound| {
                let call = HandleCall::ReleaseHandle { handle: HandleId(12_345) };
                bound.pipe.send(RendererToBroker::Call { frame: bound.frame, call }).unwrap()
            }),
        ),
    ];
    for (what, send) in messages {
        let bound = culprit.bind_document(10, &who);
        send(&bound);
        let reason = culprit.next_report();
        assert!(!reason.is_empty(), "{what}");
        bound.assert_closed_by_service();
    }
    assert!(matches!(innocent.pipe.recv_timeout(Duration::from_millis(100)), Err(IpcError::Timeout)));
}

#[test]
fn a_handle_a_binding_issued_is_refused_on_another() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let bytes = content(100, 2);
    renderer.store(&who, &bytes);
    let first = renderer.bind_document(10, &who);
    let second = renderer.bind_document(11, &who);
    let own = second.lookup(hash_of(&bytes)).unwrap();
    let issued = first.lookup(hash_of(&bytes)).unwrap();
    assert_ne!(own, issued, "one sequence of ids per renderer");
    let call = HandleCall::GetFile { request: RequestId(9), handle: issued };
    second.pipe.send(RendererToBroker::Call { frame: FrameId(11), call }).unwrap();
    assert_eq!(renderer.next_report(), "a handle this binding did not issue");
    second.assert_closed_by_service();
    // Nor on the broker's connection, whose ids are the broker's.
    assert_eq!(renderer.get_file(issued).err(), Some(CosError::Abort));
    // The first binding is unaffected.
    assert!(first.get_file(issued).is_ok());
}

/// A renderer's bindings share its allowances: data pipes, handles, and the bindings themselves.
#[test]
fn bindings_count_against_their_renderers_limits() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let bytes = content(100, 4);
    renderer.store(&who, &bytes);
    let bound = renderer.bind_document(10, &who);
    let handle = bound.lookup(hash_of(&bytes)).unwrap();
    // Every data pipe taken through the broker's connection...
    let create = renderer.create_handle(&who, hash_of(b"pipes"));
    let _writers: Vec<Writer> =
        (0..MAX_DATA_PIPES_PER_RENDERER).map(|_| renderer.create_writable(create).unwrap()).collect();
    // ...leaves none for a binding.
    assert_eq!(bound.get_file(handle).err(), Some(CosError::QuotaExceeded(QuotaScope::Renderer)));

    let other = browser.bind(2);
    let mut bindings: Vec<BoundDocument> =
        (0..MAX_BINDINGS_PER_RENDERER as u64).map(|frame| other.bind_document(100 + frame, &who)).collect();
    for binding in &bindings {
        assert_eq!(binding.lookup(hash_of(b"nothing")), Err(CosError::NotFound));
    }
    let refused = other.bind_document(999, &who);
    refused.assert_closed_by_service();
    // A closed binding makes room.
    drop(bindings.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let retry = other.bind_document(1000, &who);
        let frame = retry.frame;
        retry
            .pipe
            .send(RendererToBroker::GetFileHandle {
                request: RequestId(1),
                frame,
                hash: hash_of(b"nothing"),
                create: false,
                origins: OriginsOption::Omitted,
            })
            .unwrap();
        match retry.pipe.recv_timeout(WAIT) {
            Ok(reply) => {
                assert_eq!(reply.result, CallResult::Failed(CosError::NotFound));
                break;
            }
            Err(IpcError::Disconnected) => {}
            Err(error) => panic!("{error}"),
        }
        assert!(Instant::now() < deadline, "no binding slot came back within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ----- small entries answered inline --------------------------------------------------------------

/// An entry of at most `INLINE_READ_MAX_BYTES` comes whole with `getFile`, verified, on the
/// broker's connection and on a binding alike; one byte more gets a data pipe. An inline read
/// holds a stream slot only until its reply is sent, so reads one after another never run out.
#[test]
fn a_small_entry_comes_whole_with_get_file_and_gives_its_slot_back() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let largest = content(INLINE_READ_MAX_BYTES, 1);
    let larger = content(INLINE_READ_MAX_BYTES + 1, 2);
    renderer.store(&who, &largest);
    renderer.store(&who, &larger);
    let bound = renderer.bind_document(10, &who);

    let handle = renderer.read_handle(&who, hash_of(&largest)).unwrap();
    let on_binding = bound.lookup(hash_of(&largest)).unwrap();
    for _ in 0..3 * MAX_DATA_PIPES_PER_RENDERER {
        assert_eq!(renderer.get_file(handle).unwrap().inline.as_deref(), Some(&largest[..]));
        assert_eq!(bound.get_file(on_binding).unwrap().inline.as_deref(), Some(&largest[..]));
    }
    let streamed = renderer.get_file(renderer.read_handle(&who, hash_of(&larger)).unwrap()).unwrap();
    assert!(streamed.inline.is_none(), "one byte past the bound: a data pipe");
    assert_eq!(streamed.read(0, streamed.size).unwrap(), larger);

    // Revocation answers exactly as for a streamed read.
    let clear = BrowserToService::ClearSiteData {
        request: RequestId(1),
        partition: Partition::Regular,
        origin: origin("https://a.example"),
    };
    assert_eq!(browser.control_request(RequestId(1), clear), Ok(()));
    assert_eq!(renderer.get_file(handle).err(), Some(CosError::NotFound));
    assert_eq!(bound.get_file(on_binding).err(), Some(CosError::NotFound));
}

/// A small entry damaged on disk after its write verified it is refused by the inline path:
/// every inline read hashes the bytes it sends.
#[test]
fn a_damaged_small_blob_is_refused_inline() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let bytes = content(1024, 3);
    let hash = hash_of(&bytes);
    renderer.store(&who, &bytes);
    let handle = renderer.read_handle(&who, hash).unwrap();
    assert_eq!(renderer.get_file(handle).unwrap().inline.as_deref(), Some(&bytes[..]));

    let path = cos_test_support::storage::blob_path(browser.profile_dir(), &hash);
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[512] ^= 1;
    std::fs::write(&path, on_disk).unwrap();
    assert_eq!(renderer.get_file(handle).err(), Some(CosError::NotFound));
    let bound = renderer.bind_document(10, &who);
    // The next read deletes it: the lookup misses from then on.
    assert_eq!(renderer.get_file(handle).err(), Some(CosError::NotFound));
    assert_eq!(bound.lookup(hash), Err(CosError::NotFound));
}

/// A renderer that asks for small entries and never reads the replies cannot make the service
/// hold more of their bytes than its open-stream bound allows: a reply waiting to be sent holds
/// the slot a stream would, so once every binding's queue is full, nothing else of the renderer
/// may read until it reads its replies.
#[test]
fn unread_inline_replies_hold_the_renderers_stream_slots() {
    let browser = service();
    let renderer = browser.bind(1);
    let who = caller("https://a.example");
    let bytes = content(INLINE_READ_MAX_BYTES, 4);
    let hash = hash_of(&bytes);
    renderer.store(&who, &bytes);
    let kept = renderer.read_handle(&who, hash).unwrap();
    let bindings: Vec<(BoundDocument, HandleId)> = (0..MAX_BINDINGS_PER_RENDERER as u64)
        .map(|frame| {
            let binding = renderer.bind_document(100 + frame, &who);
            let handle = binding.lookup(hash).unwrap();
            (binding, handle)
        })
        .collect();
    assert_eq!(MAX_BINDINGS_PER_RENDERER, MAX_DATA_PIPES_PER_RENDERER, "one blocked binding per slot");
    // More replies than a binding's queue holds: its thread blocks sending one of them.
    const ASKED: u64 = 8;
    for (binding, handle) in &bindings {
        for request in 0..ASKED {
            let call = HandleCall::GetFile { request: RequestId(1000 + request), handle: *handle };
            binding.pipe.send(RendererToBroker::Call { frame: binding.frame, call }).unwrap();
        }
    }
    let deadline = Instant::now() + WAIT;
    loop {
        match renderer.get_file(kept) {
            Err(CosError::QuotaExceeded(QuotaScope::Renderer)) => break,
            Ok(reader) => assert_eq!(reader.inline.as_deref(), Some(&bytes[..])),
            Err(other) => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "unread inline replies held no stream slots within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reading one binding's replies gives its slot back.
    let (first, _) = &bindings[0];
    for _ in 0..ASKED {
        let reply = first.pipe.recv_timeout(WAIT).expect("a reply");
        assert!(matches!(reply.result, CallResult::InlineFile { ref bytes } if bytes.len() == INLINE_READ_MAX_BYTES));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        match renderer.get_file(kept) {
            Ok(reader) => break assert_eq!(reader.inline.as_deref(), Some(&bytes[..])),
            Err(error) => assert_eq!(error, CosError::QuotaExceeded(QuotaScope::Renderer)),
        }
        assert!(Instant::now() < deadline, "no slot came back within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
