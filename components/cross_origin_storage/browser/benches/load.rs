//! `load`: 32 renderer processes (each its own site) through a mixed workload — lookups (hits
//! and misses), small unique writes (4–256 KiB), writes of three shared "models" (3, 12 and
//! 50 MiB, the same bytes on every site), whole reads — for 20 s against the sandboxed storage
//! service, while the browser clears a random site's data every 250 ms. Prints operations per
//! second, p50/p99 per kind, and the service's memory and descriptors before, under and after the
//! load. `COS_LOAD_RENDERERS` and `COS_LOAD_SECONDS` change the size.
//!
//! Run: `cargo bench -p cos_browser --bench load`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;

use support::{Browser, run_load};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    if let Some(code) = support::run_child_role() {
        return code;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a smoke test.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let renderers = if smoke { 2 } else { env_or("COS_LOAD_RENDERERS", 32) as usize };
    let seconds = if smoke { 1 } else { env_or("COS_LOAD_SECONDS", 20) };
    let browser = Browser::start();
    let summary = run_load(&browser, renderers, seconds * 1000, 0x5eed_10ad, 250);
    summary.print();
    if summary.unexpected.is_empty() && summary.descriptors.2 == summary.descriptors.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
