//! Load, in the reduced form CI runs: several renderer processes through a mixed workload
//! (lookups, small and 50 MiB writes, reads) while the browser clears site data, against the
//! sandboxed storage service. No unexpected outcome; afterwards the service holds exactly the
//! descriptors it held before, and its memory is back near where it started. The full run with
//! figures is `cargo bench -p cos_browser --bench load`.

use std::process::ExitCode;

mod support;
use support::{Browser, run_load};

/// Memory the service may keep after the load: the registry grew (redb caches its pages) and the
/// allocator keeps some fragments; freed buffers themselves go back (`malloc_trim` when a
/// renderer goes away).
const RSS_SLACK_KIB: u64 = 16 * 1024;

fn load_leaves_the_service_as_it_found_it() {
    let browser = Browser::start();
    let summary = run_load(&browser, 4, 3_000, 0x10ad, 300);
    summary.print();
    assert!(summary.unexpected.is_empty(), "unexpected outcomes: {:?}", summary.unexpected);
    assert!(summary.ops.iter().all(|&n| n > 0), "every kind of operation ran: {:?}", summary.ops);
    assert_eq!(summary.descriptors.2, summary.descriptors.0, "the service's descriptors are back to baseline");
    assert!(
        summary.rss_kib.2 <= summary.rss_kib.0 + RSS_SLACK_KIB,
        "the service's memory is back near baseline: {:?} KiB",
        summary.rss_kib
    );
}

fn main() -> ExitCode {
    support::run_single_test("load_leaves_the_service_as_it_found_it", load_leaves_the_service_as_it_found_it)
}
