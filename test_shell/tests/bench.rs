//! `test_shell bench --quick --json` as CI runs it: a smoke test of every part through the real
//! processes. No speed is asserted (this machine is shared and noisy); the figures must exist,
//! be sane, and the dedup and start-up steps must have done what they claim.

use std::process::Command;

#[test]
fn the_quick_bench_measures_every_part() {
    let output = Command::new(env!("CARGO_BIN_EXE_test_shell"))
        .args(["bench", "--quick", "--json"])
        .output()
        .expect("test_shell runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    assert!(stderr.contains("baselines:") && stderr.contains("scale:"), "progress on stderr:\n{stderr}");
    let figures = [
        "\"sha256 16 MiB\"",
        "\"memcpy 16 MiB\"",
        "\"write+fsync 16 MiB\"",
        "\"page-cache read 16 MiB\"",
        "\"transport round trip\"",
        "\"transport bulk 16 MiB (1 MiB writes)\"",
        "\"store 16 MiB\"",
        "\"read 16 MiB\"",
        "\"store 4.5 MiB\"",
        "\"read 1 KiB\"",
        "\"lookup hit\"",
        "\"lookup miss\"",
        "\"4 renderers store distinct 4 MiB at once\"",
        "\"4 renderers store the same 8 MiB at once\"",
        "\"lookups/s with 8 renderers\"",
        "\"Public Hash List load, 50000 digests\"",
        "\"service RSS growth storing 256 MiB\"",
        "\"start-up with 5000 entries\"",
    ];
    for figure in figures {
        assert!(stdout.contains(&format!("\"name\":{figure}")), "{figure} missing from {stdout}");
    }
    assert!(stdout.contains("1 blob on disk each round"), "dedup left one blob: {stdout}");
    for ratio in ["store 16 MiB / raw sha256", "lookup hit p50 / two raw round trips", "start-up with 5000 entries, ms"]
    {
        assert!(stdout.contains(&format!("\"name\":\"{ratio}\"")), "ratio {ratio} missing from {stdout}");
    }
    assert!(stdout.contains("\"peers\":null"), "peers were not asked for: {stdout}");
    assert!(!stdout.contains("\"median\":0,"), "every figure has a non-zero median: {stdout}");
    assert!(stdout.trim_start().starts_with('{') && stdout.trim_end().ends_with('}'), "one JSON object: {stdout}");
}
