//! `fetch()` for page realms: each request goes over the renderer's network pipe to the browser
//! process, which makes the real HTTP request to the loopback hub on the frame's behalf
//! (attributed to the frame's origin from the browser's frame table: neither script nor the
//! renderer picks it). A thread per request receives the body in chunks (bounded memory).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use cos_ipc::Endpoint;

use crossbeam_channel::{Receiver, TryRecvError};
use rquickjs::{ArrayBuffer, Ctx, Function, Object, Promise, Value};

use cos_common::{OriginsInput, OriginsOption};
use rquickjs::Exception;

use crate::js::{OpsHandle, Settle, settle_err, settle_ok};
use crate::protocol::{FetchRequest, FetchResponse, FetchScope, RequestText};
use crate::sri::Integrity;

/// Body chunks in flight per response (each up to 1 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

enum Chunk {
    Data(Vec<u8>),
    End,
    Failed(String),
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    url: String,
    redirected: bool,
    /// What the browser's store of the response warns the page's console about (fixed texts).
    warnings: Vec<&'static str>,
}

#[derive(Default)]
struct Bodies {
    streams: HashMap<u32, Receiver<Chunk>>,
    next: u32,
}

/// Installs `__fetch` (`start(url, integrity, {kind, values, contentType})`, `read(id)`) in a realm of `frame` (a worker's: its page's)
/// whose requests go over `network`.
pub fn install(
    ctx: &Ctx<'_>,
    network: Arc<Endpoint>,
    frame: u64,
    ops: OpsHandle,
    realm: usize,
) -> rquickjs::Result<()> {
    let bodies = Rc::new(RefCell::new(Bodies::default()));
    let object = Object::new(ctx.clone())?;
    object.set("start", Function::new(ctx.clone(), start(network, frame, bodies.clone(), ops.clone(), realm))?)?;
    object.set("read", Function::new(ctx.clone(), read(bodies, ops, realm))?)?;
    ctx.globals().set("__fetch", object)?;
    Ok(())
}

/// A future that polls a channel (the event loop polls it after each wake-up).
/// Body bytes handed to script per chunk, at most (more only if one message is larger).
const SCRIPT_CHUNK: usize = 1 << 20;

/// The next response message (`None`: malformed), or a failure if the browser went away.
fn receive(response: &Endpoint) -> Option<FetchResponse> {
    decoded(response.recv())
}

fn decoded(received: Result<cos_ipc::Message, cos_ipc::IpcError>) -> Option<FetchResponse> {
    match received {
        Ok(message) => cos_ipc::decode(&message.bytes).ok(),
        Err(error) => Some(FetchResponse::Failed(format!("the browser went away: {error}"))),
    }
}

/// Sends the request to the browser's network service; returns the pipe its response comes on.
pub(crate) fn ask_browser(network: &Endpoint, frame: u64, request: &Outgoing) -> Result<Endpoint, String> {
    let (mine, theirs) = Endpoint::pair().map_err(|e| e.to_string())?;
    let request = FetchRequest {
        frame,
        url: request.url.clone(),
        integrity: request.integrity.clone(),
        cross_origin_storage: request.scope.clone(),
        response: theirs.into(),
    };
    let (bytes, attachments) = cos_ipc::encode_with_attachments(request).map_err(|e| e.to_string())?;
    network.send(&bytes, attachments).map_err(|e| format!("the browser went away: {e}"))?;
    Ok(mine)
}

/// A request as script (or a module import) made it, validated.
pub(crate) struct Outgoing {
    /// The absolute URL.
    pub(crate) url: String,
    /// The `integrity` metadata, as header text.
    pub(crate) integrity: Option<RequestText>,
    /// The `crossOriginStorage` scope.
    pub(crate) scope: Option<FetchScope>,
}

/// Validates a request's `integrity` and `crossOriginStorage` members (`cos`: how script passed
/// `origins` — `"absent"`, `"single"` or `"sequence"` — its values, and `contentType`), as
/// `getFileHandle` validates `origins`: a bad origin is a `TypeError`, `''` and `[]` are the
/// same-site scope.
fn validate(
    url: String,
    integrity: Option<String>,
    cos: Option<(String, Vec<String>, Option<String>)>,
) -> Result<Outgoing, String> {
    let integrity = integrity
        .filter(|text| !text.is_empty())
        .map(|text| RequestText::new(text).ok_or("fetch: the integrity metadata is not valid header text"))
        .transpose()?;
    let scope = match cos {
        None => None,
        Some((kind, values, content_type)) => {
            let input = match (kind.as_str(), values.as_slice()) {
                ("single", [value]) if value.is_empty() => OriginsInput::Absent,
                ("single", [value]) => OriginsInput::Single(value.clone()),
                ("sequence", _) => OriginsInput::Sequence(values),
                _ => OriginsInput::Absent,
            };
            let origins =
                OriginsOption::parse(&input).map_err(|error| format!("fetch: crossOriginStorage: {error}"))?;
            let content_type = content_type
                .map(|text| {
                    RequestText::new(text).ok_or("fetch: crossOriginStorage.contentType is not valid header text")
                })
                .transpose()?;
            Some(FetchScope { origins, content_type })
        }
    };
    Ok(Outgoing { url, integrity, scope })
}

