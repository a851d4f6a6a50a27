//! `store_177mib`: store a 177 MiB model through the service (write + verify + fsync + rename +
//! registry commit) and read it back, next to raw `sha2` throughput measured in the same run.
//!
//! Targets: write ≥ 0.7× raw sha2, read ≥ 2 GiB/s from the page cache, peak extra memory
//! < 32 MiB; eight writers storing the same bytes at once ≤ 1.5× one store; and the first whole read after a service start, which re-hashes the blob as it
//! streams, at near-raw sha2 speed. Run: `cargo bench -p cos_storage_service --bench store_177mib`.
//! `COS_BENCH_MIB=<n>` changes the size (e.g. 16 for a quick run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use cos_common::{CallerContext, ContentHash, Partition};
use cos_storage_service::{CreateOptions, HandleRequest, ServiceConfig, StorageService, Streamed};
use cos_test_support::callers::{caller, hash_of};
use cos_test_support::measure::{median_duration, peak_extra_rss_kib};
use cos_test_support::rng::pattern;
use criterion::{Criterion, SamplingMode, Throughput};
use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;

struct Fixture {
    _dir: tempfile::TempDir,
    service: StorageService,
    caller: CallerContext,
    data: Vec<u8>,
    hash: ContentHash,
}

impl Fixture {
    fn new(mib: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let service = StorageService::open(ServiceConfig::new(dir.path())).expect("open service").0;
        // Incompressible, deterministic bytes, fully touched before measuring.
        let data = pattern(0, mib * CHUNK);
        let hash = hash_of(&data);
        Self { _dir: dir, service, caller: caller("https://whisper.example"), data, hash }
    }

    /// One full store, as the service will see it: 1 MiB chunks, then close.
    fn store(&self) -> Duration {
        let start = Instant::now();
        let handle = self
            .service
            .get_file_handle(&self.caller, self.hash, HandleRequest::Create(CreateOptions::same_site()))
            .unwrap();
        let mut writer = handle.create_writable().unwrap();
        for chunk in self.data.chunks(CHUNK) {
            writer.write(chunk).unwrap();
        }
        let outcome = writer.close().unwrap();
        let elapsed = start.elapsed();
        assert!(outcome.new_blob, "each sample must store a new blob");
        elapsed
    }

    /// `writers` stores of the same bytes at once, by as many origins, each on its own thread
    /// (as renderers' data pipes are): from the first handle to the last close.
    fn store_same(&self, writers: usize) -> Duration {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for n in 0..writers {
                scope.spawn(move || {
                    let who = caller(&format!("https://renderer{n}.example"));
                    let request = HandleRequest::Create(CreateOptions::same_site());
                    let handle = self.service.get_file_handle(&who, self.hash, request).unwrap();
                    let mut writer = handle.create_writable().unwrap();
                    for chunk in self.data.chunks(CHUNK) {
                        writer.write(chunk).unwrap();
                    }
                    writer.close().unwrap();
                });
            }
        });
        start.elapsed()
    }

    /// Deletes the entry again (not timed) so the next store writes a new blob.
    fn forget(&self) {
        self.service.clear_site_data(Partition::Regular, self.caller.origin()).unwrap();
    }

    /// Deletes what [`Self::store_same`] stored (not timed).
    fn forget_same(&self, writers: usize) {
        for n in 0..writers {
            let who = caller(&format!("https://renderer{n}.example"));
            self.service.clear_site_data(Partition::Regular, who.origin()).unwrap();
        }
    }

    /// One full read into a reused 1 MiB buffer.
    fn read(&self, buffer: &mut [u8]) -> Duration {
        let start = Instant::now();
        let file =
            self.service.get_file_handle(&self.caller, self.hash, HandleRequest::Read).unwrap().get_file().unwrap();
        let mut offset = 0u64;
        loop {
            let n = file.read_at(offset, buffer).unwrap();
            if n == 0 {
                break;
            }
            black_box(&buffer[..n]);
            offset += n as u64;
        }
        assert_eq!(offset, self.data.len() as u64);
        start.elapsed()
    }
}

