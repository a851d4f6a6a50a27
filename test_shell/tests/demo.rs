//! The seed's story with small files: the second site gets every public file from COS and
//! downloads only the pointers (SPEC §10 item 42, Transformers.js call pattern).

use test_shell::demo::{RUNTIME, SENTIMENT, WHISPER, run_story};

#[test]
fn a_second_site_downloads_none_of_the_public_files() {
    let files = [
        (WHISPER, "onnx/encoder_model.onnx", 3 << 20),
        (WHISPER, "config.json", 1500),
        (RUNTIME, "ort-wasm-simd-threaded.jsep.wasm", 1 << 20),
        (SENTIMENT, "onnx/model_quantized.onnx", 600 * 1024),
    ];
    let total: u64 = files.iter().map(|(_, _, size)| size).sum();
    let reports = run_story(None, &files, false).expect("the story runs");
    let [first, second] = reports.as_slice() else { panic!("two sites") };
    assert_eq!(first.cos_bytes, 0, "nothing was stored before the first site");
    assert!(first.network_bytes >= total, "the first site downloaded everything");
    assert_eq!(second.cos_bytes, total, "the second site read every file from COS");
    assert!(second.network_bytes < 2048, "only the pointers: {} bytes", second.network_bytes);
    assert_ne!(first.origin, second.origin);
}
