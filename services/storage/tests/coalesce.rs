//! Identical concurrent writes: writers streaming the same hash at the same time share one swap
//! file (ARCHITECTURE.md, Write path), and each is still judged on its own bytes.
//!
//! Most tests interleave the writers on one thread, chunk by chunk, so that who appends and who
//! compares is deterministic; one runs them on threads. `swap_bytes_written` (a `testing` seam)
//! counts what reached swap files.

use cos_common::{CallerContext, CosError, DataErrorKind, Partition, QuotaScope};
use cos_storage_service::{
    CreateOptions, Fault, FaultInjector, HandleRequest, StorageLimits, StorageService, WritableFile,
};
use cos_test_support::callers::{caller, hash_of, origin};
use cos_test_support::rng::pattern;
use cos_test_support::storage::{Profile, read, read_hash};

const CHUNK: usize = 128 << 10;
const SIZE: usize = 6 << 20;

fn who(n: usize) -> CallerContext {
    caller(&format!("https://site{n}.example"))
}

/// A writer of `hash_of(target)` for `who`.
fn writer_of(service: &StorageService, who: &CallerContext, target: &[u8]) -> WritableFile {
    service
        .get_file_handle(who, hash_of(target), HandleRequest::Create(CreateOptions::same_site()))
        .unwrap()
        .create_writable()
        .unwrap()
}

/// Writes each writer's bytes chunk by chunk, writer after writer for each chunk.
fn interleave(writers: &mut [(WritableFile, Vec<u8>)], chunks: std::ops::Range<usize>) {
    for chunk in chunks {
        for (writer, bytes) in writers.iter_mut() {
            let start = (chunk * CHUNK).min(bytes.len());
            let end = ((chunk + 1) * CHUNK).min(bytes.len());
            if start < end {
                writer.write(&bytes[start..end]).unwrap();
            }
        }
    }
}

fn chunks(size: usize) -> usize {
    size.div_ceil(CHUNK)
}

fn storing_origins(service: &StorageService, bytes: &[u8]) -> usize {
    service.inspect_entry(Partition::Regular, &hash_of(bytes)).unwrap().map_or(0, |e| e.storing_origins.len())
}

#[test]
fn eight_writers_of_one_hash_write_its_bytes_once_and_all_succeed() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(1, SIZE);
    let mut writers: Vec<_> = (0..8).map(|n| (writer_of(&service, &who(n), &good), good.clone())).collect();
    assert_eq!(service.write_groups(), 1);
    interleave(&mut writers, 0..chunks(SIZE));
    assert_eq!(profile.swap_files(), 1, "one shared swap file");
    for (writer, _) in writers {
        writer.close().unwrap();
    }
    assert_eq!(service.swap_bytes_written(), SIZE as u64, "the bytes were written once");
    assert_eq!(storing_origins(&service, &good), 8);
    for n in 0..8 {
        assert_eq!(read(&service, &who(n), &good).unwrap(), good);
    }
    assert_eq!((profile.swap_files(), profile.blob_files(), service.write_groups()), (0, 1, 0));
}

#[test]
fn writers_on_threads_share_the_bytes() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(2, SIZE);
    let writers: Vec<_> = (0..8).map(|n| writer_of(&service, &who(n), &good)).collect();
    std::thread::scope(|s| {
        for mut writer in writers {
            let good = &good;
            s.spawn(move || {
                for piece in good.chunks(CHUNK) {
                    writer.write(piece).unwrap();
                }
                writer.close().unwrap();
            });
        }
    });
    assert_eq!(service.swap_bytes_written(), SIZE as u64);
    assert_eq!(storing_origins(&service, &good), 8);
    assert_eq!(read(&service, &who(3), &good).unwrap(), good);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn a_first_writer_with_wrong_bytes_fails_alone_and_never_reaches_the_blob() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(3, SIZE);
    let mut bad = good.clone();
    bad[SIZE / 2] ^= 1;
    // The bad writer is first for every chunk: it appends, the others compare.
    let mut writers = vec![(writer_of(&service, &who(0), &good), bad)];
    writers.extend((1..4).map(|n| (writer_of(&service, &who(n), &good), good.clone())));
    interleave(&mut writers, 0..chunks(SIZE));
    let mut writers = writers.into_iter();
    let (leader, _) = writers.next().unwrap();
    assert_eq!(leader.close().unwrap_err(), CosError::Data(DataErrorKind::HashMismatch));
    for (writer, _) in writers {
        writer.close().unwrap();
    }
    assert_eq!(read(&service, &who(1), &good).unwrap(), good, "the installed blob is the good bytes");
    assert_eq!(read(&service, &who(0), &good).unwrap_err(), CosError::NotFound);
    assert_eq!(storing_origins(&service, &good), 3);
    assert_eq!(profile.swap_files(), 0);
    // A later store after a restart re-hashes the blob on its first read: it must still match.
    drop(service);
    let service = profile.open();
    assert_eq!(read(&service, &who(2), &good).unwrap(), good);
}

