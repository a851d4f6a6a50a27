//! Shared by the multi-process tests and the cross-process benchmark: the protocol between the
//! driver (the browser) and its renderer processes, the renderer role, and the browser (the
//! shared `BrowserFixture` of cos_test_support, with renderers to launch).
//! Each includer uses part of it.
#![allow(dead_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cos_browser::FrameInfo;
use cos_common::interface::{FrameId, RendererId, ServiceProcessConfig};
use cos_common::{AllowOriginCeiling, Origin, OriginsInput, Site};
use cos_ipc::launch::{LaunchOptions, LaunchedChild};
use cos_ipc::{Attached, Endpoint, Pipe};
use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, RendererConnection, ScriptContext};
pub use cos_test_support::callers::sha256_hex;
pub use cos_test_support::fixture::this_program as program;
use cos_test_support::fixture::{self, BrowserFixture, ChildRole};
use cos_test_support::measure::{PinnedToCpu, anonymous_rss_kib, open_descriptors};
use cos_test_support::rng::XorShift64Star;
use serde::{Deserialize, Serialize};

// ----- the protocol between the test driver and its renderer processes ---------------------------

#[derive(Debug, Serialize, Deserialize)]
pub struct FrameSpec {
    pub frame: u64,
    pub policy_allows: bool,
}

/// File contents, described rather than shipped (a message is at most 160 KiB).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Payload {
    Literal(Vec<u8>),
    /// `len` deterministic pseudo-random bytes.
    Pattern {
        len: usize,
        seed: u64,
    },
}

impl Payload {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Literal(bytes) => bytes.clone(),
            Self::Pattern { len, seed } => cos_test_support::rng::pattern(*seed, *len),
        }
    }

    pub fn hash(&self) -> String {
        sha256_hex(&self.bytes())
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Command {
    /// First message.
    Init {
        /// The renderer's documents.
        frames: Vec<FrameSpec>,
        /// The renderer's COS pipe to its broker.
        cos_pipe: Attached,
    },
    /// create → createWritable → write (in 1 MiB pieces) → close.
    Store { frame: u64, payload: Payload, origins: Option<Vec<String>>, global: bool },
    /// getFileHandle → getFile → read everything; answers the SHA-256 of what was read.
    Read { frame: u64, hash: String },
    /// Store, but stop after `first` bytes and answer; continue on `Finish`.
    StoreInTwoSteps { frame: u64, payload: Payload, first: usize },
    /// Continue a `StoreInTwoSteps`.
    Finish,
    /// Send raw bytes on the COS pipe, as a compromised renderer would.
    RawBytes(Vec<u8>),
    /// Benchmarks: `n` sequential `getFileHandle(hash)` reads, and more until `millis` have
    /// passed; answers their latencies.
    LookupLatency { frame: u64, hash: String, n: u32, millis: u64 },
    /// Benchmarks: `rounds` rounds of one `getFileHandle` read per `(frame, hash)` probe, in
    /// order; answers the latencies round-major. Fails if any lookup is not `NotFoundError`.
    LookupMix { probes: Vec<(u64, String)>, rounds: u32 },
    /// Benchmarks: a store timed from `getFileHandle` to `close()` (bytes generated first).
    TimedStore { frame: u64, payload: Payload },
    /// Benchmarks: `getFileHandle` → `getFile` → read all, timed; fails if the bytes differ.
    TimedRead { frame: u64, hash: String },
    /// Benchmarks: `n` raw round trips on the control pipe (renderer sends `Ping`, the driver
    /// answers `Pong`).
    PingPong { n: u32, cpu: Option<usize> },
    /// The driver's answer to a `Ping`.
    Pong,
    /// Load: a mixed workload for `millis` from a seeded generator — lookups (hits and misses),
    /// small unique writes, writes of the `shared` payloads (the same model on many sites), whole
    /// reads — answered with a [`LoadReport`].
    Workload { frame: u64, millis: u64, seed: u64, shared: Vec<Payload> },
    /// Abuse: without end, open handles (`Handles`), open writers (`Writers`) or write chunks
    /// into one writer (`Chunks`, then into another once refused), until the service refuses;
    /// answers `Err("<error> after <n>")`. With `millis` > 0 it goes on asking past the refusal
    /// for that long and adds `", then refused <r> more times in <millis> ms"`.
    Abuse { frame: u64, kind: Abuse, millis: u64 },
    /// Abuse of bytes in flight: from each of `frames` in turn, `writers` writers each truncated
    /// to `size`, all held open for `hold_millis`; answers `Ok("<held> held, <refused> refused")`
    /// (a refusal surfaces on a writer's next call, made after the hold).
    TruncateAbuse { frames: Vec<u64>, writers: u32, size: u64, hold_millis: u64 },
}

/// What an abusive renderer does without end.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Abuse {
    Handles,
    Writers,
    Chunks,
}

