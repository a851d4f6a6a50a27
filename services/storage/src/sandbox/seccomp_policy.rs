//! The storage service's seccomp policy: one allowlist table, one table of syscalls refused with
//! an errno, and the code that compiles them into BPF with `seccompiler`.
//!
//! # How the policy is enforced
//!
//! `seccompiler` gives a filter a single "match" action, but the policy needs three outcomes
//! (allow, `EPERM`, `ENOSYS`) besides the default. So [`build_filters`] compiles several filters
//! and the kernel runs all of them on every syscall, keeping the most severe verdict
//! (kill > trap > errno > log > allow):
//!
//! 1. one filter per errno of [`DENIED`]: match → `Errno(e)`, anything else → allow;
//! 2. the allowlist, installed last: [`ALLOWED`] (with its argument conditions) plus every
//!    syscall named in [`DENIED`] → allow; anything else → the [`SeccompMode`]'s default
//!    (kill the process with `SIGSYS` in production).
//!
//! A syscall in [`DENIED`] therefore returns its errno (errno beats allow), and everything that is
//! in neither table kills the process (kill beats everything). The allowlist goes last so that the
//! `seccomp(2)` calls installing the others are still permitted.
//!
//! The argument checks compare the low 32 bits (`Dword`): the kernel truncates these arguments
//! the same way (socket domain and type, `fcntl` command, `mmap`/`mprotect` protection, `prctl`
//! option and `tgkill` tgid are `int`s; legacy `clone` keeps only the lower 32 bits of its flags),
//! so junk in the upper half cannot smuggle a value past a check.

use std::collections::BTreeMap;

use libc::{
    AF_UNIX, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS,
    CLONE_THREAD, ENOSYS, EPERM, F_ADD_SEALS, F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL, F_GETLK, F_OFD_GETLK,
    F_OFD_SETLK, F_OFD_SETLKW, F_SETFD, F_SETFL, F_SETLK, F_SETLKW, MFD_ALLOW_SEALING, MFD_CLOEXEC, PR_GET_NAME,
    PR_SET_NAME, SOCK_SEQPACKET,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// The socket type field of `socket`'s and `socketpair`'s second argument (the rest are flags).
const SOCK_TYPE_MASK: u64 = 0xf;

/// The environment variable that selects an audit mode in debug builds (see [`SeccompMode`]).
pub const AUDIT_ENV: &str = "COS_SECCOMP_AUDIT";

/// What happens to a syscall that is in neither table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// Production: the whole process is killed with `SIGSYS` (`SECCOMP_RET_KILL_PROCESS`).
    Enforce,
    /// Development: the syscall is allowed and the kernel logs it (`SECCOMP_RET_LOG`; read it with
    /// `dmesg | grep 'type=1326'`, the `syscall=` field is the number). Finds every missing
    /// syscall of a run at once.
    AuditLog,
    /// Development: the process receives `SIGSYS` (`SECCOMP_RET_TRAP`), which by default
    /// terminates it with a core dump — under a debugger, the faulting call site is on the stack.
    AuditTrap,
}

impl SeccompMode {
    /// Reads [`AUDIT_ENV`] (`log` or `trap`). Only debug builds honour it: a release build always
    /// enforces, so whoever controls the service's environment cannot switch the sandbox off.
    /// An unrecognised value enforces too (fail closed) and says so.
    pub fn from_env() -> Self {
        let Some(value) = std::env::var_os(AUDIT_ENV) else { return Self::Enforce };
        if !cfg!(debug_assertions) {
            tracing::warn!("{AUDIT_ENV} is ignored in release builds; the seccomp policy is enforced");
            return Self::Enforce;
        }
        match value.to_str() {
            Some("log") => Self::AuditLog,
            Some("trap") => Self::AuditTrap,
            _ => {
                tracing::warn!(?value, "{AUDIT_ENV} must be `log` or `trap`; enforcing the seccomp policy");
                Self::Enforce
            }
        }
    }

