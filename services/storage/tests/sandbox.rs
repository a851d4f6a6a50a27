//! The storage service's sandbox, tested on real processes.
//!
//! `lock_down` cannot be undone, so every case runs in a child: this binary re-executes itself
//! with `COS_SANDBOX_CHILD=<role>`. The child bootstraps like the service (TCP listener and store
//! opened first), locks itself down, works, probes, and prints one `COS_SANDBOX_RESULT k=v …`
//! line; the parent (plain `main`, `harness = false`) judges the line and the exit status.
//!
//! Nothing is timed: every assertion is about what succeeded, what failed with which errno, and
//! which signal ended a process.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use cos_common::CallerContext;
use cos_storage_service::sandbox::{self, LandlockStatus, Probe, SandboxReport, SeccompMode, seccomp_policy};
use cos_storage_service::{CreateOptions, HandleRequest, ServiceConfig, SharedRead, StorageService, Streamed};
use cos_test_support::callers::hash_of;
use cos_test_support::rng::pattern;

const ROLE_ENV: &str = "COS_SANDBOX_CHILD";
const PROFILE_ENV: &str = "COS_SANDBOX_PROFILE";
const RESULT: &str = "COS_SANDBOX_RESULT";

const MIB: usize = 1 << 20;

fn main() -> ExitCode {
    match std::env::var(ROLE_ENV) {
        Ok(role) => child::run(&role),
        Err(_) => parent::run(),
    }
}

// ─── the locked-down child ──────────────────────────────────────────────────────────────────────

mod child {
    use super::*;

    pub(super) fn run(role: &str) -> ExitCode {
        // A SIGSYS kill would otherwise leave a core file behind.
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: setrlimit reads the struct, which lives for the call.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };

        let profile = PathBuf::from(std::env::var_os(PROFILE_ENV).expect("COS_SANDBOX_PROFILE"));
        let result = match role {
            "service" => service(&profile),
            "forbidden-syscall" => forbidden_syscall(&profile),
            "prot-exec" => prot_exec(&profile),
            "setpriority-other" => setpriority_other(&profile),
            "audit-log" => audit_log(&profile),
            "panic-abort" => panic_abort(&profile),
            other => Err(format!("unknown role {other}")),
        };
        match result {
            Ok(fields) => {
                println!("{RESULT} {fields}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                println!("{RESULT} error={}", error.replace(' ', "_"));
                ExitCode::FAILURE
            }
        }
    }

    fn lock(profile: &Path) -> Result<SandboxReport, String> {
        sandbox::lock_down(&profile.join("cos")).map_err(|e| format!("lock_down: {e}"))
    }

    fn report_fields(report: &SandboxReport) -> String {
        format!(
            "no_new_privs={} landlock={:?} abi={} seccomp={} mode={:?}",
            report.no_new_privs,
            report.landlock,
            report.landlock_abi.map_or("none".to_owned(), |a| a.to_string()),
            report.seccomp,
            report.seccomp_mode,
        )
    }

    fn probe(p: Probe) -> String {
        match p {
            Probe::Blocked { errno } => format!("blocked:{errno}"),
            Probe::Allowed => "allowed".to_owned(),
        }
    }

    fn errno_of<T>(result: io::Result<T>) -> Probe {
        match result {
            Ok(_) => Probe::Allowed,
            Err(e) => Probe::Blocked { errno: e.raw_os_error().unwrap_or(0) },
        }
    }

    fn syscall_probe(rc: libc::c_long) -> Probe {
        if rc < 0 {
            Probe::Blocked { errno: io::Error::last_os_error().raw_os_error().unwrap_or(0) }
        } else {
            Probe::Allowed
        }
    }

