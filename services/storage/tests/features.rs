//! The test seams (`testing`: synthetic-store fixtures, fault injection, fixed GREASE outcomes,
//! serving without the sandbox) never reach a product build. A `cfg` check inside the crate
//! cannot show this: every test build turns the feature on through the dev-dependencies. So
//! these tests ask Cargo itself, as a product build of the service would resolve it.

use std::collections::BTreeSet;
use std::process::{Command, Output};

const PACKAGE: &str = "cos_storage_service";
const SEAMS: &str = "testing";

/// Runs the Cargo that runs these tests, in this package's directory, without the network.
fn cargo(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .arg("--offline")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Every feature `default` turns on, following feature-to-feature edges.
fn default_closure(features: &serde_json::Map<String, serde_json::Value>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending = vec!["default".to_owned()];
    while let Some(feature) = pending.pop() {
        if !seen.insert(feature.clone()) {
            continue;
        }
        let enables = features.get(&feature).and_then(|v| v.as_array()).into_iter().flatten();
        // `dep:x` and `x/y` name other packages' features; only plain names are ours.
        let own = enables.filter_map(|v| v.as_str()).filter(|name| !name.contains(':') && !name.contains('/'));
        pending.extend(own.map(str::to_owned));
    }
    seen
}

#[test]
fn the_default_features_do_not_include_the_test_seams() {
    let metadata = cargo(&["metadata", "--format-version", "1", "--no-deps"]);
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("cargo metadata is JSON");
    let package = metadata["packages"]
        .as_array()
        .expect("a package list")
        .iter()
        .find(|package| package["name"] == PACKAGE)
        .expect("this package is in the workspace");
    let features = package["features"].as_object().expect("a feature table");
    assert!(features.contains_key(SEAMS), "the `{SEAMS}` feature exists, so the check below means something");
    let on_by_default = default_closure(features);
    assert!(!on_by_default.contains(SEAMS), "`default` turns on the test seams: {on_by_default:?}");
}

/// The features a build of this package alone (no dev-dependencies, as `cargo build --release
/// -p cos_storage_service` resolves it) compiles it with.
fn resolved_features(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "-p", PACKAGE, "--edges", "no-dev", "--depth", "0", "--prefix", "none"];
    args.extend_from_slice(&["--format", "{p}|{f}"]);
    args.extend_from_slice(extra);
    let tree = String::from_utf8(cargo(&args).stdout).expect("UTF-8");
    let line = tree.lines().find(|line| line.starts_with(PACKAGE)).expect("the package's own line");
    let (_, features) = line.split_once('|').expect("the format's separator");
    features.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect()
}

#[test]
fn a_product_build_resolves_without_the_test_seams() {
    // The same query with the feature asked for must see it: otherwise the query proves nothing.
    assert!(resolved_features(&["--features", SEAMS]).iter().any(|f| f == SEAMS));
    let product = resolved_features(&[]);
    assert!(!product.iter().any(|f| f == SEAMS), "a product build of the service has the test seams: {product:?}");
}
