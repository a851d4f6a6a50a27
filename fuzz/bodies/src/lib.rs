//! The bodies of the fuzz targets. `fuzz/fuzz_targets/<target>.rs` hands libFuzzer's input to
//! the function of the same name; `tests/corpus.rs` replays the committed seed corpus
//! (`fuzz/corpus/<target>/`) through the same functions on stable Rust in every CI run. A body
//! returns normally for any input; a panic is a finding.
//!
//! The first input byte selects what the rest is fed to, so one target covers a family of
//! decoders and libFuzzer can move between them.

use std::fmt::Debug;

use cos_common::interface::{
    BrokerToService, BrowserToService, DATA_CHUNK_BYTES, InspectionItem, ReaderFrame, ReaderRequest, RendererToBroker,
    ScrubItem, ServiceToBroker, ServiceToBrowser, WriterEvent, WriterFrame,
};
use cos_common::{AllowOriginCeiling, ContentHash, Origin, OriginsInput, OriginsOption, Site};
use cos_storage_service::registry::records::{BudgetRecord, EntryRecord, OriginRecord};
use cos_storage_service::{PublicHashList, PublicHashListBuilder};
use cos_test_support::callers::{caller, hash_of};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod ipc_channel_link;
mod renderer_actions;
mod store_model;

pub use ipc_channel_link::ipc_channel_link;
pub use renderer_actions::renderer_actions;
pub use store_model::store_model;