    /// The real service, before and after lock-down, then the probes.
    fn service(profile: &Path) -> Result<String, String> {
        // Bootstrap, as the service does: everything that needs the outside world first.
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("listener: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        // `ServiceConfig::new` measures the disk (statvfs), which the policy does not allow: the
        // configuration is made before lock-down, as the service process does.
        let config = ServiceConfig::new(profile);
        let (service, _) = StorageService::open(config.clone()).map_err(|e| format!("open: {e}"))?;
        let before = pattern(1, MIB);
        store(&service, &before)?;

        let report = lock(profile)?;

        // The real service under the real policy: writers (each with its I/O thread past 2 MiB;
        // the 10 MiB one crosses the 8 MiB sync_file_range mark), concurrent readers, redb
        // commits, fdatasync, rename into blobs/, directory fsync.
        let entries: Vec<Vec<u8>> =
            vec![pattern(2, 5 * MIB), pattern(3, 5 * MIB), pattern(4, 5 * MIB), pattern(5, 10 * MIB)];
        let roundtrip = std::thread::scope(|scope| {
            let writers: Vec<_> = entries
                .iter()
                .map(|bytes| {
                    let service = &service;
                    scope.spawn(move || {
                        store(service, bytes)?;
                        check(service, bytes)
                    })
                })
                .collect();
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (service, before) = (&service, &before);
                    scope.spawn(move || check(service, before))
                })
                .collect();
            writers.into_iter().chain(readers).try_for_each(|t| t.join().map_err(|_| "thread panicked".to_owned())?)
        });
        // Two writers of the same bytes at once share one swap file; each gets its own name for
        // it (a hard link in swap/) to install.
        let roundtrip = roundtrip.and_then(|()| store_twice_at_once(&service, &pattern(6, 3 * MIB)));
        let roundtrip = roundtrip.and_then(|()| {
            // Close and reopen inside the sandbox: redb's open, the recovery sweep over blobs/
            // and swap/, and the file lock, all under the policy.
            service.flush().map_err(|e| format!("flush: {e}"))?;
            drop(service);
            let (service, _) = StorageService::open(config).map_err(|e| format!("reopen: {e}"))?;
            entries.iter().chain([&before]).try_for_each(|bytes| check(&service, bytes))
        });
        let roundtrip = match roundtrip {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.replace(' ', "_"),
        };

        // Landlock reaches threads started after lock-down, and its boundary is the store
        // directory (`<profile>/cos`), not the profile.
        let outside = profile.join("outside-the-store.txt");
        let (thread_open, write_outside) = std::thread::spawn(move || {
            (errno_of(std::fs::File::open("/etc/passwd")), errno_of(std::fs::File::create(&outside)))
        })
        .join()
        .map_err(|_| "probe thread panicked")?;

