//! Identical concurrent writes share one swap file.
//!
//! Writers streaming the same hash at the same time (eight renderers storing one model) would
//! otherwise each write and hash the whole file. Instead the writers of a hash join one **group**
//! with one swap file, and each chunk a writer receives at its length is either *compared* with
//! what the file already holds there or, at the end of what was written, *claimed* and *appended*
//! by that writer, which feeds it to the group's SHA-256 first. So the bytes are written once and
//! hashed once; the other writers compare (`pread` + `memcmp`).
//!
//! Why an installed file is always bytes that hashed to its name: the file only ever grows by
//! appends, a new claim starts only where every earlier claim was written, and a range below
//! `written` never changes again. So each byte `[0, len)` of a writer either was appended by that
//! writer (from its own bytes) or compared equal to its own bytes: the file's `[0, len)` *is* the
//! writer's bytes. They are judged by the group's hash only when it covers exactly `[0, len)`
//! (fed in claim order, position checked: an append that failed after it was hashed breaks that
//! for good), else by re-hashing `[0, len)` from the file. The file is installed only once
//! *sealed* at a verified length — nothing written or claimed past it, and no append past it ever
//! again — so the inode renamed into `blobs/` is exactly those bytes, and stays so while the
//! others still compare against it.
//!
//! Whoever is at the end appends: when the writer appending falls behind, dies, fails or leaves,
//! the next writer to reach the end appends its own bytes, without asking any renderer to send
//! again. A writer whose bytes differ from the file's, that seeks, overwrites or truncates, or
//! that would append past a sealed length, leaves the group: it copies the prefix it agreed with
//! into a private swap file (or, when it is the group's only writer and nothing else can reach the
//! file, simply keeps the file) and continues alone. A writer never buffers: it compares or
//! appends what it received, or waits (bounded: the few MiB another writer's I/O thread has
//! queued) for the file to reach its position.
//!
//! Each verified writer gets its own name for the shared file (a hard link in `swap/`), so the
//! commit protocol is unchanged: each member's own name is renamed over the blob, whether or not
//! another member installed it already (which also puts it back if it was evicted meanwhile).

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cos_common::ContentHash;
use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

/// The groups of a disk store, by hash.
#[derive(Default)]
pub(crate) struct Coalescer {
    groups: Mutex<HashMap<ContentHash, Arc<Group>>>,
    next_member: AtomicU64,
}

/// The writers of one hash sharing one swap file.
pub(crate) struct Group {
    pub(super) hash: ContentHash,
    pub(super) file: Arc<File>,
    /// The group's own name in `swap/`; taken by the last member (who then owns the file), else
    /// unlinked when the group goes.
    name: Mutex<Option<PathBuf>>,
    /// Members (changed only under the coalescer's lock).
    members: Mutex<usize>,
    /// More than one writer joined at some point: another may have installed the file already.
    was_shared: std::sync::atomic::AtomicBool,
    state: Mutex<Progress>,
    /// Signalled when `written` advances or a pending claim is released.
    advanced: Condvar,
    /// The SHA-256 of the appended bytes, in file order (taken after `state` when both are held).
    hashed: Mutex<Hashed>,
}

/// The hash of what was claimed, fed by each appender before its bytes go to the file. Claims
/// are made in file order and a new claimer starts only where everything claimed was written,
/// so the state is that of `[0, len)` of the file — unless an append failed and its range was
/// claimed again, which the position check catches: the state is then never used again, and a
/// verifying member re-hashes the file instead.
struct Hashed {
    sha: Sha256,
    len: u64,
    valid: bool,
}

/// How far the shared file is.
#[derive(Default)]
struct Progress {
    /// Bytes `[0, written)` are on the file and never change again.
    written: u64,
    /// Bytes `[written, claimed)` are being appended by `claimer`.
    claimed: u64,
    claimer: Option<u64>,
    /// The length a verified member installed (or may install): nothing is appended past it.
    sealed: Option<u64>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(path) = self.name.get_mut().take() {
            remove_name(path);
        }
    }
}

fn remove_name(path: PathBuf) {
    if let Err(error) = fs::remove_file(&path) {
        tracing::warn!(%error, path = %path.display(), "could not delete a shared swap file; it is removed at the next start");
    }
}