#[test]
fn a_follower_with_wrong_bytes_fails_alone() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(4, SIZE);
    let mut bad = good.clone();
    bad[SIZE / 3] ^= 0x80;
    let mut writers = vec![
        (writer_of(&service, &who(0), &good), good.clone()),
        (writer_of(&service, &who(1), &good), bad),
        (writer_of(&service, &who(2), &good), good.clone()),
    ];
    interleave(&mut writers, 0..chunks(SIZE));
    let results: Vec<_> = writers.into_iter().map(|(w, _)| w.close().map(|_| ())).collect();
    assert_eq!(results, vec![Ok(()), Err(CosError::Data(DataErrorKind::HashMismatch)), Ok(())]);
    assert_eq!(read(&service, &who(2), &good).unwrap(), good);
    assert_eq!(storing_origins(&service, &good), 2);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn when_the_writer_appending_dies_the_next_one_appends_without_a_resend() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(5, SIZE);
    let mut writers: Vec<_> = (0..3).map(|n| (writer_of(&service, &who(n), &good), good.clone())).collect();
    interleave(&mut writers, 0..chunks(SIZE) / 2);
    // The first writer's renderer goes away mid-stream (dropping the writer aborts it).
    drop(writers.remove(0));
    interleave(&mut writers, chunks(SIZE) / 2..chunks(SIZE));
    for (writer, _) in writers {
        writer.close().unwrap();
    }
    assert_eq!(service.swap_bytes_written(), SIZE as u64, "no byte was written twice");
    assert_eq!(storing_origins(&service, &good), 2);
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn a_follower_ahead_of_the_writer_appending_appends_its_own_bytes() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(6, SIZE);
    let mut slow = writer_of(&service, &who(0), &good);
    let mut fast = writer_of(&service, &who(1), &good);
    slow.write(&good[..CHUNK]).unwrap();
    fast.write(&good).unwrap();
    slow.write(&good[CHUNK..]).unwrap();
    fast.close().unwrap();
    slow.close().unwrap();
    assert_eq!(service.swap_bytes_written(), SIZE as u64);
    assert_eq!(read(&service, &who(0), &good).unwrap(), good);
}

#[test]
fn a_revoked_writer_is_aborted_and_the_others_commit() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(7, SIZE);
    // The handles stay open, as a page's do: clearing site data revokes the live ones.
    let handles: Vec<_> = (0..3)
        .map(|n| {
            service.get_file_handle(&who(n), hash_of(&good), HandleRequest::Create(CreateOptions::same_site())).unwrap()
        })
        .collect();
    let mut writers: Vec<_> = handles.iter().map(|h| (h.create_writable().unwrap(), good.clone())).collect();
    interleave(&mut writers, 0..chunks(SIZE) / 2);
    service.clear_site_data(Partition::Regular, &origin("https://site0.example")).unwrap();
    interleave(&mut writers, chunks(SIZE) / 2..chunks(SIZE));
    let results: Vec<_> = writers.into_iter().map(|(w, _)| w.close().map(|_| ())).collect();
    assert_eq!(results, vec![Err(CosError::Abort), Ok(()), Ok(())]);
    assert_eq!(service.swap_bytes_written(), SIZE as u64);
    assert_eq!(storing_origins(&service, &good), 2);
    assert_eq!(read(&service, &who(0), &good).unwrap_err(), CosError::NotFound);
    assert_eq!(read(&service, &who(2), &good).unwrap(), good);
}

