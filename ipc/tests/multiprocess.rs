//! Multi-process tests: this binary is both the test runner and, when launched with `--type=`,
//! the child. Not a libtest harness (`harness = false`) because children re-execute the binary
//! with our own flags, which libtest would reject.
//!
//! Child roles are chosen by an extra argument `--role=<name>`:
//! - `echo` (after a normal bootstrap): answers commands, echoes everything else with its
//!   attachments (so an endpoint sent in comes back out);
//! - `wrong-token`: takes fd 3 itself and sends a token that is not the one it was given;
//! - `silent`: never bootstraps;
//! - `sleep`: bootstraps, then ignores its pipe (only a signal ends it: the grandchild of the
//!   parent-death test, which must not simply exit on seeing its pipe disconnect).

use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use cos_ipc::launch::{
    CHILD_ENDPOINT_FD, ChildBootstrap, FORWARDED_ENV, LaunchOptions, LaunchedChild, bootstrap_from_args, launch,
};
use cos_ipc::{Endpoint, IpcError, MAX_MESSAGE_BYTES};

const CHILD_TYPE: &str = "test-child";
const SECRET_ENV: &str = "COS_IPC_TEST_SECRET";
/// Generous: only reached when something is broken, never part of an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--role=wrong-token") {
        wrong_token_child();
    }
    if args.iter().any(|a| a == "--role=silent") {
        loop {
            thread::sleep(Duration::from_secs(3600)); // until the launcher kills us
        }
    }
    match bootstrap_from_args() {
        Ok(Some(bootstrap)) => echo_child(bootstrap),
        Ok(None) => run_tests(&args[1..]),
        Err(err) => {
            eprintln!("child bootstrap failed: {err}");
            ExitCode::from(3)
        }
    }
}

// ---------------------------------------------------------------- children

fn echo_child(bootstrap: ChildBootstrap) -> ExitCode {
    assert_eq!(bootstrap.process_type, CHILD_TYPE);
    if bootstrap.args.iter().any(|a| a == "--role=sleep") {
        // Ignores its pipe, so only a signal can end it.
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    let endpoint = bootstrap.endpoint;
    let mut grandchildren = Vec::new();
    loop {
        let message = match endpoint.recv() {
            Ok(message) => message,
            Err(IpcError::Disconnected) => return ExitCode::SUCCESS,
            Err(err) => panic!("child recv: {err}"),
        };
        let reply: Vec<u8> = match message.bytes.as_slice() {
            b"exit" => return ExitCode::SUCCESS,
            b"abort" => std::process::abort(),
            b"args" => format!("{}|{}", bootstrap.process_type, bootstrap.args.join("|")).into_bytes(),
            b"env" => {
                let mut names: Vec<String> =
                    std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
                names.sort();
                names.join(",").into_bytes()
            }
            b"fds" => open_fds().iter().map(|fd| fd.to_string()).collect::<Vec<_>>().join(",").into_bytes(),
            b"use-attachment" => {
                let [theirs]: [Endpoint; 1] = message.attachments.try_into().expect("one attachment");
                theirs.send(b"hello from child", vec![]).unwrap();
                let ping = theirs.recv_timeout(PATIENCE).unwrap();
                theirs.send(&[b"child saw: ".as_slice(), &ping.bytes].concat(), vec![]).unwrap();
                b"done".to_vec()
            }
            b"spawn-grandchild" => {
                let mut options = LaunchOptions::new(CHILD_TYPE);
                options.extra_args = vec!["--role=sleep".into()];
                let grandchild = launch(&options).expect("launch grandchild");
                let pid = grandchild.pid();
                grandchildren.push(grandchild); // keep it (and its pipe) alive
                pid.to_string().into_bytes()
            }
            _ => {
                endpoint.send(&message.bytes, message.attachments).unwrap();
                continue;
            }
        };
        endpoint.send(&reply, vec![]).unwrap();
    }
}

fn wrong_token_child() -> ! {
    // SAFETY: this process was started by `launch`, which put our end of the pipe at fd 3, and
    // nothing in this process has taken ownership of it (we bypass bootstrap_from_args).
    let fd = unsafe { OwnedFd::from_raw_fd(CHILD_ENDPOINT_FD) };
    let endpoint = Endpoint::from_owned_fd(fd).expect("fd 3 is our socket");
    endpoint.send(b"0123456789abcdef0123456789abcdef", vec![]).unwrap();
    let _ = endpoint.recv(); // until the launcher kills us or hangs up
    std::process::exit(0);
}

/// Descriptors open in this process (without the one used to list them).
fn open_fds() -> Vec<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // SAFETY: F_GETFD only queries descriptor flags; the listing's own fd is closed by now.
    listed.into_iter().filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).collect()
}

