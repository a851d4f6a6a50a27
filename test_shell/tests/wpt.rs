//! Every `.any.js` and `.html` file under `tests/wpt/` through the real `test_shell wpt` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use cos_test_support::conformance;

fn run(file: &Path) -> (String, bool) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_test_shell"));
    command.args(["wpt"]).arg(file).args(["--origin", conformance::origin_for(file)]);
    let output = command.output().expect("test_shell runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (text, output.status.success())
}

fn all_pass(files: &[PathBuf]) {
    let mut failures = Vec::new();
    for file in files {
        let (output, ok) = run(file);
        println!("== {}\n{output}", file.display());
        if !ok {
            failures.push(file.display().to_string());
        }
    }
    assert!(failures.is_empty(), "failing files: {failures:?}");
}

#[test]
fn every_wpt_file_passes() {
    all_pass(&conformance::files());
}

/// The testharness.js pages (SPEC §12): served from their directory at the default origin,
/// loaded as documents. Chromium's runner takes `.any.js` files only, so these are listed here.
#[test]
fn every_html_test_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wpt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "html"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the declarative tests are there: {files:?}");
    all_pass(&files);
}
