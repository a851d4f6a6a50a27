//! The internals page over HTTP: its views of a store written by two sites, its protections
//! (token, `Host`, `Origin`, headers), its actions (delete, clear site data, scrub) and its live
//! updates. The browser process is this test; the storage service is the shell binary, sandboxed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cos_common::interface::{CreateOptions, HandleRequest};
use cos_common::{AllowOriginCeiling, CallerContext, ContentHash, Origin, OriginsOption, Partition};
use cos_storage_service::{ServiceConfig, StorageService};
use cos_test_hub::{Response, get, open, open_via};
use sha2::Digest;
use test_shell::internals::{InternalsServer, start_host};

/// A document URL carrying markup (the service keeps what the browser reported, as is).
const MARKUP_URL: &str = "https://a.example/app?<script>alert(1)</script>";

fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash::from_bytes(sha2::Sha256::digest(bytes).into())
}

/// Writes three entries onto `profile` through the service API: a.example's same-site one (from a
/// document whose URL carries markup), a global one, and b.example's listing a.example.
fn populate(profile: &Path) -> [ContentHash; 3] {
    let (service, _) = StorageService::open(ServiceConfig::new(profile)).unwrap();
    let a = CallerContext::top_level(Origin::from_url("https://a.example").unwrap());
    let b = CallerContext::top_level(Origin::from_url("https://b.example").unwrap());
    let mut same_site = CreateOptions::same_site();
    same_site.document_url = Some(MARKUP_URL.into());
    let global = CreateOptions::with_origins(OriginsOption::Global, AllowOriginCeiling::empty());
    let list = CreateOptions::with_origins(
        OriginsOption::List(vec![Origin::from_url("https://a.example").unwrap()]),
        AllowOriginCeiling::from_header(Some("https://a.example")),
    );
    let writes: [(&CallerContext, &[u8], CreateOptions); 3] =
        [(&a, b"same-site bytes", same_site), (&a, b"global bytes, rather more of them", global), (&b, b"list", list)];
    let hashes = writes.map(|(caller, bytes, options)| {
        let hash = hash_of(bytes);
        let handle = service.get_file_handle(caller, hash, HandleRequest::Create(options)).unwrap();
        let mut writer = handle.create_writable().unwrap();
        writer.write(bytes).unwrap();
        writer.close().unwrap();
        hash
    });
    service.shut_down_cleanly().unwrap();
    hashes
}

struct Fixture {
    _profile: tempfile::TempDir,
    host: Arc<cos_browser::CosHost>,
    server: InternalsServer,
    hashes: [ContentHash; 3],
}

impl Fixture {
    fn start() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let hashes = populate(profile.path());
        let host = Arc::new(start_host(Path::new(env!("CARGO_BIN_EXE_test_shell")), profile.path(), None).unwrap());
        let server = InternalsServer::start(host.clone(), 0).unwrap();
        Self { _profile: profile, host, server, hashes }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.server.port())
    }

    fn cookie(&self) -> String {
        format!("cos_internals_{}={}", self.server.port(), self.server.token())
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    fn get(&self, path: &str) -> Response {
        get(&self.url(path), &[("Cookie", &self.cookie())]).unwrap()
    }

    fn post(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        open("POST", &self.url(path), headers).unwrap().into_response().unwrap()
    }

    /// A request to this server under another `Host` (as after DNS rebinding: the attacker's
    /// name now resolves to 127.0.0.1).
    fn as_host(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.server.port()));
        open_via(method, &format!("http://{host}{path}"), address, headers).unwrap().into_response().unwrap()
    }

    fn stored(&self) -> Vec<ContentHash> {
        self.host.inspect(Partition::Regular).unwrap().0.into_iter().map(|entry| entry.hash).collect()
    }
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

