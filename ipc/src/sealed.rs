//! [`SealedFile`]: immutable bytes in a sealed memory file, which a receiver can map instead of
//! receiving them through a pipe.
//!
//! A descriptor of an ordinary file is no way to share bytes with an untrusted process running as
//! the same user: its holder can `fchmod` the file (it owns it), reopen `/proc/self/fd/N` for
//! writing and change what every other reader sees, and a `MAP_PRIVATE` mapping of a file still
//! shows later changes of pages it has not written. A memory file (`memfd_create` with
//! `MFD_ALLOW_SEALING`) sealed with `F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`
//! cannot change any more, for anyone: the kernel refuses `write`, `ftruncate`, shared writable
//! mappings and new opens for writing of its inode's data, and seals can never be removed. A
//! receiver checks the seals and the size before it maps ([`SealedFile::from_received`]).

use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, fcntl_get_seals, fstat, memfd_create};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// The seals a [`SealedFile`] carries: its bytes and size are fixed, and so are the seals.
pub const REQUIRED_SEALS: SealFlags =
    SealFlags::WRITE.union(SealFlags::GROW).union(SealFlags::SHRINK).union(SealFlags::SEAL);

/// A memory file being filled, not yet shared. [`seal`](Self::seal) fixes its bytes.
#[derive(Debug)]
pub struct SealedFileBuilder {
    file: File,
    len: u64,
}