/// The kinds of operation a workload mixes.
pub const LOAD_KINDS: [&str; 4] = ["lookup", "small write", "shared write", "read"];

/// At most this many latency samples per kind travel back (a uniform reservoir), so a report
/// always fits one message.
const LOAD_SAMPLES_PER_KIND: usize = 1500;

/// The most latency samples a timed `LookupLatency` answers with.
const LOOKUP_SAMPLES_KEPT: usize = 10_000;

/// Reservoir sampling: keeps `samples` a uniform sample (at most `capacity`) of the `seen` values
/// so far, `value` being the latest; `random` is a fresh random number.
fn keep_uniformly(samples: &mut Vec<u64>, capacity: usize, seen: u64, value: u64, random: u64) {
    if samples.len() < capacity {
        samples.push(value);
    } else if let Some(slot) = samples.get_mut((random % seen) as usize) {
        *slot = value;
    }
}

/// What a workload did: operations per kind, a reservoir of latencies (ns) per kind, and every
/// outcome that a correct implementation never gives.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadReport {
    pub ops: [u64; 4],
    pub samples: [Vec<u64>; 4],
    pub unexpected: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Outcome {
    /// Success; for reads, the SHA-256 (hex) of the bytes read.
    Ok(Option<String>),
    /// A DOMException (or TypeError) name.
    Err(String),
    /// Benchmark samples in nanoseconds.
    Timings(Vec<u64>),
    /// A raw round trip's outbound half.
    Ping,
    /// A workload's report.
    Load(LoadReport),
}

// ----- renderer process --------------------------------------------------------------------------

