//! Fault injection: every write, sync and rename of the blob store and the registry can be made
//! to fail (a full disk, `EIO` on write, a failed `fsync`, a failed `rename`). For every injection
//! point of a store, the store fails with a clear web error — `QuotaExceededError` for a full
//! disk, `UnknownError` otherwise — nothing partial is visible, no swap file is left, and once the
//! fault has cleared the next store succeeds (a registry that failed mid-commit is reopened by the
//! next transaction, which redb requires).

use cos_common::{CallerContext, CosError, Origin, Partition, QuotaScope};
use cos_storage_service::{CreateOptions, Fault, FaultInjector, ServiceConfig, StorageService};
use cos_test_support::callers::hash_of;
use cos_test_support::rng::pattern;
use cos_test_support::storage::{read, store_in_pieces};

/// Large enough for the writer's I/O thread (past 2 MiB) and several writes.
fn content(seed: u64) -> Vec<u8> {
    pattern(seed, 5_000_000)
}

/// Written in 1 MiB pieces, so that a store makes several writes to fail.
fn store(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> Result<(), CosError> {
    store_in_pieces(service, who, bytes, CreateOptions::same_site(), 1 << 20).map(drop)
}

fn every_injection_point_of_a_store_fails_cleanly(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let injector = FaultInjector::new();
    let service = StorageService::open(ServiceConfig::new(dir.path()).with_fault_injector(injector.clone())).unwrap().0;
    let who = CallerContext::top_level(Origin::from_url("https://a.example").unwrap());
    let expected = match fault {
        Fault::NoSpace => CosError::QuotaExceeded(QuotaScope::Global),
        _ => CosError::Unknown,
    };
    let mut points = 0u64;
    let mut whole_after_fault = 0;
    for skip in 0.. {
        let bytes = content(skip + 1);
        injector.arm(fault, skip);
        let before = injector.injected();
        let result = store(&service, &who, &bytes);
        if injector.injected() == before {
            // Past the last point: the store never reached the armed operation.
            injector.disarm();
            assert_eq!(result, Ok(()), "{fault:?}: a store without a fault succeeds");
            break;
        }
        points += 1;
        assert_eq!(result, Err(expected.clone()), "{fault:?} at point {skip}");
        // Nothing of it is visible, and no swap file is left.
        let swap = std::fs::read_dir(dir.path().join("cos/swap")).unwrap().count();
        assert_eq!(swap, 0, "{fault:?} at point {skip}: a swap file was left");
        // The fault has cleared. Nothing partial is visible: the entry is absent or — when the
        // registry's commit reached the disk although a write or fsync of it reported failure —
        // whole.
        match read(&service, &who, &bytes) {
            Err(CosError::NotFound) => {
                assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(&bytes)).unwrap(), None);
            }
            Ok(read) => {
                assert!(read == bytes, "{fault:?} at point {skip}: a whole entry");
                whole_after_fault += 1;
            }
            Err(other) => panic!("{fault:?} at point {skip}: reading afterwards gave {other:?}"),
        }
        assert_eq!(store(&service, &who, &bytes), Ok(()), "{fault:?} at point {skip}: the next store succeeds");
        assert!(read(&service, &who, &bytes).unwrap() == bytes, "{fault:?} at point {skip}: reads back");
    }
    println!("{fault:?}: {points} injection points, {whole_after_fault} left the entry whole");
    assert!(points > 0, "{fault:?} was never injected");
}

#[test]
fn a_full_disk_is_quota_exceeded_at_every_point() {
    every_injection_point_of_a_store_fails_cleanly(Fault::NoSpace);
}

#[test]
fn a_failing_write_is_unknown_error_at_every_point() {
    every_injection_point_of_a_store_fails_cleanly(Fault::WriteFailed);
}

#[test]
fn a_failing_fsync_is_unknown_error_at_every_point() {
    every_injection_point_of_a_store_fails_cleanly(Fault::SyncFailed);
}

#[test]
fn a_failing_rename_is_unknown_error_at_every_point() {
    every_injection_point_of_a_store_fails_cleanly(Fault::RenameFailed);
}

/// Clearing site data (one registry transaction, then unlinks) under every write and sync fault:
/// it fails (out of space for a full disk), leaves the entry whole or gone, and succeeds once the
/// fault has cleared.
#[test]
fn clear_site_data_fails_whole_at_every_point() {
    for fault in [Fault::WriteFailed, Fault::SyncFailed, Fault::NoSpace] {
        let dir = tempfile::tempdir().unwrap();
        let injector = FaultInjector::new();
        let service =
            StorageService::open(ServiceConfig::new(dir.path()).with_fault_injector(injector.clone())).unwrap().0;
        let who = CallerContext::top_level(Origin::from_url("https://a.example").unwrap());
        let mut points = 0;
        for skip in 0.. {
            let bytes = content(1000 + skip);
            assert_eq!(store(&service, &who, &bytes), Ok(()));
            injector.arm(fault, skip);
            let result = service.clear_site_data(Partition::Regular, who.origin());
            if injector.injected() == points {
                injector.disarm();
                assert!(result.is_ok(), "{fault:?}: a clear without a fault succeeds");
                break;
            }
            points += 1;
            let error = result.expect_err("the fault fails the clear");
            assert_eq!(error.is_out_of_space(), fault == Fault::NoSpace, "{fault:?} at point {skip}: {error}");
            // Whole or nothing: the entry is still stored (the transaction did not land) or gone
            // (it landed although a write or fsync of it reported failure).
            match read(&service, &who, &bytes) {
                Ok(read) => assert!(read == bytes, "{fault:?} at point {skip}: the entry is intact"),
                Err(CosError::NotFound) => {}
                Err(other) => panic!("{fault:?} at point {skip}: {other:?}"),
            }
            let cleared = service.clear_site_data(Partition::Regular, who.origin());
            assert!(cleared.is_ok(), "{fault:?} at point {skip}: the next clear succeeds");
            assert_eq!(read(&service, &who, &bytes), Err(CosError::NotFound));
        }
        println!("clear-site-data, {fault:?}: {points} injection points");
        assert!(points > 0, "{fault:?} was never injected");
    }
}
