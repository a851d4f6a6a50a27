//! Whole reads by descriptor: a verified entry is handed out as a sealed memory copy (hashed as
//! it was filled); the first read of a generation is streamed and verified; a blob damaged after
//! its verification is never copied nor served; the copies stay within their budget and leave
//! with their entry.

use std::path::Path;

use cos_common::{CallerContext, CosError, Partition};
use cos_storage_service::{HandleRequest, ServiceConfig, SharedRead, StorageService, Streamed};
use cos_test_support::callers::{caller, hash_of};
use cos_test_support::storage::{blob_path, store};

const SIZE: usize = 300_000;

/// More than one data-pipe chunk, above the descriptor threshold.
fn content(seed: u8) -> Vec<u8> {
    (0..SIZE as u32).map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add((i >> 9) as u8)).collect()
}

fn open(profile: &Path, budget: u64) -> StorageService {
    StorageService::open(ServiceConfig::new(profile).with_shared_read_bytes(budget)).expect("the store opens").0
}

/// How a whole read by descriptor of `bytes` went: `Ok(true)` a sealed copy (whose bytes must be
/// `bytes`), `Ok(false)` a stream (whose bytes must be `bytes`).
fn read_shared(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> Result<bool, CosError> {
    let file = service.get_file_handle(who, hash_of(bytes), HandleRequest::Read)?.get_file()?;
    let mut streamed = Vec::new();
    match file.read_shared(&[], 128 * 1024, |chunk| {
        streamed.extend_from_slice(chunk);
        true
    })? {
        SharedRead::File(copy) => {
            assert!(copy.map(false).unwrap()[..] == *bytes, "the sealed copy holds the entry's bytes");
            Ok(true)
        }
        SharedRead::Streamed(Streamed::Complete) => {
            assert!(streamed == bytes, "the stream carries the entry's bytes");
            Ok(false)
        }
        SharedRead::Streamed(Streamed::Stopped) => unreachable!("the sink never stops"),
    }
}

fn flip_a_bit(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_verified_entry_is_handed_out_sealed_and_a_first_read_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let bytes = content(1);
    {
        let service = open(dir.path(), 1 << 30);
        store(&service, &a, &bytes).unwrap();
        // Written here, so verified: its first whole read fills a copy and hands it out.
        assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
        assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
        assert_eq!(service.shared_copies(), (SIZE as u64, 1));
    }
    // A new generation trusts nothing it has not re-hashed: streamed and verified first (and the
    // copy filled alongside).
    let service = open(dir.path(), 1 << 30);
    assert_eq!(service.shared_copies(), (0, 0));
    assert_eq!(read_shared(&service, &a, &bytes), Ok(false));
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    // Small entries and a zero budget always stream.
    let small = vec![7u8; 1000];
    store(&service, &a, &small).unwrap();
    assert_eq!(read_shared(&service, &a, &small), Ok(false));
    assert_eq!(read_shared(&service, &a, &small), Ok(false));
    drop(service);
    let service = open(dir.path(), 0);
    assert_eq!(read_shared(&service, &a, &bytes), Ok(false));
    assert_eq!(read_shared(&service, &a, &bytes), Ok(false));
}

#[test]
fn a_first_read_of_a_damaged_blob_fails_and_leaves_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let bytes = content(2);
    store(&open(dir.path(), 1 << 30), &a, &bytes).unwrap();
    flip_a_bit(&blob_path(dir.path(), &hash_of(&bytes)), 123_456);
    let service = open(dir.path(), 1 << 30);
    assert_eq!(read_shared(&service, &a, &bytes), Err(CosError::NotFound));
    assert_eq!(service.shared_copies(), (0, 0));
    assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(&bytes)).unwrap(), None, "deleted");
}

