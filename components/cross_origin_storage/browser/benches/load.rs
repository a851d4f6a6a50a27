//! `load`: 32 renderer processes (each its own site) through a mixed workload — lookups (hits
//! and misses), small unique writes (4–256 KiB), writes of three shared "models" (3, 12 and
//! 50 MiB, the same bytes on every site), whole reads — for 20 s against the sandboxed storage
//! service, while the browser clears a random site's data every 250 ms. Prints operations per
//! second, p50/p99 per kind, and the service's memory and descriptors before, under and after the
//! load. `COS_LOAD_RENDERERS` and `COS_LOAD_SECONDS` change the size.
//!
//! Then abuse: a victim renderer's `getFileHandle` p99 alone, and while another renderer opens
//! handles, writers or chunks without end (each until the service refuses) — target: within 2×.
//!
//! Run: `cargo bench -p cos_browser --bench load`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;

use support::{Abuse, Browser, Command, Outcome, literal, run_load};

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
    let abuse_ok = abuse(&browser, if smoke { 200 } else { 3000 });
    if abuse_ok && summary.unexpected.is_empty() && summary.descriptors.2 == summary.descriptors.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn p99_ms(mut samples: Vec<u64>) -> f64 {
    samples.sort_unstable();
    samples[(samples.len() - 1) * 99 / 100] as f64 / 1e6
}

/// The victim's lookup p99 alone and under each abuse; true if every abuse was refused.
fn abuse(browser: &Browser, lookups: u32) -> bool {
    let victim = browser.renderer(900, &[(9000, "https://victim.example", "https://victim.example", None)]);
    let abuser = browser.renderer(901, &[(9010, "https://abuser.example", "https://abuser.example", None)]);
    let model = literal(b"the victim's model");
    assert_eq!(victim.store(9000, &model), Outcome::Ok(None));
    let measure = || victim.timings(Command::LookupLatency { frame: 9000, hash: model.hash(), n: lookups });
    let alone = p99_ms(measure());
    println!("abuse: the victim's getFileHandle p99 alone {alone:.3} ms");
    let mut refused = true;
    for kind in [Abuse::Handles, Abuse::Writers, Abuse::Chunks] {
        abuser.control.send(&Command::Abuse { frame: 9010, kind }, Vec::new()).expect("abuser alive");
        let under = p99_ms(measure());
        let outcome = abuser.control.recv().expect("the abuser answers").0;
        refused &= matches!(&outcome, Outcome::Err(e) if e.starts_with("QuotaExceededError"));
        println!(
            "  while the abuser opens {kind:?} without end: p99 {under:.3} ms = {:.2}x alone [target <= 2x]; abuser: {outcome:?}",
            under / alone
        );
    }
    refused
}
