//! Replays the committed seed corpus of every fuzz target (`fuzz/corpus/<target>/`) through the
//! target bodies, so that CI on stable Rust catches a regression of any input a fuzzer once
//! found. `COS_FUZZ_WRITE_SEEDS=1 cargo test -p cos_fuzz --test corpus` rewrites the generated
//! seeds (valid encodings of every message and record kind) from the current types. The
//! structured targets (`renderer_actions`, `store_model`) keep inputs the fuzzer found, chosen
//! for coverage (`-merge=1`), since no encoder produces `arbitrary` bytes.

use std::path::{Path, PathBuf};

type Body = fn(&[u8]);

const TARGETS: &[(&str, Body)] = &[
    ("ipc_messages", cos_fuzz::ipc_messages),
    ("inputs", cos_fuzz::inputs),
    ("registry_records", cos_fuzz::registry_records),
    ("renderer_actions", cos_fuzz::renderer_actions),
    ("store_model", cos_fuzz::store_model),
    ("ipc_channel_link", cos_fuzz::ipc_channel_link),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(target)
}

#[test]
fn every_committed_input_replays_without_a_finding() {
    if std::env::var_os("COS_FUZZ_WRITE_SEEDS").is_some() {
        write_seeds();
    }
    for (target, body) in TARGETS {
        let dir = corpus_dir(target);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 5, "{target}: the seed corpus is missing ({} inputs)", inputs.len());
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            // A panic names the input, so the failing seed is easy to find.
            let outcome = std::panic::catch_unwind(|| body(&bytes));
            assert!(outcome.is_ok(), "{target}: {} is a finding", input.display());
        }
    }
}

