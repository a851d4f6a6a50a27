//! The privacy gates of the global grant (SPEC §6), through the service's public API.

use cos_common::AllowOriginCeiling;
use cos_common::{CallerContext, CosError, OriginsOption, Partition, Site};
use cos_storage_service::{
    CreateOptions, GateConfig, GreaseMode, HandleRequest, PublicHashList, ServiceConfig, StorageService,
};
use cos_test_support::callers::{caller, hash_of, origin};
use cos_test_support::storage::store_with;

/// A frame of `frame` inside a top-level document of `top_level`.
fn framed(frame: &str, top_level: &str) -> CallerContext {
    CallerContext::new(origin(frame), Site::of(&origin(top_level)), Partition::Regular)
}

fn open(dir: &std::path::Path, gates: GateConfig) -> StorageService {
    StorageService::open(ServiceConfig::new(dir).with_gates(gates)).unwrap().0
}

fn gates(list: &[&[u8]]) -> GateConfig {
    GateConfig {
        public_hash_list: Some(PublicHashList::from_hashes(list.iter().map(|b| hash_of(b)))),
        grease: GreaseMode::ForTests(false),
        ..GateConfig::default()
    }
}

fn store(service: &StorageService, who: &CallerContext, bytes: &[u8], origins: OriginsOption, ceiling: &[&str]) {
    let options =
        CreateOptions::with_origins(origins, AllowOriginCeiling::from_origins(ceiling.iter().map(|o| origin(o))));
    store_with(service, who, bytes, options).unwrap();
}

fn global(service: &StorageService, who: &CallerContext, bytes: &[u8]) {
    store(service, who, bytes, OriginsOption::Global, &[]);
}

fn readable(service: &StorageService, who: &CallerContext, bytes: &[u8]) -> bool {
    match service.get_file_handle(who, hash_of(bytes), HandleRequest::Read) {
        Ok(handle) => handle.get_file().is_ok(),
        Err(error) => {
            assert_eq!(error, CosError::NotFound, "every failed read is NotFoundError");
            false
        }
    }
}

#[test]
fn the_public_hash_list_decides_and_reloads_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let service = open(dir.path(), gates(&[b"public"]));
    global(&service, &caller("https://a.example"), b"public");
    global(&service, &caller("https://a.example"), b"private");
    let stranger = caller("https://z.example");
    assert!(readable(&service, &stranger, b"public"));
    assert!(!readable(&service, &stranger, b"private"));
    service.set_public_hash_list(Some(PublicHashList::from_hashes([hash_of(b"private")])));
    assert!(service.is_on_public_hash_list(&hash_of(b"private")));
    assert!(readable(&service, &stranger, b"private"));
    assert!(!readable(&service, &caller("https://y.example"), b"public"), "off the new list");
    service.set_public_hash_list(None);
    assert!(!readable(&service, &caller("https://x.example"), b"private"), "no list: fail closed");
}

#[test]
fn availability_gating_needs_k_distinct_sites_and_reads_never_count() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        GateConfig { availability_threshold: Some(3), grease: GreaseMode::ForTests(false), ..GateConfig::default() };
    let service = open(dir.path(), config);
    let bytes = vec![5u8; 600 * 1024];
    global(&service, &caller("https://a.example"), &bytes);
    global(&service, &caller("https://www.a.example"), &bytes); // same site: still one
    global(&service, &caller("https://b.example"), &bytes);
    // Reads by many sites do not count.
    for i in 0..5 {
        assert!(!readable(&service, &caller(&format!("https://reader{i}.example")), &bytes), "K-1 sites");
    }
    global(&service, &caller("https://c.example"), &bytes);
    assert!(readable(&service, &caller("https://reader9.example"), &bytes), "K sites");
}

#[test]
fn grease_never_strikes_storers_same_site_listed_or_large_entries() {
    let dir = tempfile::tempdir().unwrap();
    let small = b"small public model".to_vec();
    let large = vec![7u8; 500 * 1024];
    let config = GateConfig { grease: GreaseMode::ForTests(true), ..gates(&[&small, &large]) };
    let service = open(dir.path(), config);
    let writer = caller("https://a.example");
    store(&service, &writer, &small, OriginsOption::List(vec![origin("https://l.example")]), &["https://l.example"]);
    global(&service, &writer, &small);
    global(&service, &writer, &large);
    assert!(readable(&service, &writer, &small), "storing origin");
    assert!(readable(&service, &caller("https://www.a.example"), &small), "same site");
    assert!(readable(&service, &caller("https://l.example"), &small), "listed");
    assert!(readable(&service, &caller("https://z.example"), &large), "≥ 500 KiB");
    assert!(!readable(&service, &caller("https://z.example"), &small), "global grant, small: GREASE'd");
}

