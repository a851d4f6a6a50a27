//! Integrity on read: a blob damaged on disk while the service was down — a flipped bit, a file
//! replaced by other bytes of the same size, a truncated file, a missing file — is never handed
//! out as valid, and a scrub finds every damaged blob.

use std::path::Path;

use cos_common::{CosError, Partition};
use cos_storage_service::{HandleRequest, ScrubReport, StorageService};
use cos_test_support::callers::{caller, hash_of};
use cos_test_support::storage::{blob_path, open, read, store};

/// More than one data-pipe chunk and more than one hashing chunk.
fn content(seed: u8) -> Vec<u8> {
    (0..2_500_000u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(i.wrapping_shr(9) as u8)).collect()
}

fn flip_a_bit(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// A store with `bytes` written by a.example, closed, then damaged by `damage`, then reopened.
fn damaged(bytes: &[u8], damage: impl FnOnce(&Path)) -> (tempfile::TempDir, StorageService) {
    let dir = tempfile::tempdir().unwrap();
    {
        let service = open(dir.path());
        store(&service, &caller("https://a.example"), bytes).unwrap();
    }
    damage(&blob_path(dir.path(), &hash_of(bytes)));
    let service = open(dir.path());
    (dir, service)
}

fn assert_entry_gone(service: &StorageService, bytes: &[u8]) {
    let a = caller("https://a.example");
    assert_eq!(service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap(), None, "the entry is deleted");
    assert_eq!(service.inspect_origin(Partition::Regular, a.origin()).unwrap().charged_bytes, 0, "and uncharged");
    assert_eq!(service.inspect_total_bytes(Partition::Regular).unwrap(), 0);
}

#[test]
fn a_flipped_bit_fails_the_first_whole_read_and_deletes_the_entry() {
    let bytes = content(3);
    let (dir, service) = damaged(&bytes, |path| flip_a_bit(path, 1_234_567));
    let a = caller("https://a.example");
    assert_eq!(read(&service, &a, &bytes), Err(CosError::NotFound));
    assert_entry_gone(&service, &bytes);
    assert!(!blob_path(dir.path(), &hash_of(&bytes)).exists(), "the damaged blob is unlinked");
    assert_eq!(service.status(Partition::Regular).unwrap().0.corrupt_removed, 1, "the internals page counts it");
    // The next verified write brings it back.
    store(&service, &a, &bytes).unwrap();
    assert_eq!(read(&service, &a, &bytes).unwrap(), bytes);
}

#[test]
fn a_streamed_whole_read_of_a_damaged_blob_never_completes() {
    let bytes = content(5);
    // Damage near the end: most of the data has gone out before the digest is known.
    let (_dir, service) = damaged(&bytes, |path| flip_a_bit(path, bytes.len() - 10));
    let file = service.get_file_handle(&caller("https://a.example"), hash_of(&bytes), HandleRequest::Read);
    let file = file.unwrap().get_file().unwrap();
    let mut streamed = 0usize;
    let outcome = file.stream(0, u64::MAX, &[1], 128 * 1024, |frame| {
        streamed += frame.len() - 1;
        true
    });
    assert_eq!(outcome, Err(CosError::NotFound), "the end of the stream is withheld");
    assert_eq!(streamed, bytes.len(), "data flowed while it was hashed");
    assert_eq!(file.read_all(), Err(CosError::NotFound), "a second read of the same file fails too");
}

#[test]
fn a_range_read_of_a_damaged_blob_fails_before_any_byte() {
    let bytes = content(7);
    let (_dir, service) = damaged(&bytes, |path| flip_a_bit(path, 2_000_000));
    let file = service.get_file_handle(&caller("https://a.example"), hash_of(&bytes), HandleRequest::Read);
    let file = file.unwrap().get_file().unwrap();
    let mut handed_out = 0;
    let outcome = file.stream(10, 100, &[], 64, |_| {
        handed_out += 1;
        true
    });
    assert_eq!((outcome, handed_out), (Err(CosError::NotFound), 0), "the whole blob is checked first");
    assert_entry_gone(&service, &bytes);
}

#[test]
fn a_replaced_file_of_the_same_size_is_caught() {
    let bytes = content(9);
    let other = content(11);
    let (_dir, service) = damaged(&bytes, |path| std::fs::write(path, &other).unwrap());
    assert_eq!(read(&service, &caller("https://a.example"), &bytes), Err(CosError::NotFound));
    assert_entry_gone(&service, &bytes);
}

#[test]
fn a_truncated_file_is_dropped_at_open() {
    let bytes = content(13);
    let (_dir, service) =
        damaged(&bytes, |path| std::fs::File::options().write(true).open(path).unwrap().set_len(1000).unwrap());
    assert_eq!(read(&service, &caller("https://a.example"), &bytes), Err(CosError::NotFound));
    assert_entry_gone(&service, &bytes);
}

#[test]
fn an_intact_blob_reads_after_a_restart_and_is_checked_once() {
    let bytes = content(15);
    let (_dir, service) = damaged(&bytes, |_| {});
    let a = caller("https://a.example");
    assert_eq!(read(&service, &a, &bytes).unwrap(), bytes);
    // Range reads of a verified blob are served directly.
    let file = service.get_file_handle(&a, hash_of(&bytes), HandleRequest::Read).unwrap().get_file().unwrap();
    assert_eq!(file.read_range(100, 5).unwrap(), bytes[100..105]);
}

#[test]
fn a_verified_rewrite_heals_a_damaged_blob_before_anyone_reads_it() {
    let bytes = content(17);
    let (_dir, service) = damaged(&bytes, |path| flip_a_bit(path, 42));
    // Another origin stores the same bytes: they verify, and replace the damaged file.
    store(&service, &caller("https://b.example"), &bytes).unwrap();
    assert_eq!(read(&service, &caller("https://a.example"), &bytes).unwrap(), bytes);
}

#[test]
fn scrub_finds_damaged_and_missing_blobs_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let a = caller("https://a.example");
    let (intact, flipped, vanished) = (content(19), content(21), content(23));
    let service = open(dir.path());
    for bytes in [&intact, &flipped, &vanished] {
        store(&service, &a, bytes).unwrap();
    }
    // Damage while the service runs: even blobs verified at write are re-hashed by a scrub.
    flip_a_bit(&blob_path(dir.path(), &hash_of(&flipped)), 77);
    std::fs::remove_file(blob_path(dir.path(), &hash_of(&vanished))).unwrap();
    let mut heard = Vec::new();
    let report = service.scrub(Partition::Regular, |report, total| heard.push((report.clone(), total))).unwrap();
    let expected = ScrubReport {
        entries_checked: 2,
        bytes_checked: (intact.len() + flipped.len()) as u64,
        corrupt_removed: 1,
        missing_removed: 1,
    };
    assert_eq!(report, expected);
    assert_eq!(heard.len(), 3, "progress after every entry");
    assert!(heard.iter().all(|(_, total)| *total == 3));
    assert_eq!(heard.last().unwrap().0, expected);
    assert_eq!(read(&service, &a, &intact).unwrap(), intact);
    assert_eq!(read(&service, &a, &flipped), Err(CosError::NotFound));
    assert_eq!(read(&service, &a, &vanished), Err(CosError::NotFound));
    let charged = service.inspect_origin(Partition::Regular, a.origin()).unwrap().charged_bytes;
    assert_eq!(charged, intact.len() as u64, "only the intact entry is still charged");
    // A second scrub finds nothing more.
    let again = service.scrub(Partition::Regular, |_, _| {}).unwrap();
    assert_eq!((again.entries_checked, again.corrupt_removed, again.missing_removed), (1, 0, 0));
}

