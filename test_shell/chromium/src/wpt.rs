//! WPT `.any.js` files in Chromium: as a window (an HTML page including the scripts) and as a
//! dedicated worker (`importScripts` of them, results posted back), pages served by the
//! loopback hub at the origin asked for. The hub speaks TLS as well as plain HTTP on one port,
//! so `https://` and `http://` names alike reach it through Chromium's host resolver rules
//! (the certificate is self-signed: Chromium runs with `--ignore-certificate-errors`, which
//! leaves an `https://` page a secure context).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cos_test_hub::{Hub, HubOptions};

use crate::bridge::{Bridge, BridgeConfig, BridgeError};

/// Our harness, used for `/resources/testharness.js` when no WPT root is given.
const SHELL_TESTHARNESS: &str = include_str!("../../js/testharness.js");

/// Per-test timeout handed to the harness (milliseconds).
const TEST_TIMEOUT_MS: u64 = 10_000;

/// The origin `test_shell wpt` runs files at unless told otherwise.
pub const DEFAULT_ORIGIN: &str = "https://web-platform.test/";

/// What went wrong running a file (operator-facing).
#[derive(Debug, thiserror::Error)]
pub enum WptError {
    /// The bridge or Chromium failed.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The origin is not usable.
    #[error("unusable --origin {0}: {1}")]
    Origin(String, &'static str),
    /// The hub did not start.
    #[error(transparent)]
    Hub(#[from] cos_test_hub::HubStartError),
    /// The page did not report results.
    #[error("the {0} variant reported no results: {1}")]
    NoResults(&'static str, String),
}

/// Where a file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WptVariant {
    /// An HTML page.
    Window,
    /// A dedicated worker of such a page.
    Worker,
}

impl WptVariant {
    fn name(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Worker => "worker",
        }
    }
}

/// One test's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WptResult {
    /// The test's name (worker results end with ` [worker]`).
    pub name: String,
    /// `PASS`, `FAIL`, `TIMEOUT` or `NOTRUN`.
    pub status: String,
    /// The failure message.
    pub message: Option<String>,
}

/// Prints results as `test_shell wpt` does (`PASS name` / `FAIL name: message` /
/// `TIMEOUT name`, then `N passed, N failed`); returns whether the run counts as a success
/// (at least one test ran and none failed).
pub fn report(results: &[WptResult], out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let mut failed = 0;
    for result in results {
        match result.status.as_str() {
            "PASS" => writeln!(out, "PASS {}", result.name)?,
            "TIMEOUT" => {
                failed += 1;
                writeln!(out, "TIMEOUT {}", result.name)?;
            }
            _ => {
                failed += 1;
                writeln!(out, "FAIL {}: {}", result.name, result.message.as_deref().unwrap_or(""))?;
            }
        }
    }
    writeln!(out, "{} passed, {failed} failed", results.len() - failed)?;
    Ok(!results.is_empty() && failed == 0)
}

/// A hub and a bridge whose Chromium resolves the given names to the hub, reused across files.
pub struct WptRunner {
    hub: Hub,
    bridge: Bridge,
    /// The names Chromium resolves to the hub.
    mapped: Vec<String>,
    next: AtomicU64,
}

impl WptRunner {
    /// Starts the hub (plain HTTP and TLS on one port, its certificate naming `hosts`), then
    /// Chromium and the bridge with `hosts` mapped to the hub. Loopback names (`localhost`,
    /// `*.localhost`) are never remapped by Chromium: pages there use the hub's port.
    pub fn start(service_program: PathBuf, hosts: &[&str], extra_args: &[String]) -> Result<Self, WptError> {
        let mut tls_names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        if !tls_names.iter().any(|name| name == "localhost") {
            tls_names.push("localhost".to_owned());
        }
        let hub = Hub::start_with(HubOptions { tls_names })?;
        let mut config = BridgeConfig::new(service_program);
        let mapped: Vec<&str> = hosts.iter().copied().filter(|h| !is_loopback_name(h)).collect();
        if !mapped.is_empty() {
            config
                .chromium_args
                .push(format!("--host-resolver-rules={}", hub.host_resolver_rules(mapped.iter().copied())));
        }
        // The hub's certificate is self-signed; an https page with an ignored certificate error
        // is still a secure context, which is what the files test.
        config.chromium_args.push("--ignore-certificate-errors".to_owned());
        config.chromium_args.extend(extra_args.iter().cloned());
        let bridge = Bridge::start(config)?;
        let mapped = mapped.iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(Self { hub, bridge, mapped, next: AtomicU64::new(1) })
    }

