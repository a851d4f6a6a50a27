//! End-to-end behaviour of the in-process storage service on a real directory.

use std::path::Path;

use cos_common::{
    AllowOriginCeiling, CallerContext, ContentHash, CosError, DataErrorKind, NotAllowedKind, OffTheRecordProfileId,
    OriginsOption, Partition, QuotaScope,
};
use cos_storage_service::{
    CreateOptions, GateConfig, GreaseMode, HandleRequest, PublicHashList, StorageLimits, StorageService, StoreError,
};
use cos_test_support::callers::{caller, hash_of, origin};
use cos_test_support::storage::{Profile, read_hash as read};
use sha2::{Digest, Sha256};

/// A Public Hash List with GREASE switched off (its own tests live in `gates`), so that these
/// tests are deterministic.
fn list_without_grease(list: PublicHashList) -> GateConfig {
    GateConfig { public_hash_list: Some(list), grease: GreaseMode::ForTests(false), ..GateConfig::default() }
}

/// Stores `bytes` and checks that the create handle may read what it wrote.
fn store(service: &StorageService, who: &CallerContext, bytes: &[u8], options: CreateOptions) -> Result<(), CosError> {
    let handle = service.get_file_handle(who, hash_of(bytes), HandleRequest::Create(options))?;
    let mut writer = handle.create_writable()?;
    writer.write(bytes)?;
    writer.close()?;
    assert!(handle.may_read());
    Ok(())
}

fn store_same_site(service: &StorageService, who: &CallerContext, bytes: &[u8]) {
    store(service, who, bytes, CreateOptions::same_site()).unwrap();
}

fn list(origins: &[&str]) -> OriginsOption {
    OriginsOption::List(origins.iter().map(|o| origin(o)).collect())
}

fn ceiling(origins: &[&str]) -> AllowOriginCeiling {
    AllowOriginCeiling::from_origins(origins.iter().map(|o| origin(o)))
}

const A: &str = "https://app.a.example";

// --- Checklist 2, 3, 10: round trip, misses, in-flight writes -------------------------------

#[test]
fn never_stored_hash_is_not_found() {
    let profile = Profile::new();
    let service = profile.open();
    assert_eq!(read(&service, &caller(A), hash_of(b"nothing")).unwrap_err(), CosError::NotFound);
}

#[test]
fn create_write_close_read_round_trips_exact_bytes() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    store_same_site(&service, &caller(A), &bytes);
    let file = service.get_file_handle(&caller(A), hash_of(&bytes), HandleRequest::Read).unwrap().get_file().unwrap();
    assert_eq!(file.size(), bytes.len() as u64);
    assert_eq!(file.read_all().unwrap(), bytes);
    assert_eq!(file.read_range(99_990, 100).unwrap(), &bytes[99_990..]);
    assert_eq!(profile.swap_files(), 0);
    assert!(profile.blob_path(&hash_of(&bytes)).is_file());
}

#[test]
fn read_during_in_flight_write_is_not_found_then_readable_after_close() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"model weights".as_slice();
    let handle =
        service.get_file_handle(&caller(A), hash_of(bytes), HandleRequest::Create(CreateOptions::same_site())).unwrap();
    let mut writer = handle.create_writable().unwrap();
    writer.write(bytes).unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(bytes)).unwrap_err(), CosError::NotFound);
    writer.close().unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(bytes)).unwrap(), bytes);
}

// --- Checklist 9: per-handle "may read" ------------------------------------------------------

#[test]
fn create_handles_are_unreadable_until_their_own_write_verifies() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"per-handle".as_slice();
    let create = || {
        service.get_file_handle(&caller(A), hash_of(bytes), HandleRequest::Create(CreateOptions::same_site())).unwrap()
    };
    let first = create();
    let second = create();
    let not_readable = CosError::NotAllowed(NotAllowedKind::HandleNotReadable);
    assert_eq!(first.get_file().err(), Some(not_readable.clone()));
    let mut writer = first.create_writable().unwrap();
    writer.write(bytes).unwrap();
    writer.close().unwrap();
    assert_eq!(first.get_file().unwrap().read_all().unwrap(), bytes);
    assert_eq!(second.get_file().err(), Some(not_readable.clone()), "the entry exists, but this handle never wrote");
    // Another origin's create handle cannot read an entry it did not write.
    let other = service
        .get_file_handle(
            &caller("https://b.example"),
            hash_of(bytes),
            HandleRequest::Create(CreateOptions::same_site()),
        )
        .unwrap();
    assert_eq!(other.get_file().err(), Some(not_readable));
}

#[test]
fn read_handles_cannot_write() {
    let profile = Profile::new();
    let service = profile.open();
    store_same_site(&service, &caller(A), b"x");
    let handle = service.get_file_handle(&caller(A), hash_of(b"x"), HandleRequest::Read).unwrap();
    assert!(!handle.is_create());
    assert_eq!(handle.create_writable().err(), Some(CosError::NotAllowed(NotAllowedKind::HandleNotWritable)));
    assert!(handle.is_same_entry(&service.get_file_handle(&caller(A), hash_of(b"x"), HandleRequest::Read).unwrap()));
}

// --- Checklist 11-16: verification ---------------------------------------------------------

#[test]
fn mismatch_is_data_error_stores_nothing_and_a_later_correct_write_succeeds() {
    let profile = Profile::new();
    let service = profile.open();
    let good = b"the real bytes".as_slice();
    let handle =
        service.get_file_handle(&caller(A), hash_of(good), HandleRequest::Create(CreateOptions::same_site())).unwrap();
    let mut writer = handle.create_writable().unwrap();
    writer.write(b"the fake bytes").unwrap();
    assert_eq!(writer.close().unwrap_err(), CosError::Data(DataErrorKind::HashMismatch));
    assert!(!handle.may_read());
    assert_eq!(read(&service, &caller(A), hash_of(good)).unwrap_err(), CosError::NotFound);
    assert_eq!(profile.swap_files(), 0);
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 0);
    let mut retry = handle.create_writable().unwrap();
    retry.write(good).unwrap();
    retry.close().unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(good)).unwrap(), good);
}

