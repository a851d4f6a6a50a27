//! The registry: which entries exist, who may read them, and what each origin is charged.
//!
//! A redb database (`<profile>/cos/registry.redb`, or redb's in-memory backend for off-the-record
//! profiles). Tables:
//!
//! | table     | key                  | value                          |
//! |-----------|----------------------|--------------------------------|
//! | `entries` | 32-byte SHA-256      | [`EntryRecord`] (versioned)    |
//! | `origins` | origin serialisation | [`OriginRecord`] (versioned)   |
//! | `meta`    | name                 | `u64` (`schema`, `total_bytes`) |
//! | `budgets` | top-level site       | [`BudgetRecord`] (versioned)   |
//! | `entry_heads`, `entry_readers` | see [`access`] | derived from `entries` for read decisions |
//!
//! Every committed write is one transaction that updates them all consistently.

pub mod access;
pub mod records;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use cos_common::{ContentHash, Origin};
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use access::{EntryAccess, EntryHead};
pub use records::{BudgetRecord, EntryRecord, OriginRecord, Provenance};

use access::{DerivedRows, HEADS, READERS};

use crate::error::StoreError;
use crate::faults::Faults;
#[cfg(feature = "testing")]
use crate::faults::FaultyFileBackend;

const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entries");
const ORIGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("origins");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budgets");

const SCHEMA_KEY: &str = "schema";
const TOTAL_BYTES_KEY: &str = "total_bytes";
/// 1 while the registry was closed by a clean shutdown; set last thing at shutdown and cleared
/// first thing at start, so any crash in between leaves it 0.
const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown";
/// 2: the access index (`entry_heads`, `entry_readers`) exists. 3: its list rows name sites
/// (listing an origin grants its site) instead of origins. An older registry is migrated at open
/// by building the index again from the entry rows.
const SCHEMA_VERSION: u64 = 3;

/// A row of the `entries` table, decoded or not.
pub(crate) type StoredEntry = (ContentHash, Result<EntryRecord, StoreError>);

/// The registry database.
pub(crate) struct Registry {
    /// `None` only for the moment of a reopen.
    db: RwLock<Option<Database>>,
    /// How to open it again: a file (with its fault injector) or nothing (in memory).
    file: Option<(PathBuf, Faults)>,
    /// Bumped by every reopen, so that threads that saw the same failure reopen it once.
    generation: AtomicU64,
    /// Test seam: commits attempted, so that tests can see writes share a transaction.
    #[cfg(feature = "testing")]
    commits: AtomicU64,
}

impl Registry {
    /// Opens (creating) the registry file. Fails if another process holds it.
    pub(crate) fn open_file(path: &Path, faults: Faults) -> Result<Self, StoreError> {
        let db = Self::open_database(path, &faults)?;
        Self::init(db, Some((path.to_owned(), faults)))
    }

