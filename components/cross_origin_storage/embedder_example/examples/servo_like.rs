//! `cargo run -p cos_embedder_example --example servo_like`: Cross-Origin Storage embedded as
//! Servo would embed it (see the crate's documentation and EMBEDDING.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    // Every process of the example is this binary: the storage service and the content
    // processes are re-executions of it.
    if let Some(code) = cos_embedder_example::child_role() {
        return code;
    }
    let profile = match tempfile::tempdir() {
        Ok(profile) => profile,
        Err(error) => {
            eprintln!("no scratch profile: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cos_embedder_example::run_browser(profile.path(), &mut |line| println!("{line}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("browser: {error}");
            ExitCode::FAILURE
        }
    }
}
