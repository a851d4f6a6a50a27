//! cargo-fuzz entry point; the body is `cos_fuzz::renderer_actions` (replayed by `cargo test -p cos_fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cos_fuzz::renderer_actions(data));
