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
            // The padding before the time depends on the time's width: a slow machine's 10 s
            // must not change the snapshot.
            Some((head, time)) if time.parse::<f64>().is_ok() => format!("{} [time]", head.trim_end()),
            _ => match line.split_once("downloaded ").zip(line.split_once(" KiB")) {
                Some(((head, _), (_, tail))) => format!("{head}downloaded [pointers] KiB{tail}"),
                None => line.to_owned(),
            },
        })
        .collect();
    insta::assert_snapshot!(table.join("\n"));
}

/// Stores two entries from a page into `profile` (through the whole browser), returning their
/// blob files.
fn profile_with_two_entries(profile: &Path) -> [std::path::PathBuf; 2] {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.any.js");
    let contents = ["the first entry, to be damaged", "the second entry, to stay intact"];
    std::fs::write(
        &store,
        format!(
            "for (const text of {contents:?}) promise_test(async () => {{\n\
               const bytes = new TextEncoder().encode(text);\n\
               const value = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]\n\
                 .map((b) => b.toString(16).padStart(2, '0')).join('');\n\
               const handle = await navigator.crossOriginStorage.getFileHandle({{ algorithm: 'SHA-256', value }}, {{ create: true }});\n\
               const writable = await handle.createWritable();\n\
               await writable.write(bytes);\n\
               await writable.close();\n\
             }}, text);\n"
        ),
    )
    .unwrap();
    let (output, code) = shell(&["wpt", &store.to_string_lossy(), "--profile", &profile.to_string_lossy()]);
    assert_eq!(code, 0, "{output}");
    contents.map(|text| {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        profile.join("cos/blobs").join(&hex[..2]).join(hex)
    })
}

#[test]
fn scrub_deletes_a_damaged_entry_and_then_finds_the_store_clean() {
    let profile = tempfile::tempdir().unwrap();
    let [damaged, intact] = profile_with_two_entries(profile.path());
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let profile_arg = profile.path().to_string_lossy().into_owned();
    let (output, code) = shell(&["scrub", "--profile", &profile_arg, "--json"]);
    assert_eq!(code, 1, "damage found: {output}");
    let report: serde_json::Value = output
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("a JSON report: {output}"));
    assert_eq!(
        report,
        serde_json::json!({"entries_checked": 2, "bytes_checked": 62, "corrupt_removed": 1, "missing_removed": 0}),
        "{output}"
    );
    assert!(output.contains("scrub: 2/2 entries"), "progress is shown: {output}");
    assert!(!damaged.exists() && intact.exists());
    let (output, code) = shell(&["scrub", "--profile", &profile_arg]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("1 entries re-hashed (32 bytes): 0 damaged and deleted, 0 missing and deleted"),
        "{output}"
    );
}

#[test]
fn scrub_refuses_a_directory_without_a_store() {
    let empty = tempfile::tempdir().unwrap();
    let (output, code) = shell(&["scrub", "--profile", &empty.path().to_string_lossy()]);
    assert_eq!(code, 1);
    assert!(output.contains("holds no Cross-Origin Storage"), "{output}");
}

#[test]
fn a_page_never_reads_a_blob_damaged_while_the_browser_was_closed() {
    let profile = tempfile::tempdir().unwrap();
    let [damaged, _intact] = profile_with_two_entries(profile.path());
    let mut bytes = std::fs::read(&damaged).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let read = dir.path().join("read.any.js");
    std::fs::write(
        &read,
        "async function hashOf(text) {\n\
           const bytes = new TextEncoder().encode(text);\n\
           const value = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]\n\
             .map((b) => b.toString(16).padStart(2, '0')).join('');\n\
           return { algorithm: 'SHA-256', value };\n\
         }\n\
         promise_test(async (t) => {\n\
           const handle = await navigator.crossOriginStorage.getFileHandle(await hashOf('the first entry, to be damaged'));\n\
           await promise_rejects_dom(t, 'NotFoundError', handle.getFile().then((file) => file.text()));\n\
           await promise_rejects_dom(t, 'NotFoundError',\n\
             navigator.crossOriginStorage.getFileHandle(await hashOf('the first entry, to be damaged')));\n\
         }, 'the damaged entry fails its first read, then is gone');\n\
         promise_test(async () => {\n\
           const handle = await navigator.crossOriginStorage.getFileHandle(await hashOf('the second entry, to stay intact'));\n\
           assert_equals(await (await handle.getFile()).text(), 'the second entry, to stay intact');\n\
         }, 'the intact entry reads');\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_test_shell"))
        .args(["wpt", &read.to_string_lossy(), "--profile", &profile.path().to_string_lossy()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.ends_with("2 passed, 0 failed\n"), "{stdout}");
    // The operator learns of the removal even at the default log level, from the service.
    assert!(
        stderr.lines().any(|l| l.starts_with("storage-service: ") && l.contains("does not match its hash")),
        "{stderr}"
    );
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(name).to_string_lossy().into_owned()
}