// ---------------------------------------------------------------- runner

fn run_tests(filters: &[String]) -> ExitCode {
    // SAFETY: no other thread exists yet (no test has run, no launcher thread was started), so
    // nothing can read the environment concurrently. Children must not see this variable.
    unsafe { std::env::set_var(SECRET_ENV, "do-not-forward") };

    let tests: &[(&str, fn())] = &[
        ("launch_and_handshake", launch_and_handshake),
        ("message_round_trip", message_round_trip),
        ("endpoint_created_in_parent_is_used_by_child", endpoint_created_in_parent_is_used_by_child),
        ("endpoint_forwarded_through_child", endpoint_forwarded_through_child),
        ("wrong_token_is_refused", wrong_token_is_refused),
        ("silent_child_times_out", silent_child_times_out),
        ("missing_program_is_an_io_error", missing_program_is_an_io_error),
        ("child_death_is_disconnected", child_death_is_disconnected),
        ("child_environment_and_descriptors_are_clean", child_environment_and_descriptors_are_clean),
        ("child_outlives_the_thread_that_launched_it", child_outlives_the_thread_that_launched_it),
        ("killing_the_launcher_kills_its_children", killing_the_launcher_kills_its_children),
    ];
    let filters: Vec<&String> = filters.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let outcome = catch_unwind(AssertUnwindSafe(test));
        println!("test {name} ... {}", if outcome.is_ok() { "ok" } else { "FAILED" });
        if outcome.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn launch_child(extra: &[&str]) -> LaunchedChild {
    let mut options = LaunchOptions::new(CHILD_TYPE);
    options.extra_args = extra.iter().map(|s| s.to_string()).collect();
    launch(&options).expect("launch")
}

fn request(child: &LaunchedChild, bytes: &[u8]) -> Vec<u8> {
    child.endpoint().send(bytes, vec![]).unwrap();
    child.endpoint().recv_timeout(PATIENCE).unwrap().bytes
}

fn finish(mut child: LaunchedChild) {
    let _ = child.kill();
    child.wait().unwrap();
}

// ---------------------------------------------------------------- tests

fn launch_and_handshake() {
    let child = launch_child(&["--role=echo", "two words", "--x=y"]);
    assert!(child.pid() > 0);
    assert_eq!(request(&child, b"args"), format!("{CHILD_TYPE}|--role=echo|two words|--x=y").into_bytes());
    finish(child);
}

fn message_round_trip() {
    let mut child = launch_child(&["--role=echo"]);
    for payload in [b"".to_vec(), b"hello".to_vec(), vec![0xab; MAX_MESSAGE_BYTES]] {
        assert_eq!(request(&child, &payload), payload);
    }
    // Pipelined: many messages in flight in both directions (exercises backpressure).
    let endpoint = child.endpoint().try_clone().unwrap();
    let sender = thread::spawn(move || {
        for i in 0..200u32 {
            endpoint.send(&vec![i as u8; 64 * 1024 + i as usize], vec![]).unwrap();
        }
    });
    for i in 0..200u32 {
        let bytes = child.endpoint().recv_timeout(PATIENCE).unwrap().bytes;
        assert_eq!(bytes, vec![i as u8; 64 * 1024 + i as usize]);
    }
    sender.join().unwrap();
    child.endpoint().send(b"exit", vec![]).unwrap();
    assert!(child.wait().unwrap().success());
}

fn endpoint_created_in_parent_is_used_by_child() {
    let child = launch_child(&["--role=echo"]);
    let (mine, theirs) = Endpoint::pair().unwrap();
    child.endpoint().send(b"use-attachment", vec![theirs]).unwrap();
    assert_eq!(mine.recv_timeout(PATIENCE).unwrap().bytes, b"hello from child");
    mine.send(b"ping", vec![]).unwrap();
    assert_eq!(mine.recv_timeout(PATIENCE).unwrap().bytes, b"child saw: ping");
    assert_eq!(child.endpoint().recv_timeout(PATIENCE).unwrap().bytes, b"done");
    // The child dropped its copy after use: the parent's end sees the disconnect.
    assert!(matches!(mine.recv_timeout(PATIENCE), Err(IpcError::Disconnected)));
    finish(child);
}

fn endpoint_forwarded_through_child() {
    let child = launch_child(&["--role=echo"]);
    let (a, b) = Endpoint::pair().unwrap();
    let (c, d) = Endpoint::pair().unwrap();
    child.endpoint().send(b"round trip", vec![b, d]).unwrap();
    let message = child.endpoint().recv_timeout(PATIENCE).unwrap();
    assert_eq!(message.bytes, b"round trip");
    let [b, d]: [Endpoint; 2] = message.attachments.try_into().unwrap();
    a.send(b"a->b", vec![]).unwrap();
    assert_eq!(b.recv_timeout(PATIENCE).unwrap().bytes, b"a->b");
    d.send(b"d->c", vec![]).unwrap();
    assert_eq!(c.recv_timeout(PATIENCE).unwrap().bytes, b"d->c");
    finish(child);
}

fn wrong_token_is_refused() {
    let mut options = LaunchOptions::new(CHILD_TYPE);
    options.extra_args = vec!["--role=wrong-token".into()];
    match launch(&options) {
        Err(err @ IpcError::BadAttachment(_)) => assert!(err.is_peer_misbehaviour()),
        other => panic!("expected BadAttachment, got {other:?}"),
    }
}

fn silent_child_times_out() {
    let mut options = LaunchOptions::new(CHILD_TYPE);
    options.extra_args = vec!["--role=silent".into()];
    options.handshake_timeout = Duration::from_millis(300);
    match launch(&options) {
        Err(IpcError::Timeout) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
}

fn missing_program_is_an_io_error() {
    let mut options = LaunchOptions::new(CHILD_TYPE);
    options.program = PathBuf::from("/nonexistent/cos-ipc-test-binary");
    match launch(&options) {
        Err(IpcError::Io(_)) => {}
        other => panic!("expected Io, got {other:?}"),
    }
}

fn child_death_is_disconnected() {
    // Crash.
    let mut child = launch_child(&["--role=echo"]);
    child.endpoint().send(b"abort", vec![]).unwrap();
    assert!(matches!(child.endpoint().recv_timeout(PATIENCE), Err(IpcError::Disconnected)));
    assert!(!child.wait().unwrap().success());
    assert!(matches!(child.endpoint().send(b"anyone?", vec![]), Err(IpcError::Disconnected)));
    // Killed from outside.
    let mut child = launch_child(&["--role=echo"]);
    child.kill().unwrap();
    assert!(matches!(child.endpoint().recv_timeout(PATIENCE), Err(IpcError::Disconnected)));
    child.wait().unwrap();
    // Orderly exit.
    let mut child = launch_child(&["--role=echo"]);
    let endpoint = child.take_endpoint();
    endpoint.send(b"exit", vec![]).unwrap();
    assert!(matches!(endpoint.recv_timeout(PATIENCE), Err(IpcError::Disconnected)));
    assert!(child.wait().unwrap().success());
}

fn child_environment_and_descriptors_are_clean() {
    let child = launch_child(&["--role=echo"]);
    let env = String::from_utf8(request(&child, b"env")).unwrap();
    for name in env.split(',').filter(|n| !n.is_empty()) {
        assert!(FORWARDED_ENV.contains(&name), "child inherited {name}");
    }
    assert!(!env.contains(SECRET_ENV));
    let fds = String::from_utf8(request(&child, b"fds")).unwrap();
    assert_eq!(fds, "0,1,2,3", "descriptors open in the child");
    finish(child);
}

fn child_outlives_the_thread_that_launched_it() {
    // PR_SET_PDEATHSIG fires when the forking *thread* exits; launch must not fork here.
    let child = thread::spawn(|| launch_child(&["--role=echo"])).join().unwrap();
    let settle = Instant::now() + Duration::from_millis(200);
    while Instant::now() < settle {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(request(&child, b"still there?"), b"still there?");
    finish(child);
}

fn killing_the_launcher_kills_its_children() {
    let mut intermediate = launch_child(&["--role=echo"]);
    let pid: i32 = String::from_utf8(request(&intermediate, b"spawn-grandchild")).unwrap().parse().unwrap();
    assert!(is_alive(pid), "grandchild {pid} not running");
    intermediate.kill().unwrap();
    intermediate.wait().unwrap();
    // A bounded wait for the kernel to deliver the parent-death signal, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let survived = is_alive(pid);
    if survived {
        // SAFETY: kill(2) of a pid we just checked is our leaked grandchild.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(!survived, "grandchild {pid} outlived its launcher");
}

/// Running and not a zombie (a killed orphan may linger unreaped if our init does not reap).
fn is_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}
