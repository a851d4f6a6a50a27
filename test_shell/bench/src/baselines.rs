//! Part 1: what this machine can do at best, measured in the same run as COS: SHA-256 over the
//! big size in memory, sequential write + fsync of it to the profile's filesystem, page-cache
//! read of it, memcpy, and the raw transport between two processes (the `bench-transport`
//! process type of the bench binary).

use std::io::{IoSliceMut, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cos_common::interface::{DATA_CHUNK_BYTES, DATA_PIPE_SEND_BUFFER};
use cos_ipc::Endpoint;
use cos_ipc::launch::{ChildBootstrap, LaunchOptions};
use cos_test_support::measure::PinnedToCpu;
use sha2::{Digest, Sha256};

use super::report::{Kind, Report};
use super::{BenchError, MIB, Plan};

/// The transport peer's process type.
pub const TRANSPORT_PROCESS_TYPE: &str = "bench-transport";

/// The first byte of each message to the transport peer.
const PING: u8 = b'p';
const BULK: u8 = b'b';
/// `[PIN, cpu]`: the peer pins itself to `cpu` and answers; `[UNPIN]`: it returns to its mask.
const PIN: u8 = b'c';
const UNPIN: u8 = b'u';

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Times `step` once to warm up, then `repeats` times.
fn timed(repeats: usize, mut step: impl FnMut() -> Result<(), BenchError>) -> Result<Vec<f64>, BenchError> {
    step()?;
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        step()?;
        samples.push(ms_since(start));
    }
    Ok(samples)
}

/// The big size's local baselines (SHA-256, memcpy, write + fsync, page-cache read), one sample
/// per call, so that the COS part can take them in pairs with its own samples: both sides of a
/// pair then see the same disk, writeback and page-cache state.
pub(crate) struct BigBaselines {
    data: Vec<u8>,
    copy: Vec<u8>,
    path: PathBuf,
    /// The profile's directory, open for `syncfs` on its filesystem.
    profile: std::fs::File,
}

impl BigBaselines {
    /// `size` bytes of test data, and the file the write and read baselines use in `profile`.
    pub(crate) fn new(profile: &Path, size: u64) -> Result<Self, BenchError> {
        let dir = std::fs::File::open(profile).map_err(|e| BenchError::io("open the profile", profile, e))?;
        let data = test_shell::generated_bytes(size as usize, 1);
        let copy = vec![0u8; data.len()];
        Ok(Self { data, copy, path: profile.join("bench-baseline.bin"), profile: dir })
    }

    /// Flushes the profile filesystem's dirty pages, so that writeback left by earlier samples
    /// (of either side) is not charged to the next timed store.
    pub(crate) fn drain_writeback(&self) -> Result<(), BenchError> {
        rustix::fs::syncfs(&self.profile).map_err(|e| BenchError::io("syncfs", &self.path, e.into()))
    }

    /// SHA-256 of the big size in memory; ms.
    pub(crate) fn sha256(&self) -> f64 {
        let start = Instant::now();
        std::hint::black_box(Sha256::digest(std::hint::black_box(&self.data)));
        ms_since(start)
    }

    /// memcpy of the big size; ms.
    pub(crate) fn memcpy(&mut self) -> f64 {
        let start = Instant::now();
        self.copy.copy_from_slice(std::hint::black_box(&self.data));
        std::hint::black_box(&self.copy);
        ms_since(start)
    }

    /// A new file of the big size in 1 MiB writes, then fsync; ms.
    pub(crate) fn write_fsync(&self) -> Result<f64, BenchError> {
        let path = &self.path;
        let start = Instant::now();
        let mut file = std::fs::File::create(path).map_err(|e| BenchError::io("create", path, e))?;
        for piece in self.data.chunks(MIB as usize) {
            file.write_all(piece).map_err(|e| BenchError::io("write", path, e))?;
        }
        file.sync_all().map_err(|e| BenchError::io("fsync", path, e))?;
        Ok(ms_since(start))
    }

    /// The file [`Self::write_fsync`] wrote, read back from the page cache; ms.
    pub(crate) fn page_cache_read(&mut self) -> Result<f64, BenchError> {
        let path = &self.path;
        let start = Instant::now();
        let mut file = std::fs::File::open(path).map_err(|e| BenchError::io("open", path, e))?;
        file.read_exact(&mut self.copy).map_err(|e| BenchError::io("read", path, e))?;
        Ok(ms_since(start))
    }

