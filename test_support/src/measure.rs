//! Measurement helpers for benchmarks and the memory-bound tests: percentiles, `/proc` figures,
//! and pinning a thread to one CPU. Linux only, as the project is.

use std::time::Duration;

/// The `p`th quantile (`p` in `0.0..=1.0`, nearest rank) of `sorted`; `None` when empty.
pub fn quantile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The `p`th quantile (`0.0..=1.0`) of unsorted samples, in place; zero when empty.
pub fn quantile_of(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    quantile(samples, p).unwrap_or(0.0)
}

/// The median of unsorted durations, in place; zero when empty.
pub fn median_duration(samples: &mut [Duration]) -> Duration {
    samples.sort();
    quantile(samples, 0.5).unwrap_or_default()
}

/// Nanosecond samples as a duration quantile (`0.0..=1.0`) of the sorted slice; zero when empty.
pub fn quantile_ns(sorted_ns: &[u64], p: f64) -> Duration {
    Duration::from_nanos(quantile(sorted_ns, p).unwrap_or(0))
}

/// A KiB figure of `/proc/<pid>/status` (`key` with its colon, e.g. `"VmHWM:"`), for this
/// process when `pid` is `None`; `None` where unreadable.
pub fn status_kib(pid: Option<u32>, key: &str) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Anonymous resident memory (heap, arenas, stacks) of `pid` in KiB, 0 where unreadable: what a
/// process holds on to. File-backed pages are left out: they grow as code paths first run, are
/// shared and reclaimable, and say nothing about leaks.
pub fn anonymous_rss_kib(pid: u32) -> u64 {
    status_kib(Some(pid), "RssAnon:").unwrap_or(0)
}

/// Descriptors process `pid` has open (0 where unreadable).
pub fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// Runs `work` and returns how far it raised this process's resident peak above the resident
/// size before it, in KiB (the high-water mark is reset first); `None` where the kernel does
/// not let us measure.
pub fn peak_extra_rss_kib(work: impl FnOnce()) -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let baseline = status_kib(None, "VmRSS:")?;
    work();
    Some(status_kib(None, "VmHWM:")?.saturating_sub(baseline))
}

/// While alive, the calling thread runs on one CPU only; dropping it restores the mask it had.
#[derive(Debug)]
pub struct PinnedToCpu {
    previous: libc::cpu_set_t,
}

impl PinnedToCpu {
    /// Pins the calling thread to `cpu`; `None` if the CPU does not exist or the call failed.
    pub fn new(cpu: usize) -> Option<Self> {
        // SAFETY: cpu_set_t is plain data for which all-zero is a valid (empty) set;
        // sched_{get,set}affinity(0, ..) act on the calling thread and read or write exactly
        // size_of::<cpu_set_t>() bytes of the sets we own and pass.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut previous) != 0 {
                return None;
            }
            let mut only: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut only);
            (libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &only) == 0).then_some(Self { previous })
        }
    }
}

impl Drop for PinnedToCpu {
    fn drop(&mut self) {
        // SAFETY: as in `new`: the calling thread's own mask, from a set we own.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.previous) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.5), Some(50));
        assert_eq!(quantile(&samples, 0.99), Some(99));
        assert_eq!(quantile(&samples, 1.0), Some(100));
        assert_eq!(quantile(&samples, 0.0), Some(1));
        assert_eq!(quantile::<u64>(&[], 0.5), None);
        assert_eq!(quantile_of(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
    }

    #[test]
    fn own_status_is_readable() {
        assert!(status_kib(None, "VmRSS:").is_some_and(|kib| kib > 0));
        assert!(anonymous_rss_kib(std::process::id()) > 0);
        assert!(open_descriptors(std::process::id()) > 0);
    }

    #[test]
    fn pinning_restores_the_mask() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pinned = PinnedToCpu::new(cpus - 1);
        assert!(pinned.is_some());
        drop(pinned);
    }
}
