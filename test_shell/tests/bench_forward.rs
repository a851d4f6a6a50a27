//! `test_shell bench` runs the bench binary that sits beside the shell, passing its arguments on
//! as they are, and says how to build that binary when there is none.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A copy of the shell in `dir`, so that what sits beside it is up to the test.
fn shell_in(dir: &Path) -> std::path::PathBuf {
    let shell = dir.join("test_shell");
    std::fs::copy(env!("CARGO_BIN_EXE_test_shell"), &shell).unwrap();
    shell
}

/// One test, so that no other test thread forks while a file this one runs is still open for
/// writing (the child would hold it open and exec would fail with "text file busy").
#[test]
fn runs_the_bench_binary_beside_it_or_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let shell = shell_in(dir.path());
    let output = Command::new(&shell).args(["bench", "--quick"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cargo build --release -p cos_shell_bench"), "{stderr}");
    assert!(stderr.contains(&dir.path().join("test_shell_bench").display().to_string()), "{stderr}");

    let bench = dir.path().join("test_shell_bench");
    std::fs::write(&bench, "#!/bin/sh\nprintf '%s|' \"$@\"\n").unwrap();
    std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(shell).args(["bench", "--quick", "--json", "--only", "cos", "--help"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "--quick|--json|--only|cos|--help|");
}
