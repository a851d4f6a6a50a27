//! Parts 2 and 3: Cross-Origin Storage through the whole stack, from JavaScript in renderer
//! frames (separate renderer processes per site, the sandboxed storage service behind the
//! browser's brokers), alone and at scale.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cos_common::interface::SHARED_READ_MIN_BYTES;
use cos_common::{Origin, Partition};
use cos_test_support::callers::sha256_hex;
use cos_test_support::measure::anonymous_rss_kib;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use test_shell::page::{Page, ShellBrowser};

use super::baselines::BigBaselines;
use super::report::{Kind, Report};
use super::{BenchError, MIB, Parts, Plan};

/// The steps the pages run.
pub const BENCH_COS_JS: &str = include_str!("../js/bench_cos.js");

/// How long one page step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(900);

/// `177 MiB`, `4.5 MiB`, `1 KiB`, `4 GiB`.
pub(crate) fn label(bytes: u64) -> String {
    let (value, unit) = if bytes >= 1 << 30 {
        (bytes as f64 / (1u64 << 30) as f64, "GiB")
    } else if bytes >= MIB {
        (bytes as f64 / MIB as f64, "MiB")
    } else {
        (bytes as f64 / 1024.0, "KiB")
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.trim_end_matches(".0"))
}

/// Evaluates `expression` in `page` and returns its JSON.
fn evaluate(page: &Page, expression: &str) -> Result<String, BenchError> {
    match page.evaluate(expression, STEP_TIMEOUT, |_, _, _| {})? {
        Ok(json) => Ok(json),
        Err(error) => Err(BenchError::Step(format!("{expression}: {error}"))),
    }
}

/// Evaluates `expression` in `page` and decodes its JSON as `T` (`what` names it in the error).
fn evaluate_as<T: DeserializeOwned>(page: &Page, expression: &str, what: &str) -> Result<T, BenchError> {
    let json = evaluate(page, expression)?;
    serde_json::from_str(&json).map_err(|_| BenchError::Step(format!("{expression}: expected {what}, got {json:.80}")))
}

fn evaluate_number(page: &Page, expression: &str) -> Result<f64, BenchError> {
    evaluate_as(page, expression, "a number")
}

fn evaluate_string(page: &Page, expression: &str) -> Result<String, BenchError> {
    evaluate_as(page, expression, "a string")
}

fn evaluate_numbers(page: &Page, expression: &str) -> Result<Vec<f64>, BenchError> {
    evaluate_as(page, expression, "numbers")
}

/// `text` as a JavaScript string literal (a JSON string is one).
fn js_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Opens a page on `url` with the bench steps loaded.
fn bench_page(browser: &ShellBrowser, url: &str) -> Result<Page, BenchError> {
    let page = browser.open(url)?;
    page.eval("bench_cos.js", BENCH_COS_JS)?;
    Ok(page)
}

fn clear(browser: &ShellBrowser, url: &str) -> Result<(), BenchError> {
    let origin = Origin::from_url(url).map_err(|e| BenchError::Step(format!("{url}: {e}")))?;
    browser
        .host()
        .clear_site_data(Partition::Regular, &origin)
        .map_err(|e| BenchError::Step(format!("clear site data: {e}")))
}

/// Blob files in the store of `profile`.
fn blob_files(profile: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(profile.join("cos/blobs")) else { return 0 };
    shards.flatten().map(|shard| std::fs::read_dir(shard.path()).map_or(0, |files| files.count())).sum()
}

pub(super) fn run(
    program: &Path,
    plan: &Plan,
    parts: Parts,
    profile: &Path,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let store_profile = profile.join("bench-store");
    let _ = std::fs::remove_dir_all(&store_profile);
    let browser = ShellBrowser::start(program, Some(&store_profile))?;
    if parts.cos {
        single_page(&browser, profile, plan, report, progress)?;
    }
    if parts.scale {
        concurrent_distinct(&browser, plan, report, progress)?;
        concurrent_same(&browser, &store_profile, plan, report, progress)?;
        lookups_per_second(&browser, plan, report, progress)?;
        public_hash_list(&browser, profile, plan, report, progress)?;
        huge_store(&browser, plan, report, progress)?;
    }
    drop(browser);
    let _ = std::fs::remove_dir_all(&store_profile);
    if parts.scale {
        startup(program, profile, plan, report, progress)?;
    }
    Ok(())
}