/// What a member should do with the next bytes at its position.
pub(crate) enum Step {
    /// Compare this many bytes with the file at the member's position.
    Compare(u64),
    /// Append the bytes (the member claimed them).
    Append,
    /// The member cannot go on in the group (it would append past the sealed length).
    Leave,
    /// The member's own appends failed (its I/O thread stopped): the error is its thread's.
    Failed,
}

/// How a verified member may stage the shared file.
pub(crate) enum Seal {
    /// The file is exactly the member's verified bytes, sealed at their length.
    Sealed,
    /// Something is (or was) appended past the member's length: it must copy its bytes out.
    Copy,
}

/// What the group's hash says about a member's bytes at its close.
pub(crate) enum Judged {
    /// They hash to the target and the file is sealed at their length.
    Sealed,
    /// They do not hash to the target.
    Mismatch,
    /// The group's hash does not cover exactly them: re-hash `[0, len)` of the file.
    Unknown,
}

impl Coalescer {
    /// Joins the group writing `hash`, or starts one with `create()`'s file and name.
    pub(crate) fn join(
        self: &Arc<Self>,
        hash: &ContentHash,
        create: impl FnOnce() -> Result<(Arc<File>, PathBuf), crate::error::StoreError>,
    ) -> Result<Member, crate::error::StoreError> {
        let mut groups = self.groups.lock();
        let group = match groups.get(hash) {
            Some(group) => group.clone(),
            None => {
                let (file, path) = create()?;
                let group = Arc::new(Group {
                    hash: *hash,
                    file,
                    name: Mutex::new(Some(path)),
                    members: Mutex::new(0),
                    was_shared: std::sync::atomic::AtomicBool::new(false),
                    state: Mutex::new(Progress::default()),
                    advanced: Condvar::new(),
                    hashed: Mutex::new(Hashed { sha: Sha256::new(), len: 0, valid: true }),
                });
                groups.insert(*hash, group.clone());
                group
            }
        };
        let mut members = group.members.lock();
        *members += 1;
        if *members > 1 {
            group.was_shared.store(true, Ordering::Relaxed);
        }
        drop(members);
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        Ok(Member { coalescer: self.clone(), group, id, len: 0, joined: true })
    }

    /// Groups of writers now (test seam).
    #[cfg(feature = "testing")]
    pub(crate) fn groups(&self) -> usize {
        self.groups.lock().len()
    }
}

/// One writer's place in a group; leaves it when dropped.
pub(crate) struct Member {
    coalescer: Arc<Coalescer>,
    pub(super) group: Arc<Group>,
    pub(super) id: u64,
    /// The writer's length: bytes `[0, len)` of the file are its bytes (or its pending appends).
    pub(super) len: u64,
    joined: bool,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.leave(false);
    }
}

impl Member {
    /// What to do with the next `want` bytes at `len`: compare what is written, append at the
    /// end, or wait while another member's appends are pending there.
    pub(crate) fn next_step(&self, want: u64) -> Step {
        let group = &self.group;
        let mut progress = group.state.lock();
        loop {
            if progress.sealed.is_some_and(|sealed| self.len.saturating_add(want) > sealed) {
                return Step::Leave;
            }
            if self.len > progress.claimed {
                return Step::Failed;
            }
            if self.len < progress.written {
                return Step::Compare(want.min(progress.written - self.len));
            }
            let free = progress.claimed == progress.written || progress.claimer == Some(self.id);
            if free && self.len == progress.claimed {
                progress.claimed = self.len + want;
                progress.claimer = Some(self.id);
                return Step::Append;
            }
            group.advanced.wait(&mut progress);
        }
    }

    /// Notes that the member verified `len` bytes from the file or appended them.
    pub(crate) fn advance(&mut self, bytes: u64) {
        self.len += bytes;
    }

    /// Judges the member's bytes (`[0, len)` of the file, every byte compared or appended by it)
    /// by the group's hash, and seals the file at their length if they match and nothing is or
    /// was appended past them. The member's own appends must have reached the file.
    pub(crate) fn judge(&self, target: &ContentHash) -> Judged {
        let mut progress = self.group.state.lock();
        if let Some(sealed) = progress.sealed {
            // Sealed only once bytes of that length hashed to the target.
            return if sealed == self.len { Judged::Sealed } else { Judged::Unknown };
        }
        if progress.written != self.len || progress.claimed != self.len {
            return Judged::Unknown;
        }
        let hashed = self.group.hashed.lock();
        if !hashed.valid || hashed.len != self.len {
            return Judged::Unknown;
        }
        if ContentHash::from_bytes(hashed.sha.clone().finalize().into()) != *target {
            return Judged::Mismatch;
        }
        progress.sealed = Some(self.len);
        Judged::Sealed
    }

