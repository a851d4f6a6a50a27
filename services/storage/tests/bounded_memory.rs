//! A large write streams through bounded memory: the service never buffers a whole file.
//!
//! Its own test binary (one test, one process) so that the process's peak RSS is this test's.

use cos_common::ContentHash;
use cos_storage_service::{CreateOptions, HandleRequest, ServiceConfig, StorageService};
use cos_test_support::callers::caller;
use cos_test_support::measure::status_kib;
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;
const CHUNKS: u64 = 1024; // 1 GiB

/// Every chunk differs (its index leads it) without costing a full rewrite per chunk.
fn fill(chunk: &mut [u8], index: u64) {
    chunk[..8].copy_from_slice(&index.to_le_bytes());
}

/// A KiB figure of this process's `/proc/self/status`, which the test cannot do without.
fn own_status_kib(key: &str) -> u64 {
    status_kib(None, key).unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

#[test]
fn storing_a_1_gib_file_uses_a_few_mib() {
    let mut chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut hasher = Sha256::new();
    for index in 0..CHUNKS {
        fill(&mut chunk, index);
        hasher.update(&chunk);
    }
    let hash = ContentHash::from_bytes(hasher.finalize().into());

    let dir = tempfile::tempdir().unwrap();
    let service = StorageService::open(ServiceConfig::new(dir.path())).unwrap().0;
    let caller = caller("https://models.example");
    let handle = service.get_file_handle(&caller, hash, HandleRequest::Create(CreateOptions::same_site())).unwrap();

    // Reset the high-water mark so that VmHWM measures only what follows.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let baseline = own_status_kib("VmRSS:");
    let mut writer = handle.create_writable().unwrap();
    for index in 0..CHUNKS {
        fill(&mut chunk, index);
        writer.write(&chunk).unwrap();
    }
    writer.close().unwrap();
    let peak_extra_mib = (own_status_kib("VmHWM:") - baseline) / 1024;

    assert_eq!(handle.get_file().unwrap().size(), CHUNKS * CHUNK as u64);
    assert!(peak_extra_mib < 32, "storing 1 GiB raised the peak RSS by {peak_extra_mib} MiB");
}