        // A fork as the raw syscall (std::process::Command would die first, of its unlisted pipe2).
        // SAFETY: clone(SIGCHLD) with a NULL stack is fork(): the child gets a copy of this stack.
        // Were it allowed, the child sees 0 and leaves at once with _exit, touching nothing.
        let fork = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
        if fork == 0 {
            // SAFETY: in the (unexpected) child: leave without running anything of the parent's.
            unsafe { libc::_exit(0) };
        }
        let fork = syscall_probe(fork);
        // SAFETY: clone3 with a NULL argument and size 0 would only fail with EINVAL if it ran.
        let clone3 = syscall_probe(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) });
        // SAFETY: socket() takes integers; a descriptor it returns is closed right away.
        let udp = syscall_probe(unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd >= 0 {
                libc::close(fd);
            }
            fd.into()
        });
        // SAFETY: as above.
        let unix_dgram = syscall_probe(unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd >= 0 {
                libc::close(fd);
            }
            fd.into()
        });
        let ipc = match ipc_round_trip().and_then(|()| cos_ipc_round_trip()) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.replace(' ', "_"),
        };

        let self_test = sandbox::self_test(port);
        drop(listener);
        Ok(format!(
            "{} roundtrip={roundtrip} open={} tcp={} exec={} all_blocked={} thread_open={} write_outside={} fork={} clone3={} udp={} unix_dgram={} ipc={ipc}",
            report_fields(&report),
            probe(self_test.open_outside_store),
            probe(self_test.tcp_connect),
            probe(self_test.exec),
            self_test.all_blocked(),
            probe(thread_open),
            probe(write_outside),
            probe(fork),
            probe(clone3),
            probe(udp),
            probe(unix_dgram),
        ))
    }

    /// What the IPC transport (`cos_ipc`) does after lock-down, as raw syscalls: a
    /// `SOCK_SEQPACKET` pair, `SO_SNDBUF` read and raised, a message carrying a descriptor
    /// (`SCM_RIGHTS`), `poll` before `recvmsg`, the received descriptor checked like an endpoint
    /// (`SO_DOMAIN`, `SO_TYPE`, `getpeername`) and then used, and `shutdown`.
    fn ipc_round_trip() -> Result<(), String> {
        let (a, b) = seqpacket_pair()?;
        let (c, d) = seqpacket_pair()?;
        let sndbuf = sockopt(&a, libc::SO_SNDBUF)?;
        let raised: libc::c_int = sndbuf.max(256 << 10);
        // SAFETY: the option value points to a live c_int and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const raised).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        os_check(rc.into(), "setsockopt")?;

        send(&a, b"endpoint attached", Some(&d))?;
        drop(d);
        let mut pfd = libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; the message is already queued, so this returns at once.
        os_check(unsafe { libc::poll(&mut pfd, 1, -1) }.into(), "poll")?;
        let (bytes, attached) = recv(&b)?;
        let attached = attached.ok_or("no descriptor received")?;
        if bytes != b"endpoint attached" {
            return Err("message corrupted".into());
        }
        if sockopt(&attached, libc::SO_DOMAIN)? != libc::AF_UNIX
            || sockopt(&attached, libc::SO_TYPE)? != libc::SOCK_SEQPACKET
        {
            return Err("received descriptor is not AF_UNIX SOCK_SEQPACKET".into());
        }
        // SAFETY: `addr` has room for `len` bytes; the kernel writes at most that many.
        let rc = unsafe {
            let mut addr = std::mem::MaybeUninit::<libc::sockaddr_un>::uninit();
            let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
            libc::getpeername(attached.as_raw_fd(), addr.as_mut_ptr().cast(), &mut len)
        };
        os_check(rc.into(), "getpeername")?;

        send(&attached, b"through the attachment", None)?;
        let (bytes, _) = recv(&c)?;
        if bytes != b"through the attachment" {
            return Err("second message corrupted".into());
        }
        // SAFETY: shutdown on an open socket we own.
        os_check(unsafe { libc::shutdown(a.as_raw_fd(), libc::SHUT_RDWR) }.into(), "shutdown")
    }

    /// The same through `cos_ipc` itself, whatever system calls its OS layer makes: a pair, a
    /// deeper send queue, a typed message carrying an endpoint, a receive with a timeout (poll
    /// first) and a blocking one, the attachment used, and a shutdown seen by the peer.
    fn cos_ipc_round_trip() -> Result<(), String> {
        use cos_ipc::{Attached, Endpoint, IpcError, Pipe};
        let fail = |what: &'static str| move |error: IpcError| format!("cos_ipc {what}: {error}");
        let (a, b) = Endpoint::pair().map_err(|e| format!("cos_ipc pair: {e}"))?;
        let (c, d) = Endpoint::pair().map_err(|e| format!("cos_ipc pair: {e}"))?;
        a.set_send_buffer(2 << 20).map_err(|e| format!("cos_ipc set_send_buffer: {e}"))?;
        type Carrying = (String, Attached);
        let sender: Pipe<Carrying, ()> = Pipe::new(a);
        let receiver: Pipe<(), Carrying> = Pipe::new(b);
        sender.send(("endpoint attached".to_owned(), d.into())).map_err(fail("send"))?;
        let (text, attached) = receiver.recv_timeout(std::time::Duration::from_secs(10)).map_err(fail("recv"))?;
        if text != "endpoint attached" {
            return Err("cos_ipc message corrupted".into());
        }
        attached.into_endpoint().send(b"through the attachment", vec![]).map_err(fail("send on the attachment"))?;
        if c.recv().map_err(fail("recv on the attachment"))?.bytes != b"through the attachment" {
            return Err("cos_ipc second message corrupted".into());
        }
        sender.endpoint().shutdown();
        match receiver.recv() {
            Err(IpcError::Disconnected) => Ok(()),
            other => Err(format!("cos_ipc shutdown not seen: {other:?}")),
        }
    }

    fn os_check(rc: libc::c_long, what: &str) -> Result<(), String> {
        if rc < 0 { Err(format!("{what}: {}", io::Error::last_os_error())) } else { Ok(()) }
    }

    fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), String> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
        os_check(rc.into(), "socketpair")?;
        // SAFETY: socketpair succeeded: both descriptors are open and owned by nobody else.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    fn sockopt(fd: &OwnedFd, name: libc::c_int) -> Result<libc::c_int, String> {
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes and `len` is the size of `value`.
        let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&raw mut value).cast(), &mut len) };
        os_check(rc.into(), "getsockopt")?;
        Ok(value)
    }

    /// Room for one descriptor's control message, aligned for `cmsghdr`.
    #[repr(C, align(8))]
    struct Cmsg([u8; 64]);

    fn send(fd: &OwnedFd, bytes: &[u8], attach: Option<&OwnedFd>) -> Result<(), String> {
        let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
        let mut cmsg = Cmsg([0; 64]);
        // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(attach) = attach {
            let data_len = size_of::<libc::c_int>() as u32;
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE only computes a size (24 here, within the 64-byte buffer).
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as _;
            // SAFETY: the control buffer is aligned, zeroed and larger than msg_controllen, so
            // CMSG_FIRSTHDR is non-null and CMSG_DATA has room for one c_int.
            unsafe {
                let header = libc::CMSG_FIRSTHDR(&msg);
                (*header).cmsg_level = libc::SOL_SOCKET;
                (*header).cmsg_type = libc::SCM_RIGHTS;
                (*header).cmsg_len = libc::CMSG_LEN(data_len) as _;
                libc::CMSG_DATA(header).cast::<libc::c_int>().write_unaligned(attach.as_raw_fd());
            }
        }
        // SAFETY: `msg` points to live buffers (iov, control) for the duration of the call.
        let sent = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        os_check(sent as libc::c_long, "sendmsg")
    }

    fn recv(fd: &OwnedFd) -> Result<(Vec<u8>, Option<OwnedFd>), String> {
        let mut buf = [0u8; 64];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut cmsg = Cmsg([0; 64]);
        // SAFETY: an all-zero msghdr is valid; the fields set below point to live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.0.len() as _;
        // SAFETY: as above; the kernel writes at most the lengths given.
        let received = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        os_check(received as libc::c_long, "recvmsg")?;
        // SAFETY: after recvmsg, msg_control/msg_controllen describe the control data received;
        // an SCM_RIGHTS header carries a descriptor that is now ours.
        let attached = unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            if header.is_null() || (*header).cmsg_level != libc::SOL_SOCKET || (*header).cmsg_type != libc::SCM_RIGHTS {
                None
            } else {
                Some(OwnedFd::from_raw_fd(libc::CMSG_DATA(header).cast::<libc::c_int>().read_unaligned()))
            }
        };
        Ok((buf[..received as usize].to_vec(), attached))
    }

    /// A syscall in neither table: the process must die of SIGSYS.
    fn forbidden_syscall(profile: &Path) -> Result<String, String> {
        let (_service, _) = StorageService::open(ServiceConfig::new(profile)).map_err(|e| format!("open: {e}"))?;
        let report = lock(profile)?;
        // SAFETY: acct(NULL) would at most switch process accounting off; it never runs here.
        let rc = unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>()) };
        Ok(format!("{} survived=acct rc={rc}", report_fields(&report)))
    }

    /// `setpriority` is allowed only on the calling thread (`PRIO_PROCESS`, `who = 0`): that
    /// works; naming any process — here the parent, the browser — is fatal.
    fn setpriority_other(profile: &Path) -> Result<String, String> {
        let (_service, _) = StorageService::open(ServiceConfig::new(profile)).map_err(|e| format!("open: {e}"))?;
        // SAFETY: getppid takes no arguments (and is not allowed once locked down).
        let parent = unsafe { libc::getppid() } as libc::id_t;
        let report = lock(profile)?;
        // SAFETY: plain integers; lowering the calling thread's own priority needs no privilege.
        let own = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) };
        println!("own_thread_rc={own}");
        // SAFETY: plain integers; it is refused before it runs.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, parent, 19) };
        Ok(format!("{} survived=setpriority_other rc={rc}", report_fields(&report)))
    }

    /// An allowed syscall outside its argument condition (mmap with PROT_EXEC): SIGSYS too.
    fn prot_exec(profile: &Path) -> Result<String, String> {
        let (_service, _) = StorageService::open(ServiceConfig::new(profile)).map_err(|e| format!("open: {e}"))?;
        let report = lock(profile)?;
        // SAFETY: an anonymous private mapping of one page, unmapped again if it were granted.
        let rc = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p != libc::MAP_FAILED {
                libc::munmap(p, 4096);
            }
            p as usize
        };
        Ok(format!("{} survived=mmap_prot_exec rc={rc}", report_fields(&report)))
    }

    /// A panicking thread and `abort()` must end the way they always do — a caught panic with
    /// its message, then SIGABRT — not in SIGSYS (the parent sets RUST_BACKTRACE=1, so the
    /// backtrace machinery runs under the policy too).
    fn panic_abort(profile: &Path) -> Result<String, String> {
        use std::io::Write as _;
        let (_service, _) = StorageService::open(ServiceConfig::new(profile)).map_err(|e| format!("open: {e}"))?;
        let report = lock(profile)?;
        let joined = std::thread::spawn(|| panic!("deliberate panic inside the sandbox")).join().is_err();
        println!("{RESULT} {} panicked_thread_joined={joined}", report_fields(&report));
        let _ = std::io::stdout().flush();
        std::process::abort()
    }

    /// Debug builds' audit mode: the same unlisted syscall is logged, not fatal.
    fn audit_log(profile: &Path) -> Result<String, String> {
        let (_service, _) = StorageService::open(ServiceConfig::new(profile)).map_err(|e| format!("open: {e}"))?;
        let report = lock(profile)?;
        // SAFETY: getppid takes no arguments and is harmless; it is merely not on the allowlist.
        let rc = unsafe { libc::syscall(libc::SYS_getppid) };
        Ok(format!("{} survived=getppid rc={rc}", report_fields(&report)))
    }

    fn caller() -> CallerContext {
        cos_test_support::callers::caller("https://app.example")
    }

    fn store(service: &StorageService, bytes: &[u8]) -> Result<(), String> {
        let request = HandleRequest::Create(CreateOptions::same_site());
        let handle =
            service.get_file_handle(&caller(), hash_of(bytes), request).map_err(|e| format!("create: {e:?}"))?;
        let mut writer = handle.create_writable().map_err(|e| format!("createWritable: {e:?}"))?;
        // Streamed in 256 KiB writes, as the IPC layer will deliver them.
        for chunk in bytes.chunks(256 << 10) {
            writer.write(chunk).map_err(|e| format!("write: {e:?}"))?;
        }
        writer.close().map(drop).map_err(|e| format!("close: {e:?}"))
    }

    fn store_twice_at_once(service: &StorageService, bytes: &[u8]) -> Result<(), String> {
        let request = || HandleRequest::Create(CreateOptions::same_site());
        let handles = [caller(), cos_test_support::callers::caller("https://other.example")]
            .map(|who| service.get_file_handle(&who, hash_of(bytes), request()));
        let mut writers = Vec::new();
        for handle in &handles {
            let handle = handle.as_ref().map_err(|e| format!("create: {e:?}"))?;
            writers.push(handle.create_writable().map_err(|e| format!("createWritable: {e:?}"))?);
        }
        for chunk in bytes.chunks(256 << 10) {
            for writer in &mut writers {
                writer.write(chunk).map_err(|e| format!("write: {e:?}"))?;
            }
        }
        for writer in writers {
            writer.close().map_err(|e| format!("close: {e:?}"))?;
        }
        check(service, bytes)
    }

    fn check(service: &StorageService, bytes: &[u8]) -> Result<(), String> {
        let read = service
            .get_file_handle(&caller(), hash_of(bytes), HandleRequest::Read)
            .and_then(|h| h.get_file())
            .and_then(|f| f.read_all())
            .map_err(|e| format!("read: {e:?}"))?;
        if read != bytes {
            return Err(format!("read back {} bytes differing from the {} stored", read.len(), bytes.len()));
        }
        // Whole reads by descriptor: the first fills a sealed memory copy (memfd_create,
        // ftruncate, pwrite, F_ADD_SEALS), the second hands it out (a dup to send).
        for _ in 0..2 {
            let file = service
                .get_file_handle(&caller(), hash_of(bytes), HandleRequest::Read)
                .and_then(|h| h.get_file())
                .map_err(|e| format!("reopen: {e:?}"))?;
            match file.read_shared(&[], 128 * 1024, |_| true).map_err(|e| format!("read_shared: {e:?}"))? {
                SharedRead::File(copy) => {
                    drop(copy.try_clone_fd().map_err(|e| format!("dup: {e}"))?);
                    let mut head = [0u8; 16];
                    copy.read_at(0, &mut head).map_err(|e| format!("pread: {e}"))?;
                    if head[..] != bytes[..16] {
                        return Err("the sealed copy differs".into());
                    }
                }
                SharedRead::Streamed(Streamed::Complete) => {}
                SharedRead::Streamed(Streamed::Stopped) => return Err("stopped".into()),
            }
        }
        Ok(())
    }
}

