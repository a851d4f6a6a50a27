//! The bridge in real headless Chromium with the real sandboxed storage service. This binary
//! is also the service (`--type=storage-service`), so it has its own `main`; the tests share
//! one Chromium (each start costs about a second). Without Chromium every test fails with the
//! install hint. Waits are hang guards only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cos_shell_chromium::Tab;
use cos_shell_chromium::bridge::context::MAX_TOKENS_PER_CONTEXT;
use cos_shell_chromium::wpt::{WptRunner, WptVariant, report};
use cos_test_support::conformance;
use serde_json::{Value, json};

/// Names the tests' Chromium resolves to the hub.
const HOSTS: &[&str] = &[
    "web-platform.test",
    "insecure.example",
    "a.localhost",
    "b.localhost",
    "c.localhost",
    "top.example",
    "sub.top.example",
    "embedded.example",
];

fn program() -> PathBuf {
    std::env::current_exe().expect("the test binary")
}

fn every_wpt_file_passes_in_windows_and_workers(runner: &WptRunner) {
    let files = conformance::files();
    let mut failures = Vec::new();
    for file in &files {
        let origin = conformance::origin_for(file);
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

fn page(runner: &WptRunner, host: &str, path: &str) -> Tab {
    let base = runner.page_base(&format!("http://{host}/")).unwrap();
    runner.hub().add(path, b"<!doctype html><title>page</title>".to_vec());
    runner.bridge().open(&format!("{base}{path}")).unwrap()
}

/// Puts the bridge's binding back on `tab`'s global object, where the bridge's script took it
/// away. Chromium only installs a binding when it is added anew (adding a name a session already
/// has does nothing), so it is removed first; both are one DevTools session's subscriptions, and
/// the bridge keeps receiving the calls.
fn expose_binding(runner: &WptRunner, tab: &Tab) {
    let bridge = runner.bridge();
    let name = json!({ "name": bridge.binding_name() });
    for method in ["Runtime.removeBinding", "Runtime.addBinding"] {
        bridge.block_on(bridge.client().send(method, name.clone(), Some(tab.session_id()))).unwrap();
    }
}

/// Plays a compromised renderer in `tab`'s current document: re-adds the bridge's binding,
/// puts a recorder where the script's reply function is (before the bridge first fetches it,
/// so this must precede any API call in the document), sends `payload` raw as call `id` and
/// returns the bridge's answer `[id, ok, value]`.
fn forge(runner: &WptRunner, tab: &Tab, id: u64, payload: &Value) -> Value {
    let bridge = runner.bridge();
    let name = json!(bridge.binding_name());
    let reply = json!(bridge.reply_name());
    expose_binding(runner, tab);
    tab.evaluate(&format!(
        "globalThis.__seen = globalThis.__seen || {{}};
         Object.defineProperty(globalThis, {reply}, {{ configurable: true, value: (id, ok, value) => {{ globalThis.__seen[id] = [id, ok, value]; }} }});
         globalThis[{name}]({message}); 0",
        message = json!(format!("{id}:{payload}")),
    ))
    .unwrap();
    // A hang guard, not a timing assertion.
    for _ in 0..600 {
        let seen = tab.evaluate(&format!("globalThis.__seen[{id}] || null")).unwrap();
        if !seen.is_null() {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no answer to the forged call {id}");
}

fn read_as_api(tab: &Tab, hash: &str) -> Value {
    tab.evaluate(&format!(
        "navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: '{hash}'}}).then(h => h.getFile()).then(f => f.size, e => e.name)"
    ))
    .unwrap()
}

/// (a) The origin is Chromium's record of the calling context, never the payload's.
fn a_page_cannot_act_as_another_origin(runner: &WptRunner) {
    let a = page(runner, "a.localhost", "/a.html");
    let hash = a.evaluate(&format!("{STORE}; store('secret of a ' + crypto.randomUUID(), {{ origins: [] }})")).unwrap();
    let hash = hash.as_str().unwrap().to_owned();
    assert!(read_as_api(&a, &hash).as_u64().unwrap() > 0, "a reads its own bytes");
    let b = page(runner, "b.localhost", "/b.html");
    let a_origin = runner.page_base("http://a.localhost/").unwrap();
    let before = runner.bridge().targets_closed_for_misbehaviour();
    // Origin fields in the payload are not part of any call: the call does not decode.
    let forged = json!({
        "op": "getFileHandle", "hash": { "algorithm": "SHA-256", "value": hash },
        "origin": a_origin, "frame": 1, "topLevelSite": a_origin,
    });
    let answer = forge(runner, &b, 1, &forged);
    assert_eq!(answer[1], json!(false));
    assert_eq!(answer[2]["name"], json!("TypeError"), "{answer}");
    // The same call without them is b's own call: a's bytes are not found.
    let honest = json!({ "op": "getFileHandle", "hash": { "algorithm": "SHA-256", "value": hash } });
    let answer = forge(runner, &b, 2, &honest);
    assert_eq!(answer[2]["name"], json!("NotFoundError"), "{answer}");
    assert_eq!(runner.bridge().targets_closed_for_misbehaviour(), before, "well-formed payloads are not a compromise");
    let _ = (a.close(), b.close());
}

/// A '*' write is recorded only after the browser saw a user activation in the page
/// (`Tab::click`: real input through `Input.dispatchMouseEvent`); before it the write is stored
/// same-site and the page's console gets the warning from `inject.js`.
fn a_click_lets_the_page_share_and_without_it_the_console_says_why(runner: &WptRunner) {
    let tab = page(runner, "c.localhost", "/click.html");
    let store_warned = |text: &str| -> (String, Value) {
        let answer = tab
            .evaluate(&format!(
                "{STORE}; (async () => {{
                   const heard = [];
                   const original = console.warn;
                   console.warn = (...args) => heard.push(args.join(' '));
                   try {{ return [await store({text:?} + crypto.randomUUID(), {{ origins: '*' }}), heard]; }}
                   finally {{ console.warn = original; }}
                 }})()"
            ))
            .unwrap();
        (answer[0].as_str().unwrap().to_owned(), answer[1].clone())
    };
    let global_of = |hash: &str| {
        let (entries, _) = runner.bridge().host().inspect(cos_common::Partition::Regular).unwrap();
        entries.iter().find(|entry| entry.hash.to_string() == hash).map(|entry| entry.global)
    };
    let (before, heard) = store_warned("before the click ");
    let warning = cos_common::interface::WriteWarning::NoUserActivation.message();
    assert_eq!(heard, json!([warning]));
    assert_eq!(global_of(&before), Some(false), "stored for the site only");
    tab.click().unwrap();
    let (after, heard) = store_warned("after the click ");
    assert_eq!(heard, json!([]));
    assert_eq!(global_of(&after), Some(true));
    let _ = tab.close();
}

/// Lets the page start a request to the capability server, takes its URL and fails it (the
/// capability stays unused).
fn capture_capability(runner: &WptRunner, tab: &Tab, trigger: &str) -> String {
    let bridge = runner.bridge();
    let client = bridge.client().clone();
    let session = tab.session_id().to_owned();
    let pattern = format!("{}/*", bridge.data_server().base_url());
    let mut events = client.subscribe();
    let enable = json!({ "patterns": [{ "urlPattern": pattern }] });
    bridge.block_on(client.send("Fetch.enable", enable, Some(&session))).unwrap();
    tab.evaluate(&format!("globalThis.__pending = ({trigger}).catch((e) => e.name); 0")).unwrap();
    bridge.block_on(async {
        let paused = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let event = events.recv().await.expect("events flow");
                if event.method == "Fetch.requestPaused" && event.session_id.as_deref() == Some(session.as_str()) {
                    return event;
                }
            }
        })
        .await
        .expect("the page asks the capability server");
        let fail = json!({ "requestId": paused.params["requestId"].clone(), "errorReason": "Aborted" });
        client.send("Fetch.failRequest", fail, Some(&session)).await.unwrap();
        client.send("Fetch.disable", json!({}), Some(&session)).await.unwrap();
        paused.params["request"]["url"].as_str().unwrap().to_owned()
    })
}