    fn open_database(path: &Path, faults: &Faults) -> Result<Database, StoreError> {
        #[cfg(feature = "testing")]
        let db = if faults.is_active() {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| StoreError::io("open registry", path, e))?;
            FaultyFileBackend::new(file, faults.clone())
                .and_then(|backend| Database::builder().create_with_backend(backend))
        } else {
            Database::create(path)
        };
        // Without the test seam there is no injector, so the plain file backend always serves.
        #[cfg(not(feature = "testing"))]
        let db = {
            let _ = faults;
            Database::create(path)
        };
        db.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::RegistryLocked { path: path.to_owned() },
            other => other.into(),
        })
    }

    /// A registry that lives in memory only.
    pub(crate) fn in_memory() -> Result<Self, StoreError> {
        Self::init(Database::builder().create_with_backend(InMemoryBackend::new())?, None)
    }

    fn init(db: Database, file: Option<(PathBuf, Faults)>) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        {
            txn.open_table(ENTRIES)?;
            txn.open_table(ORIGINS)?;
            txn.open_table(BUDGETS)?;
            txn.open_table(HEADS)?;
            txn.open_table(READERS)?;
            let mut meta = txn.open_table(META)?;
            let schema = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match schema {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                    meta.insert(TOTAL_BYTES_KEY, 0)?;
                }
                Some(1 | 2) => {
                    // Rows of the old layout would be read as the new one: every derived row goes.
                    txn.open_table(HEADS)?.retain(|_, _| false)?;
                    txn.open_table(READERS)?.retain(|_, _| false)?;
                    let rows = index_every_entry(&txn)?;
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                    tracing::info!(rows, "registry migrated to schema {SCHEMA_VERSION} (access index built)");
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::CorruptRecord {
                        table: "meta",
                        reason: format!(
                            "registry schema {other} is newer than this build understands ({SCHEMA_VERSION})"
                        ),
                    });
                }
            }
        }
        txn.commit()?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            file,
            generation: AtomicU64::new(0),
            #[cfg(feature = "testing")]
            commits: AtomicU64::new(0),
        })
    }

    /// Starts a transaction. A database that failed an I/O operation refuses all work until it
    /// is reopened (redb's `PreviousIo`): the registry file is reopened — redb repairs it to the
    /// last committed transaction — and the transaction started again.
    fn begin<T>(&self, start: impl Fn(&Database) -> Result<T, redb::TransactionError>) -> Result<T, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let first = match self.db.read().as_ref() {
            Some(db) => start(db),
            None => Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)),
        };
        match first {
            Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) if self.file.is_some() => {
                self.reopen(generation)?;
                let db = self.db.read();
                Ok(start(db.as_ref().ok_or(StoreError::Registry(redb::Error::PreviousIo))?)?)
            }
            other => Ok(other?),
        }
    }

    fn reopen(&self, failed_generation: u64) -> Result<(), StoreError> {
        let Some((path, faults)) = &self.file else { return Ok(()) };
        let mut slot = self.db.write();
        if self.generation.load(Ordering::Acquire) != failed_generation && slot.is_some() {
            return Ok(()); // another thread reopened it meanwhile
        }
        tracing::warn!("the registry failed an I/O operation; reopening it");
        drop(slot.take());
        // Transactions begun before the failure may still hold the file for a moment.
        let mut attempts = 0;
        loop {
            match Self::open_database(path, faults) {
                Ok(db) => {
                    *slot = Some(db);
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    return Ok(());
                }
                Err(StoreError::RegistryLocked { .. }) if attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.begin(|db| db.begin_read())
    }

    /// Reads one entry.
    pub(crate) fn entry(&self, hash: &ContentHash) -> Result<Option<EntryRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let value = table.get(hash.as_bytes())?;
        value.map(|v| EntryRecord::decode(v.value())).transpose()
    }

    /// What a read decision needs about `hash` for a reader whose site is `site` (every ungated
    /// grant is a matter of the reader's site: a storing origin is same-site with itself, and a
    /// listed origin grants its whole site): three point lookups whatever the entry holds, all
    /// made even when the first finds nothing, so that a miss costs what a refusal of a popular
    /// entry costs. `None`: no such entry.
    pub(crate) fn access(
        &self,
        hash: &ContentHash,
        site: &cos_common::Site,
    ) -> Result<Option<EntryAccess>, StoreError> {
        let txn = self.begin_read()?;
        let (heads, readers) = (txn.open_table(HEADS)?, txn.open_table(READERS)?);
        let head = heads.get(hash.as_bytes())?.and_then(|v| EntryHead::decode(v.value()));
        let same_site = readers.get(access::storing_site_key(hash, site).as_slice())?.is_some_and(|v| v.value() > 0);
        let listed = readers.get(access::listed_site_key(hash, site).as_slice())?.is_some_and(|v| v.value() > 0);
        Ok(head.map(|head| EntryAccess { head, ungated: same_site || listed }))
    }

    /// What a writer of `hash` from `origin` is already charged: its whole account, and the
    /// entry's size if it is a recorded storing origin of `hash` (an identical rewrite is free).
    /// Point lookups only, whatever the entry holds.
    pub(crate) fn writer_standing(&self, hash: &ContentHash, origin: &Origin) -> Result<(u64, u64), StoreError> {
        let txn = self.begin_read()?;
        let account = txn
            .open_table(ORIGINS)?
            .get(origin.to_string().as_str())?
            .map(|v| OriginRecord::decode(v.value()))
            .transpose()?
            .unwrap_or_default();
        let stores = txn.open_table(READERS)?.get(access::storing_origin_key(hash, origin).as_slice())?.is_some();
        let head = txn.open_table(HEADS)?.get(hash.as_bytes())?.and_then(|v| EntryHead::decode(v.value()));
        let credit = if stores { head.map_or(0, |head| head.size) } else { 0 };
        Ok((account.charged_bytes, credit))
    }

    /// Reads one origin's accounting.
    pub(crate) fn origin(&self, origin: &Origin) -> Result<OriginRecord, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ORIGINS)?;
        let value = table.get(origin.to_string().as_str())?;
        Ok(value.map(|v| OriginRecord::decode(v.value())).transpose()?.unwrap_or_default())
    }

    /// A top-level site's probe budget record (undecodable rows read as empty: a fresh budget).
    pub(crate) fn budget(&self, site: &str) -> Result<BudgetRecord, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(BUDGETS)?;
        let value = table.get(site)?;
        Ok(value.and_then(|v| BudgetRecord::decode(v.value()).ok()).unwrap_or_default())
    }

    /// Every stored probe budget, by top-level site (undecodable rows read as empty).
    pub(crate) fn all_budgets(&self) -> Result<Vec<(String, BudgetRecord)>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(BUDGETS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            out.push((key.value().to_owned(), BudgetRecord::decode(value.value()).unwrap_or_default()));
        }
        Ok(out)
    }

    /// Bytes of all blobs.
    pub(crate) fn total_bytes(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(TOTAL_BYTES_KEY)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Whether the last process to use this registry shut down cleanly (and no one started since).
    pub(crate) fn was_shut_down_cleanly(&self) -> Result<bool, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(CLEAN_SHUTDOWN_KEY)?.map(|v| v.value()) == Some(1))
    }

    /// How many entry rows there are.
    pub(crate) fn entry_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.begin_read()?;
        Ok(txn.open_table(ENTRIES)?.len()?)
    }

    /// Every entry, decoded or not (undecodable ones come back as errors beside their key).
    pub(crate) fn all_entries(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            out.push((ContentHash::from_bytes(*key.value()), EntryRecord::decode(value.value())));
        }
        Ok(out)
    }

    /// Every origin's accounting row (rows that do not decode, or whose key is not an origin,
    /// come back as `None` so that recovery can rewrite them).
    pub(crate) fn all_origins(&self) -> Result<Vec<(String, Option<OriginRecord>)>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ORIGINS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let valid = key.value().parse::<Origin>().is_ok();
            out.push((key.value().to_owned(), OriginRecord::decode(value.value()).ok().filter(|_| valid)));
        }
        Ok(out)
    }

    /// Starts a write transaction. redb runs one at a time; others wait.
    /// Transactions committed (or attempted) since the registry opened (test seam).
    #[cfg(feature = "testing")]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    pub(crate) fn write(&self) -> Result<RegistryWrite<'_>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        Ok(RegistryWrite { txn: self.begin(|db| db.begin_write())?, registry: self, generation })
    }
}

