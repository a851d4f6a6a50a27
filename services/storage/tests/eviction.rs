//! SPEC §7 eviction and the browser's inspection views, end to end on a real directory: least
//! recently read entries go first when new bytes would pass the global cap, an origin over its
//! fair share evicts only what it alone stores, a write that cannot fit evicts nothing, and the
//! accounting stays exact across evictions, deletions and restarts.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use cos_common::{AllowOriginCeiling, CosError, Origin, OriginsOption, Partition, QuotaScope};
use cos_storage_service::{
    CommitOutcome, CreateOptions, EntryInfo, HandleRequest, OriginInfo, OriginRecord, PublicHashList, RecoveryReport,
    StorageLimits, StorageService,
};
use cos_test_support::callers::{caller, hash_of, origin};
use cos_test_support::storage::{self, Profile};

const X: &str = "https://x.example";
const Y: &str = "https://y.example";
const Z: &str = "https://z.example";

/// `len` bytes of one value: distinct contents of a chosen size.
fn content(tag: u8, len: usize) -> Vec<u8> {
    vec![tag; len]
}

/// Two distinct contents of `len` bytes, the one with the lower hash first: when neither was
/// read and both were created in the same millisecond, the lower hash is evicted first, so a test
/// that protects the first by reading it can fail only through the read time.
fn ordered_pair(len: usize) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = (content(0xA1, len), content(0xB2, len));
    if hash_of(&a) < hash_of(&b) { (a, b) } else { (b, a) }
}

/// Waits until the wall clock's millisecond changes, so that the next recorded read time is
/// strictly later than every earlier one (read times have millisecond resolution).
fn next_millisecond() {
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let start = now();
    while now() <= start {
        std::thread::yield_now();
    }
}

/// A profile whose store has these limits.
fn limited(per_origin_bytes: u64, total_bytes: u64, share_bytes: u64) -> Profile {
    Profile::with_limits(StorageLimits { per_origin_bytes, total_bytes, share_bytes })
}

// The tests name callers by URL; the shared steps take their contexts.

fn store_with(
    service: &StorageService,
    who: &str,
    bytes: &[u8],
    options: CreateOptions,
) -> Result<CommitOutcome, CosError> {
    storage::store_with(service, &caller(who), bytes, options)
}

fn store(service: &StorageService, who: &str, bytes: &[u8]) -> Result<CommitOutcome, CosError> {
    storage::store(service, &caller(who), bytes)
}

fn read(service: &StorageService, who: &str, bytes: &[u8]) -> Result<Vec<u8>, CosError> {
    storage::read(service, &caller(who), bytes)
}

fn exists(service: &StorageService, bytes: &[u8]) -> bool {
    service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap().is_some()
}

fn charge(service: &StorageService, who: &str) -> OriginRecord {
    service.inspect_origin(Partition::Regular, &origin(who)).unwrap()
}

/// The registry's accounting equals what its entries add up to: the total is the sum of the
/// sizes, each origin's charge the sum over the entries it stores, and no one else is charged.
fn assert_accounting_exact(service: &StorageService) {
    let entries = service.inspect_entries(Partition::Regular).unwrap();
    let total: u64 = entries.iter().map(|e| e.size).sum();
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), total, "total bytes");
    let storers: BTreeSet<Origin> = entries.iter().flat_map(|e| e.storing_origins.iter().cloned()).collect();
    for storer in &storers {
        let mine: Vec<&EntryInfo> = entries.iter().filter(|e| e.storing_origins.contains(storer)).collect();
        let expected = OriginRecord { charged_bytes: mine.iter().map(|e| e.size).sum(), entries: mine.len() as u64 };
        assert_eq!(service.inspect_origin(Partition::Regular, storer).unwrap(), expected, "charge of {storer}");
    }
    let charged: BTreeSet<Origin> =
        service.inspect_origins(Partition::Regular).unwrap().into_iter().map(|o| o.origin).collect();
    assert_eq!(charged, storers, "exactly the storing origins are charged");
}

/// Reopens the store and checks that recovery found nothing to repair: every evicted or deleted
/// blob was unlinked and the accounting written with the eviction was already right.
fn assert_restart_is_clean(profile: &Profile, service: StorageService) -> StorageService {
    let entries = service.inspect_entries(Partition::Regular).unwrap().len();
    let total = service.inspect_total_bytes(Partition::Regular).unwrap();
    drop(service);
    assert_eq!(profile.blob_files(), entries, "one blob file per entry, none left behind");
    let (service, report) = profile.reopen();
    assert_eq!(report, RecoveryReport { entries, ..RecoveryReport::default() }, "recovery repaired nothing");
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), total);
    assert_accounting_exact(&service);
    service
}