/// A small entry whose `getFile` reply carries its bytes (`FileReader::read_inline`) is hashed
/// on every such read, so damage after its verification — here in place, while the service runs —
/// is refused, and the entry goes on its next read.
#[test]
fn a_small_entry_damaged_after_its_verification_is_never_handed_out_inline() {
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path());
    let a = caller("https://a.example");
    let bytes: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    store(&service, &a, &bytes).unwrap();
    let inline = |service: &StorageService| {
        let handle = service.get_file_handle(&a, hash_of(&bytes), HandleRequest::Read)?;
        handle.get_file()?.read_inline(64 * 1024 - 1).expect("small enough to go inline")
    };
    assert_eq!(inline(&service).unwrap(), bytes, "verified by its write");

    flip_a_bit(&blob_path(dir.path(), &hash_of(&bytes)), 100);
    assert_eq!(inline(&service), Err(CosError::NotFound), "damaged after its verification");
    // It is no longer trusted: the next read checks it as a first read does, and deletes it.
    assert_eq!(inline(&service), Err(CosError::NotFound));
    assert_entry_gone(&service, &bytes);
}

#[test]
fn a_small_entry_damaged_while_the_service_was_down_is_deleted_by_its_first_inline_read() {
    let bytes: Vec<u8> = (0..2000u32).map(|i| (i * 13) as u8).collect();
    let (_dir, service) = damaged(&bytes, |path| flip_a_bit(path, 1999));
    let file = service.get_file_handle(&caller("https://a.example"), hash_of(&bytes), HandleRequest::Read);
    let file = file.unwrap().get_file().unwrap();
    assert_eq!(file.read_inline(64 * 1024 - 1), Some(Err(CosError::NotFound)));
    assert_entry_gone(&service, &bytes);
    assert_eq!(service.status(Partition::Regular).unwrap().0.corrupt_removed, 1);

    // An intact one reads inline after a restart; a larger one is not read inline at all.
    let intact: Vec<u8> = (0..70_000u32).map(|i| (i * 3) as u8).collect();
    let (_dir, service) = damaged(&intact, |_| {});
    let file = service.get_file_handle(&caller("https://a.example"), hash_of(&intact), HandleRequest::Read);
    let file = file.unwrap().get_file().unwrap();
    assert_eq!(file.read_inline(64 * 1024 - 1), None);
    assert_eq!(file.read_inline(intact.len()), Some(Ok(intact.clone())));
    assert_eq!(file.read_inline(intact.len()), Some(Ok(intact)));
}
