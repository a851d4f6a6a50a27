//! The renderer link over ipc-channel (ARCHITECTURE.md, "The renderer link over ipc-channel"):
//! a renderer process that reaches its broker only through ipc-channel, bootstrapped with an
//! `IpcOneShotServer`, storing and reading through the sandboxed storage service; and hostile
//! renderers speaking the link's raw bytes, each of which must be terminated.

use std::process::ExitCode;
use std::time::Duration;

use cos_browser::{CosHost, FrameInfo};
use cos_common::interface::{CallResult, FrameId, HandleCall, RendererId, RendererToBroker, Reply, RequestId};
use cos_common::{ContentHash, Origin, OriginsOption};
use cos_ipc::ipc_channel::ipc_channel::ipc::{self, IpcOneShotServer, IpcSender, OpaqueIpcSender};
use cos_ipc::ipc_channel::{RendererLink, ToRenderer, link};
use cos_ipc::{Endpoint, MAX_MESSAGE_BYTES, Pipe};
use cos_renderer::{CosHashDict, CosOptions, CrossOriginStorageManager, RendererConnection, ScriptContext, block_on};
use cos_test_support::callers::sha256_hex;
use cos_test_support::fixture::{BrowserFixture, ChildRole, run_child_role, run_tests, this_program};
use cos_test_support::rng::pattern;
use crossbeam_channel::Receiver;

const RENDERER_ROLE: &str = "ipc-channel-renderer";
const ROLES: &[ChildRole] = &[(RENDERER_ROLE, renderer_main)];
/// More than one 128 KiB chunk, and not a multiple of it.
const LEN: usize = 700_001;

// ----- the renderer process --------------------------------------------------------------------

/// A content process: gets its COS link over ipc-channel (the one-shot server's name comes on
/// its launch pipe), stores a file from frame 10 and reads it back from frame 11, and answers
/// "ok" or what went wrong on the launch pipe.
fn renderer_main(launcher: Endpoint) -> ExitCode {
    let launcher: Pipe<String, String> = Pipe::new(launcher);
    let Ok(server_name) = launcher.recv() else { return ExitCode::FAILURE };
    let outcome = (|| -> Result<(), String> {
        let bootstrap: IpcSender<IpcSender<RendererLink>> =
            IpcSender::connect(server_name).map_err(|e| e.to_string())?;
        let (send_link, receive_link) = ipc::channel::<RendererLink>().map_err(|e| e.to_string())?;
        bootstrap.send(send_link).map_err(|e| e.to_string())?;
        let renderer_link = receive_link.recv().map_err(|e| e.to_string())?;
        let connection = RendererConnection::new(cos_ipc::ipc_channel::bridge_browser(renderer_link).unwrap())
            .map_err(|e| e.to_string())?;
        let manager = |frame| CrossOriginStorageManager::new(connection.clone(), script(frame)).unwrap();
        let bytes = pattern(3, LEN);
        let hash = CosHashDict::sha256(sha256_hex(&bytes));
        block_on(async {
            let create = CosOptions { create: true, ..CosOptions::default() };
            let handle = manager(10).get_file_handle(&hash, &create).await.map_err(|e| format!("{e:?}"))?;
            let mut writer = handle.create_writable(false).await.map_err(|e| format!("{e:?}"))?;
            writer.write(&bytes).map_err(|e| format!("{e:?}"))?;
            writer.close().map_err(|e| format!("{e:?}"))?;
            let handle =
                manager(11).get_file_handle(&hash, &CosOptions::default()).await.map_err(|e| format!("{e:?}"))?;
            let file = handle.get_file().await.map_err(|e| format!("{e:?}"))?;
            let all = file.read_all().map_err(|e| format!("{e:?}"))?;
            let range = file.read_range(131_000, 200_000).map_err(|e| format!("{e:?}"))?;
            let mut streamed = Vec::new();
            file.read_with(1, LEN as u64, |chunk| streamed.extend_from_slice(chunk)).map_err(|e| format!("{e:?}"))?;
            if all != bytes || range != bytes[131_000..331_000] || streamed != bytes[1..] {
                return Err("the bytes read differ from those stored".into());
            }
            Ok(())
        })
    })();
    let _ = launcher.send(outcome.err().unwrap_or_else(|| "ok".into()));
    ExitCode::SUCCESS
}

