//! Real processes: this test binary is the browser (the test driver), and re-executes itself as
//! the sandboxed storage service (`--type=storage-service`) and as renderers (`--type=renderer`)
//! that call COS through `cos_renderer` exactly as a DOM binding would.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cos_common::interface::{BrowserToService, FrameId, RendererId, ServiceToBrowser};
use cos_ipc::launch::LaunchOptions;
use cos_ipc::{BadMessageObserver, Pipe};

mod support;
use cos_test_support::fixture::service_config;
use cos_test_support::measure::open_descriptors as service_descriptors;
use support::{Abuse, Browser, Command, Outcome, Payload, err, literal, ok, program, swap_files};

// ----- tests -------------------------------------------------------------------------------------

fn round_trip_across_two_renderers_of_two_sites() {
    let browser = Browser::start();
    let a = browser.renderer(1, &[(10, "https://app.a.example", "https://app.a.example", Some("https://b.example"))]);
    let b = browser.renderer(2, &[(20, "https://b.example", "https://b.example", None)]);
    let model = Payload::Pattern { len: 3_000_000, seed: 7 };
    // a's page had a user activation, so its list is recorded (SPEC §5).
    browser.host.notify_user_activation(FrameId(10));
    let stored = a.ask(Command::Store {
        frame: 10,
        payload: model.clone(),
        origins: Some(vec!["https://b.example".into()]),
        global: false,
    });
    assert_eq!(stored, Outcome::Ok(None));
    assert_eq!(a.read(10, &model), ok(&model));
    assert_eq!(b.read(20, &model), ok(&model), "a listed origin in another renderer reads the exact bytes");
}

fn same_site_reads_cross_site_does_not() {
    let browser = Browser::start();
    let a = browser.renderer(
        1,
        &[
            (10, "https://app.a.example", "https://app.a.example", None),
            (11, "https://www.a.example", "https://www.a.example", None),
            // A cross-site iframe inside an a.example page: its own site decides, not the top level's.
            (12, "https://c.example", "https://app.a.example", None),
        ],
    );
    let b = browser.renderer(2, &[(20, "https://b.example", "https://b.example", None)]);
    let bytes = literal(b"same-site only");
    assert_eq!(a.store(10, &bytes), Outcome::Ok(None));
    assert_eq!(a.read(11, &bytes), ok(&bytes));
    assert_eq!(b.read(20, &bytes), err("NotFoundError"));
    assert_eq!(a.read(12, &bytes), err("NotFoundError"));
    assert_eq!(a.read(10, &literal(b"never stored")), err("NotFoundError"));
}

fn list_and_ceiling() {
    let browser = Browser::start();
    let a = browser.renderer(1, &[(10, "https://a.example", "https://a.example", Some("https://b.example"))]);
    let b = browser.renderer(2, &[(20, "https://b.example", "https://b.example", None)]);
    let c = browser.renderer(3, &[(30, "https://c.example", "https://c.example", None)]);
    let bytes = literal(b"listed for b, asked for c too");
    let origins = Some(vec!["https://b.example".into(), "https://c.example".into()]);
    // Without a user activation of a's page the list is not recorded (SPEC §5): same-site only.
    let early = literal(b"listed before any activation");
    let store = Command::Store { frame: 10, payload: early.clone(), origins: origins.clone(), global: false };
    assert_eq!(a.ask(store), Outcome::Ok(None));
    assert_eq!(b.read(20, &early), err("NotFoundError"));
    browser.host.notify_user_activation(FrameId(10));
    assert_eq!(a.ask(Command::Store { frame: 10, payload: bytes.clone(), origins, global: false }), Outcome::Ok(None));
    assert_eq!(b.read(20, &bytes), ok(&bytes));
    assert_eq!(c.read(30, &bytes), err("NotFoundError"), "outside the Allow-Origin ceiling");
    // "*" without a Public Hash List: never disclosed cross-site.
    let global = literal(b"global, not on the list");
    assert_eq!(
        a.ask(Command::Store { frame: 10, payload: global.clone(), origins: None, global: true }),
        Outcome::Ok(None)
    );
    assert_eq!(c.read(30, &global), err("NotFoundError"));
}