#[test]
fn concurrent_wrong_and_right_writers_are_judged_alone() {
    let profile = Profile::new();
    let service = profile.open();
    let good = vec![42u8; 3 << 20];
    let mut bad = good.clone();
    bad[1_000_000] ^= 1;
    let handle = |who: &str| {
        service
            .get_file_handle(&caller(who), hash_of(&good), HandleRequest::Create(CreateOptions::same_site()))
            .unwrap()
    };
    let (right, wrong) = (handle(A), handle("https://b.example"));
    let mut right_writer = right.create_writable().unwrap();
    let mut wrong_writer = wrong.create_writable().unwrap();
    for (r, w) in good.chunks(1 << 20).zip(bad.chunks(1 << 20)) {
        wrong_writer.write(w).unwrap();
        right_writer.write(r).unwrap();
    }
    let threads = std::thread::scope(|s| {
        let a = s.spawn(move || right_writer.close());
        let b = s.spawn(move || wrong_writer.close());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(threads.0.is_ok());
    assert_eq!(threads.1.unwrap_err(), CosError::Data(DataErrorKind::HashMismatch));
    assert_eq!(read(&service, &caller(A), hash_of(&good)).unwrap(), good);
    assert_eq!(read(&service, &caller("https://b.example"), hash_of(&good)).unwrap_err(), CosError::NotFound);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn two_right_writers_of_one_hash_both_succeed_and_one_blob_exists() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = vec![7u8; 5 << 20];
    std::thread::scope(|s| {
        for who in [A, "https://b.example", "https://c.example"] {
            let (service, bytes) = (&service, &bytes);
            s.spawn(move || store_same_site(service, &caller(who), bytes));
        }
    });
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), bytes.len() as u64);
    let entry = service.inspect_entry(Partition::Regular, &hash_of(&bytes)).unwrap().unwrap();
    assert_eq!(entry.storing_origins.len(), 3);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn abandoned_create_handles_and_dropped_writers_block_nothing_and_leave_nothing() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = vec![1u8; 4 << 20];
    let abandoned = service
        .get_file_handle(&caller(A), hash_of(&bytes), HandleRequest::Create(CreateOptions::same_site()))
        .unwrap();
    let mut dropped = abandoned.create_writable().unwrap();
    dropped.write(&bytes[..3 << 20]).unwrap();
    let mut aborted = abandoned.create_writable().unwrap();
    aborted.write(&bytes).unwrap();
    // Writers of the same hash at the same time share one swap file.
    assert_eq!(profile.swap_files(), 1);
    aborted.abort();
    drop(dropped);
    assert_eq!(profile.swap_files(), 0);
    store_same_site(&service, &caller("https://b.example"), &bytes);
    assert_eq!(read(&service, &caller("https://b.example"), hash_of(&bytes)).unwrap().len(), bytes.len());
}

#[test]
fn verification_hashes_the_final_bytes_after_seeks_overwrites_and_truncates() {
    let profile = Profile::new();
    let service = profile.open();
    // Large enough that the I/O thread is running when the overwrites arrive.
    let target: Vec<u8> = (0..6u32 << 20).map(|i| (i % 253) as u8).collect();
    let handle = service
        .get_file_handle(&caller(A), hash_of(&target), HandleRequest::Create(CreateOptions::same_site()))
        .unwrap();
    let mut writer = handle.create_writable().unwrap();
    writer.write(&target[..4 << 20]).unwrap();
    writer.write(&[0xff; 1000]).unwrap(); // junk past the end, truncated away below
    writer.truncate(4 << 20).unwrap();
    writer.write_at(1 << 20, &[0u8; 4096]).unwrap(); // overwrite inside the hashed prefix
    writer.seek(5 << 20).unwrap();
    writer.write(&target[5 << 20..]).unwrap(); // leaves a zero gap, filled next
    writer.write_at(1 << 20, &target[1 << 20..(1 << 20) + 4096]).unwrap();
    writer.write_at(4 << 20, &target[4 << 20..5 << 20]).unwrap();
    assert_eq!(writer.size(), target.len() as u64);
    writer.close().unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(&target)).unwrap(), target);
}

#[test]
fn truncate_clamps_the_cursor_and_grows_with_zeros() {
    let profile = Profile::new();
    let service = profile.open();
    let expected = b"abc\0\0".as_slice();
    let handle = service
        .get_file_handle(&caller(A), hash_of(expected), HandleRequest::Create(CreateOptions::same_site()))
        .unwrap();
    let mut writer = handle.create_writable().unwrap();
    writer.write(b"abcdef").unwrap();
    writer.truncate(3).unwrap();
    assert_eq!(writer.cursor(), 3);
    writer.truncate(5).unwrap();
    assert_eq!(writer.cursor(), 3);
    writer.close().unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(expected)).unwrap(), expected);
}

#[test]
fn an_empty_write_past_the_end_zero_fills_up_to_its_position() {
    let profile = Profile::new();
    let service = profile.open();
    let expected = b"ab\0\0".as_slice();
    let handle = service
        .get_file_handle(&caller(A), hash_of(expected), HandleRequest::Create(CreateOptions::same_site()))
        .unwrap();
    let mut writer = handle.create_writable().unwrap();
    writer.write(b"ab").unwrap();
    writer.write_at(4, b"").unwrap();
    assert_eq!((writer.size(), writer.cursor()), (4, 4));
    writer.close().unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(expected)).unwrap(), expected);
}

#[test]
fn closing_with_nothing_written_is_data_error_except_for_the_empty_hash() {
    let profile = Profile::new();
    let service = profile.open();
    let handle =
        service.get_file_handle(&caller(A), hash_of(b"x"), HandleRequest::Create(CreateOptions::same_site())).unwrap();
    assert_eq!(handle.create_writable().unwrap().close().unwrap_err(), CosError::Data(DataErrorKind::NothingWritten));
    let empty =
        service.get_file_handle(&caller(A), hash_of(b""), HandleRequest::Create(CreateOptions::same_site())).unwrap();
    empty.create_writable().unwrap().close().unwrap();
    assert_eq!(read(&service, &caller(A), hash_of(b"")).unwrap(), b"");
}

