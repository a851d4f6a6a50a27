//! `store_model`: sequences of store operations — creates, writes, seeks, truncates, closes,
//! aborts, reads, clears and restarts, across origins and sites — run against the real
//! [`StorageService`](cos_storage_service::StorageService) and against a small reference model
//! written from SPEC §4 (entries, handles, writes), §5 (visibility) and §7 (limits, clearing).
//! After every operation the two must agree on the outcome (the exact `CosError`, the bytes read)
//! and on the store's accounting.
//!
//! The same model drives two runners: the proptest in `tests.rs` (random sequences,
//! every CI run) and the coverage-guided fuzz target (`fuzz/targets`), which builds the sequence
//! from libFuzzer's bytes with [`arbitrary`].
//!
//! Revocation is modelled: a handle whose grant went with a clear-site-data or an eviction answers
//! `NotFoundError` (its writer cannot commit: `AbortError`), and so are the in-flight limits: a
//! writer's bytes count against its origin's limit (with what the origin was charged when the
//! writer opened, less an entry it rewrites) and the store's cap as soon as they are written.
//!
//! Eviction (SPEC §7) is modelled too: the model decides which entries a write evicts, least
//! recently read first. Only the millisecond timestamps that order them come from the store
//! (`inspect_entries` just before each close): a model cannot predict a clock, and ties within a
//! millisecond are broken by creation time and hash.

use std::sync::LazyLock;

use cos_common::{CallerContext, ContentHash, Origin};
use cos_test_support::callers;

use driver::run;
use input::Op;

mod driver;
mod input;
mod model;
#[cfg(test)]
mod tests;

/// The callers; the other modules name them by index.
const ORIGINS: [&str; 5] =
    ["https://a.example", "https://www.a.example", "https://b.example", "http://a.example", "https://c.test:8443"];

/// The schemeful site of each origin (SPEC §5: scheme + registrable domain by the PSL, port
/// ignored; an unlisted TLD such as `.example` acts as a public suffix, as in Chromium). So 0 and
/// 1 are same-site; 3 is cross-site with 0 (the scheme differs); 2 and 4 are cross-site with all.
const SITES: [&str; 5] =
    ["https://a.example", "https://a.example", "https://b.example", "http://a.example", "https://c.test"];

/// The contents (the model compares bytes, so a buffer "verifies" exactly when it equals the
/// content).
const CONTENTS: [&[u8]; 4] = [b"", b"cos!", b"cross-origin", b"shared model weights"];
/// Their SHA-256, computed once: the eviction order sorts by hash on every close.
static HASHES: LazyLock<[ContentHash; 4]> = LazyLock::new(|| CONTENTS.map(callers::hash_of));

/// Which contents are on the Public Hash List (SPEC §6): the global grant discloses only these.
const ON_PHL: [bool; 4] = [true, false, true, false];

/// SPEC §7 limits, small enough to be hit: one origin may store 4 + 20 or 4 + 12 bytes but not
/// 12 + 20; the store as a whole cannot hold all three non-empty contents (4 + 12 + 20 = 36), so
/// a write that would need all three evicts the least recently read other one.
const PER_ORIGIN_BYTES: u64 = 25;
const TOTAL_BYTES: u64 = 35;
/// An origin's fair share: the whole store, so that the share rule (an origin over its share
/// evicts only what it alone stores) never applies here; tests/eviction.rs covers it.
const SHARE_BYTES: u64 = TOTAL_BYTES;
/// The library refuses, at write time, any write or truncate that would make the file larger than
/// a single entry could ever be (`StorageLimits::max_entry_bytes`); the stream is then errored
/// with QuotaExceeded(Origin) and every later call reports that (SPEC §8: QuotaExceededError).
const MAX_ENTRY_BYTES: u64 = if PER_ORIGIN_BYTES < TOTAL_BYTES { PER_ORIGIN_BYTES } else { TOTAL_BYTES };

/// Concurrent create handles (each with at most one open writer).
const SLOTS: usize = 3;
/// Read handles kept open across operations.
const READ_SLOTS: usize = 2;

fn origin(i: usize) -> Origin {
    callers::origin(ORIGINS[i])
}

fn hash(c: usize) -> ContentHash {
    HASHES[c]
}

fn caller(i: usize) -> CallerContext {
    callers::caller(ORIGINS[i])
}

fn origins_of(mask: u8) -> impl Iterator<Item = usize> {
    (0..ORIGINS.len()).filter(move |i| mask & (1 << i) != 0)
}

/// Longest sequence one fuzz input runs: long enough for evictions after restarts, short enough
/// for thousands of executions a minute.
const MAX_FUZZ_OPS: usize = 64;

/// The fuzz target: a sequence of operations from `data`; a disagreement with the model panics.
pub fn store_model(data: &[u8]) {
    let ops: Vec<Op> = crate::sequence(data, MAX_FUZZ_OPS);
    if let Err(disagreement) = run(&ops) {
        panic!("the store disagrees with the model: {disagreement}\nops: {ops:#?}");
    }
}
