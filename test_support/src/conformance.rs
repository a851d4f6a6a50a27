//! The project's conformance files (`test_shell/tests/wpt/*.any.js`), which every host runs: the
//! QuickJS shell (`test_shell wpt`) and real Chromium (`test_shell chromium wpt`).

use std::path::{Path, PathBuf};

/// The default page origin, for a file that does not need another one.
pub const DEFAULT_ORIGIN: &str = "https://web-platform.test/";

/// Files that must run at another origin than the default secure one, by file name.
const ORIGINS: &[(&str, &str)] = &[("insecure-context.any.js", "http://insecure.example/")];

/// The directory of the conformance files.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test_shell/tests/wpt")
}

/// Every conformance file, sorted; panics unless there are at least three (a wrong directory
/// must not pass as "nothing to run").
pub fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("the conformance directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".any.js"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the conformance files are there: {files:?}");
    files
}

/// The origin `file` must run at: its own, or [`DEFAULT_ORIGIN`].
pub fn origin_for(file: &Path) -> &'static str {
    let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    ORIGINS.iter().find(|(f, _)| *f == name).map_or(DEFAULT_ORIGIN, |(_, origin)| origin)
}
