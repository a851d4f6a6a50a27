//! Child-process launch and bootstrap (self-exec with `--type=` and a one-shot token).
//!
//! ```text
//!  launcher                                   child (same binary)
//!  socketpair() ── child end dup2'ed to fd 3 ──► bootstrap_from_args(): takes fd 3,
//!  exec self --type=T --ipc-token=HEX ...          sends HEX as its first message
//!  launch() waits for HEX ◄───────────────────────┘
//! ```
//!
//! The child gets a clean environment (only `RUST_LOG`, `RUST_BACKTRACE` and `PATH`), no
//! descriptor besides stdio and fd 3 (our own descriptors are close-on-exec, and those the
//! launcher inherited without the flag are marked close-on-exec in the child before the exec),
//! and `PR_SET_PDEATHSIG = SIGKILL`, so it dies
//! with its launcher. Linux sends that signal when the *thread* that forked exits, so every child
//! is forked by one dedicated launcher thread that lives as long as the process: callers may
//! launch from short-lived threads.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::{Endpoint, IpcError};

/// The descriptor number at which a launched child finds its end of the pipe.
pub const CHILD_ENDPOINT_FD: RawFd = 3;
/// Environment variables forwarded to children; everything else is cleared so no secret or
/// configuration of the browser leaks into a less trusted process.
pub const FORWARDED_ENV: [&str; 3] = ["RUST_LOG", "RUST_BACKTRACE", "PATH"];
const TYPE_FLAG: &str = "--type=";
const TOKEN_FLAG: &str = "--ipc-token=";
const TOKEN_BYTES: usize = 16;

/// What to launch.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// The executable; defaults to the current one (self-exec).
    pub program: PathBuf,
    /// Passed as `--type=<process_type>`; the child dispatches on it.
    pub process_type: String,
    /// Passed after the bootstrap flags and handed to the child as [`ChildBootstrap::args`].
    pub extra_args: Vec<String>,
    /// How long [`launch`] waits for the child's token (default 10 s) before killing it.
    pub handshake_timeout: Duration,
}

impl LaunchOptions {
    /// Options to self-exec as `process_type`, no extra arguments, 10 s handshake timeout.
    pub fn new(process_type: impl Into<String>) -> Self {
        LaunchOptions {
            // /proc/self/exe still works when current_exe() cannot name the binary.
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            process_type: process_type.into(),
            extra_args: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A child that completed the handshake.
///
/// Dropping it neither kills nor reaps the child (the pipe's disconnect tells the child to go);
/// call [`kill`](LaunchedChild::kill) and [`wait`](LaunchedChild::wait) to be sure it is gone.
pub struct LaunchedChild {
    child: Child,
    endpoint: Option<Endpoint>,
}

impl LaunchedChild {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The launcher's end of the pipe. Panics if [`take_endpoint`](Self::take_endpoint) was called.
    pub fn endpoint(&self) -> &Endpoint {
        self.endpoint.as_ref().expect("LaunchedChild::endpoint: the endpoint was taken")
    }

    /// Takes the launcher's end of the pipe. Panics if already taken.
    pub fn take_endpoint(&mut self) -> Endpoint {
        self.endpoint.take().expect("LaunchedChild::take_endpoint: the endpoint was already taken")
    }

    /// Sends SIGKILL (Ok if the child already exited).
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Reaps the child if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }
}

impl fmt::Debug for LaunchedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchedChild").field("pid", &self.pid()).field("endpoint", &self.endpoint).finish()
    }
}

/// Launches a child process and waits for its handshake.
///
/// The child runs `options.program --type=<process_type> --ipc-token=<32 hex> <extra_args>` with
/// its end of a fresh socketpair at descriptor [`CHILD_ENDPOINT_FD`], and must call
/// [`bootstrap_from_args`]. Errors (the child is killed and reaped in each case):
/// - [`IpcError::Timeout`]: no first message within `handshake_timeout`;
/// - [`IpcError::Disconnected`]: the child exited (or closed the pipe) before the handshake;
/// - [`IpcError::BadAttachment`]`("handshake token mismatch")`: the first message was not the
///   token (so the process on the other end is not the child we started, or it is broken) —
///   peer misbehaviour, like any other bad first message;
/// - [`IpcError::Io`]: the process could not be spawned (or the options are unusable).
pub fn launch(options: &LaunchOptions) -> Result<LaunchedChild, IpcError> {
    if options.process_type.is_empty() || options.process_type.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "process_type must be non-empty without NUL").into());
    }
    reserve_child_endpoint_fd();
    let (parent_end, child_end) = Endpoint::pair()?;
    let child_end = child_end.into_owned_fd()?;
    let token = random_token()?;

    let mut command = Command::new(&options.program);
    command
        .arg(format!("{TYPE_FLAG}{}", options.process_type))
        .arg(format!("{TOKEN_FLAG}{token}"))
        .args(&options.extra_args)
        .env_clear()
        .stdin(Stdio::null());
    for name in FORWARDED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let child_fd = child_end.as_raw_fd();
    let launcher_pid = std::process::id();
    // SAFETY: `prepare_child` only makes async-signal-safe system calls (prctl, getppid, dup2,
    // fcntl, close_range, getrlimit) and allocates nothing, as required between fork and exec.
    // `child_fd` stays open until `spawn` returns, because `child_end` is moved into the
    // launcher job and dropped only after spawning.
    unsafe {
        command.pre_exec(move || prepare_child(child_fd, launcher_pid));
    }
    let mut child = spawn_on_launcher_thread(command, child_end)?;
    tracing::debug!(pid = child.id(), process_type = %options.process_type, "launched child, awaiting handshake");

    let handshake = match parent_end.recv_timeout(options.handshake_timeout) {
        Ok(message) if message.attachments.is_empty() && message.bytes == token.as_bytes() => Ok(()),
        Ok(_) => Err(IpcError::BadAttachment("handshake token mismatch")),
        Err(err) => Err(err),
    };
    if let Err(err) = handshake {
        tracing::warn!(pid = child.id(), error = %err, "child failed the launch handshake; killing it");
        let _ = child.kill();
        let _ = child.wait();
        return Err(err);
    }
    Ok(LaunchedChild { child, endpoint: Some(parent_end) })
}