fn a_renderer_naming_another_renderers_frame_is_terminated() {
    let browser = Browser::start();
    let observer = BadMessageObserver::new();
    let a = browser.renderer(1, &[(10, "https://a.example", "https://a.example", None)]);
    let mut evil = browser.renderer(2, &[(20, "https://evil.example", "https://evil.example", None)]);
    let service_pid = browser.host.service_pid();
    let bytes = literal(b"a's data");
    assert_eq!(a.store(10, &bytes), Outcome::Ok(None));
    // The compromised renderer asks with a's frame id (10): a bad message, never an answer.
    evil.control.send(Command::Read { frame: 10, hash: bytes.hash() }).unwrap();
    let report = observer.wait(Duration::from_secs(20)).expect("bad message reported");
    assert_eq!(report.peer, "renderer-2");
    assert!(report.reason.contains("another renderer"), "{}", report.reason);
    assert!(evil.terminated.load(Ordering::SeqCst));
    assert!(evil.wait_for_exit(), "the renderer process was killed");
    // Everyone else carries on, with the same service process.
    assert_eq!(a.read(10, &bytes), ok(&bytes));
    assert_eq!(browser.host.service_pid(), service_pid);
}

fn a_malformed_message_is_a_bad_message() {
    let browser = Browser::start();
    let observer = BadMessageObserver::new();
    let a = browser.renderer(1, &[(10, "https://a.example", "https://a.example", None)]);
    let mut evil = browser.renderer(2, &[(20, "https://evil.example", "https://evil.example", None)]);
    // Not `ask`: the broker may kill the renderer before it answers.
    evil.control.send(Command::RawBytes(vec![0xff, 0x13, 0x37, 0x00, 0x42])).unwrap();
    let report = observer.wait(Duration::from_secs(20)).expect("bad message reported");
    assert_eq!(report.peer, "renderer-2");
    assert!(evil.wait_for_exit());
    assert_eq!(a.store(10, &literal(b"still fine")), Outcome::Ok(None));
}

fn a_renderer_asking_for_the_service_status_is_a_bad_message() {
    let browser = Browser::start();
    let observer = BadMessageObserver::new();
    let a = browser.renderer(1, &[(10, "https://a.example", "https://a.example", None)]);
    let mut evil = browser.renderer(2, &[(20, "https://evil.example", "https://evil.example", None)]);
    assert_eq!(a.store(10, &literal(b"a's data")), Outcome::Ok(None));
    // The browser's own status request, byte for byte, sent on a renderer's pipe: the renderer
    // interface has no such message, so it does not decode and nothing answers it.
    let (stream, _ours) = cos_ipc::Endpoint::pair_in_process();
    let request = BrowserToService::Status {
        request: cos_common::interface::RequestId(1),
        partition: cos_common::Partition::Regular,
        stream: stream.into(),
    };
    let (bytes, _endpoints) = cos_ipc::encode_with_attachments(request).unwrap();
    evil.control.send(Command::RawBytes(bytes)).unwrap();
    let report = observer.wait(Duration::from_secs(20)).expect("bad message reported");
    assert_eq!(report.peer, "renderer-2");
    assert!(evil.wait_for_exit());
    // The browser itself may ask: the status comes from the sandboxed service.
    let (status, budgets) = browser.host.status(cos_common::Partition::Regular).unwrap();
    assert_eq!((status.per_origin_bytes, status.total_bytes), (1 << 30, 4 << 30), "the configured limits");
    assert!(status.probe_budget > 0, "{status:?}");
    assert_eq!((status.evicted_entries, status.corrupt_removed), (0, 0));
    assert!(budgets.is_empty(), "nobody probed: {budgets:?}");
}