// ─── the parent: spawns children and judges them ────────────────────────────────────────────────

mod parent {
    use super::*;

    const EACCES: &str = "blocked:13";
    const EPERM: &str = "blocked:1";
    const ENOSYS: &str = "blocked:38";

    struct Child {
        output: Output,
        fields: HashMap<String, String>,
    }

    impl Child {
        fn field(&self, key: &str) -> &str {
            self.fields.get(key).map_or("<missing>", String::as_str)
        }

        fn describe(&self) -> String {
            format!(
                "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
                self.output.status,
                String::from_utf8_lossy(&self.output.stdout),
                String::from_utf8_lossy(&self.output.stderr)
            )
        }
    }

    fn spawn(role: &str, audit: Option<&str>) -> Result<Child, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        // RUST_BACKTRACE=1: panics inside the sandbox run the backtrace code, as on a developer's
        // machine or in CI.
        command
            .env(ROLE_ENV, role)
            .env(PROFILE_ENV, profile.path())
            .env("RUST_BACKTRACE", "1")
            .env_remove(seccomp_policy::AUDIT_ENV);
        if let Some(mode) = audit {
            command.env(seccomp_policy::AUDIT_ENV, mode);
        }
        let output = command.output().map_err(|e| format!("spawn: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let fields = stdout
            .lines()
            .filter_map(|line| line.strip_prefix(RESULT))
            .flat_map(|rest| rest.split_whitespace())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Child { output, fields })
    }

