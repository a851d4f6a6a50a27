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
//! rounds — target: within 2×. Last, bytes in flight: off the record (where a writer's bytes live
//! in the service's memory), three origins each truncate two writers to 1 GiB; the service's peak
//! memory must stay within the partition's total (2 GiB), not grow by the 6 GiB asked for.
//!
//! Run: `cargo bench -p cos_browser --bench load`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;

use cos_test_support::measure::{quantile_ns, status_kib};
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
    let in_flight_ok = if smoke { true } else { truncate_abuse(&browser) };
    if abuse_ok && load_ok && in_flight_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Three off-the-record origins each truncate two writers to 1 GiB and hold them: at most the
/// partition's total (the default off-the-record limits: 1 GiB an origin, 2 GiB in all) may be
/// held, so the service's peak memory grows by about 2 GiB, not 6. True if it stayed within.
fn truncate_abuse(browser: &Browser) -> bool {
    use cos_common::interface::FrameId;
    use cos_common::{OffTheRecordProfileId, Partition};
    let frames = [9020, 9021, 9022];
    let abuser = browser.renderer(
        902,
        &[
            (frames[0], "https://one.private.example", "https://one.private.example", None),
            (frames[1], "https://two.private.example", "https://two.private.example", None),
            (frames[2], "https://three.private.example", "https://three.private.example", None),
        ],
    );
    for frame in frames {
        let mut info = browser.host.frames().get(FrameId(frame)).expect("registered");
        info.partition = Partition::OffTheRecord(OffTheRecordProfileId(902));
        browser.host.frames().insert(FrameId(frame), info);
    }
    let pid = browser.host.service_pid().expect("a service process");
    // Reset the service's high-water mark, then abuse.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let before = status_kib(Some(pid), "VmHWM:").unwrap_or(0);
    let command = Command::TruncateAbuse { frames: frames.to_vec(), writers: 2, size: 1 << 30, hold_millis: 3000 };
    let outcome = abuser.ask(command);
    let peak = status_kib(Some(pid), "VmHWM:").unwrap_or(0).saturating_sub(before) as f64 / 1024.0;
    let limit = 2048.0;
    let within = peak <= limit * 1.05;
    println!(
        "in flight: 3 off-the-record origins x 2 writers truncated to 1 GiB (6 GiB asked): {outcome:?}; \
         service peak memory +{peak:.0} MiB [target: within the partition's {limit:.0} MiB]: {}",
        if within { "met" } else { "MISSED" }
    );
    within
}

fn p99_ms(samples: &[u64]) -> f64 {
    let mut samples = samples.to_vec();
    samples.sort_unstable();
    quantile_ns(&samples, 0.99).as_secs_f64() * 1e3
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
            abuser.control.send(Command::Abuse { frame: 9010, kind, millis: abuse_ms }).expect("abuser alive");
            // Lookups throughout the abuse: its ramp to the limit and the refusals after.
            let loaded = measure(abuse_ms);
            let outcome = abuser.control.recv().expect("the abuser answers");
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