/// The first whole read after each service start (which re-hashes the blob as it streams), in
/// its own store: each round reopens the service (not timed), then streams the entry in data-pipe
/// sized chunks, as the read pipe does. Each round also hashes the bytes raw, right before, so
/// that the two are compared under the same machine state. Returns (first read, raw sha2).
fn first_reads_after_restart(data: &[u8], hash: ContentHash, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let caller = caller("https://whisper.example");
    {
        let service = StorageService::open(ServiceConfig::new(dir.path())).expect("open service").0;
        let handle = service.get_file_handle(&caller, hash, HandleRequest::Create(CreateOptions::same_site())).unwrap();
        let mut writer = handle.create_writable().unwrap();
        for chunk in data.chunks(CHUNK) {
            writer.write(chunk).unwrap();
        }
        writer.close().unwrap();
    }
    (0..rounds)
        .map(|_| {
            let service = StorageService::open(ServiceConfig::new(dir.path())).expect("reopen service").0;
            let raw = hash_raw(data);
            let start = Instant::now();
            let file = service.get_file_handle(&caller, hash, HandleRequest::Read).unwrap().get_file().unwrap();
            let mut streamed = 0usize;
            let outcome = file.stream(0, u64::MAX, &[1], 128 * 1024, |frame| {
                streamed += black_box(frame).len() - 1;
                true
            });
            let elapsed = start.elapsed();
            assert_eq!((outcome, streamed), (Ok(Streamed::Complete), data.len()), "a verified whole read");
            (elapsed, raw)
        })
        .unzip()
}

fn hash_raw(data: &[u8]) -> Duration {
    let start = Instant::now();
    black_box(Sha256::digest(black_box(data)));
    start.elapsed()
}

fn mib_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1u64 << 20) as f64 / time.as_secs_f64()
}

fn main() {
    let mib: usize = std::env::var("COS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(177);
    let fixture = Fixture::new(mib);
    let bytes = fixture.data.len();
    let mut buffer = vec![0u8; CHUNK];

    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let mut group = criterion.benchmark_group(format!("store_{mib}mib"));
    group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("raw_sha2", |b| b.iter_custom(|iters| (0..iters).map(|_| hash_raw(&fixture.data)).sum()));
    group.bench_function("cos_store_verified_durable", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let t = fixture.store();
                    fixture.forget();
                    t
                })
                .sum()
        })
    });
    fixture.store();
    group.bench_function("cos_read_page_cache", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fixture.read(&mut buffer)).sum())
    });
    group.finish();
    fixture.forget();

    // The same three, interleaved (so all see the same machine state), for the ratio summary.
    const ROUNDS: usize = 7;
    const SAME: usize = 8;
    let (mut sha, mut store, mut read, mut same) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        sha.push(hash_raw(&fixture.data));
        store.push(fixture.store());
        read.push(fixture.read(&mut buffer));
        fixture.forget();
        same.push(fixture.store_same(SAME));
        fixture.forget_same(SAME);
    }
    let (mut first_reads, mut raw_beside) = first_reads_after_restart(&fixture.data, fixture.hash, ROUNDS);
    let (first_read, raw_beside) = (median_duration(&mut first_reads), median_duration(&mut raw_beside));
    let peak = peak_extra_rss_kib(|| {
        fixture.store();
    });
    let (sha, store, read) = (median_duration(&mut sha), median_duration(&mut store), median_duration(&mut read));
    let same = median_duration(&mut same);
    let (sha_rate, store_rate, read_rate) = (mib_per_s(bytes, sha), mib_per_s(bytes, store), mib_per_s(bytes, read));
    println!("\nstore_{mib}mib summary (median of {ROUNDS} interleaved rounds)");
    println!("  raw sha2 SHA-256        {sha_rate:8.0} MiB/s  ({:.1} ms)", sha.as_secs_f64() * 1e3);
    println!(
        "  COS store (verified,    {store_rate:8.0} MiB/s  ({:.1} ms)  = {:.2}x raw sha2   [target >= 0.70x]",
        store.as_secs_f64() * 1e3,
        store_rate / sha_rate
    );
    println!("   durable, committed)");
    println!(
        "  {SAME} writers of the same  {:8.1} ms  = {:.2}x one store   [target <= 1.5x]",
        same.as_secs_f64() * 1e3,
        same.as_secs_f64() / store.as_secs_f64()
    );
    println!("   bytes at once");
    println!(
        "  COS read (page cache)   {read_rate:8.0} MiB/s  ({:.1} ms)  = {:.2} GiB/s        [target >= 2 GiB/s]",
        read.as_secs_f64() * 1e3,
        read_rate / 1024.0
    );
    let first_read_rate = mib_per_s(bytes, first_read);
    println!(
        "  COS first read after    {first_read_rate:8.0} MiB/s  ({:.1} ms)  = {:.2}x raw sha2 beside it ({:.0} MiB/s)   [target: near 1x]",
        first_read.as_secs_f64() * 1e3,
        first_read_rate / mib_per_s(bytes, raw_beside),
        mib_per_s(bytes, raw_beside)
    );
    println!("   a restart (re-hashed)");
    match peak {
        Some(peak_kib) => {
            println!("  peak extra memory of one store: {:.1} MiB   [target < 32 MiB]", peak_kib as f64 / 1024.0)
        }
        None => println!("  peak extra memory: not measurable here (/proc/self/clear_refs unavailable)"),
    }
}
