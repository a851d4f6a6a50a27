//! `store_model`: sequences of store operations — creates, writes, seeks, truncates, closes,
//! aborts, reads, clears and restarts, across origins and sites — run against the real
//! [`StorageService`] and against a small reference model written from SPEC §4 (entries, handles,
//! writes), §5 (visibility) and §7 (limits, clearing). After every operation the two must agree on
//! the outcome (the exact `CosError`, the bytes read) and on the store's accounting.
//!
//! The same model drives two runners: the proptest in this module's tests (random sequences,
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

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use cos_common::{
    AllowOriginCeiling, CallerContext, ContentHash, CosError, DataErrorKind, NotAllowedKind, Origin, OriginsOption,
    Partition, QuotaScope,
};
use cos_storage_service::{
    ClearSiteDataReport, CommitOutcome, CreateOptions, FileHandle, GateConfig, GreaseMode, HandleRequest,
    PublicHashList, RecoveryReport, ServiceConfig, StorageLimits, StorageService, WritableFile,
};

use crate::scratch_dir;

/// `assert!` for the runner: a failed check is a disagreement, reported with its context.
macro_rules! check {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// `assert_eq!` for the runner.
macro_rules! check_eq {
    ($left:expr, $right:expr, $($message:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: {:?} != {:?}", format!($($message)+), left, right));
        }
    }};
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The callers. Indices are used everywhere below.
const ORIGINS: [&str; 5] =
    ["https://a.example", "https://www.a.example", "https://b.example", "http://a.example", "https://c.test:8443"];

/// The schemeful site of each origin (SPEC §5: scheme + registrable domain by the PSL, port
/// ignored; an unlisted TLD such as `.example` acts as a public suffix, as in Chromium). So 0 and
/// 1 are same-site; 3 is cross-site with 0 (the scheme differs); 2 and 4 are cross-site with all.
const SITES: [&str; 5] =
    ["https://a.example", "https://a.example", "https://b.example", "http://a.example", "https://c.test"];

/// The contents, with their SHA-256 (computed with `sha256sum`; the model compares bytes, so a
/// buffer "verifies" exactly when it equals the content).
const CONTENTS: [&[u8]; 4] = [b"", b"cos!", b"cross-origin", b"shared model weights"];
const HASHES: [&str; 4] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "a670c105141acfe2cd47c03ef13308f4622e67baa7eb8f0c5ccda25edc8e02b6",
    "65fff64346d26c43ffa6d04e82efd8bd5a424d49f391838cbb244d2094d22a0d",
    "9321bf0e06c0c5447c18d814161aa34b16e23ce9e02cebb19d3e1942f05ea32f",
];

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
    Origin::from_url(ORIGINS[i]).expect("fixture origin")
}

fn hash(c: usize) -> ContentHash {
    ContentHash::from_hex(HASHES[c]).expect("fixture hash")
}

fn caller(i: usize) -> CallerContext {
    CallerContext::top_level(origin(i))
}

fn origins_of(mask: u8) -> impl Iterator<Item = usize> {
    (0..ORIGINS.len()).filter(move |i| mask & (1 << i) != 0)
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Requested {
    Omitted,
    /// A list of the origins in the bit mask (never empty).
    List(u8),
    Global,
}

/// What a `Write` op writes, relative to the slot's target content.
#[derive(Debug, Clone, Copy)]
enum Payload {
    Exact,
    FlipLast,
    ExtraByte,
    DropLast,
    Other(usize),
    /// Longer than any entry may be.
    Oversized,
}

/// How the payload is written; the number picks the split point (modulo `len + 1`).
#[derive(Debug, Clone, Copy)]
enum Split {
    /// One `write(data)` at the cursor.
    Whole,
    /// `write(head)`, `write(tail)` at the cursor.
    InOrder(usize),
    /// `write({position: k, data: tail})`, then `write({position: 0, data: head})`.
    OutOfOrder(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// `getFileHandle(hash, {create: true, origins})` by `origin` under an Allow-Origin ceiling
    /// (bit mask), then `createWritable()`.
    Create {
        slot: usize,
        origin: usize,
        content: usize,
        origins: Requested,
        ceiling: u8,
    },
    /// The common client pattern (SPEC §9): `Create`, a `Write` of the exact bytes, `Close`.
    Store {
        slot: usize,
        origin: usize,
        content: usize,
        origins: Requested,
        ceiling: u8,
        split: Split,
    },
    /// A fresh `createWritable()` on the slot's handle (the previous writer, if any, is dropped).
    NewWritable {
        slot: usize,
    },
    Write {
        slot: usize,
        payload: Payload,
        split: Split,
    },
    /// Writes `target[start..start + len]` (clamped, possibly empty) at `start` or at the cursor.
    Patch {
        slot: usize,
        start: usize,
        len: usize,
        at_cursor: bool,
    },
    Seek {
        slot: usize,
        pos: u64,
    },
    Truncate {
        slot: usize,
        len: u64,
    },
    Close {
        slot: usize,
    },
    Abort {
        slot: usize,
    },
    /// `getFileHandle(hash)` by `origin`, then `getFile()`.
    Read {
        origin: usize,
        content: usize,
    },
    /// `getFile()` on the slot's create handle.
    ReadViaCreateHandle {
        slot: usize,
    },
    /// `getFileHandle(hash)` by `origin`, kept in a read slot (replacing what it held).
    OpenRead {
        slot: usize,
        origin: usize,
        content: usize,
    },
    /// `getFile()` on a kept read handle.
    ReadViaReadHandle {
        slot: usize,
    },
    ClearSiteData {
        origin: usize,
    },
    /// Drops every handle and writer, then the service (after a clean shutdown, or as in a
    /// crash), and reopens the same directory.
    Restart {
        clean: bool,
    },
}

/// Builds a sequence from fuzzer bytes, with the proptest's weights (`tests` below). Positions
/// and sizes are mostly small, where the contents live, and now and then anything a `u64` holds.
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let slot = u.choose_index(SLOTS)?;
        let origin = u.choose_index(ORIGINS.len())?;
        let content = u.choose_index(CONTENTS.len())?;
        Ok(match u.int_in_range(0u8..=42)? {
            0..=3 => Op::Create { slot, origin, content, origins: requested(u)?, ceiling: ceiling(u)? },
            4..=7 => {
                Op::Store { slot, origin, content, origins: requested(u)?, ceiling: ceiling(u)?, split: split(u)? }
            }
            8 => Op::NewWritable { slot },
            9..=16 => Op::Write { slot, payload: payload(u)?, split: split(u)? },
            17..=18 => Op::Patch {
                slot,
                start: u.int_in_range(0..=23)?,
                len: u.int_in_range(0..=3)?,
                at_cursor: u.arbitrary()?,
            },
            19..=20 => Op::Seek { slot, pos: position(u, 31)? },
            21..=22 => Op::Truncate { slot, len: position(u, 27)? },
            23..=27 => Op::Close { slot },
            28 => Op::Abort { slot },
            29..=34 => Op::Read { origin, content },
            35..=36 => Op::ReadViaCreateHandle { slot },
            37 => Op::ClearSiteData { origin },
            38..=39 => Op::OpenRead { slot: slot % READ_SLOTS, origin, content },
            40..=41 => Op::ReadViaReadHandle { slot: slot % READ_SLOTS },
            _ => Op::Restart { clean: u.arbitrary()? },
        })
    }
}

