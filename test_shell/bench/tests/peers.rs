//! The peers page in real headless Chromium, through the bridge, with this crate's binary as
//! the storage service behind `navigator.crossOriginStorage`. Chromium is part of this
//! machine's setup, so its absence fails the test with the install hint rather than skipping.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cos_shell_bench::peers::{LOOKUPS, OPERATIONS, PeerOptions, PeersOutcome, find_chromium, run_peers};

fn options(sizes: Vec<(String, u64)>, repeats: u32, lookups: u32, timeout: Duration) -> PeerOptions {
    PeerOptions {
        sizes,
        repeats,
        lookups,
        timeout,
        service_program: PathBuf::from(env!("CARGO_BIN_EXE_test_shell_bench")),
    }
}

/// Runs the real page with tiny sizes: every peer and every COS-through-Chromium figure must be
/// there with the sample count asked for.
#[test]
fn measures_in_headless_chromium() {
    assert!(
        find_chromium().is_ok(),
        "no Chromium: install it (`apt-get install chromium`) at /usr/bin/chromium or set CHROMIUM="
    );
    let options = options(vec![("1 KiB".into(), 1024)], 2, 20, Duration::from_secs(120));
    let mut messages = Vec::new();
    let outcome = run_peers(&options, &mut |message| messages.push(message.to_owned())).unwrap();
    let PeersOutcome::Ran(run) = outcome else { panic!("skipped with Chromium present: {outcome:?}") };
    assert!(run.browser.contains(|c: char| c.is_ascii_digit()), "{}", run.browser);
    let names: Vec<&str> = run.figures.iter().map(|figure| figure.name.as_str()).collect();
    let samples = |name: &str| {
        run.figures
            .iter()
            .find(|figure| figure.name == name)
            .unwrap_or_else(|| panic!("no {name:?} in {names:?}"))
            .samples_ms
            .len()
    };
    for operation in OPERATIONS {
        assert_eq!(samples(&format!("{operation} 1 KiB")), 2, "{operation}");
    }
    for name in ["cos store 1 KiB", "cos read 1 KiB"] {
        assert_eq!(samples(name), 2, "{name}");
    }
    for name in LOOKUPS {
        assert_eq!(samples(name), 20, "{name}");
    }
    for name in ["cos lookup hit", "cos lookup miss"] {
        assert_eq!(samples(name), 20, "{name}");
    }
    assert_eq!(names.len(), 13, "{names:?}");
    assert!(messages.iter().any(|m| m.starts_with("cache put 1 KiB: median")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("cos store 1 KiB: median")), "{messages:?}");
}

/// The full-size measurement, by hand: `cargo test --release -p cos_shell_bench --test peers --
/// --ignored --nocapture`. About a minute on a 2-core VM, and a few GiB of scratch disk.
#[test]
#[ignore = "a minute of headless Chromium and GiBs of disk; run by hand"]
fn full_size_run() {
    let sizes = vec![("177 MiB".into(), 185_597_952), ("4.5 MiB".into(), 4_718_592), ("1 KiB".into(), 1024)];
    let options = options(sizes, 3, 1000, Duration::from_secs(600));
    let started = Instant::now();
    let outcome = run_peers(&options, &mut |message| eprintln!("{message}")).unwrap();
    let PeersOutcome::Ran(run) = outcome else { panic!("{outcome:?}") };
    eprintln!("{} in {:.1} s", run.browser, started.elapsed().as_secs_f64());
    for figure in &run.figures {
        let mut sorted = figure.samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        eprintln!(
            "{:<28} median {:>10.3} ms  min {:>10.3} ms  max {:>10.3} ms",
            figure.name,
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1]
        );
    }
}
