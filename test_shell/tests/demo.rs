//! The demo with small files: a page on a second site gets every public file from COS and
//! downloads only the pointers (SPEC §10 item 42, Transformers.js call pattern).

use test_shell::demo::{
    Loader, Mode, RUNTIME, SENTIMENT, SiteReport, WHISPER, run_story, run_story_in, run_story_with,
};

/// Every file is at least 500 KiB: smaller ones may be GREASE'd (1% of global-grant reads are
/// answered NotFoundError on purpose), which would make these exact assertions flaky.
const FILES: [(&str, &str, u64); 4] = [
    (WHISPER, "onnx/encoder_model.onnx", 3 << 20),
    (WHISPER, "tokenizer.json", 520 * 1024),
    (RUNTIME, "ort-wasm-simd-threaded.jsep.wasm", 1 << 20),
    (SENTIMENT, "onnx/model_quantized.onnx", 600 * 1024),
];

fn shell() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_test_shell"))
}

const CLIENT_PATTERNS: &str = include_str!("js/client_patterns.js");

fn check(reports: &[SiteReport]) {
    let total: u64 = FILES.iter().map(|(_, _, size)| size).sum();
    let [first, second] = reports else { panic!("two sites") };
    assert_eq!(first.cos_bytes, 0, "nothing was stored before the first site");
    assert!(first.network_bytes >= total, "the first site downloaded everything");
    assert_eq!(second.cos_bytes, total, "the second site read every file from COS");
    assert!(second.network_bytes < 2048, "only the pointers: {} bytes", second.network_bytes);
    assert_ne!(first.origin, second.origin);
}

#[test]
fn a_second_site_downloads_none_of_the_public_files() {
    check(&run_story(shell(), None, &FILES, false).expect("the Transformers.js story runs"));
}

#[test]
fn the_webllm_call_pattern_works_unchanged() {
    let loader = Loader { script: CLIENT_PATTERNS, function: "webLlmLoad" };
    check(&run_story_with(shell(), None, &FILES, &loader, false).expect("the WebLLM story runs"));
}

#[test]
fn the_wllama_call_pattern_works_unchanged() {
    let loader = Loader { script: CLIENT_PATTERNS, function: "wllamaLoad" };
    check(&run_story_with(shell(), None, &FILES, &loader, false).expect("the wllama story runs"));
}

#[test]
fn with_the_fetch_integration_the_files_without_pointers_come_from_cos_too() {
    // The tokenizer (plain Git on the Hub) and the runtime have no pointer: the page fetches
    // them with their integrity and crossOriginStorage: '*'.
    let reports = run_story_in(shell(), None, &FILES, Mode::FetchIntegration, false).expect("the story runs");
    check(&reports);
}