#[test]
fn identical_rewrite_is_free_and_a_new_storer_is_charged_once() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = vec![3u8; 1000];
    store_same_site(&service, &caller(A), &bytes);
    store_same_site(&service, &caller(A), &bytes);
    assert_eq!(service.inspect_origin(Partition::Regular, &origin(A)).unwrap().charged_bytes, 1000);
    store_same_site(&service, &caller("https://b.example"), &bytes);
    store_same_site(&service, &caller("https://b.example"), &bytes);
    assert_eq!(service.inspect_origin(Partition::Regular, &origin("https://b.example")).unwrap().charged_bytes, 1000);
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 1000);
}

// --- Checklist 19-28: visibility -----------------------------------------------------------

#[test]
fn storing_and_same_site_origins_read_cross_site_never_does() {
    let profile = Profile::new();
    let service = profile.open();
    store_same_site(&service, &caller(A), b"same-site");
    let hash = hash_of(b"same-site");
    assert!(read(&service, &caller(A), hash).is_ok());
    assert!(read(&service, &caller("https://other.a.example:8443"), hash).is_ok());
    for outsider in ["https://b.example", "http://app.a.example", "https://a.example.evil"] {
        for _ in 0..3 {
            assert_eq!(read(&service, &caller(outsider), hash).unwrap_err(), CosError::NotFound, "{outsider}");
        }
    }
}

#[test]
fn listed_origins_inside_the_ceiling_read_others_do_not() {
    let profile = Profile::new();
    let service = profile.open();
    let options =
        CreateOptions::with_origins(list(&["https://b.example", "https://c.example"]), ceiling(&["https://b.example"]));
    store(&service, &caller(A), b"listed", options).unwrap();
    assert!(read(&service, &caller("https://b.example"), hash_of(b"listed")).is_ok());
    assert_eq!(read(&service, &caller("https://c.example"), hash_of(b"listed")).unwrap_err(), CosError::NotFound);
    assert_eq!(read(&service, &caller("https://d.example"), hash_of(b"listed")).unwrap_err(), CosError::NotFound);
}

#[test]
fn an_empty_ceiling_authorises_nobody_but_the_write_succeeds() {
    let profile = Profile::new();
    let service = profile.open();
    for header in [None, Some("*"), Some("https://b.example, garbage")] {
        let bytes = format!("ceiling {header:?}");
        let options =
            CreateOptions::with_origins(list(&["https://b.example"]), AllowOriginCeiling::from_header(header));
        store(&service, &caller(A), bytes.as_bytes(), options).unwrap();
        assert_eq!(
            read(&service, &caller("https://b.example"), hash_of(bytes.as_bytes())).unwrap_err(),
            CosError::NotFound
        );
        assert!(read(&service, &caller(A), hash_of(bytes.as_bytes())).is_ok());
    }
}

#[test]
fn global_entries_need_the_public_hash_list() {
    let profile = Profile::new();
    let on_list = b"on the public hash list".as_slice();
    let off_list = b"not on the list".as_slice();
    let phl = PublicHashList::from_hashes([hash_of(on_list)]);
    let service = StorageService::open(profile.config().with_gates(list_without_grease(phl))).unwrap().0;
    for bytes in [on_list, off_list] {
        store(
            &service,
            &caller(A),
            bytes,
            CreateOptions::with_origins(OriginsOption::Global, AllowOriginCeiling::empty()),
        )
        .unwrap();
    }
    assert_eq!(read(&service, &caller("https://b.example"), hash_of(on_list)).unwrap(), on_list);
    assert_eq!(read(&service, &caller("https://b.example"), hash_of(off_list)).unwrap_err(), CosError::NotFound);
    // Without a list the global grant fails closed.
    drop(service);
    let fail_closed = profile.open();
    assert_eq!(read(&fail_closed, &caller("https://b.example"), hash_of(on_list)).unwrap_err(), CosError::NotFound);
    assert!(read(&fail_closed, &caller("https://x.a.example"), hash_of(on_list)).is_ok());
}

#[test]
fn later_writes_widen_and_never_narrow() {
    let profile = Profile::new();
    let bytes = b"upgrade only".as_slice();
    let phl = PublicHashList::from_hashes([hash_of(bytes)]);
    let service = StorageService::open(profile.config().with_gates(list_without_grease(phl))).unwrap().0;
    let b_ceiling = ceiling(&["https://b.example", "https://c.example"]);
    store(&service, &caller(A), bytes, CreateOptions::with_origins(list(&["https://b.example"]), b_ceiling.clone()))
        .unwrap();
    // A non-storing origin that supplies the right bytes may widen the entry to "*".
    store(
        &service,
        &caller("https://z.example"),
        bytes,
        CreateOptions::with_origins(OriginsOption::Global, AllowOriginCeiling::empty()),
    )
    .unwrap();
    store(&service, &caller(A), bytes, CreateOptions::with_origins(list(&["https://c.example"]), b_ceiling)).unwrap();
    store(&service, &caller(A), bytes, CreateOptions::same_site()).unwrap();
    let entry = service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap().unwrap();
    assert!(entry.global);
    assert_eq!(entry.listed_origins, vec![origin("https://b.example"), origin("https://c.example")]);
    assert!(entry.storing_origins.contains(&origin("https://z.example")));
    assert!(read(&service, &caller("https://q.example"), hash_of(bytes)).is_ok());
}

#[test]
fn list_merge_beyond_100_drops_the_excess_and_succeeds() {
    let profile = Profile::new();
    let service = profile.open();
    let names: Vec<String> = (0..150).map(|i| format!("https://o{i}.example")).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let bytes = b"popular".as_slice();
    store(&service, &caller(A), bytes, CreateOptions::with_origins(list(&all[..80]), ceiling(&all))).unwrap();
    store(&service, &caller(A), bytes, CreateOptions::with_origins(list(&all[60..150]), ceiling(&all))).unwrap();
    let entry = service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap().unwrap();
    assert_eq!(entry.listed_origins.len(), 100);
    assert!(read(&service, &caller("https://o99.example"), hash_of(bytes)).is_ok());
    assert_eq!(read(&service, &caller("https://o100.example"), hash_of(bytes)).unwrap_err(), CosError::NotFound);
}