pub fn renderer_main(endpoint: Endpoint) -> ExitCode {
    let control: Pipe<Outcome, Command> = Pipe::new(endpoint);
    let Command::Init { frames, cos_pipe } = control.recv().expect("init") else { return ExitCode::FAILURE };
    let cos_pipe = cos_pipe.into_endpoint();
    let raw = cos_pipe.try_clone().expect("clone");
    let connection = RendererConnection::new_pumped(cos_pipe).expect("connection");
    let manager = |frame: u64| {
        let policy_allows = frames.iter().find(|f| f.frame == frame).is_none_or(|f| f.policy_allows);
        let context = ScriptContext {
            frame: FrameId(frame),
            secure_context: true,
            policy_allows,
            service_worker: false,
            opaque_origin: false,
        };
        CrossOriginStorageManager::new(connection.clone(), context).expect("secure context")
    };
    let mut parked = None;
    loop {
        let Ok(command) = control.recv() else { return ExitCode::SUCCESS };
        let outcome = match command {
            Command::Init { .. } => Outcome::Err("double init".into()),
            Command::Store { frame, payload, origins, global } => {
                let bytes = payload.bytes();
                let origins = match (global, origins) {
                    (true, _) => OriginsInput::Single("*".into()),
                    (false, Some(list)) => OriginsInput::Sequence(list),
                    (false, None) => OriginsInput::Absent,
                };
                outcome(connection.run_until(async {
                    let options = CosOptions { create: true, origins };
                    let handle =
                        manager(frame).get_file_handle(&CosHashDict::sha256(sha256_hex(&bytes)), &options).await?;
                    let mut writer = handle.create_writable(false).await?;
                    for piece in bytes.chunks(1 << 20) {
                        writer.write(piece)?;
                    }
                    writer.close()?;
                    Ok(None)
                }))
            }
            Command::Read { frame, hash } => outcome(connection.run_until(async {
                let handle = manager(frame).get_file_handle(&CosHashDict::sha256(hash), &CosOptions::default()).await?;
                let file = handle.get_file().await?;
                file.read_all().map(|bytes| Some(sha256_hex(&bytes)))
            })),
            Command::StoreInTwoSteps { frame, payload, first } => {
                let bytes = payload.bytes();
                let started = connection.run_until(async {
                    let options = CosOptions { create: true, origins: OriginsInput::Absent };
                    let handle =
                        manager(frame).get_file_handle(&CosHashDict::sha256(sha256_hex(&bytes)), &options).await?;
                    let mut writer = handle.create_writable(false).await?;
                    writer.write(&bytes[..first])?;
                    Ok((handle, writer))
                });
                match started {
                    Ok((handle, writer)) => {
                        parked = Some((handle, writer, bytes, first));
                        Outcome::Ok(None)
                    }
                    Err(error) => outcome(Err(error)),
                }
            }
            Command::Finish => match parked.take() {
                None => Outcome::Err("nothing parked".into()),
                Some((_handle, mut writer, bytes, first)) => outcome((|| {
                    writer.write(&bytes[first..])?;
                    writer.close()?;
                    Ok(None)
                })()),
            },
            Command::LookupLatency { frame, hash, n, millis } => {
                let manager = manager(frame);
                let dict = CosHashDict::sha256(hash);
                // A timed run keeps a uniform sample of at most this many (one message must hold them).
                let capacity = (n as usize).max(LOOKUP_SAMPLES_KEPT);
                let mut samples = Vec::with_capacity(n as usize);
                let until = Instant::now() + Duration::from_millis(millis);
                let (mut seen, mut rng) = (0u64, XorShift64Star::new(0));
                while seen < u64::from(n) || Instant::now() < until {
                    let start = Instant::now();
                    let _ = connection.run_until(manager.get_file_handle(&dict, &CosOptions::default()));
                    seen += 1;
                    keep_uniformly(&mut samples, capacity, seen, start.elapsed().as_nanos() as u64, rng.next_u64());
                }
                Outcome::Timings(samples)
            }
            Command::LookupMix { probes, rounds } => {
                let managers: Vec<_> =
                    probes.iter().map(|(frame, hash)| (manager(*frame), CosHashDict::sha256(hash.clone()))).collect();
                let mut samples = vec![0u64; probes.len() * rounds as usize];
                let mut unexpected = None;
                // Each round visits the probes in a fresh random order, so that no probe always
                // follows the same one (position effects would bias the comparison).
                let mut order: Vec<usize> = (0..managers.len()).collect();
                let mut rng = XorShift64Star::new(rounds.into());
                for round in 0..rounds as usize {
                    for i in (1..order.len()).rev() {
                        order.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    for &index in &order {
                        let (manager, dict) = &managers[index];
                        let start = Instant::now();
                        let result = connection.run_until(manager.get_file_handle(dict, &CosOptions::default()));
                        samples[round * managers.len() + index] = start.elapsed().as_nanos() as u64;
                        match result {
                            Err(cos_common::CosError::NotFound) => {}
                            Err(error) => unexpected = Some(error.name().to_owned()),
                            Ok(_) => unexpected = Some(format!("lookup {index} succeeded")),
                        }
                    }
                }
                match unexpected {
                    None => Outcome::Timings(samples),
                    Some(what) => Outcome::Err(what),
                }
            }
            Command::TimedStore { frame, payload } => {
                let bytes = payload.bytes();
                let hash = sha256_hex(&bytes);
                let manager = manager(frame);
                let start = Instant::now();
                match store_bytes(&connection, &manager, &bytes, &hash) {
                    Ok(()) => Outcome::Timings(vec![start.elapsed().as_nanos() as u64]),
                    Err(error) => Outcome::Err(error.name().into()),
                }
            }
            Command::TimedRead { frame, hash } => {
                let manager = manager(frame);
                let start = Instant::now();
                let result = connection.run_until(async {
                    let handle =
                        manager.get_file_handle(&CosHashDict::sha256(hash.clone()), &CosOptions::default()).await?;
                    handle.get_file().await?.read_all()
                });
                let elapsed = start.elapsed().as_nanos() as u64;
                match result {
                    Ok(bytes) if sha256_hex(&bytes) == hash => Outcome::Timings(vec![elapsed]),
                    Ok(_) => Outcome::Err("wrong bytes".into()),
                    Err(error) => Outcome::Err(error.name().into()),
                }
            }
            Command::PingPong { n, cpu } => {
                // Unpinned again when the round's samples are sent.
                let pinned = cpu.and_then(PinnedToCpu::new);
                let mut samples = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let start = Instant::now();
                    if control.send(Outcome::Ping).is_err() {
                        return ExitCode::SUCCESS;
                    }
                    match control.recv() {
                        Ok(Command::Pong) => samples.push(start.elapsed().as_nanos() as u64),
                        _ => return ExitCode::FAILURE,
                    }
                }
                drop(pinned);
                Outcome::Timings(samples)
            }
            Command::Pong => Outcome::Err("unexpected pong".into()),
            Command::Abuse { frame, kind, millis } => abuse(&connection, &manager(frame), kind, millis),
            Command::TruncateAbuse { frames, writers, size, hold_millis } => {
                let mut held = Vec::new();
                for (i, &frame) in frames.iter().enumerate() {
                    for n in 0..writers {
                        let target = CosHashDict::sha256(sha256_hex(format!("truncated {i} {n}").as_bytes()));
                        let options = CosOptions { create: true, origins: OriginsInput::Absent };
                        let opened = connection.run_until(async {
                            let handle = manager(frame).get_file_handle(&target, &options).await?;
                            let writer = handle.create_writable(false).await?;
                            Ok::<_, cos_common::CosError>((handle, writer))
                        });
                        if let Ok((handle, mut writer)) = opened {
                            let _ = writer.truncate(size);
                            held.push((handle, writer));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(hold_millis));
                let refused = held.iter_mut().map(|(_, writer)| writer.write(&[]).is_err()).filter(|&e| e).count();
                Outcome::Ok(Some(format!("{} held, {refused} refused", held.len() - refused)))
            }
            Command::Workload { frame, millis, seed, shared } => {
                Outcome::Load(workload(&connection, &manager(frame), millis, seed, &shared))
            }
            Command::RawBytes(bytes) => match raw.send(&bytes, Vec::new()) {
                Ok(()) => Outcome::Ok(None),
                Err(error) => Outcome::Err(error.to_string()),
            },
        };
        if control.send(outcome).is_err() {
            return ExitCode::SUCCESS;
        }
    }
}

/// create → createWritable → write in 1 MiB pieces → close, as clients store a file.
fn store_bytes(
    connection: &RendererConnection,
    manager: &CrossOriginStorageManager,
    bytes: &[u8],
    hash: &str,
) -> Result<(), cos_common::CosError> {
    connection.run_until(async {
        let options = CosOptions { create: true, origins: OriginsInput::Absent };
        let handle = manager.get_file_handle(&CosHashDict::sha256(hash), &options).await?;
        // A create handle revoked by a clear before its writer opened answers as every revoked
        // handle does (`NotFoundError`; a create never misses otherwise): for the workload that
        // is the clear's doing, like a writer the clear aborts.
        let mut writer = handle.create_writable(false).await.map_err(|error| match error {
            cos_common::CosError::NotFound => cos_common::CosError::Abort,
            other => other,
        })?;
        for piece in bytes.chunks(1 << 20) {
            writer.write(piece)?;
        }
        writer.close().map(drop)
    })
}

/// The renderer side of [`Command::Abuse`]: abuse until the first refusal (or after far more than
/// any limit allows, which is itself a failure), then go on asking past the limit for `millis`
/// as a hostile page would.
fn abuse(connection: &RendererConnection, manager: &CrossOriginStorageManager, kind: Abuse, millis: u64) -> Outcome {
    use cos_common::CosError;
    const FAR_TOO_MANY: u64 = 1 << 20;
    let dict = CosHashDict::sha256(sha256_hex(b"abuse"));
    let create = CosOptions { create: true, origins: OriginsInput::Absent };
    let open = || connection.run_until(manager.get_file_handle(&dict, &create));
    // The handle writers come from (the `Handles` abuse counts every handle it holds).
    let handle = match kind {
        Abuse::Handles => None,
        Abuse::Writers | Abuse::Chunks => match open() {
            Ok(handle) => Some(handle),
            Err(error) => return Outcome::Err(format!("{} after 0", error.name())),
        },
    };
    let writable = || connection.run_until(handle.as_ref().expect("opened above").create_writable(false));
    let chunk = vec![0x5a; 1 << 20];
    // One step of the abuse: Ok while the service goes along, the error once it refuses.
    let mut handles = Vec::new();
    let mut writers = Vec::new();
    let mut chunk_writer = None;
    let mut step = || -> Result<(), CosError> {
        match kind {
            Abuse::Handles => handles.push(open()?),
            Abuse::Writers => writers.push(writable()?),
            Abuse::Chunks => {
                if chunk_writer.is_none() {
                    chunk_writer = Some(writable()?);
                }
                let written = chunk_writer.as_mut().map_or(Ok(()), |writer| writer.write(&chunk));
                if written.is_err() {
                    // A refused writer is spent: the next step starts another one.
                    chunk_writer = None;
                }
                written?;
            }
        }
        Ok(())
    };
    let mut first = None;
    for n in 0..FAR_TOO_MANY {
        if let Err(error) = step() {
            first = Some((error, n));
            break;
        }
    }
    let Some((error, n)) = first else { return Outcome::Err(format!("never refused after {FAR_TOO_MANY}")) };
    // Timed from the refusal, so a slow ramp to the limit does not eat the time past it.
    let deadline = Instant::now() + Duration::from_millis(millis);
    let mut more = 0u64;
    while Instant::now() < deadline {
        more += u64::from(step().is_err());
    }
    if millis == 0 {
        Outcome::Err(format!("{} after {n}", error.name()))
    } else {
        Outcome::Err(format!("{} after {n}, then refused {more} more times in {millis} ms", error.name()))
    }
}

/// The renderer side of [`Command::Workload`].
fn workload(
    connection: &RendererConnection,
    manager: &CrossOriginStorageManager,
    millis: u64,
    seed: u64,
    shared: &[Payload],
) -> LoadReport {
    use cos_common::CosError;
    let mut rng = XorShift64Star::new(seed);
    let mut next = move || rng.next_u64();
    let shared: Vec<(Vec<u8>, String)> = shared
        .iter()
        .map(|payload| {
            let bytes = payload.bytes();
            let hash = sha256_hex(&bytes);
            (bytes, hash)
        })
        .collect();
    let store = |bytes: &[u8], hash: &str| store_bytes(connection, manager, bytes, hash);
    let mut report = LoadReport::default();
    // What this renderer stored (hash), to look up and read back.
    let mut stored: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(millis);
    while Instant::now() < deadline {
        let roll = next() % 100;
        let start = Instant::now();
        let (kind, problem) = if roll < 40 {
            let hash = match stored.len() {
                n if n > 0 && next() % 2 == 0 => stored[(next() % n as u64) as usize].clone(),
                _ => sha256_hex(&next().to_le_bytes()),
            };
            let found =
                connection.run_until(manager.get_file_handle(&CosHashDict::sha256(hash), &CosOptions::default()));
            (
                0,
                match found {
                    Ok(_) | Err(CosError::NotFound) => None,
                    Err(error) => Some(format!("lookup: {}", error.name())),
                },
            )
        } else if roll < 70 {
            let len = 4096 + (next() % (252 * 1024)) as usize;
            let bytes = Payload::Pattern { len, seed: next() }.bytes();
            let hash = sha256_hex(&bytes);
            let result = store(&bytes, &hash);
            if result.is_ok() {
                stored.push(hash);
            }
            (1, result.err().and_then(|error| write_problem("small write", &error)))
        } else if roll < 74 {
            let (bytes, hash) = &shared[(next() % shared.len() as u64) as usize];
            let result = store(bytes, hash);
            if result.is_ok() {
                stored.push(hash.clone());
            }
            (2, result.err().and_then(|error| write_problem("shared write", &error)))
        } else {
            let Some(hash) = (!stored.is_empty()).then(|| stored[(next() % stored.len() as u64) as usize].clone())
            else {
                continue;
            };
            let read = connection.run_until(async {
                let handle =
                    manager.get_file_handle(&CosHashDict::sha256(hash.clone()), &CosOptions::default()).await?;
                handle.get_file().await?.read_all()
            });
            (
                3,
                match read {
                    Ok(bytes) if sha256_hex(&bytes) == hash => None,
                    Ok(_) => Some("read: wrong bytes".to_owned()),
                    // The browser clears site data during the run: a stored entry may be gone.
                    Err(CosError::NotFound) => None,
                    Err(error) => Some(format!("read: {}", error.name())),
                },
            )
        };
        let elapsed = start.elapsed().as_nanos() as u64;
        report.ops[kind] += 1;
        keep_uniformly(&mut report.samples[kind], LOAD_SAMPLES_PER_KIND, report.ops[kind], elapsed, next());
        if let Some(problem) = problem
            && report.unexpected.len() < 20
        {
            report.unexpected.push(problem);
        }
    }
    report
}

/// A failed store of the workload, unless it is one the run provokes: the browser clears this
/// site's data during the run, which revokes its handles, so a write in flight across the clear
/// cannot commit (`AbortError`; see [`store_bytes`] for a handle revoked before its writer
/// opened).
fn write_problem(kind: &str, error: &cos_common::CosError) -> Option<String> {
    (*error != cos_common::CosError::Abort).then(|| format!("{kind}: {}", error.name()))
}

pub fn outcome(result: Result<Option<String>, cos_common::CosError>) -> Outcome {
    match result {
        Ok(bytes) => Outcome::Ok(bytes),
        Err(error) => Outcome::Err(error.name().to_owned()),
    }
}

// ----- the browser side (test driver) ------------------------------------------------------------

pub struct Renderer {
    pub child: LaunchedChild,
    pub control: Pipe<Command, Outcome>,
    pub terminated: Arc<AtomicBool>,
}

impl Renderer {
    pub fn ask(&self, command: Command) -> Outcome {
        self.control.send(command).expect("renderer alive");
        self.control.recv_timeout(Duration::from_secs(300)).expect("renderer answers")
    }

    /// Runs a `PingPong` round: answers every `Ping` with `Pong` until the samples arrive. With
    /// `cpus = Some((ours, theirs))` both threads are pinned for the round.
    pub fn ping_pong(&self, n: u32, cpus: Option<(usize, usize)>) -> Vec<u64> {
        let pinned = cpus.and_then(|(ours, _)| PinnedToCpu::new(ours));
        self.control.send(Command::PingPong { n, cpu: cpus.map(|(_, theirs)| theirs) }).expect("renderer alive");
        let samples = loop {
            match self.control.recv().expect("renderer answers") {
                Outcome::Ping => self.control.send(Command::Pong).expect("renderer alive"),
                Outcome::Timings(samples) => break samples,
                other => panic!("unexpected {other:?}"),
            }
        };
        drop(pinned);
        samples
    }

    /// Asks for benchmark samples.
    pub fn timings(&self, command: Command) -> Vec<u64> {
        match self.ask(command) {
            Outcome::Timings(samples) => samples,
            other => panic!("benchmark step failed: {other:?}"),
        }
    }

    pub fn store(&self, frame: u64, payload: &Payload) -> Outcome {
        self.ask(Command::Store { frame, payload: payload.clone(), origins: None, global: false })
    }

    pub fn read(&self, frame: u64, payload: &Payload) -> Outcome {
        self.ask(Command::Read { frame, hash: payload.hash() })
    }

    /// Waits (bounded) for the process to exit; true if it did.
    pub fn wait_for_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// The multi-process tests' browser: a [`BrowserFixture`] whose storage service is this binary
/// re-executed (sandboxed unless `COS_TEST_NO_SANDBOX` is set, GREASE off), plus the renderer
/// processes this module drives. Derefs to the fixture (`host`, `profile`).
pub struct Browser(BrowserFixture);

impl std::ops::Deref for Browser {
    type Target = BrowserFixture;

    fn deref(&self) -> &BrowserFixture {
        &self.0
    }
}

impl Browser {
    /// The fixture's configuration: 1 GiB per origin, 4 GiB in all.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// The fixture's configuration with other limits.
    pub fn start_with_limits(per_origin_bytes: u64, total_bytes: u64) -> Self {
        Self::start_with(|config| {
            config.per_origin_bytes = per_origin_bytes;
            config.total_bytes = total_bytes;
        })
    }

    /// Starts with the fixture's configuration adjusted by `adjust`.
    pub fn start_with(adjust: impl FnOnce(&mut ServiceProcessConfig)) -> Self {
        Self(BrowserFixture::start_process(adjust))
    }

    /// Launches a renderer hosting `frames` (frame id, frame URL, top-level URL, ceiling header).
    pub fn renderer(&self, id: u64, frames: &[(u64, &str, &str, Option<&str>)]) -> Renderer {
        let mut options = LaunchOptions::new("renderer");
        options.program = program();
        let mut child = cos_ipc::launch::launch(&options).expect("renderer launches");
        let control = Pipe::new(child.take_endpoint());
        let (browser_end, renderer_end) = Endpoint::pair().expect("socketpair");
        for &(frame, url, top, ceiling) in frames {
            let origin = Origin::from_url(url).unwrap();
            let mut info = FrameInfo::top_level(RendererId(id), origin);
            info.top_level_site = Some(Site::of(&Origin::from_url(top).unwrap()));
            info.allow_origin_ceiling = AllowOriginCeiling::from_header(ceiling);
            info.url = Some(url.to_owned());
            self.host.frames().insert(FrameId(frame), info);
        }
        let terminated = Arc::new(AtomicBool::new(false));
        let pid = child.pid();
        let flag = terminated.clone();
        self.host.register_renderer(RendererId(id), browser_end, move || {
            flag.store(true, Ordering::SeqCst);
            // SAFETY: kill(2) on the pid of a child this test launched; no memory is involved.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        });
        let specs = frames.iter().map(|&(frame, ..)| FrameSpec { frame, policy_allows: true }).collect();
        control.send(Command::Init { frames: specs, cos_pipe: renderer_end.into() }).expect("init renderer");
        Renderer { child, control, terminated }
    }
}

/// A read that returned exactly `payload`.
pub fn ok(payload: &Payload) -> Outcome {
    Outcome::Ok(Some(payload.hash()))
}

pub fn literal(bytes: &[u8]) -> Payload {
    Payload::Literal(bytes.to_vec())
}

pub fn err(name: &str) -> Outcome {
    Outcome::Err(name.into())
}

/// The roles this binary plays when re-executed, besides the storage service.
const ROLES: &[ChildRole] = &[("renderer", renderer_main)];

/// `main` of a test binary holding one test (see [`fixture::run_single_test`]).
pub fn run_single_test(name: &str, test: fn()) -> ExitCode {
    fixture::run_single_test(name, test, ROLES)
}

/// If this process was launched as a child (`--type=...`), plays that role and returns its exit
/// code; `None` in the driver.
pub fn run_child_role() -> Option<ExitCode> {
    fixture::run_child_role(ROLES)
}

// ----- load ----------------------------------------------------------------------------------------

/// A load run's figures.
#[derive(Debug)]
pub struct LoadSummary {
    pub renderers: usize,
    pub seconds: f64,
    pub ops: [u64; 4],
    /// Every renderer's reservoir, merged and sorted (ns).
    pub samples: [Vec<u64>; 4],
    pub unexpected: Vec<String>,
    pub clears: u64,
    /// The service's anonymous resident memory (KiB, see [`anonymous_rss_kib`]) and open descriptors
    /// at the end of the load, and once every renderer was gone.
    pub rss_kib: (u64, u64, u64),
    pub descriptors: (usize, usize, usize),
}

impl LoadSummary {
    /// The `p`th quantile (`0.0..=1.0`) of `kind`'s latencies, in ms.
    pub fn percentile(&self, kind: usize, p: f64) -> Option<f64> {
        cos_test_support::measure::quantile(&self.samples[kind], p).map(|ns| ns as f64 / 1e6)
    }

    pub fn print(&self) {
        let total: u64 = self.ops.iter().sum();
        println!(
            "load: {} renderer processes for {:.1} s, {} clear-site-data: {total} operations, {:.0} ops/s",
            self.renderers,
            self.seconds,
            self.clears,
            total as f64 / self.seconds
        );
        for (kind, name) in LOAD_KINDS.iter().enumerate() {
            let (p50, p99) = (self.percentile(kind, 0.5), self.percentile(kind, 0.99));
            let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
            println!("  {name:<13} {:>7} ops   p50 {:>10}   p99 {:>10}", self.ops[kind], show(p50), show(p99));
        }
        println!(
            "  service anonymous RSS {:.1} MiB before, {:.1} MiB under load, {:.1} MiB after; descriptors {} / {} / {}",
            self.rss_kib.0 as f64 / 1024.0,
            self.rss_kib.1 as f64 / 1024.0,
            self.rss_kib.2 as f64 / 1024.0,
            self.descriptors.0,
            self.descriptors.1,
            self.descriptors.2
        );
        println!(
            "  unexpected outcomes: {}",
            if self.unexpected.is_empty() { "none".into() } else { self.unexpected.join(", ") }
        );
    }
}

/// Swap files in the store (writers in flight, or left by a crash until recovery).
pub fn swap_files(browser: &Browser) -> usize {
    browser.0.swap_files()
}

/// Runs `renderers` renderer processes (each its own site) through a mixed workload for
/// `millis`, while the browser clears a random site's data every `clear_every_ms`; then waits
/// (bounded) for the service to release every renderer's descriptors.
pub fn run_load(browser: &Browser, renderers: usize, millis: u64, seed: u64, clear_every_ms: u64) -> LoadSummary {
    let pid = browser.host.service_pid().expect("the service runs in a process");
    let before = (anonymous_rss_kib(pid), open_descriptors(pid));
    // The same three "models" on every site, as real clients share them.
    let shared: Vec<Payload> = [(50 << 20, 1), (12 << 20, 2), (3 << 20, 3)]
        .iter()
        .map(|&(len, seed)| Payload::Pattern { len, seed })
        .collect();
    let mut started: Vec<Renderer> = (0..renderers)
        .map(|i| {
            let url = format!("https://site{i}.example");
            browser.renderer(100 + i as u64, &[(1000 + i as u64, &url, &url, None)])
        })
        .collect();
    let start = Instant::now();
    for (i, renderer) in started.iter().enumerate() {
        let command = Command::Workload {
            frame: 1000 + i as u64,
            millis,
            seed: seed ^ ((i as u64 + 1) * 0x9e37),
            shared: shared.clone(),
        };
        renderer.control.send(command).expect("renderer alive");
    }
    let mut clears = 0;
    let mut rng = XorShift64Star::new(seed);
    let mut under_load = (0, 0);
    while start.elapsed() < Duration::from_millis(millis) {
        std::thread::sleep(Duration::from_millis(clear_every_ms));
        let site = format!("https://site{}.example", rng.below(renderers as u64));
        browser
            .host
            .clear_site_data(cos_common::Partition::Regular, &Origin::from_url(&site).unwrap())
            .expect("clear site data");
        clears += 1;
        under_load = (anonymous_rss_kib(pid).max(under_load.0), open_descriptors(pid).max(under_load.1));
    }
    let mut summary = LoadSummary {
        renderers,
        seconds: 0.0,
        ops: [0; 4],
        samples: Default::default(),
        unexpected: Vec::new(),
        clears,
        rss_kib: (before.0, under_load.0, 0),
        descriptors: (before.1, under_load.1, 0),
    };
    for renderer in &started {
        match renderer.control.recv_timeout(Duration::from_secs(600)).expect("renderer answers") {
            Outcome::Load(report) => {
                for kind in 0..4 {
                    summary.ops[kind] += report.ops[kind];
                    summary.samples[kind].extend(report.samples[kind].iter().copied());
                }
                summary.unexpected.extend(report.unexpected);
            }
            other => summary.unexpected.push(format!("workload answered {other:?}")),
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    for samples in &mut summary.samples {
        samples.sort_unstable();
    }
    // Each renderer exits when its control pipe closes.
    for renderer in started.drain(..) {
        let Renderer { mut child, control, .. } = renderer;
        drop(control);
        let _ = child.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_descriptors(pid) != before.1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    summary.rss_kib.2 = anonymous_rss_kib(pid);
    summary.descriptors.2 = open_descriptors(pid);
    summary
}