    /// The test data (the transport's bulk baseline sends it too).
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for BigBaselines {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The figure names of the big size's baselines.
pub(crate) fn names(label: &str) -> [String; 4] {
    [
        format!("sha256 {label}"),
        format!("memcpy {label}"),
        format!("write+fsync {label}"),
        format!("page-cache read {label}"),
    ]
}

/// Part 1. With `paired`, the big size's local baselines are left to the COS part, which takes
/// them interleaved with its samples; otherwise (`--only baselines`) they are measured here, in
/// a block, with writeback drained before each write.
pub(super) fn run(
    program: &Path,
    plan: &Plan,
    profile: &Path,
    paired: bool,
    report: &mut Report,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let label = super::cos::label(plan.big);
    let mut big = BigBaselines::new(profile, plan.big)?;
    if !paired {
        let bytes = Kind::Transfer { bytes: plan.big };
        progress(&format!("baselines: SHA-256, memcpy, write + fsync and page-cache read of {label}"));
        let [sha_name, memcpy_name, write_name, read_name] = names(&label);
        let (mut sha, mut memcpy, mut write, mut read) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Round 0 warms up.
        for round in 0..=plan.repeats {
            let s = big.sha256();
            let m = big.memcpy();
            big.drain_writeback()?;
            let w = big.write_fsync()?;
            let r = big.page_cache_read()?;
            if round > 0 {
                sha.push(s);
                memcpy.push(m);
                write.push(w);
                read.push(r);
            }
        }
        report.add("baselines", sha_name, bytes, sha);
        report.add("baselines", memcpy_name, bytes, memcpy);
        report.add("baselines", write_name, bytes, write);
        report.add("baselines", read_name, bytes, read);
    }

    progress("baselines: the raw transport between two processes");
    let mut options = LaunchOptions::new(TRANSPORT_PROCESS_TYPE);
    options.program = program.to_path_buf();
    let mut peer = cos_ipc::launch::launch(&options).map_err(|e| BenchError::Step(format!("transport peer: {e}")))?;
    let pipe = peer.take_endpoint();
    let outcome = transport(&pipe, plan, big.data(), report);
    drop(pipe);
    let _ = peer.wait();
    outcome
}

fn step_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::Step(format!("transport: {error}"))
}

/// Small-message round trips with this thread and the peer's pinned to `(ours, theirs)`.
fn round_trips(pipe: &Endpoint, n: u32, cpus: (usize, usize)) -> Result<Vec<f64>, BenchError> {
    let pinned = PinnedToCpu::new(cpus.0);
    pipe.send(&[PIN, cpus.1 as u8], Vec::new()).map_err(step_error)?;
    pipe.recv().map_err(step_error)?;
    let round_trip = || -> Result<f64, BenchError> {
        let start = Instant::now();
        pipe.send(&[PING, 0, 0, 0, 0, 0, 0, 0], Vec::new()).map_err(step_error)?;
        pipe.recv().map_err(step_error)?;
        Ok(ms_since(start))
    };
    for _ in 0..n / 10 {
        round_trip()?;
    }
    let samples = (0..n).map(|_| round_trip()).collect::<Result<Vec<_>, _>>();
    drop(pinned);
    pipe.send(&[UNPIN], Vec::new()).map_err(step_error)?;
    pipe.recv().map_err(step_error)?;
    samples
}

/// Small-message round trips (the two processes on two CPUs, as a renderer, the browser and the
/// service usually are; and on one CPU, for reference), then the big size in 1 MiB writes (each
/// 128 KiB frames, the transport's data-pipe frame) one way with the data pipes' send queue.
fn transport(pipe: &Endpoint, plan: &Plan, data: &[u8], report: &mut Report) -> Result<(), BenchError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cross = round_trips(pipe, plan.round_trips, (0, if cpus > 1 { 1 } else { 0 }))?;
    report.add("baselines", "transport round trip", Kind::Latency, cross);
    report.note("two processes on two CPUs: the baseline the lookup ratios use");
    let same = round_trips(pipe, plan.round_trips, (0, 0))?;
    report.add("baselines", "transport round trip, one CPU", Kind::Latency, same);
    report.note("both processes pinned to one CPU: no cross-CPU wake-up, for reference");

    pipe.set_send_buffer(DATA_PIPE_SEND_BUFFER).map_err(step_error)?;
    let mut frame = vec![BULK; DATA_CHUNK_BYTES + 1];
    let mut bulk = || -> Result<(), BenchError> {
        for piece in data.chunks(MIB as usize) {
            for part in piece.chunks(DATA_CHUNK_BYTES) {
                frame.truncate(1);
                frame.extend_from_slice(part);
                pipe.send(&frame, Vec::new()).map_err(step_error)?;
            }
        }
        pipe.send(&[PING], Vec::new()).map_err(step_error)?;
        pipe.recv().map_err(step_error)?;
        Ok(())
    };
    let samples = timed(plan.repeats, &mut bulk)?;
    report.add(
        "baselines",
        format!("transport bulk {} (1 MiB writes)", super::cos::label(data.len() as u64)),
        Kind::Transfer { bytes: data.len() as u64 },
        samples,
    );
    Ok(())
}

/// The `bench-transport` process: pins itself when asked, echoes each ping, swallows bulk frames
/// into one buffer (as a data pipe's reader does) and answers the ping that follows them.
pub fn run_transport_peer(bootstrap: ChildBootstrap) -> std::process::ExitCode {
    let pipe = bootstrap.endpoint;
    let mut buffer = vec![0u8; DATA_CHUNK_BYTES + 1];
    let mut pinned = None;
    loop {
        match pipe.recv_vectored(&mut [IoSliceMut::new(&mut buffer)]) {
            Ok((2, _)) if buffer[0] == PIN => {
                // Back to the original mask first, so that the new guard restores that one.
                drop(pinned.take());
                pinned = PinnedToCpu::new(usize::from(buffer[1]));
                if pipe.send(&[PIN], Vec::new()).is_err() {
                    return std::process::ExitCode::SUCCESS;
                }
            }
            Ok((1, _)) if buffer[0] == UNPIN => {
                drop(pinned.take());
                if pipe.send(&[UNPIN], Vec::new()).is_err() {
                    return std::process::ExitCode::SUCCESS;
                }
            }
            Ok((len, _)) if len > 0 && buffer[0] == PING => {
                if pipe.send(&buffer[..len.min(8)], Vec::new()).is_err() {
                    return std::process::ExitCode::SUCCESS;
                }
            }
            Ok(_) => {}
            Err(_) => return std::process::ExitCode::SUCCESS,
        }
    }
}