type Answer = (u16, Vec<u8>, Vec<(String, String)>);

fn get(url: &str, origin: &str) -> Answer {
    let response = cos_test_hub::get(url, &[("Origin", origin)]).expect("the data server answers");
    let mut headers: Vec<(String, String)> = response.headers.iter().filter(|(n, _)| n != "date").cloned().collect();
    headers.sort();
    (response.status, response.body.to_vec(), headers)
}

/// (b) A read capability is single-use and bound to its origin; every refusal is the same.
fn a_capability_is_single_use_and_bound_to_its_origin(runner: &WptRunner) {
    let a = page(runner, "a.localhost", "/cap.html");
    let origin = runner.page_base("http://a.localhost/").unwrap();
    let text = format!("capability {:?}", std::time::SystemTime::now());
    let hash = a.evaluate(&format!("{STORE}; store({})", json!(text))).unwrap();
    let hash = hash.as_str().unwrap().to_owned();
    let trigger = format!(
        "navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: '{hash}'}}).then(h => h.getFile())"
    );
    let url = capture_capability(runner, &a, &trigger);
    let data = runner.bridge().data_server();
    let wrong = get(&url, &runner.page_base("http://b.localhost/").unwrap());
    let first = get(&url, &origin);
    let second = get(&url, &origin);
    let unknown = get(&format!("{}/c/{}", data.base_url(), "0".repeat(32)), &origin);
    assert_eq!(wrong.0, 404, "another origin's request is refused");
    assert_eq!((first.0, first.1.as_slice()), (200, text.as_bytes()), "the owner's first request is served");
    assert_eq!(second.0, 404, "single use");
    assert_eq!(wrong, second, "refusals are identical");
    assert_eq!(second, unknown, "refusals are identical");
    let _ = a.close();
}