    fn default_action(self) -> SeccompAction {
        match self {
            Self::Enforce => SeccompAction::KillProcess,
            Self::AuditLog => SeccompAction::Log,
            Self::AuditTrap => SeccompAction::Trap,
        }
    }
}

/// When an [`ALLOWED`] syscall is allowed. Outside the condition the default action applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Whatever the arguments.
    Always,
    /// Only if argument `.0` (low 32 bits) is one of these values.
    ArgIn(u8, &'static [u64]),
    /// Only if every listed argument (low 32 bits) has its value.
    ArgsAre(&'static [(u8, u64)]),
    /// Only if the protection argument (`arg2` of `mmap`/`mprotect`) lacks `PROT_EXEC`: the
    /// service never creates code after start-up, so no injected payload can be made executable.
    NoProtExec,
    /// Only if the first argument is this process's pid (`tgkill(getpid(), tid, sig)`): a thread
    /// may signal its own process (abort, panics), never another one. `fork` is refused, so the
    /// pid captured when the filter is built stays right.
    Arg0IsOwnPid,
}

/// One allowlist row.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// The syscall number (`libc::SYS_*`).
    pub nr: i64,
    /// Its name, for messages and audits.
    pub name: &'static str,
    /// The argument condition.
    pub when: When,
    /// Who needs it.
    pub why: &'static str,
}

/// When a [`DENIED`] syscall is refused. Outside the condition the allowlist decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyWhen {
    /// Whatever the arguments.
    Always,
    /// If the first argument (low 32 bits) is not this value.
    Arg0Not(u64),
    /// If this flag is clear in the first argument.
    Arg0FlagClear(u64),
    /// If any of these flags is set in the first argument.
    Arg0AnyFlagSet(&'static [u64]),
    /// If the socket type (second argument, without `SOCK_CLOEXEC`/`SOCK_NONBLOCK`) is not this.
    SocketTypeNot(u64),
}

/// One row of the syscalls that fail with an errno instead of killing the process: what the
/// self-test probes and what an attacker reaches for first, so both see a clean failure.
#[derive(Debug, Clone, Copy)]
pub struct Denied {
    /// The syscall number (`libc::SYS_*`).
    pub nr: i64,
    /// Its name.
    pub name: &'static str,
    /// The errno returned.
    pub errno: i32,
    /// The condition.
    pub when: DenyWhen,
    /// Why it is refused this way.
    pub why: &'static str,
}

const fn allow(nr: i64, name: &'static str, why: &'static str) -> Allowed {
    Allowed { nr, name, when: When::Always, why }
}

const fn allow_if(nr: i64, name: &'static str, when: When, why: &'static str) -> Allowed {
    Allowed { nr, name, when, why }
}

const fn deny(nr: i64, name: &'static str, errno: i32, when: DenyWhen, why: &'static str) -> Denied {
    Denied { nr, name, errno, when, why }
}

/// The fcntl commands the service issues: descriptor flags, duplication, the byte-range locks
/// redb takes, and sealing the memory copies whole reads hand out. Not: F_SETOWN/F_SETSIG
/// (signals), F_SETLEASE, F_NOTIFY, pipe sizes.
const FCNTL_COMMANDS: &[u64] = &[
    F_GETFD as u64,
    F_SETFD as u64,
    F_GETFL as u64,
    F_SETFL as u64,
    F_DUPFD as u64,
    F_DUPFD_CLOEXEC as u64,
    F_GETLK as u64,
    F_SETLK as u64,
    F_SETLKW as u64,
    F_OFD_GETLK as u64,
    F_OFD_SETLK as u64,
    F_OFD_SETLKW as u64,
    F_ADD_SEALS as u64,
];