#[test]
fn each_writer_keeps_its_own_quota_and_in_flight_limits() {
    // Per origin 8 MiB: site0 already stores 4 MiB, so its writer of 6 MiB fails mid-stream.
    let limits = StorageLimits { per_origin_bytes: 8 << 20, total_bytes: 64 << 20, share_bytes: 64 << 20 };
    let profile = Profile::with_limits(limits);
    let service = profile.open();
    cos_test_support::storage::store(&service, &who(0), &pattern(99, 4 << 20)).unwrap();
    let good = pattern(8, SIZE);
    let mut writers: Vec<_> = (0..3).map(|n| writer_of(&service, &who(n), &good)).collect();
    let mut failed = None;
    for piece in good.chunks(CHUNK) {
        for (n, writer) in writers.iter_mut().enumerate() {
            if let Err(error) = writer.write(piece) {
                assert_eq!(n, 0);
                failed.get_or_insert(error);
            }
        }
    }
    assert_eq!(failed, Some(CosError::QuotaExceeded(QuotaScope::Origin)));
    let results: Vec<_> = writers.into_iter().map(|w| w.close().map(|_| ())).collect();
    assert_eq!(results, vec![Err(CosError::QuotaExceeded(QuotaScope::Origin)), Ok(()), Ok(())]);
    assert_eq!(service.inspect_bytes_in_flight(Partition::Regular).unwrap(), 0);
    assert_eq!(storing_origins(&service, &good), 2);
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn a_writer_appending_past_the_size_cannot_lengthen_the_installed_blob() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(9, SIZE);
    let mut longer = good.clone();
    // A whole 1 MiB more: a long tail, appended ahead of the honest writer.
    longer.extend_from_slice(&pattern(99, 1 << 20));
    let mut attacker = writer_of(&service, &who(0), &good);
    let mut honest = writer_of(&service, &who(1), &good);
    // The attacker appends everything and more before the honest writer compares it.
    attacker.write(&longer).unwrap();
    honest.write(&good).unwrap();
    honest.close().unwrap();
    // It then may not append to the installed file either.
    attacker.write(b"more").unwrap();
    assert_eq!(attacker.close().unwrap_err(), CosError::Data(DataErrorKind::HashMismatch));
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
    drop(service);
    let service = profile.open();
    assert_eq!(read(&service, &who(1), &good).unwrap(), good, "the blob on disk is exactly the bytes");
}

#[test]
fn a_blob_deleted_before_a_later_member_commits_is_installed_again() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(10, SIZE);
    let mut writers: Vec<_> = (0..2).map(|n| (writer_of(&service, &who(n), &good), good.clone())).collect();
    interleave(&mut writers, 0..chunks(SIZE));
    let mut writers = writers.into_iter();
    writers.next().unwrap().0.close().unwrap();
    assert!(service.delete_entry(Partition::Regular, &hash_of(&good)).unwrap());
    assert_eq!(profile.blob_files(), 0);
    writers.next().unwrap().0.close().unwrap();
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
    assert_eq!((profile.blob_files(), profile.swap_files()), (1, 0));
}