/// (c) A handle of a document that navigated away means nothing in the next document.
fn a_handle_does_not_survive_navigation(runner: &WptRunner) {
    let a = page(runner, "a.localhost", "/first.html");
    let size = a
        .evaluate(&format!(
            "{STORE}; (async () => {{
                const value = await store('navigation ' + crypto.randomUUID());
                globalThis.kept = await navigator.crossOriginStorage.getFileHandle({{ algorithm: 'SHA-256', value }});
                return (await globalThis.kept.getFile()).size;
            }})()"
        ))
        .unwrap();
    assert!(size.as_u64().unwrap() > 0);
    runner.hub().add("/second.html", b"<!doctype html><title>second</title>".to_vec());
    a.navigate(&format!("{}/second.html", runner.page_base("http://a.localhost/").unwrap())).unwrap();
    // The first document's handles were numbered 1, 2, ...: none of them resolves here.
    for handle in 1..=4u64 {
        let answer = forge(runner, &a, handle, &json!({ "op": "getFile", "handle": handle }));
        assert_eq!(answer[1], json!(false), "handle {handle} resolved in the new document: {answer}");
        assert_eq!(answer[2]["name"], json!("InvalidStateError"), "{answer}");
    }
    let _ = a.close();
}

/// (d) Oversized binding payloads close the target; oversized POST bodies are refused.
fn oversized_payloads_and_bodies_are_refused(runner: &WptRunner) {
    let a = page(runner, "a.localhost", "/big.html");
    let hash = a.evaluate(&format!("{STORE}; store('big ' + crypto.randomUUID())")).unwrap();
    // Through the API, an oversized call is a TypeError in the page.
    let refused = a
        .evaluate(&format!(
            "navigator.crossOriginStorage.getFileHandle({{algorithm: 'SHA-256', value: {hash}}}, {{origins: ['https://x.example/' + 'a'.repeat(1 << 20)]}}).then(() => 'ok', e => e.name)"
        ))
        .unwrap();
    assert_eq!(refused, json!("TypeError"));
    // A POST slice larger than the bound is refused before the writer sees a byte.
    let trigger = "navigator.crossOriginStorage.getFileHandle({algorithm: 'SHA-256', value: 'a'.repeat(64)}, {create: true}).then(h => h.createWritable()).then(w => w.write(new Uint8Array(1)))";
    let url = capture_capability(runner, &a, trigger);
    let statuses = a
        .evaluate(&format!(
            "Promise.all([
                fetch({url}, {{ method: 'POST', body: new Blob([new Uint8Array((8 << 20) + 1)]) }}).then(r => r.status),
                fetch({url}, {{ method: 'POST', body: new Blob([new Uint8Array(16)]) }}).then(r => r.status),
            ])",
            url = json!(url)
        ))
        .unwrap();
    assert_eq!(statuses, json!([413, 200]), "over the slice bound: refused; within: written");
    // A raw binding call past the payload bound is what only a compromised renderer sends.
    let bridge = runner.bridge();
    let before = bridge.targets_closed_for_misbehaviour();
    expose_binding(runner, &a);
    let _ = a.evaluate(&format!("globalThis[{}]('1:' + ' '.repeat(1 << 20)); 0", json!(bridge.binding_name())));
    for _ in 0..600 {
        if bridge.targets_closed_for_misbehaviour() > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bridge.targets_closed_for_misbehaviour(), before + 1, "the target was closed");
}

