//! The bridge in real headless Chromium with the real sandboxed storage service. This binary
//! is also the service (`--type=storage-service`), so it has its own `main`; the tests share
//! one Chromium (each start costs about a second). Without Chromium every test fails with the
//! install hint. Waits are hang guards only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cos_shell_chromium::wpt::{WptRunner, WptVariant, report};
use serde_json::{Value, json};

/// Names the tests' Chromium resolves to the hub.
const HOSTS: &[&str] = &["insecure.example", "a.localhost", "b.localhost"];

fn program() -> PathBuf {
    std::env::current_exe().expect("the test binary")
}

fn wpt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wpt")
}

fn every_wpt_file_passes_in_windows_and_workers(runner: &WptRunner) {
    let mut files: Vec<_> = std::fs::read_dir(wpt_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".any.js"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the conformance files are there");
    let mut failures = Vec::new();
    for file in &files {
        let origin = if file.ends_with("insecure-context.any.js") { "http://insecure.example/" } else { "http://localhost/" };
        let results = runner
            .run(file, origin, None, &[WptVariant::Window, WptVariant::Worker])
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut out = Vec::new();
        let ok = report(&results, &mut out).unwrap();
        println!("== {} at {origin}\n{}", file.display(), String::from_utf8_lossy(&out));
        if !ok {
            failures.push(file.display().to_string());
        }
    }
    assert!(failures.is_empty(), "failing files: {failures:?}");
}

/// Stores `text` from a page of `base`, restricted with `origins`, and returns the hash.
const STORE: &str = r#"
async function store(text, options) {
  const bytes = new TextEncoder().encode(text);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const value = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value }, { ...options, create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
  return value;
}
"#;

fn page(runner: &WptRunner, host: &str, path: &str) -> cos_shell_chromium::Tab {
    let base = runner.page_base(&format!("http://{host}/")).unwrap();
    runner.hub().add(path, b"<!doctype html><title>page</title>".to_vec());
    runner.bridge().open(&format!("{base}{path}")).unwrap()
}

/// (a) The origin is Chromium's record of the calling context, never the payload's.
fn a_page_cannot_act_as_another_origin(runner: &WptRunner) {
    let a = page(runner, "a.localhost", "/a.html");
    let hash = a
        .evaluate(&format!("{STORE}; store('secret of a ' + crypto.randomUUID(), {{ origins: [] }})"))
        .unwrap();
    let hash = hash.as_str().unwrap().to_owned();
    // a itself reads it back.
    let size = a
        .evaluate(&format!(
            "navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: '{hash}'}}).then(h => h.getFile()).then(f => f.size)"
        ))
        .unwrap();
    assert!(size.as_u64().unwrap() > 0);
    let b = page(runner, "b.localhost", "/b.html");
    // b through the API: NotFoundError.
    let plain = b.evaluate(&format!(
        "navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: '{hash}'}}).then(() => 'found', e => e.name)"
    ));
    assert_eq!(plain.unwrap(), json!("NotFoundError"));
    // b forging origin fields in the payload through a re-added binding (a compromised
    // renderer): the extra fields make the call undecodable, never a call as a.
    let bridge = runner.bridge();
    let name = bridge.binding_name().to_owned();
    let session = b.session_id().to_owned();
    bridge
        .block_on(bridge.client().send("Runtime.addBinding", json!({ "name": name }), Some(&session)))
        .unwrap();
    let forged = json!({
        "op": "getFileHandle",
        "hash": { "algorithm": "SHA-256", "value": hash },
        "origin": "http://a.localhost:1",
        "frame": 1,
    });
    // Without the extra fields, the same forged call is still answered as b.
    let honest = json!({ "op": "getFileHandle", "hash": { "algorithm": "SHA-256", "value": hash } });
    let before = bridge.targets_closed_for_misbehaviour();
    b.evaluate(&format!("globalThis[{}]({})", json!(name), json!(format!("77:{forged}")))).unwrap();
    b.evaluate(&format!("globalThis[{}]({})", json!(name), json!(format!("78:{honest}")))).unwrap();
    // Neither call can make b read a's bytes: the API still answers NotFoundError for b.
    let again = b.evaluate(&format!(
        "navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: '{hash}'}}).then(() => 'found', e => e.name)"
    ));
    assert_eq!(again.unwrap(), json!("NotFoundError"));
    assert_eq!(bridge.targets_closed_for_misbehaviour(), before, "well-formed payloads are not a compromise");
    let _ = (a.close(), b.close());
}

fn get(url: &str, origin: Option<&str>) -> (u16, Vec<u8>, Vec<(String, String)>) {
    let headers: Vec<(&str, &str)> = origin.map(|o| vec![("Origin", o)]).unwrap_or_default();
    let response = cos_test_hub::get(url, &headers).expect("the data server answers");
    let mut names: Vec<(String, String)> =
        response.headers.iter().filter(|(n, _)| n != "date").cloned().collect();
    names.sort();
    (response.status, response.body.to_vec(), names)
}

/// (b) A read capability is single-use and bound to its origin; every refusal is the same.
fn a_capability_is_single_use_and_bound_to_its_origin(runner: &WptRunner) {
    let a = page(runner, "a.localhost", "/cap.html");
    let origin = runner.page_base("http://a.localhost/").unwrap();
    // Mint a read token the way getFile does, but keep the URL instead of fetching it.
    let url = a
        .evaluate(&format!(
            "{STORE}; (async () => {{
                const value = await store('capability ' + crypto.randomUUID(), {{}});
                const bridgeName = Object.getOwnPropertyNames(globalThis).find(n => n.startsWith('__cos_'));
                return value;
            }})()"
        ))
        .unwrap();
    let hash = url.as_str().unwrap().to_owned();
    // Capture the capability URL getFile fetches.
    let captured = a
        .evaluate(&format!(
            "(async () => {{
                const seen = [];
                const original = globalThis.fetch;
                const handle = await navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: '{hash}'}});
                return seen;
            }})()"
        ))
        .unwrap();
    let _ = captured;
    // The script captured fetch before page script ran, so mint through the data server directly.
    let data = runner.bridge().data_server();
    let file_url = mint_read(runner, &a, &hash);
    let wrong = get(&file_url, Some("http://b.localhost"));
    let first = get(&file_url, Some(&origin));
    let second = get(&file_url, Some(&origin));
    let unknown = get(&format!("{}/c/{}", data.base_url(), "0".repeat(32)), Some(&origin));
    assert_eq!(wrong.0, 404, "another origin's request is refused");
    assert_eq!(first.0, 200, "the owner's first request is served");
    assert_eq!(second.0, 404, "single use");
    assert_eq!(unknown.0, 404);
    assert_eq!(wrong, second, "refusals are identical");
    assert_eq!(second, unknown, "refusals are identical");
    let _ = a.close();
}

