//! `ipc_channel_link`: a compromised renderer on the ipc-channel link (ARCHITECTURE.md, "The
//! renderer link over ipc-channel") sends byte strings of its choosing, on the link and on the
//! data pipes its replies brought, to the real broker stub and storage service (in this
//! process). Input: a sequence of operations, each one byte (`% 4`) and its arguments:
//!
//! - `0, len: u16 LE, bytes`: a message on the link (the bytes as a renderer request);
//! - `1, len: u16 LE, bytes`: a message on the newest data pipe (skipped if there is none);
//! - `2`: wait for the next reply (its data pipes become usable);
//! - `3, where: u8`: a message one byte past the bound, on the link (`where` even) or the newest
//!   data pipe.
//!
//! After the sequence, the broker either still answers a well-formed request or has reported
//! the renderer (terminated it) and closed the link; it never hangs, and a panic anywhere
//! (including inside ipc-channel on the browser's receiving threads, which the bridge turns into
//! a bad message) is a finding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cos_browser::{CosHost, FrameInfo, HostConfig, InProcessService, ServiceLaunch};
use cos_common::interface::{
    CallResult, FrameId, RendererId, RendererToBroker, Reply, RequestId, ServiceProcessConfig,
};
use cos_common::{ContentHash, OriginsOption};
use cos_ipc::ipc_channel::{DataPipe, RendererLink, link};
use cos_ipc::{Endpoint, MAX_MESSAGE_BYTES};
use cos_test_support::callers;

use crate::scratch_dir;

/// How long the broker may take to answer before it counts as hung (a finding).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long operation `2` waits for a reply that may never come (a hostile request may have none).
const REPLY_WAIT: Duration = Duration::from_millis(200);
/// Longest operation sequence one input runs.
const MAX_OPERATIONS: usize = 32;

/// The renderer under attack holds frame 1 (`https://a.example`); frame 2 is another renderer's.
const RENDERER: RendererId = RendererId(1);

/// The fuzz target's body.
pub fn ipc_channel_link(data: &[u8]) {
    let profile = scratch_dir();
    let run: InProcessService = Arc::new(|endpoint: Endpoint| {
        std::thread::spawn(move || {
            let _ = cos_storage_service::process::serve(endpoint, cos_storage_service::process::no_lock_down);
        });
    });
    let mut service = ServiceProcessConfig::new(profile.path().join("profile").to_string_lossy());
    service.per_origin_bytes = 1 << 20;
    service.total_bytes = 4 << 20;
    service.grease_for_tests = Some(false);
    service.sandbox = false;
    let host = CosHost::start(HostConfig { launch: ServiceLaunch::InProcess(run), service }).expect("start");
    host.frames().insert(FrameId(1), FrameInfo::top_level(RENDERER, callers::origin("https://a.example")));
    host.frames().insert(FrameId(2), FrameInfo::top_level(RendererId(2), callers::origin("https://a.example")));
    let (renderer, browser) = link().expect("a link");
    let terminated = Arc::new(AtomicBool::new(false));
    let flag = terminated.clone();
    host.register_renderer_ipc_channel(RENDERER, browser, move || flag.store(true, Ordering::SeqCst))
        .expect("registered");
    let mut attacker = Attacker { link: renderer, pipes: Vec::new() };
    attacker.run(data);
    attacker.check(&terminated);
}

struct Attacker {
    link: RendererLink,
    pipes: Vec<DataPipe>,
}

impl Attacker {
    fn run(&mut self, data: &[u8]) {
        let mut input = data;
        let mut take = |n: usize| {
            let (head, tail) = input.split_at(n.min(input.len()));
            input = tail;
            head
        };
        for _ in 0..MAX_OPERATIONS {
            let Some(&operation) = take(1).first() else { return };
            // A send fails once the broker has closed the link: later operations are moot.
            let sent = match operation % 4 {
                0 | 1 => {
                    let len = match *take(2) {
                        [low, high] => usize::from(u16::from_le_bytes([low, high])),
                        _ => 0,
                    };
                    let bytes = take(len);
                    if operation % 4 == 0 {
                        self.link.to_browser.send(bytes).is_ok()
                    } else {
                        self.pipes.last().is_none_or(|pipe| pipe.to_browser.send(bytes).is_ok())
                    }
                }
                2 => self.next_reply(REPLY_WAIT).is_ok(),
                _ => {
                    let oversized = vec![0; MAX_MESSAGE_BYTES + 1];
                    match (take(1).first().is_none_or(|b| b % 2 == 0), self.pipes.last()) {
                        (false, Some(pipe)) => pipe.to_browser.send(&oversized).is_ok(),
                        _ => self.link.to_browser.send(&oversized).is_ok(),
                    }
                }
            };
            if !sent {
                return;
            }
        }
    }

    /// The next reply within `wait`, its data pipes kept; `Err(())` once the link is closed.
    fn next_reply(&mut self, wait: Duration) -> Result<Option<Reply>, ()> {
        match self.link.from_browser.try_recv_timeout(wait) {
            Ok(message) => {
                let placeholders = message.pipes.iter().map(|_| Endpoint::pair_in_process().0).collect();
                let reply: Reply = cos_ipc::decode_with_attachments(&message.payload, placeholders)
                    .expect("the broker sends only replies that decode");
                self.pipes.extend(message.pipes);
                Ok(Some(reply))
            }
            Err(cos_ipc::ipc_channel::ipc_channel::TryRecvError::Empty) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// The broker answers a well-formed request, or the renderer was reported and its link
    /// closed.
    fn check(mut self, terminated: &AtomicBool) {
        let probe = RequestId(u64::MAX);
        let request = RendererToBroker::GetFileHandle {
            request: probe,
            frame: FrameId(1),
            hash: ContentHash::from_bytes([0x5a; 32]),
            create: false,
            origins: OriginsOption::Omitted,
        };
        let sent = self.link.to_browser.send(&cos_ipc::encode(&request).expect("encodes")).is_ok();
        loop {
            match self.next_reply(ANSWER_TIMEOUT) {
                Ok(Some(reply)) if sent && reply.request == probe => {
                    assert!(matches!(reply.result, CallResult::Failed(_)), "nothing was stored under the probe");
                    return;
                }
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the broker neither answered nor closed the link"),
                Err(()) => {
                    // A report closes the peer's endpoints first and then calls its terminate
                    // callback, so the attacker may see the link close a moment before the flag.
                    let deadline = std::time::Instant::now() + ANSWER_TIMEOUT;
                    while !terminated.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    assert!(terminated.load(Ordering::SeqCst), "the link closed without a bad-message report");
                    return;
                }
            }
        }
    }
}
