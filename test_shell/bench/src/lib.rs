//! The test shell's bench (`test_shell_bench`, also reached as `test_shell bench`): every hot
//! path measured against the machine's limits and the browser's own storage, side by side in one
//! run. Its own crate so that none of it (nor its HTTP stack) is built into the shell.
//!
//! Five parts, each in one process tree started by this process:
//! 1. `baselines`: raw SHA-256, write + fsync, page-cache read and memcpy of the big size (taken
//!    in pairs with part 2's samples of that size when part 2 runs), and the raw transport (a
//!    small-message round trip and bulk throughput between two processes).
//! 2. `cos`: Cross-Origin Storage from JavaScript in a renderer frame (store, read, lookups).
//! 3. `cos` at scale: eight renderers storing at once, dedup, 32 renderers' lookups/s,
//!    start-up on a 100,000-entry registry, a 500,000-digest Public Hash List, a 4 GiB store.
//! 4. Ratios of COS figures to their baselines, with the targets.
//! 5. [`peers`]: the browser's own storage in headless Chromium, and COS through that Chromium
//!    beside it (`--peers`).

mod baselines;
mod cos;
pub mod peers;
mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use baselines::{TRANSPORT_PROCESS_TYPE, run_transport_peer};
pub use report::{Figure, Kind, Pair, Ratio, Report};

/// MiB.
pub(crate) const MIB: u64 = 1 << 20;

/// What the bench was asked for.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Smaller sizes and fewer samples: the whole run in under a minute (a smoke test).
    pub quick: bool,
    /// Also measure the browser's own storage in headless Chromium.
    pub peers: bool,
    /// Where the profile (the store and the baseline files) lives; a new temporary directory
    /// when `None`. Its filesystem is the one measured.
    pub profile: Option<PathBuf>,
    /// Only these parts (`None`: all); for profiling one path.
    pub only: Option<Parts>,
}

/// Which parts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Part 1.
    pub baselines: bool,
    /// Part 2.
    pub cos: bool,
    /// Part 3.
    pub scale: bool,
}

impl Parts {
    /// Every part.
    pub const ALL: Parts = Parts { baselines: true, cos: true, scale: true };

    /// Parses a comma-separated list of `baselines`, `cos` and `scale`.
    pub fn parse(list: &str) -> Result<Parts, String> {
        let mut parts = Parts { baselines: false, cos: false, scale: false };
        for name in list.split(',').map(str::trim) {
            match name {
                "baselines" => parts.baselines = true,
                "cos" => parts.cos = true,
                "scale" => parts.scale = true,
                other => return Err(format!("unknown part {other:?}: expected baselines, cos or scale")),
            }
        }
        Ok(parts)
    }
}

/// The sizes and counts of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The big file (177 MiB: Whisper tiny.en's model files).
    pub big: u64,
    /// The sizes stored and read from JavaScript, with their labels.
    pub sizes: Vec<(String, u64)>,
    /// Samples per timed figure (after one warm-up).
    pub repeats: usize,
    /// Samples of section 2's sizes after the first (the big one): each round costs milliseconds,
    /// and a median of 5 such short samples moves with a single noisy one.
    pub small_repeats: usize,
    /// Sequential lookups per latency figure.
    pub lookups: u32,
    /// Raw transport round trips.
    pub round_trips: u32,
    /// Renderers storing at once, and the size each stores (distinct files).
    pub concurrent: (usize, u64),
    /// Renderers storing the same file at once, and its size.
    pub same_file: (usize, u64),
    /// Renderers looking up at once, and for how long.
    pub lookup_renderers: (usize, Duration),
    /// Registry entries for the start-up figure.
    pub startup_entries: u64,
    /// Public Hash List digests.
    pub list_digests: u32,
    /// The huge store (4 GiB), written as this many copies of a chunk of this size.
    pub huge: (u64, u64),
}

impl Plan {
    /// The full run, sized as the targets are stated.
    pub fn full() -> Self {
        let big = 177 * MIB;
        Plan {
            big,
            sizes: vec![("177 MiB".into(), big), ("4.5 MiB".into(), 9 * MIB / 2), ("1 KiB".into(), 1024)],
            repeats: 5,
            small_repeats: 15,
            lookups: 1000,
            round_trips: 10_000,
            concurrent: (8, 50 * MIB),
            same_file: (8, big),
            lookup_renderers: (32, Duration::from_secs(3)),
            startup_entries: 100_000,
            list_digests: 500_000,
            huge: (256, 16 * MIB),
        }
    }

