//! What an embedder builds carries no test seam: the dependency tree of this crate — every
//! product crate an embedder links (`cos_browser`, `cos_renderer`, `cos_common`, `cos_ipc` with
//! its `ipc-channel` link, `cos_storage_service`) — resolved as a product build resolves it
//! (no dev-dependencies), contains neither `cos_test_support` nor the service's `testing`
//! feature (fixtures, fault injection, fixed GREASE, serving unsandboxed). A `cfg` check cannot
//! show this, since every test build turns the seams on through dev-dependencies; so this asks
//! Cargo.

use std::process::Command;

const SERVICE: &str = "cos_storage_service";
const SEAMS: &str = "testing";

/// Every package of this crate's product dependency tree, with the features it is built with.
fn product_tree(extra: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut args = vec!["tree", "-p", env!("CARGO_PKG_NAME"), "--edges", "normal,build", "--prefix", "none"];
    args.extend_from_slice(&["--format", "{p}|{f}", "--offline"]);
    args.extend_from_slice(extra);
    let output =
        Command::new(env!("CARGO")).args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("cargo runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("UTF-8");
    tree.lines()
        .filter_map(|line| line.split_once('|'))
        .map(|(package, features)| {
            let name = package.split_whitespace().next().unwrap_or_default().to_owned();
            (name, features.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect())
        })
        .collect()
}

fn service_features(tree: &[(String, Vec<String>)]) -> Vec<String> {
    tree.iter().filter(|(name, _)| name == SERVICE).flat_map(|(_, features)| features.clone()).collect()
}

#[test]
fn an_embedders_build_has_no_test_seams() {
    // Asked for, the seams show up: otherwise the query below would prove nothing.
    let with_seams = product_tree(&["--features", "cos_storage_service/testing"]);
    assert!(service_features(&with_seams).iter().any(|f| f == SEAMS));

    let product = product_tree(&[]);
    for crate_name in ["cos_browser", "cos_renderer", "cos_common", "cos_ipc", SERVICE] {
        assert!(product.iter().any(|(name, _)| name == crate_name), "{crate_name} is in the embedder's tree");
    }
    assert!(!product.iter().any(|(name, _)| name == "cos_test_support"), "a product crate depends on the test support");
    let features = service_features(&product);
    assert!(!features.iter().any(|f| f == SEAMS), "an embedder's build has the service's test seams: {features:?}");
}