fn killing_the_service_mid_write_aborts_and_the_next_write_succeeds() {
    let browser = Browser::start();
    let a = browser.renderer(1, &[(10, "https://a.example", "https://a.example", None)]);
    let bytes = Payload::Pattern { len: 8_000_000, seed: 99 };
    assert_eq!(
        a.ask(Command::StoreInTwoSteps { frame: 10, payload: bytes.clone(), first: 4_000_000 }),
        Outcome::Ok(None)
    );
    // The document's lookups take its binding to this service process.
    assert_eq!(a.read(10, &literal(b"looked up before the kill")), err("NotFoundError"));
    let pid = browser.host.service_pid().expect("service runs in a process");
    // SAFETY: kill(2) on the storage service's pid, a child of this process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    assert_eq!(a.ask(Command::Finish), err("AbortError"));
    assert!(browser.host.wait_for_generation(2, Duration::from_secs(30)), "the service was restarted");
    assert_ne!(browser.host.service_pid(), Some(pid));
    assert_eq!(a.read(10, &bytes), err("NotFoundError"), "no partial entry is ever visible");
    assert_eq!(a.store(10, &bytes), Outcome::Ok(None));
    assert_eq!(a.read(10, &bytes), ok(&bytes));
    // The document was bound to the new service: its lookups leave the broker out again.
    let broker_read = browser.host.broker_messages_read(RendererId(1)).expect("renderer 1");
    assert_eq!(a.read(10, &bytes), ok(&bytes));
    assert_eq!(browser.host.broker_messages_read(RendererId(1)), Some(broker_read), "rebound after the restart");
}

fn the_sandbox_blocks_files_network_and_exec() {
    let profile = tempfile::tempdir().unwrap();
    let mut options = LaunchOptions::new("storage-service");
    options.program = program();
    options.extra_args = vec![cos_storage_service::process::SANDBOX_SELF_TEST_ARG.into()];
    let mut child = cos_ipc::launch::launch(&options).expect("service launches");
    let control: Pipe<BrowserToService, ServiceToBrowser> = Pipe::new(child.take_endpoint());
    let mut config = service_config(profile.path());
    config.per_origin_bytes = 1 << 20;
    config.total_bytes = 1 << 20;
    // This test is about the sandbox: it stays on whatever the environment says.
    config.sandbox = true;
    control.send(BrowserToService::Configure(config)).unwrap();
    let ready = control.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(ready, ServiceToBrowser::Ready { entries: 0, sandboxed: true });
    let report = control.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        report,
        ServiceToBrowser::SandboxSelfTest {
            open_outside_store_blocked: true,
            tcp_connect_blocked: true,
            exec_blocked: true
        }
    );
    control.send(BrowserToService::Shutdown).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Waits (bounded) until `done` holds; true if it did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn a_renderer_killed_mid_write_leaves_no_swap_file_and_no_open_handle() {
    let browser = Browser::start();
    let service = browser.host.service_pid().expect("service runs in a process");
    let baseline = service_descriptors(service);
    let mut a = browser.renderer(1, &[(10, "https://a.example", "https://a.example", None)]);
    let bytes = Payload::Pattern { len: 8_000_000, seed: 5 };
    assert_eq!(
        a.ask(Command::StoreInTwoSteps { frame: 10, payload: bytes.clone(), first: 4_000_000 }),
        Outcome::Ok(None)
    );
    assert_eq!(swap_files(&browser), 1, "the write is in flight");
    assert!(service_descriptors(service) > baseline, "the service holds the renderer's pipes and swap file");
    // SAFETY: kill(2) on the pid of a renderer this test launched.
    assert_eq!(unsafe { libc::kill(a.child.pid() as libc::pid_t, libc::SIGKILL) }, 0);
    assert!(a.wait_for_exit());
    assert!(eventually(|| swap_files(&browser) == 0), "the swap file is deleted");
    assert!(
        eventually(|| service_descriptors(service) == baseline),
        "the service is back to its {baseline} descriptors (has {})",
        service_descriptors(service)
    );
    assert_eq!(browser.host.service_pid(), Some(service), "the service was not disturbed");
    let b = browser.renderer(2, &[(20, "https://a.example", "https://a.example", None)]);
    assert_eq!(b.read(20, &bytes), err("NotFoundError"), "nothing of the dead writer is visible");
    assert_eq!(b.store(20, &bytes), Outcome::Ok(None));
    assert_eq!(b.read(20, &bytes), ok(&bytes));
}

