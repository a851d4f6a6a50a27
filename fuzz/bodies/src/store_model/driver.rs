//! The system under test (a real [`StorageService`] in a scratch directory) and the runner that
//! applies each operation to it and to the model and compares the two.

use std::collections::BTreeSet;

use cos_common::{AllowOriginCeiling, CosError, NotAllowedKind, Origin, OriginsOption, Partition};
use cos_storage_service::{
    CommitOutcome, CreateOptions, FileHandle, GateConfig, GreaseMode, HandleRequest, PublicHashList, RecoveryReport,
    ServiceConfig, StorageLimits, StorageService, WritableFile,
};

use super::input::{Op, Requested, Step, expand, steps};
use super::model::{Clock, Committed, Grant, Model, ReadSlotModel, SlotModel, size};
use super::{
    CONTENTS, ON_PHL, ORIGINS, PER_ORIGIN_BYTES, READ_SLOTS, SHARE_BYTES, SLOTS, TOTAL_BYTES, caller, hash, origin,
    origins_of,
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
pub(super) fn clock(service: &StorageService) -> Clock {
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

pub(super) fn run(ops: &[Op]) -> Result<(), String> {
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
