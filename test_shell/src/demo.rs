//! `test_shell demo`: two sites load the same public model files; the second gets them from
//! Cross-Origin Storage instead of the network.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use cos_test_hub::{FileOptions, Hub, HubFile};

use crate::page::{PageError, ShellBrowser};

/// The loader the pages run (Transformers.js' call pattern).
pub const DEMO_LOADER_JS: &str = include_str!("../js/demo_loader.js");

/// The two sites: the first downloads the model files and keeps them in Cross-Origin Storage,
/// the second gets the same files from there.
pub const SITES: [&str; 2] =
    ["https://googlechrome.github.io/samples/cross-origin-storage/", "https://rawcdn.rawgit.net/demo/"];

/// The Whisper repository on the hub.
pub const WHISPER: &str = "/Xenova/whisper-tiny.en/resolve/main/";
/// The sentiment model's repository on the hub.
pub const SENTIMENT: &str = "/Xenova/distilbert-base-uncased-finetuned-sst-2-english/resolve/main/";
/// Where the Wasm runtime is served (no LFS pointer there).
pub const RUNTIME: &str = "/onnxruntime-web/dist/";

/// What the demo serves: (path, size). The Whisper files add up to exactly 177 MiB.
const FILES: &[(&str, &str, u64)] = &[
    (WHISPER, "onnx/encoder_model.onnx", 32_900_000),
    (WHISPER, "onnx/decoder_model_merged.onnx", 148_000_000),
    (WHISPER, "tokenizer.json", 2_400_000),
    (WHISPER, "vocab.json", 1_040_000),
    (WHISPER, "merges.txt", 1_250_000),
    (WHISPER, "config.json", 3_808),
    (WHISPER, "generation_config.json", 3_000),
    (WHISPER, "preprocessor_config.json", 339),
    (WHISPER, "tokenizer_config.json", 805),
    (RUNTIME, "ort-wasm-simd-threaded.jsep.wasm", 23_567_050),
    (SENTIMENT, "onnx/model_quantized.onnx", 67_123_456),
    (SENTIMENT, "tokenizer.json", 711_396),
    (SENTIMENT, "config.json", 735),
];

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The hub could not start.
    #[error("the loopback hub could not start: {0}")]
    Hub(#[from] std::io::Error),
    /// A page failed.
    #[error(transparent)]
    Page(#[from] PageError),
    /// The loader rejected.
    #[error("the model loader failed: {0}")]
    Loader(String),
}

/// One site's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteReport {
    /// The page's origin.
    pub origin: String,
    /// Bytes the hub sent to this origin (pointers and downloads).
    pub network_bytes: u64,
    /// Model bytes the page got from Cross-Origin Storage.
    pub cos_bytes: u64,
    /// From the first request to all files in hand.
    pub ready: Duration,
}

/// Serves `files` (directory, name, size) on `hub`, generated deterministically; returns them
/// with their hashes.
///
/// Every Hub file is served as a Git LFS file, JSON and text included: the demo's loader takes
/// each hash from a pointer, so the story counts what the second site saves on every file.
pub fn serve_files(hub: &Hub, files: &[(&str, &str, u64)]) -> Vec<HubFile> {
    serve_files_as(hub, files, Mode::Api)
}

/// [`serve_files`] for `mode`: with the fetch integration the Hub's own rule decides what is in
/// Git LFS (JSON and text files are plain Git, with no pointer to take a hash from).
fn serve_files_as(hub: &Hub, files: &[(&str, &str, u64)], mode: Mode) -> Vec<HubFile> {
    let lfs = match mode {
        Mode::Api => FileOptions::default().lfs(true),
        Mode::FetchIntegration => FileOptions::default(),
    };
    files
        .iter()
        .enumerate()
        .map(|(seed, (dir, name, size))| {
            hub.add_generated_with(&format!("{dir}{name}"), *size, 0x5eed + seed as u64, &lfs)
        })
        .collect()
}

/// How the demo's pages use Cross-Origin Storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The API only, as Transformers.js does: every file's hash from its pointer (or, for the
    /// runtime, from the manifest), then `getFileHandle`.
    #[default]
    Api,
    /// Files with a Git LFS pointer through the API; the files without one (the runtime, the
    /// tokenizer and config files) with `fetch(url, {integrity, crossOriginStorage: '*'})`, the
    /// page knowing their SRI values as a real page embeds them (SPEC §11).
    FetchIntegration,
}

