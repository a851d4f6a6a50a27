//! The real client libraries (Transformers.js 4.3.2 and 4.2.0, WebLLM, wllama), unmodified, in
//! real headless Chromium with the real sandboxed storage service: each at site A, then site B.
//! This binary is also the service (`--type=storage-service`), so it has its own `main`. It
//! fails, never skips, when Chromium or the packages cannot be had. Waits are hang guards only.

use std::process::ExitCode;

use cos_shell_chromium::clients;

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
        for client in &report.clients {
            assert_eq!(client.sites.len(), 2, "{} ran at both sites", client.client);
            assert_eq!(
                client.sites[1].network.model_files, 0,
                "{} {}: the second site downloads no model files",
                client.client, client.version
            );
            assert!(client.sites[0].network.model_files > 0, "{}: the first site downloads them", client.client);
            assert!(client.sites.iter().all(|s| s.report.error.is_none()), "{}: no page error", client.client);
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