/// A child page answering each message with the name of what a lookup of a missing entry gave
/// (`NotFoundError`: the API is usable; `NotAllowedError`: the policy refused).
const CHILD_PAGE: &str = r#"<!doctype html><title>child</title><script>
const LOOKUP = `(async () => {
  try {
    await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: "00".repeat(32) });
    return "found";
  } catch (error) {
    return error.name;
  }
})()`;
addEventListener("message", async (event) => {
  let answer;
  if (event.data === "worker") {
    // The same lookup from a dedicated worker this document starts.
    const source = `(${LOOKUP}).then((answer) => postMessage(answer));`;
    const worker = new Worker(URL.createObjectURL(new Blob([source], { type: "text/javascript" })));
    answer = await new Promise((resolve) => { worker.onmessage = (message) => resolve(message.data); });
  } else {
    answer = await eval(LOOKUP);
  }
  event.source.postMessage(answer, "*");
});
</script>"#;

/// Adds an iframe (`src` or `srcdoc`, with `allow` unless null) to the page and returns what the
/// child's lookup answered. A step that never finishes answers which step it was (a hang guard
/// that names the hang, not a timing assertion).
const ASK_CHILD: &str = r#"
const guard = (promise, step) =>
  Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(`hung: ${step}`), 20000))]);
async function ask(source, allow, what = "go") {
  const frame = document.createElement("iframe");
  if (allow !== null) frame.setAttribute("allow", allow);
  const loaded = new Promise((resolve) => { frame.onload = () => resolve("loaded"); });
  if (source.startsWith("<")) frame.srcdoc = source; else frame.src = source;
  document.body.appendChild(frame);
  const load = await guard(loaded, "the frame never loaded");
  if (load !== "loaded") return load;
  const answer = new Promise((resolve) => {
    addEventListener("message", function listener(event) {
      if (event.source === frame.contentWindow) {
        removeEventListener("message", listener);
        resolve(event.data);
      }
    });
  });
  frame.contentWindow.postMessage(what, "*");
  return guard(answer, `the child never answered "${what}"`);
}
"#;