// --- Order: least recently read first ------------------------------------------------------

#[test]
fn the_entry_read_recently_survives_and_the_unread_one_goes() {
    let profile = limited(1000, 200, 1000);
    let service = profile.open_fresh();
    // `older` is created first and has the lower hash: by creation or by hash it would go first.
    let (older, newer) = ordered_pair(100);
    store(&service, X, &older).unwrap();
    store(&service, X, &newer).unwrap();
    read(&service, X, &older).unwrap();
    service.flush().unwrap();

    let third = content(3, 100);
    let outcome = store(&service, Y, &third).unwrap();
    assert_eq!((outcome.evicted_entries, outcome.evicted_bytes), (1, 100));
    assert!(exists(&service, &older), "read recently: kept");
    assert!(!exists(&service, &newer), "never read: evicted");
    assert_eq!(read(&service, X, &newer).unwrap_err(), CosError::NotFound);
    assert!(!profile.blob_path(&hash_of(&newer)).exists(), "the evicted blob is unlinked");
    assert_eq!(read(&service, X, &older).unwrap(), older);
    assert_eq!(read(&service, Y, &third).unwrap(), third);
    assert_eq!(charge(&service, X), OriginRecord { charged_bytes: 100, entries: 1 });
    assert_accounting_exact(&service);
    assert_restart_is_clean(&profile, service);
}

#[test]
fn between_two_read_entries_the_one_read_longer_ago_goes() {
    let profile = limited(1000, 200, 1000);
    let service = profile.open_fresh();
    let (older, newer) = ordered_pair(100);
    store(&service, X, &older).unwrap();
    store(&service, X, &newer).unwrap();
    read(&service, X, &newer).unwrap();
    next_millisecond();
    read(&service, X, &older).unwrap();

    store(&service, Y, &content(3, 100)).unwrap();
    assert!(exists(&service, &older), "read last: kept although created first with the lower hash");
    assert!(!exists(&service, &newer), "read earlier: evicted");
    assert_accounting_exact(&service);
}

#[test]
fn a_read_not_yet_flushed_still_protects_its_entry() {
    let profile = limited(1000, 200, 1000);
    let service = profile.open_fresh();
    let (older, newer) = ordered_pair(100);
    store(&service, X, &older).unwrap();
    store(&service, X, &newer).unwrap();
    read(&service, X, &older).unwrap();
    // The read is batched in memory: the registry row does not know it yet, inspection does.
    let row = service.inspect_entry(Partition::Regular, &hash_of(&older)).unwrap().unwrap();
    assert_eq!((row.read_count, row.last_read_ms), (0, 0), "not flushed yet");
    let listed = service.inspect_entries(Partition::Regular).unwrap();
    let info = listed.iter().find(|e| e.hash == hash_of(&older)).unwrap();
    assert_eq!(info.read_count, 1);
    assert!(info.last_read_ms >= info.created_ms && info.last_read_ms > 0);

    store(&service, Y, &content(3, 100)).unwrap();
    assert!(exists(&service, &older), "the batched read counted");
    assert!(!exists(&service, &newer));
    // The commit wrote the batched read with it.
    let row = service.inspect_entry(Partition::Regular, &hash_of(&older)).unwrap().unwrap();
    assert_eq!(row.read_count, 1);
    assert_accounting_exact(&service);
}

#[test]
fn eviction_frees_only_as_much_as_the_write_needs() {
    let profile = limited(1000, 300, 1000);
    let service = profile.open_fresh();
    let small = [content(1, 50), content(2, 50), content(3, 50), content(4, 50), content(5, 100)];
    for bytes in &small {
        store(&service, X, bytes).unwrap();
    }
    // Protect the 100-byte entry; the four 50-byte ones are unread.
    read(&service, X, &small[4]).unwrap();
    // 300 stored, cap 300: 120 new bytes need 120 freed = three 50-byte entries, not four.
    let outcome = store(&service, Y, &content(9, 120)).unwrap();
    assert_eq!((outcome.evicted_entries, outcome.evicted_bytes), (3, 150));
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 270);
    assert!(exists(&service, &small[4]));
    assert_eq!(small[..4].iter().filter(|b| exists(&service, b)).count(), 1);
    assert_accounting_exact(&service);
    assert_restart_is_clean(&profile, service);
}