/// The allowlist: every syscall the sandboxed service may make, and who needs it. Paths are
/// further confined by Landlock to the store directory; sockets by [`DENIED`].
#[rustfmt::skip]
pub const ALLOWED: &[Allowed] = &[
    // ── I/O on descriptors ───────────────────────────────────────────────────────────────────
    allow(libc::SYS_read,            "read",            "std::io::Read on files and sockets"),
    allow(libc::SYS_write,           "write",           "file writes; stderr (logs, panic messages)"),
    allow(libc::SYS_readv,           "readv",           "std's vectored reads"),
    allow(libc::SYS_writev,          "writev",          "std's vectored writes"),
    allow(libc::SYS_pread64,         "pread64",         "redb pages; FileReader::read_at; close() re-hashing"),
    allow(libc::SYS_pwrite64,        "pwrite64",        "redb pages; the blob writer's write_all_at"),
    allow(libc::SYS_lseek,           "lseek",           "std Seek on files"),
    allow(libc::SYS_close,           "close",           "every descriptor"),
    allow(libc::SYS_dup,             "dup",             "descriptor duplication"),
    allow(libc::SYS_dup3,            "dup3",            "descriptor duplication with O_CLOEXEC"),
    allow_if(libc::SYS_fcntl,        "fcntl",           When::ArgIn(1, FCNTL_COMMANDS),
                                                        "std (F_GETFD, F_DUPFD_CLOEXEC); redb's OFD range locks; sealing a copy"),
    allow(libc::SYS_flock,           "flock",           "redb's whole-file lock: one process per profile"),
    allow(libc::SYS_fstat,           "fstat",           "file sizes and types (std metadata, redb)"),
    allow(libc::SYS_newfstatat,      "newfstatat",      "glibc's stat/lstat (Path::is_dir, metadata)"),
    allow(libc::SYS_statx,           "statx",           "std's metadata, tried first"),
    allow(libc::SYS_fsync,           "fsync",           "directory fsync after the install rename; redb"),
    allow(libc::SYS_fdatasync,       "fdatasync",       "swap file before install; redb commits"),
    allow(libc::SYS_sync_file_range, "sync_file_range", "the blob writer's writeback hint every 8 MiB"),
    allow(libc::SYS_sendfile,        "sendfile",        "filling a sealed copy from a blob whose identity is unchanged"),
    allow(libc::SYS_ftruncate,       "ftruncate",       "WritableFile::truncate; redb file growth; sizing a sealed copy"),
    allow_if(libc::SYS_memfd_create, "memfd_create",    When::ArgsAre(&[(1, (MFD_CLOEXEC | MFD_ALLOW_SEALING) as u64)]),
                                                        "the sealed copies whole reads hand out (close-on-exec, sealable; never exec)"),
    // ── paths (Landlock confines them to the store directory) ───────────────────────────────
    allow(libc::SYS_openat,          "openat",          "store files and directories (glibc's open)"),
    allow(libc::SYS_getdents64,      "getdents64",      "read_dir: recovery, orphan sweep, swap cleanup"),
    allow(libc::SYS_mkdirat,         "mkdirat",         "blob shard directories"),
    allow(libc::SYS_unlinkat,        "unlinkat",        "remove_dir_all (swap cleanup), clear-site-data"),
    allow(libc::SYS_renameat,        "renameat",        "install a verified swap file into blobs/"),
    allow(libc::SYS_renameat2,       "renameat2",       "the same, as newer libcs issue it"),
    allow(libc::SYS_linkat,          "linkat",          "a writer's own name for a swap file it shares (std's hard_link)"),
    #[cfg(target_arch = "x86_64")]
    allow(libc::SYS_mkdir,           "mkdir",           "x86_64 glibc's mkdir() (create_dir_all)"),
    #[cfg(target_arch = "x86_64")]
    allow(libc::SYS_rmdir,           "rmdir",           "x86_64 glibc's rmdir() (remove_dir)"),
    #[cfg(target_arch = "x86_64")]
    allow(libc::SYS_unlink,          "unlink",          "x86_64 glibc's unlink() (remove_file)"),
    #[cfg(target_arch = "x86_64")]
    allow(libc::SYS_rename,          "rename",          "x86_64 glibc's rename(): the blob install"),
    // ── memory ───────────────────────────────────────────────────────────────────────────────
    allow_if(libc::SYS_mmap,         "mmap",            When::NoProtExec,
                                                        "allocator, thread stacks"),
    allow_if(libc::SYS_mprotect,     "mprotect",        When::NoProtExec, "thread stack guard pages"),
    allow(libc::SYS_munmap,          "munmap",          "allocator; thread stacks at exit"),
    allow(libc::SYS_madvise,         "madvise",         "allocator trimming; glibc frees exited stacks"),
    allow(libc::SYS_mremap,          "mremap",          "allocator growing large buffers"),
    allow(libc::SYS_brk,             "brk",             "allocator heap"),
    // ── threads and synchronisation ──────────────────────────────────────────────────────────
    allow(libc::SYS_clone,           "clone",           "std::thread::spawn (processes: EPERM, DENIED)"),
    allow(libc::SYS_futex,           "futex",           "every lock, condvar, channel and join"),
    allow(libc::SYS_set_robust_list, "set_robust_list", "glibc, at the start of every thread"),
    allow(libc::SYS_rseq,            "rseq",            "glibc, at the start of every thread"),
    allow(libc::SYS_sched_getaffinity, "sched_getaffinity", "glibc's pthread_getattr_np (std's new threads)"),
    allow(libc::SYS_sched_yield,     "sched_yield",     "spinning locks and channels back off"),
    allow(libc::SYS_gettid,          "gettid",          "thread ids (abort, logs)"),
    // `PRIO_PROCESS` with `who = 0` is the calling thread (Linux keeps nice values per thread):
    // a compromised service may lower its own threads, never touch another process or group.
    allow_if(libc::SYS_setpriority,  "setpriority",     When::ArgsAre(&[(0, libc::PRIO_PROCESS as u64), (1, 0)]),
                                                        "data-pipe threads lower their own priority"),
    allow(libc::SYS_getpid,          "getpid",          "swap file names <pid>-<n>.tmp; abort"),
    allow_if(libc::SYS_tgkill,       "tgkill",          When::Arg0IsOwnPid, "abort() signals its own thread"),
    allow_if(libc::SYS_prctl,        "prctl",           When::ArgIn(0, &[PR_SET_NAME as u64, PR_GET_NAME as u64]),
                                                        "thread names, set by std in the new thread"),
    allow(libc::SYS_exit,            "exit",            "a thread ends"),
    allow(libc::SYS_exit_group,      "exit_group",      "the process ends"),
    allow(libc::SYS_restart_syscall, "restart_syscall", "the kernel resumes a sleep cut by a signal"),
    // ── time and randomness ──────────────────────────────────────────────────────────────────
    allow(libc::SYS_clock_gettime,   "clock_gettime",   "Instant/SystemTime when the vDSO falls back"),
    #[cfg(target_arch = "x86_64")]
    allow(libc::SYS_gettimeofday,    "gettimeofday",    "the same, older interface"),
    allow(libc::SYS_clock_nanosleep, "clock_nanosleep", "thread::sleep"),
    allow(libc::SYS_nanosleep,       "nanosleep",       "thread::sleep, older libcs"),
    allow(libc::SYS_getrandom,       "getrandom",       "HashMap keys, per thread; GREASE draws (flags 0)"),
    // ── signals ──────────────────────────────────────────────────────────────────────────────
    allow(libc::SYS_rt_sigaction,    "rt_sigaction",    "glibc's SIGRT handlers at first thread; abort()"),
    allow(libc::SYS_rt_sigprocmask,  "rt_sigprocmask",  "glibc masks signals around clone; abort()"),
    allow(libc::SYS_rt_sigreturn,    "rt_sigreturn",    "return from any signal handler"),
    allow(libc::SYS_sigaltstack,     "sigaltstack",     "std's overflow-detection stack, every thread"),
    // ── waiting ──────────────────────────────────────────────────────────────────────────────
    #[cfg(target_arch = "x86_64")]
    allow(libc::SYS_poll,            "poll",            "cos_ipc waits on its endpoint (recv_timeout)"),
    allow(libc::SYS_ppoll,           "ppoll",           "the same where poll() is ppoll"),
    // ── IPC with the browser: AF_UNIX SOCK_SEQPACKET only (DENIED refuses the rest) ─────────
    allow(libc::SYS_socket,          "socket",          "an unconnected SEQPACKET socket is inert (no connect)"),
    allow(libc::SYS_socketpair,      "socketpair",      "cos_ipc's Endpoint::pair: new pipes to hand out"),
    allow(libc::SYS_sendmsg,         "sendmsg",         "cos_ipc sends bytes and endpoints (SCM_RIGHTS)"),
    allow(libc::SYS_recvmsg,         "recvmsg",         "cos_ipc receives bytes and endpoints"),
    allow(libc::SYS_sendto,          "sendto",          "send() on a connected socket"),
    allow(libc::SYS_recvfrom,        "recvfrom",        "recv() on a connected socket"),
    allow(libc::SYS_shutdown,        "shutdown",        "cos_ipc's Endpoint::shutdown"),
    allow(libc::SYS_getsockopt,      "getsockopt",      "cos_ipc: SO_SNDBUF; SO_DOMAIN/SO_TYPE of received fds"),
    allow(libc::SYS_setsockopt,      "setsockopt",      "cos_ipc raises SO_SNDBUF on new pairs"),
    allow(libc::SYS_getpeername,     "getpeername",     "cos_ipc checks a received endpoint is connected"),
];