#[test]
fn damage_after_verification_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let (bytes, other) = (content(3), content(4));
    // Room for one copy only.
    let service = open(dir.path(), SIZE as u64);
    store(&service, &a, &bytes).unwrap();
    store(&service, &a, &other).unwrap();
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    // Damaged on disk after it was verified and copied.
    flip_a_bit(&blob_path(dir.path(), &hash_of(&bytes)), 200_000);
    // Served from the sealed copy: whole, by descriptor, and as a range.
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    let file = service.get_file_handle(&a, hash_of(&bytes), HandleRequest::Read).unwrap().get_file().unwrap();
    assert_eq!(file.read_range(199_990, 20).unwrap(), &bytes[199_990..200_010]);
    // Another entry's copy takes the room; the damaged blob's next fill re-hashes it and fails.
    assert_eq!(read_shared(&service, &a, &other), Ok(true));
    assert_eq!(service.shared_copies(), (SIZE as u64, 1));
    assert_eq!(read_shared(&service, &a, &bytes), Err(CosError::NotFound));
    // It is then no longer trusted: the next read checks it as a first read does, and deletes it.
    assert_eq!(read_shared(&service, &a, &bytes), Err(CosError::NotFound));
    assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(&bytes)).unwrap(), None, "deleted");
    assert!(read_shared(&service, &a, &other).is_ok(), "the other entry is unaffected");
}

#[test]
fn the_copies_never_hold_more_than_their_budget() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let budget = 3 * SIZE as u64 + 1000;
    let service = open(dir.path(), budget);
    let entries: Vec<Vec<u8>> = (10..18).map(content).collect();
    for bytes in &entries {
        store(&service, &a, bytes).unwrap();
    }
    for _ in 0..2 {
        for bytes in &entries {
            read_shared(&service, &a, bytes).unwrap();
            let (held, count) = service.shared_copies();
            assert!(held <= budget && count <= 3, "{held} bytes in {count} copies, budget {budget}");
        }
    }
    // The most recently used are kept: reading them again hands out descriptors.
    assert_eq!(read_shared(&service, &a, &entries[7]), Ok(true));
    assert_eq!(read_shared(&service, &a, &entries[6]), Ok(true));
}

#[test]
fn a_deleted_or_cleared_entry_leaves_no_copy_behind() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let bytes = content(5);
    let service = open(dir.path(), 1 << 30);
    store(&service, &a, &bytes).unwrap();
    // A reader opened before the entry goes keeps reading, as any open file does.
    let open_reader = service.get_file_handle(&a, hash_of(&bytes), HandleRequest::Read).unwrap().get_file().unwrap();
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    service.clear_site_data(Partition::Regular, a.origin()).unwrap();
    assert_eq!(service.shared_copies(), (0, 0), "the copy left with the entry");
    // The open reader still gets the bytes it may read, but its fill does not bring a copy of the
    // deleted entry back.
    for _ in 0..2 {
        match open_reader.read_shared(&[], 128 * 1024, |_| true).unwrap() {
            SharedRead::File(copy) => assert!(copy.map(false).unwrap()[..] == bytes[..]),
            other => panic!("{other:?}"),
        }
        assert_eq!(service.shared_copies(), (0, 0), "no copy of a deleted entry is kept");
    }
    // Deletion through the browser's inspection does the same.
    store(&service, &a, &bytes).unwrap();
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    assert!(service.delete_entry(Partition::Regular, &hash_of(&bytes)).unwrap());
    assert_eq!(service.shared_copies(), (0, 0));
}

#[test]
fn off_the_record_entries_are_handed_out_sealed_and_dropped_with_their_profile() {
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path(), 1 << 30);
    let id = cos_common::OffTheRecordProfileId(7);
    let origin = cos_test_support::callers::origin("https://a.example");
    let a = CallerContext::new(origin.clone(), cos_common::Site::of(&origin), Partition::OffTheRecord(id));
    let bytes = content(6);
    store(&service, &a, &bytes).unwrap();
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    assert_eq!(service.shared_copies().1, 1);
    service.close_off_the_record(id);
    assert_eq!(service.shared_copies(), (0, 0));
}

/// A service with room for one copy, holding `bytes` and another entry, both stored (so verified)
/// in this generation, with no copy yet.
fn one_copy_of_room(profile: &Path, bytes: &[u8], other: &[u8]) -> StorageService {
    let service = open(profile, SIZE as u64);
    let a = caller("https://a.example");
    store(&service, &a, bytes).unwrap();
    store(&service, &a, other).unwrap();
    assert_eq!(service.shared_copies(), (0, 0));
    service
}