/// Up to `max` items built from `data` by [`arbitrary`], as many as the bytes describe.
pub(crate) fn sequence<'a, T: arbitrary::Arbitrary<'a>>(data: &'a [u8], max: usize) -> Vec<T> {
    let mut bytes = arbitrary::Unstructured::new(data);
    let mut items = Vec::new();
    while items.len() < max && !bytes.is_empty() {
        match T::arbitrary(&mut bytes) {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
    items
}

/// A scratch directory for a target's store: in `/dev/shm` where there is one, so that the
/// store's fsyncs cost nothing and a fuzzer runs thousands of sequences a minute.
pub(crate) fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    dir.expect("a scratch directory")
}

/// Every message a renderer (or a compromised service) can put on a pipe — control messages,
/// service replies and reports, read requests, writer events, inspection and scrub streams,
/// data-pipe frames: decoding never
/// panics, and whatever decodes re-encodes to a message that decodes to the same value.
pub fn ipc_messages(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 11 {
        0 => round_trip::<RendererToBroker>(bytes),
        10 => round_trip::<ServiceToBroker>(bytes),
        1 => round_trip::<BrokerToService>(bytes),
        2 => round_trip::<BrowserToService>(bytes),
        3 => round_trip::<ServiceToBrowser>(bytes),
        6 => round_trip::<ReaderRequest>(bytes),
        7 => round_trip::<WriterEvent>(bytes),
        8 => round_trip::<InspectionItem>(bytes),
        9 => round_trip::<ScrubItem>(bytes),
        4 => {
            if let Ok(frame) = cos_ipc::decode_borrowed::<WriterFrame<'_>>(bytes) {
                let encoded = cos_ipc::encode(&frame).expect("a decoded writer frame re-encodes");
                let again = cos_ipc::decode_borrowed::<WriterFrame<'_>>(&encoded).expect("and decodes");
                assert_eq!(again, frame, "a writer frame re-encodes");
            }
        }
        _ => {
            if let Ok(frame) = ReaderFrame::decode(bytes, DATA_CHUNK_BYTES) {
                let encoded = frame.encode().expect("a decoded reader frame re-encodes");
                let again = ReaderFrame::decode(&encoded, DATA_CHUNK_BYTES).expect("and decodes");
                assert_eq!(again, frame, "a reader frame re-encodes");
            }
        }
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(message) = cos_ipc::decode::<T>(bytes) {
        let encoded = cos_ipc::encode(&message).expect("a decoded message re-encodes");
        let again: T = cos_ipc::decode(&encoded).expect("a re-encoded message decodes");
        assert_eq!(again, message, "a message survives a round trip");
    }
}

/// The parsers of web-facing and operator inputs: hash dictionaries, `origins` options, origins
/// and their sites, the `Cross-Origin-Storage-Allow-Origin` header and the Public Hash List.
pub fn inputs(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(bytes);
    match selector % 5 {
        0 => {
            let (algorithm, value) = text.split_once('\0').unwrap_or(("SHA-256", &text));
            if let Ok(hash) = ContentHash::parse(algorithm, value) {
                let again = ContentHash::parse("SHA-256", &hash.to_hex()).expect("a parsed hash re-parses");
                assert_eq!(again, hash);
            }
        }
        1 => {
            if let Ok(origin) = Origin::from_url(&text) {
                let site = Site::of(&origin);
                assert_eq!(Site::of(&origin), site, "a site is a function of its origin");
                let again = Origin::from_url(&origin.to_string()).expect("an origin's serialisation parses");
                assert_eq!(again, origin, "an origin survives its serialisation");
            }
        }
        2 => {
            let _ = AllowOriginCeiling::from_header(Some(&text));
        }
        3 => {
            let whole = PublicHashList::parse(&text);
            // The browser streams the list to the sandboxed service in pieces: any split parses
            // as the whole does.
            if std::str::from_utf8(bytes).is_ok() {
                let step = usize::from(bytes.first().copied().unwrap_or(1)).max(1);
                let mut builder = PublicHashListBuilder::default();
                let streamed =
                    bytes.chunks(step).try_for_each(|piece| builder.feed(piece)).and_then(|()| builder.finish());
                match (whole, streamed) {
                    (Ok(whole), Ok(streamed)) => assert!(whole == streamed, "a streamed list equals the whole"),
                    (whole, streamed) => assert_eq!(whole.is_ok(), streamed.is_ok(), "streaming changes nothing"),
                }
            }
        }
        _ => {
            let input = match text.split_once('\0') {
                None => OriginsInput::Single(text.into_owned()),
                Some(_) => OriginsInput::Sequence(text.split('\0').map(str::to_owned).collect()),
            };
            if let Ok(OriginsOption::List(origins)) = OriginsOption::parse(&input) {
                assert!(!origins.is_empty(), "an empty list means the option was omitted");
            }
        }
    }
}

/// Registry records as read back from disk: corrupt bytes are decode errors, never panics, and
/// whatever decodes re-encodes to the same record. One selector in four puts the bytes into a real
/// registry instead ([`corrupt_registry`]).
pub fn registry_records(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 4 {
        0 => {
            if let Ok(record) = EntryRecord::decode(bytes) {
                assert_eq!(EntryRecord::decode(&record.encode()).expect("re-decodes"), record);
            }
        }
        1 => {
            if let Ok(record) = OriginRecord::decode(bytes) {
                assert_eq!(OriginRecord::decode(&record.encode()).expect("re-decodes"), record);
            }
        }
        2 => {
            if let Ok(record) = BudgetRecord::decode(bytes) {
                assert_eq!(BudgetRecord::decode(&record.encode()).expect("re-decodes"), record);
            }
        }
        _ => corrupt_registry(bytes),
    }
}

/// The registry's on-disk tables, as a damaged disk could leave them (the layout of
/// `cos_storage_service::registry`; schema version 1).
const ENTRIES_TABLE: redb::TableDefinition<&[u8; 32], &[u8]> = redb::TableDefinition::new("entries");
const ORIGINS_TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("origins");
const BUDGETS_TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("budgets");

/// A store holding one entry gets one row overwritten or added with arbitrary bytes, as disk
/// corruption would leave it. The store must still open, count an undecodable entry row in its
/// recovery report, never serve other bytes for the damaged entry, keep its accounting equal to
/// what the surviving entries charge, and keep storing and reading.
pub fn corrupt_registry(data: &[u8]) {
    use cos_storage_service::{HandleRequest, ServiceConfig, StorageService};

    let Some((&choice, value)) = data.split_first() else { return };
    let kept: &[u8] = b"kept across the damage";
    let fresh: &[u8] = b"stored after the damage";
    let writer = caller("https://a.example");
    let dir = scratch_dir();
    let config = || ServiceConfig::new(dir.path());
    {
        let (service, _) = StorageService::open(config()).expect("a fresh store opens");
        store(&service, &writer, kept).expect("the first entry stores");
    }
    let kept_hash = hash_of(kept);
    // The damage: one row, keyed by the kept entry, its origin, or a key made of the bytes.
    {
        let db = redb::Database::open(dir.path().join("cos/registry.redb")).expect("the registry file opens");
        let txn = db.begin_write().expect("write transaction");
        {
            let text_key = String::from_utf8_lossy(value.get(..value.len().min(24)).unwrap_or_default()).into_owned();
            match choice % 6 {
                0 => txn.open_table(ENTRIES_TABLE).unwrap().insert(kept_hash.as_bytes(), value).map(drop),
                1 => {
                    let mut key = [0u8; 32];
                    key.iter_mut().zip(value).for_each(|(k, v)| *k = *v);
                    txn.open_table(ENTRIES_TABLE).unwrap().insert(&key, value).map(drop)
                }
                2 => txn.open_table(ORIGINS_TABLE).unwrap().insert("https://a.example", value).map(drop),
                3 => txn.open_table(ORIGINS_TABLE).unwrap().insert(text_key.as_str(), value).map(drop),
                4 => txn.open_table(BUDGETS_TABLE).unwrap().insert("https://a.example", value).map(drop),
                _ => txn.open_table(BUDGETS_TABLE).unwrap().insert(text_key.as_str(), value).map(drop),
            }
            .expect("the damaged row is written");
        }
        txn.commit().expect("commit the damage");
    }
    let (service, report) = StorageService::open(config()).expect("a registry with a corrupt row opens");
    if choice % 6 <= 1 && EntryRecord::decode(value).is_err() {
        assert_eq!(report.corrupt_rows, 1, "the undecodable entry row is reported: {report:?}");
    }
    let true_account = OriginRecord { charged_bytes: kept.len() as u64, entries: 1 };
    if choice % 6 == 2 && OriginRecord::decode(value).ok() != Some(true_account) {
        assert!(report.accounting_repaired, "a damaged origin row is recomputed: {report:?}");
    }
    let read =
        |hash| service.get_file_handle(&writer, hash, HandleRequest::Read).and_then(|h| h.get_file()?.read_all());
    match read(kept_hash) {
        Ok(bytes) => assert!(bytes == kept, "a damaged entry served other bytes"),
        Err(error) => assert_eq!(error, cos_common::CosError::NotFound, "a damaged entry is simply gone"),
    }
    // Accounting is what the surviving entries charge.
    let entries = service.inspect_entries(cos_common::Partition::Regular).expect("inspection works");
    let charged: u64 = entries.iter().filter(|e| e.storing_origins.contains(writer.origin())).map(|e| e.size).sum();
    let account = service.inspect_origin(cos_common::Partition::Regular, writer.origin()).expect("inspection works");
    assert_eq!(account.charged_bytes, charged, "the origin is charged for what it stores");
    // And the store keeps working.
    store(&service, &writer, fresh).expect("a store after the damage");
    store(&service, &writer, kept).expect("the damaged entry stores again");
    assert_eq!(read(hash_of(fresh)).as_deref(), Ok(fresh), "the new entry reads back");
    assert_eq!(read(kept_hash).as_deref(), Ok(kept), "the re-stored entry reads back");
}

/// The threads of this process (`/proc/self/task`), or `None` where that cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(Iterator::count)
}

