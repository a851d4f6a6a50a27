//! cargo-fuzz entry point; the body is `cos_fuzz::ipc_channel_link` (replayed by `cargo test -p cos_fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cos_fuzz::ipc_channel_link(data));