    /// The group's hash state when it covers exactly the member's bytes, for a member leaving
    /// with them.
    pub(crate) fn hash_state(&self) -> Option<Sha256> {
        let progress = self.group.state.lock();
        let hashed = self.group.hashed.lock();
        let exact = progress.written == self.len && hashed.valid && hashed.len == self.len;
        exact.then(|| hashed.sha.clone())
    }

    /// Seals the file at the member's length (its bytes re-hashed to the target) if nothing is
    /// or was appended past it.
    pub(crate) fn seal(&self) -> Seal {
        let mut progress = self.group.state.lock();
        match progress.sealed {
            Some(sealed) if sealed == self.len => Seal::Sealed,
            Some(_) => Seal::Copy,
            None if progress.written == self.len && progress.claimed == self.len => {
                progress.sealed = Some(self.len);
                Seal::Sealed
            }
            None => Seal::Copy,
        }
    }

    /// Whether the member is the group's only one and nothing can still write to the file, so
    /// that it may take the file (and its name) for itself; if so the group is dissolved.
    /// `unsealed`: it will change the file, which a sealed (perhaps installed) file must not.
    /// Also tells whether other writers were ever in the group (one may have installed the file).
    pub(crate) fn take_file(&mut self, unsealed: bool) -> Option<(Arc<File>, PathBuf, bool)> {
        let mut groups = self.coalescer.groups.lock();
        let mut members = self.group.members.lock();
        let progress = self.group.state.lock();
        let quiet = progress.claimed == progress.written;
        if *members != 1 || !quiet || (unsealed && progress.sealed.is_some()) {
            return None;
        }
        let path = self.group.name.lock().take()?;
        *members = 0;
        self.joined = false;
        if groups.get(&self.group.hash).is_some_and(|g| Arc::ptr_eq(g, &self.group)) {
            groups.remove(&self.group.hash);
        }
        Some((self.group.file.clone(), path, self.group.was_shared.load(Ordering::Relaxed)))
    }

    /// A new name for the shared file in `dir`, linked while the group (and so its name) lives.
    pub(crate) fn link_as(&self, path: &std::path::Path) -> std::io::Result<()> {
        let name = self.group.name.lock();
        let Some(source) = name.as_ref() else {
            return Err(std::io::Error::other("a shared swap file lost its name"));
        };
        fs::hard_link(source, path)
    }

    /// Leaves the group; `bad`: the member's bytes differ from the file's, so new writers of the
    /// hash start a group of their own rather than join this one.
    pub(crate) fn leave(&mut self, bad: bool) {
        if !self.joined {
            return;
        }
        self.joined = false;
        let mut groups = self.coalescer.groups.lock();
        let mut members = self.group.members.lock();
        *members -= 1;
        let ours = groups.get(&self.group.hash).is_some_and(|g| Arc::ptr_eq(g, &self.group));
        if ours && (bad || *members == 0) {
            groups.remove(&self.group.hash);
        }
        let last = *members == 0;
        drop(members);
        drop(groups);
        // The name goes with the last writer, even while a departed writer's I/O thread still
        // finishes its queue into the (then nameless) file.
        let name = if last { self.group.name.lock().take() } else { None };
        if let Some(path) = name {
            remove_name(path);
        }
    }
}

impl Group {
    /// Hashes bytes a member claimed at `position`, before they go to the file.
    pub(crate) fn hash_claimed(&self, position: u64, data: &[u8]) {
        let mut hashed = self.hashed.lock();
        if hashed.valid && hashed.len == position {
            hashed.sha.update(data);
            hashed.len += data.len() as u64;
        } else {
            hashed.valid = false;
        }
    }

    /// A member's append of `[.., end)` reached the file.
    pub(crate) fn appended(&self, end: u64) {
        let mut progress = self.state.lock();
        progress.written = progress.written.max(end);
        drop(progress);
        self.advanced.notify_all();
    }

    /// `member` appends nothing more: what it claimed and did not write is free for others.
    /// Called only once none of its writes can still reach the file.
    pub(crate) fn release(&self, member: u64) {
        let mut progress = self.state.lock();
        if progress.claimer == Some(member) {
            progress.claimed = progress.written;
            progress.claimer = None;
        }
        drop(progress);
        self.advanced.notify_all();
    }
}