#[test]
fn writes_that_fit_or_store_known_bytes_evict_nothing() {
    let profile = limited(1000, 200, 1000);
    let service = profile.open_fresh();
    let (a, b) = ordered_pair(100);
    assert_eq!(store(&service, X, &a).unwrap().evicted_entries, 0);
    assert_eq!(store(&service, X, &b).unwrap().evicted_entries, 0, "exactly at the cap fits");
    // The store is full; bytes it already holds cost no disk, so a new storer evicts nothing.
    let outcome = store(&service, Y, &a).unwrap();
    assert!(!outcome.new_blob);
    assert_eq!((outcome.evicted_entries, outcome.evicted_bytes), (0, 0));
    assert!(exists(&service, &b));
    assert_accounting_exact(&service);
}

// --- The share rule ---------------------------------------------------------------------------

#[test]
fn an_origin_over_its_share_evicts_only_what_it_alone_stores() {
    let profile = limited(1000, 300, 150);
    let service = profile.open_fresh();
    let y_alone = content(1, 100);
    let shared = content(2, 100);
    let x_alone = content(3, 100);
    store(&service, Y, &y_alone).unwrap();
    store(&service, X, &shared).unwrap();
    store(&service, Y, &shared).unwrap();
    store(&service, X, &x_alone).unwrap();
    // X's own entry is the most recently read, so plain LRU would pick one of the others.
    read(&service, X, &x_alone).unwrap();

    // X is charged 200 and would be charged 300 > its share of 150.
    let x_new = content(4, 100);
    let outcome = store(&service, X, &x_new).unwrap();
    assert_eq!((outcome.evicted_entries, outcome.evicted_bytes), (1, 100));
    assert!(!exists(&service, &x_alone), "its own sole entry went");
    assert!(exists(&service, &y_alone), "another origin's entry is out of its reach");
    assert!(exists(&service, &shared), "an entry it shares with another origin is out of its reach");
    assert_eq!(read(&service, Y, &y_alone).unwrap(), y_alone);
    assert_eq!(charge(&service, X), OriginRecord { charged_bytes: 200, entries: 2 });
    assert_eq!(charge(&service, Y), OriginRecord { charged_bytes: 200, entries: 2 });
    assert_accounting_exact(&service);
    assert_restart_is_clean(&profile, service);
}

#[test]
fn over_its_share_with_too_little_of_its_own_the_write_fails_and_nothing_is_evicted() {
    let profile = limited(1000, 300, 150);
    let service = profile.open_fresh();
    let y_alone = content(1, 100);
    let shared = content(2, 100);
    let x_alone = content(3, 50);
    store(&service, Y, &y_alone).unwrap();
    store(&service, X, &shared).unwrap();
    store(&service, Y, &shared).unwrap();
    store(&service, X, &x_alone).unwrap();
    let before = service.inspect_entries(Partition::Regular).unwrap();
    let origins_before = service.inspect_origins(Partition::Regular).unwrap();

    // 250 stored + 150 new needs 100 freed; X alone stores only 50 of it.
    let x_new = content(4, 150);
    assert_eq!(store(&service, X, &x_new).unwrap_err(), CosError::QuotaExceeded(QuotaScope::Global));
    assert!(!exists(&service, &x_new), "the refused write stored nothing");
    assert_eq!(read(&service, X, &x_new).unwrap_err(), CosError::NotFound);
    assert_eq!(service.inspect_entries(Partition::Regular).unwrap(), before, "nothing was evicted");
    assert_eq!(service.inspect_origins(Partition::Regular).unwrap(), origins_before);
    assert_eq!(read(&service, X, &x_alone).unwrap(), x_alone, "not even its own entry");
    assert_eq!(profile.swap_files(), 0);
    assert_accounting_exact(&service);
    assert_restart_is_clean(&profile, service);
}