fn script(frame: u64) -> ScriptContext {
    ScriptContext {
        frame: FrameId(frame),
        secure_context: true,
        policy_allows: true,
        service_worker: false,
        opaque_origin: false,
    }
}

// ----- tests -------------------------------------------------------------------------------------

fn a_renderer_process_stores_and_reads_over_ipc_channel_with_the_sandboxed_service() {
    let fixture = BrowserFixture::start_process(|_| {});
    let origin = Origin::from_url("https://a.example").unwrap();
    for frame in [10, 11] {
        fixture.host.frames().insert(FrameId(frame), FrameInfo::top_level(RendererId(1), origin.clone()));
    }
    let mut options = cos_ipc::launch::LaunchOptions::new(RENDERER_ROLE);
    options.program = this_program();
    let mut child = cos_ipc::launch::launch(&options).unwrap();
    let launcher: Pipe<String, String> = Pipe::new(child.take_endpoint());
    // The embedder's bootstrap: a one-shot server the content process connects to.
    let (server, name) = IpcOneShotServer::<IpcSender<RendererLink>>::new().unwrap();
    launcher.send(name).unwrap();
    let (_, send_link) = server.accept().unwrap();
    let (renderer_half, browser_half) = link().unwrap();
    let (terminated, was_terminated) = crossbeam_channel::unbounded();
    fixture
        .host
        .register_renderer_ipc_channel(RendererId(1), browser_half, move || {
            let _ = terminated.send(());
        })
        .unwrap();
    send_link.send(renderer_half).unwrap();
    assert_eq!(launcher.recv().unwrap(), "ok");
    assert!(child.wait().unwrap().success());
    assert!(was_terminated.try_recv().is_err(), "a well-behaved renderer is not terminated");
}

/// A broker (in-process service) for renderer 1, frame 1 of `https://a.example`; frame 2 is
/// renderer 2's. The test holds the renderer's raw half of the link.
struct Hostile {
    host: CosHost,
    link: RendererLink,
    terminated: Receiver<()>,
    _profile: tempfile::TempDir,
}

impl Hostile {
    fn new() -> Self {
        let BrowserFixture { host, profile } = BrowserFixture::start_in_process(|_| {});
        let origin = Origin::from_url("https://a.example").unwrap();
        host.frames().insert(FrameId(1), FrameInfo::top_level(RendererId(1), origin.clone()));
        host.frames().insert(FrameId(2), FrameInfo::top_level(RendererId(2), origin));
        let (renderer_half, browser_half) = link().unwrap();
        let (terminated, receiver) = crossbeam_channel::unbounded();
        host.register_renderer_ipc_channel(RendererId(1), browser_half, move || {
            let _ = terminated.send(());
        })
        .unwrap();
        Self { host, link: renderer_half, terminated: receiver, _profile: profile }
    }

    fn send(&self, message: &RendererToBroker) {
        self.link.to_browser.send(&cos_ipc::encode(message).unwrap()).unwrap();
    }

    /// The next reply, its data pipes counted but left on `ToRenderer`.
    fn reply(&self) -> (Reply, ToRenderer) {
        let message = self.link.from_browser.recv().unwrap();
        let placeholders = message.pipes.iter().map(|_| Endpoint::pair_in_process().0).collect();
        let reply = cos_ipc::decode_with_attachments(&message.payload, placeholders).unwrap();
        (reply, message)
    }

    fn is_terminated(&self) -> bool {
        self.terminated.recv_timeout(Duration::from_secs(60)).is_ok()
    }

    /// Whether the broker still answers (a read of an entry nobody stored).
    fn still_answers(&self) -> bool {
        self.send(&get(99, 1, false));
        matches!(self.reply().0.result, CallResult::Failed(_))
    }
}

fn get(request: u64, frame: u64, create: bool) -> RendererToBroker {
    RendererToBroker::GetFileHandle {
        request: RequestId(request),
        frame: FrameId(frame),
        hash: ContentHash::from_bytes([7; 32]),
        create,
        origins: OriginsOption::Omitted,
    }
}

