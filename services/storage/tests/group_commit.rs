//! Group commit: verified writes that reach the commit point together are committed in one
//! registry transaction, and each writer still gets the verdict it would have got alone (in the
//! order they arrived); a failure of what they share fails them all.
//!
//! The tests line the writers up deterministically: the regular partition's commits are held
//! (`StorageService::hold_commits`, a `testing` seam) while the writers close one after another,
//! each queued before the next starts, and released once all are queued.

use std::thread;
use std::time::{Duration, Instant};

use cos_common::{CallerContext, CosError, Partition, QuotaScope};
use cos_storage_service::{
    CommitOutcome, CreateOptions, Fault, FaultInjector, HandleRequest, StorageLimits, StorageService, WritableFile,
};
use cos_test_support::callers::{caller, hash_of, origin};
use cos_test_support::rng::pattern;
use cos_test_support::storage::{Profile, read, store};

/// An open writer for `bytes` with all of them written, ready to close.
fn written(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> WritableFile {
    let handle =
        service.get_file_handle(who, hash_of(bytes), HandleRequest::Create(CreateOptions::same_site())).unwrap();
    let mut writer = handle.create_writable().unwrap();
    writer.write(bytes).unwrap();
    writer
}

/// Waits until `n` verified writes are queued for the commit.
fn wait_queued(service: &StorageService, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.queued_commits() < n {
        assert!(Instant::now() < deadline, "the writers never reached the commit point");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Closes `writers` as one group, in this order, calling `meanwhile` once all are queued and
/// before the group commits. Returns each writer's verdict.
fn close_as_group(
    service: &StorageService,
    writers: Vec<WritableFile>,
    meanwhile: impl FnOnce(),
) -> Vec<Result<CommitOutcome, CosError>> {
    service.hold_commits(true);
    thread::scope(|scope| {
        let mut closing = Vec::new();
        for (queued, writer) in writers.into_iter().enumerate() {
            closing.push(scope.spawn(move || writer.close()));
            // One at a time, so that the queue's order is the order given.
            wait_queued(service, queued + 1);
        }
        meanwhile();
        service.hold_commits(false);
        closing.into_iter().map(|closing| closing.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_closes_share_one_registry_commit() {
    let profile = Profile::new();
    let service = profile.open_fresh();
    let writers: Vec<_> = (0..8u64)
        .map(|i| {
            let who = caller(&format!("https://site{i}.example"));
            (who.clone(), pattern(i + 1, 4096 + i as usize))
        })
        .collect();
    let open: Vec<_> = writers.iter().map(|(who, bytes)| written(&service, who, bytes)).collect();
    let before = service.registry_commits();
    let verdicts = close_as_group(&service, open, || {});
    let commits = service.registry_commits() - before;
    assert!(verdicts.iter().all(|verdict| matches!(verdict, Ok(outcome) if outcome.new_blob)), "{verdicts:?}");
    // Without grouping each close commits on its own: eight commits.
    assert!(commits < 8, "8 concurrent closes took {commits} registry commits");
    assert_eq!(commits, 1, "writers queued behind one leader share its transaction");
    // Durable and whole after a restart.
    drop(service);
    let service = profile.open();
    for (who, bytes) in &writers {
        assert_eq!(read(&service, who, bytes).unwrap(), *bytes);
    }
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn each_member_of_a_group_gets_its_own_verdict() {
    let limits = StorageLimits { per_origin_bytes: 1000, total_bytes: 1 << 30, share_bytes: 1 << 30 };
    let profile = Profile::with_limits(limits);
    let service = profile.open_fresh();
    let (a, b, c) = (caller("https://a.example"), caller("https://b.example"), caller("https://c.example"));
    let (bytes_a, bytes_b1, bytes_b2, bytes_c) = (pattern(1, 100), pattern(2, 600), pattern(3, 600), pattern(4, 100));
    // b's second writer opens before its first commits, so only the commit sees b over quota.
    let handle_b2 =
        service.get_file_handle(&b, hash_of(&bytes_b2), HandleRequest::Create(CreateOptions::same_site())).unwrap();
    let mut writer_b2 = handle_b2.create_writable().unwrap();
    store(&service, &b, &bytes_b1).unwrap();
    writer_b2.write(&bytes_b2).unwrap();
    let open = vec![written(&service, &a, &bytes_a), writer_b2, written(&service, &c, &bytes_c)];
    let before = service.registry_commits();
    let verdicts = close_as_group(&service, open, || {});
    assert_eq!(service.registry_commits() - before, 1);
    assert!(matches!(verdicts[0], Ok(ref outcome) if outcome.new_blob), "{verdicts:?}");
    assert_eq!(verdicts[1], Err(CosError::QuotaExceeded(QuotaScope::Origin)));
    assert!(matches!(verdicts[2], Ok(ref outcome) if outcome.new_blob), "{verdicts:?}");
    assert_eq!(read(&service, &a, &bytes_a).unwrap(), bytes_a);
    assert_eq!(read(&service, &c, &bytes_c).unwrap(), bytes_c);
    assert_eq!(read(&service, &b, &bytes_b2), Err(CosError::NotFound));
    assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(&bytes_b2)).unwrap(), None);
    let charged = |url| service.inspect_origin(Partition::Regular, &origin(url)).unwrap().charged_bytes;
    assert_eq!(
        (charged("https://a.example"), charged("https://b.example"), charged("https://c.example")),
        (100, 600, 100)
    );
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 800);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn eviction_in_a_group_counts_the_members_before_it() {
    let limits = StorageLimits { per_origin_bytes: 1000, total_bytes: 1000, share_bytes: 1000 };
    let profile = Profile::with_limits(limits);
    let service = profile.open_fresh();
    let (x, a, b) = (caller("https://x.example"), caller("https://a.example"), caller("https://b.example"));
    let (old, bytes_a, bytes_b) = (pattern(1, 600), pattern(2, 400), pattern(3, 300));
    store(&service, &x, &old).unwrap();
    let open = vec![written(&service, &a, &bytes_a), written(&service, &b, &bytes_b)];
    let verdicts = close_as_group(&service, open, || {});
    // a fits beside x (1000); b then needs room, which only x's entry (the least recently read)
    // can give, as it would had a committed first on its own.
    let (outcome_a, outcome_b) = (verdicts[0].clone().unwrap(), verdicts[1].clone().unwrap());
    assert_eq!((outcome_a.evicted_entries, outcome_b.evicted_entries, outcome_b.evicted_bytes), (0, 1, 600));
    assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(&old)).unwrap(), None);
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 700);
    assert_eq!(read(&service, &a, &bytes_a).unwrap(), bytes_a);
    assert_eq!(read(&service, &b, &bytes_b).unwrap(), bytes_b);
    assert!(!profile.blob_path(&hash_of(&old)).exists(), "the victim's blob is unlinked");
}

/// Closes four writers as one group while `fault` is armed to hit the group's registry commit
/// (the blobs' shard directories exist already, so the group's syncs are one per shard directory,
/// then the registry's). Returns the profile, the service and the writes.
fn group_with_failing_commit(fault: Fault) -> (Profile, StorageService, Vec<(CallerContext, Vec<u8>)>) {
    let profile = Profile::new();
    let injector = FaultInjector::new();
    let writers: Vec<_> =
        (0..4u64).map(|i| (caller(&format!("https://site{i}.example")), pattern(i + 10, 2048))).collect();
    let mut shards: Vec<_> = writers.iter().map(|(_, bytes)| hash_of(bytes).shard()).collect();
    shards.sort();
    shards.dedup();
    for shard in &shards {
        std::fs::create_dir_all(profile.root().join("blobs").join(shard.as_str())).unwrap();
    }
    let service = StorageService::open(profile.config().with_fault_injector(injector.clone())).unwrap().0;
    let open: Vec<_> = writers.iter().map(|(who, bytes)| written(&service, who, bytes)).collect();
    // Armed once every writer's own fdatasync is behind it: the next sync is a shard
    // directory's, the next write the registry's.
    let skip = if fault == Fault::SyncFailed { shards.len() as u64 } else { 0 };
    let verdicts = close_as_group(&service, open, || injector.arm(fault, skip));
    assert_eq!(injector.injected(), 1, "{fault:?}: the registry's commit met the fault");
    // None was answered success.
    assert!(verdicts.iter().all(|verdict| *verdict == Err(CosError::Unknown)), "{fault:?}: {verdicts:?}");
    assert_eq!(profile.swap_files(), 0);
    (profile, service, writers)
}

/// The next group after a failed one commits (the registry was reopened).
fn next_group_commits(service: &StorageService) {
    let again: Vec<_> =
        (0..3u64).map(|i| (caller(&format!("https://again{i}.example")), pattern(i + 20, 1024))).collect();
    let open: Vec<_> = again.iter().map(|(who, bytes)| written(service, who, bytes)).collect();
    let verdicts = close_as_group(service, open, || {});
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
    for (who, bytes) in &again {
        assert_eq!(read(service, who, bytes).unwrap(), *bytes);
    }
}

#[test]
fn a_failed_registry_write_fails_every_member_and_leaves_nothing() {
    let (_profile, service, writers) = group_with_failing_commit(Fault::WriteFailed);
    for (who, bytes) in &writers {
        assert_eq!(read(&service, who, bytes), Err(CosError::NotFound));
        assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap(), None);
    }
    next_group_commits(&service);
}

#[test]
fn a_failed_registry_fsync_fails_every_member() {
    let (profile, service, writers) = group_with_failing_commit(Fault::SyncFailed);
    // Whether a commit whose fsync reported failure reached the disk is unknown (its pages may
    // have been written all the same; ARCHITECTURE.md, "Disk faults"): the group is then whole
    // or absent together, never partly there, and each entry whole.
    let visible: Vec<bool> = writers
        .iter()
        .map(|(who, bytes)| match read(&service, who, bytes) {
            Ok(read) => {
                assert!(read == *bytes, "a whole entry");
                true
            }
            Err(error) => {
                assert_eq!(error, CosError::NotFound);
                false
            }
        })
        .collect();
    assert!(visible.iter().all(|v| *v) || visible.iter().all(|v| !*v), "the group is all or nothing: {visible:?}");
    next_group_commits(&service);
    // The same after a restart.
    drop(service);
    let service = profile.open();
    let after: Vec<bool> = writers.iter().map(|(who, bytes)| read(&service, who, bytes).is_ok()).collect();
    assert_eq!(after, visible);
}

#[test]
fn a_failed_shard_directory_sync_fails_every_member_and_leaves_nothing() {
    // A group syncs each shard directory it renamed into: a failure of any one of them (here
    // the second) fails every member, and nothing commits.
    let profile = Profile::new();
    let injector = FaultInjector::new();
    let writers: Vec<_> =
        (0..6u64).map(|i| (caller(&format!("https://site{i}.example")), pattern(i + 40, 3000))).collect();
    let mut shards: Vec<_> = writers.iter().map(|(_, bytes)| hash_of(bytes).shard()).collect();
    shards.sort();
    shards.dedup();
    assert!(shards.len() >= 3, "the writes land in several shard directories: {shards:?}");
    for shard in &shards {
        std::fs::create_dir_all(profile.root().join("blobs").join(shard.as_str())).unwrap();
    }
    let service = StorageService::open(profile.config().with_fault_injector(injector.clone())).unwrap().0;
    let open: Vec<_> = writers.iter().map(|(who, bytes)| written(&service, who, bytes)).collect();
    // Armed once every writer's own fdatasync is behind it: the second directory sync fails.
    let verdicts = close_as_group(&service, open, || injector.arm(Fault::SyncFailed, 1));
    assert_eq!(injector.injected(), 1, "a shard directory's sync met the fault");
    assert!(verdicts.iter().all(|verdict| *verdict == Err(CosError::Unknown)), "{verdicts:?}");
    assert_eq!(profile.swap_files(), 0);
    for (who, bytes) in &writers {
        assert_eq!(read(&service, who, bytes), Err(CosError::NotFound));
        assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap(), None);
    }
    next_group_commits(&service);
}

#[test]
fn a_group_of_rewrites_replaces_the_blobs_and_every_entry_stays_whole() {
    // Known bytes are installed again (the close costs the same): each rewrite renames over the
    // blob it replaces, which stays open until the group is answered. Every entry reads whole,
    // then and after a restart, in its many shard directories.
    let profile = Profile::new();
    let service = profile.open_fresh();
    let entries: Vec<Vec<u8>> = (0..8u64).map(|i| pattern(i + 60, 70_000 + i as usize)).collect();
    let first = caller("https://first.example");
    for bytes in &entries {
        store(&service, &first, bytes).unwrap();
    }
    let writers: Vec<_> = (0..8).map(|i| caller(&format!("https://again{i}.example"))).collect();
    let open: Vec<_> = writers.iter().zip(&entries).map(|(who, bytes)| written(&service, who, bytes)).collect();
    let verdicts = close_as_group(&service, open, || {});
    assert!(verdicts.iter().all(|verdict| matches!(verdict, Ok(outcome) if !outcome.new_blob)), "{verdicts:?}");
    for (who, bytes) in writers.iter().zip(&entries) {
        assert_eq!(read(&service, who, bytes).unwrap(), *bytes);
        assert_eq!(read(&service, &first, bytes).unwrap(), *bytes);
    }
    assert_eq!(profile.swap_files(), 0);
    drop(service);
    let service = profile.open();
    for (who, bytes) in writers.iter().zip(&entries) {
        assert_eq!(read(&service, who, bytes).unwrap(), *bytes);
    }
}