/// Syscalls that fail with an errno (the allowlist passes them, this table refuses them).
#[rustfmt::skip]
pub const DENIED: &[Denied] = &[
    // No network. Only SOCK_SEQPACKET: a datagram AF_UNIX socket could sendto() any socket path
    // (Landlock covers that only from ABI 9), a stream one is useless without connect.
    deny(libc::SYS_socket,     "socket",     EPERM,  DenyWhen::Arg0Not(AF_UNIX as u64), "no TCP/UDP/netlink/raw"),
    deny(libc::SYS_socket,     "socket",     EPERM,  DenyWhen::SocketTypeNot(SOCK_SEQPACKET as u64),
                                                     "no AF_UNIX datagrams to arbitrary paths"),
    deny(libc::SYS_socketpair, "socketpair", EPERM,  DenyWhen::Arg0Not(AF_UNIX as u64), "the same"),
    deny(libc::SYS_socketpair, "socketpair", EPERM,  DenyWhen::SocketTypeNot(SOCK_SEQPACKET as u64), "the same"),
    deny(libc::SYS_connect,    "connect",    ENOSYS, DenyWhen::Always, "the bootstrap connect came before"),
    deny(libc::SYS_bind,       "bind",       ENOSYS, DenyWhen::Always, "the service offers nothing"),
    deny(libc::SYS_listen,     "listen",     ENOSYS, DenyWhen::Always, "the service offers nothing"),
    deny(libc::SYS_accept,     "accept",     ENOSYS, DenyWhen::Always, "the service offers nothing"),
    deny(libc::SYS_accept4,    "accept4",    ENOSYS, DenyWhen::Always, "the service offers nothing"),
    // No new programs or processes (Landlock refuses Execute everywhere too).
    deny(libc::SYS_execve,     "execve",     ENOSYS, DenyWhen::Always, "no new programs"),
    deny(libc::SYS_execveat,   "execveat",   ENOSYS, DenyWhen::Always, "no new programs, not from a memfd either"),
    #[cfg(target_arch = "x86_64")]
    deny(libc::SYS_fork,       "fork",       ENOSYS, DenyWhen::Always, "no new processes"),
    #[cfg(target_arch = "x86_64")]
    deny(libc::SYS_vfork,      "vfork",      ENOSYS, DenyWhen::Always, "no new processes"),
    deny(libc::SYS_clone,      "clone",      EPERM,  DenyWhen::Arg0FlagClear(CLONE_THREAD as u64),
                                                     "threads yes, processes no"),
    deny(libc::SYS_clone,      "clone",      EPERM,  DenyWhen::Arg0AnyFlagSet(&[
                                                         CLONE_NEWNS as u64, CLONE_NEWCGROUP as u64,
                                                         CLONE_NEWUTS as u64, CLONE_NEWIPC as u64,
                                                         CLONE_NEWUSER as u64, CLONE_NEWPID as u64,
                                                         CLONE_NEWNET as u64,
                                                     ]), "no namespaces, not even with a thread"),
    deny(libc::SYS_clone3,     "clone3",     ENOSYS, DenyWhen::Always,
                                                     "flags in memory BPF cannot read; glibc falls back to clone"),
    // Information from outside the store. std's panic backtrace asks for both; an errno lets
    // the panic message and an address-only backtrace out instead of a SIGSYS mid-panic.
    deny(libc::SYS_getcwd,     "getcwd",     EPERM,  DenyWhen::Always, "the working directory is outside the store"),
    #[cfg(target_arch = "x86_64")]
    deny(libc::SYS_readlink,   "readlink",   EPERM,  DenyWhen::Always, "symlink targets: a path leak Landlock misses"),
    deny(libc::SYS_readlinkat, "readlinkat", EPERM,  DenyWhen::Always, "the same"),
    // No inspecting other processes, no changing the filesystem view or namespaces.
    deny(libc::SYS_ptrace,     "ptrace",     ENOSYS, DenyWhen::Always, "no debugging other processes"),
    deny(libc::SYS_mount,      "mount",      ENOSYS, DenyWhen::Always, "no filesystem view changes"),
    deny(libc::SYS_umount2,    "umount2",    ENOSYS, DenyWhen::Always, "no filesystem view changes"),
    deny(libc::SYS_unshare,    "unshare",    ENOSYS, DenyWhen::Always, "no namespaces"),
    deny(libc::SYS_setns,      "setns",      ENOSYS, DenyWhen::Always, "no namespaces"),
    deny(libc::SYS_chroot,     "chroot",     ENOSYS, DenyWhen::Always, "no filesystem view changes"),
    deny(libc::SYS_pivot_root, "pivot_root", ENOSYS, DenyWhen::Always, "no filesystem view changes"),
];