    /// The Landlock ABI of this kernel, asked directly (not through the code under test).
    fn kernel_landlock_abi() -> Option<u32> {
        // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) reads no memory.
        let v = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
        u32::try_from(v).ok().filter(|&v| v > 0)
    }

    /// Collects failed expectations instead of stopping at the first.
    #[derive(Default)]
    struct Expect(Vec<String>);

    impl Expect {
        fn eq(&mut self, what: &str, got: &str, want: &str) {
            if got != want {
                self.0.push(format!("{what}: got {got}, want {want}"));
            }
        }

        fn that(&mut self, what: &str, ok: bool) {
            if !ok {
                self.0.push(what.to_owned());
            }
        }

        fn finish(self, child: &Child) -> Result<(), String> {
            if self.0.is_empty() { Ok(()) } else { Err(format!("{}\n{}", self.0.join("\n"), child.describe())) }
        }
    }

    fn expect_exit_ok(e: &mut Expect, child: &Child) {
        e.that(&format!("child exits 0 (status {:?})", child.output.status), child.output.status.success());
        if child.output.status.signal() == Some(libc::SIGSYS) {
            e.that(
                "killed by SIGSYS: a syscall the service needs is missing from seccomp_policy::ALLOWED; \
                 rerun the child with COS_SECCOMP_AUDIT=log and read `dmesg | grep type=1326`",
                false,
            );
        }
    }