// --- Checklist 36-37: limits and clearing --------------------------------------------------

#[test]
fn per_origin_and_global_limits_reject_on_close_and_store_nothing() {
    let profile = Profile::new();
    // A share of 100 puts every writer below over its fair share: with nothing it alone stores,
    // it cannot make room by eviction, so the global cap refuses (tests/eviction.rs covers
    // eviction itself).
    let limits = StorageLimits { per_origin_bytes: 1000, total_bytes: 1500, share_bytes: 100 };
    let service = StorageService::open(profile.config().with_limits(limits)).unwrap().0;
    store_same_site(&service, &caller(A), &[1u8; 600]);
    assert_eq!(
        store(&service, &caller(A), &[2u8; 600], CreateOptions::same_site()).unwrap_err(),
        CosError::QuotaExceeded(QuotaScope::Origin)
    );
    assert_eq!(read(&service, &caller(A), hash_of(&[2u8; 600])).unwrap_err(), CosError::NotFound);
    store_same_site(&service, &caller("https://b.example"), &[3u8; 800]);
    assert_eq!(
        store(&service, &caller("https://c.example"), &[4u8; 200], CreateOptions::same_site()).unwrap_err(),
        CosError::QuotaExceeded(QuotaScope::Global)
    );
    // A new storer of existing bytes costs no disk, only its own quota.
    store_same_site(&service, &caller("https://c.example"), &[3u8; 800]);
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 1400);
    assert_eq!(profile.swap_files(), 0);
    // A single write that could never fit fails at once.
    let handle = service
        .get_file_handle(
            &caller("https://d.example"),
            hash_of(b"big"),
            HandleRequest::Create(CreateOptions::same_site()),
        )
        .unwrap();
    let mut writer = handle.create_writable().unwrap();
    assert_eq!(writer.write_at(1001, b"x").unwrap_err(), CosError::QuotaExceeded(QuotaScope::Origin));
    assert_eq!(
        writer.write(b"x").unwrap_err(),
        CosError::QuotaExceeded(QuotaScope::Origin),
        "the stream stays errored"
    );
    assert_eq!(writer.close().unwrap_err(), CosError::QuotaExceeded(QuotaScope::Origin));
}

#[test]
fn clear_site_data_revokes_and_collects() {
    let profile = Profile::new();
    let service = profile.open();
    let shared = b"shared by two".as_slice();
    let alone = b"stored by one".as_slice();
    let b = "https://b.example";
    store_same_site(&service, &caller(A), shared);
    store_same_site(&service, &caller(b), shared);
    store(&service, &caller(A), alone, CreateOptions::with_origins(list(&[b]), ceiling(&[b]))).unwrap();
    store(&service, &caller(b), b"b lists a", CreateOptions::with_origins(list(&[A]), ceiling(&[A]))).unwrap();

    let report = service.clear_site_data(Partition::Regular, &origin(A)).unwrap();
    assert_eq!((report.entries_released, report.entries_deleted), (2, 1));
    assert_eq!(report.bytes_freed, alone.len() as u64);
    assert!(read(&service, &caller(b), hash_of(shared)).is_ok(), "kept while another storer remains");
    assert_eq!(read(&service, &caller(b), hash_of(alone)).unwrap_err(), CosError::NotFound);
    assert!(!profile.blob_path(&hash_of(alone)).exists());
    assert_eq!(
        read(&service, &caller(A), hash_of(b"b lists a")).unwrap_err(),
        CosError::NotFound,
        "removed from lists"
    );
    assert_eq!(service.inspect_origin(Partition::Regular, &origin(A)).unwrap().charged_bytes, 0);

    service.clear_site_data(Partition::Regular, &origin(b)).unwrap();
    assert_eq!(read(&service, &caller(b), hash_of(shared)).unwrap_err(), CosError::NotFound);
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 0);
    assert_eq!(std::fs::read_dir(profile.root().join("blobs").join(hash_of(shared).shard())).unwrap().count(), 0);
}

// --- Checklist 39: off-the-record ----------------------------------------------------------

#[test]
fn off_the_record_sees_nothing_on_disk_and_leaves_nothing_behind() {
    let profile = Profile::new();
    let service = profile.open();
    store_same_site(&service, &caller(A), b"regular");
    let private = Partition::OffTheRecord(OffTheRecordProfileId(1));
    let private_caller = caller(A).in_partition(private);
    assert_eq!(read(&service, &private_caller, hash_of(b"regular")).unwrap_err(), CosError::NotFound);

    let secret = vec![9u8; 3 << 20];
    store_same_site(&service, &private_caller, &secret);
    assert_eq!(read(&service, &private_caller, hash_of(&secret)).unwrap(), secret);
    assert_eq!(read(&service, &caller(A), hash_of(&secret)).unwrap_err(), CosError::NotFound);
    assert!(!profile.blob_path(&hash_of(&secret)).exists());
    assert_eq!(profile.swap_files(), 0);
    let other_private = caller(A).in_partition(Partition::OffTheRecord(OffTheRecordProfileId(2)));
    assert_eq!(read(&service, &other_private, hash_of(&secret)).unwrap_err(), CosError::NotFound);

    service.close_off_the_record(OffTheRecordProfileId(1));
    assert_eq!(read(&service, &private_caller, hash_of(&secret)).unwrap_err(), CosError::NotFound);
    drop(service);
    let reopened = profile.open();
    assert_eq!(read(&reopened, &private_caller, hash_of(&secret)).unwrap_err(), CosError::NotFound);
    assert_eq!(read(&reopened, &caller(A), hash_of(&secret)).unwrap_err(), CosError::NotFound);
}

// --- Checklist 40: persistence and recovery ------------------------------------------------