struct Poll<T>(Receiver<T>);

impl<T> std::future::Future for Poll<T> {
    type Output = Option<T>;
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        match self.0.try_recv() {
            Ok(value) => std::task::Poll::Ready(Some(value)),
            Err(TryRecvError::Empty) => std::task::Poll::Pending,
            Err(TryRecvError::Disconnected) => std::task::Poll::Ready(None),
        }
    }
}

fn type_error(message: String) -> Settle {
    settle_err(move |ctx| {
        let constructor: rquickjs::Constructor = ctx.globals().get("TypeError")?;
        constructor.construct((message,))
    })
}

fn start(
    network: Arc<Endpoint>,
    frame: u64,
    bodies: Rc<RefCell<Bodies>>,
    ops: OpsHandle,
    realm: usize,
) -> impl for<'js> Fn(Ctx<'js>, String, Option<String>, Option<Object<'js>>) -> rquickjs::Result<Promise<'js>> {
    move |ctx, url, integrity, cos| {
        // `{kind, values, contentType}` from web.js, or null without `crossOriginStorage`.
        let cos = match cos {
            Some(cos) => Some((cos.get("kind")?, cos.get("values")?, cos.get("contentType")?)),
            None => None,
        };
        let request = validate(url, integrity, cos).map_err(|message| Exception::throw_type(&ctx, &message))?;
        let (head_tx, head_rx) = crossbeam_channel::bounded::<Result<Head, String>>(1);
        let (body_tx, body_rx) = crossbeam_channel::bounded::<Chunk>(CHUNKS_IN_FLIGHT);
        let network = network.clone();
        let spawned = std::thread::Builder::new()
            .name("shell-fetch".into())
            .spawn(move || receive_response(&network, frame, &request, head_tx, &body_tx));
        if let Err(error) = spawned {
            return Err(Exception::throw_internal(&ctx, &format!("cannot start a fetch: {error}")));
        }
        let id = {
            let mut table = bodies.borrow_mut();
            table.next += 1;
            let id = table.next;
            table.streams.insert(id, body_rx);
            id
        };
        ops.start(&ctx, realm, async move {
            match Poll(head_rx).await {
                Some(Ok(head)) => settle_ok(move |ctx| {
                    let info = Object::new(ctx.clone())?;
                    info.set("id", id)?;
                    info.set("status", head.status)?;
                    info.set("url", head.url)?;
                    info.set("redirected", head.redirected)?;
                    let headers = rquickjs::Array::new(ctx.clone())?;
                    for (index, (name, value)) in head.headers.into_iter().enumerate() {
                        let pair = rquickjs::Array::new(ctx.clone())?;
                        pair.set(0, name)?;
                        pair.set(1, value)?;
                        headers.set(index, pair)?;
                    }
                    info.set("headers", headers)?;
                    info.set("warnings", head.warnings)?;
                    Ok(info.into_value())
                }),
                Some(Err(message)) => type_error(message),
                None => type_error("fetch failed".into()),
            }
        })
    }
}

