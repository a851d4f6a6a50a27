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
    assert!(
        output.contains(r#"{"entries_checked":2,"bytes_checked":62,"corrupt_removed":1,"missing_removed":0}"#),
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
    let (output, code) = shell(&["wpt", &read.to_string_lossy(), "--profile", &profile.path().to_string_lossy()]);
    assert_eq!(code, 0, "{output}");
    assert!(output.ends_with("2 passed, 0 failed\n"), "{output}");
}