/// Writes the derived rows of one entry, replacing whatever rows it had.
fn write_index(txn: &redb::WriteTransaction, hash: &ContentHash, rows: &DerivedRows) -> Result<(), StoreError> {
    remove_index(txn, hash)?;
    txn.open_table(HEADS)?.insert(hash.as_bytes(), rows.head.encode().as_slice())?;
    let mut readers = txn.open_table(READERS)?;
    for (key, count) in &rows.readers {
        readers.insert(key.as_slice(), *count)?;
    }
    Ok(())
}

fn remove_index(txn: &redb::WriteTransaction, hash: &ContentHash) -> Result<(), StoreError> {
    txn.open_table(HEADS)?.remove(hash.as_bytes())?;
    let (start, end) = access::reader_rows(hash);
    txn.open_table(READERS)?.retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
    Ok(())
}

/// Builds the access index of every decodable entry row (undecodable ones are recovery's
/// business). Returns how many entries were indexed.
fn index_every_entry(txn: &redb::WriteTransaction) -> Result<usize, StoreError> {
    let mut rows = Vec::new();
    for row in txn.open_table(ENTRIES)?.iter()? {
        let (key, value) = row?;
        if let Ok(record) = EntryRecord::decode(value.value()) {
            rows.push((ContentHash::from_bytes(*key.value()), record));
        }
    }
    for (hash, record) in &rows {
        write_index(txn, hash, &DerivedRows::of(hash, record))?;
    }
    Ok(rows.len())
}

/// One write transaction with typed accessors. Dropping it without [`commit`](Self::commit)
/// aborts it.
pub(crate) struct RegistryWrite<'a> {
    txn: redb::WriteTransaction,
    registry: &'a Registry,
    generation: u64,
}

