//! `test_shell_bench --quick --json` as CI runs it: a smoke test of every part through the real
//! processes. No speed is asserted (this machine is shared and noisy); the figures must exist,
//! be sane, and the dedup and start-up steps must have done what they claim.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_quick_bench_measures_every_part() {
    let output = Command::new(env!("CARGO_BIN_EXE_test_shell_bench"))
        .args(["--quick", "--json"])
        .output()
        .expect("test_shell_bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    assert!(stderr.contains("baselines:") && stderr.contains("scale:"), "progress on stderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("one JSON object ({e}): {stdout}"));
    let figures = report["figures"].as_array().expect("figures");
    let figure = |name: &str| figures.iter().find(|f| f["name"] == name);
    for name in [
        "sha256 16 MiB",
        "memcpy 16 MiB",
        "write+fsync 16 MiB",
        "page-cache read 16 MiB",
        "transport round trip",
        "transport bulk 16 MiB (1 MiB writes)",
        "store 16 MiB",
        "read 16 MiB",
        "store 4.5 MiB",
        "read 1 KiB",
        "lookup hit",
        "lookup miss",
        "4 renderers store distinct 4 MiB at once",
        "4 renderers store the same 8 MiB at once",
        "lookups/s with 8 renderers",
        "Public Hash List load, 50000 digests",
        "service RSS growth storing 256 MiB",
        "start-up with 5000 entries",
    ] {
        assert!(figure(name).is_some(), "{name} missing from {stdout}");
    }
    let dedup = figure("4 renderers store the same 8 MiB at once").expect("checked above");
    assert!(dedup["note"].as_str().is_some_and(|n| n.contains("1 blob on disk each round")), "dedup: {dedup}");
    let ratios = report["ratios"].as_array().expect("ratios");
    for name in ["store 16 MiB / raw sha256", "lookup hit p50 / two raw round trips", "start-up with 5000 entries, ms"]
    {
        assert!(ratios.iter().any(|r| r["name"] == name), "ratio {name} missing from {stdout}");
    }
    // The big size's baselines are taken in turn with its COS samples: one ratio per pair.
    let pairs = report["pairs"].as_array().expect("pairs");
    for (cos, baseline) in [
        ("store 16 MiB", "sha256 16 MiB"),
        ("store 16 MiB", "write+fsync 16 MiB"),
        ("read 16 MiB", "page-cache read 16 MiB"),
        ("read 16 MiB", "memcpy 16 MiB"),
    ] {
        let pair = pairs.iter().find(|p| p["cos"]["name"] == cos && p["baseline"]["name"] == baseline);
        let pair = pair.unwrap_or_else(|| panic!("pair {cos} / {baseline} missing from {stdout}"));
        let samples = pair["cos"]["samples"].as_array().map(Vec::len);
        assert_eq!(pair["ratios"].as_array().map(Vec::len), samples, "a ratio per pair: {pair}");
        assert_eq!(pair["baseline"]["samples"].as_array().map(Vec::len), samples, "{pair}");
        assert!(pair["ratio_median"].as_f64().is_some(), "{pair}");
    }
    assert_eq!(report["peers"], Value::Null, "peers were not asked for");
    for figure in figures {
        // Memory growth may truly be nothing; every time, rate and transfer must be measured.
        if figure["kind"] != "memory" {
            assert!(figure["median"].as_f64().is_some_and(|m| m > 0.0), "a zero or missing median: {figure}");
        }
    }
}
