//! The storage service's sandbox (Linux): `no_new_privs`, Landlock, then seccomp.
//!
//! The service process bootstraps first — connects its IPC channel, receives its configuration,
//! opens the store ([`StorageService::open`](crate::StorageService::open)) — and then calls
//! [`lock_down`] once, before serving. From then on:
//!
//! - **Landlock** lets the process read and write only beneath the store directory and execute
//!   nothing anywhere; it refuses TCP bind/connect (ABI ≥ 4) and confines abstract UNIX sockets
//!   and signals to the sandbox (ABI ≥ 6).
//! - **seccomp** kills the process on any syscall outside [`seccomp_policy::ALLOWED`] and makes
//!   the ones an attacker reaches for first (network sockets, `connect`, `execve`, `fork`,
//!   `ptrace`, `mount`, …, see [`seccomp_policy::DENIED`]) fail with an errno.
//!
//! [`self_test`] proves it from inside the locked process: reading `/etc/passwd`, a TCP connect
//! and exec of `/bin/true` must all fail.
//!
//! # Threads
//!
//! seccomp is installed on every thread (`SECCOMP_FILTER_FLAG_TSYNC`). Landlock's
//! `landlock_restrict_self` restricts only the calling thread and the threads it starts later,
//! unless the kernel offers `LANDLOCK_RESTRICT_SELF_TSYNC` (ABI ≥ 8). So **call [`lock_down`]
//! before the process starts any thread** (an IPC reader, a thread pool, …). If other
//! threads already run and the kernel cannot restrict them too, [`lock_down`] refuses with
//! [`SandboxError::ThreadsAlreadyRunning`] rather than leave them outside the sandbox. Threads
//! started afterwards (the blob writer's I/O thread, request workers) inherit everything.
//!
//! # Kernels without Landlock
//!
//! The process continues under `no_new_privs` and seccomp, logs a `tracing::warn!` and reports
//! [`LandlockStatus::NotSupported`]. The same happens with Landlock ABI 1, which cannot permit the
//! store's rename from `swap/` into `blobs/` (renames across directories need ABI 2's `Refer`).
#![cfg(target_os = "linux")]

pub mod seccomp_policy;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, RestrictSelfAttr, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, make_bitflags,
};

pub use seccomp_policy::SeccompMode;

/// The newest Landlock ABI this build knows (the `landlock` crate's newest). Every filesystem and
/// network right and every scope of it is handled; the crate drops, best effort, what the running
/// kernel does not offer. Raise it together with the `landlock` dependency.
const LANDLOCK_TARGET_ABI: ABI = ABI::V10;

/// `landlock_create_ruleset` flag: return the ABI version instead of creating a ruleset.
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;

/// The first Landlock ABI able to restrict every thread of the process at once.
const LANDLOCK_ABI_TSYNC: u32 = 8;

/// What the store may do beneath its directory: everything the service needs, nothing it does not
/// (no `Execute`, no device ioctls, no special files, no symlinks).
const STORE_ACCESS: landlock::BitFlags<AccessFs> = make_bitflags!(AccessFs::{
    ReadFile | WriteFile | ReadDir | MakeReg | MakeDir | RemoveFile | RemoveDir | Truncate | Refer
});

/// Set by the first [`lock_down`]: a second one would trip the first one's seccomp policy, and
/// after a failed one the process is in an unknown state and must exit.
static LOCKED_DOWN: AtomicBool = AtomicBool::new(false);

/// How much of Landlock the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    /// Every right, network restriction and scope of the newest ABI the `landlock` crate knows
    /// (V10) is enforced.
    FullyEnforced,
    /// Enforced, without what the running kernel's ABI lacks (on ABI 7: without the ABI 9/10
    /// rights such as `ResolveUnix` and UDP). `SandboxReport::landlock_abi` tells which ABI.
    PartiallyEnforced,
    /// Not enforced: the kernel has no (enabled) Landlock, or only ABI 1. Logged as a warning.
    NotSupported,
}

/// What [`lock_down`] enforced, for the log and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxReport {
    /// `PR_SET_NO_NEW_PRIVS` is set (read back with `PR_GET_NO_NEW_PRIVS`).
    pub no_new_privs: bool,
    /// How much of Landlock is enforced.
    pub landlock: LandlockStatus,
    /// The kernel's Landlock ABI version, `None` without Landlock.
    pub landlock_abi: Option<u32>,
    /// The seccomp filters are installed on every thread.
    pub seccomp: bool,
    /// What unlisted syscalls do: [`SeccompMode::Enforce`] except in a debug build's audit mode.
    pub seccomp_mode: SeccompMode,
}