#[test]
fn entries_grants_and_accounting_survive_a_restart() {
    let profile = Profile::new();
    let b = "https://b.example";
    {
        let service = profile.open();
        store(&service, &caller(A), b"persisted", CreateOptions::with_origins(list(&[b]), ceiling(&[b]))).unwrap();
        read(&service, &caller(A), hash_of(b"persisted")).unwrap();
    }
    let (service, report) = StorageService::open(profile.config()).unwrap();
    assert_eq!(report.entries, 1);
    assert!(!report.accounting_repaired);
    assert_eq!(read(&service, &caller(b), hash_of(b"persisted")).unwrap(), b"persisted");
    assert_eq!(read(&service, &caller("https://c.example"), hash_of(b"persisted")).unwrap_err(), CosError::NotFound);
    assert_eq!(service.inspect_origin(Partition::Regular, &origin(A)).unwrap().charged_bytes, 9);
    let entry = service.inspect_entry(Partition::Regular, &hash_of(b"persisted")).unwrap().unwrap();
    assert_eq!(entry.read_count, 1, "batched read times are flushed at shutdown");
    assert!(entry.last_read_ms >= entry.created_ms);
}

#[test]
fn a_clean_shutdown_lets_the_next_start_skip_reconciliation_and_a_crash_after_it_does_not() {
    let profile = Profile::new();
    {
        let service = profile.open();
        store_same_site(&service, &caller(A), b"kept across clean restarts");
        read(&service, &caller(A), hash_of(b"kept across clean restarts")).unwrap();
        service.shut_down_cleanly().unwrap();
    }
    let (service, report) = StorageService::open(profile.config()).unwrap();
    assert!(report.after_clean_shutdown, "{report:?}");
    assert_eq!(report.entries, 1);
    assert_eq!(
        read(&service, &caller(A), hash_of(b"kept across clean restarts")).unwrap(),
        b"kept across clean restarts"
    );
    let entry = service.inspect_entry(Partition::Regular, &hash_of(b"kept across clean restarts")).unwrap().unwrap();
    assert_eq!(entry.read_count, 1, "read times were written by the clean shutdown");
    // This run ends without a clean shutdown (a crash): the mark was cleared at start, so the
    // next start reconciles and finds the orphan left in between.
    store_same_site(&service, &caller(A), b"second");
    drop(service);
    let orphan = b"renamed, never committed";
    write_file(&profile.blob_path(&hash_of(orphan)), orphan);
    let (_, report) = StorageService::open(profile.config()).unwrap();
    assert!(!report.after_clean_shutdown, "{report:?}");
    assert_eq!((report.entries, report.orphan_blobs), (2, 1));
}

#[test]
fn a_second_service_cannot_open_the_same_profile() {
    let profile = Profile::new();
    let _first = profile.open();
    assert!(matches!(StorageService::open(profile.config()), Err(StoreError::RegistryLocked { .. })));
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn recovery_after_a_crash_between_swap_write_and_rename() {
    let profile = Profile::new();
    drop(profile.open());
    // A crash mid-write leaves swap files (one full, one partial) and nothing else.
    write_file(&profile.root().join("swap/123-0.tmp"), b"complete but never renamed");
    write_file(&profile.root().join("swap/123-1.tmp"), b"half");
    let (service, report) = StorageService::open(profile.config()).unwrap();
    assert_eq!(report.stale_swap_files, 2);
    assert_eq!(profile.swap_files(), 0);
    assert_eq!(read(&service, &caller(A), hash_of(b"complete but never renamed")).unwrap_err(), CosError::NotFound);
}

#[test]
fn recovery_after_a_crash_between_rename_and_registry_commit() {
    let profile = Profile::new();
    {
        let service = profile.open();
        store_same_site(&service, &caller(A), b"committed");
    }
    // The blob was renamed into place but the registry commit never happened.
    let orphan = b"renamed, never committed";
    write_file(&profile.blob_path(&hash_of(orphan)), orphan);
    // Junk that can never be a blob.
    write_file(&profile.root().join("blobs/zz/whatever"), b"?");
    write_file(&profile.root().join("blobs/00/not-a-hash"), b"?");
    let (service, report) = StorageService::open(profile.config()).unwrap();
    assert_eq!(report.orphan_blobs, 1);
    assert_eq!(report.entries, 1);
    assert!(!profile.blob_path(&hash_of(orphan)).exists());
    assert!(!profile.root().join("blobs/zz").exists());
    assert!(!profile.root().join("blobs/00/not-a-hash").exists());
    assert_eq!(read(&service, &caller(A), hash_of(orphan)).unwrap_err(), CosError::NotFound);
    assert_eq!(read(&service, &caller(A), hash_of(b"committed")).unwrap(), b"committed");
    // The orphan can be stored again normally.
    store_same_site(&service, &caller(A), orphan);
    assert_eq!(read(&service, &caller(A), hash_of(orphan)).unwrap(), orphan);
}

#[test]
fn recovery_drops_rows_whose_blob_is_missing_or_wrong_sized_and_fixes_accounting() {
    let profile = Profile::new();
    {
        let service = profile.open();
        store_same_site(&service, &caller(A), b"vanishes");
        store_same_site(&service, &caller(A), b"gets truncated");
        store_same_site(&service, &caller(A), b"survives");
    }
    std::fs::remove_file(profile.blob_path(&hash_of(b"vanishes"))).unwrap();
    std::fs::write(profile.blob_path(&hash_of(b"gets truncated")), b"gets").unwrap();
    let (service, report) = StorageService::open(profile.config()).unwrap();
    assert_eq!(report.rows_without_blob, 2);
    assert!(report.accounting_repaired);
    assert_eq!(read(&service, &caller(A), hash_of(b"vanishes")).unwrap_err(), CosError::NotFound);
    assert_eq!(read(&service, &caller(A), hash_of(b"gets truncated")).unwrap_err(), CosError::NotFound);
    assert_eq!(service.inspect_origin(Partition::Regular, &origin(A)).unwrap().charged_bytes, 8);
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 8);
    drop(service);
    let (_, clean) = StorageService::open(profile.config()).unwrap();
    assert_eq!(clean.rows_without_blob + clean.orphan_blobs + clean.stale_swap_files, 0);
    assert!(!clean.accounting_repaired);
}