    fn expect_report(e: &mut Expect, child: &Child, mode: &str) {
        e.eq("no_new_privs", child.field("no_new_privs"), "true");
        e.eq("seccomp", child.field("seccomp"), "true");
        e.eq("seccomp mode", child.field("mode"), mode);
        match kernel_landlock_abi() {
            Some(abi) if abi >= 2 => {
                e.eq("Landlock ABI", child.field("abi"), &abi.to_string());
                let status = child.field("landlock");
                e.that(
                    &format!("Landlock enforced on a kernel with ABI {abi} (got {status})"),
                    status == format!("{:?}", LandlockStatus::FullyEnforced)
                        || status == format!("{:?}", LandlockStatus::PartiallyEnforced),
                );
            }
            _ => e.eq("Landlock status", child.field("landlock"), &format!("{:?}", LandlockStatus::NotSupported)),
        }
    }

    fn landlock_enforced() -> bool {
        kernel_landlock_abi().is_some_and(|abi| abi >= 2)
    }

    fn service_round_trip_and_probes() -> Result<(), String> {
        let child = spawn("service", None)?;
        let mut e = Expect::default();
        expect_exit_ok(&mut e, &child);
        expect_report(&mut e, &child, &format!("{:?}", SeccompMode::Enforce));
        e.eq("5 MiB / 10 MiB round trips through the service after lock-down", child.field("roundtrip"), "ok");
        e.eq("self-test: every probe blocked", child.field("all_blocked"), "true");
        // seccomp refuses these before Landlock could: the errnos say who did.
        e.eq("TCP connect (socket(AF_INET) refused by seccomp)", child.field("tcp"), EPERM);
        e.eq("exec /bin/true (execve refused by seccomp)", child.field("exec"), ENOSYS);
        e.eq("fork (clone without CLONE_THREAD)", child.field("fork"), EPERM);
        e.eq("clone3 (ENOSYS so that glibc falls back to clone)", child.field("clone3"), ENOSYS);
        e.eq("UDP socket (not covered by Landlock before ABI 10)", child.field("udp"), EPERM);
        e.eq("AF_UNIX datagram socket (could sendto any socket path)", child.field("unix_dgram"), EPERM);
        e.eq(
            "the IPC transport's syscalls (SEQPACKET pair, SCM_RIGHTS, poll, getpeername), raw and through cos_ipc",
            child.field("ipc"),
            "ok",
        );
        if landlock_enforced() {
            e.eq("open /etc/passwd (Landlock)", child.field("open"), EACCES);
            e.eq("open /etc/passwd from a thread started after lock-down", child.field("thread_open"), EACCES);
            e.eq("create a file in the profile, outside <profile>/cos", child.field("write_outside"), EACCES);
        } else {
            eprintln!(
                "\n!!! LANDLOCK IS NOT SUPPORTED BY THIS KERNEL: filesystem confinement is NOT tested; \
                 only the seccomp parts are. open /etc/passwd was {}, writing outside the store {} !!!\n",
                child.field("open"),
                child.field("write_outside")
            );
        }
        e.finish(&child)
    }

