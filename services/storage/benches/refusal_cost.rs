//! What a refused read costs before the floor hides it. Every refusal (SPEC §6: miss, scope, Public
//! Hash List, probe budget) is held to `DEFAULT_NOT_FOUND_FLOOR` in the service; that only hides
//! the differences if the slowest refusal decision stays well below it, whatever the entry holds.
//! This measures `getFileHandle` refusals with the floor switched off, interleaved, for each
//! class — including entries with 100 listed origins and with a thousand storing sites (the most
//! an entry records), which used to cost far more than a miss — and compares the slowest class's
//! 99th percentile with the floor (the rarer tail is the machine's scheduling, the same for every
//! class, and longer than any floor could be).
//!
//! `cargo bench -p cos_storage_service --bench refusal_cost` (`COS_BENCH_ROUNDS=n` to change the
//! count).

use std::time::{Duration, Instant};

use cos_common::{AllowOriginCeiling, CallerContext, ContentHash, CosError, Origin, OriginsOption, Partition, Site};
use cos_storage_service::visibility::MAX_STORING_ORIGINS;
use cos_storage_service::{
    CreateOptions, DEFAULT_NOT_FOUND_FLOOR, GateConfig, HandleRequest, PublicHashList, ServiceConfig, StorageService,
};
use cos_test_support::callers::{hash_of, origin};
use cos_test_support::measure::quantile;

fn store(service: &StorageService, writer: &CallerContext, bytes: &[u8], options: CreateOptions) {
    let handle = service.get_file_handle(writer, hash_of(bytes), HandleRequest::Create(options)).unwrap();
    let mut file = handle.create_writable().unwrap();
    file.write(bytes).unwrap();
    file.close().unwrap();
}

/// The `p`th quantile of sorted nanosecond samples, in µs.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    quantile(sorted, p).unwrap_or(0) as f64 / 1000.0
}

fn main() {
    let rounds: usize = std::env::var("COS_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let public = vec![7u8; 600 * 1024];
    let config = ServiceConfig::new(dir.path())
        .with_gates(GateConfig {
            public_hash_list: Some(PublicHashList::from_hashes([hash_of(&public)])),
            ..GateConfig::default()
        })
        .with_not_found_floor(Duration::ZERO);
    let (service, _) = StorageService::open(config).unwrap();

    eprintln!("populating: four small entries, one listing 100 origins, two with {MAX_STORING_ORIGINS} storing sites");
    let owner = CallerContext::top_level(origin("https://owner.example"));
    let global = CreateOptions::with_origins(OriginsOption::Global, AllowOriginCeiling::empty());
    store(&service, &owner, b"same-site only", CreateOptions::same_site());
    store(&service, &owner, b"global, not on the list", global.clone());
    store(&service, &owner, &public, global.clone());
    let listed: Vec<Origin> = (0..100).map(|i| origin(&format!("https://listed-{i:03}.example"))).collect();
    let with_list = CreateOptions::with_origins(
        OriginsOption::List(listed.clone()),
        AllowOriginCeiling::from_origins(listed.iter().cloned()),
    );
    store(&service, &owner, b"lists 100 origins", with_list.clone());
    let long_url = format!("https://owner.example/{}", "p".repeat(2000));
    let worst_options = CreateOptions { document_url: Some(long_url.clone()), ..with_list };
    store(&service, &owner, b"everything at once", worst_options.clone());
    store(&service, &owner, b"everything at once", global);
    for i in 0..MAX_STORING_ORIGINS - 1 {
        let storer = CallerContext::top_level(origin(&format!("https://storer-{i:04}.example")));
        store(&service, &storer, b"a thousand storing sites", CreateOptions::same_site());
        let options = CreateOptions { document_url: Some(long_url.clone()), ..CreateOptions::same_site() };
        store(&service, &storer, b"everything at once", options);
    }
    store(&service, &owner, b"a thousand storing sites", CreateOptions::same_site());

    // The prober, in two top-level pages of names of the same length: one with a fresh budget,
    // one whose budget is spent.
    let prober = origin("https://prober.example");
    let fresh = CallerContext::new(prober.clone(), Site::of(&origin("https://fresh1.example")), Partition::Regular);
    let spent = CallerContext::new(prober, Site::of(&origin("https://spent1.example")), Partition::Regular);
    for i in 0..16 {
        let _ = service.get_file_handle(&spent, hash_of(format!("spend {i}").as_bytes()), HandleRequest::Read);
    }
    let classes: Vec<(&str, &CallerContext, ContentHash)> = vec![
        ("miss", &fresh, hash_of(b"never stored")),
        ("denied by scope", &fresh, hash_of(b"same-site only")),
        ("denied by the Public Hash List", &fresh, hash_of(b"global, not on the list")),
        ("over the probe budget", &spent, hash_of(&public)),
        ("miss, over the budget", &spent, hash_of(b"never stored")),
        ("100 listed origins", &fresh, hash_of(b"lists 100 origins")),
        ("1,000 storing sites", &fresh, hash_of(b"a thousand storing sites")),
        ("1,000 sites + 100 listed + global", &fresh, hash_of(b"everything at once")),
    ];
    // Warm-up: the first probe of each hash is charged (a registry write); later ones are not.
    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(rounds); classes.len()];
    for round in 0..rounds + 100 {
        for (i, (name, caller, hash)) in classes.iter().enumerate() {
            let started = Instant::now();
            let answer = service.get_file_handle(caller, *hash, HandleRequest::Read);
            let elapsed = started.elapsed();
            assert_eq!(answer.err(), Some(CosError::NotFound), "{name} must be refused");
            if round >= 100 {
                samples[i].push(elapsed.as_nanos() as u64);
            }
        }
    }
    println!("Refusal cost without the floor ({rounds} interleaved samples per class, in-process, on disk)");
    println!("  class                                median     p99   p99.9     max   (µs)");
    let mut slowest = 0f64;
    for ((name, ..), class) in classes.iter().zip(&mut samples) {
        class.sort_unstable();
        slowest = slowest.max(percentile(class, 0.99));
        println!(
            "  {name:<36} {:6.2}  {:6.2}  {:6.2}  {:6.1}",
            percentile(class, 0.5),
            percentile(class, 0.99),
            percentile(class, 0.999),
            percentile(class, 1.0)
        );
    }
    let floor = DEFAULT_NOT_FOUND_FLOOR.as_secs_f64() * 1e6;
    let verdict = if slowest * 2.0 <= floor { "met" } else { "MISSED" };
    println!("  slowest p99 {slowest:.2} µs against the {floor:.0} µs floor [target: at most half of it]: {verdict}");
}
