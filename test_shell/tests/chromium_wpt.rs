//! Every `.any.js` file under `tests/wpt/` through the real `test_shell chromium wpt` command:
//! in headless Chromium, as a window page and in a dedicated worker, at the default
//! `https://web-platform.test/` origin. Without Chromium this fails (the command's error names
//! how to install it); it never skips.

use std::path::Path;
use std::process::Command;

/// Files that must run at another origin than the default secure one.
const ORIGINS: &[(&str, &str)] = &[("insecure-context.any.js", "http://insecure.example/")];

fn run(file: &Path) -> (String, bool) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut command = Command::new(env!("CARGO_BIN_EXE_test_shell"));
    command.args(["chromium", "wpt"]).arg(file);
    if let Some((_, origin)) = ORIGINS.iter().find(|(f, _)| *f == name) {
        command.args(["--origin", origin]);
    }
    let output = command.output().expect("test_shell runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (text, output.status.success())
}

#[test]
fn every_wpt_file_passes_in_chromium_windows_and_workers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wpt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".any.js"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the conformance files are there");
    let mut failures = Vec::new();
    for file in &files {
        let (output, ok) = run(file);
        println!("== {}\n{output}", file.display());
        // Both variants ran: a file that silently lost its worker half would pass otherwise.
        let workers = output.lines().filter(|line| line.starts_with("PASS ") && line.ends_with(" [worker]")).count();
        let windows = output.lines().filter(|line| line.starts_with("PASS ") && !line.ends_with(" [worker]")).count();
        if !ok || workers == 0 || windows == 0 {
            failures.push(format!("{}:\n{output}", file.display()));
        }
    }
    assert!(failures.is_empty(), "failing files:\n{}", failures.join("\n"));
}