/// (e) A child frame's Permissions Policy comes from its container: the parent's origin and the
/// owner element's `allow` attribute, for frames in the parent's process (same site, srcdoc)
/// and out-of-process ones (cross-site, their own `iframe` target) alike; a dedicated worker a
/// child starts gets exactly what the child gets.
fn iframes_follow_their_containers_policy(runner: &WptRunner) {
    runner.hub().add("/frame-child.html", CHILD_PAGE.as_bytes().to_vec());
    runner.hub().add("/frame-top.html", b"<!doctype html><title>top</title><body></body>".to_vec());
    let top = runner.page_base("https://top.example/").unwrap();
    let sub = runner.page_base("https://sub.top.example/").unwrap();
    let embedded = runner.page_base("https://embedded.example/").unwrap();
    let tab = runner.bridge().open(&format!("{top}/frame-top.html")).unwrap();
    let srcdoc = json!(CHILD_PAGE.replace("<!doctype html><title>child</title>", ""));
    let answers = tab
        .evaluate(&format!(
            "{ASK_CHILD}; (async () => ({{
                crossSiteWithoutAllow: await ask('{embedded}/frame-child.html', null),
                crossSiteWithAllow: await ask('{embedded}/frame-child.html', 'cross-origin-storage'),
                workerOfCrossSiteWithoutAllow: await ask('{embedded}/frame-child.html', null, 'worker'),
                workerOfCrossSiteWithAllow: await ask('{embedded}/frame-child.html', 'cross-origin-storage', 'worker'),
                crossSiteAllowingAnother: await ask('{embedded}/frame-child.html', 'cross-origin-storage https://other.example'),
                sameSiteWithoutAllow: await ask('{sub}/frame-child.html', null),
                sameSiteWithAllow: await ask('{sub}/frame-child.html', 'cross-origin-storage'),
                sameOrigin: await ask('{top}/frame-child.html', null),
                srcdoc: await ask({srcdoc}, null),
            }}))()"
        ))
        .unwrap();
    // While the page is open: the cross-site children are out-of-process frames.
    let bridge = runner.bridge();
    let targets = bridge.block_on(bridge.client().send("Target.getTargets", json!({}), None)).unwrap();
    let out_of_process = targets["targetInfos"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "iframe" && t["url"].as_str().is_some_and(|u| u.starts_with(&embedded)))
        .count();
    let _ = tab.close();
    assert_eq!(
        answers,
        json!({
            "crossSiteWithoutAllow": "NotAllowedError",
            "crossSiteWithAllow": "NotFoundError",
            "workerOfCrossSiteWithoutAllow": "NotAllowedError",
            "workerOfCrossSiteWithAllow": "NotFoundError",
            "crossSiteAllowingAnother": "NotAllowedError",
            "sameSiteWithoutAllow": "NotAllowedError",
            "sameSiteWithAllow": "NotFoundError",
            "sameOrigin": "NotFoundError",
            "srcdoc": "NotFoundError",
        })
    );
    assert_eq!(out_of_process, 5, "the cross-site children ran in their own targets: {targets}");
}

/// (f) A document whose renderer reports an origin of another site than the one the browser
/// attests for its target is a compromised renderer: the tab is closed. No page can make
/// Chromium report that, so the report is injected where the bridge reads Chromium's events.
fn a_document_claiming_another_site_closes_its_tab(runner: &WptRunner) {
    runner.hub().add("/claim.html", b"<!doctype html><title>claim</title>".to_vec());
    let top = runner.page_base("https://top.example/").unwrap();
    let embedded = runner.page_base("https://embedded.example/").unwrap();
    let tab = runner.bridge().open(&format!("{top}/claim.html")).unwrap();
    let bridge = runner.bridge();
    let before = bridge.targets_closed_for_misbehaviour();
    bridge.client().inject_event_for_testing(cos_shell_chromium::devtools::Event {
        method: "Runtime.executionContextCreated".to_owned(),
        params: json!({ "context": {
            "id": 1_000_000, "origin": embedded, "name": "", "uniqueId": "forged",
            "auxData": { "isDefault": true, "type": "default", "frameId": tab.target_id() },
        }}),
        session_id: Some(tab.session_id().to_owned()),
    });
    // A hang guard, not a timing assertion.
    for _ in 0..600 {
        if bridge.targets_closed_for_misbehaviour() > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bridge.targets_closed_for_misbehaviour(), before + 1, "the tab was closed");
}