/// The loader's manifest: Hub files by URL (their hash comes from the pointer); the runtime by
/// URL and hash (it has no pointer). With the fetch integration, every file without a pointer
/// carries its `integrity` instead.
fn manifest(hub: &Hub, files: &[HubFile], mode: Mode) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|file| {
            let name = file.path.rsplit('/').next().unwrap_or(&file.path);
            let url = hub.url(&file.path);
            match mode {
                Mode::FetchIntegration if !file.lfs => {
                    let integrity = crate::sri::sha256_metadata_of_hex(&file.sha256_hex);
                    serde_json::json!({ "name": name, "url": url, "size": file.size, "integrity": integrity })
                }
                _ => {
                    let hash = (!file.path.contains("/resolve/")).then_some(&file.sha256_hex);
                    serde_json::json!({ "name": name, "url": url, "size": file.size, "sha256": hash })
                }
            }
        })
        .collect();
    serde_json::Value::Array(entries).to_string()
}

/// Runs the story with the demo's files: site A downloads and shares, site B reuses.
pub fn run_sites(program: &Path, profile: Option<&Path>, progress: bool) -> Result<Vec<SiteReport>, DemoError> {
    run_story(program, profile, FILES, progress)
}

/// Runs the story with `files` in `mode` (the demo's loader): one report per site.
pub fn run_story_in(
    program: &Path,
    profile: Option<&Path>,
    files: &[(&str, &str, u64)],
    mode: Mode,
    progress: bool,
) -> Result<Vec<SiteReport>, DemoError> {
    let loader = Loader { script: DEMO_LOADER_JS, function: "cosLoadModels" };
    run_loader(program, profile, files, &loader, mode, progress)
}

/// Runs the story with `files` (directory under the hub, name, size): one report per site.
pub fn run_story(
    program: &Path,
    profile: Option<&Path>,
    files: &[(&str, &str, u64)],
    progress: bool,
) -> Result<Vec<SiteReport>, DemoError> {
    run_story_with(program, profile, files, &Loader { script: DEMO_LOADER_JS, function: "cosLoadModels" }, progress)
}

/// A client's loading code: a script defining `function(manifest) -> {cos, ms, ...}`.
pub struct Loader<'a> {
    /// The script that defines the loader.
    pub script: &'a str,
    /// The loader function's global name.
    pub function: &'a str,
}

/// Runs the story with `files` and a given client `loader`: one report per site.
pub fn run_story_with(
    program: &Path,
    profile: Option<&Path>,
    files: &[(&str, &str, u64)],
    loader: &Loader<'_>,
    progress: bool,
) -> Result<Vec<SiteReport>, DemoError> {
    run_loader(program, profile, files, loader, Mode::Api, progress)
}

fn run_loader(
    program: &Path,
    profile: Option<&Path>,
    files: &[(&str, &str, u64)],
    loader: &Loader<'_>,
    mode: Mode,
    progress: bool,
) -> Result<Vec<SiteReport>, DemoError> {
    let hub = Hub::start()?;
    let files = serve_files_as(&hub, files, mode);
    let total: u64 = files.iter().map(|file| file.size).sum();
    // The demo profile's Public Hash List names the demo files, so "*" entries are disclosed.
    // With a profile of the caller's, the list stays in it (where `test_shell internals` looks
    // for it), as a browser keeps the list it was delivered in its profile.
    let scratch = tempfile::tempdir()?;
    let list_path = match profile {
        Some(profile) => {
            std::fs::create_dir_all(profile)?;
            profile.join(crate::internals::PROFILE_PUBLIC_HASH_LIST)
        }
        None => scratch.path().join(crate::internals::PROFILE_PUBLIC_HASH_LIST),
    };
    let mut list = String::from("// Public Hash List of the test shell's demo\n// ===BEGIN SHA-256===\n");
    for file in &files {
        list.push_str(&file.sha256_hex);
        list.push('\n');
    }
    std::fs::write(&list_path, list)?;
    let browser = ShellBrowser::start_with(program, profile, |config| {
        config.public_hash_list_path = Some(list_path.to_string_lossy().into_owned());
    })?;
    let manifest = manifest(&hub, &files, mode);
    let mut reports = Vec::new();
    for url in SITES {
        let page = browser.open(url)?;
        // The user clicks "load model": the page's '*' writes are recorded (SPEC §5, the
        // user-gesture rule), so the next site can read them.
        browser.activate(&page);
        page.eval("loader.js", loader.script)?;
        let origin = cos_common::Origin::from_url(url).expect("demo URLs are valid").to_string();
        if progress {
            eprintln!("{origin} loads the models:");
        }
        let bar = progress_bar();
        let report_progress = |name: String, done: f64, total: f64| {
            if progress {
                bar(name, done, total);
            }
        };
        let outcome =
            page.evaluate(&format!("{}({manifest})", loader.function), Duration::from_secs(600), report_progress)?;
        let json = outcome.map_err(DemoError::Loader)?;
        let stats = parse_stats(&json).ok_or_else(|| DemoError::Loader(format!("unexpected loader result {json}")))?;
        let network_bytes = hub.bytes_served_to(&origin);
        let cos_bytes = match mode {
            Mode::Api => stats.0,
            // A page cannot tell a fetch answered from COS from one answered by the network
            // (SPEC §11): what it did not download of the files came from COS.
            Mode::FetchIntegration => total.saturating_sub(downloaded(&hub, &origin)),
        };
        reports.push(SiteReport { network_bytes, cos_bytes, ready: stats.1, origin });
    }
    Ok(reports)
}

