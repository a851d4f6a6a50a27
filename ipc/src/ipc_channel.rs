//! The renderer ↔ broker link over `ipc-channel` (feature `ipc-channel`), for embedders whose
//! content-process links are `ipc-channel`s (Servo). See ARCHITECTURE.md, "The renderer link
//! over ipc-channel".
//!
//! The seam is the [`Endpoint`]: `cos_renderer` and the broker stub speak to an endpoint exactly
//! as they do over this crate's own sockets, and this module *bridges* each side's endpoint to
//! the `ipc-channel` link, so decoding (which is validation) stays in one place whichever
//! transport an embedder picks. Messages are the same postcard-encoded serde enums; on the wire
//! they travel as bytes so that the browser bounds a renderer's message *before* decoding it:
//!
//! - renderer → browser: an [`IpcBytesSender`] of payloads. A renderer never attaches channels
//!   (the data pipes it uses are created by the browser), so nothing a renderer sends is decoded
//!   by `ipc-channel`'s serde path.
//! - browser → renderer: an [`IpcSender`] of [`ToRenderer`]: the payload and a [`DataPipe`]
//!   (an [`IpcBytesSender`]/[`IpcBytesReceiver`] pair) for each data pipe the reply carries.
//!   The browser pumps each data pipe to and from the storage service's own data pipe in
//!   [`DATA_PIPE_CHUNK_BYTES`] chunks; the service side does not change.
//!
//! Bootstrapping is the embedder's business: [`link`] makes both halves, and [`RendererLink`] is
//! serde, so it can travel to the content process over any `ipc-channel` the embedder already
//! has (Servo's pipeline set-up, an `IpcOneShotServer`).
//!
//! A single-process embedder needs no `ipc-channel` at all: [`Endpoint::pair_in_process`] is the
//! in-process link (crossbeam queues with the same semantics).

use std::io;
use std::sync::Arc;

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use crate::{Endpoint, IpcError, MAX_ATTACHMENTS, MAX_MESSAGE_BYTES, Message, Peer, report_bad_message};

/// The `ipc-channel` crate this link is built on (pinned exactly by the workspace), so that an
/// embedder uses the very same types for its bootstrap.
pub use ipc_channel;

/// The largest data chunk the bridge pumps in one message: a data pipe's frames are at most a
/// 128 KiB chunk plus its header, and the bridge refuses anything larger than one message of
/// this crate ([`MAX_MESSAGE_BYTES`]).
pub const DATA_PIPE_CHUNK_BYTES: usize = 128 * 1024;

/// Browser → renderer: one message and the data pipes it carries, in attachment order.
#[derive(Debug, Serialize, Deserialize)]
pub struct ToRenderer {
    /// The postcard payload (a `Reply`), at most [`MAX_MESSAGE_BYTES`].
    pub payload: Vec<u8>,
    /// One per data pipe the payload names, at most [`MAX_ATTACHMENTS`].
    pub pipes: Vec<DataPipe>,
}

/// The renderer's end of one data pipe over `ipc-channel`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DataPipe {
    /// Renderer → browser (write frames, read requests).
    pub to_browser: IpcBytesSender,
    /// Browser → renderer (read chunks, writer events).
    pub from_browser: IpcBytesReceiver,
}

/// The renderer process's half of its COS link: pass it to the content process (it is serde) and
/// give it to `cos_renderer::RendererConnection::new_ipc_channel` there.
#[derive(Debug, Serialize, Deserialize)]
pub struct RendererLink {
    /// Requests (postcard `RendererToBroker` payloads).
    pub to_browser: IpcBytesSender,
    /// Replies with their data pipes.
    pub from_browser: IpcReceiver<ToRenderer>,
}

/// The browser's half of a renderer's COS link: give it to
/// `cos_browser::CosHost::register_renderer_ipc_channel`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BrowserLink {
    /// The renderer's requests. **Untrusted.**
    pub from_renderer: IpcBytesReceiver,
    /// Replies to the renderer.
    pub to_renderer: IpcSender<ToRenderer>,
}

/// Makes a renderer's COS link: the renderer's half and the browser's half.
///
/// ```
/// use cos_ipc::ipc_channel::ipc_channel::ipc;
/// use cos_ipc::ipc_channel::{RendererLink, link};
///
/// let (renderer_half, browser_half) = link()?;
/// // The renderer's half travels to the content process in its bootstrap, over any ipc-channel
/// // the embedder already has there (here, one made on the spot).
/// let (to_content_process, in_content_process) = ipc::channel::<RendererLink>()?;
/// to_content_process.send(renderer_half)?;
/// let renderer_half = in_content_process.recv()?;
/// // Browser: `CosHost::register_renderer_ipc_channel(renderer, browser_half, terminate)`.
/// // Content process: `RendererConnection::new_ipc_channel(renderer_half)`.
/// # drop((renderer_half, browser_half));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn link() -> io::Result<(RendererLink, BrowserLink)> {
    let (to_browser, from_renderer) = ipc::bytes_channel()?;
    let (to_renderer, from_browser) = ipc::channel()?;
    Ok((RendererLink { to_browser, from_browser }, BrowserLink { from_renderer, to_renderer }))
}