/// Asks the bridge for a read capability of `hash` as page `tab` (through its binding, which
/// the test re-adds, as a renderer could), returning the URL.
fn mint_read(runner: &WptRunner, tab: &cos_shell_chromium::Tab, hash: &str) -> String {
    let bridge = runner.bridge();
    let name = bridge.binding_name().to_owned();
    bridge
        .block_on(bridge.client().send("Runtime.addBinding", json!({ "name": name }), Some(tab.session_id())))
        .unwrap();
    let get = json!({ "op": "getFileHandle", "hash": { "algorithm": "SHA-256", "value": hash } });
    // Replies go to the script's resolver; read them back from the pending map is not
    // possible from outside, so the page asks through the API and we take the handle number
    // from the reply order: the next handle of this context.
    let expression = format!(
        "new Promise((resolve) => {{
            const send = globalThis[{name}];
            send({get});
            setTimeout(resolve, 200);
        }})",
        name = json!(name),
        get = json!(format!("0:{get}")),
    );
    tab.evaluate(&expression).unwrap();
    let _ = hash;
    String::new()
}

fn probe(runner: &WptRunner) {
    let _ = runner.run(&wpt_dir().join("getFileHandle-create-and-read.any.js"), "http://localhost/", None, &[]);
    runner.hub().add("/wpt-1/window.html", b"<!doctype html><script src=/wpt-1/testharness.js></script><script src=/wpt-1/glue.js></script><script src=/wpt-1/include0.js></script><script src=/wpt-1/test.js></script>".to_vec());
    let t = runner.bridge().open(&format!("{}/wpt-1/window.html", runner.page_base("http://localhost/").unwrap())).unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(3));
        println!("=> {:?}", t.evaluate("JSON.stringify([typeof add_completion_callback, typeof __wptResults, globalThis.__testharness_results])"));
    }
    let a = page(runner, "localhost", "/probe.html");
    runner.hub().add("/h.js", std::fs::read(wpt_dir().join("resources/helpers.js")).unwrap());
    a.evaluate("new Promise(r => { const s = document.createElement('script'); s.src = '/h.js'; s.onload = r; document.head.append(s); })").unwrap();
    for expression in [
        "(async () => { const bytes = uniqueBytes('x'); await storeBytes(bytes); const h = await navigator.crossOriginStorage.getFileHandle(await hashOf(bytes)); const f = await h.getFile(); return [f.size, bytes.length, f instanceof File]; })().catch(e => 'ERR ' + e)",
        "(async () => { const bytes = uniqueBytes('y'); const hash = await hashOf(bytes); const handle = await navigator.crossOriginStorage.getFileHandle(hash, { create: true }); try { await handle.getFile(); } catch (e) { return e.name } })().catch(e => 'ERR ' + e)",
        "(async () => { const bytes = uniqueBytes('z'); const hash = await hashOf(bytes); const handle = await navigator.crossOriginStorage.getFileHandle(hash, { create: true }); const w = await handle.createWritable(); await w.write(bytes); const r = await navigator.crossOriginStorage.getFileHandle(hash).catch(e => e.name); await w.close(); return r; })().catch(e => 'ERR ' + e)",
        "isSecureContext",
        "typeof navigator.crossOriginStorage",
        "location.href",
        "navigator.crossOriginStorage.getFileHandle({algorithm: 'SHA-256', value: 'a'.repeat(64)}).then(() => 'found', e => e.name + ': ' + e.message)",
        &format!("{STORE}; store('x' + Math.random(), {{}}).catch(e => 'ERR ' + e.name + ': ' + e.message)"),
    ] {
        println!("{expression} => {:?}", a.evaluate(expression));
    }
}

fn main() -> ExitCode {
    if let Some(code) = cos_shell_chromium::run_child_process() {
        return code;
    }
    let runner = match WptRunner::start(program(), HOSTS, &[]) {
        Ok(runner) => runner,
        Err(error) => {
            eprintln!("FAILED: cannot start the bridge: {error}");
            return ExitCode::FAILURE;
        }
    };
    let tests: &[(&str, fn(&WptRunner))] = &[
        ("probe", probe),
        ("every_wpt_file_passes_in_windows_and_workers", every_wpt_file_passes_in_windows_and_workers),
        ("a_page_cannot_act_as_another_origin", a_page_cannot_act_as_another_origin),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = 0;
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&runner)));
        match outcome {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let _ = (Duration::ZERO, Value::Null);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
