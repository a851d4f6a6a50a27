//! A large write streams through bounded memory: the service never buffers a whole file.
//!
//! Its own test binary (one test, one process) so that the process's peak RSS is this test's.

use cos_common::{CallerContext, ContentHash, Origin};
use cos_storage_service::{CreateOptions, HandleRequest, ServiceConfig, StorageService};
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;
const CHUNKS: u64 = 1024; // 1 GiB

/// Every chunk differs (its index leads it) without costing a full rewrite per chunk.
fn fill(chunk: &mut [u8], index: u64) {
    chunk[..8].copy_from_slice(&index.to_le_bytes());
}

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
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
    let caller = CallerContext::top_level(Origin::from_url("https://models.example").unwrap());
    let handle = service.get_file_handle(&caller, hash, HandleRequest::Create(CreateOptions::same_site())).unwrap();

    // Reset the high-water mark so that VmHWM measures only what follows.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let baseline = status_kib("VmRSS:");
    let mut writer = handle.create_writable().unwrap();
    for index in 0..CHUNKS {
        fill(&mut chunk, index);
        writer.write(&chunk).unwrap();
    }
    writer.close().unwrap();
    let peak_extra_mib = (status_kib("VmHWM:") - baseline) / 1024;

    assert_eq!(handle.get_file().unwrap().size(), CHUNKS * CHUNK as u64);
    assert!(peak_extra_mib < 32, "storing 1 GiB raised the peak RSS by {peak_extra_mib} MiB");
}