impl SealedFileBuilder {
    /// A zero-filled memory file of `len` bytes (close-on-exec, sealable). Pages are only
    /// allocated as they are written.
    pub fn new(len: u64) -> io::Result<Self> {
        let fd = memfd_create("cos-entry", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let file = File::from(fd);
        file.set_len(len)?;
        Ok(Self { file, len })
    }

    /// Writes `data` at `offset` (within the length given at creation).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset.checked_add(data.len() as u64).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write past the sealed file's length"));
        }
        self.file.write_all_at(data, offset)
    }

    /// Fills the whole file with the first bytes of `source` inside the kernel (`sendfile`: one
    /// copy, from the source's page cache into the memory file, none through user space). For a
    /// fresh builder only: the copy goes to the builder's file position, which nothing else
    /// moves. Fails if `source` is shorter.
    pub fn fill_from(&self, source: impl AsFd) -> io::Result<()> {
        let mut offset = 0u64;
        while offset < self.len {
            let want = usize::try_from(self.len - offset).unwrap_or(usize::MAX).min(1 << 30);
            match rustix::fs::sendfile(&self.file, &source, Some(&mut offset), want) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the source is shorter")),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Seals the file: from now on nobody can change its bytes or its size.
    pub fn seal(self) -> io::Result<SealedFile> {
        fcntl_add_seals(&self.file, REQUIRED_SEALS)?;
        Ok(SealedFile { fd: self.file.into(), len: self.len })
    }
}

/// A sealed memory file: bytes that can never change, shareable with other processes as a
/// descriptor and mapped by them without a copy.
#[derive(Debug)]
pub struct SealedFile {
    fd: OwnedFd,
    len: u64,
}

impl SealedFile {
    /// A sealed file holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> io::Result<Self> {
        let builder = SealedFileBuilder::new(bytes.len() as u64)?;
        builder.write_at(0, bytes)?;
        builder.seal()
    }

    /// Accepts a descriptor from a peer only if it is a file whose bytes and size can no longer
    /// change (it carries [`REQUIRED_SEALS`]; only memory files can be sealed, so an ordinary
    /// file, a socket or a directory is refused) and whose size is `expected_len`. Anything else
    /// is refused (and closed): mapping it could show bytes that change under the reader.
    pub fn from_received(fd: OwnedFd, expected_len: u64) -> Result<Self, &'static str> {
        let seals = fcntl_get_seals(&fd).map_err(|_| "the descriptor cannot be sealed")?;
        if !seals.contains(REQUIRED_SEALS) {
            return Err("the descriptor is not sealed against changes");
        }
        let stat = fstat(&fd).map_err(|_| "the descriptor cannot be inspected")?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err("the descriptor is not a regular file");
        }
        if u64::try_from(stat.st_size).ok() != Some(expected_len) {
            return Err("the descriptor's size is not the announced size");
        }
        Ok(Self { fd, len: expected_len })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new descriptor of the same file, to send (the file stays sealed for every holder).
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let want = buf.len().min(remaining);
        let mut done = 0;
        while done < want {
            match rustix::io::pread(&self.fd, &mut buf[done..want], offset + done as u64) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sealed file shorter than its size")),
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(done)
    }

    /// Maps the whole file copy-on-write (`MAP_PRIVATE`): the caller may write to its pages,
    /// which then become its own and never reach the file. With `populate`, every page is mapped
    /// now (`MAP_POPULATE`) rather than on first touch.
    pub fn map(&self, populate: bool) -> io::Result<Mapping> {
        let len = usize::try_from(self.len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        if len == 0 {
            return Ok(Mapping { ptr: NonNull::dangling(), len: 0 });
        }
        let mut flags = MapFlags::PRIVATE;
        if populate {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: a new mapping at an address the kernel chooses, so no existing memory is
        // affected; the file is sealed, so it can neither shrink (no SIGBUS on access) nor change.
        let ptr = unsafe { mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, flags, &self.fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl AsFd for SealedFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A private, writable mapping of a [`SealedFile`], unmapped when dropped. Writes stay in this
/// process (copy-on-write).
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; nothing about it is tied to a
// thread.
unsafe impl Send for Mapping {}
// SAFETY: shared references only read, and `&mut` access is exclusive by the borrow rules.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The first byte (valid for `len()` bytes while the mapping lives).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes (or dangling with `len` 0), owned
        // by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Mapping {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the pages are writable (private copies on write), and `&mut self`
        // is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: exactly the range `map` mapped, unmapped once; no reference into it outlives
            // `self`.
            let _ = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};

    fn memfd(bytes: &[u8]) -> OwnedFd {
        let builder = SealedFileBuilder::new(bytes.len() as u64).unwrap();
        builder.write_at(0, bytes).unwrap();
        builder.file.into()
    }

    #[test]
    fn a_sealed_file_maps_privately_and_refuses_every_change() {
        let sealed = SealedFile::from_bytes(b"verified bytes").unwrap();
        let received = SealedFile::from_received(sealed.try_clone_fd().unwrap(), 14).unwrap();
        let fd = received.as_fd();
        assert!(rustix::io::pwrite(fd, b"X", 0).is_err(), "write");
        assert!(rustix::fs::ftruncate(fd, 1).is_err(), "shrink");
        assert!(rustix::fs::ftruncate(fd, 100).is_err(), "grow");
        // The holder owns the inode: it may change the mode, and reopen it for writing, but the
        // seals are on the inode, so the new descriptor cannot write either.
        let _ = rustix::fs::fchmod(fd, Mode::from_raw_mode(0o666));
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        if let Ok(reopened) = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()) {
            assert!(rustix::io::pwrite(&reopened, b"X", 0).is_err(), "write through a reopened descriptor");
        }
        // SAFETY: a fresh mapping the kernel must refuse; nothing is touched if it does not.
        let shared =
            unsafe { mmap(std::ptr::null_mut(), 14, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0) };
        assert!(shared.is_err(), "shared writable mapping");
        assert!(fcntl_add_seals(fd, SealFlags::FUTURE_WRITE).is_err(), "the seals are sealed");
        assert_eq!(fcntl_get_seals(fd).unwrap() & REQUIRED_SEALS, REQUIRED_SEALS, "seals cannot go");
        let mut mapping = received.map(false).unwrap();
        mapping[0] = b'V';
        assert_eq!(&received.map(true).unwrap()[..], b"verified bytes", "private writes stay private");
        let mut buf = [0u8; 20];
        assert_eq!(sealed.read_at(0, &mut buf).unwrap(), 14);
        assert_eq!(&buf[..14], b"verified bytes");
    }

    #[test]
    fn a_receiver_refuses_unsealed_wrong_sized_or_other_descriptors() {
        assert!(SealedFile::from_received(memfd(b"abc"), 3).is_err(), "unsealed");
        let sealed = SealedFile::from_bytes(b"abc").unwrap();
        assert!(SealedFile::from_received(sealed.try_clone_fd().unwrap(), 4).is_err(), "wrong size");
        let partly = SealedFileBuilder::new(3).unwrap();
        fcntl_add_seals(&partly.file, SealFlags::SHRINK | SealFlags::GROW).unwrap();
        assert!(SealedFile::from_received(partly.file.into(), 3).is_err(), "still writable");
        let file = tempfile_fd();
        assert!(SealedFile::from_received(file, 0).is_err(), "an ordinary file");
        assert!(SealedFile::from_received(sealed.try_clone_fd().unwrap(), 3).is_ok());
    }

    #[test]
    fn a_copy_filled_from_a_file_holds_its_bytes() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let source = SealedFile::from_bytes(&bytes).unwrap();
        let builder = SealedFileBuilder::new(bytes.len() as u64).unwrap();
        builder.fill_from(&source).unwrap();
        assert_eq!(&builder.seal().unwrap().map(false).unwrap()[..], &bytes[..]);
        let longer = SealedFileBuilder::new(bytes.len() as u64 + 1).unwrap();
        assert!(longer.fill_from(&source).is_err(), "a source shorter than the copy");
    }

    fn tempfile_fd() -> OwnedFd {
        let dir = std::env::temp_dir();
        let fd = rustix::fs::open(&dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(0o600));
        fd.unwrap_or_else(|_| rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap())
    }
}
