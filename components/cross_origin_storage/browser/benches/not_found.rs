//! Are the classes of `NotFoundError` indistinguishable by timing? Measures, through the full
//! process path (renderer → broker → sandboxed service), `getFileHandle` latencies of
//! (a) a true miss, (b) an existing entry denied by scope, (c) a global entry denied by the Public
//! Hash List, (d) an entry that would be disclosed but the top-level site is over its probe
//! budget, (e) a miss from the over-budget page, (f) an entry listing 100 other origins and (g) an
//! entry a thousand sites store (the most one records) — interleaved, 2,000 samples each — and
//! compares (a) with each other class using a two-sample Kolmogorov–Smirnov test. Target: p > 0.01
//! for every pair.
//!
//! Then `close()`: a store of bytes nobody has against a store of bytes another site already
//! stored, interleaved. Creates are never charged to a probe budget, so a close that answered
//! faster for known bytes would tell anyone holding a file whether some other site stored it.
//!
//! `cargo bench -p cos_browser --bench not_found` (`COS_BENCH_SAMPLES=n` to change the count).

use std::process::ExitCode;
use std::time::Duration;

use cos_common::interface::FrameId;
use cos_test_support::measure::quantile_ns;

#[path = "../tests/support/mod.rs"]
mod support;
use support::{Browser, Command, Outcome, Payload};

/// The two-sample Kolmogorov–Smirnov statistic D of two sorted samples.
fn ks_statistic(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The asymptotic p-value of D for samples of sizes n and m (Kolmogorov distribution).
fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    let effective = (n * m) as f64 / (n + m) as f64;
    let lambda = (effective.sqrt() + 0.12 + 0.11 / effective.sqrt()) * d;
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        sum += 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
    }
    sum.clamp(0.0, 1.0)
}

