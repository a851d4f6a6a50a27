//! `renderer_actions`: a compromised renderer drives the real broker stub and storage service (in
//! this process, over the in-process transport) with a sequence of actions built by
//! [`arbitrary`]: requests for its own and other renderers' frame ids, hashes of any shape, writes,
//! seeks, truncates, closes, aborts, reads, raw bytes on every pipe it holds, handles used from
//! documents of other origins and partitions, disconnects, user activations, floods, and restarts
//! of the storage service. Beside it, an honest renderer calls the web-facing API
//! (`cos_renderer`) with hash and `origins` strings of any shape, and the browser clears site
//! data.
//!
//! After every step the invariants hold, or the step panics:
//! - a foreign or unknown frame id, an undecodable message or any other protocol violation ends in
//!   a bad-message report naming the renderer, its pipe closing, and nothing else (no reply to the
//!   offending request, no commit from the offending writer); a well-formed action never does;
//! - nothing is ever readable without a verified write, and what is read is exactly the bytes
//!   whose SHA-256 was asked for;
//! - no read handle is ever granted outside the SPEC §5 grants (checked against an upper-bound
//!   model: storing and same-site origins, the origins list, the global flag for hashes on the
//!   Public Hash List; the gates may only narrow it);
//! - a create handle reads only after its own write verified (SPEC §4);
//! - no handle survives a restart of the service: a handle id is never issued twice to the same
//!   renderer, and every id issued before a restart answers `AbortError` from then on; a handle
//!   serves only documents of the origin and partition that opened it (any other document of the
//!   renderer using it is a bad message), and an id the renderer does not hold is a bad message;
//! - the per-renderer bounds hold: data pipes ([`MAX_DATA_PIPES_PER_RENDERER`]) and requests in
//!   flight ([`MAX_IN_FLIGHT_PER_RENDERER`]);
//! - at the end, the service still answers and the honest renderer can still store and read.

use std::sync::LazyLock;
use std::time::Duration;

use cos_browser::{FrameInfo, FrameOrigin};
use cos_common::interface::{DATA_CHUNK_BYTES, RendererId};
use cos_common::{AllowOriginCeiling, ContentHash, OffTheRecordProfileId, Origin, Partition};
use cos_test_support::callers;

use driver::World;
use input::Action;
// Named in the invariants above.
#[cfg(doc)]
use {cos_browser::MAX_IN_FLIGHT_PER_RENDERER, cos_storage_service::process::MAX_DATA_PIPES_PER_RENDERER};

mod attacker;
mod driver;
mod honest;
mod input;
mod model;

/// How long a step may wait for an answer before the service counts as hung (a finding).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest action sequence one input runs.
const MAX_ACTIONS: usize = 48;

/// The contents anyone can store: empty, tiny, one chunk, and more than one data-pipe chunk.
/// Their bytes are part of the committed corpus: inputs the fuzzer kept name these contents'
/// SHA-256 digests as raw hashes, so the bytes must stay exactly these (not the shared
/// `cos_test_support` pattern, whose stream differs).
static CONTENTS: LazyLock<[Vec<u8>; 4]> = LazyLock::new(|| {
    let pattern = |len: usize, seed: u8| (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    [Vec::new(), b"cos!".to_vec(), pattern(1000, 7), pattern(DATA_CHUNK_BYTES + 4096, 11)]
});

static HASHES: LazyLock<[ContentHash; 4]> = LazyLock::new(|| std::array::from_fn(|c| callers::hash_of(&CONTENTS[c])));

/// What flooded lookups ask for: bytes nobody stores.
const FLOOD_HASH: ContentHash = ContentHash::from_bytes([0xf1; 32]);

/// Which contents the Public Hash List names (only these may be disclosed by the global grant).
const ON_PHL: [bool; 4] = [false, true, false, true];

/// Origins the `origins` lists and clear-site-data pick from.
const ORIGIN_POOL: [&str; 5] =
    ["https://a.example", "https://www.a.example", "https://b.example", "https://c.example", "http://a.example"];

fn pool_origin(i: u8) -> Origin {
    callers::origin(ORIGIN_POOL[usize::from(i) % ORIGIN_POOL.len()])
}

/// The attacker renderer's documents (one set per incarnation of the process).
const ATTACKER_SLOTS: u64 = 5;
/// Slot 0: `https://a.example`, top level, with a `Cross-Origin-Storage-Allow-Origin` header.
const SLOT_TOP: u64 = 0;
/// Slot 2: Permissions Policy blocks COS.
const SLOT_BLOCKED: u64 = 2;
/// Slot 3: `https://a.example` in an off-the-record profile.
const SLOT_OFF_THE_RECORD: u64 = 3;
/// Slot 4: an opaque origin.
const SLOT_OPAQUE: u64 = 4;

const OFF_THE_RECORD: Partition = Partition::OffTheRecord(OffTheRecordProfileId(7));
const HONEST_RENDERER: RendererId = RendererId(2);
/// The honest renderer's documents: `https://c.example` and `https://b.example`, both top level.
const HONEST_FRAMES: [(u64, &str); 2] = [(1, "https://c.example"), (2, "https://b.example")];

fn attacker_frame_info(renderer: RendererId, slot: u64) -> FrameInfo {
    let a = callers::origin("https://a.example");
    let mut info = FrameInfo::top_level(renderer, a.clone());
    match slot {
        SLOT_TOP => {
            info.allow_origin_ceiling = AllowOriginCeiling::from_header(Some("https://b.example, https://c.example"));
        }
        1 => {
            // A cross-site iframe: its own origin, a.example's top-level site.
            info.origin = FrameOrigin::Tuple(callers::origin("https://b.example"));
        }
        SLOT_BLOCKED => {
            info.origin = FrameOrigin::Tuple(callers::origin("https://www.a.example"));
            info.cos_allowed = false;
        }
        SLOT_OFF_THE_RECORD => info.partition = OFF_THE_RECORD,
        _ => info.origin = FrameOrigin::Opaque,
    }
    info
}

/// Who a document is, for the model.
#[derive(Debug, Clone)]
struct Caller {
    origin: Origin,
    partition: Partition,
    ceiling: AllowOriginCeiling,
}

impl Caller {
    fn of(info: &FrameInfo) -> Option<Self> {
        let FrameOrigin::Tuple(origin) = &info.origin else { return None };
        Some(Self { origin: origin.clone(), partition: info.partition, ceiling: info.allow_origin_ceiling.clone() })
    }
}

/// The fuzz target: a world, then the actions `data` describes, then the final checks; and no
/// thread of the world outlives it.
pub fn renderer_actions(data: &[u8]) {
    let threads_before = crate::thread_count();
    let actions: Vec<Action> = crate::sequence(data, MAX_ACTIONS);
    let mut world = World::new();
    for action in &actions {
        world.run(action);
    }
    let unexpected = world.observer.take();
    assert!(unexpected.is_empty(), "bad-message report after a well-formed action: {unexpected:?}");
    world.still_works();
    // The host waits for the service to close its store; brokers and reply threads end as
    // their pipes close.
    drop(world);
    crate::wait_for_threads_to_end(threads_before, ANSWER_TIMEOUT);
}