fn requested(u: &mut Unstructured<'_>) -> arbitrary::Result<Requested> {
    Ok(match u.int_in_range(0u8..=4)? {
        0..=1 => Requested::Omitted,
        2..=3 => Requested::List(u.int_in_range(1..=31)?),
        _ => Requested::Global,
    })
}

fn ceiling(u: &mut Unstructured<'_>) -> arbitrary::Result<u8> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => 0b1_1111,
        1 => 0,
        _ => u.int_in_range(0..=31)?,
    })
}

fn payload(u: &mut Unstructured<'_>) -> arbitrary::Result<Payload> {
    Ok(match u.int_in_range(0u8..=12)? {
        0..=7 => Payload::Exact,
        8 => Payload::FlipLast,
        9 => Payload::ExtraByte,
        10 => Payload::DropLast,
        11 => Payload::Other(u.choose_index(CONTENTS.len())?),
        _ => Payload::Oversized,
    })
}

fn split(u: &mut Unstructured<'_>) -> arbitrary::Result<Split> {
    Ok(match u.int_in_range(0u8..=3)? {
        0..=1 => Split::Whole,
        2 => Split::InOrder(u.int_in_range(0..=31)?),
        _ => Split::OutOfOrder(u.int_in_range(0..=31)?),
    })
}