fn main() -> ExitCode {
    if let Some(code) = support::run_child_role() {
        return code;
    }
    let samples: u32 = std::env::var("COS_BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let scratch = tempfile::tempdir().unwrap();
    // A Public Hash List that has the "public" entry but not the "unlisted" one.
    let public = Payload::Pattern { len: 600 * 1024, seed: 11 };
    let unlisted = Payload::Literal(b"global but not on the list".to_vec());
    let scoped = Payload::Literal(b"same-site only".to_vec());
    let list = scratch.path().join("public-hash-list.txt");
    std::fs::write(&list, format!("// ===BEGIN SHA-256===\n{}\n", public.hash())).unwrap();

    // Production gates: real GREASE, the default budget of 16.
    let browser = Browser::start_with(|config| {
        config.public_hash_list_path = Some(list.to_string_lossy().into_owned());
        config.grease_for_tests = None;
    });
    // The owner's second document may list the 100 origins its header allows.
    let listed: Vec<String> = (0..100).map(|i| format!("https://listed-{i:03}.example")).collect();
    let ceiling = listed.join(", ");
    let owner = browser.renderer(
        1,
        &[
            (10, "https://owner.example", "https://owner.example", None),
            (11, "https://owner.example", "https://owner.example", Some(ceiling.as_str())),
        ],
    );
    // The owner's pages had a user activation: their '*' and list writes are recorded.
    browser.host.notify_user_activation(FrameId(10));
    browser.host.notify_user_activation(FrameId(11));
    for (payload, global) in [(&public, true), (&unlisted, true), (&scoped, false)] {
        let stored = owner.ask(Command::Store { frame: 10, payload: payload.clone(), origins: None, global });
        assert_eq!(stored, Outcome::Ok(None));
    }
    let with_list = Payload::Literal(b"lists 100 origins".to_vec());
    let stored =
        owner.ask(Command::Store { frame: 11, payload: with_list.clone(), origins: Some(listed), global: false });
    assert_eq!(stored, Outcome::Ok(None));
    // A thousand sites store one entry (each its own document in one renderer).
    eprintln!("storing one entry from {STORING_SITES} sites");
    let popular = Payload::Literal(b"a thousand storing sites".to_vec());
    let urls: Vec<String> = (0..STORING_SITES).map(|i| format!("https://storer-{i:04}.example")).collect();
    let frames: Vec<(u64, &str, &str, Option<&str>)> =
        urls.iter().enumerate().map(|(i, url)| (1000 + i as u64, url.as_str(), url.as_str(), None)).collect();
    let storers = browser.renderer(3, &frames);
    for &(frame, ..) in &frames {
        assert_eq!(storers.store(frame, &popular), Outcome::Ok(None));
    }
    // One renderer for the prober site, with two frames: one embedded in a top-level page whose
    // probe budget is fresh, one in a page whose budget is already spent.
    let prober = browser.renderer(
        2,
        &[
            // Two pages of the same shape (the prober embedded in a top-level page whose site has
            // a name of the same length), so that only the budget state differs between them.
            (20, "https://prober.example", "https://fresh1.example", None),
            (21, "https://prober.example", "https://spent1.example", None),
        ],
    );
    let spend: Vec<(u64, String)> =
        (0..16).map(|i| (21, Payload::Literal(format!("spend {i}").into_bytes()).hash())).collect();
    assert!(matches!(prober.ask(Command::LookupMix { probes: spend, rounds: 1 }), Outcome::Timings(_)));

    let miss = Payload::Literal(b"never stored anywhere".to_vec());
    let probes = vec![
        (20, miss.hash()),      // (a) true miss
        (20, scoped.hash()),    // (b) exists, out of scope
        (20, unlisted.hash()),  // (c) global, not on the Public Hash List
        (21, public.hash()),    // (d) would be disclosed, but over budget
        (21, miss.hash()),      // (e) true miss from the over-budget page: the pair that matters
        (20, with_list.hash()), // (f) exists, lists 100 origins but not this one
        (20, popular.hash()),   // (g) exists, a thousand storing sites, none the prober's
    ];
    let classes = [
        "(a) true miss",
        "(b) denied by scope",
        "(c) denied by the PHL",
        "(d) over probe budget",
        "(e) miss, over budget",
        "(f) 100 listed origins",
        "(g) 1,000 storing sites",
    ];
    // Warm up, then measure.
    let _ = prober.timings(Command::LookupMix { probes: probes.clone(), rounds: 100 });
    let all = prober.timings(Command::LookupMix { probes: probes.clone(), rounds: samples });
    let mut per_class: Vec<Vec<u64>> = vec![Vec::new(); probes.len()];
    for (index, sample) in all.into_iter().enumerate() {
        per_class[index % probes.len()].push(sample);
    }
    for class in &mut per_class {
        class.sort_unstable();
    }

    println!("NotFoundError indistinguishability ({samples} interleaved samples per class, full process path)");
    println!("  class                      median      p90     KS D   vs      p-value   [target p > 0.01]");
    let mut worst = 1.0f64;
    // Each class against (a); and (d) against (e): over budget, existing vs missing entry.
    let reference = [None, Some(0), Some(0), Some(0), Some(3), Some(0), Some(0)];
    for ((name, class), against) in classes.iter().zip(&per_class).zip(reference) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (median, p90) = (quantile_ns(class, 0.5), quantile_ns(class, 0.9));
        let Some(other) = against else {
            println!("  {name:<24} {:7.1} us {:7.1} us", us(median), us(p90));
            continue;
        };
        let d = ks_statistic(&per_class[other], class);
        let p = ks_p_value(d, per_class[other].len(), class.len());
        worst = worst.min(p);
        let label = ["(a)", "", "", "(d)"][other];
        println!("  {name:<24} {:7.1} us {:7.1} us   {d:.4}  {label}   {p:.3}", us(median), us(p90));
    }
    println!("  smallest p-value: {worst:.3} ({})", if worst > 0.01 { "indistinguishable" } else { "DISTINGUISHABLE" });

    // close(): new bytes against bytes another site stored, interleaved; each sample is a whole
    // store (getFileHandle → createWritable → write 4 KiB → close) from a third site.
    let writer = browser.renderer(4, &[(40, "https://writer.example", "https://writer.example", None)]);
    let known: Vec<Payload> = (0..CLOSE_SAMPLES).map(|i| Payload::Pattern { len: 4096, seed: 1 + i as u64 }).collect();
    for payload in &known {
        assert_eq!(owner.store(10, payload), Outcome::Ok(None));
    }
    let fresh: Vec<Payload> =
        (0..CLOSE_SAMPLES).map(|i| Payload::Pattern { len: 4096, seed: 1_000_000 + i as u64 }).collect();
    let (mut new_bytes, mut stored_bytes) = (Vec::new(), Vec::new());
    for (i, (fresh, known)) in fresh.iter().zip(&known).enumerate() {
        let timed = |payload: &Payload| match writer.ask(Command::TimedStore { frame: 40, payload: payload.clone() }) {
            Outcome::Timings(samples) => samples[0],
            other => panic!("a timed store failed: {other:?}"),
        };
        // Alternate which goes first, so neither always follows the other's writeback.
        if i % 2 == 0 {
            new_bytes.push(timed(fresh));
            stored_bytes.push(timed(known));
        } else {
            stored_bytes.push(timed(known));
            new_bytes.push(timed(fresh));
        }
    }
    new_bytes.sort_unstable();
    stored_bytes.sort_unstable();
    let d = ks_statistic(&new_bytes, &stored_bytes);
    let p = ks_p_value(d, new_bytes.len(), stored_bytes.len());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "close() of new bytes against bytes another site stored ({CLOSE_SAMPLES} interleaved stores of 4 KiB each)"
    );
    println!(
        "  new bytes                {:7.3} ms {:7.3} ms (median, p90)",
        ms(quantile_ns(&new_bytes, 0.5)),
        ms(quantile_ns(&new_bytes, 0.9))
    );
    println!(
        "  already stored           {:7.3} ms {:7.3} ms   KS D {d:.4}   p-value {p:.3} ({})",
        ms(quantile_ns(&stored_bytes, 0.5)),
        ms(quantile_ns(&stored_bytes, 0.9)),
        if p > 0.01 { "indistinguishable" } else { "DISTINGUISHABLE" }
    );
    ExitCode::SUCCESS
}

/// How many sites store the popular entry: the most an entry records.
const STORING_SITES: usize = cos_storage_service::visibility::MAX_STORING_ORIGINS;

/// Stores timed per kind in the `close()` comparison.
const CLOSE_SAMPLES: usize = 300;