/// Part 2: store, read and look up from one page.
fn single_page(
    browser: &ShellBrowser,
    profile: &Path,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    const URL: &str = "https://bench.example/";
    let mut seed = 1000;
    for (i, (label, size)) in plan.sizes.iter().enumerate() {
        // A page per size: every `getFile()` keeps its data pipe until the File is collected,
        // and a renderer may hold 64; closing the page gives them all back, so the number of
        // rounds a size takes is bounded by that size alone, not by the sizes before it.
        let page = bench_page(browser, URL)?;
        // The big size's baselines are taken pair by pair with its COS samples, so that both
        // sides see the same disk, writeback and page-cache state; the other sizes' read
        // baselines (page-cache read, memcpy) too.
        let mut big = if i == 0 { Some(BigBaselines::new(profile, *size)?) } else { None };
        let mut small = match big {
            Some(_) => None,
            None => {
                let small = BigBaselines::new(profile, *size)?;
                small.write_fsync()?;
                Some(small)
            }
        };
        let repeats = if big.is_some() { plan.repeats } else { plan.small_repeats };
        progress(&format!(
            "cos: store and read {label} from JavaScript ({repeats} samples each, interleaved with their baselines)"
        ));
        let (mut stores, mut reads, mut again, mut touched) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut baseline = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for round in 0..=repeats {
            seed += 1;
            let hash = evaluate_string(&page, &format!("cosBench.prepare('file', {size}, {seed})"))?;
            // Which side goes first alternates by round, so neither always follows the other.
            let baselines_first = round % 2 == 0;
            let mut taken = [0.0; 4];
            let store_baselines = |taken: &mut [f64; 4]| -> Result<(), BenchError> {
                if let Some(big) = &big {
                    big.drain_writeback()?;
                    taken[0] = big.sha256();
                    big.drain_writeback()?;
                    taken[2] = big.write_fsync()?;
                }
                Ok(())
            };
            if baselines_first {
                store_baselines(&mut taken)?;
            }
            // Every store starts on a flushed disk: a small store's closing fsync otherwise waits
            // for whatever writeback the previous round (or the big size) left behind.
            if let Some(base) = big.as_ref().or(small.as_ref()) {
                base.drain_writeback()?;
            }
            let store = evaluate_number(&page, "cosBench.store('file')")?;
            if !baselines_first {
                store_baselines(&mut taken)?;
            }
            let read_baselines = |taken: &mut [f64; 4], base: Option<&mut BigBaselines>| -> Result<(), BenchError> {
                if let Some(base) = base {
                    taken[3] = base.page_cache_read()?;
                    taken[1] = base.memcpy();
                }
                Ok(())
            };
            if baselines_first {
                read_baselines(&mut taken, big.as_mut().or(small.as_mut()))?;
            }
            // From 64 KiB on, the first whole read after the store fills the service's sealed copy
            // (hashing it) and maps it; the next ones only map it.
            let read =
                |touch: bool| evaluate_number(&page, &format!("cosBench.read({}, {size}, {touch})", js_string(&hash)));
            let first = read(false)?;
            let (read_again, read_touched) = (read(false)?, read(true)?);
            if !baselines_first {
                read_baselines(&mut taken, big.as_mut().or(small.as_mut()))?;
            }
            // The first round warms up.
            if round > 0 {
                stores.push(store);
                reads.push(first);
                again.push(read_again);
                touched.push(read_touched);
                for (samples, sample) in baseline.iter_mut().zip(taken) {
                    samples.push(sample);
                }
            }
        }
        let bytes = Kind::Transfer { bytes: *size };
        if big.take().is_some() {
            for (name, samples) in crate::baselines::names(label).into_iter().zip(baseline) {
                report.add("baselines", name, bytes, samples);
                report.note("paired: taken in turn with the COS samples of section 2");
            }
        } else if small.take().is_some() {
            let [_, memcpy, _, page_cache] = baseline;
            let [_, memcpy_name, _, page_cache_name] = crate::baselines::names(label);
            for (name, samples) in [(page_cache_name, page_cache), (memcpy_name, memcpy)] {
                report.add("baselines", name, bytes, samples);
                report.note("paired: taken in turn with the COS samples of section 2");
            }
        }
        report.add("cos", format!("store {label}"), Kind::Transfer { bytes: *size }, stores);
        report.note("getFileHandle(create) → createWritable → write → close: verified, durable");
        report.add("cos", format!("read {label}"), Kind::Transfer { bytes: *size }, reads);
        report.note(if *size >= SHARED_READ_MIN_BYTES {
            "getFileHandle → getFile → arrayBuffer, first after the store: the sealed copy filled from the unchanged blob (not hashed again), mapped"
        } else {
            "getFileHandle → getFile → arrayBuffer, first after the store: the entry inside getFile's reply, hashed"
        });
        report.add("cos", format!("read again {label}"), Kind::Transfer { bytes: *size }, again);
        report.note(if *size >= SHARED_READ_MIN_BYTES {
            "the same: by descriptor, a lazy private mapping of the cached copy (no page touched)"
        } else {
            "the same: inside getFile's reply (below the descriptor threshold), hashed on every read"
        });
        report.add("cos", format!("read again, touched {label}"), Kind::Transfer { bytes: *size }, touched);
        report.note("the same, and JS reads one byte of every 4 KiB page inside the timing");
        browser.close(&page)?;
        clear(browser, URL)?;
    }
    let page = bench_page(browser, URL)?;
    progress(&format!("cos: {} getFileHandle hits and misses", plan.lookups));
    let hash = evaluate_string(&page, "cosBench.prepare('small', 1024, 7)")?;
    evaluate_number(&page, "cosBench.store('small')")?;
    let hit = evaluate_numbers(&page, &format!("cosBench.lookups({}, {}, true)", js_string(&hash), plan.lookups))?;
    report.add("cos", "lookup hit", Kind::Latency, hit);
    let never_stored = sha256_hex(b"never stored");
    let miss =
        evaluate_numbers(&page, &format!("cosBench.lookups({}, {}, false)", js_string(&never_stored), plan.lookups))?;
    report.add("cos", "lookup miss", Kind::Latency, miss);
    clear(browser, URL)
}