fn position(u: &mut Unstructured<'_>, small: u64) -> arbitrary::Result<u64> {
    if u.ratio(1u8, 16)? { u.arbitrary() } else { u.int_in_range(0..=small) }
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

/// Compound ops as the primitive ops they stand for.
fn expand(op: &Op) -> Vec<Op> {
    match *op {
        Op::Store { slot, origin, content, origins, ceiling, split } => vec![
            Op::Create { slot, origin, content, origins, ceiling },
            Op::Write { slot, payload: Payload::Exact, split },
            Op::Close { slot },
        ],
        ref other => vec![other.clone()],
    }
}

/// One call on a writable stream.
#[derive(Debug, Clone)]
enum Step {
    Write(Vec<u8>),
    WriteAt(u64, Vec<u8>),
    Seek(u64),
    Truncate(u64),
}

fn payload_bytes(target: usize, payload: Payload) -> Vec<u8> {
    let exact = CONTENTS[target].to_vec();
    match payload {
        Payload::Exact => exact,
        Payload::FlipLast => {
            let mut bytes = exact;
            match bytes.last_mut() {
                Some(last) => *last ^= 1,
                None => bytes.push(b'Z'),
            }
            bytes
        }
        Payload::ExtraByte => [exact.as_slice(), b"!"].concat(),
        Payload::DropLast => exact[..exact.len().saturating_sub(1)].to_vec(),
        Payload::Other(c) => CONTENTS[c].to_vec(),
        Payload::Oversized => vec![b'z'; MAX_ENTRY_BYTES as usize + 2],
    }
}

/// The stream calls an op makes on the writer of a slot whose target is `target`. Zero-length
/// writes are included on purpose: past the end they still zero-fill (File System Standard).
fn steps(op: &Op, target: usize) -> Vec<Step> {
    match *op {
        Op::Write { payload, split, .. } => {
            let bytes = payload_bytes(target, payload);
            match split {
                Split::Whole => vec![Step::Write(bytes)],
                Split::InOrder(n) => {
                    let k = n % (bytes.len() + 1);
                    vec![Step::Write(bytes[..k].to_vec()), Step::Write(bytes[k..].to_vec())]
                }
                Split::OutOfOrder(n) => {
                    let k = n % (bytes.len() + 1);
                    vec![Step::WriteAt(k as u64, bytes[k..].to_vec()), Step::WriteAt(0, bytes[..k].to_vec())]
                }
            }
        }
        Op::Patch { start, len, at_cursor, .. } => {
            let content = CONTENTS[target];
            let start = start.min(content.len());
            let piece = content[start..(start + len).min(content.len())].to_vec();
            vec![if at_cursor { Step::Write(piece) } else { Step::WriteAt(start as u64, piece) }]
        }
        Op::Seek { pos, .. } => vec![Step::Seek(pos)],
        Op::Truncate { len, .. } => vec![Step::Truncate(len)],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

/// Visibility a verified write requests, after the Allow-Origin ceiling (SPEC §5): a list keeps
/// only the origins the ceiling admits and is the same as omitted when none remain (SPEC §2:
/// `origins: []` = omitted); `"*"` needs no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Omitted,
    List(u8),
    Global,
}

impl Grant {
    fn effective(requested: Requested, ceiling: u8) -> Self {
        match requested {
            Requested::Omitted => Self::Omitted,
            Requested::Global => Self::Global,
            Requested::List(mask) if mask & ceiling == 0 => Self::Omitted,
            Requested::List(mask) => Self::List(mask & ceiling),
        }
    }
}

/// An entry (SPEC §5): its storing origins, its origins list and its global flag. Its bytes are
/// `CONTENTS[c]`; it exists only after a verified write (SPEC §4).
#[derive(Debug, Clone, Default)]
struct EntryModel {
    storing: BTreeSet<usize>,
    listed: BTreeSet<usize>,
    global: bool,
}

/// A writable stream (SPEC §4 and the File System Standard's write/seek/truncate): the buffer,
/// the cursor, the error that killed it, if any, and what its in-flight reservation is checked
/// against: its origin's charge when it opened and the size of the entry it rewrites (if its
/// origin already stores it).
#[derive(Debug, Clone, Default)]
struct WriterModel {
    buffer: Vec<u8>,
    cursor: u64,
    failed: Option<CosError>,
    committed: u64,
    credit: u64,
}

impl WriterModel {
    /// The size a step would leave the buffer at (before any limit), or `None` for a step that
    /// does not resize.
    fn size_after(&self, step: &Step) -> Option<u64> {
        let len = self.buffer.len() as u64;
        match step {
            Step::Write(data) => Some(self.cursor.saturating_add(data.len() as u64).max(len)),
            Step::WriteAt(position, data) => Some(position.saturating_add(data.len() as u64).max(len)),
            Step::Seek(_) => None,
            Step::Truncate(size) => Some(*size),
        }
    }

    /// Bytes this writer holds in flight (nothing once it failed), and what its origin is charged
    /// for them.
    fn held(&self) -> (u64, u64) {
        if self.failed.is_some() {
            return (0, 0);
        }
        let size = self.buffer.len() as u64;
        (size, size.saturating_sub(self.credit))
    }

    /// Applies a step the limits allow.
    fn apply(&mut self, step: &Step) {
        match step {
            Step::Write(data) => self.write_at(self.cursor, data),
            Step::WriteAt(position, data) => self.write_at(*position, data),
            // Seeking past the end is allowed; a later write zero-fills the gap.
            Step::Seek(position) => self.cursor = *position,
            // Truncate resizes (zero-filling when growing) and keeps the cursor inside the file.
            Step::Truncate(len) => {
                self.buffer.resize(*len as usize, 0);
                self.cursor = self.cursor.min(*len);
            }
        }
    }

    /// A write at `position` zero-fills any gap after the current end (even for empty data),
    /// overwrites, and leaves the cursor at `position + len`.
    fn write_at(&mut self, position: u64, data: &[u8]) {
        let (start, end) = (position as usize, position as usize + data.len());
        if self.buffer.len() < end {
            self.buffer.resize(end, 0);
        }
        self.buffer[start..end].copy_from_slice(data);
        self.cursor = end as u64;
    }

    fn fail(&mut self, error: CosError) -> Result<(), CosError> {
        self.failed = Some(error.clone());
        Err(error)
    }
}

/// A create handle: who asked, for what, with which (ceiling-narrowed) grant; whether one of its
/// own writes has verified (*may read*, SPEC §4, per handle); its open writer.
#[derive(Debug, Clone)]
struct SlotModel {
    origin: usize,
    content: usize,
    grant: Grant,
    may_read: bool,
    /// A grant it relied on was removed: it answers NotFoundError, its writer cannot commit.
    revoked: bool,
    writer: Option<WriterModel>,
}

/// A kept read handle: who holds it, on what, whether it came through the global grant alone,
/// and whether it was revoked.
#[derive(Debug, Clone)]
struct ReadSlotModel {
    origin: usize,
    content: usize,
    global_only: bool,
    revoked: bool,
}

/// What a verified, committed close did.
#[derive(Debug, PartialEq, Eq)]
struct Committed {
    new_blob: bool,
    newly_storing: bool,
    listed_added: usize,
    became_global: bool,
    evicted_entries: usize,
    evicted_bytes: u64,
}

/// When each stored content was last read (0: never) and created, by the store's clock, reads
/// not yet flushed included.
type Clock = [Option<(u64, u64)>; CONTENTS.len()];

#[derive(Debug, Default)]
struct Model {
    entries: [Option<EntryModel>; CONTENTS.len()],
    /// SPEC §7: each storing origin is charged the full size of each entry it stores.
    charged: [u64; ORIGINS.len()],
    slots: [Option<SlotModel>; SLOTS],
    read_slots: [Option<ReadSlotModel>; READ_SLOTS],
}

fn size(c: usize) -> u64 {
    CONTENTS[c].len() as u64
}

impl Model {
    fn total_bytes(&self) -> u64 {
        (0..CONTENTS.len()).filter(|&c| self.entries[c].is_some()).map(size).sum()
    }

    /// SPEC §5, checked in order: storing origin, same-site with a storing origin, listed, then
    /// global — the only grant that consults the Public Hash List (SPEC §6).
    fn visible(&self, reader: usize, c: usize) -> bool {
        self.ungated(reader, c) || self.entries[c].as_ref().is_some_and(|entry| entry.global && ON_PHL[c])
    }

    /// A grant the privacy gates never apply to: storing, same-site or listed.
    fn ungated(&self, reader: usize, c: usize) -> bool {
        let Some(entry) = &self.entries[c] else { return false };
        entry.storing.iter().any(|&storer| SITES[storer] == SITES[reader]) || entry.listed.contains(&reader)
    }

    /// A step on the slot's writer: the largest-entry limit, then its in-flight reservation
    /// against its origin's limit and the store's cap; a refused step kills the stream.
    fn write_step(&mut self, slot: usize, step: &Step) -> Result<(), CosError> {
        let state = self.slots[slot].as_ref().expect("a slot with a writer");
        let writer = state.writer.as_ref().expect("a slot with a writer");
        if let Some(error) = &writer.failed {
            return Err(error.clone());
        }
        if let Some(size) = writer.size_after(step) {
            let error = if size > MAX_ENTRY_BYTES {
                Some(QuotaScope::Origin)
            } else {
                let o = state.origin;
                let others = (0..SLOTS).filter(|&other| other != slot).filter_map(|other| {
                    let other = self.slots[other].as_ref()?;
                    Some((other.origin, other.writer.as_ref()?.held()))
                });
                let (mut origin_held, mut total_held) = (size.saturating_sub(writer.credit), size);
                for (other_origin, (bytes, charged)) in others {
                    total_held += bytes;
                    if other_origin == o {
                        origin_held += charged;
                    }
                }
                if writer.committed + origin_held > PER_ORIGIN_BYTES {
                    Some(QuotaScope::Origin)
                } else if total_held > TOTAL_BYTES {
                    Some(QuotaScope::Global)
                } else {
                    None
                }
            };
            if let Some(scope) = error {
                let writer = self.slots[slot].as_mut().and_then(|s| s.writer.as_mut()).expect("a writer");
                return writer.fail(CosError::QuotaExceeded(scope));
            }
        }
        self.slots[slot].as_mut().and_then(|s| s.writer.as_mut()).expect("a writer").apply(step);
        Ok(())
    }

    /// A fresh writer for origin `o` on content `c`: its reservation is measured against what `o`
    /// is charged now, less `c` if `o` already stores it.
    fn new_writer(&self, o: usize, c: usize) -> WriterModel {
        let stores = self.entries[c].as_ref().is_some_and(|e| e.storing.contains(&o));
        WriterModel { committed: self.charged[o], credit: if stores { size(c) } else { 0 }, ..Default::default() }
    }

    /// The entry `c` was deleted for everyone: every handle that read it is revoked (a create
    /// handle that has not written keeps its right to write).
    fn revoke_entry(&mut self, c: usize) {
        for state in self.slots.iter_mut().flatten().filter(|s| s.content == c && s.may_read) {
            state.revoked = true;
        }
        for state in self.read_slots.iter_mut().flatten().filter(|s| s.content == c) {
            state.revoked = true;
        }
    }

    /// `close()` of the slot's writer (SPEC §4 verify on close, §7 limits, §5 merge).
    fn close(&mut self, slot: usize, clock: &Clock) -> Option<Result<Committed, CosError>> {
        let state = self.slots[slot].as_mut()?;
        let writer = state.writer.take()?;
        let (o, c, grant) = (state.origin, state.content, state.grant);
        if let Some(error) = writer.failed {
            return Some(Err(error));
        }
        // Verify the final bytes; a mismatch stores nothing. Nothing written is a DataError too,
        // unless the target is the empty content.
        if writer.buffer != CONTENTS[c] {
            let kind =
                if writer.buffer.is_empty() { DataErrorKind::NothingWritten } else { DataErrorKind::HashMismatch };
            return Some(Err(CosError::Data(kind)));
        }
        // The handle was revoked while it wrote (its origin's site data was cleared).
        if state.revoked {
            return Some(Err(CosError::Abort));
        }
        // Quota: a new storing origin is charged the full size; an identical rewrite by an
        // existing storer is free. The origin's limit is checked before the store's cap (the
        // library's order; SPEC §8 names both QuotaExceededError).
        let existing = self.entries[c].as_ref();
        let newly_storing = existing.is_none_or(|e| !e.storing.contains(&o));
        if newly_storing && self.charged[o] + size(c) > PER_ORIGIN_BYTES {
            return Some(Err(CosError::QuotaExceeded(QuotaScope::Origin)));
        }
        let new_blob = existing.is_none();
        // The global cap: new bytes that do not fit evict the least recently read entries
        // (SPEC §7) or, when not enough may go, are refused with nothing evicted.
        let (mut evicted_entries, mut evicted_bytes) = (0, 0);
        if new_blob && self.total_bytes() + size(c) > TOTAL_BYTES {
            let Some(victims) = self.victims(o, c, clock) else {
                return Some(Err(CosError::QuotaExceeded(QuotaScope::Global)));
            };
            for v in victims {
                let victim = self.entries[v].take().expect("victims exist");
                // Deleted for every storer, each uncharged.
                for storer in victim.storing {
                    self.charged[storer] -= size(v);
                }
                self.revoke_entry(v);
                evicted_entries += 1;
                evicted_bytes += size(v);
            }
        }
        // Upgrade-only merge (SPEC §5): the writer becomes a storing origin, a list grows, "*"
        // sets the global flag; nothing is ever removed.
        let entry = self.entries[c].get_or_insert_with(EntryModel::default);
        entry.storing.insert(o);
        let mut listed_added = 0;
        let mut became_global = false;
        match grant {
            Grant::Omitted => {}
            Grant::List(mask) => {
                for listed in origins_of(mask) {
                    listed_added += usize::from(entry.listed.insert(listed));
                }
            }
            Grant::Global => {
                became_global = !entry.global;
                entry.global = true;
            }
        }
        if newly_storing {
            self.charged[o] += size(c);
        }
        if let Some(state) = self.slots[slot].as_mut() {
            state.may_read = true;
        }
        Some(Ok(Committed { new_blob, newly_storing, listed_added, became_global, evicted_entries, evicted_bytes }))
    }

    /// The entries origin `o` evicts to fit new content `c`: least recently read first, then
    /// oldest, then lowest hash; never `c` itself; an empty entry frees nothing and stays. Over its
    /// share, `o` may take only entries it alone stores. `None` when they cannot free enough.
    fn victims(&self, o: usize, c: usize, clock: &Clock) -> Option<Vec<usize>> {
        let needed = self.total_bytes() + size(c) - TOTAL_BYTES;
        let only_own = self.charged[o] + size(c) > SHARE_BYTES;
        let mut candidates: Vec<usize> = (0..CONTENTS.len())
            .filter(|&v| v != c && size(v) > 0)
            .filter(|&v| self.entries[v].as_ref().is_some_and(|e| !only_own || e.storing == BTreeSet::from([o])))
            .collect();
        candidates.sort_by_key(|&v| {
            let (last_read, created) = clock[v].expect("the store lists every entry the model has");
            (last_read, created, hash(v))
        });
        let mut freed = 0;
        let mut victims = Vec::new();
        for v in candidates {
            if freed >= needed {
                break;
            }
            freed += size(v);
            victims.push(v);
        }
        (freed >= needed).then_some(victims)
    }

    /// SPEC §7 clear site data: the origin stops storing and leaves every list; entries left
    /// without a storing origin are deleted; its charge is reset. Every handle of the origin is
    /// revoked, and on each entry the clear touched, every other handle whose grant went with it:
    /// readers of a deleted entry, and ungated readers (or written create handles) that have no
    /// ungated grant left. A global-grant reader keeps its handle while the entry exists.
    fn clear(&mut self, o: usize) -> ClearSiteDataReport {
        let mut report = ClearSiteDataReport::default();
        let mut touched = Vec::new();
        for c in 0..CONTENTS.len() {
            let Some(entry) = self.entries[c].as_mut() else { continue };
            let was_storing = entry.storing.remove(&o);
            let was_listed = entry.listed.remove(&o);
            if !was_storing && !was_listed {
                continue;
            }
            touched.push(c);
            if entry.storing.is_empty() {
                self.entries[c] = None;
                report.entries_deleted += 1;
                report.bytes_freed += size(c);
            } else {
                report.entries_released += 1;
            }
        }
        self.charged[o] = 0;
        for c in touched {
            let deleted = self.entries[c].is_none();
            let lost: Vec<bool> = (0..ORIGINS.len()).map(|holder| deleted || !self.ungated(holder, c)).collect();
            for state in self.slots.iter_mut().flatten().filter(|s| s.content == c && s.may_read) {
                state.revoked |= lost[state.origin];
            }
            for state in self.read_slots.iter_mut().flatten().filter(|s| s.content == c) {
                state.revoked |= deleted || (!state.global_only && lost[state.origin]);
            }
        }
        for state in self.slots.iter_mut().flatten().filter(|s| s.origin == o) {
            state.revoked = true;
        }
        for state in self.read_slots.iter_mut().flatten().filter(|s| s.origin == o) {
            state.revoked = true;
        }
        report
    }
}

// ---------------------------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------------------------

struct RealSlot {
    handle: FileHandle,
    writer: Option<WritableFile>,
}

struct Real {
    dir: tempfile::TempDir,
    service: Option<StorageService>,
    slots: [Option<RealSlot>; SLOTS],
    read_slots: [Option<FileHandle>; READ_SLOTS],
}

fn open_service(dir: &std::path::Path) -> (StorageService, RecoveryReport) {
    let gate = PublicHashList::from_hashes((0..CONTENTS.len()).filter(|&c| ON_PHL[c]).map(hash));
    let config = ServiceConfig::new(dir)
        .with_limits(StorageLimits {
            per_origin_bytes: PER_ORIGIN_BYTES,
            total_bytes: TOTAL_BYTES,
            share_bytes: SHARE_BYTES,
        })
        // GREASE off: the model cannot predict random denials (GREASE has its own tests).
        .with_gates(GateConfig {
            public_hash_list: Some(gate),
            grease: GreaseMode::ForTests(false),
            ..GateConfig::default()
        });
    StorageService::open(config).expect("open the storage service")
}

impl Real {
    fn new() -> Self {
        let dir = scratch_dir();
        let (service, report) = open_service(dir.path());
        assert_eq!(report, RecoveryReport::default(), "a fresh store needs no recovery");
        Self { dir, service: Some(service), slots: Default::default(), read_slots: Default::default() }
    }

    fn service(&self) -> &StorageService {
        self.service.as_ref().expect("service is open")
    }

    fn restart(&mut self, clean: bool) -> RecoveryReport {
        self.slots = Default::default();
        self.read_slots = Default::default();
        if clean {
            self.service().shut_down_cleanly().expect("clean shutdown");
        }
        self.service = None;
        let (service, report) = open_service(self.dir.path());
        self.service = Some(service);
        report
    }
}

fn apply_real(writer: &mut WritableFile, step: &Step) -> Result<(), CosError> {
    match step {
        Step::Write(data) => writer.write(data),
        Step::WriteAt(position, data) => writer.write_at(*position, data),
        Step::Seek(position) => writer.seek(*position),
        Step::Truncate(len) => writer.truncate(*len),
    }
}

/// The store's read and creation times of every content it holds (SPEC §7 eviction order).
fn clock(service: &StorageService) -> Clock {
    let mut clock = Clock::default();
    for info in service.inspect_entries(Partition::Regular).expect("inspect entries") {
        let c = (0..CONTENTS.len()).find(|&c| hash(c) == info.hash).expect("only fixture contents are stored");
        clock[c] = Some((info.last_read_ms, info.created_ms));
    }
    clock
}

fn read_handle(handle: &FileHandle) -> Result<Vec<u8>, CosError> {
    handle.get_file()?.read_all()
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// Registry state and accounting equal the model's (SPEC §7 charges and total, SPEC §5 grants).
fn check_store(model: &Model, service: &StorageService, at: &str) -> Result<(), String> {
    for (o, url) in ORIGINS.iter().enumerate() {
        let record = service.inspect_origin(Partition::Regular, &origin(o)).expect("inspect origin");
        let stores = model.entries.iter().flatten().filter(|e| e.storing.contains(&o)).count() as u64;
        check_eq!(record.charged_bytes, model.charged[o], "{}: charge of {}", at, url);
        check_eq!(record.entries, stores, "{}: entry count of {}", at, url);
    }
    let total = service.inspect_total_bytes(Partition::Regular).expect("inspect total");
    check_eq!(total, model.total_bytes(), "{}: total bytes", at);
    for c in 0..CONTENTS.len() {
        let record = service.inspect_entry(Partition::Regular, &hash(c)).expect("inspect entry");
        match (&model.entries[c], record) {
            (None, None) => {}
            (Some(expected), Some(record)) => {
                let storing: BTreeSet<Origin> = expected.storing.iter().map(|&o| origin(o)).collect();
                let listed: BTreeSet<Origin> = expected.listed.iter().map(|&o| origin(o)).collect();
                let record_listed: BTreeSet<Origin> = record.listed_origins.iter().cloned().collect();
                check_eq!(record.size, size(c), "{}: size of entry {}", at, c);
                check_eq!(&record.storing_origins, &storing, "{}: storing origins of entry {}", at, c);
                check_eq!(record.listed_origins.len(), record_listed.len(), "{}: duplicate list entries", at);
                check_eq!(&record_listed, &listed, "{}: origins list of entry {}", at, c);
                check_eq!(record.global, expected.global, "{}: global flag of entry {}", at, c);
            }
            (expected, record) => {
                return Err(format!("{at}: entry {c}: model {expected:?}, store {record:?}"));
            }
        }
    }
    Ok(())
}

/// The bytes the store counts in flight are what the model's open writers hold.
fn check_in_flight(model: &Model, service: &StorageService, at: &str) -> Result<(), String> {
    let held: u64 = model.slots.iter().flatten().filter_map(|s| s.writer.as_ref()).map(|w| w.held().0).sum();
    check_eq!(service.inspect_bytes_in_flight(Partition::Regular).expect("in flight"), held, "{}: bytes in flight", at);
    Ok(())
}

fn apply_op(model: &mut Model, real: &mut Real, op: &Op, at: &str) -> Result<(), String> {
    match *op {
        Op::Create { slot, origin: o, content: c, origins, ceiling } => {
            let requested = match origins {
                Requested::Omitted => OriginsOption::Omitted,
                Requested::List(mask) => OriginsOption::List(origins_of(mask).map(origin).collect()),
                Requested::Global => OriginsOption::Global,
            };
            let options = CreateOptions::with_origins(
                requested,
                AllowOriginCeiling::from_origins(origins_of(ceiling).map(origin)),
            );
            // SPEC §4: a create request always returns a handle, registers nothing, and
            // starts with may read = false.
            let handle = real
                .service()
                .get_file_handle(&caller(o), hash(c), HandleRequest::Create(options))
                .map_err(|error| format!("{at}: create refused: {error:?}"))?;
            check!(handle.is_create() && !handle.may_read(), "{}: fresh create handle", at);
            let writer = handle.create_writable().map_err(|error| format!("{at}: createWritable: {error:?}"))?;
            real.slots[slot] = Some(RealSlot { handle, writer: Some(writer) });
            model.slots[slot] = Some(SlotModel {
                origin: o,
                content: c,
                grant: Grant::effective(origins, ceiling),
                may_read: false,
                revoked: false,
                writer: Some(model.new_writer(o, c)),
            });
        }
        Op::NewWritable { slot } => {
            let (Some(state), Some(real_slot)) = (model.slots[slot].as_ref(), real.slots[slot].as_mut()) else {
                return Ok(());
            };
            // createWritable() always starts empty (SPEC §4); the old writer is dropped (and its
            // reservation with it). A revoked handle answers NotFoundError.
            let (o, c, revoked) = (state.origin, state.content, state.revoked);
            real_slot.writer = None;
            let writer = real_slot.handle.create_writable();
            let expected = if revoked { Err(CosError::NotFound) } else { Ok(()) };
            check_eq!(writer.as_ref().map(drop).map_err(Clone::clone), expected, "{}: createWritable", at);
            real_slot.writer = writer.ok();
            let fresh = (!revoked).then(|| model.new_writer(o, c));
            model.slots[slot].as_mut().expect("checked above").writer = fresh;
        }
        Op::Write { slot, .. } | Op::Patch { slot, .. } | Op::Seek { slot, .. } | Op::Truncate { slot, .. } => {
            let Some(state) = model.slots[slot].as_ref() else { return Ok(()) };
            if state.writer.is_none() {
                return Ok(());
            }
            let content = state.content;
            for step in steps(op, content) {
                let expected = model.write_step(slot, &step);
                let real_writer = real.slots[slot].as_mut().and_then(|s| s.writer.as_mut()).expect("slots agree");
                let actual = apply_real(real_writer, &step);
                check_eq!(&actual, &expected, "{}: {:?}", at, step);
                if expected.is_ok() {
                    let expected_writer = model.slots[slot].as_ref().and_then(|s| s.writer.as_ref()).expect("a writer");
                    check_eq!(real_writer.size(), expected_writer.buffer.len() as u64, "{}: size", at);
                    check_eq!(real_writer.cursor(), expected_writer.cursor, "{}: cursor", at);
                }
            }
            check_in_flight(model, real.service(), at)?;
        }
        Op::Close { slot } => {
            let clock = clock(real.service());
            let Some(expected) = model.close(slot, &clock) else { return Ok(()) };
            let writer = real.slots[slot].as_mut().and_then(|s| s.writer.take()).expect("slots agree");
            let actual = writer.close().map(|outcome: CommitOutcome| Committed {
                new_blob: outcome.new_blob,
                newly_storing: outcome.visibility.newly_storing,
                listed_added: outcome.visibility.listed_added,
                became_global: outcome.visibility.became_global,
                evicted_entries: outcome.evicted_entries,
                evicted_bytes: outcome.evicted_bytes,
            });
            check_eq!(&actual, &expected, "{}", at);
        }
        Op::Abort { slot } => {
            let Some(state) = model.slots[slot].as_mut() else { return Ok(()) };
            if state.writer.take().is_none() {
                return Ok(());
            }
            let writer = real.slots[slot].as_mut().and_then(|s| s.writer.take()).expect("slots agree");
            writer.abort();
            check_in_flight(model, real.service(), at)?;
        }
        Op::Read { origin: o, content: c } => {
            let expected = if model.visible(o, c) { Ok(CONTENTS[c].to_vec()) } else { Err(CosError::NotFound) };
            let handle = real.service().get_file_handle(&caller(o), hash(c), HandleRequest::Read);
            if let Ok(handle) = &handle {
                // A read handle may read, and may not write.
                check!(handle.may_read() && !handle.is_create(), "{}: read handle flags", at);
                let writable = handle.create_writable().map(|_| ());
                check_eq!(writable, Err(CosError::NotAllowed(NotAllowedKind::HandleNotWritable)), "{}", at);
            }
            check_eq!(&handle.and_then(|h| read_handle(&h)), &expected, "{}", at);
        }
        Op::ReadViaCreateHandle { slot } => {
            let Some(state) = model.slots[slot].as_ref() else { return Ok(()) };
            // SPEC §4: NotAllowedError until this handle's own write verified; after that the
            // entry's bytes, as long as the entry exists and the handle was not revoked.
            let expected = if state.revoked {
                Err(CosError::NotFound)
            } else if !state.may_read {
                Err(CosError::NotAllowed(NotAllowedKind::HandleNotReadable))
            } else if model.entries[state.content].is_some() {
                Ok(CONTENTS[state.content].to_vec())
            } else {
                Err(CosError::NotFound)
            };
            let handle = &real.slots[slot].as_ref().expect("slots agree").handle;
            check_eq!(handle.may_read(), state.may_read, "{}: may read", at);
            check_eq!(&read_handle(handle), &expected, "{}", at);
        }
        Op::OpenRead { slot, origin: o, content: c } => {
            real.read_slots[slot] = None;
            let handle = real.service().get_file_handle(&caller(o), hash(c), HandleRequest::Read);
            let expected = model.visible(o, c);
            check_eq!(handle.is_ok(), expected, "{}: a read handle", at);
            real.read_slots[slot] = handle.ok();
            model.read_slots[slot] = expected.then(|| ReadSlotModel {
                origin: o,
                content: c,
                global_only: !model.ungated(o, c),
                revoked: false,
            });
        }
        Op::ReadViaReadHandle { slot } => {
            let Some(state) = model.read_slots[slot].as_ref() else { return Ok(()) };
            // Its grant (or the entry) may have gone since: then it answers as a miss would.
            let expected = if state.revoked { Err(CosError::NotFound) } else { Ok(CONTENTS[state.content].to_vec()) };
            let handle = real.read_slots[slot].as_ref().expect("read slots agree");
            check_eq!(handle.is_revoked(), state.revoked, "{}: revoked", at);
            check_eq!(&read_handle(handle), &expected, "{}", at);
        }
        Op::ClearSiteData { origin: o } => {
            let expected = model.clear(o);
            let actual = real.service().clear_site_data(Partition::Regular, &origin(o)).expect("clear site data");
            check_eq!(actual, expected, "{}", at);
        }
        Op::Restart { clean } => {
            model.slots = Default::default();
            model.read_slots = Default::default();
            let report = real.restart(clean);
            // Writers dropped before the restart leave no swap file; nothing needs repair, and
            // after a clean shutdown nothing is even checked.
            let entries = model.entries.iter().flatten().count();
            check_eq!(report, RecoveryReport { entries, after_clean_shutdown: clean, ..Default::default() }, "{}", at);
        }
        Op::Store { .. } => unreachable!("expanded"),
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), String> {
    let mut model = Model::default();
    let mut real = Real::new();
    for (i, op) in ops.iter().enumerate() {
        for op in expand(op) {
            let at = format!("op {i} {op:?}");
            apply_op(&mut model, &mut real, &op, &at)?;
            check_store(&model, real.service(), &at)?;
        }
    }
    // Finally, every origin reads exactly what the model says, for every content.
    for (o, url) in ORIGINS.iter().enumerate() {
        for (c, bytes) in CONTENTS.iter().enumerate() {
            let expected = if model.visible(o, c) { Ok(bytes.to_vec()) } else { Err(CosError::NotFound) };
            let actual =
                real.service().get_file_handle(&caller(o), hash(c), HandleRequest::Read).and_then(|h| read_handle(&h));
            check_eq!(&actual, &expected, "final read of content {} by {}", c, url);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn requested() -> impl Strategy<Value = Requested> {
        prop_oneof![
            2 => Just(Requested::Omitted),
            2 => (1u8..32).prop_map(Requested::List),
            1 => Just(Requested::Global),
        ]
    }

    fn ceiling() -> impl Strategy<Value = u8> {
        prop_oneof![Just(0b1_1111u8), Just(0u8), 0u8..32]
    }

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            8 => Just(Payload::Exact),
            1 => Just(Payload::FlipLast),
            1 => Just(Payload::ExtraByte),
            1 => Just(Payload::DropLast),
            1 => (0..CONTENTS.len()).prop_map(Payload::Other),
            1 => Just(Payload::Oversized),
        ]
    }

    fn split() -> impl Strategy<Value = Split> {
        prop_oneof![
            2 => Just(Split::Whole),
            1 => (0usize..32).prop_map(Split::InOrder),
            1 => (0usize..32).prop_map(Split::OutOfOrder),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let slot = 0..SLOTS;
        let origin = 0..ORIGINS.len();
        let content = 0..CONTENTS.len();
        prop_oneof![
            4 => (slot.clone(), origin.clone(), content.clone(), requested(), ceiling()).prop_map(
                |(slot, origin, content, origins, ceiling)| Op::Create { slot, origin, content, origins, ceiling }
            ),
            4 => (slot.clone(), origin.clone(), content.clone(), requested(), ceiling(), split()).prop_map(
                |(slot, origin, content, origins, ceiling, split)| Op::Store { slot, origin, content, origins, ceiling, split }
            ),
            1 => slot.clone().prop_map(|slot| Op::NewWritable { slot }),
            8 => (slot.clone(), payload(), split()).prop_map(|(slot, payload, split)| Op::Write { slot, payload, split }),
            2 => (slot.clone(), 0usize..24, 0usize..4, any::<bool>())
                .prop_map(|(slot, start, len, at_cursor)| Op::Patch { slot, start, len, at_cursor }),
            2 => (slot.clone(), prop_oneof![9 => 0u64..32, 1 => any::<u64>()]).prop_map(|(slot, pos)| Op::Seek { slot, pos }),
            2 => (slot.clone(), prop_oneof![9 => 0u64..28, 1 => any::<u64>()]).prop_map(|(slot, len)| Op::Truncate { slot, len }),
            5 => slot.clone().prop_map(|slot| Op::Close { slot }),
            1 => slot.clone().prop_map(|slot| Op::Abort { slot }),
            6 => (origin.clone(), content.clone()).prop_map(|(origin, content)| Op::Read { origin, content }),
            2 => slot.clone().prop_map(|slot| Op::ReadViaCreateHandle { slot }),
            2 => (0..READ_SLOTS, origin.clone(), content.clone())
                .prop_map(|(slot, origin, content)| Op::OpenRead { slot, origin, content }),
            2 => (0..READ_SLOTS).prop_map(|slot| Op::ReadViaReadHandle { slot }),
            1 => origin.prop_map(|origin| Op::ClearSiteData { origin }),
            1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn service_matches_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
            if let Err(disagreement) = run(&ops) {
                return Err(TestCaseError::fail(disagreement));
            }
        }
    }

    #[test]
    fn fuzz_bytes_build_every_kind_of_operation() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..16_384)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut u = Unstructured::new(&data);
        let mut kinds = std::collections::HashSet::new();
        while let Ok(op) = <Op as arbitrary::Arbitrary>::arbitrary(&mut u) {
            kinds.insert(std::mem::discriminant(&op));
            if u.is_empty() {
                break;
            }
        }
        assert_eq!(kinds.len(), 15, "every operation kind is reachable from fuzzer bytes");
    }
}