/// Why the process could not be locked down. The process must not serve after any of these.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// [`lock_down`] was already called in this process.
    #[error("lock_down was already called in this process; call it once, and exit if it fails")]
    AlreadyLockedDown,
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("prctl(PR_SET_NO_NEW_PRIVS) failed: {0}")]
    NoNewPrivs(#[source] io::Error),
    /// The process's threads could not be counted (is `/proc` mounted?).
    #[error(
        "cannot count this process's threads in /proc/self/task: {0}; mount /proc, or run on a kernel with \
         Landlock ABI ≥ 8"
    )]
    CountThreads(#[source] io::Error),
    /// Other threads already run and this kernel's Landlock can only restrict the calling one.
    #[error(
        "{threads} threads are running, but Landlock ABI {abi} restricts only the calling thread; \
         call lock_down before starting any thread (Landlock ABI ≥ 8 lifts this)"
    )]
    ThreadsAlreadyRunning {
        /// Threads in the process, the caller included.
        threads: usize,
        /// The kernel's Landlock ABI.
        abi: u32,
    },
    /// The store directory could not be opened to anchor the Landlock rule.
    #[error("cannot open the store directory {} for the Landlock rule: {source}; open the store before lock_down", path.display())]
    StoreDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: landlock::PathFdError,
    },
    /// Building or enforcing the Landlock ruleset failed.
    #[error("Landlock: {0}")]
    Landlock(#[from] RulesetError),
    /// The seccomp policy could not be compiled.
    #[error(transparent)]
    SeccompPolicy(#[from] seccomp_policy::PolicyError),
    /// Installing a seccomp filter failed (on a thread, with TSYNC: the thread id is named).
    #[error("installing the seccomp filter failed: {0}")]
    SeccompInstall(#[source] seccompiler::Error),
}

/// Locks the current process down: `PR_SET_NO_NEW_PRIVS`, then Landlock (file access only beneath
/// `store_dir`, nothing executable, no TCP, scoped abstract sockets and signals), then seccomp on
/// every thread (see [`seccomp_policy`]).
///
/// Call it once, after bootstrap (IPC connected, configuration received, store opened) and before
/// serving and **before starting any thread** (see the module documentation). `store_dir` is the
/// store's root, `<profile>/cos`, and must exist. The seccomp mode comes from
/// [`SeccompMode::from_env`] (always [`SeccompMode::Enforce`] in release builds).
///
/// On error the process may be partly restricted; it must exit rather than serve.
pub fn lock_down(store_dir: &Path) -> Result<SandboxReport, SandboxError> {
    if LOCKED_DOWN.swap(true, Ordering::SeqCst) {
        return Err(SandboxError::AlreadyLockedDown);
    }
    lock_down_once(store_dir)
}

fn lock_down_once(store_dir: &Path) -> Result<SandboxReport, SandboxError> {
    // Read before seccomp: the policy is built from it.
    let seccomp_mode = SeccompMode::from_env();

    // 1. no_new_privs: required for unprivileged Landlock and seccomp, and makes setuid binaries
    //    powerless should anything ever run.
    rustix::thread::set_no_new_privs(true).map_err(|errno| SandboxError::NoNewPrivs(errno.into()))?;
    let no_new_privs = rustix::thread::no_new_privs().unwrap_or(false);

    // 2. Landlock.
    let (landlock, landlock_abi) = apply_landlock(store_dir)?;

    // 3. seccomp, last: it forbids the Landlock syscalls, and `seccomp` itself.
    let programs = seccomp_policy::build_filters(seccomp_mode, std::process::id())?;
    for program in &programs {
        seccompiler::apply_filter_all_threads(program).map_err(SandboxError::SeccompInstall)?;
    }
    if seccomp_mode != SeccompMode::Enforce {
        tracing::warn!(
            mode = ?seccomp_mode,
            "SECCOMP AUDIT MODE: unlisted syscalls are {} instead of killing the process; never ship this",
            if seccomp_mode == SeccompMode::AuditLog { "logged (dmesg, type=1326)" } else { "trapped with SIGSYS" }
        );
    }

    let report = SandboxReport { no_new_privs, landlock, landlock_abi, seccomp: true, seccomp_mode };
    tracing::info!(?report, store = %store_dir.display(), "storage service locked down");
    Ok(report)
}

/// The kernel's Landlock ABI version, `None` if Landlock is absent or disabled. Used to decide
/// and to report, never to pick rights (the crate's best-effort mode does that).
fn kernel_landlock_abi() -> Option<u32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) reads no memory
    // and returns the ABI version (or -1 with ENOSYS/EOPNOTSUPP).
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).ok().filter(|&v| v > 0)
}

fn thread_count() -> Result<usize, SandboxError> {
    Ok(std::fs::read_dir("/proc/self/task").map_err(SandboxError::CountThreads)?.count())
}

