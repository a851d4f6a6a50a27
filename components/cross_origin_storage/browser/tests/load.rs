//! Load, in the reduced form CI runs: several renderer processes through a mixed workload
//! (lookups, small and 50 MiB writes, reads) while the browser clears site data, against the
//! sandboxed storage service, twice. No unexpected outcome; after each the service holds exactly
//! the descriptors it held before, its memory is back near where it started, and the second load
//! leaves no more memory behind than the first. The full run with figures is
//! `cargo bench -p cos_browser --bench load`.

use std::process::ExitCode;

mod support;
use support::{Browser, run_load};

/// Memory the first load may leave behind: the working set of a store that grew by thousands of
/// entries (the registry's cached pages, the set of verified blobs, allocator fragments). Freed
/// buffers go back (`malloc_trim` when a renderer goes away); measured at ~2.6 MiB after the full
/// 32-renderer load.
const FIRST_LOAD_SLACK_KIB: u64 = 8 * 1024;
/// What a second load on the grown store may add on top: nothing but noise, or something leaks.
const LEAK_SLACK_KIB: u64 = 1024;

fn load_leaves_the_service_as_it_found_it() {
    let browser = Browser::start();
    let first = run_load(&browser, 4, 2_000, 0x10ad, 300);
    first.print();
    let second = run_load(&browser, 4, 2_000, 0x20ad, 300);
    second.print();
    for summary in [&first, &second] {
        assert!(summary.unexpected.is_empty(), "unexpected outcomes: {:?}", summary.unexpected);
        assert!(summary.ops.iter().all(|&n| n > 0), "every kind of operation ran: {:?}", summary.ops);
        assert_eq!(summary.descriptors.2, summary.descriptors.0, "the service's descriptors are back to baseline");
    }
    assert!(
        first.rss_kib.2 <= first.rss_kib.0 + FIRST_LOAD_SLACK_KIB,
        "the service's memory is back near baseline: {:?} KiB",
        first.rss_kib
    );
    assert!(
        second.rss_kib.2 <= first.rss_kib.2 + LEAK_SLACK_KIB,
        "a second load leaves no more behind than the first: {:?} then {:?} KiB",
        first.rss_kib,
        second.rss_kib
    );
}

fn main() -> ExitCode {
    support::run_single_test("load_leaves_the_service_as_it_found_it", load_leaves_the_service_as_it_found_it)
}