/// Valid inputs of every kind, so that the fuzzer starts past the decoders' first checks.
fn write_seeds() {
    use cos_common::interface::*;
    use cos_common::{CallerContext, ContentHash, Origin, OriginsOption, Partition, Site};

    let hash = ContentHash::parse("SHA-256", &"ab".repeat(32)).unwrap();
    let origin = Origin::from_url("https://app.example").unwrap();
    let caller = CallerContext::new(origin.clone(), Site::of(&origin), Partition::Regular);
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, selector: u8, body: Vec<u8>| {
        seeds.push((target, name.to_owned(), [vec![selector], body].concat()));
    };
    let get = RendererToBroker::GetFileHandle {
        request: RequestId(1),
        frame: FrameId(2),
        hash,
        create: true,
        origins: OriginsOption::List(vec![origin.clone()]),
    };
    add("ipc_messages", "renderer-get-file-handle", 0, cos_ipc::encode(&get).unwrap());
    add(
        "ipc_messages",
        "renderer-get-file",
        0,
        cos_ipc::encode(&RendererToBroker::Call {
            frame: FrameId(2),
            call: HandleCall::GetFile { request: RequestId(3), handle: HandleId(4) },
        })
        .unwrap(),
    );
    let to_service = BrokerToService::GetFileHandle {
        request: RequestId(1),
        handle: HandleId(5),
        caller,
        hash,
        kind: HandleRequest::Read,
    };
    add("ipc_messages", "broker-get-file-handle", 1, cos_ipc::encode(&to_service).unwrap());
    let reply = ServiceToBroker::Reply(Reply {
        request: RequestId(1),
        result: CallResult::Handle { handle: HandleId(5), create: false },
    });
    add("ipc_messages", "service-reply", 10, cos_ipc::encode(&reply).unwrap());
    let inline = ServiceToBroker::Reply(Reply {
        request: RequestId(2),
        result: CallResult::InlineFile { bytes: InlineBytes::new(b"a small entry".to_vec()).unwrap() },
    });
    add("ipc_messages", "service-reply-inline", 10, cos_ipc::encode(&inline).unwrap());
    let report = ServiceToBroker::BadMessage { reason: "malformed write frame".into() };
    add("ipc_messages", "service-bad-message", 10, cos_ipc::encode(&report).unwrap());
    let frame = cos_ipc::encode(&WriterFrame::Write { position: Some(3), data: b"some bytes" }).unwrap();
    add("ipc_messages", "writer-data", 4, frame);
    add("ipc_messages", "reader-data", 5, ReaderFrame::Bulk(b"some bytes").encode().unwrap());
    add(
        "ipc_messages",
        "reader-request",
        6,
        cos_ipc::encode(&ReaderRequest::Read { offset: 5, len: 1 << 20 }).unwrap(),
    );
    let failed = WriterEvent::Closed(Err(cos_common::CosError::Data(cos_common::DataErrorKind::HashMismatch)));
    add("ipc_messages", "writer-event", 7, cos_ipc::encode(&failed).unwrap());
    add("ipc_messages", "inspection-end", 8, cos_ipc::encode(&InspectionItem::End).unwrap());
    let more = InspectionItem::EntryOrigins { storing: vec![origin.clone()], listed: vec![origin.clone()] };
    add("ipc_messages", "inspection-entry-origins", 8, cos_ipc::encode(&more).unwrap());
    let progress = ScrubItem::Progress { report: ScrubReport { entries_checked: 3, ..Default::default() }, total: 9 };
    add("ipc_messages", "scrub-progress", 9, cos_ipc::encode(&progress).unwrap());

    add("inputs", "hash", 0, format!("SHA-256\0{}", "0f".repeat(32)).into_bytes());
    add("inputs", "origin", 1, b"https://www.example.co.uk:8443/path".to_vec());
    add("inputs", "origin-ip", 1, b"http://[::1]:8080/".to_vec());
    add("inputs", "ceiling", 2, b"https://a.example, https://b.example".to_vec());
    add("inputs", "phl", 3, format!("// list\n// ===BEGIN SHA-256===\n{}\n", "12".repeat(32)).into_bytes());
    add("inputs", "origins-list", 4, b"https://a.example\0https://b.example".to_vec());
    add("inputs", "origins-global", 4, b"*".to_vec());

    let entry = cos_storage_service::EntryRecord {
        size: 10,
        storing_origins: [origin.clone()].into(),
        listed_origins: vec![origin.clone()],
        global: true,
        created_ms: 1,
        last_read_ms: 2,
        read_count: 3,
        provenance: vec![cos_storage_service::Provenance {
            origin: origin.clone(),
            document_url: Some("https://app.example/page".into()),
            time_ms: 1,
        }],
    };
    add("registry_records", "entry", 0, entry.encode());
    let origin_record = cos_storage_service::OriginRecord { charged_bytes: 10, entries: 1 };
    add("registry_records", "origin", 1, origin_record.encode());
    add(
        "registry_records",
        "budget",
        2,
        cos_storage_service::registry::records::BudgetRecord { probed: vec![[7; 32]] }.encode(),
    );
    add("registry_records", "empty", 0, Vec::new());
    add("registry_records", "garbage", 1, vec![0xff; 12]);
    // Selector 3: the bytes go into a real registry; the next byte picks the row.
    add("registry_records", "disk-entry-garbage", 3, [&[0u8][..], &[0xff; 12]].concat());
    add("registry_records", "disk-entry-valid", 3, [vec![0u8], entry.encode()].concat());
    add("registry_records", "disk-origin-garbage", 3, vec![2, 9, 9, 9]);
    add("registry_records", "disk-budget-garbage", 3, vec![4, 1]);

    // ipc_channel_link: operations (see its body) of a renderer on the ipc-channel link.
    let link_message = |operation: u8, bytes: &[u8]| {
        [vec![operation], (bytes.len() as u16).to_le_bytes().to_vec(), bytes.to_vec()].concat()
    };
    let own = |request: u64, create: bool| RendererToBroker::GetFileHandle {
        request: RequestId(request),
        frame: FrameId(1),
        hash,
        create,
        origins: OriginsOption::Omitted,
    };
    let own_get = cos_ipc::encode(&own(1, false)).unwrap();
    let own_create = cos_ipc::encode(&own(1, true)).unwrap();
    let writable = cos_ipc::encode(&RendererToBroker::Call {
        frame: FrameId(1),
        call: HandleCall::CreateWritable { request: RequestId(2), handle: HandleId(1) },
    })
    .unwrap();
    let foreign = cos_ipc::encode(&RendererToBroker::GetFileHandle {
        request: RequestId(1),
        frame: FrameId(2),
        hash,
        create: false,
        origins: OriginsOption::Omitted,
    })
    .unwrap();
    let write = cos_ipc::encode(&WriterFrame::Write { position: None, data: b"some bytes" }).unwrap();
    let close = cos_ipc::encode(&WriterFrame::Close).unwrap();
    add("ipc_channel_link", "read", 0, [link_message(0, &own_get)[1..].to_vec(), vec![2]].concat());
    add("ipc_channel_link", "foreign-frame", 0, link_message(0, &foreign)[1..].to_vec());
    add("ipc_channel_link", "undecodable", 0, link_message(0, &[0xff; 9])[1..].to_vec());
    add("ipc_channel_link", "oversized", 3, vec![0]);
    let writer = [link_message(0, &own_create), vec![2], link_message(0, &writable), vec![2]].concat();
    add(
        "ipc_channel_link",
        "write-and-close",
        0,
        [&writer[1..], &link_message(1, &write), &link_message(1, &close), &[2][..]].concat(),
    );
    add("ipc_channel_link", "write-oversized", 0, [&writer[1..], &link_message(1, &write), &[3, 1][..]].concat());
    add("ipc_channel_link", "write-garbage", 0, [&writer[1..], &link_message(1, &[0xee; 5])[..], &[2][..]].concat());

    for (target, name, bytes) in seeds {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
