//! The example embedder's story, run for real: this test binary is the browser, and re-executes
//! itself as the sandboxed storage service and as two content processes whose COS links are
//! `ipc-channel`s (own harness, since it re-executes itself).

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = cos_embedder_example::child_role() {
        return code;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let name = "servo_like_embedder_stores_reads_hides_the_entry_cross_site_and_terminates_a_liar";
    if filter.as_deref().is_some_and(|f| !name.contains(f)) {
        println!("\n0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let profile = tempfile::tempdir().expect("a scratch profile");
    let mut lines = Vec::new();
    let run = cos_embedder_example::run_browser(profile.path(), &mut |line| {
        println!("{line}");
        lines.push(line);
    });
    let checks = [
        run.is_ok(),
        lines.iter().any(|l| l.starts_with("browser: storage service started")),
        lines.iter().any(|l| l.starts_with("content[Pipeline(2,1)]:") && l.contains("verified and stored")),
        lines.iter().any(|l| l.starts_with("content[Pipeline(2,1)]:") && l.contains("\"tiny model weights\"")),
        lines.iter().any(|l| l.starts_with("content[Pipeline(3,1)]:") && l.ends_with("NotFoundError")),
        lines
            .iter()
            .any(|l| l.starts_with("browser: content process 3 named Pipeline(2,1)") && l.contains("terminated")),
        // The liar's read never got an answer to report.
        !lines.iter().any(|l| l.starts_with("content[Pipeline(4,1)]:")),
    ];
    if let Err(error) = &run {
        println!("the browser failed: {error}");
    }
    if checks.iter().all(|&ok| ok) {
        println!("test {name} ... ok\n\n1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("test {name} ... FAILED (checks {checks:?})\n\n0 passed, 1 failed");
        ExitCode::FAILURE
    }
}