    fn expect_sigsys(child: &Child) -> Result<(), String> {
        let mut e = Expect::default();
        e.that(
            &format!("killed by SIGSYS (status {:?}, signal {:?})", child.output.status, child.output.status.signal()),
            child.output.status.signal() == Some(libc::SIGSYS),
        );
        e.that("no result line: the process died at the syscall", !child.fields.contains_key("survived"));
        e.finish(child)
    }

    fn unlisted_syscall_kills_with_sigsys() -> Result<(), String> {
        expect_sigsys(&spawn("forbidden-syscall", None)?)
    }

    fn mmap_prot_exec_kills_with_sigsys() -> Result<(), String> {
        expect_sigsys(&spawn("prot-exec", None)?)
    }

    fn setpriority_on_another_process_kills_with_sigsys() -> Result<(), String> {
        let child = spawn("setpriority-other", None)?;
        let mut e = Expect::default();
        e.that(
            "its own thread's priority could be lowered first",
            String::from_utf8_lossy(&child.output.stdout).contains("own_thread_rc=0"),
        );
        e.finish(&child)?;
        expect_sigsys(&child)
    }

    fn panic_and_abort_work_under_the_policy() -> Result<(), String> {
        let child = spawn("panic-abort", None)?;
        let mut e = Expect::default();
        e.that(
            &format!("ended by SIGABRT (status {:?})", child.output.status),
            child.output.status.signal() == Some(libc::SIGABRT),
        );
        e.eq("the panicking thread was joined with an error", child.field("panicked_thread_joined"), "true");
        e.that(
            "the panic message reached stderr",
            String::from_utf8_lossy(&child.output.stderr).contains("deliberate panic inside the sandbox"),
        );
        e.finish(&child)
    }