#[test]
fn a_large_streamed_write_verifies_and_reads_back() {
    let profile = Profile::new();
    let service = profile.open();
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..48 {
        hasher.update(&chunk);
    }
    let hash = ContentHash::from_bytes(hasher.finalize().into());
    let handle = service.get_file_handle(&caller(A), hash, HandleRequest::Create(CreateOptions::same_site())).unwrap();
    let mut writer = handle.create_writable().unwrap();
    for _ in 0..48 {
        writer.write(&chunk).unwrap();
    }
    writer.close().unwrap();
    let file = handle.get_file().unwrap();
    assert_eq!(file.size(), 48 << 20);
    assert_eq!(file.read_range(47 << 20, 1 << 20).unwrap(), chunk);
}

// --- Revocation: a handle never outlives the grant it was issued on --------------------------

const B: &str = "https://b.example";

fn create_handle(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> cos_storage_service::FileHandle {
    service.get_file_handle(who, hash_of(bytes), HandleRequest::Create(CreateOptions::same_site())).unwrap()
}

#[test]
fn an_origin_that_cleared_its_site_data_cannot_ask_through_an_old_handle_who_else_stores_the_entry() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"does anyone else still store me?".as_slice();
    // A stores H through a handle it keeps, B stores the same bytes.
    let kept = create_handle(&service, &caller(A), bytes);
    let mut writer = kept.create_writable().unwrap();
    writer.write(bytes).unwrap();
    writer.close().unwrap();
    store_same_site(&service, &caller(B), bytes);
    let kept_reader = service.get_file_handle(&caller(A), hash_of(bytes), HandleRequest::Read).unwrap();
    assert_eq!(kept.get_file().unwrap().read_all().unwrap(), bytes);
    // A clears its own data: the entry lives on (B stores it), A's grant is gone, and so are its
    // handles: each answers exactly what a miss answers, every time.
    service.clear_site_data(Partition::Regular, &origin(A)).unwrap();
    for _ in 0..3 {
        assert_eq!(kept.get_file().err(), Some(CosError::NotFound));
        assert_eq!(kept_reader.get_file().err(), Some(CosError::NotFound));
        assert_eq!(kept.create_writable().err(), Some(CosError::NotFound));
    }
    assert_eq!(read(&service, &caller(A), hash_of(bytes)).unwrap_err(), CosError::NotFound, "a fresh lookup too");
    assert_eq!(read(&service, &caller(B), hash_of(bytes)).unwrap(), bytes, "B is untouched");
}

#[test]
fn a_writer_whose_handle_was_revoked_cannot_commit() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"written across a clear".as_slice();
    let handle = create_handle(&service, &caller(A), bytes);
    let mut writer = handle.create_writable().unwrap();
    writer.write(bytes).unwrap();
    service.clear_site_data(Partition::Regular, &origin(A)).unwrap();
    assert_eq!(writer.close().unwrap_err(), CosError::Abort);
    assert_eq!(read(&service, &caller(A), hash_of(bytes)).unwrap_err(), CosError::NotFound, "nothing committed");
    assert_eq!(service.inspect_origin(Partition::Regular, &origin(A)).unwrap().charged_bytes, 0);
    // A handle asked for after the clear writes normally.
    store_same_site(&service, &caller(A), bytes);
}

#[test]
fn deleting_an_entry_revokes_every_handle_that_reads_it_even_once_it_is_stored_again() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"deleted by the user".as_slice();
    store_same_site(&service, &caller(A), bytes);
    let reader = service.get_file_handle(&caller(A), hash_of(bytes), HandleRequest::Read).unwrap();
    let unwritten = create_handle(&service, &caller(A), bytes);
    assert!(service.delete_entry(Partition::Regular, &hash_of(bytes)).unwrap());
    store_same_site(&service, &caller(A), bytes);
    assert_eq!(reader.get_file().err(), Some(CosError::NotFound), "the old handle stays revoked");
    assert!(reader.is_revoked() && !unwritten.is_revoked(), "a create handle that never wrote may still write");
    assert_eq!(read(&service, &caller(A), hash_of(bytes)).unwrap(), bytes, "a new handle reads the new entry");
}

#[test]
fn a_same_site_grant_goes_with_the_origin_it_came_from_a_listed_one_stays() {
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"same-site and listed".as_slice();
    let options = CreateOptions::with_origins(list(&["https://listed.example"]), ceiling(&["https://listed.example"]));
    store(&service, &caller(A), bytes, options).unwrap();
    store_same_site(&service, &caller(B), bytes);
    let sibling =
        service.get_file_handle(&caller("https://www.a.example"), hash_of(bytes), HandleRequest::Read).unwrap();
    let listed =
        service.get_file_handle(&caller("https://listed.example"), hash_of(bytes), HandleRequest::Read).unwrap();
    service.clear_site_data(Partition::Regular, &origin(A)).unwrap();
    assert_eq!(sibling.get_file().err(), Some(CosError::NotFound), "its grant came from the cleared origin");
    assert_eq!(listed.get_file().unwrap().read_all().unwrap(), bytes, "clearing A does not unlist anyone else");
}

// --- Bytes in flight count against the limits ------------------------------------------------