impl RegistryWrite<'_> {
    pub(crate) fn entry(&self, hash: &ContentHash) -> Result<Option<EntryRecord>, StoreError> {
        let table = self.txn.open_table(ENTRIES)?;
        let value = table.get(hash.as_bytes())?;
        value.map(|v| EntryRecord::decode(v.value())).transpose()
    }

    /// Writes an entry whose grants may have changed, with its access index rows.
    pub(crate) fn put_entry(&self, hash: &ContentHash, record: &EntryRecord) -> Result<(), StoreError> {
        self.put_entry_times(hash, record)?;
        write_index(&self.txn, hash, &DerivedRows::of(hash, record))
    }

    /// Writes an entry of which only the read times and counts changed: its index rows stay.
    pub(crate) fn put_entry_times(&self, hash: &ContentHash, record: &EntryRecord) -> Result<(), StoreError> {
        self.txn.open_table(ENTRIES)?.insert(hash.as_bytes(), record.encode().as_slice())?;
        Ok(())
    }

    /// Removes an entry and its access index rows.
    pub(crate) fn remove_entry(&self, hash: &ContentHash) -> Result<(), StoreError> {
        self.txn.open_table(ENTRIES)?.remove(hash.as_bytes())?;
        remove_index(&self.txn, hash)
    }

    /// How many of the recorded storing origins of `hash` have site `site`.
    pub(crate) fn storing_origins_in_site(
        &self,
        hash: &ContentHash,
        site: &cos_common::Site,
    ) -> Result<u32, StoreError> {
        let table = self.txn.open_table(READERS)?;
        Ok(table.get(access::storing_site_key(hash, site).as_slice())?.map_or(0, |v| v.value()))
    }

    /// Makes the access index say exactly what `entries` (every surviving row) says: rows a
    /// damaged disk changed, added or lost are rewritten. Returns whether anything was wrong.
    pub(crate) fn reconcile_index(&self, entries: &[(ContentHash, EntryRecord)]) -> Result<bool, StoreError> {
        let mut heads = BTreeMap::new();
        let mut readers = BTreeMap::new();
        for (hash, record) in entries {
            let derived = DerivedRows::of(hash, record);
            heads.insert(*hash.as_bytes(), derived.head.encode());
            readers.extend(derived.readers);
        }
        let mut repaired = false;
        {
            let mut table = self.txn.open_table(HEADS)?;
            let mut wrong: Vec<[u8; 32]> = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                if heads.get(key.value()).is_none_or(|expected| expected.as_slice() != value.value()) {
                    wrong.push(*key.value());
                }
            }
            for key in &wrong {
                table.remove(key)?;
            }
            for (key, head) in &heads {
                if table.get(key)?.is_none() {
                    repaired = true;
                    table.insert(key, head.as_slice())?;
                }
            }
            repaired |= !wrong.is_empty();
        }
        {
            let mut table = self.txn.open_table(READERS)?;
            let mut wrong: Vec<Vec<u8>> = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                if readers.get(key.value()) != Some(&value.value()) {
                    wrong.push(key.value().to_vec());
                }
            }
            for key in &wrong {
                table.remove(key.as_slice())?;
            }
            for (key, count) in &readers {
                if table.get(key.as_slice())?.is_none() {
                    repaired = true;
                    table.insert(key.as_slice(), *count)?;
                }
            }
            repaired |= !wrong.is_empty();
        }
        Ok(repaired)
    }

    pub(crate) fn origin(&self, origin: &Origin) -> Result<OriginRecord, StoreError> {
        let table = self.txn.open_table(ORIGINS)?;
        let value = table.get(origin.to_string().as_str())?;
        Ok(value.map(|v| OriginRecord::decode(v.value())).transpose()?.unwrap_or_default())
    }

    /// Stores an origin's accounting; an origin that stores nothing has no row.
    pub(crate) fn put_origin(&self, origin: &Origin, record: &OriginRecord) -> Result<(), StoreError> {
        self.put_origin_key(&origin.to_string(), record)
    }

    pub(crate) fn put_origin_key(&self, key: &str, record: &OriginRecord) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(ORIGINS)?;
        if *record == OriginRecord::default() {
            table.remove(key)?;
        } else {
            table.insert(key, record.encode().as_slice())?;
        }
        Ok(())
    }

    pub(crate) fn put_budget(&self, site: &str, record: &BudgetRecord) -> Result<(), StoreError> {
        self.txn.open_table(BUDGETS)?.insert(site, record.encode().as_slice())?;
        Ok(())
    }

    pub(crate) fn total_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(META)?.get(TOTAL_BYTES_KEY)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Marks (or unmarks) the registry as closed by a clean shutdown.
    pub(crate) fn set_clean_shutdown(&self, clean: bool) -> Result<(), StoreError> {
        self.txn.open_table(META)?.insert(CLEAN_SHUTDOWN_KEY, u64::from(clean))?;
        Ok(())
    }

    pub(crate) fn set_total_bytes(&self, total: u64) -> Result<(), StoreError> {
        self.txn.open_table(META)?.insert(TOTAL_BYTES_KEY, total)?;
        Ok(())
    }

    /// Every entry key and record (for clear-site-data and recovery).
    pub(crate) fn entries(&self) -> Result<Vec<(ContentHash, EntryRecord)>, StoreError> {
        let table = self.txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            // Undecodable rows are recovery's business; clear-site-data skips them.
            if let Ok(record) = EntryRecord::decode(value.value()) {
                out.push((ContentHash::from_bytes(*key.value()), record));
            }
        }
        Ok(out)
    }

    /// Commits. A failed commit leaves the database refusing all work, and whether it reached
    /// the disk unknown (a failed fsync may still have written it): the registry is reopened at
    /// once, so that from now on it shows what the file holds.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        let Self { txn, registry, generation } = self;
        #[cfg(feature = "testing")]
        registry.commits.fetch_add(1, Ordering::AcqRel);
        if let Err(error) = txn.commit() {
            if let Err(reopen) = registry.reopen(generation) {
                tracing::error!(error = %reopen, "could not reopen the registry after a failed commit");
            }
            return Err(error.into());
        }
        Ok(())
    }
}