/// Runs in the child between fork and exec: only async-signal-safe calls, no allocation (an
/// `io::Error` built from an errno does not allocate).
///
/// These stay raw `libc` calls: they act on descriptor *numbers* this process does not own
/// (fd 3, every number above it, numbers that may be closed), which a safe wrapper could only
/// reach through `BorrowedFd::borrow_raw` (an unchecked claim, and a false one for closed numbers), and
/// between fork and exec the calls must be the plain async-signal-safe libc ones.
fn prepare_child(child_fd: RawFd, launcher_pid: u32) -> io::Result<()> {
    // SAFETY: plain system calls on integers and a stack-allocated rlimit.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The launcher may have died before prctl took effect; then nothing would kill us.
        if libc::getppid() as u32 != launcher_pid {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // std reports exec failures through a close-on-exec pipe; were that pipe at our fixed
        // number, dup2 would replace it (spawn would then report success early and an exec
        // failure would reach the launcher as a bad handshake). `reserve_child_endpoint_fd`
        // keeps fd 3 occupied in the launcher so the pipe cannot be created there.
        if child_fd != CHILD_ENDPOINT_FD && libc::dup2(child_fd, CHILD_ENDPOINT_FD) < 0 {
            return Err(io::Error::last_os_error());
        }
        // Inherit exactly this one descriptor (dup2 clears the flag, but not when the numbers
        // were already equal).
        if libc::fcntl(CHILD_ENDPOINT_FD, libc::F_SETFD, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        // Descriptors this process itself inherited without close-on-exec (a shell's or build
        // tool's) would otherwise leak into the child: mark everything above ours close-on-exec.
        // Marking rather than closing keeps std's exec-error pipe working until the exec.
        let first = (CHILD_ENDPOINT_FD + 1) as libc::c_uint;
        if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernels before 5.11: one fcntl per possible descriptor, bounded.
            let mut limit: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(FALLBACK_FD_SCAN_LIMIT) as RawFd
            } else {
                FALLBACK_FD_SCAN_LIMIT as RawFd
            };
            for fd in first as RawFd..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC); // EBADF for unused numbers
            }
        }
    }
    Ok(())
}

/// How many descriptor numbers the pre-5.11 fallback marks close-on-exec.
const FALLBACK_FD_SCAN_LIMIT: libc::rlim_t = 1 << 16;

/// Keeps descriptor 3 occupied in the launcher (by /dev/null, close-on-exec) when it is free, so
/// that std's internal exec-error pipe can never be created there and be clobbered by our dup2.
fn reserve_child_endpoint_fd() {
    static RESERVED: Mutex<Option<OwnedFd>> = Mutex::new(None);
    let mut reserved = RESERVED.lock();
    if reserved.is_some() {
        return;
    }
    // SAFETY: F_GETFD only queries descriptor flags; it has no effect on an open descriptor.
    if unsafe { libc::fcntl(CHILD_ENDPOINT_FD, libc::F_GETFD) } >= 0 {
        return; // occupied by someone else: equally good
    }
    let Ok(null) = std::fs::File::open("/dev/null") else { return };
    // F_DUPFD_CLOEXEC takes the lowest free number >= 3 and never replaces an open descriptor.
    // If someone took 3 meanwhile, our copy lands higher and is dropped: equally good.
    if let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(&null, CHILD_ENDPOINT_FD)
        && fd.as_raw_fd() == CHILD_ENDPOINT_FD
    {
        *reserved = Some(fd);
    }
}

type LauncherJob = Box<dyn FnOnce() + Send>;