    fn audit_mode_logs_instead_of_killing() -> Result<(), String> {
        let child = spawn("audit-log", Some("log"))?;
        if !cfg!(debug_assertions) {
            // Release builds ignore the switch: the unlisted syscall is fatal.
            return expect_sigsys(&child);
        }
        let mut e = Expect::default();
        expect_exit_ok(&mut e, &child);
        expect_report(&mut e, &child, &format!("{:?}", SeccompMode::AuditLog));
        e.eq("the unlisted getppid ran", child.field("survived"), "getppid");
        e.eq("getppid returned the parent's pid", child.field("rc"), &std::process::id().to_string());
        e.finish(&child)
    }

    type Case = fn() -> Result<(), String>;

    pub(super) fn run() -> ExitCode {
        let cases: &[(&str, Case)] = &[
            ("service_round_trip_and_probes", service_round_trip_and_probes),
            ("unlisted_syscall_kills_with_sigsys", unlisted_syscall_kills_with_sigsys),
            ("mmap_prot_exec_kills_with_sigsys", mmap_prot_exec_kills_with_sigsys),
            ("setpriority_on_another_process_kills_with_sigsys", setpriority_on_another_process_kills_with_sigsys),
            ("panic_and_abort_work_under_the_policy", panic_and_abort_work_under_the_policy),
            ("audit_mode_logs_instead_of_killing", audit_mode_logs_instead_of_killing),
        ];
        let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
        println!(
            "sandbox: kernel Landlock ABI {:?}; seccomp allowlist {} syscalls, {} errno rows",
            kernel_landlock_abi(),
            seccomp_policy::ALLOWED.len(),
            seccomp_policy::DENIED.len()
        );
        let (mut passed, mut failed) = (0, 0);
        for (name, case) in cases {
            if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            match case() {
                Ok(()) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Err(why) => {
                    println!("test {name} ... FAILED\n{why}");
                    failed += 1;
                }
            }
        }
        println!("{passed} passed, {failed} failed");
        if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}