    /// The bridge (for tests that also drive pages of their own).
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// The hub serving the pages.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The page origin to use for `origin` (`http` or `https`, with its port if it has one):
    /// a loopback name gets the hub's port (Chromium does not remap loopback names); any other
    /// name must be one the runner was started with.
    pub fn page_base(&self, origin: &str) -> Result<String, WptError> {
        let url = url::Url::parse(origin).map_err(|_| WptError::Origin(origin.to_owned(), "not a URL"))?;
        let host = url.host_str().ok_or_else(|| WptError::Origin(origin.to_owned(), "no host"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WptError::Origin(origin.to_owned(), "neither http nor https"));
        }
        if is_loopback_name(host) {
            return Ok(format!("{}://{host}:{}", url.scheme(), self.hub.port()));
        }
        if !self.mapped.iter().any(|name| name.eq_ignore_ascii_case(host)) {
            return Err(WptError::Origin(origin.to_owned(), "its host is not mapped to the hub"));
        }
        Ok(url.origin().ascii_serialization())
    }

    /// Runs `file` at `origin` in each of `variants` (restricted by its `// META: global=`).
    pub fn run(
        &self,
        file: &Path,
        origin: &str,
        wpt_root: Option<&Path>,
        variants: &[WptVariant],
    ) -> Result<Vec<WptResult>, WptError> {
        let source = read(file)?;
        let base = self.page_base(origin)?;
        let prefix = format!("/wpt-{}", self.next.fetch_add(1, Ordering::Relaxed));
        // Scripts, in order: the harness, the glue, the includes, the file.
        let mut scripts = vec![
            ("testharness.js".to_owned(), resource(wpt_root, "testharness.js", SHELL_TESTHARNESS)?),
            ("testharnessreport.js".to_owned(), resource(wpt_root, "testharnessreport.js", "")?),
            ("glue.js".to_owned(), GLUE_JS.replace("__TIMEOUT__", &TEST_TIMEOUT_MS.to_string())),
        ];
        for (index, include) in meta(&source, "script").into_iter().enumerate() {
            if matches!(include.as_str(), "/resources/testharness.js" | "/resources/testharnessreport.js") {
                continue;
            }
            let path = include_path(file, wpt_root, &include);
            scripts.push((format!("include{index}.js"), read(&path)?));
        }
        scripts.push(("test.js".to_owned(), source.clone()));
        // One script: our harness starts its queue in a timer when it is evaluated, which in a
        // browser would fire between separately loaded scripts (before the test registered).
        let bundle: String = scripts.iter().map(|(name, text)| format!("// ---- {name}\n{text}\n;\n")).collect();
        let bundle_path = format!("{prefix}/bundle.js");
        self.hub.add(&bundle_path, bundle.into_bytes());
        let globals = meta(&source, "global");
        let wanted = |variant: WptVariant| {
            globals.is_empty()
                || globals.iter().flat_map(|g| g.split(',')).any(|g| {
                    matches!(
                        (g.trim(), variant),
                        ("window", WptVariant::Window) | ("worker" | "dedicatedworker", WptVariant::Worker)
                    )
                })
        };
        let mut results = Vec::new();
        for &variant in variants.iter().filter(|v| wanted(**v)) {
            let page = match variant {
                WptVariant::Window => {
                    format!(
                        "<!doctype html>\n<meta charset=utf-8>\n<title>wpt</title>\n<script src=\"{bundle_path}\"></script>\n"
                    )
                }
                WptVariant::Worker => {
                    let worker = format!(
                        "importScripts({bundle_path:?});\nif (typeof done === 'function') done();\n\
                         globalThis.__wptResults.then((results) => postMessage(results));\n"
                    );
                    self.hub.add(&format!("{prefix}/worker.js"), worker.into_bytes());
                    format!(
                        "<!doctype html>\n<meta charset=utf-8>\n<title>wpt worker</title>\n<script>\n\
                         globalThis.__wptResults = new Promise((resolve) => {{\n\
                           const worker = new Worker('{prefix}/worker.js');\n\
                           worker.onmessage = (event) => resolve(event.data);\n\
                           worker.onerror = (event) => resolve([{{ name: 'worker', status: 'FAIL', message: String(event.message) }}]);\n\
                         }});\n</script>\n"
                    )
                }
            };
            let page_path = format!("{prefix}/{}.html", variant.name());
            self.hub.add(&page_path, page.into_bytes());
            let tab = self.bridge.open(&format!("{base}{page_path}"))?;
            let outcome = tab.evaluate("globalThis.__wptResults");
            let _ = tab.close();
            let value = outcome.map_err(|e| WptError::NoResults(variant.name(), e.to_string()))?;
            let Some(list) = value.as_array() else {
                return Err(WptError::NoResults(variant.name(), format!("got {value}")));
            };
            for item in list {
                let name = item["name"].as_str().unwrap_or("").to_owned();
                results.push(WptResult {
                    name: if variant == WptVariant::Worker { format!("{name} [worker]") } else { name },
                    status: item["status"].as_str().unwrap_or("FAIL").to_owned(),
                    message: item["message"].as_str().map(str::to_owned),
                });
            }
        }
        Ok(results)
    }
}