#[test]
fn a_writer_that_seeks_or_truncates_continues_alone() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(11, SIZE);
    let mut streaming = writer_of(&service, &who(0), &good);
    let mut seeking = writer_of(&service, &who(1), &good);
    streaming.write(&good[..SIZE / 2]).unwrap();
    // Writes the second half first, then the first, then truncates to the size it already has.
    seeking.write_at((SIZE / 2) as u64, &good[SIZE / 2..]).unwrap();
    seeking.write_at(0, &good[..SIZE / 2]).unwrap();
    seeking.truncate(SIZE as u64).unwrap();
    streaming.write(&good[SIZE / 2..]).unwrap();
    seeking.close().unwrap();
    streaming.close().unwrap();
    assert_eq!(read_hash(&service, &who(0), hash_of(&good)).unwrap(), good);
    assert_eq!(storing_origins(&service, &good), 2);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn a_lone_writer_that_truncates_keeps_its_file() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(12, SIZE);
    let mut writer = writer_of(&service, &who(0), &good);
    writer.write(&good).unwrap();
    writer.write(b"tail to be cut").unwrap();
    writer.truncate(SIZE as u64).unwrap();
    writer.close().unwrap();
    assert_eq!(service.swap_bytes_written(), SIZE as u64 + 14, "no copy");
    assert_eq!(read(&service, &who(0), &good).unwrap(), good);
}

#[test]
fn nothing_is_appended_to_a_sealed_file() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(13, SIZE);
    let mut attacker = writer_of(&service, &who(0), &good);
    let mut honest = writer_of(&service, &who(1), &good);
    attacker.write(&good).unwrap();
    honest.write(&good).unwrap();
    // The honest writer seals the file at its length and installs it.
    honest.close().unwrap();
    // The attacker, still in the group, appends past the sealed length: it must go alone.
    attacker.write(b"more").unwrap();
    assert_eq!(attacker.close().unwrap_err(), CosError::Data(DataErrorKind::HashMismatch));
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
    drop(service);
    let service = profile.open();
    assert_eq!(read(&service, &who(1), &good).unwrap(), good, "the blob on disk is exactly the bytes");
}

/// The writer appending meets a disk fault after `chunks_before` chunks of `size`; the other
/// writer, which compared until then, appends the rest and must still verify.
fn appender_fails(size: usize, chunks_before: usize) {
    let profile = Profile::new();
    let injector = FaultInjector::new();
    let service = StorageService::open(profile.config().with_fault_injector(injector.clone())).unwrap().0;
    let good = pattern(14, size);
    let mut writers: Vec<_> = (0..2).map(|n| (writer_of(&service, &who(n), &good), good.clone())).collect();
    interleave(&mut writers, 0..chunks_before);
    injector.arm(Fault::WriteFailed, 0);
    let mut writers = writers.into_iter();
    let (mut appender, _) = writers.next().unwrap();
    let (mut other, _) = writers.next().unwrap();
    let mut appender_failed = false;
    for piece in good.chunks(CHUNK).skip(chunks_before) {
        appender_failed |= appender.write(piece).is_err();
        other.write(piece).unwrap();
    }
    assert_eq!(injector.injected(), 1);
    assert!(appender_failed || appender.close().is_err(), "the appender saw its fault");
    other.close().unwrap();
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
    assert_eq!(profile.swap_files(), 0);
}

#[test]
fn when_the_appender_meets_a_disk_fault_the_other_appends_and_verifies() {
    // Small enough that every append is synchronous: the fault hits the appender's next chunk,
    // which the group had already hashed; the other writer appends that range again.
    appender_fails(1 << 20, 3);
    // Through the I/O thread: the other writer waits for the appender's queue to fail.
    appender_fails(SIZE, 24);
}

#[test]
fn an_empty_write_elsewhere_keeps_a_writer_in_its_group() {
    let profile = Profile::new();
    let service = profile.open();
    let good = pattern(15, SIZE);
    let mut writers: Vec<_> = (0..2).map(|n| (writer_of(&service, &who(n), &good), good.clone())).collect();
    interleave(&mut writers, 0..chunks(SIZE) / 2);
    writers[1].0.write_at(0, &[]).unwrap();
    writers[1].0.seek((chunks(SIZE) / 2 * CHUNK) as u64).unwrap();
    interleave(&mut writers, chunks(SIZE) / 2..chunks(SIZE));
    for (writer, _) in writers {
        writer.close().unwrap();
    }
    assert_eq!(service.swap_bytes_written(), SIZE as u64, "no copy");
    assert_eq!(read(&service, &who(1), &good).unwrap(), good);
}
