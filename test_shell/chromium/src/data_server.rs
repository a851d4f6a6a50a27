//! Capability URLs: the loopback HTTP server bulk bytes take between Chromium pages and the
//! storage service, so that no file goes through the DevTools protocol as JSON.
//!
//! A read capability (`GET`) is minted by `getFile()` for one open file: single-use, bound to
//! the caller's origin, expiring. A write capability (`POST` slices, each at most
//! [`MAX_SLICE_BYTES`], `?pos=N` for positioned writes) is minted by `createWritable()` for one
//! writer and lives until it closes, aborts or its document goes. Every refusal — unknown,
//! used, expired or another origin's token, any other path or method — is the same `404` with
//! the same body, decided after the same lookup.
//!
//! Everything a page sends counts against a limit: a slice must declare its length, and the
//! declared bytes of all slices being received at once are reserved from one budget
//! ([`MAX_IN_FLIGHT_BYTES`]) before any byte is read, so however many connections pages open,
//! the bridge never buffers more than that; connections are capped ([`MAX_CONNECTIONS`]) and a
//! connection that sends no request head for [`HEADER_TIMEOUT`] is closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cos_renderer::{File, FileSystemWritableFileStream};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

/// The largest POST body (one slice of a write).
pub const MAX_SLICE_BYTES: usize = 8 << 20;

/// Bytes of write slices being received at once, over all pages: a slice waits for room before
/// its body is read.
pub const MAX_IN_FLIGHT_BYTES: usize = 4 * MAX_SLICE_BYTES;

/// Connections served at once; further ones wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection that sends no complete request head for this long is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an unused read capability stays valid.
const READ_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// A writer shared by its capability and the binding calls (seek, truncate, close, abort).
pub type WriterSlot = Arc<Mutex<Option<FileSystemWritableFileStream>>>;

/// What a token grants.
#[derive(Clone)]
pub(crate) enum Capability {
    /// One read of this file.
    Read(Arc<File>),
    /// Writes to this writer.
    Write(WriterSlot),
}

struct Grant {
    /// The serialised origin the token belongs to, as Chromium sends it in `Origin`.
    origin: String,
    capability: Capability,
    expires: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Write slices waiting for room in the in-flight budget.
    waiting_slices: usize,
    tokens: HashMap<String, Grant>,
    served: HashMap<String, u64>,
    received: HashMap<String, u64>,
}

/// The server. Dropping it stops serving (the accept task ends with the runtime).
#[derive(Clone)]
pub struct DataServer {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    /// The in-flight budget for write slices, one permit per byte.
    in_flight: Arc<Semaphore>,
}

