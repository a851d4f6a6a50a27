//! Crash consistency: the sandboxed storage service is killed with SIGKILL at many points while
//! three renderer processes write and read concurrently (half of the rounds, all three store the
//! same payload at once, so their writes share one swap file); after every restart the store must
//! be whole again.
//!
//! After each recovery: every entry reads back bytes that hash to its name; every entry is one a
//! renderer tried to store (nothing else ever becomes visible), and every store that was answered
//! `Ok` before the kill is there; the registry and the blob files agree, entry for entry and size
//! for size; no swap file survives; listed grants of committed entries still let the listed origin
//! read. At the end, a probe budget spent before the first kill is still spent.
//!
//! The operations and the delays before each kill come from a seeded generator, so a run is
//! reproducible up to scheduling. `COS_CRASH_KILL_POINTS` (default 12, as CI runs it) and
//! `COS_CRASH_SEED` change them; the full run is
//! `COS_CRASH_KILL_POINTS=60 cargo test -p cos_browser --test crash_consistency`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cos_common::Partition;
use cos_common::interface::FrameId;

mod support;
use cos_test_support::rng::XorShift64Star;
use support::{Browser, Command, Outcome, Payload, Renderer, err, ok, sha256_hex, swap_files};

const A_FRAME: u64 = 10;
const B_FRAME: u64 = 20;
const C_FRAME: u64 = 30;
const D_FRAME: u64 = 40;

/// What the renderers may store: sizes from one data chunk to several MiB.
fn payloads() -> Vec<Payload> {
    [1_000, 40_000, 300_000, 1_500_000, 3_000_000, 700, 90_000, 2_200_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| Payload::Pattern { len, seed: 1000 + i as u64 })
        .collect()
}

/// One renderer's operation in a round.
#[derive(Debug, Clone)]
enum Op {
    /// Store payload `i` (A lists b.example on it).
    Store(usize),
    /// Read payload `i`.
    Read(usize),
}

fn command(renderer: usize, op: &Op, payloads: &[Payload]) -> Command {
    let frame = [A_FRAME, B_FRAME, C_FRAME][renderer];
    match *op {
        Op::Store(i) => Command::Store {
            frame,
            payload: payloads[i].clone(),
            origins: (renderer == 0).then(|| vec!["https://b.example".to_owned()]),
            global: false,
        },
        Op::Read(i) => Command::Read { frame, hash: payloads[i].hash() },
    }
}