    /// `--quick`: every part, small.
    pub fn quick() -> Self {
        let big = 16 * MIB;
        Plan {
            big,
            sizes: vec![("16 MiB".into(), big), ("4.5 MiB".into(), 9 * MIB / 2), ("1 KiB".into(), 1024)],
            repeats: 2,
            small_repeats: 3,
            lookups: 200,
            round_trips: 1000,
            concurrent: (4, 4 * MIB),
            same_file: (4, 8 * MIB),
            lookup_renderers: (8, Duration::from_millis(500)),
            startup_entries: 5_000,
            list_digests: 50_000,
            huge: (16, 16 * MIB),
        }
    }
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or directory of the run.
    #[error("{what} ({path}): {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// A step failed.
    #[error("{0}")]
    Step(String),
}

impl BenchError {
    pub(crate) fn io(what: &'static str, path: &Path, error: std::io::Error) -> Self {
        Self::Io { what, path: path.to_path_buf(), error }
    }
}

impl From<test_shell::page::PageError> for BenchError {
    fn from(error: test_shell::page::PageError) -> Self {
        Self::Step(error.to_string())
    }
}

/// Runs the bench with `program` (the bench binary, which also plays the renderers, the service
/// and the transport peer) and returns its report; `progress` sees a line as each step starts.
pub fn run(program: &Path, options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    let plan = if options.quick { Plan::quick() } else { Plan::full() };
    let (profile, _temporary) = match &options.profile {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| BenchError::io("create the profile", dir, e))?;
            (dir.clone(), None)
        }
        None => {
            let dir = tempfile::tempdir().map_err(|e| BenchError::io("create a profile", Path::new("/tmp"), e))?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let mut report = Report::new(options.quick, machine());
    let parts = options.only.unwrap_or(Parts::ALL);
    if parts.baselines {
        // The COS part takes the big size's local baselines itself, paired with its samples.
        baselines::run(program, &plan, &profile, parts.cos, &mut report, progress)?;
    }
    if parts.cos || parts.scale {
        cos::run(program, &plan, parts, &profile, &mut report, progress)?;
    }
    for (label, _) in &plan.sizes {
        report.add_pairs(label);
    }
    report.add_ratios();
    if options.peers {
        progress("peers: the browser's own storage and COS through the bridge, in headless Chromium");
        let peer_options = peers::PeerOptions {
            sizes: plan.sizes.clone(),
            repeats: plan.repeats as u32,
            lookups: plan.lookups,
            timeout: Duration::from_secs(if options.quick { 120 } else { 900 }),
            service_program: program.to_path_buf(),
        };
        match peers::run_peers(&peer_options, &mut |line| progress(&format!("  {line}"))) {
            Ok(outcome) => report.add_peers(outcome, &plan),
            Err(error) => {
                report.add_peers(peers::PeersOutcome::Skipped(format!("the Chromium run failed: {error}")), &plan)
            }
        }
    }
    Ok(report)
}

/// One line about the machine: CPUs, memory, kernel.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0.0, |kib| kib as f64 / (1u64 << 20) as f64);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), {memory_gib:.0} GiB RAM, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse_from_a_list() {
        assert_eq!(Parts::parse("cos").unwrap(), Parts { baselines: false, cos: true, scale: false });
        assert_eq!(Parts::parse("baselines, scale").unwrap(), Parts { baselines: true, cos: false, scale: true });
        assert!(Parts::parse("cos,peers").unwrap_err().contains("peers"));
    }

    #[test]
    fn the_quick_plan_is_smaller_in_every_part() {
        let (full, quick) = (Plan::full(), Plan::quick());
        assert!(quick.big < full.big && quick.repeats < full.repeats && quick.lookups < full.lookups);
        assert!(quick.small_repeats < full.small_repeats && full.small_repeats > full.repeats);
        assert!(quick.startup_entries < full.startup_entries && quick.list_digests < full.list_digests);
        assert!(quick.huge.0 * quick.huge.1 < full.huge.0 * full.huge.1);
        assert_eq!(full.huge.0 * full.huge.1, 4 << 30, "the huge store is 4 GiB");
        assert_eq!(full.big, 177 * MIB);
    }

    /// Section 2 reads each size three times a round (plus the warm-up round) in one page, and
    /// every `getFile()` holds a data pipe until its File is collected: a size's rounds must fit
    /// the renderer's allowance, or the bench measures the refusal instead.
    #[test]
    fn a_sizes_reads_fit_the_renderers_data_pipes() {
        let allowance = cos_storage_service::process::MAX_DATA_PIPES_PER_RENDERER;
        for plan in [Plan::full(), Plan::quick()] {
            let rounds = plan.repeats.max(plan.small_repeats) + 1;
            assert!(3 * rounds < allowance, "{rounds} rounds of 3 reads exceed {allowance} data pipes");
        }
    }
}