fn an_abusive_renderer_hits_its_limits_and_others_carry_on() {
    let browser = Browser::start_with_limits(64 << 20, 4 << 30);
    let abuser = browser.renderer(1, &[(10, "https://abuse.example", "https://abuse.example", None)]);
    let other = browser.renderer(2, &[(20, "https://b.example", "https://b.example", None)]);
    let expect = |kind, allowed: std::ops::RangeInclusive<u64>| {
        let outcome = abuser.ask(Command::Abuse { frame: 10, kind, millis: 0 });
        let Outcome::Err(refusal) = &outcome else { panic!("{kind:?}: {outcome:?}") };
        let count: u64 = refusal.strip_prefix("QuotaExceededError after ").and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(allowed.contains(&count), "{kind:?}: {refusal}");
        let bytes = literal(format!("{kind:?} did not stop me").as_bytes());
        assert_eq!(other.store(20, &bytes), Outcome::Ok(None));
        assert_eq!(other.read(20, &bytes), ok(&bytes));
    };
    // Data pipes: 64 per renderer.
    expect(Abuse::Writers, 64..=64);
    // Chunks into one writer: refused once the file outgrows what the origin may store (64 MiB);
    // the refusal arrives asynchronously, so a few more MiB may be in flight by then.
    expect(Abuse::Chunks, 64..=72);
    // Handles: 16,384 per renderer (those of the abuses above were released when dropped).
    expect(Abuse::Handles, 16_384..=16_384);

    // Asking on past the limit for one second: 16 refusals come at once, then each is held back
    // longer (up to 64 ms), so at most ~37 more fit, however fast the machine, not thousands.
    let outcome = abuser.ask(Command::Abuse { frame: 10, kind: Abuse::Writers, millis: 1000 });
    let Outcome::Err(refusal) = &outcome else { panic!("{outcome:?}") };
    let more: u64 = refusal
        .split("then refused ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{refusal}"));
    assert!((16..=60).contains(&more), "refusals past the limit are held back: {refusal}");
    let bytes = literal(b"still served after the refusals");
    assert_eq!(other.store(20, &bytes), Outcome::Ok(None));
    assert_eq!(other.read(20, &bytes), ok(&bytes));
}

const TESTS: &[(&str, fn())] = &[
    (
        "an_abusive_renderer_hits_its_limits_and_others_carry_on",
        an_abusive_renderer_hits_its_limits_and_others_carry_on,
    ),
    (
        "a_renderer_killed_mid_write_leaves_no_swap_file_and_no_open_handle",
        a_renderer_killed_mid_write_leaves_no_swap_file_and_no_open_handle,
    ),
    ("round_trip_across_two_renderers_of_two_sites", round_trip_across_two_renderers_of_two_sites),
    ("same_site_reads_cross_site_does_not", same_site_reads_cross_site_does_not),
    ("list_and_ceiling", list_and_ceiling),
    (
        "a_renderer_naming_another_renderers_frame_is_terminated",
        a_renderer_naming_another_renderers_frame_is_terminated,
    ),
    ("a_malformed_message_is_a_bad_message", a_malformed_message_is_a_bad_message),
    (
        "a_renderer_asking_for_the_service_status_is_a_bad_message",
        a_renderer_asking_for_the_service_status_is_a_bad_message,
    ),
    (
        "killing_the_service_mid_write_aborts_and_the_next_write_succeeds",
        killing_the_service_mid_write_aborts_and_the_next_write_succeeds,
    ),
    ("the_sandbox_blocks_files_network_and_exec", the_sandbox_blocks_files_network_and_exec),
];

fn main() -> ExitCode {
    support::run_child_role().unwrap_or_else(|| cos_test_support::fixture::run_tests(TESTS))
}