/// Blob files on disk: hash → size.
fn blob_files(browser: &Browser) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    let blobs = browser.profile.path().join("cos/blobs");
    for shard in std::fs::read_dir(&blobs).into_iter().flatten() {
        for file in std::fs::read_dir(shard.unwrap().path()).into_iter().flatten() {
            let file = file.unwrap();
            files.insert(file.file_name().to_string_lossy().into_owned(), file.metadata().unwrap().len());
        }
    }
    files
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn crash_consistency() {
    let kill_points = env_or("COS_CRASH_KILL_POINTS", 12);
    let seed = env_or("COS_CRASH_SEED", 0x5eed_cafe);
    println!("crash consistency: {kill_points} kill points, seed {seed:#x}");
    let payloads = payloads();
    // The global entry C may not see once its budget is spent: on the Public Hash List.
    let global = Payload::Pattern { len: 5_000, seed: 77 };
    let list_dir = tempfile::tempdir().unwrap();
    let list = list_dir.path().join("public-hash-list.txt");
    std::fs::write(&list, format!("{}\n", global.hash())).unwrap();
    let browser = Browser::start_with(|config| {
        config.public_hash_list_path = Some(list.to_string_lossy().into_owned());
        config.probe_budget = 3;
    });
    let renderers: Vec<Renderer> = vec![
        browser.renderer(1, &[(A_FRAME, "https://a.example", "https://a.example", Some("https://b.example"))]),
        browser.renderer(2, &[(B_FRAME, "https://b.example", "https://b.example", None)]),
        browser.renderer(3, &[(C_FRAME, "https://c.example", "https://c.example", None)]),
    ];
    let d = browser.renderer(4, &[(D_FRAME, "https://d.example", "https://d.example", None)]);

    // Before any kill: A stores the global entry, C spends its whole probe budget (3 distinct
    // hashes through the global path), so C cannot see it.
    // A's page had a user activation, so its '*' and list writes are recorded (SPEC §5).
    browser.host.notify_user_activation(FrameId(A_FRAME));
    let stored =
        renderers[0].ask(Command::Store { frame: A_FRAME, payload: global.clone(), origins: None, global: true });
    assert_eq!(stored, Outcome::Ok(None));
    for payload in &payloads[..3] {
        assert_eq!(renderers[2].read(C_FRAME, payload), err("NotFoundError"));
    }
    assert_eq!(renderers[2].read(C_FRAME, &global), err("NotFoundError"), "C's budget is spent");

    let mut rng = XorShift64Star::new(seed);
    let mut attempted: BTreeSet<String> = [global.hash()].into();
    // Stores answered Ok, by renderer index: they must survive every later kill.
    let mut committed: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    committed.insert(global.hash(), (0, usize::MAX));
    let started = Instant::now();
    let (mut stores_ok, mut aborted) = (0, 0);
    for point in 0..kill_points {
        let ops: Vec<Op> = if rng.below(2) == 0 {
            // All three store the same payload at once: their writes share one swap file, so the
            // kill lands while they compare, append, seal and install it.
            vec![Op::Store(rng.below(payloads.len() as u64) as usize); 3]
        } else {
            (0..3)
                .map(|_| {
                    let i = rng.below(payloads.len() as u64) as usize;
                    if rng.below(3) == 0 { Op::Read(i) } else { Op::Store(i) }
                })
                .collect()
        };
        for (r, op) in ops.iter().enumerate() {
            if let Op::Store(i) = op {
                attempted.insert(payloads[*i].hash());
            }
            renderers[r].control.send(command(r, op, &payloads)).expect("renderer alive");
        }
        let delay = Duration::from_micros(rng.below(40_000));
        std::thread::sleep(delay);
        let generation = browser.host.service_generation();
        let pid = browser.host.service_pid().expect("the service runs");
        // SAFETY: kill(2) on the storage service's pid, a child of this process.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
        for (r, op) in ops.iter().enumerate() {
            let outcome = renderers[r].control.recv_timeout(Duration::from_secs(120)).expect("renderer answers");
            match (op, outcome) {
                (Op::Store(i), Outcome::Ok(None)) => {
                    stores_ok += 1;
                    committed.insert(payloads[*i].hash(), (r, *i));
                }
                (Op::Read(i), Outcome::Ok(Some(hash))) => assert_eq!(hash, payloads[*i].hash(), "a read's bytes"),
                (_, Outcome::Err(name)) if name == "AbortError" => aborted += 1,
                (Op::Read(_), Outcome::Err(name)) if name == "NotFoundError" => {}
                (op, other) => panic!("kill point {point}: {op:?} answered {other:?}"),
            }
        }
        assert!(
            browser.host.wait_for_generation(generation + 1, Duration::from_secs(60)),
            "kill point {point}: the service came back"
        );
        check_store(&browser, &renderers, &d, &payloads, &attempted, &committed, point);
    }
    // Budgets of committed state survive kills: C still cannot see the global entry; D, a fresh
    // site, can.
    assert_eq!(renderers[2].read(C_FRAME, &global), err("NotFoundError"), "C's spent budget survived");
    assert_eq!(d.read(D_FRAME, &global), ok(&global));
    println!(
        "crash consistency: {kill_points} kills survived in {:.1} s: {stores_ok} stores answered Ok, {aborted} \
         operations aborted by a kill, {} entries committed",
        started.elapsed().as_secs_f64(),
        committed.len()
    );
}

/// The checks after one recovery.
fn check_store(
    browser: &Browser,
    renderers: &[Renderer],
    d: &Renderer,
    payloads: &[Payload],
    attempted: &BTreeSet<String>,
    committed: &BTreeMap<String, (usize, usize)>,
    point: u64,
) {
    assert_eq!(swap_files(browser), 0, "kill point {point}: no swap file survives recovery");
    let (entries, _origins) = browser.host.inspect(Partition::Regular).expect("inspection");
    let registry: BTreeMap<String, u64> = entries.iter().map(|e| (e.hash.to_hex(), e.size)).collect();
    assert_eq!(registry, blob_files(browser), "kill point {point}: the registry and the blob files agree");
    for hash in registry.keys() {
        assert!(attempted.contains(hash), "kill point {point}: {hash} is visible but nobody stored it");
    }
    for (hash, &(renderer, index)) in committed {
        assert!(registry.contains_key(hash), "kill point {point}: a store answered Ok before the kill is gone");
        if index == usize::MAX {
            continue; // the global entry; checked at the end
        }
        let payload = &payloads[index];
        let frame = [A_FRAME, B_FRAME, C_FRAME][renderer];
        assert_eq!(renderers[renderer].read(frame, payload), ok(payload), "kill point {point}: re-hashes");
        if renderer == 0 {
            // A listed b.example (admitted by A's header): B still reads it.
            assert_eq!(renderers[1].read(B_FRAME, payload), ok(payload), "kill point {point}: the list grant");
        }
    }
    // Entries visible although their store was interrupted still hold exactly their bytes.
    for entry in &entries {
        if let Some(payload) = payloads.iter().find(|p| p.hash() == entry.hash.to_hex()) {
            let reader = entry.storing_origins.iter().next().expect("a storing origin").to_string();
            let (r, frame) = match reader.as_str() {
                "https://a.example" => (&renderers[0], A_FRAME),
                "https://b.example" => (&renderers[1], B_FRAME),
                "https://c.example" => (&renderers[2], C_FRAME),
                _ => (d, D_FRAME),
            };
            let read = r.read(frame, payload);
            assert_eq!(read, Outcome::Ok(Some(sha256_hex(&payload.bytes()))), "kill point {point}: re-hashes");
        }
    }
}

fn main() -> ExitCode {
    support::run_single_test("crash_consistency", crash_consistency)
}