/// Why a policy could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// This CPU architecture has no seccompiler backend (x86_64, aarch64 and riscv64 have one).
    #[error("seccomp: unsupported architecture {0}: {1}")]
    Arch(&'static str, seccompiler::BackendError),
    /// seccompiler refused a rule or filter (a bug in the tables above).
    #[error("seccomp: invalid policy: {0}")]
    Invalid(#[from] seccompiler::BackendError),
}

/// Compiles the policy into BPF programs, in the order they must be installed (the errno filters
/// first, the allowlist last). `own_pid` feeds [`When::Arg0IsOwnPid`].
pub fn build_filters(mode: SeccompMode, own_pid: u32) -> Result<Vec<BpfProgram>, PolicyError> {
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).map_err(|e| PolicyError::Arch(std::env::consts::ARCH, e))?;
    let mut programs = Vec::new();

    // One filter per errno: a filter has a single match action.
    let mut errnos: Vec<i32> = DENIED.iter().map(|d| d.errno).collect();
    errnos.sort_unstable();
    errnos.dedup();
    for errno in errnos {
        let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
        for denied in DENIED.iter().filter(|d| d.errno == errno) {
            // `None` = unconditional; an unconditional row wins over conditional ones.
            let entry = rules.entry(denied.nr).or_insert_with(|| Some(Vec::new()));
            match (deny_rules(denied.when)?, entry.as_mut()) {
                (None, _) => *entry = None,
                (Some(more), Some(existing)) => existing.extend(more),
                (Some(_), None) => {}
            }
        }
        let rules = rules.into_iter().map(|(nr, rules)| (nr, rules.unwrap_or_default())).collect();
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)?;
        programs.push(BpfProgram::try_from(filter)?);
    }

    // The allowlist. DENIED syscalls pass unconditionally: the errno filters decide them.
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for allowed in ALLOWED {
        rules.insert(allowed.nr, allow_rules(allowed.when, own_pid)?);
    }
    for denied in DENIED {
        rules.insert(denied.nr, Vec::new());
    }
    let filter = SeccompFilter::new(rules, mode.default_action(), SeccompAction::Allow, arch)?;
    programs.push(BpfProgram::try_from(filter)?);
    Ok(programs)
}