fn apply_landlock(store_dir: &Path) -> Result<(LandlockStatus, Option<u32>), SandboxError> {
    let Some(abi) = kernel_landlock_abi() else {
        tracing::warn!(
            "LANDLOCK IS NOT AVAILABLE on this kernel (not built in, or not enabled at boot: add \
             `lsm=landlock,…`): the storage service runs WITHOUT filesystem confinement, under \
             seccomp only"
        );
        return Ok((LandlockStatus::NotSupported, None));
    };
    if abi < 2 {
        tracing::warn!(
            abi,
            "LANDLOCK ABI 1 cannot permit renames between directories, which the store needs \
             (swap/ → blobs/): the storage service runs WITHOUT filesystem confinement, under \
             seccomp only; a kernel ≥ 5.19 fixes this"
        );
        return Ok((LandlockStatus::NotSupported, Some(abi)));
    }
    // Only the calling thread and its future children are restricted below ABI 8: no other
    // thread may exist. (None can appear meanwhile: only an existing thread could start it.)
    let threads = thread_count()?;
    if threads > 1 && abi < LANDLOCK_ABI_TSYNC {
        return Err(SandboxError::ThreadsAlreadyRunning { threads, abi });
    }

    let store = PathFd::new(store_dir).map_err(|source| SandboxError::StoreDir { path: store_dir.into(), source })?;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        // Handling a right denies it everywhere except where a rule grants it: every filesystem
        // right (Execute included, granted nowhere), every network right (no rule: no TCP), and
        // the scopes (no abstract UNIX socket or signal outside this sandbox).
        .handle_access(AccessFs::from_all(LANDLOCK_TARGET_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_TARGET_ABI))?
        .scope(Scope::from_all(LANDLOCK_TARGET_ABI))?
        .create()?
        .add_rule(PathBeneath::new(&store, STORE_ACCESS))?
        // Asked only when needed: with a single thread there is nothing to synchronise.
        .all_threads(threads > 1)?
        .restrict_self()?;
    let landlock = match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::FullyEnforced,
        RulesetStatus::PartiallyEnforced => LandlockStatus::PartiallyEnforced,
        RulesetStatus::NotEnforced => {
            tracing::warn!(abi, "LANDLOCK WAS NOT ENFORCED although the kernel reports it; running under seccomp only");
            LandlockStatus::NotSupported
        }
    };
    Ok((landlock, Some(abi)))
}

/// The outcome of one [`self_test`] probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The operation failed with this errno.
    Blocked {
        /// The `errno` seen.
        errno: i32,
    },
    /// The operation succeeded: the sandbox has a hole.
    Allowed,
}

impl Probe {
    fn from_result<T>(result: io::Result<T>) -> Self {
        match result {
            Ok(_) => Self::Allowed,
            Err(error) => Self::Blocked { errno: error.raw_os_error().unwrap_or(0) },
        }
    }

    /// Whether the operation failed.
    pub fn is_blocked(&self) -> bool {
        matches!(self, Self::Blocked { .. })
    }
}

/// What [`self_test`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfTestReport {
    /// Opening `/etc/passwd` for reading (Landlock: `EACCES`).
    pub open_outside_store: Probe,
    /// A TCP connection to `127.0.0.1:<port>` (seccomp refuses the socket: `EPERM`).
    pub tcp_connect: Probe,
    /// `execve("/bin/true")` (seccomp: `ENOSYS`; Landlock alone: `EACCES`).
    pub exec: Probe,
}

impl SelfTestReport {
    /// Whether all three probes were blocked.
    pub fn all_blocked(&self) -> bool {
        self.open_outside_store.is_blocked() && self.tcp_connect.is_blocked() && self.exec.is_blocked()
    }
}

/// Probes the sandbox from inside a locked-down process: opens `/etc/passwd` for reading,
/// connects to `127.0.0.1:tcp_port` (a listener the caller opened before [`lock_down`], so that
/// only the sandbox can make the connect fail) and execs `/bin/true`.
///
/// Meant for a disposable process (a test, or a self-test run of the service binary): if exec
/// is *not* blocked, the process becomes `/bin/true` and exits 0 without returning here — the
/// caller must treat a missing report as a failure.
pub fn self_test(tcp_port: u16) -> SelfTestReport {
    let open_outside_store = Probe::from_result(std::fs::File::open("/etc/passwd"));
    let tcp_connect =
        Probe::from_result(TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, tcp_port)).map(drop));
    let exec = probe_exec();
    SelfTestReport { open_outside_store, tcp_connect, exec }
}

/// `execve("/bin/true", ["/bin/true"], [])` in this process. A direct execve, not
/// `std::process::Command`, whose `clone` would be refused before exec is even tried.
fn probe_exec() -> Probe {
    let path = c"/bin/true";
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: `path` is a NUL-terminated string, `argv` and `envp` are NULL-terminated arrays of
    // such strings, all alive for the call. On success the process image is replaced (documented
    // on `self_test`); on failure execve returns -1 and nothing changed.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Probe::Blocked { errno: io::Error::last_os_error().raw_os_error().unwrap_or(0) }
}