/// Runs on the request's thread: sends it, then passes the head to `head_tx` and the body to
/// `body_tx` as they come. With integrity metadata the whole body is checked first (Fetch: the
/// response is only handed over once its integrity matched); a mismatch fails the fetch.
fn receive_response(
    network: &Endpoint,
    frame: u64,
    request: &Outgoing,
    head_tx: crossbeam_channel::Sender<Result<Head, String>>,
    body_tx: &crossbeam_channel::Sender<Chunk>,
) {
    let url = &request.url;
    let failed = |error: String| format!("Failed to fetch {url}: {error}");
    let response = match ask_browser(network, frame, request) {
        Ok(response) => response,
        Err(error) => {
            let _ = head_tx.send(Err(failed(error)));
            return;
        }
    };
    // With integrity metadata the browser's network service checks the bytes (it decides what
    // is stored, so it hashes them anyway) and fails the response on a mismatch; here the
    // response is only withheld until its end, as Fetch requires, not hashed a second time.
    if request.integrity.as_ref().is_some_and(|text| Integrity::parse(text.as_str()).is_some()) {
        let mut head = None;
        let mut body: Vec<Vec<u8>> = Vec::new();
        let mut warnings = Vec::new();
        loop {
            match receive(&response) {
                Some(FetchResponse::Head { status, headers, url, redirected }) => {
                    head = Some(Head { status, headers, url, redirected, warnings: Vec::new() });
                }
                Some(FetchResponse::Body(bytes)) => match body.last_mut() {
                    Some(last) if last.len() + bytes.len() <= SCRIPT_CHUNK => last.extend_from_slice(&bytes),
                    _ => body.push(bytes),
                },
                Some(FetchResponse::StoreWarnings(stored)) => warnings.extend(stored.iter().map(|w| w.message())),
                Some(FetchResponse::End) => break,
                Some(FetchResponse::Failed(error)) => {
                    let _ = head_tx.send(Err(failed(error)));
                    return;
                }
                None => {
                    let _ = head_tx.send(Err(failed("malformed response from the browser".into())));
                    return;
                }
            }
        }
        let Some(mut head) = head else {
            let _ = head_tx.send(Err(failed("the response had no head".into())));
            return;
        };
        head.warnings = warnings;
        let _ = head_tx.send(Ok(head));
        for bytes in body {
            if body_tx.send(Chunk::Data(bytes)).is_err() {
                return;
            }
        }
        let _ = body_tx.send(Chunk::End);
        return;
    }
    let mut head_tx = Some(head_tx);
    let mut pending = None;
    loop {
        let message = pending.take().unwrap_or_else(|| receive(&response));
        let (chunk, done) = match message {
            Some(FetchResponse::Head { status, headers, url, redirected }) => {
                if let Some(head_tx) = head_tx.take() {
                    let _ = head_tx.send(Ok(Head { status, headers, url, redirected, warnings: Vec::new() }));
                }
                continue;
            }
            // Only a request with integrity metadata is stored, and it takes the branch above.
            Some(FetchResponse::StoreWarnings(_)) => continue,
            Some(FetchResponse::Body(mut bytes)) => {
                // Hand script up to 1 MiB at a time: the pieces already here are
                // joined, so that script (and a COS write per chunk) runs less often.
                while bytes.len() < SCRIPT_CHUNK {
                    match response.recv_timeout(Duration::ZERO) {
                        Err(cos_ipc::IpcError::Timeout) => break, // nothing more yet
                        received => match decoded(received) {
                            Some(FetchResponse::Body(more)) => bytes.extend_from_slice(&more),
                            other => {
                                pending = Some(other);
                                break;
                            }
                        },
                    }
                }
                (Chunk::Data(bytes), false)
            }
            Some(FetchResponse::End) => (Chunk::End, true),
            Some(FetchResponse::Failed(error)) => (Chunk::Failed(error), true),
            None => (Chunk::Failed("malformed response from the browser".into()), true),
        };
        // Before the head, a failure fails the fetch itself.
        if let Some(head_tx) = head_tx.take() {
            let reason = match chunk {
                Chunk::Failed(error) => error,
                _ => "the response had no head".into(),
            };
            let _ = head_tx.send(Err(failed(reason)));
            return;
        }
        if body_tx.send(chunk).is_err() || done {
            return; // finished, or the page dropped the body
        }
    }
}

fn read(
    bodies: Rc<RefCell<Bodies>>,
    ops: OpsHandle,
    realm: usize,
) -> impl for<'js> Fn(Ctx<'js>, u32) -> rquickjs::Result<Promise<'js>> {
    move |ctx, id| {
        let receiver = bodies.borrow().streams.get(&id).cloned();
        let bodies = bodies.clone();
        ops.start(&ctx, realm, async move {
            let Some(receiver) = receiver else { return type_error("the body was already consumed".into()) };
            match Poll(receiver).await {
                Some(Chunk::Data(bytes)) => {
                    settle_ok(move |ctx| Ok(ArrayBuffer::new(ctx.clone(), bytes)?.into_value()))
                }
                Some(Chunk::End) | None => {
                    bodies.borrow_mut().streams.remove(&id);
                    settle_ok(|ctx| Ok(Value::new_null(ctx.clone())))
                }
                Some(Chunk::Failed(message)) => {
                    bodies.borrow_mut().streams.remove(&id);
                    type_error(format!("network error while reading the body: {message}"))
                }
            }
        })
    }
}