/// The rule chain of an allowlist row (empty = unconditional).
fn allow_rules(when: When, own_pid: u32) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    Ok(match when {
        When::Always => Vec::new(),
        When::ArgIn(index, values) => values
            .iter()
            .map(|&v| {
                SeccompRule::new(vec![SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)?])
            })
            .collect::<Result<_, _>>()?,
        When::ArgsAre(conditions) => vec![SeccompRule::new(
            conditions
                .iter()
                .map(|&(index, value)| SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value))
                .collect::<Result<_, _>>()?,
        )?],
        When::NoProtExec => {
            let exec = libc::PROT_EXEC as u64;
            vec![SeccompRule::new(vec![SeccompCondition::new(
                2,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(exec),
                0,
            )?])?]
        }
        When::Arg0IsOwnPid => vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            u64::from(own_pid),
        )?])?],
    })
}

/// The rule chain of a denial row; `None` = unconditional.
fn deny_rules(when: DenyWhen) -> Result<Option<Vec<SeccompRule>>, seccompiler::BackendError> {
    let masked = |index: u8, mask: u64, value: u64| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(mask), value)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    Ok(match when {
        DenyWhen::Always => None,
        DenyWhen::Arg0Not(value) => Some(vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            value,
        )?])?]),
        DenyWhen::Arg0FlagClear(flag) => Some(vec![masked(0, flag, 0)?]),
        DenyWhen::Arg0AnyFlagSet(flags) => Some(flags.iter().map(|&f| masked(0, f, f)).collect::<Result<_, _>>()?),
        // BPF has no "masked not-equal": one rule per other value of the 4-bit type field.
        DenyWhen::SocketTypeNot(wanted) => Some(
            (0..=SOCK_TYPE_MASK)
                .filter(|&t| t != wanted)
                .map(|t| masked(1, SOCK_TYPE_MASK, t))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syscall_is_listed_once_and_conditions_do_not_overlap() {
        let mut seen = std::collections::HashSet::new();
        for allowed in ALLOWED {
            assert!(seen.insert(allowed.nr), "{} listed twice in ALLOWED", allowed.name);
            assert!(!allowed.why.is_empty());
        }
        for denied in DENIED {
            // The allowlist passes a denied syscall whatever its arguments; a conditional allow
            // row for it would be silently overridden.
            if let Some(allowed) = ALLOWED.iter().find(|a| a.nr == denied.nr) {
                assert_eq!(allowed.when, When::Always, "{} is conditional in ALLOWED and in DENIED", denied.name);
            }
        }
    }

    #[test]
    fn the_policy_compiles_for_every_mode() {
        for mode in [SeccompMode::Enforce, SeccompMode::AuditLog, SeccompMode::AuditTrap] {
            let programs = build_filters(mode, 1234).unwrap();
            assert_eq!(programs.len(), 3, "ENOSYS filter, EPERM filter, allowlist");
            // A BPF program is limited to 4096 instructions.
            assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        }
    }
}