#[test]
fn an_origin_under_its_share_evicts_others_least_recently_read_entries() {
    let profile = limited(1000, 300, 150);
    let service = profile.open_fresh();
    let shared = content(1, 100);
    let y_read = [content(2, 100), content(3, 100)];
    store(&service, Y, &shared).unwrap();
    store(&service, Z, &shared).unwrap();
    for bytes in &y_read {
        store(&service, Y, bytes).unwrap();
        read(&service, Y, bytes).unwrap();
    }

    // X is charged nothing; 100 new bytes stay within its share, so any entry may go: the only
    // unread one, which Y and Z both store.
    let x_new = content(4, 100);
    let outcome = store(&service, X, &x_new).unwrap();
    assert_eq!((outcome.evicted_entries, outcome.evicted_bytes), (1, 100));
    assert!(!exists(&service, &shared));
    assert_eq!(read(&service, Z, &shared).unwrap_err(), CosError::NotFound);
    // Deleted for every storer: both are uncharged.
    assert_eq!(charge(&service, Y), OriginRecord { charged_bytes: 200, entries: 2 });
    assert_eq!(charge(&service, Z), OriginRecord::default());
    assert_eq!(charge(&service, X), OriginRecord { charged_bytes: 100, entries: 1 });
    assert!(y_read.iter().all(|b| exists(&service, b)));
    assert_accounting_exact(&service);
    assert_restart_is_clean(&profile, service);
}

#[test]
fn the_per_origin_limit_is_never_resolved_by_evicting() {
    let profile = limited(200, 300, 1000);
    let service = profile.open_fresh();
    let mine = [content(1, 100), content(2, 100)];
    for bytes in &mine {
        store(&service, X, bytes).unwrap();
    }
    store(&service, Y, &content(3, 100)).unwrap();
    // X would be charged 300 > 200: refused although evicting its own entries would make room.
    assert_eq!(store(&service, X, &content(4, 100)).unwrap_err(), CosError::QuotaExceeded(QuotaScope::Origin));
    assert!(mine.iter().all(|b| exists(&service, b)));
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 300);
    assert_accounting_exact(&service);
}

#[test]
fn empty_entries_free_nothing_and_are_never_evicted() {
    let profile = limited(1000, 300, 1000);
    let service = profile.open_fresh();
    let empty: &[u8] = b"";
    // The empty entry is the least recently read of all (created first, never read).
    store(&service, Y, empty).unwrap();
    let (a, b) = ordered_pair(100);
    store(&service, Y, &a).unwrap();
    store(&service, Y, &b).unwrap();
    // 200 stored, cap 300: 300 new bytes need both 100-byte entries gone.
    let outcome = store(&service, X, &content(7, 300)).unwrap();
    assert_eq!((outcome.evicted_entries, outcome.evicted_bytes), (2, 200));
    assert!(exists(&service, empty));
    assert!(!exists(&service, &a) && !exists(&service, &b));
    assert_eq!(charge(&service, Y), OriginRecord { charged_bytes: 0, entries: 1 });
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 300);
    assert_accounting_exact(&service);
    assert_restart_is_clean(&profile, service);
}

// --- Inspection -------------------------------------------------------------------------------

#[test]
fn inspect_entries_shows_every_field_sorted_by_hash() {
    let profile = limited(1000, 10_000, 1000);
    let on_list = b"listed on the PHL and global".to_vec();
    let off_list = b"listed for y".to_vec();
    let config = profile.config().with_public_hash_list(PublicHashList::from_hashes([hash_of(&on_list)]));
    let (service, _) = StorageService::open(config).unwrap();
    let with_url = |origins: OriginsOption, ceiling: &[&str]| {
        let mut options =
            CreateOptions::with_origins(origins, AllowOriginCeiling::from_origins(ceiling.iter().map(|o| origin(o))));
        options.document_url = Some("https://x.example/app/page".to_owned());
        options
    };
    store_with(&service, X, &on_list, with_url(OriginsOption::Global, &[])).unwrap();
    store(&service, Z, &on_list).unwrap();
    store_with(&service, X, &off_list, with_url(OriginsOption::List(vec![origin(Y)]), &[Y])).unwrap();
    read(&service, X, &on_list).unwrap();
    read(&service, Z, &on_list).unwrap();
    read(&service, Y, &off_list).unwrap();

    let entries = service.inspect_entries(Partition::Regular).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[0].hash < entries[1].hash, "sorted by hash");
    let on = entries.iter().find(|e| e.hash == hash_of(&on_list)).unwrap();
    let off = entries.iter().find(|e| e.hash == hash_of(&off_list)).unwrap();

    assert_eq!(on.size, on_list.len() as u64);
    assert_eq!(on.storing_origins, BTreeSet::from([origin(X), origin(Z)]));
    assert!(on.listed_origins.is_empty());
    assert!(on.global);
    assert!(on.on_public_hash_list);
    assert_eq!(on.read_count, 2, "reads not yet flushed are counted");
    assert!(on.last_read_ms >= on.created_ms && on.created_ms > 0);
    assert_eq!(on.provenance.len(), 2);
    assert_eq!(on.provenance[0].origin, origin(X));
    assert_eq!(on.provenance[0].document_url.as_deref(), Some("https://x.example/app/page"));
    assert_eq!(on.provenance[1].origin, origin(Z));
    assert_eq!(on.provenance[1].document_url, None);
    assert!(on.provenance[0].time_ms <= on.provenance[1].time_ms);

    assert_eq!(off.storing_origins, BTreeSet::from([origin(X)]));
    assert_eq!(off.listed_origins, vec![origin(Y)]);
    assert!(!off.global);
    assert!(!off.on_public_hash_list);
    assert_eq!(off.read_count, 1);

    // After a flush the same numbers come from the registry alone (nothing counted twice).
    service.flush().unwrap();
    assert_eq!(service.inspect_entries(Partition::Regular).unwrap(), entries);
    assert_eq!(service.inspect_entry(Partition::Regular, &on.hash).unwrap().unwrap().read_count, 2);
}