/// Waits until this process is back to `baseline` threads (from [`thread_count`] before a target
/// ran): every thread the target started, its own or the product's, has ended. A thread still
/// running after its input is a finding — a service, broker or pipe that never stops — and would
/// also make LeakSanitizer report what it holds as leaked: once the kernel hands out thread ids
/// again (`pid_max` is often 32768, ~1,000 `renderer_actions` inputs), ASan's registry still has
/// an entry for the id's earlier thread, LeakSanitizer finds that one first and does not scan
/// the live thread's stack.
pub(crate) fn wait_for_threads_to_end(baseline: Option<usize>, timeout: std::time::Duration) {
    let Some(baseline) = baseline else { return };
    let deadline = std::time::Instant::now() + timeout;
    while thread_count().is_some_and(|threads| threads > baseline) {
        if std::time::Instant::now() >= deadline {
            let names: Vec<String> = std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim_end().to_owned())
                .collect();
            panic!("threads outlived the input ({baseline} before): {names:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn store(
    service: &cos_storage_service::StorageService,
    caller: &cos_common::CallerContext,
    bytes: &[u8],
) -> Result<(), cos_common::CosError> {
    use cos_storage_service::{CreateOptions, HandleRequest};
    let handle = service.get_file_handle(caller, hash_of(bytes), HandleRequest::Create(CreateOptions::same_site()))?;
    let mut writer = handle.create_writable()?;
    writer.write(bytes)?;
    writer.close().map(drop)
}