fn an_oversized_message_is_a_bad_message() {
    let hostile = Hostile::new();
    assert!(hostile.still_answers());
    hostile.link.to_browser.send(&vec![0; MAX_MESSAGE_BYTES + 1]).unwrap();
    assert!(hostile.is_terminated());
}

fn an_undecodable_message_is_a_bad_message() {
    let hostile = Hostile::new();
    hostile.link.to_browser.send(&[0xff; 9]).unwrap();
    assert!(hostile.is_terminated());
}

fn another_renderers_frame_is_a_bad_message() {
    let hostile = Hostile::new();
    hostile.send(&get(1, 2, false));
    assert!(hostile.is_terminated());
}

/// ipc-channel hands a renderer's message over without saying it carried a channel; the broker
/// side turns what ipc-channel does with an unclaimed one into a bad message.
fn a_channel_attached_to_a_request_is_a_bad_message() {
    let hostile = Hostile::new();
    // The same socket as the renderer's byte sender, typed to carry a channel.
    let (carrier, carried) = ipc::channel::<ipc_channel_bytes::Sender>().unwrap();
    carrier.send(hostile.link.to_browser.clone()).unwrap();
    let opaque: OpaqueIpcSender = carried.to_opaque().to::<OpaqueIpcSender>().recv().unwrap();
    let with_channel: IpcSender<(Vec<u8>, ipc_channel_bytes::Sender)> = opaque.to();
    let (stray, _keep) = ipc::bytes_channel().unwrap();
    with_channel.send((cos_ipc::encode(&get(1, 1, false)).unwrap(), stray)).unwrap();
    assert!(hostile.is_terminated());
}

fn a_data_pipe_message_past_its_bound_is_a_bad_message() {
    let hostile = Hostile::new();
    hostile.send(&get(1, 1, true));
    let (reply, _) = hostile.reply();
    let CallResult::Handle { handle, create: true } = reply.result else { panic!("{reply:?}") };
    hostile.send(&RendererToBroker::Call {
        frame: FrameId(1),
        call: HandleCall::CreateWritable { request: RequestId(2), handle },
    });
    let (reply, mut message) = hostile.reply();
    assert!(matches!(reply.result, CallResult::Writable { .. }), "{reply:?}");
    let pipe = message.pipes.pop().unwrap();
    // A well-formed chunk is fine; one past the bound ends the renderer.
    let chunk = vec![1u8; 128 * 1024];
    let frame = cos_common::interface::WriterFrame::Write { position: None, data: &chunk };
    pipe.to_browser.send(&cos_ipc::encode(&frame).unwrap()).unwrap();
    assert!(hostile.terminated.try_recv().is_err());
    pipe.to_browser.send(&vec![0; MAX_MESSAGE_BYTES + 1]).unwrap();
    assert!(hostile.is_terminated());
    drop(hostile.host);
}

mod ipc_channel_bytes {
    pub type Sender = cos_ipc::ipc_channel::ipc_channel::ipc::IpcBytesSender;
}

const TESTS: &[(&str, fn())] = &[
    (
        "a_renderer_process_stores_and_reads_over_ipc_channel_with_the_sandboxed_service",
        a_renderer_process_stores_and_reads_over_ipc_channel_with_the_sandboxed_service,
    ),
    ("an_oversized_message_is_a_bad_message", an_oversized_message_is_a_bad_message),
    ("an_undecodable_message_is_a_bad_message", an_undecodable_message_is_a_bad_message),
    ("another_renderers_frame_is_a_bad_message", another_renderers_frame_is_a_bad_message),
    ("a_channel_attached_to_a_request_is_a_bad_message", a_channel_attached_to_a_request_is_a_bad_message),
    ("a_data_pipe_message_past_its_bound_is_a_bad_message", a_data_pipe_message_past_its_bound_is_a_bad_message),
];

fn main() -> ExitCode {
    run_child_role(ROLES).unwrap_or_else(|| run_tests(TESTS))
}
