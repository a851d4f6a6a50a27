//! Every `.any.js` file under `tests/wpt/` through the real `test_shell chromium wpt` command:
//! in headless Chromium, as a window page and in a dedicated worker, at the default
//! `https://web-platform.test/` origin. Without Chromium this fails (the command's error names
//! how to install it); it never skips.

use std::path::Path;
use std::process::Command;

use cos_test_support::conformance;

fn run(file: &Path) -> (String, bool) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_test_shell"));
    command.args(["chromium", "wpt"]).arg(file).args(["--origin", conformance::origin_for(file)]);
    let output = command.output().expect("test_shell runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (text, output.status.success())
}

#[test]
fn every_wpt_file_passes_in_chromium_windows_and_workers() {
    let files = conformance::files();
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
