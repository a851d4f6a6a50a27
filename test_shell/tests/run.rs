//! The `test_shell` binary as users run it.

use std::path::Path;
use std::process::Command;

fn shell(args: &[&str]) -> (String, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_test_shell")).args(args).output().expect("test_shell runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (text, output.status.code().unwrap_or(-1))
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js").join(name).to_string_lossy().into_owned()
}

#[test]
fn the_harness_semantics_hold_under_quickjs() {
    let (output, code) = shell(&["run", &script("harness_semantics.js")]);
    assert_eq!(code, 0, "{output}");
    assert!(output.ends_with("6 passed, 0 failed\n"), "{output}");
}

#[test]
fn failures_are_reported_one_line_each_and_fail_the_run() {
    let (output, code) = shell(&["run", &script("failures.js")]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(output);
}

#[test]
fn a_file_without_tests_fails() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.js");
    std::fs::write(&empty, "// nothing here\n").unwrap();
    let (output, code) = shell(&["run", &empty.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(output.ends_with("0 passed, 0 failed\n"), "{output}");
}

#[test]
fn a_script_error_and_a_missing_file_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.js");
    std::fs::write(&broken, "test(() => {}, 'x');\nthis is not javascript\n").unwrap();
    let (output, code) = shell(&["run", &broken.to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(output.contains("uncaught") && output.contains("broken.js:2"), "{output}");
    let (output, code) = shell(&["run", "/nonexistent/test.js"]);
    assert_eq!(code, 1);
    assert!(output.contains("cannot read"), "{output}");
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("help", shell(&["--help"]).0);
    insta::assert_snapshot!("run_help", shell(&["run", "--help"]).0);
}

/// The demo's table, with the timings replaced by `[time]` and the second site's download by
/// `[pointers]` (GREASE may send a small file back to the network now and then, by design).
#[test]
fn the_demo_prints_a_table_per_origin() {
    let output = Command::new(env!("CARGO_BIN_EXE_test_shell")).arg("demo").output().expect("test_shell runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| match line.strip_suffix(" s").and_then(|rest| rest.rsplit_once(' ')) {
            Some((head, time)) if time.parse::<f64>().is_ok() => format!("{head} [time]"),
            _ => match line.split_once("downloaded ").zip(line.split_once(" KiB")) {
                Some(((head, _), (_, tail))) => format!("{head}downloaded [pointers] KiB{tail}"),
                None => line.to_owned(),
            },
        })
        .collect();
    insta::assert_snapshot!(table.join("\n"));
}