fn body(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

#[test]
fn the_token_becomes_a_strict_http_only_cookie_and_every_response_is_locked_down() {
    let fixture = Fixture::start();
    assert!(fixture.server.url().starts_with("http://127.0.0.1:"), "{}", fixture.server.url());
    // Without the token: refused, and nothing about the store.
    let refused = get(&fixture.url("/resources"), &[]).unwrap();
    assert_eq!(refused.status, 403);
    assert!(!body(&refused).contains(&fixture.hashes[0].to_hex()));
    let wrong = get(&fixture.url(&format!("/?token={}", "0".repeat(32))), &[]).unwrap();
    assert_eq!(wrong.status, 403);
    // The printed address: a cookie, and the token leaves the address.
    let first = get(&fixture.server.url(), &[]).unwrap();
    assert_eq!(first.status, 303);
    assert_eq!(header(&first, "location"), Some("/resources"));
    let cookie = header(&first, "set-cookie").unwrap();
    assert!(cookie.starts_with(&fixture.cookie()), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    for path in ["/resources", "/origins", "/service", "/fragment/resources", "/app.js", "/style.css"] {
        let response = fixture.get(path);
        assert_eq!(response.status, 200, "{path}");
        let csp = header(&response, "content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header(&response, "x-content-type-options"), Some("nosniff"));
    }
}

#[test]
fn a_foreign_host_is_refused_even_with_the_token() {
    let fixture = Fixture::start();
    // DNS rebinding: a name the attacker controls, resolving to 127.0.0.1.
    let port = fixture.server.port();
    for host in [format!("attacker.example:{port}"), "127.0.0.1:1".into(), format!("localhost.attacker.example:{port}")]
    {
        let response = fixture.as_host("GET", &host, "/resources", &[("Cookie", &fixture.cookie())]);
        assert_eq!(response.status, 403, "{host}");
        assert!(!body(&response).contains(&fixture.hashes[0].to_hex()));
    }
    let response = fixture.as_host("GET", &format!("localhost:{port}"), "/resources", &[("Cookie", &fixture.cookie())]);
    assert_eq!(response.status, 200);
}

#[test]
fn the_views_show_every_entry_origin_grant_and_the_service() {
    let fixture = Fixture::start();
    let resources = body(&fixture.get("/resources"));
    for hash in &fixture.hashes {
        assert!(resources.contains(&format!("data-hash=\"{}\"", hash.to_hex())), "{resources}");
    }
    for grant in ["same-site", "list", "global"] {
        assert!(resources.contains(&format!("data-grant=\"{grant}\"")), "{grant}");
    }
    assert!(resources.contains("<span id=\"entry-count\">3</span>"));
    assert!(resources.contains("<svg") && resources.contains("id=\"chart-origins\""));
    // The markup in the provenance URL is text, not markup.
    assert!(!resources.contains("<script>alert"), "unescaped provenance");
    assert!(resources.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Filtering and sorting on the server.
    let global = body(&fixture.get("/resources?grant=global"));
    assert!(global.contains(&fixture.hashes[1].to_hex()) && !global.contains(&fixture.hashes[0].to_hex()));
    let filtered = body(&fixture.get("/resources?q=b.example"));
    assert!(filtered.contains(&fixture.hashes[2].to_hex()) && !filtered.contains(&fixture.hashes[1].to_hex()));
    let ascending = body(&fixture.get("/resources?sort=size&order=asc"));
    let (small, large) = (fixture.hashes[2].to_hex(), fixture.hashes[1].to_hex());
    assert!(ascending.find(&small).unwrap() < ascending.find(&large).unwrap());
    let origins = body(&fixture.get("/origins"));
    assert!(
        origins.contains("data-origin=\"https://a.example\"") && origins.contains("data-origin=\"https://b.example\"")
    );
    let service = body(&fixture.get("/service"));
    assert!(service.contains("<dd id=\"generation\">1</dd>"), "{service}");
    assert!(service.contains("id=\"scrub-now\""));
    let dump: serde_json::Value = serde_json::from_slice(&fixture.get("/dump.json").body).unwrap();
    assert_eq!(dump["resources"]["entry_count"], 3);
    assert_eq!(dump["origins"].as_array().unwrap().len(), 2);
}

#[test]
fn state_changes_without_the_token_or_from_another_origin_are_refused_and_change_nothing() {
    let fixture = Fixture::start();
    let hex = fixture.hashes[0].to_hex();
    let delete = format!("/delete?hash={hex}");
    let (cookie, origin) = (fixture.cookie(), fixture.origin());
    let port = fixture.server.port();
    let foreign_host = format!("attacker.example:{port}");
    let refused: [Vec<(&str, &str)>; 4] = [
        vec![("Origin", &origin)],
        vec![("Cookie", &cookie)],
        vec![("Cookie", &cookie), ("Origin", "https://attacker.example")],
        vec![("Cookie", &cookie), ("Origin", "null")],
    ];
    for headers in &refused {
        assert_eq!(fixture.post(&delete, headers).status, 403, "{headers:?}");
        assert_eq!(fixture.post("/clear?origin=https://a.example", headers).status, 403, "{headers:?}");
        assert_eq!(fixture.post("/scrub", headers).status, 403, "{headers:?}");
    }
    let foreign_origin = format!("http://{foreign_host}");
    for headers in [
        vec![("Cookie", cookie.as_str()), ("Origin", origin.as_str())],
        vec![("Cookie", &cookie), ("Origin", &foreign_origin)],
    ] {
        assert_eq!(fixture.as_host("POST", &foreign_host, &delete, &headers).status, 403, "{headers:?}");
    }
    // A GET never changes anything.
    assert_eq!(fixture.get(&delete).status, 404);
    assert_eq!(fixture.stored().len(), 3, "nothing changed");
    // The confirmation step, then the real thing.
    let confirm = body(&fixture.get(&format!("/confirm/delete?hash={hex}")));
    assert!(confirm.contains("action=\"/delete\"") && confirm.contains(&hex));
    let deleted = fixture.post(&delete, &[("Cookie", &cookie), ("Origin", &origin)]);
    assert_eq!(deleted.status, 303);
    assert!(!fixture.stored().contains(&fixture.hashes[0]));
    let cleared = fixture.post("/clear?origin=https://b.example", &[("Cookie", &cookie), ("Origin", &origin)]);
    assert_eq!(cleared.status, 303);
    assert_eq!(fixture.stored(), vec![fixture.hashes[1]]);
}

#[test]
fn dump_prints_the_three_views_as_json() {
    let profile = tempfile::tempdir().unwrap();
    let hashes = populate(profile.path());
    // The profile's own list (as the demo leaves it) names the global entry.
    let list = format!("// ===BEGIN SHA-256===\n{}\n", hashes[1].to_hex());
    std::fs::write(profile.path().join(test_shell::internals::PROFILE_PUBLIC_HASH_LIST), list).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_test_shell"))
        .args(["--quiet", "internals", "--dump", "--profile"])
        .arg(profile.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let entries = dump["resources"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let grant_of = |hash: &ContentHash| {
        let entry = entries.iter().find(|entry| entry["hash"] == hash.to_hex()).unwrap();
        entry["grant"].as_str().unwrap().to_owned()
    };
    assert_eq!(hashes.map(|hash| grant_of(&hash)), ["same-site", "global", "list"].map(String::from));
    let listed = |hash: &ContentHash| {
        entries.iter().find(|entry| entry["hash"] == hash.to_hex()).unwrap()["on_public_hash_list"].as_bool().unwrap()
    };
    assert_eq!(hashes.map(|hash| listed(&hash)), [false, true, false], "the profile's list is the browser's");
    assert_eq!(dump["service"]["public_hash_list"]["distinct"], 1);
    assert_eq!(dump["resources"]["total_bytes"], 15 + 33 + 4);
    let origins: Vec<&str> =
        dump["origins"].as_array().unwrap().iter().map(|o| o["origin"].as_str().unwrap()).collect();
    assert_eq!(origins, ["https://a.example", "https://b.example"]);
    assert_eq!(dump["service"]["generation"], 1);
    assert!(dump["service"]["limits"]["per_origin_bytes"].as_u64().unwrap() > 0);
    assert_eq!(dump["service"]["evicted_entries"], 0);
}

/// Reads the event stream until it has held `count` change events.
fn read_changes(events: &mut cos_test_hub::ResponseReader, seen: &mut Vec<u8>, count: usize) {
    while String::from_utf8_lossy(seen).matches("event: change").count() < count {
        let mut chunk = [0u8; 256];
        let n = std::io::Read::read(events, &mut chunk).unwrap();
        assert!(n > 0, "the event stream ended");
        seen.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_change_made_elsewhere_reaches_a_listening_page() {
    let fixture = Fixture::start();
    let mut events = open("GET", &fixture.url("/events"), &[("Cookie", &fixture.cookie())]).unwrap();
    let mut seen = Vec::new();
    // The first event comes at once: the page fetches its view as of now.
    read_changes(&mut events, &mut seen, 1);
    // Another actor (a page of the browser, here the host itself) deletes an entry.
    fixture.host.delete_entry(Partition::Regular, &fixture.hashes[0]).unwrap();
    read_changes(&mut events, &mut seen, 2);
}

#[test]
fn scrub_now_reports_its_result_and_pages_hear_of_changes() {
    let fixture = Fixture::start();
    let (cookie, origin) = (fixture.cookie(), fixture.origin());
    let mut events = open("GET", &fixture.url("/events"), &[("Cookie", &cookie)]).unwrap();
    assert_eq!(events.head().header("content-type"), Some("text/event-stream"));
    let mut seen = Vec::new();
    read_changes(&mut events, &mut seen, 1);
    assert_eq!(fixture.post("/scrub", &[("Cookie", &cookie), ("Origin", &origin)]).status, 303);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let service = body(&fixture.get("/service"));
        if service.contains("Last scrub: 3 entries re-hashed") {
            break;
        }
        assert!(Instant::now() < deadline, "{service}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The scrub's progress reached the listening page (its start and end may come as one).
    read_changes(&mut events, &mut seen, 2);
}

// ----- in real headless Chromium (`$CHROMIUM` or /usr/bin/chromium; without it these fail) -------

mod chromium {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use base64::Engine;
    use cos_shell_chromium::devtools::{ChromiumProcess, Client};
    use serde_json::{Value, json};

    /// One tab of a headless Chromium, driven over the DevTools protocol.
    pub struct Browser {
        runtime: tokio::runtime::Runtime,
        client: Client,
        _process: ChromiumProcess,
    }

    /// A tab (an attached page target).
    pub struct Tab {
        session: String,
    }

    impl Browser {
        pub fn launch(extra: &[String]) -> Self {
            let mut process = ChromiumProcess::launch(extra).unwrap_or_else(|e| panic!("{e}"));
            let client = Client::connect(&mut process).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            Self { runtime, client, _process: process }
        }

        fn send(&self, method: &str, params: Value, session: Option<&str>) -> Value {
            let call = self.client.send(method, params, session);
            match self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(60), call).await }) {
                Ok(Ok(value)) => value,
                Ok(Err(error)) => panic!("{method}: {error}"),
                Err(_) => panic!("{method}: no answer"),
            }
        }

        /// A new tab, in a browser context of its own (no cookies) when `isolated`.
        pub fn tab(&self, isolated: bool) -> Tab {
            let mut params = json!({ "url": "about:blank" });
            if isolated {
                let context = self.send("Target.createBrowserContext", json!({}), None);
                params["browserContextId"] = context["browserContextId"].clone();
            }
            let target = self.send("Target.createTarget", params, None);
            let attached =
                self.send("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }), None);
            let tab = Tab { session: attached["sessionId"].as_str().unwrap().to_owned() };
            self.send("Page.enable", json!({}), Some(&tab.session));
            let metrics = json!({ "width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false });
            self.send("Emulation.setDeviceMetricsOverride", metrics, Some(&tab.session));
            tab
        }

        pub fn navigate(&self, tab: &Tab, url: &str) {
            self.send("Page.navigate", json!({ "url": url }), Some(&tab.session));
        }

        /// `expression`'s value (promises awaited), `null` while the document cannot answer.
        pub fn eval(&self, tab: &Tab, expression: &str) -> Value {
            let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
            let call = self.client.send("Runtime.evaluate", params, Some(&tab.session));
            match self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), call).await }) {
                Ok(Ok(answer)) => answer["result"]["value"].clone(),
                _ => Value::Null,
            }
        }

        /// Waits (a hang guard, not a timing check) until `expression` is `true`.
        pub fn wait_for(&self, tab: &Tab, expression: &str) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.eval(tab, expression) != Value::Bool(true) {
                assert!(Instant::now() < deadline, "never true: {expression}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// Saves a PNG of the tab under `target/internals-artifacts/`.
        pub fn screenshot(&self, tab: &Tab, name: &str) -> PathBuf {
            let shot = self.send("Page.captureScreenshot", json!({ "format": "png" }), Some(&tab.session));
            let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("internals-artifacts");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, png).unwrap();
            path
        }
    }
}

/// The page in Chromium: the printed address logs in, each view's DOM shows the store, a change
/// made elsewhere reaches the open page without a reload, and the delete button (through its
/// confirmation step) removes the entry from the store.
#[test]
fn in_chromium_the_views_update_live_and_the_delete_button_deletes() {
    let fixture = Fixture::start();
    let browser = chromium::Browser::launch(&[]);
    let tab = browser.tab(false);
    browser.navigate(&tab, &fixture.server.url());
    browser.wait_for(&tab, "location.pathname === '/resources' && document.readyState === 'complete'");
    assert_eq!(browser.eval(&tab, "location.search"), "", "the token left the address");
    let rows = "JSON.stringify([...document.querySelectorAll('tr.entry')].map(r => r.dataset.hash).sort())";
    let mut expected: Vec<String> = fixture.hashes.iter().map(|h| h.to_hex()).collect();
    expected.sort();
    assert_eq!(browser.eval(&tab, rows), serde_json::to_string(&expected).unwrap());
    let grants = "[...document.querySelectorAll('td.grant')].map(t => t.dataset.grant).sort().join()";
    assert_eq!(browser.eval(&tab, grants), "global,list,same-site");
    assert_eq!(browser.eval(&tab, "document.querySelectorAll('svg#chart-origins rect').length"), 2);
    // The provenance URL's markup is text: no element was made of it.
    assert_eq!(browser.eval(&tab, "document.querySelector('.provenance .url').textContent.includes('<script>')"), true);
    assert_eq!(browser.eval(&tab, "document.querySelectorAll('main script').length"), 0);
    let screenshot = browser.screenshot(&tab, "resources.png");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    // Another actor deletes an entry: the open page hears of it and redraws its view.
    fixture.host.delete_entry(Partition::Regular, &fixture.hashes[2]).unwrap();
    browser.wait_for(&tab, "document.querySelectorAll('tr.entry').length === 2");
    assert_eq!(browser.eval(&tab, "Number(document.documentElement.dataset.updates) >= 1"), true, "no reload");

    // The delete button, then its confirmation.
    let target = fixture.hashes[0].to_hex();
    browser.eval(&tab, &format!("document.querySelector('tr[data-hash=\"{target}\"] button.delete').click()"));
    browser.wait_for(&tab, "location.pathname === '/confirm/delete' && document.readyState === 'complete'");
    browser.eval(&tab, "document.getElementById('confirm').click()");
    browser.wait_for(&tab, "location.pathname === '/resources' && document.querySelectorAll('tr.entry').length === 1");
    assert_eq!(fixture.stored(), vec![fixture.hashes[1]], "gone from the store");

    browser.navigate(&tab, &fixture.url("/origins"));
    browser.wait_for(&tab, "location.pathname === '/origins' && document.readyState === 'complete'");
    assert_eq!(browser.eval(&tab, "document.querySelectorAll('tr.origin').length"), 1);
    browser.screenshot(&tab, "origins.png");
    browser.navigate(&tab, &fixture.url("/service"));
    browser.wait_for(&tab, "location.pathname === '/service' && document.readyState === 'complete'");
    assert_eq!(browser.eval(&tab, "document.getElementById('generation').textContent"), "1");
    browser.eval(&tab, "document.getElementById('scrub-now').click()");
    browser.wait_for(&tab, "document.getElementById('scrub').textContent.startsWith('Last scrub: 1 entries')");
    browser.screenshot(&tab, "service.png");
}

/// Forged state changes from Chromium: a form posted by a page of another origin (same site:
/// 127.0.0.1 on another port, so the cookie goes along), the same form in a browser context
/// without the cookie, and the token address under a rebound name. All 403; nothing changes.
#[test]
fn in_chromium_forged_requests_are_refused_and_change_nothing() {
    let fixture = Fixture::start();
    let hub = cos_test_hub::Hub::start().unwrap();
    let target = fixture.hashes[1].to_hex();
    let form = format!(
        "<!doctype html><form method=post action=\"{}\"><input name=hash value={target}></form>\
         <script>document.forms[0].submit()</script>",
        fixture.url("/delete")
    );
    hub.add("/csrf.html", form.into_bytes());
    let rules = "--host-resolver-rules=MAP rebound.example 127.0.0.1".to_owned();
    let browser = chromium::Browser::launch(&[rules]);
    let status = "performance.getEntriesByType('navigation')[0]?.responseStatus";
    let landed = format!("location.href.startsWith('{}') && document.readyState === 'complete'", fixture.url("/"));

    // Logged in (the cookie is set), then a same-site page of another origin posts the form.
    let tab = browser.tab(false);
    browser.navigate(&tab, &fixture.server.url());
    browser.wait_for(&tab, "location.pathname === '/resources' && document.readyState === 'complete'");
    browser.navigate(&tab, &hub.url("/csrf.html"));
    browser.wait_for(&tab, &landed);
    assert_eq!(browser.eval(&tab, status), 403, "{}", browser.eval(&tab, "document.body.textContent"));

    // Without the cookie.
    let stranger = browser.tab(true);
    browser.navigate(&stranger, &hub.url("/csrf.html"));
    browser.wait_for(&stranger, &landed);
    assert_eq!(browser.eval(&stranger, status), 403);

    // DNS rebinding: the attacker's name, now 127.0.0.1, even with the token.
    let rebound = format!("http://rebound.example:{}/?token={}", fixture.server.port(), fixture.server.token());
    browser.navigate(&stranger, &rebound);
    browser.wait_for(&stranger, "location.hostname === 'rebound.example' && document.readyState === 'complete'");
    assert_eq!(browser.eval(&stranger, status), 403);

    let mut stored = fixture.stored();
    stored.sort();
    let mut expected = fixture.hashes.to_vec();
    expected.sort();
    assert_eq!(stored, expected, "nothing changed");
    hub.shutdown();
}