/// Bytes of the files themselves (not their pointers) the hub sent to `origin`.
fn downloaded(hub: &Hub, origin: &str) -> u64 {
    hub.requests()
        .iter()
        .filter(|r| r.origin.as_deref() == Some(origin) && r.category != cos_test_hub::ServedCategory::LfsPointer)
        .map(|r| r.body_bytes)
        .sum()
}

/// A download progress bar on stderr: redrawn in place on a terminal, one line per file otherwise.
fn progress_bar() -> impl Fn(String, f64, f64) + 'static {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let shown = std::cell::Cell::new(-1i64);
    move |name, done, total| {
        let percent = (100.0 * done / total.max(1.0)).floor() as i64;
        let step = if terminal { 2 } else { 100 };
        if percent / step == shown.get() / step && percent < 100 {
            return;
        }
        shown.set(if percent >= 100 { -1 } else { percent });
        let filled = (percent as usize * 30 / 100).min(30);
        let bar = format!("[{}{}]", "#".repeat(filled), " ".repeat(30 - filled));
        let mib = done / (1u64 << 20) as f64;
        if terminal {
            eprint!("\r  {name:<36} {bar} {percent:>3}% {mib:>7.1} MiB");
            if percent >= 100 {
                eprintln!();
            }
        } else if percent >= 100 {
            eprintln!("  {name:<36} {bar} {percent:>3}% {mib:>7.1} MiB");
        }
        let _ = std::io::stderr().flush();
    }
}

/// `cos` bytes and `ms` from the loader's JSON result.
fn parse_stats(json: &str) -> Option<(u64, Duration)> {
    #[derive(serde::Deserialize)]
    struct LoaderStats {
        cos: u64,
        ms: u64,
    }
    let stats: LoaderStats = serde_json::from_str(json).ok()?;
    Some((stats.cos, Duration::from_millis(stats.ms)))
}

/// Runs the demo and prints its report (a table, or JSON with `json`).
pub fn run(program: &Path, profile: Option<&Path>, json: bool) -> Result<(), DemoError> {
    run_mode(program, profile, json, Mode::Api)
}

/// Runs the demo in `mode` and prints its report (a table, or JSON with `json`).
pub fn run_mode(program: &Path, profile: Option<&Path>, json: bool, mode: Mode) -> Result<(), DemoError> {
    if !json {
        println!("Cross-Origin Storage demo: two sites load the same public model files.");
        println!(
            "Files: Whisper tiny.en (177 MiB), an ONNX Runtime Wasm build (23 MiB), a sentiment model (65 MiB).\n"
        );
        if mode == Mode::FetchIntegration {
            println!("Files without a Git LFS pointer load with fetch(url, {{integrity, crossOriginStorage: '*'}}).\n");
        }
    }
    let reports = run_story_in(program, profile, FILES, mode, !json)?;
    let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
    if json {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "origin": r.origin,
                    "network_bytes": r.network_bytes,
                    "cos_bytes": r.cos_bytes,
                    "ready_ms": r.ready.as_millis() as u64,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!("\n  {:<40} {:>14} {:>14} {:>12}", "origin", "from network", "from COS", "ready in");
    for r in &reports {
        println!(
            "  {:<40} {:>10.1} MiB {:>10.1} MiB {:>9.2} s",
            r.origin,
            mib(r.network_bytes),
            mib(r.cos_bytes),
            r.ready.as_secs_f64()
        );
    }
    if let [first, second] = reports.as_slice() {
        println!(
            "\n  The second site downloaded {:.1} KiB (the pointer files) instead of {:.1} MiB.",
            second.network_bytes as f64 / 1024.0,
            mib(first.network_bytes)
        );
    }
    Ok(())
}
