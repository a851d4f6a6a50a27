//! `load`: 32 renderer processes (each its own site) through a mixed workload — lookups (hits
//! and misses), small unique writes (4–256 KiB), writes of three shared "models" (3, 12 and
//! 50 MiB, the same bytes on every site), whole reads — for 20 s against the sandboxed storage
//! service, while the browser clears a random site's data every 250 ms. Prints operations per
//! second, p50/p99 per kind, and the service's memory and descriptors before, under and after the
//! load. Two rounds (`COS_LOAD_ROUNDS`): the second, on the store the first grew, shows whether
//! memory after load keeps growing. `COS_LOAD_RENDERERS` and `COS_LOAD_SECONDS` change the size.
//!
//! Then abuse: a victim renderer's `getFileHandle` p99 alone, and while another renderer opens
//! handles, writers or chunks without end (up to its limit, then on past the refusals), in five
//! rounds — target: within 2×.
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
    let rounds = if smoke { 1 } else { env_or("COS_LOAD_ROUNDS", 2) };
    let browser = Browser::start();
    let mut load_ok = true;
    // A second round on the grown store tells a leak (memory after it grows again) from the
    // registry's larger working set (memory after it stays put).
    for round in 0..rounds {
        let summary = run_load(&browser, renderers, seconds * 1000, 0x5eed_10ad ^ round, 250);
        print!("round {}: ", round + 1);
        summary.print();
        let registry = std::fs::metadata(browser.profile.path().join("cos/registry.redb")).map_or(0, |m| m.len());
        println!("  registry file {:.1} MiB (redb caches the pages it touched)", registry as f64 / (1 << 20) as f64);
        load_ok &= summary.unexpected.is_empty() && summary.descriptors.2 == summary.descriptors.0;
    }
    let abuse_ok = if smoke { abuse(&browser, 200, 1, 300) } else { abuse(&browser, 1000, 5, 2000) };
    if abuse_ok && load_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn p99_ms(samples: &[u64]) -> f64 {
    let mut samples = samples.to_vec();
    samples.sort_unstable();
    samples[(samples.len() - 1) * 99 / 100] as f64 / 1e6
}

/// The victim's lookup p99 alone and under each abuse, in `rounds` rounds: `lookups` lookups
/// alone, then lookups for `abuse_ms` while the abuser ramps up to its limit and asks past it
/// (for `abuse_ms` after its first refusal). Prints the p99 of all rounds' samples pooled and
/// each round's ratio; true if every abuse was refused.
fn abuse(browser: &Browser, lookups: u32, rounds: u32, abuse_ms: u64) -> bool {
    let victim = browser.renderer(900, &[(9000, "https://victim.example", "https://victim.example", None)]);
    let abuser = browser.renderer(901, &[(9010, "https://abuser.example", "https://abuser.example", None)]);
    let model = literal(b"the victim's model");
    assert_eq!(victim.store(9000, &model), Outcome::Ok(None));
    let measure =
        |millis| victim.timings(Command::LookupLatency { frame: 9000, hash: model.hash(), n: lookups, millis });
    println!(
        "abuse: the victim's getFileHandle p99, {rounds} rounds of {lookups} lookups alone, then {abuse_ms} ms \
         of lookups while the abuser ramps up and asks past its limit [target: within 2x]"
    );
    let mut refused = true;
    for kind in [Abuse::Handles, Abuse::Writers, Abuse::Chunks] {
        let (mut alone, mut under, mut ratios, mut outcomes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let quiet = measure(0);
            abuser
                .control
                .send(&Command::Abuse { frame: 9010, kind, millis: abuse_ms }, Vec::new())
                .expect("abuser alive");
            // Lookups throughout the abuse: its ramp to the limit and the refusals after.
            let loaded = measure(abuse_ms);
            let outcome = abuser.control.recv().expect("the abuser answers").0;
            refused &= matches!(&outcome, Outcome::Err(e) if e.starts_with("QuotaExceededError"));
            ratios.push(format!("{:.2}", p99_ms(&loaded) / p99_ms(&quiet)));
            outcomes.push(outcome);
            alone.extend(quiet);
            under.extend(loaded);
        }
        let (alone, under) = (p99_ms(&alone), p99_ms(&under));
        println!(
            "  {kind:?} without end: p99 {alone:.3} ms alone, {under:.3} ms under abuse = {:.2}x (rounds: {})",
            under / alone,
            ratios.join(", ")
        );
        println!("    abuser, last round: {:?}", outcomes.last().expect("a round ran"));
    }
    refused
}