impl DataServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = Self {
            state: Arc::new(Mutex::new(State::default())),
            addr,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES)),
        };
        let serving = server.clone();
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = connections.clone().acquire_owned().await else { return };
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of descriptors, say: back off instead of spinning on the error.
                        tracing::warn!(%error, "capability server could not accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // A streamed answer goes out as headers, then body frames: with Nagle's algorithm
                // a small body waits for the ACK of the headers, which the client delays (~40 ms
                // per small read on loopback).
                let _ = stream.set_nodelay(true);
                let server = serving.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let service = hyper::service::service_fn(move |request| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(request).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(io, service)
                        .await;
                    if let Err(error) = served {
                        tracing::debug!(%error, "capability connection ended");
                    }
                });
            }
        });
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Mints a token for `capability`, bound to `origin`; returns it and its URL.
    pub(crate) fn mint(&self, origin: &str, capability: Capability) -> (String, String) {
        let mut bytes = [0u8; 16];
        // 128 bits from the kernel: a page must not be able to guess another page's token.
        rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).expect("getrandom");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let expires = matches!(capability, Capability::Read(_)).then(|| Instant::now() + READ_TOKEN_LIFETIME);
        self.sweep_expired();
        let mut state = self.state.lock();
        state.tokens.insert(token.clone(), Grant { origin: origin.to_owned(), capability, expires });
        let url = format!("{}/c/{token}", self.base_url());
        (token, url)
    }

    /// Drops expired read capabilities, and with them their open files (each holds a data pipe
    /// of the service's per-renderer allowance, which must come back even if the page never
    /// mints again).
    pub(crate) fn sweep_expired(&self) {
        let now = Instant::now();
        self.state.lock().tokens.retain(|_, grant| grant.expires.is_none_or(|at| at > now));
    }

    /// Revokes a token (its writer closed, or its document went away).
    pub(crate) fn revoke(&self, token: &str) {
        self.state.lock().tokens.remove(token);
    }

    /// Bytes served from COS to pages of `origin` (serialised, e.g. `https://a.example`).
    pub fn bytes_served_to(&self, origin: &str) -> u64 {
        self.state.lock().served.get(origin).copied().unwrap_or(0)
    }

    /// Bytes pages of `origin` wrote into COS.
    pub fn bytes_received_from(&self, origin: &str) -> u64 {
        self.state.lock().received.get(origin).copied().unwrap_or(0)
    }

    /// Whether `token` is still valid (unused, unexpired).
    pub(crate) fn is_live(&self, token: &str) -> bool {
        self.state.lock().tokens.get(token).is_some_and(|grant| grant.expires.is_none_or(|at| at > Instant::now()))
    }

    /// Write slices waiting for room in the in-flight budget, and the bytes reserved by the slices
    /// being received.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.state.lock().waiting_slices, MAX_IN_FLIGHT_BYTES - self.in_flight.available_permits())
    }

    /// Tokens currently valid (for tests).
    pub fn live_tokens(&self) -> usize {
        self.state.lock().tokens.len()
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<DataBody> {
        let token = request.uri().path().strip_prefix("/c/").unwrap_or("").to_owned();
        let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        // One lookup for every request, whatever it turns out to be.
        let capability = {
            let mut state = self.state.lock();
            let now = Instant::now();
            let valid = state
                .tokens
                .get(&token)
                .is_some_and(|grant| grant.origin == origin && grant.expires.is_none_or(|at| at > now));
            match (valid, request.method()) {
                (true, &Method::GET) => match state.tokens.get(&token).map(|g| g.capability.clone()) {
                    Some(Capability::Read(_)) => state.tokens.remove(&token).map(|g| g.capability),
                    _ => None,
                },
                (true, &Method::POST) => match state.tokens.get(&token).map(|g| g.capability.clone()) {
                    Some(capability @ Capability::Write(_)) => Some(capability),
                    _ => None,
                },
                _ => None,
            }
        };
        match capability {
            Some(Capability::Read(file)) => self.serve_read(file, origin),
            Some(Capability::Write(writer)) => self.serve_write(request, writer, origin).await,
            None => not_found(),
        }
    }

    fn serve_read(&self, file: Arc<File>, origin: String) -> Response<DataBody> {
        let size = file.size();
        let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        let state = self.state.clone();
        let allowed = origin.clone();
        tokio::task::spawn_blocking(move || {
            let mut sent = 0u64;
            let mut gone = false;
            let result = file.read_with(0, size, |chunk| {
                if gone {
                    return;
                }
                if sender.blocking_send(Ok(Bytes::copy_from_slice(chunk))).is_err() {
                    gone = true;
                } else {
                    sent += chunk.len() as u64;
                }
            });
            *state.lock().served.entry(origin).or_default() += sent;
            if let Err(error) = result {
                // Ends the response early: the page's read fails instead of seeing short bytes.
                let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
            }
        });
        let mut response = Response::new(DataBody::Stream(receiver));
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        with_cors(response, &allowed)
    }

    async fn serve_write(&self, request: Request<Incoming>, writer: WriterSlot, origin: String) -> Response<DataBody> {
        let position = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("pos=")))
            .map(|value| value.parse::<u64>());
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A slice states its length up front (browsers always do for a Blob body), so its bytes
        // can be reserved before any is read.
        let Some(declared) = declared.filter(|&length| length <= MAX_SLICE_BYTES as u64) else {
            return with_cors(json_response(StatusCode::PAYLOAD_TOO_LARGE, &refusal()), &origin);
        };
        if matches!(position, Some(Err(_))) {
            return with_cors(json_response(StatusCode::PAYLOAD_TOO_LARGE, &refusal()), &origin);
        }
        // Bounded by the check above; at least one permit so an empty slice also takes its turn.
        let reserve = u32::try_from(declared.max(1)).unwrap_or(u32::MAX);
        self.state.lock().waiting_slices += 1;
        let permit = self.in_flight.clone().acquire_many_owned(reserve).await;
        self.state.lock().waiting_slices -= 1;
        let Ok(_permit) = permit else { return not_found() };
        let body = match Limited::new(request.into_body(), declared as usize).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return with_cors(json_response(StatusCode::PAYLOAD_TOO_LARGE, &refusal()), &origin),
        };
        let length = body.len() as u64;
        let position = position.and_then(Result::ok);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut slot = writer.lock();
            let Some(stream) = slot.as_mut() else {
                return Err(cos_common::CosError::InvalidState(cos_common::InvalidStateKind::StreamClosed));
            };
            match position {
                Some(position) => stream.write_at(position, &body),
                None => stream.write(&body),
            }
        })
        .await
        .unwrap_or(Err(cos_common::CosError::Unknown));
        let value = match outcome {
            Ok(()) => {
                *self.state.lock().received.entry(origin.clone()).or_default() += length;
                json!({})
            }
            Err(error) => json!({ "error": crate::bridge::error_json(&error) }),
        };
        with_cors(json_response(StatusCode::OK, &value), &origin)
    }
}