/// Forks on the launcher thread (see the module docs) and returns the child.
fn spawn_on_launcher_thread(mut command: Command, child_end: OwnedFd) -> Result<Child, IpcError> {
    static LAUNCHER: Mutex<Option<crossbeam_channel::Sender<LauncherJob>>> = Mutex::new(None);
    let jobs = {
        let mut launcher = LAUNCHER.lock();
        match &*launcher {
            Some(jobs) => jobs.clone(),
            None => {
                let (jobs, queue) = crossbeam_channel::unbounded::<LauncherJob>();
                std::thread::Builder::new().name("cos-ipc-launcher".into()).spawn(move || {
                    // Never returns: the sender lives in a static. A panicking job must not end
                    // the thread, or every child it forked would be killed.
                    for job in queue {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
                *launcher = Some(jobs.clone());
                jobs
            }
        }
    };
    let (reply, result) = crossbeam_channel::bounded(1);
    let job: LauncherJob = Box::new(move || {
        let spawned = command.spawn();
        drop(child_end); // only the child holds its end now: its death reads as end-of-file
        let _ = reply.send(spawned);
    });
    jobs.send(job).map_err(|_| io::Error::other("launcher thread is gone"))?;
    match result.recv() {
        Ok(spawned) => Ok(spawned?),
        Err(_) => Err(io::Error::other("launcher thread dropped the request").into()),
    }
}

/// 128 bits from getrandom(2), as 32 lowercase hex digits.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn is_token(text: &str) -> bool {
    text.len() == 2 * TOKEN_BYTES && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a launched child learns from its command line.
#[derive(Debug)]
pub struct ChildBootstrap {
    /// The `--type=` value.
    pub process_type: String,
    /// The child's end of the pipe to its launcher (the handshake has been sent on it).
    pub endpoint: Endpoint,
    /// The launcher's [`LaunchOptions::extra_args`].
    pub args: Vec<String>,
}

/// In a child: recognises `--type=<t> --ipc-token=<hex>` as the first two arguments (exactly as
/// [`launch`] writes them), takes the inherited socket at [`CHILD_ENDPOINT_FD`] and sends the
/// token back as the first message.
///
/// Returns `Ok(None)` when the first argument is not `--type=…` (the process was not launched by
/// [`launch`], e.g. the browser itself). Call it once, early in `main`, before anything opens
/// files; a second call that finds `--type=` fails rather than take the descriptor twice.
pub fn bootstrap_from_args() -> Result<Option<ChildBootstrap>, IpcError> {
    bootstrap_from(std::env::args_os().skip(1).collect())
}

fn bootstrap_from(args: Vec<OsString>) -> Result<Option<ChildBootstrap>, IpcError> {
    let invalid = |why: &str| IpcError::Io(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
    let Some(process_type) = args.first().and_then(|a| a.to_str()).and_then(|a| a.strip_prefix(TYPE_FLAG)) else {
        return Ok(None);
    };
    let process_type = process_type.to_owned();
    let token = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| a.strip_prefix(TOKEN_FLAG))
        .filter(|t| is_token(t))
        .ok_or_else(|| invalid("--type= without a well-formed --ipc-token= after it"))?
        .to_owned();
    let extra: Vec<String> = args[2..]
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid("non-UTF-8 launch argument"))?;

    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(invalid("bootstrap_from_args called twice"));
    }
    // SAFETY: F_GETFD only queries descriptor flags.
    if unsafe { libc::fcntl(CHILD_ENDPOINT_FD, libc::F_GETFD) } < 0 {
        return Err(invalid("no inherited IPC descriptor at fd 3"));
    }
    // SAFETY: fd 3 is open (checked above), and by the launch contract it is the inherited
    // socket, which no object in this process owns; TAKEN guarantees we wrap it only once.
    let fd = unsafe { OwnedFd::from_raw_fd(CHILD_ENDPOINT_FD) };
    let endpoint = Endpoint::from_owned_fd(fd)?;
    endpoint.send(token.as_bytes(), Vec::new())?;
    Ok(Some(ChildBootstrap { process_type, endpoint, args: extra }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert!(is_token(&a) && is_token(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(!is_token("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_token("abc"));
    }

    #[test]
    fn not_launched_means_none() {
        assert!(bootstrap_from(vec![]).unwrap().is_none());
        assert!(bootstrap_from(vec!["--test-threads=1".into(), "--type=x".into()]).unwrap().is_none());
    }

    #[test]
    fn malformed_token_is_refused_before_touching_fd_3() {
        for token in ["", "--ipc-token=", "--ipc-token=xyz", "--ipc-token=0123456789ABCDEF0123456789abcdef"] {
            let result = bootstrap_from(vec!["--type=renderer".into(), token.into()]);
            assert!(matches!(result, Err(IpcError::Io(_))), "{token}: {result:?}");
        }
    }

    #[test]
    fn options_default_to_self_exec() {
        let options = LaunchOptions::new("renderer");
        assert_eq!(options.program, std::env::current_exe().unwrap());
        assert_eq!(options.handshake_timeout, Duration::from_secs(10));
        assert!(matches!(launch(&LaunchOptions::new("")), Err(IpcError::Io(_))));
    }
}