/// Runs one file in a Chromium of its own: starts the hub, the bridge (its storage service run
/// by `service_program`) and Chromium with `origin`'s host mapped to the hub, then
/// [`WptRunner::run`].
pub fn run_wpt(
    service_program: PathBuf,
    file: &Path,
    origin: &str,
    wpt_root: Option<&Path>,
    variants: &[WptVariant],
) -> Result<Vec<WptResult>, WptError> {
    let host = url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .ok_or_else(|| WptError::Origin(origin.to_owned(), "not a URL with a host"))?;
    let runner = WptRunner::start(service_program, &[host.as_str()], &[])?;
    runner.run(file, origin, wpt_root, variants)
}

/// Whether Chromium treats `host` as loopback and never applies resolver rules to it.
fn is_loopback_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// `/resources/<name>` from the WPT root when there is one, else `fallback` (our harness, or
/// nothing for the report hook).
fn resource(wpt_root: Option<&Path>, name: &str, fallback: &str) -> Result<String, WptError> {
    match wpt_root {
        Some(root) => read(&root.join("resources").join(name)),
        None => Ok(fallback.to_owned()),
    }
}

/// Where an include lives: absolute paths (`/common/...`) under the WPT root when there is one
/// (otherwise beside the file, as `test_shell wpt` resolves them), relative ones beside the file.
fn include_path(file: &Path, wpt_root: Option<&Path>, include: &str) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("."));
    match (include.strip_prefix('/'), wpt_root) {
        (Some(absolute), Some(root)) => root.join(absolute),
        (Some(absolute), None) => dir.join(absolute),
        (None, _) => dir.join(include),
    }
}

/// Collects results through the harness's callbacks, for our harness and WPT's alike (numeric
/// statuses are WPT's).
const GLUE_JS: &str = r#"
globalThis.__testharness_timeout_ms = __TIMEOUT__;
globalThis.__wptResults = new Promise((resolve) => {
  const names = ["PASS", "FAIL", "TIMEOUT", "NOTRUN"];
  add_completion_callback((tests) => resolve(Array.from(tests, (t) => ({
    name: String(t.name),
    status: typeof t.status === "number" ? names[t.status] || "FAIL" : String(t.status),
    message: t.message === undefined || t.message === null ? null : String(t.message),
  }))));
});
"#;

fn read(path: &Path) -> Result<String, WptError> {
    std::fs::read_to_string(path).map_err(|error| WptError::Read { path: path.to_path_buf(), error })
}

/// The values of `// META: key=value` lines at the top of a file.
fn meta(source: &str, key: &str) -> Vec<String> {
    let prefix = format!("// META: {key}=");
    source
        .lines()
        .take_while(|line| line.starts_with("//") || line.trim().is_empty())
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.trim().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_lines() {
        let source = "// META: script=a.js\n// META: global=window,worker\n// META: script=/b.js\ncode();\n// META: script=no.js";
        assert_eq!(meta(source, "script"), ["a.js", "/b.js"]);
        assert_eq!(meta(source, "global"), ["window,worker"]);
    }

    #[test]
    fn report_matches_the_shell() {
        let results = vec![
            WptResult { name: "a".into(), status: "PASS".into(), message: None },
            WptResult { name: "b".into(), status: "FAIL".into(), message: Some("why".into()) },
        ];
        let mut out = Vec::new();
        assert!(!report(&results, &mut out).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "PASS a\nFAIL b: why\n1 passed, 1 failed\n");
        assert!(!report(&[], &mut Vec::new()).unwrap(), "no test ran is a failure");
    }
}