/// (f) A page cannot pile up capabilities (each holds an open file or writer and its data
/// pipe): past `MAX_TOKENS_PER_CONTEXT` unused ones, even sent all at once, the calls are
/// `QuotaExceededError`. Two bounds stand here: the bridge's own cap on a context's tokens
/// (checked and taken under one lock) and the storage service's 64 data pipes per renderer;
/// the test fails only when both are gone.
fn unused_capabilities_per_context_are_capped(runner: &WptRunner) {
    // Stored from another tab of the origin: the forging document must not have used the API.
    let storing = page(runner, "c.localhost", "/c-store.html");
    let hash =
        storing.evaluate(&format!("{STORE}; store('capped ' + crypto.randomUUID(), {{ origins: [] }})")).unwrap();
    let _ = storing.close();
    let c = page(runner, "c.localhost", "/c.html");
    let opened =
        forge(runner, &c, 1, &json!({ "op": "getFileHandle", "hash": { "algorithm": "SHA-256", "value": hash } }));
    assert_eq!(opened[1], json!(true), "{opened}");
    let handle = opened[2]["handle"].as_u64().unwrap();
    let calls = MAX_TOKENS_PER_CONTEXT + 16;
    // Every call is sent before the first answer can arrive; none of the capabilities is used.
    c.evaluate(&format!(
        "for (let id = 100; id < {end}; id++) globalThis[{name}](id + ':' + {payload}); 0",
        end = 100 + calls,
        name = json!(runner.bridge().binding_name()),
        payload = json!(json!({ "op": "getFile", "handle": handle }).to_string()),
    ))
    .unwrap();
    let mut answers = Vec::new();
    // A hang guard, not a timing assertion.
    for _ in 0..600 {
        let seen = c
            .evaluate("Object.keys(globalThis.__seen).filter(id => id >= 100).map(id => globalThis.__seen[id])")
            .unwrap();
        answers = seen.as_array().unwrap().clone();
        if answers.len() == calls {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(answers.len(), calls, "every call was answered");
    let granted = answers.iter().filter(|answer| answer[1] == json!(true)).count();
    let refused = answers.iter().filter(|answer| answer[2]["name"] == json!("QuotaExceededError")).count();
    assert_eq!(granted, MAX_TOKENS_PER_CONTEXT, "{answers:?}");
    assert_eq!(refused, calls - MAX_TOKENS_PER_CONTEXT, "{answers:?}");
    let _ = c.close();
}

/// (g) A cross-site child that navigates itself to `about:blank` keeps its own site (its target
/// stays in that site's process): the bridge must not take its document for another site's and
/// close the embedding tab, which any third-party frame could then do to its embedder.
fn a_child_navigating_to_about_blank_keeps_its_site(runner: &WptRunner) {
    runner.hub().add("/blank-top.html", b"<!doctype html><title>top</title><body></body>".to_vec());
    runner.hub().add(
        "/blank-child.html",
        br#"<!doctype html><script>addEventListener("message", () => { location = "about:blank"; });</script>"#
            .to_vec(),
    );
    let top = runner.page_base("https://top.example/").unwrap();
    let embedded = runner.page_base("https://embedded.example/").unwrap();
    let before = runner.bridge().targets_closed_for_misbehaviour();
    let tab = runner.bridge().open(&format!("{top}/blank-top.html")).unwrap();
    let answer = tab
        .evaluate(&format!(
            "(async () => {{
                const frame = document.createElement('iframe');
                const loaded = () => new Promise((resolve) => {{ frame.onload = resolve; }});
                let next = loaded();
                frame.src = '{embedded}/blank-child.html';
                document.body.appendChild(frame);
                await next;
                next = loaded();
                frame.contentWindow.postMessage('go', '*');
                await next;
                // The blank document's context was reported; give the bridge its judgement (the
                // attestation guard is 5 s), then prove the tab still answers.
                await new Promise((resolve) => setTimeout(resolve, 6000));
                return 'alive';
            }})()"
        ))
        .unwrap();
    assert_eq!(answer, json!("alive"));
    assert_eq!(runner.bridge().targets_closed_for_misbehaviour(), before, "the embedding tab was not closed");
    let _ = tab.close();
}

/// A test of the shared runner.
type Test = fn(&WptRunner);

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
    let tests: &[(&str, Test)] = &[
        ("every_wpt_file_passes_in_windows_and_workers", every_wpt_file_passes_in_windows_and_workers),
        ("a_page_cannot_act_as_another_origin", a_page_cannot_act_as_another_origin),
        ("a_capability_is_single_use_and_bound_to_its_origin", a_capability_is_single_use_and_bound_to_its_origin),
        ("a_handle_does_not_survive_navigation", a_handle_does_not_survive_navigation),
        ("oversized_payloads_and_bodies_are_refused", oversized_payloads_and_bodies_are_refused),
        ("iframes_follow_their_containers_policy", iframes_follow_their_containers_policy),
        ("a_document_claiming_another_site_closes_its_tab", a_document_claiming_another_site_closes_its_tab),
        ("a_child_navigating_to_about_blank_keeps_its_site", a_child_navigating_to_about_blank_keeps_its_site),
        ("unused_capabilities_per_context_are_capped", unused_capabilities_per_context_are_capped),
        (
            "a_click_lets_the_page_share_and_without_it_the_console_says_why",
            a_click_lets_the_page_share_and_without_it_the_console_says_why,
        ),
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
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
