//! The real client libraries (Transformers.js 4.3.2 and 4.2.0, WebLLM, wllama), unmodified, in
//! real headless Chromium with the real sandboxed storage service: each at site A, then site B.
//! This binary is also the service (`--type=storage-service`), so it has its own `main`. It
//! fails, never skips, when Chromium or the packages cannot be had. Waits are hang guards only.

use std::process::ExitCode;

use cos_shell_chromium::clients;
use cos_shell_chromium::clients::report::shares_across_sites;
use cos_shell_chromium::clients::sites::Client;

fn main() -> ExitCode {
    if let Some(code) = cos_shell_chromium::run_child_process() {
        return code;
    }
    let program = std::env::current_exe().expect("the test binary");
    let report = match clients::run(&program, &mut |line| eprintln!("{line}")) {
        Ok(report) => report,
        Err(error) => {
            println!("test clients_share_model_files_across_sites ... FAILED");
            eprintln!(
                "FAILED: {error}\n(set-up: `apt-get install chromium` or CHROMIUM=<executable>; \
                 `test_shell chromium setup` fetches the client packages into $COS_CLIENTS_DIR \
                 or target/cos-clients)"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut table = Vec::new();
    report.write_table(&mut table).expect("writing to memory");
    println!("{}", String::from_utf8_lossy(&table));
    // The conditions, asserted one by one so that a failure names the first one broken.
    let by = |name: &str, version: &str| {
        report
            .clients
            .iter()
            .find(|c| c.client == name && c.version == version)
            .unwrap_or_else(|| panic!("{name} {version} ran"))
    };
    let outcome = std::panic::catch_unwind(|| {
        assert_eq!(report.clients.len(), Client::ALL.len(), "every client ran");
        for (client, run) in Client::ALL.iter().zip(&report.clients) {
            let label = format!("{} {}", run.client, run.version);
            assert_eq!(run.sites.len(), 2, "{label} ran at both sites");
            assert!(run.sites.iter().all(|s| s.report.error.is_none()), "{label}: no page error");
            // Every request but the top-level navigation (no Origin, no Referer) is billed to the
            // page's site, the cross-site ones to the model hub and the CDN included.
            assert!(run.sites.iter().all(|s| s.unattributed_requests <= 1), "{label}: requests attributed");
            let (first, second) = (&run.sites[0].network, &run.sites[1].network);
            assert!(first.model_files > 0, "{label}: the first site downloads the model files");
            if shares_across_sites(*client) {
                assert_eq!(second.model_files, 0, "{label}: the second site downloads no model files");
            } else {
                // Written without `origins`: the entry stays with its site, the model comes again.
                assert_eq!(second.model_files, first.model_files, "{label}: not disclosed across sites");
            }
        }
        let t432 = by("transformers.js", "4.3.2");
        let t420 = by("transformers.js", "4.2.0");
        let fingerprint = &t432.sites[0].report.inference;
        assert!(fingerprint.is_some(), "Transformers.js ran inference");
        for run in t432.sites.iter().chain(&t420.sites) {
            assert_eq!(&run.report.inference, fingerprint, "identical inference at {}", run.site);
        }
        for (name, version) in [("web-llm", "0.2.86"), ("wllama", "3.13.0")] {
            assert!(by(name, version).sites[1].from_cos > 0, "{name}: the second site reads from COS");
        }
        assert!(report.passed(), "the report agrees: {:?}", report.failures);
    });
    match outcome {
        Ok(()) => {
            println!("test clients_share_model_files_across_sites ... ok");
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("test clients_share_model_files_across_sites ... FAILED");
            ExitCode::FAILURE
        }
    }
}