#[test]
fn probe_budget_counts_distinct_hashes_per_top_level_site() {
    let dir = tempfile::tempdir().unwrap();
    let public: Vec<Vec<u8>> = (0..4).map(|i| format!("public model {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = public.iter().map(Vec::as_slice).collect();
    let config = GateConfig { probe_budget: 3, ..gates(&refs) };
    let service = open(dir.path(), config);
    let owner = caller("https://owner.example");
    for bytes in &public {
        global(&service, &owner, bytes);
    }
    let prober = caller("https://prober.example");
    // Misses count too; repeating a hash is free.
    assert!(!readable(&service, &prober, b"never stored"));
    assert!(readable(&service, &prober, &public[0]));
    assert!(readable(&service, &prober, &public[0]));
    assert!(readable(&service, &prober, &public[1]));
    assert!(!readable(&service, &prober, &public[2]), "fourth distinct hash: over budget");
    assert!(readable(&service, &prober, &public[1]), "already charged hashes stay readable");
    // Storing origins are never charged, and create requests are not probes.
    for _ in 0..3 {
        assert!(readable(&service, &owner, &public[3]));
        service
            .get_file_handle(&owner, hash_of(b"create only"), HandleRequest::Create(CreateOptions::same_site()))
            .unwrap();
    }
    assert!(readable(&service, &owner, &public[2]));
    // Keyed by top-level site: the same frame site embedded in another top level has its own.
    assert!(readable(&service, &framed("https://prober.example", "https://host.example"), &public[2]));
    assert!(!readable(&service, &framed("https://other.example", "https://prober.example"), &public[3]));
    // Clearing the prober's data does not reset the budget; a user activation does.
    service.clear_site_data(Partition::Regular, prober.origin()).unwrap();
    assert!(!readable(&service, &prober, &public[2]));
    service.notify_user_activation(Partition::Regular, &Site::of(prober.origin()));
    assert!(readable(&service, &prober, &public[2]));
}

#[test]
fn probe_budgets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let public: Vec<Vec<u8>> = (0..3).map(|i| format!("restart model {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = public.iter().map(Vec::as_slice).collect();
    let config = GateConfig { probe_budget: 2, ..gates(&refs) };
    {
        let service = open(dir.path(), config.clone());
        for bytes in &public {
            global(&service, &caller("https://owner.example"), bytes);
        }
        assert!(readable(&service, &caller("https://prober.example"), &public[0]));
        assert!(readable(&service, &caller("https://prober.example"), &public[1]));
    }
    let service = open(dir.path(), config);
    let prober = caller("https://prober.example");
    assert!(!readable(&service, &prober, &public[2]), "the spent budget was persisted");
    assert!(readable(&service, &prober, &public[0]));
}

#[test]
fn off_the_record_budgets_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let config = GateConfig { probe_budget: 1, ..gates(&[]) };
    let service = open(dir.path(), config);
    let prober = caller("https://prober.example");
    assert!(!readable(&service, &prober, b"a"));
    let private = prober.clone().in_partition(Partition::OffTheRecord(cos_common::OffTheRecordProfileId(1)));
    global(&service, &caller("https://owner.example").in_partition(private.partition()), b"b");
    service.set_public_hash_list(Some(PublicHashList::from_hashes([hash_of(b"b")])));
    assert!(readable(&service, &private, b"b"), "the private profile's budget is its own");
}

#[test]
fn the_list_loads_from_a_file_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phl.txt");
    let good = format!("// Public Hash List\n// ===BEGIN SHA-256===\n{}\n{}\n", hash_of(b"x"), hash_of(b"y"));
    std::fs::write(&path, &good).unwrap();
    let list = PublicHashList::load(&path).unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.contains(&hash_of(b"y")));
    std::fs::write(&path, format!("{good}not a digest\n")).unwrap();
    let error = PublicHashList::load(&path).unwrap_err();
    assert!(error.to_string().contains("line 5"), "{error}");
    assert!(PublicHashList::load(&dir.path().join("missing")).is_err());
}