/// Runs `expression(i)` in page `i`, every page at once (one thread each); the wall time and
/// each answer.
fn all_at_once(pages: &[Page], expression: impl Fn(usize) -> String) -> Result<(f64, Vec<f64>), BenchError> {
    let start = Instant::now();
    let answers: Vec<Result<f64, BenchError>> = std::thread::scope(|scope| {
        let running: Vec<_> = pages
            .iter()
            .enumerate()
            .map(|(i, page)| {
                let expression = expression(i);
                scope.spawn(move || evaluate_number(page, &expression))
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err(BenchError::Step("a page thread panicked".into()))))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64() * 1e3;
    Ok((wall, answers.into_iter().collect::<Result<_, _>>()?))
}

/// Makes `size` bytes from seed `seed(i)` in page `i`, then stores them in every page at once;
/// the wall time from the first call to the last close.
fn store_in_every_page(pages: &[Page], size: u64, seed: impl Fn(usize) -> usize) -> Result<f64, BenchError> {
    for (i, page) in pages.iter().enumerate() {
        evaluate_string(page, &format!("cosBench.prepare('file', {size}, {})", seed(i)))?;
    }
    Ok(all_at_once(pages, |_| "cosBench.store('file')".into())?.0)
}

fn clear_all(browser: &ShellBrowser, urls: &[String]) -> Result<(), BenchError> {
    urls.iter().try_for_each(|url| clear(browser, url))
}

fn site_pages(browser: &ShellBrowser, prefix: &str, count: usize) -> Result<(Vec<String>, Vec<Page>), BenchError> {
    let urls: Vec<String> = (0..count).map(|i| format!("https://{prefix}{i}.example/")).collect();
    let pages = urls.iter().map(|url| bench_page(browser, url)).collect::<Result<_, _>>()?;
    Ok((urls, pages))
}

fn scale_rounds(plan: &Plan) -> usize {
    plan.repeats.min(3)
}

/// Part 3: renderers storing distinct files at once (aggregate MiB/s).
fn concurrent_distinct(
    browser: &ShellBrowser,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let (count, size) = plan.concurrent;
    progress(&format!("scale: {count} renderers store distinct {} files at once", label(size)));
    let (urls, pages) = site_pages(browser, "distinct", count)?;
    let mut rates = Vec::new();
    for round in 0..scale_rounds(plan) {
        let wall = store_in_every_page(&pages, size, |i| 5000 + round * 100 + i)?;
        rates.push((count as u64 * size) as f64 / MIB as f64 / (wall / 1e3));
        clear_all(browser, &urls)?;
    }
    report.add(
        "scale",
        format!("{count} renderers store distinct {} at once", label(size)),
        Kind::Rate { unit: "MiB/s" },
        rates,
    );
    report.note("aggregate, wall clock from the first call to the last close");
    Ok(())
}

/// Part 3: renderers storing the same file at once: all succeed, one blob on disk.
fn concurrent_same(
    browser: &ShellBrowser,
    profile: &Path,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let (count, size) = plan.same_file;
    progress(&format!("scale: {count} renderers store the same {} file at once", label(size)));
    let (urls, pages) = site_pages(browser, "same", count)?;
    let mut walls = Vec::new();
    for round in 0..scale_rounds(plan) {
        let before = blob_files(profile);
        let wall = store_in_every_page(&pages, size, |_| 7000 + round)?;
        let added = blob_files(profile) - before;
        if added != 1 {
            return Err(BenchError::Step(format!("{count} stores of the same file left {added} blobs, not 1")));
        }
        walls.push(wall);
        clear_all(browser, &urls)?;
    }
    report.add("scale", format!("{count} renderers store the same {} at once", label(size)), Kind::Time, walls);
    report.note(format!("all {count} stores succeeded; 1 blob on disk each round"));
    Ok(())
}

/// Part 3: lookups per second with many renderers looking up at once.
fn lookups_per_second(
    browser: &ShellBrowser,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let (count, duration) = plan.lookup_renderers;
    progress(&format!("scale: {count} renderers look up for {} ms at once", duration.as_millis()));
    let (urls, pages) = site_pages(browser, "lookup", count)?;
    let mut hashes = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        hashes.push(evaluate_string(page, &format!("cosBench.prepare('small', 1024, {})", 9000 + i))?);
        evaluate_number(page, "cosBench.store('small')")?;
    }
    let mut rates = Vec::new();
    for _ in 0..scale_rounds(plan) {
        let (wall, counts) = all_at_once(&pages, |i| {
            format!("cosBench.lookupsFor({}, {})", js_string(&hashes[i]), duration.as_millis())
        })?;
        rates.push(counts.iter().sum::<f64>() / (wall / 1e3));
    }
    report.add("scale", format!("lookups/s with {count} renderers"), Kind::Rate { unit: "lookups/s" }, rates);
    clear_all(browser, &urls)
}

/// Part 3: loading a Public Hash List into the running service: time and the service's memory.
fn public_hash_list(
    browser: &ShellBrowser,
    profile: &Path,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let digests = plan.list_digests;
    progress(&format!("scale: load a Public Hash List of {digests} digests"));
    let path = profile.join("bench-public-hash-list.txt");
    cos_storage_service::fixtures::write_public_hash_list(&path, digests)
        .map_err(|e| BenchError::io("write", &path, e))?;
    let pid = browser.host().service_pid().ok_or_else(|| BenchError::Step("the service has no process".into()))?;
    let before = anonymous_rss_kib(pid);
    let mut times = Vec::new();
    let mut memory = Vec::new();
    for _ in 0..scale_rounds(plan) {
        let start = Instant::now();
        browser.host().reload_public_hash_list(&path).map_err(|e| BenchError::Step(format!("load the list: {e}")))?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        memory.push(anonymous_rss_kib(pid).saturating_sub(before) as f64 / 1024.0);
    }
    report.add("scale", format!("Public Hash List load, {digests} digests"), Kind::Time, times);
    report.note("file read by the browser, streamed to the service, parsed there");
    report.add("scale", format!("Public Hash List memory, {digests} digests"), Kind::Memory, memory);
    report.note("the service's anonymous RSS growth");
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Part 3: one huge store: throughput and the service's peak memory growth while it runs.
fn huge_store(
    browser: &ShellBrowser,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    const URL: &str = "https://huge.example/";
    let (copies, chunk) = plan.huge;
    let total = copies * chunk;
    progress(&format!(
        "scale: store {} ({copies} writes of {}) and watch the service's memory",
        label(total),
        label(chunk)
    ));
    let chunk_bytes = test_shell::generated_bytes(chunk as usize, 4242);
    let mut hasher = Sha256::new();
    for _ in 0..copies {
        hasher.update(&chunk_bytes);
    }
    let hash = cos_common::ContentHash::from_bytes(hasher.finalize().into()).to_hex();
    drop(chunk_bytes);
    let page = bench_page(browser, URL)?;
    evaluate_string(&page, &format!("cosBench.prepare('chunk', {chunk}, 4242)"))?;
    let pid = browser.host().service_pid().ok_or_else(|| BenchError::Step("the service has no process".into()))?;
    let before = anonymous_rss_kib(pid);
    let peak = AtomicU64::new(before);
    let done = AtomicBool::new(false);
    let ms = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(anonymous_rss_kib(pid), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let outcome =
            evaluate_number(&page, &format!("cosBench.storeRepeated('chunk', {copies}, {})", js_string(&hash)));
        done.store(true, Ordering::Release);
        outcome
    })?;
    report.add("scale", format!("store {} from JavaScript", label(total)), Kind::Transfer { bytes: total }, vec![ms]);
    report.note(format!("{copies} writes of {}", label(chunk)));
    let peak = peak.load(Ordering::Acquire);
    let growth = peak.saturating_sub(before) as f64 / 1024.0;
    report.add("scale", format!("service RSS growth storing {}", label(total)), Kind::Memory, vec![growth]);
    report.note(format!(
        "peak anonymous RSS over the store ({:.1} MiB, sampled every 5 ms) minus before ({:.1} MiB)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    ));
    clear(browser, URL)
}

/// Part 3: start-up (launch, open, recovery, sandbox, Ready) on a large registry.
fn startup(
    program: &Path,
    profile: &Path,
    plan: &Plan,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let entries = plan.startup_entries;
    let dir: PathBuf = profile.join("bench-startup");
    let _ = std::fs::remove_dir_all(&dir);
    progress(&format!("scale: write a registry of {entries} entries, then time the service's start-up"));
    let origin = Origin::from_url("https://populated.example").map_err(|e| BenchError::Step(e.to_string()))?;
    let mut last = Instant::now();
    cos_storage_service::fixtures::populate(&dir, entries, &origin, |done| {
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            progress(&format!("  {done}/{entries} entries written"));
        }
    })
    .map_err(|e| BenchError::Step(format!("populate the registry: {e}")))?;
    let empty = profile.join("bench-startup-empty");
    let _ = std::fs::remove_dir_all(&empty);
    for (figure, dir, count) in
        [("start-up with 0 entries".to_owned(), &empty, 0), (format!("start-up with {entries} entries"), &dir, entries)]
    {
        let mut samples = Vec::new();
        for round in 0..=plan.repeats.min(5) {
            let start = Instant::now();
            let browser = ShellBrowser::start(program, Some(dir))?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            drop(browser);
            if round == 0 && count > 0 {
                // The populated store was never shut down by a service: the first start
                // reconciles every row with its blob file, as after a crash.
                report.add(
                    "scale",
                    format!("first start-up with {count} entries (full reconciliation)"),
                    Kind::Time,
                    vec![ms],
                );
                report.note("as after a crash: every registry row checked against its blob file");
            }
            if round > 0 {
                samples.push(ms);
            }
        }
        report.add("scale", figure, Kind::Time, samples);
        report.note(format!("after a clean shutdown: launch the sandboxed service on {count} entries until Ready"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_people_write_sizes() {
        assert_eq!(label(177 * MIB), "177 MiB");
        assert_eq!(label(9 * MIB / 2), "4.5 MiB");
        assert_eq!(label(1024), "1 KiB");
        assert_eq!(label(4 << 30), "4 GiB");
    }

    #[test]
    fn strings_become_javascript_literals() {
        assert_eq!(js_string("ab"), "\"ab\"");
        assert_eq!(js_string("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }
}