#[test]
fn a_blob_unchanged_since_its_verification_fills_without_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let (bytes, other) = (content(31), content(33));
    {
        let service = one_copy_of_room(dir.path(), &bytes, &other);
        // Installed by a verified write: filled without a hash, and again after an eviction.
        assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
        assert_eq!(read_shared(&service, &a, &other), Ok(true));
        assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
        assert_eq!(service.fill_hashes(), 0);
    }
    // Re-hashed by a first read: the stream (with its fill) hashes, later fills do not.
    let service = open(dir.path(), SIZE as u64);
    assert_eq!(read_shared(&service, &a, &bytes), Ok(false));
    assert_eq!(read_shared(&service, &a, &other), Ok(false));
    assert_eq!(service.fill_hashes(), 2);
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    assert_eq!(service.fill_hashes(), 2);
    drop(service);
    // Re-hashed by a scrub: no fill hashes.
    let service = open(dir.path(), SIZE as u64);
    service.scrub(Partition::Regular, |_, _| {}).unwrap();
    assert_eq!(read_shared(&service, &a, &bytes), Ok(true));
    assert_eq!(read_shared(&service, &a, &other), Ok(true));
    assert_eq!(service.fill_hashes(), 0);
}

/// Overwrites one byte of the file in place (same size).
fn pwrite_flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// A change made to a blob file: what it is, whether it damages the bytes, and how it is done.
type Change = (&'static str, bool, Box<dyn Fn(&Path)>);

/// The ways a verified blob file can be changed through the filesystem, each done to `path`.
fn changes() -> Vec<Change> {
    vec![
        ("pwrite of the same size", true, Box::new(|path| pwrite_flip(path, 100_000))),
        (
            "a write, then its mtime restored",
            true,
            Box::new(|path| {
                let mtime = modified(path);
                pwrite_flip(path, 100_000);
                let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                file.set_times(std::fs::FileTimes::new().set_modified(mtime)).unwrap();
                assert_eq!(modified(path), mtime);
            }),
        ),
        (
            "chmod only",
            false,
            Box::new(|path| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }),
        ),
        (
            "another file of the same size renamed over it, with its mtime",
            true,
            Box::new(|path| {
                let mut damaged = std::fs::read(path).unwrap();
                damaged[100_000] ^= 0x10;
                let impostor = path.with_extension("new");
                std::fs::write(&impostor, &damaged).unwrap();
                let file = std::fs::OpenOptions::new().write(true).open(&impostor).unwrap();
                file.set_times(std::fs::FileTimes::new().set_modified(modified(path))).unwrap();
                std::fs::rename(&impostor, path).unwrap();
            }),
        ),
    ]
}

#[test]
fn a_blob_changed_after_its_verification_is_hashed_on_fill_and_never_served_damaged() {
    let a = caller("https://a.example");
    for (change, damaging, apply) in changes() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, other) = (content(35), content(37));
        let service = one_copy_of_room(dir.path(), &bytes, &other);
        apply(&blob_path(dir.path(), &hash_of(&bytes)));
        if damaging {
            assert_eq!(read_shared(&service, &a, &bytes), Err(CosError::NotFound), "{change}");
            assert_eq!(service.fill_hashes(), 1, "{change}: re-hashed");
            assert_eq!(service.shared_copies(), (0, 0), "{change}");
            // As for any damage found: the next read checks it as a first read and deletes it.
            assert_eq!(read_shared(&service, &a, &bytes), Err(CosError::NotFound), "{change}");
            assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(&bytes)).unwrap(), None, "{change}");
        } else {
            // The bytes are intact: re-hashed, served, and the new identity recorded, once the
            // kernel's coarse clock has passed the change (a later change could otherwise carry
            // the same ctime, so an identity observed in the change's tick is not recorded).
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(read_shared(&service, &a, &bytes), Ok(true), "{change}");
            assert_eq!(service.fill_hashes(), 1, "{change}: re-hashed");
            assert_eq!(read_shared(&service, &a, &other), Ok(true), "{change}");
            assert_eq!(read_shared(&service, &a, &bytes), Ok(true), "{change}");
            assert_eq!(service.fill_hashes(), 1, "{change}: trusted again once re-hashed");
        }
        assert!(read_shared(&service, &a, &other).is_ok(), "{change}: the other entry is unaffected");
    }
}
