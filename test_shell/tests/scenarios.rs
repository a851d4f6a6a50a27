//! Every scenario under `tests/scenarios/` through `test_shell run` (harness realm + `shell`).

use std::path::Path;
use std::process::Command;

#[test]
fn every_scenario_passes() {
    every_scenario_passes_with(&[]);
}

/// The same suite with every renderer reaching its broker over ipc-channel, as an embedder such
/// as Servo links them (ARCHITECTURE.md, "The renderer link over ipc-channel").
#[test]
fn every_scenario_passes_over_ipc_channel() {
    every_scenario_passes_with(&["--renderer-transport", "ipc-channel"]);
}

fn every_scenario_passes_with(args: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    // Only the scenario scripts: `resources/` holds data files they read.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "js"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for file in &files {
        let output =
            Command::new(env!("CARGO_BIN_EXE_test_shell")).arg("run").args(args).arg(file).output().expect("runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        println!("== {}\n{text}", file.display());
        if !output.status.success() {
            failures.push(file.display().to_string());
        }
    }
    assert!(failures.is_empty(), "failing scenarios: {failures:?}");
}

#[test]
fn visibility_holds_with_one_renderer_for_every_site() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/visibility.js");
    let output = Command::new(env!("CARGO_BIN_EXE_test_shell"))
        .args(["run", "--process-per-site", "false"])
        .arg(&file)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
}
