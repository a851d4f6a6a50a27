//! Loading a Public Hash List of 500,000 digests: time and memory (targets: well under a
//! second, under 20 MiB). `cargo bench -p cos_storage_service --bench public_hash_list`.

use std::time::Instant;

use cos_storage_service::PublicHashList;
use cos_storage_service::fixtures::{synthetic_list_digest, write_public_hash_list};
use cos_test_support::measure::{median_duration, peak_extra_rss_kib};

const DIGESTS: u32 = 500_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public-hash-list.txt");
    write_public_hash_list(&path, DIGESTS).unwrap();
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    let probe = synthetic_list_digest(123_456);

    // Warm the page cache; measure the peak extra memory of a first load (high-water mark reset
    // first), then time five loads.
    let _ = std::fs::read(&path).unwrap();
    let mut list = None;
    let peak = peak_extra_rss_kib(|| list = Some(PublicHashList::load(&path).unwrap()));
    let list = list.unwrap_or_else(|| PublicHashList::load(&path).unwrap());
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let list = PublicHashList::load(&path).unwrap();
        times.push(start.elapsed());
        assert_eq!(list.len(), DIGESTS as usize);
        assert!(list.contains(&probe));
    }
    let median = median_duration(&mut times);

    let lookups: u32 = 1_000_000;
    let start = Instant::now();
    let mut hits = 0;
    for i in 0..lookups {
        if list.contains(&synthetic_list_digest(i)) {
            hits += 1;
        }
    }
    let lookup = start.elapsed() / lookups;

    println!("Public Hash List: {DIGESTS} digests, {:.1} MiB of text", file_bytes as f64 / (1 << 20) as f64);
    println!(
        "  load (median of 5)        {:7.1} ms   [target: well under 1 s]   (min {:.1} ms, max {:.1} ms)",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3
    );
    println!("  digests held              {:7.1} MiB  [target < 20 MiB]", list.heap_bytes() as f64 / (1 << 20) as f64);
    match peak {
        Some(kib) => println!("  peak extra RSS of a load  {:7.1} MiB", kib as f64 / 1024.0),
        None => println!("  peak extra RSS: not measurable here"),
    }
    println!("  lookup (incl. one SHA-256) {:6.0} ns   ({hits} hits of {lookups})", lookup.as_nanos());
}