#[test]
fn inspect_origins_shows_charges_sorted_by_origin() {
    let profile = limited(1000, 10_000, 1000);
    let service = profile.open_fresh();
    let shared = content(1, 100);
    store(&service, Z, &shared).unwrap();
    store(&service, X, &shared).unwrap();
    store(&service, X, &content(2, 30)).unwrap();
    store(&service, Y, &content(3, 7)).unwrap();
    assert_eq!(
        service.inspect_origins(Partition::Regular).unwrap(),
        vec![
            OriginInfo { origin: origin(X), charged_bytes: 130, entries: 2 },
            OriginInfo { origin: origin(Y), charged_bytes: 7, entries: 1 },
            OriginInfo { origin: origin(Z), charged_bytes: 100, entries: 1 },
        ]
    );
    service.clear_site_data(Partition::Regular, &origin(Y)).unwrap();
    let after: Vec<Origin> =
        service.inspect_origins(Partition::Regular).unwrap().into_iter().map(|o| o.origin).collect();
    assert_eq!(after, vec![origin(X), origin(Z)], "an origin that stores nothing is not listed");
}

#[test]
fn delete_entry_removes_it_for_everyone_and_open_readers_keep_their_bytes() {
    let profile = limited(1000, 10_000, 1000);
    let service = profile.open_fresh();
    let shared = content(1, 100);
    let kept = content(2, 40);
    store(&service, X, &shared).unwrap();
    store_with(
        &service,
        Y,
        &shared,
        CreateOptions::with_origins(
            OriginsOption::List(vec![origin(Z)]),
            AllowOriginCeiling::from_origins([origin(Z)]),
        ),
    )
    .unwrap();
    store(&service, X, &kept).unwrap();
    let reader =
        service.get_file_handle(&caller(Z), hash_of(&shared), HandleRequest::Read).unwrap().get_file().unwrap();

    assert!(service.delete_entry(Partition::Regular, &hash_of(&shared)).unwrap());
    assert!(!service.delete_entry(Partition::Regular, &hash_of(&shared)).unwrap(), "a second delete finds nothing");
    for who in [X, Y, Z] {
        assert_eq!(read(&service, who, &shared).unwrap_err(), CosError::NotFound, "gone for {who}");
    }
    assert_eq!(reader.read_all().unwrap(), shared, "a reader opened before keeps its bytes");
    assert!(!profile.blob_path(&hash_of(&shared)).exists(), "the blob is unlinked");
    assert_eq!(charge(&service, X), OriginRecord { charged_bytes: 40, entries: 1 });
    assert_eq!(charge(&service, Y), OriginRecord::default());
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 40);
    assert_eq!(read(&service, X, &kept).unwrap(), kept);
    assert_accounting_exact(&service);
    let service = assert_restart_is_clean(&profile, service);
    // The bytes can be stored again, as new.
    assert!(store(&service, Y, &shared).unwrap().new_blob);
    drop(reader);
}