/// Runs the shell with `args` and `RUST_LOG` as given (unset for `None`): (stdout, stderr, success).
fn run_shell(args: &[&str], rust_log: Option<&str>) -> (String, String, bool) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_test_shell"));
    command.args(args);
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let output = command.output().expect("test_shell runs");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

#[test]
fn console_lines_of_every_realm_are_printed_and_quiet_hides_them() {
    let file = scenario("console_and_large_values.js");
    let (stdout, stderr, passed) = run_shell(&["run", &file], None);
    assert!(passed, "{stdout}{stderr}");
    assert!(stdout.ends_with("4 passed, 0 failed\n"), "{stdout}");
    // In the order the scripts wrote them, before the results.
    let expected = [
        "[harness] visible",
        "[https://console.test] from the page",
        "[https://console.test] an info line",
        "[https://console.test] a debug line",
        "[https://framed.test] from a cross-site frame",
        "[https://console.test] from a worker",
        "[harness] after the pages",
        "PASS a 1 MiB argument reaches the frame",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    let positions: Vec<Option<usize>> = expected.iter().map(|e| lines.iter().position(|l| l == e)).collect();
    assert!(positions.iter().all(Option::is_some), "{stdout}");
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{stdout}");
    assert!(stderr.contains("[https://console.test] warn: a page warning\n"), "{stderr}");
    assert!(stderr.contains("[https://console.test] error: a page error\n"), "{stderr}");

    let (stdout, stderr, passed) = run_shell(&["run", "--quiet", &file], None);
    assert!(passed, "{stdout}{stderr}");
    assert!(!stdout.contains("visible") && !stdout.contains("[https://"), "{stdout}");
    assert!(!stderr.contains("a page warning"), "{stderr}");
    assert!(stdout.ends_with("4 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn a_value_over_the_message_limit_fails_its_call_with_a_clear_error() {
    let (stdout, stderr, passed) = run_shell(&["run", "--message-limit", "100000", &script("message_limit.js")], None);
    assert!(passed, "{stdout}{stderr}");
    assert!(stdout.ends_with("1 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn the_services_log_lines_reach_the_browser_tagged_with_their_process() {
    let file = scenario("eviction.js");
    let (stdout, stderr, passed) = run_shell(&["run", &file], Some("info"));
    assert!(passed, "{stdout}{stderr}");
    let tagged = |process: &str, text: &str| stderr.lines().any(|l| l.starts_with(process) && l.contains(text));
    assert!(tagged("storage-service: ", "storage service locked down"), "{stderr}");
    assert!(tagged("storage-service: ", "evicted least recently read entries"), "{stderr}");
    assert!(tagged("browser: ", "storage service ready"), "{stderr}");
    // The default level keeps a passing run's output as it was.
    let (stdout, stderr, passed) = run_shell(&["run", &file], None);
    assert!(passed, "{stdout}{stderr}");
    assert!(!stderr.contains(" INFO "), "{stderr}");
}

#[test]
fn a_restart_is_logged_by_the_browser_and_the_new_service_and_renderers_log_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restart.js");
    std::fs::write(
        &file,
        "promise_test(async () => { await shell.open('https://a.test/'); await shell.restartStorageService(); }, 'restarts');\n",
    )
    .unwrap();
    let (stdout, stderr, passed) =
        run_shell(&["run", &file.to_string_lossy()], Some("info,test_shell::renderer=debug"));
    assert!(passed, "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("renderer[https://a.test]: ") && l.contains("frame created")),
        "{stderr}"
    );
    let restarting = lines.iter().position(|l| l.starts_with("browser: ") && l.contains("restarting it"));
    let ready_again =
        lines.iter().rposition(|l| l.starts_with("storage-service: ") && l.contains("storage service ready"));
    assert!(restarting.is_some() && ready_again.is_some() && restarting < ready_again, "{stderr}");
}