/// Browser side: bridges the renderer's link to a fresh endpoint that the broker reads as if the
/// renderer were on this crate's own transport. Every message from the renderer, on the link and
/// on each data pipe, is bounded ([`MAX_MESSAGE_BYTES`]) before anything else looks at it; an
/// oversized one is reported as a bad message of `peer` (which terminates the renderer).
/// Decoding and validating the payload is the broker's, as for every transport.
///
/// `in_process`: the endpoint's transport, which must be that of the data pipes the broker
/// forwards on it (those of an in-process storage service are in-process).
pub fn bridge_untrusted_renderer(link: BrowserLink, peer: Arc<Peer>, in_process: bool) -> io::Result<Endpoint> {
    let (outer, inner) = if in_process { Endpoint::pair_in_process() } else { Endpoint::pair()? };
    let BrowserLink { from_renderer, to_renderer } = link;
    let inbound = inner.try_clone()?;
    let inbound_peer = peer.clone();
    spawn("cos-ipc-channel-in", move || {
        pump_in(&from_renderer, &inbound, Some(&inbound_peer));
    })?;
    spawn("cos-ipc-channel-out", move || {
        while let Ok(message) = inner.recv() {
            let sent = bridge_message(message, Some(&peer)).and_then(|message| {
                to_renderer.send(message).map_err(|error| IpcError::Io(io::Error::other(error.to_string())))
            });
            if sent.is_err() {
                break;
            }
        }
        inner.shutdown();
    })?;
    Ok(outer)
}

/// Renderer side: bridges the browser's link to a fresh endpoint, for
/// `cos_renderer::RendererConnection` (the browser is trusted, but its messages are bounded all
/// the same).
pub fn bridge_browser(link: RendererLink) -> io::Result<Endpoint> {
    let (outer, inner) = Endpoint::pair()?;
    let RendererLink { to_browser, from_browser } = link;
    let outbound = inner.try_clone()?;
    spawn("cos-ipc-channel-out", move || {
        pump_out(&outbound, &to_browser);
    })?;
    spawn("cos-ipc-channel-in", move || {
        while let Ok(message) = from_browser.recv() {
            if deliver_to_renderer(&inner, message).is_err() {
                break;
            }
        }
        inner.shutdown();
    })?;
    Ok(outer)
}

/// Renderer side: one [`ToRenderer`] into a message on `inner`, each data pipe bridged to an
/// endpoint of its own.
fn deliver_to_renderer(inner: &Endpoint, message: ToRenderer) -> Result<(), IpcError> {
    if message.pipes.len() > MAX_ATTACHMENTS {
        return Err(IpcError::BadAttachment("too many data pipes"));
    }
    let mut attachments = Vec::with_capacity(message.pipes.len());
    for pipe in message.pipes {
        let (renderer_end, bridged) = Endpoint::pair()?;
        let DataPipe { to_browser, from_browser } = pipe;
        let outbound = bridged.try_clone()?;
        spawn("cos-data-pipe-out", move || pump_out(&outbound, &to_browser))?;
        spawn("cos-data-pipe-in", move || pump_in(&from_browser, &bridged, None))?;
        attachments.push(renderer_end);
    }
    inner.send(&message.payload, attachments)
}

/// Browser side: a message for the renderer, each attached endpoint (a data pipe of the
/// service) pumped to and from a fresh `ipc-channel` pair.
fn bridge_message(message: Message, peer: Option<&Arc<Peer>>) -> Result<ToRenderer, IpcError> {
    let Message { bytes, attachments } = message;
    let mut pipes = Vec::with_capacity(attachments.len());
    for service_end in attachments {
        let (to_browser, from_renderer) = ipc::bytes_channel()?;
        let (to_renderer, from_browser) = ipc::bytes_channel()?;
        let outbound = service_end.try_clone()?;
        let peer = peer.cloned();
        spawn("cos-data-pipe-in", move || pump_in(&from_renderer, &service_end, peer.as_ref()))?;
        spawn("cos-data-pipe-out", move || pump_out(&outbound, &to_renderer))?;
        pipes.push(DataPipe { to_browser, from_browser });
    }
    Ok(ToRenderer { payload: bytes, pipes })
}

/// `ipc-channel` → endpoint until either side goes away; with a `peer`, a message over the bound
/// is that peer's bad message. Messages never carry endpoints this way.
fn pump_in(from: &IpcBytesReceiver, to: &Endpoint, peer: Option<&Arc<Peer>>) {
    loop {
        let bytes = match peer {
            Some(peer) => match receive_untrusted(from) {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(_)) => break,
                Err(reason) => {
                    report_bad_message(peer, reason);
                    break;
                }
            },
            None => match from.recv() {
                Ok(bytes) => bytes,
                Err(_) => break,
            },
        };
        if let Err(reason) = check_untrusted(&bytes) {
            if let Some(peer) = peer {
                report_bad_message(peer, reason);
            }
            break;
        }
        if to.send(&bytes, Vec::new()).is_err() {
            break;
        }
    }
    to.shutdown();
}

/// Endpoint → `ipc-channel` until either side goes away. Data pipes and the renderer's requests
/// carry no endpoints; one that does is not forwarded (the pipe is closed).
fn pump_out(from: &Endpoint, to: &IpcBytesSender) {
    while let Ok(message) = from.recv() {
        if !message.attachments.is_empty() || to.send(&message.bytes).is_err() {
            break;
        }
    }
    from.shutdown();
}

/// One `recv` of an untrusted peer's message, with `ipc-channel`'s own panics on what that peer
/// controls (a fragmented message without its fragment channel, a channel attached where none
/// is claimed: `platform/unix/mod.rs` and `OsOpaqueIpcChannel`'s drop in 0.23.1) turned into a
/// bad message instead of a dead browser thread. What it cannot catch is written down in
/// ARCHITECTURE.md ("The renderer link over ipc-channel").
fn receive_untrusted(from: &IpcBytesReceiver) -> Result<Result<Vec<u8>, ipc_channel::IpcError>, &'static str> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| from.recv()))
        .map_err(|_| "a message ipc-channel could not receive (malformed fragments or stray channels)")
}

/// The bound on one message from an untrusted peer, checked before anything decodes it.
pub fn check_untrusted(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err("oversized message on an ipc-channel link");
    }
    Ok(())
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new().name(name.into()).spawn(body).map(drop)
}