#[test]
fn an_origins_writers_cannot_hold_more_swap_than_its_limit() {
    let profile = Profile::new();
    let limits = StorageLimits { per_origin_bytes: 1 << 20, total_bytes: 64 << 20, share_bytes: 64 << 20 };
    let service = StorageService::open(profile.config().with_limits(limits)).unwrap().0;
    let chunk = vec![7u8; 256 << 10];
    let mut writers = Vec::new();
    let mut refused = None;
    for i in 0..16 {
        let handle = create_handle(&service, &caller(A), format!("target {i}").as_bytes());
        let mut writer = handle.create_writable().unwrap();
        if let Err(error) = writer.write(&chunk) {
            refused = Some((i, error));
            break;
        }
        writers.push((handle, writer));
    }
    assert_eq!(refused, Some((4, CosError::QuotaExceeded(QuotaScope::Origin))), "four quarters of 1 MiB, then no more");
    assert_eq!(service.inspect_bytes_in_flight(Partition::Regular).unwrap(), 1 << 20);
    // Another origin has its own limit; an abort gives the bytes back.
    let other = create_handle(&service, &caller(B), b"b's target");
    other.create_writable().unwrap().write(&chunk).unwrap();
    writers.pop();
    let handle = create_handle(&service, &caller(A), b"after an abort");
    handle.create_writable().unwrap().write(&chunk).unwrap();
    drop(writers);
    assert_eq!(service.inspect_bytes_in_flight(Partition::Regular).unwrap(), 0, "released with their writers");
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn off_the_record_truncates_cannot_grow_memory_past_the_partitions_total() {
    let profile = Profile::new();
    let mut config = profile.config();
    // Three origins, each allowed 64 MiB, in a partition of 128 MiB: the third 64 MiB buffer is
    // refused before it is allocated (the browser's default is 1 GiB in 2 GiB: the same rule).
    config.off_the_record_limits =
        StorageLimits { per_origin_bytes: 64 << 20, total_bytes: 128 << 20, share_bytes: 128 << 20 };
    let service = StorageService::open(config).unwrap().0;
    let partition = Partition::OffTheRecord(OffTheRecordProfileId(3));
    let mut writers = Vec::new();
    let mut results = Vec::new();
    for who in ["https://one.example", "https://two.example", "https://three.example"] {
        let who = caller(who).in_partition(partition);
        let handle = create_handle(&service, &who, b"never written in full");
        let mut writer = handle.create_writable().unwrap();
        results.push(writer.truncate(64 << 20));
        writers.push((handle, writer));
    }
    assert_eq!(results, [Ok(()), Ok(()), Err(CosError::QuotaExceeded(QuotaScope::Global))]);
    assert_eq!(service.inspect_bytes_in_flight(partition).unwrap(), 128 << 20);
    // The same origin cannot hold two of them either.
    let again = create_handle(&service, &caller("https://one.example").in_partition(partition), b"again");
    assert_eq!(again.create_writable().unwrap().truncate(1), Err(CosError::QuotaExceeded(QuotaScope::Origin)));
    drop(writers);
    assert_eq!(service.inspect_bytes_in_flight(partition).unwrap(), 0);
}

#[test]
fn an_origin_at_its_limit_may_still_rewrite_an_entry_it_stores() {
    let profile = Profile::new();
    let limits = StorageLimits { per_origin_bytes: 100, total_bytes: 1000, share_bytes: 1000 };
    let service = StorageService::open(profile.config().with_limits(limits)).unwrap().0;
    let bytes = [5u8; 100];
    store_same_site(&service, &caller(A), &bytes);
    store_same_site(&service, &caller(A), &bytes);
    let handle = create_handle(&service, &caller(A), b"anything new");
    assert_eq!(handle.create_writable().unwrap().write(b"x"), Err(CosError::QuotaExceeded(QuotaScope::Origin)));
}

// --- Storing origins per entry are bounded -----------------------------------------------------

#[test]
fn storing_origins_are_recorded_up_to_eight_per_site_and_a_thousand_per_entry() {
    use cos_storage_service::visibility::{MAX_STORING_ORIGINS, MAX_STORING_ORIGINS_PER_SITE};
    let profile = Profile::new();
    let service = profile.open();
    let partition = Partition::OffTheRecord(OffTheRecordProfileId(5));
    let bytes = b"popular".as_slice();
    let store_from =
        |url: &str| store(&service, &caller(url).in_partition(partition), bytes, CreateOptions::same_site());
    // One site with wildcard DNS: only the first eight are recorded (and charged); the others
    // still write and read as same-site origins.
    for i in 0..20 {
        store_from(&format!("https://s{i}.wildcard.example")).unwrap();
    }
    let entry = || service.inspect_entries(partition).unwrap().remove(0);
    assert_eq!(entry().storing_origins.len(), MAX_STORING_ORIGINS_PER_SITE as usize);
    let unrecorded = caller("https://s19.wildcard.example").in_partition(partition);
    assert_eq!(read(&service, &unrecorded, hash_of(bytes)).unwrap(), bytes);
    assert_eq!(service.inspect_origin(partition, unrecorded.origin()).unwrap().charged_bytes, 0);
    // Distinct sites fill the entry up to its bound; one more site is refused, nothing changes.
    for i in 0..MAX_STORING_ORIGINS - MAX_STORING_ORIGINS_PER_SITE as usize {
        store_from(&format!("https://site{i}.example")).unwrap();
    }
    assert_eq!(entry().storing_origins.len(), MAX_STORING_ORIGINS);
    assert_eq!(store_from("https://one-too-many.example"), Err(CosError::QuotaExceeded(QuotaScope::Entry)));
    assert_eq!(store_from("https://site3.example"), Ok(()), "an identical rewrite by a storer is fine");
    assert_eq!(entry().storing_origins.len(), MAX_STORING_ORIGINS);
}

// --- The access index ----------------------------------------------------------------------------

#[test]
fn a_registry_without_the_access_index_is_migrated_and_damage_to_it_is_repaired_by_recovery() {
    let profile = Profile::new();
    let bytes = b"indexed".as_slice();
    {
        let service = profile.open();
        store(&service, &caller(A), bytes, CreateOptions::with_origins(list(&[B]), ceiling(&[B]))).unwrap();
        service.shut_down_cleanly().unwrap();
    }
    let registry = profile.root().join("registry.redb");
    let heads: redb::TableDefinition<&[u8; 32], &[u8]> = redb::TableDefinition::new("entry_heads");
    let readers: redb::TableDefinition<&[u8], u32> = redb::TableDefinition::new("entry_readers");
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    // As an older build left it: schema 1, no index.
    {
        let db = redb::Database::open(&registry).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(heads).unwrap();
        txn.delete_table(readers).unwrap();
        txn.open_table(meta).unwrap().insert("schema", 1).unwrap();
        txn.commit().unwrap();
    }
    {
        let service = profile.open();
        assert_eq!(read(&service, &caller(B), hash_of(bytes)).unwrap(), bytes, "the index was built at open");
        assert_eq!(read(&service, &caller("https://www.a.example"), hash_of(bytes)).unwrap(), bytes);
        assert_eq!(read(&service, &caller("https://c.example"), hash_of(bytes)).unwrap_err(), CosError::NotFound);
    }
    // Damage: the listed reader's row goes and a stranger's appears (a crash leaves the clean mark
    // unset, so the next open reconciles).
    {
        let db = redb::Database::open(&registry).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(readers).unwrap();
            let mut listed_b = hash_of(bytes).as_bytes().to_vec();
            listed_b.extend_from_slice(format!("L{B}").as_bytes());
            assert!(table.remove(listed_b.as_slice()).unwrap().is_some());
            let mut stranger = hash_of(bytes).as_bytes().to_vec();
            stranger.extend_from_slice(b"Lhttps://c.example");
            table.insert(stranger.as_slice(), 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let (service, report) = StorageService::open(profile.config()).unwrap();
    assert!(report.index_repaired, "{report:?}");
    assert_eq!(read(&service, &caller(B), hash_of(bytes)).unwrap(), bytes);
    assert_eq!(read(&service, &caller("https://c.example"), hash_of(bytes)).unwrap_err(), CosError::NotFound);
}

#[test]
fn a_listed_origin_grants_its_site_ungated_and_an_older_index_is_rebuilt_to_say_so() {
    let profile = Profile::new();
    let bytes = b"listed by site".as_slice();
    let listed = "https://a.site.example";
    // A Public Hash List that does not name the entry, and a budget of one probe: a read that
    // passes could only have come through the list grant, and never costs a probe.
    let mut config = profile.config();
    config.gates = GateConfig { probe_budget: 1, ..list_without_grease(PublicHashList::default()) };
    {
        let service = StorageService::open(config.clone()).unwrap().0;
        store(&service, &caller(A), bytes, CreateOptions::with_origins(list(&[listed]), ceiling(&[listed]))).unwrap();
        for _ in 0..3 {
            assert_eq!(read(&service, &caller("https://b.site.example"), hash_of(bytes)).unwrap(), bytes);
        }
        assert_eq!(read(&service, &caller(listed), hash_of(bytes)).unwrap(), bytes);
        assert_eq!(read(&service, &caller("https://other.example"), hash_of(bytes)).unwrap_err(), CosError::NotFound);
        assert_eq!(read(&service, &caller("http://b.site.example"), hash_of(bytes)).unwrap_err(), CosError::NotFound);
        service.shut_down_cleanly().unwrap();
    }
    // As the previous build left it: schema 2, whose list rows name exact origins.
    let registry = profile.root().join("registry.redb");
    let readers: redb::TableDefinition<&[u8], u32> = redb::TableDefinition::new("entry_readers");
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    {
        let db = redb::Database::open(&registry).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(readers).unwrap();
            let mut site_row = hash_of(bytes).as_bytes().to_vec();
            site_row.extend_from_slice(b"Lhttps://site.example");
            assert!(table.remove(site_row.as_slice()).unwrap().is_some(), "the list row names the site");
            let mut origin_row = hash_of(bytes).as_bytes().to_vec();
            origin_row.extend_from_slice(format!("L{listed}").as_bytes());
            table.insert(origin_row.as_slice(), 1).unwrap();
        }
        txn.open_table(meta).unwrap().insert("schema", 2).unwrap();
        txn.commit().unwrap();
    }
    let service = StorageService::open(config).unwrap().0;
    assert_eq!(read(&service, &caller("https://b.site.example"), hash_of(bytes)).unwrap(), bytes, "rebuilt at open");
    assert_eq!(read(&service, &caller("https://other.example"), hash_of(bytes)).unwrap_err(), CosError::NotFound);
}

// --- A close costs the same whether the bytes are new or already stored --------------------------

#[test]
fn an_identical_rewrite_installs_its_verified_bytes_as_a_new_write_does() {
    use std::os::unix::fs::MetadataExt;
    let profile = Profile::new();
    let service = profile.open();
    let bytes = b"installed either way".as_slice();
    store_same_site(&service, &caller(A), bytes);
    let before = std::fs::metadata(profile.blob_path(&hash_of(bytes))).unwrap().ino();
    store_same_site(&service, &caller(B), bytes);
    let after = std::fs::metadata(profile.blob_path(&hash_of(bytes))).unwrap().ino();
    assert_ne!(before, after, "the rewrite went through the same rename as the first write");
    assert_eq!(read(&service, &caller(A), hash_of(bytes)).unwrap(), bytes);
    assert_eq!(profile.swap_files(), 0);
}

// --- Off-the-record budgets end with their profile --------------------------------------------------

#[test]
fn closing_an_off_the_record_profile_discards_its_probe_budgets() {
    let profile = Profile::new();
    let mut config = profile.config();
    config.gates.probe_budget = 2;
    let service = StorageService::open(config).unwrap().0;
    let partition = Partition::OffTheRecord(OffTheRecordProfileId(9));
    let prober = caller("https://prober.example").in_partition(partition);
    let bytes = b"probed".as_slice();
    let store_global = || {
        store(
            &service,
            &caller(A).in_partition(partition),
            bytes,
            CreateOptions::with_origins(OriginsOption::Global, ceiling(&[])),
        )
        .unwrap()
    };
    store_global();
    service.set_public_hash_list(Some(PublicHashList::from_hashes([hash_of(bytes)])));
    // Spend the budget on two misses: the entry itself is then refused.
    read(&service, &prober, hash_of(b"miss 1")).unwrap_err();
    read(&service, &prober, hash_of(b"miss 2")).unwrap_err();
    let denied = (0..50).all(|_| read(&service, &prober, hash_of(bytes)).is_err());
    assert!(denied, "over budget");
    service.close_off_the_record(OffTheRecordProfileId(9));
    store_global();
    let read_once = (0..50).any(|_| read(&service, &prober, hash_of(bytes)).is_ok());
    assert!(read_once, "a profile opened again with the same id starts with a fresh budget");
}
