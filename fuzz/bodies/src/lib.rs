//! The bodies of the fuzz targets. `fuzz/fuzz_targets/<target>.rs` hands libFuzzer's input to
//! the function of the same name; `tests/corpus.rs` replays the committed seed corpus
//! (`fuzz/corpus/<target>/`) through the same functions on stable Rust in every CI run. A body
//! returns normally for any input; a panic is a finding.
//!
//! The first input byte selects what the rest is fed to, so one target covers a family of
//! decoders and libFuzzer can move between them.

use std::fmt::Debug;

use cos_common::interface::{
    BrokerToService, BrowserToService, ReaderFrame, RendererToBroker, ServiceToBrowser, WriterFrame,
};
use cos_common::{AllowOriginCeiling, ContentHash, Origin, OriginsInput, OriginsOption, Site};
use cos_storage_service::PublicHashList;
use cos_storage_service::registry::records::{BudgetRecord, EntryRecord, OriginRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every message a renderer (or a compromised service) can put on a pipe: decoding never panics,
/// and whatever decodes re-encodes to a message that decodes to the same value.
pub fn ipc_messages(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 6 {
        0 => round_trip::<RendererToBroker>(bytes),
        1 => round_trip::<BrokerToService>(bytes),
        2 => round_trip::<BrowserToService>(bytes),
        3 => round_trip::<ServiceToBrowser>(bytes),
        4 => {
            if let Ok(frame) = WriterFrame::decode(bytes) {
                let mut encoded = Vec::new();
                frame.encode_into(&mut encoded);
                assert_eq!(WriterFrame::decode(&encoded), Ok(frame), "a writer frame re-encodes");
            }
        }
        _ => {
            if let Ok(frame) = ReaderFrame::decode(bytes) {
                let mut encoded = Vec::new();
                frame.encode_into(&mut encoded);
                assert_eq!(ReaderFrame::decode(&encoded), Ok(frame), "a reader frame re-encodes");
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
            let _ = PublicHashList::parse(&text);
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
/// whatever decodes re-encodes to the same record.
pub fn registry_records(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 3 {
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
        _ => {
            if let Ok(record) = BudgetRecord::decode(bytes) {
                assert_eq!(BudgetRecord::decode(&record.encode()).expect("re-decodes"), record);
            }
        }
    }
}