fn refusal() -> serde_json::Value {
    json!({ "error": { "name": "QuotaExceededError", "message": "A write slice is too large." } })
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<DataBody> {
    let mut response = Response::new(DataBody::Full(Full::new(Bytes::from(value.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn with_cors(mut response: Response<DataBody>, origin: &str) -> Response<DataBody> {
    if let Ok(value) = HeaderValue::from_str(origin) {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

/// The one refusal: no CORS header, so a page learns nothing from it either.
fn not_found() -> Response<DataBody> {
    let mut response = Response::new(DataBody::Full(Full::new(Bytes::from_static(b"not found"))));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// A response body: whole, or streamed from a reader thread.
pub enum DataBody {
    /// A small body.
    Full(Full<Bytes>),
    /// A file's bytes as they are read.
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl Body for DataBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            DataBody::Full(full) => Pin::new(full).poll_frame(cx).map_err(|never| match never {}),
            DataBody::Stream(receiver) => receiver.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::TcpStream;

    use super::*;

    /// Slices that declare more than the budget wait for room before any of their bytes is read,
    /// however many connections send them.
    #[test]
    fn write_slices_wait_for_room_in_the_in_flight_budget() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = runtime.block_on(DataServer::start()).unwrap();
        let origin = "https://a.example";
        let (token, _) = server.mint(origin, Capability::Write(Arc::new(Mutex::new(None))));
        let slices = MAX_IN_FLIGHT_BYTES / MAX_SLICE_BYTES + 1;
        // Each connection declares a whole slice and sends one byte of it, then stalls.
        let connections: Vec<TcpStream> = (0..slices)
            .map(|_| {
                let mut stream = TcpStream::connect(server.addr).unwrap();
                write!(
                    stream,
                    "POST /c/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\nContent-Length: {MAX_SLICE_BYTES}\r\n\r\nx"
                )
                .unwrap();
                stream
            })
            .collect();
        // A hang guard, not a timing assertion: the state is reached as soon as the server has
        // read the heads.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (waiting, reserved) = server.in_flight();
            assert!(reserved <= MAX_IN_FLIGHT_BYTES, "reserved {reserved} bytes beyond the budget");
            if waiting == 1 && reserved == MAX_IN_FLIGHT_BYTES {
                break;
            }
            assert!(Instant::now() < deadline, "never saw one slice waiting: waiting {waiting}, reserved {reserved}");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The waiting slice gets its turn once a reserved one goes away.
        drop(connections);
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.in_flight() != (0, 0) {
            assert!(Instant::now() < deadline, "the budget was not returned: {:?}", server.in_flight());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A slice without a declared length cannot be reserved, so it is refused.
    #[test]
    fn a_slice_without_a_length_is_refused() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let server = runtime.block_on(DataServer::start()).unwrap();
        let origin = "https://a.example";
        let (token, _) = server.mint(origin, Capability::Write(Arc::new(Mutex::new(None))));
        let mut stream = TcpStream::connect(server.addr).unwrap();
        write!(
            stream,
            "POST /c/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    }
}
