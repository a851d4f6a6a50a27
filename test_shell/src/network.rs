//! The browser process's network service: renderers do not open connections themselves; they
//! ask over their network pipe, and the browser makes the request on behalf of the frame,
//! attributing it to the frame's origin from its own frame table (the hub counts bytes per
//! origin by that attribution, so a renderer cannot charge another origin).
//!
//! It is also the embedder of COS's fetch integration (SPEC §11): a request with a
//! `crossOriginStorage` scope and a lone `sha256` integrity value is first looked up through
//! `cos_browser`'s loader (a hit answers from COS without any network request); on a miss it
//! goes to the network, the browser hashing the body for SRI while streaming it to the renderer
//! and teeing it into the loader's store, which is finished only if the integrity matched.

use std::io::Read;
use std::sync::Arc;

use cos_browser::{FrameOrigin, FrameTable, Loader};
use cos_common::interface::{FrameId, RendererId};
use cos_ipc::Endpoint;

use crate::protocol::{FETCH_CHUNK, FetchRequest, FetchResponse, FetchScope};
use crate::servers::OriginServers;
use crate::sri::Integrity;

/// Redirects followed at most (Fetch's limit).
const MAX_REDIRECTS: usize = 20;

/// What the network service works with: the frame table (who asks), the origin servers (where
/// named hosts go) and the COS loader.
pub(crate) struct Network {
    pub(crate) frames: Arc<FrameTable>,
    pub(crate) servers: Arc<OriginServers>,
    pub(crate) loader: Loader,
}

/// One request as the browser acts on it.
struct Request {
    frame: FrameId,
    url: String,
    /// The frame's origin, for attribution.
    origin: String,
    integrity: Option<Integrity>,
    scope: Option<FetchScope>,
}

/// Serves one renderer's network pipe on a thread until the renderer goes away. `kill` ends a
/// renderer that names a frame it does not host or sends a request that does not decode.
pub(crate) fn serve_renderer(
    renderer: RendererId,
    pipe: Endpoint,
    network: Arc<Network>,
    kill: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("shell-network-{}", renderer.0)).spawn(move || {
        loop {
            let message = match pipe.recv() {
                Ok(message) => message,
                Err(_) => return, // the renderer exited
            };
            // Decoding checks the response pipe is attached, and nothing else is, and validates
            // the integrity text and the COS scope.
            let Ok(FetchRequest { frame, url, integrity, cross_origin_storage, response }) =
                cos_ipc::decode_with_attachments(&message.bytes, message.attachments)
            else {
                tracing::error!(renderer = renderer.0, "a malformed fetch request: ending the renderer");
                kill();
                return;
            };
            let response = response.into_endpoint();
            let origin = match network.frames.get(FrameId(frame)) {
                Some(info) if info.renderer == renderer => match info.origin {
                    FrameOrigin::Tuple(origin) => origin.to_string(),
                    FrameOrigin::Opaque => "null".to_owned(),
                },
                _ => {
                    tracing::error!(
                        renderer = renderer.0,
                        frame,
                        "a fetch for a frame the renderer does not host: ending it"
                    );
                    kill();
                    return;
                }
            };
            let request = Request {
                frame: FrameId(frame),
                url,
                origin,
                integrity: integrity.as_ref().and_then(|text| Integrity::parse(text.as_str())),
                scope: cross_origin_storage,
            };
            let network = network.clone();
            let spawned = std::thread::Builder::new()
                .name("shell-fetch".into())
                .spawn(move || fetch(&network, request, &response));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a fetch");
            }
        }
    })?;
    Ok(())
}

/// Sends one message on a response pipe; `false` if the renderer is gone or the message cannot
/// be sent (then the fetch is over).
fn send(response: &Endpoint, message: &FetchResponse) -> bool {
    match cos_ipc::encode(message) {
        Ok(bytes) => response.send(&bytes, Vec::new()).is_ok(),
        Err(error) => {
            // Only a head can outgrow a message (body pieces are sized to fit): fail the fetch.
            let failed = FetchResponse::Failed(format!("the response cannot be passed on: {error}"));
            if let Ok(bytes) = cos_ipc::encode(&failed) {
                let _ = response.send(&bytes, Vec::new());
            }
            false
        }
    }
}

/// Answers the request into `response`: from COS on a lookup hit, otherwise from the network;
/// stops when the renderer stops reading (its end of the pipe closed).
fn fetch(network: &Network, request: Request, response: &Endpoint) {
    // Several chunks in flight, so that the hub, this thread and the renderer overlap.
    let _ = response.set_send_buffer(2 << 20);
    let cos = request.scope.clone().and_then(|scope| Some((request.integrity.as_ref()?.cos_hash()?, scope)));
    if let Some((hash, scope)) = &cos
        && let Some(body) = network.loader.lookup(request.frame, *hash)
    {
        return answer_from_cos(body, scope, &request.url, response);
    }
    let url = request.url.as_str();
    let (mut reader, final_url, redirected) = match open_following_redirects(&network.servers, url, &request.origin) {
        Ok(opened) => opened,
        Err(error) => {
            send(response, &FetchResponse::Failed(format!("Failed to fetch {url}: {error}")));
            return;
        }
    };
    let head = reader.head().clone();
    // Only a whole resource is stored (a 206 is a piece, a 404 page fails SRI anyway).
    let mut store = cos.filter(|_| head.status == 200).and_then(|(hash, scope)| {
        network.loader.store(request.frame, hash, scope.origins, head.header("cross-origin-storage-allow-origin"))
    });
    let mut checker = request.integrity.as_ref().map(Integrity::checker);
    let head = FetchResponse::Head { status: head.status, headers: head.headers, url: final_url, redirected };
    if !send(response, &head) {
        return; // the store, dropped, aborts
    }
    let mut buffer = vec![0u8; FETCH_CHUNK];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                send(response, &FetchResponse::Failed(error.to_string()));
                return;
            }
        };
        let piece = &buffer[..n];
        if let Some(checker) = &mut checker {
            checker.update(piece);
        }
        if let Some(store) = &mut store {
            store.write(piece);
        }
        if !send(response, &FetchResponse::Body(piece.to_vec())) {
            return;
        }
    }
    if checker.is_some_and(|checker| !checker.matches()) {
        if let Some(store) = store {
            store.abort();
        }
        send(response, &FetchResponse::Failed(format!("{url}: the response does not match its integrity metadata")));
        return;
    }
    // Committed before the end is sent: once the page has the whole response, its next
    // request finds the entry.
    if let Some(store) = store {
        match store.finish() {
            Ok(warnings) if !warnings.is_empty() => {
                if !send(response, &FetchResponse::StoreWarnings(warnings)) {
                    return;
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "a fetched resource was not stored"),
        }
    }
    send(response, &FetchResponse::End);
}

/// A lookup hit: status 200, `Content-Length`, `Content-Type` only from the scope's
/// `contentType`, the request's URL (SPEC §11); the body streamed from the service.
fn answer_from_cos(body: cos_browser::CosBody, scope: &FetchScope, url: &str, response: &Endpoint) {
    let mut headers = vec![("content-length".to_owned(), body.size().to_string())];
    if let Some(content_type) = &scope.content_type {
        headers.push(("content-type".to_owned(), content_type.as_str().to_owned()));
    }
    let head = FetchResponse::Head { status: 200, headers, url: url.to_owned(), redirected: false };
    if !send(response, &head) {
        return;
    }
    let streamed = body
        .stream(|piece| piece.chunks(FETCH_CHUNK).all(|chunk| send(response, &FetchResponse::Body(chunk.to_vec()))));
    match streamed {
        Ok(()) => {
            send(response, &FetchResponse::End);
        }
        Err(cos_browser::LoaderError::ConsumerGone) => {}
        Err(error) => {
            tracing::debug!(%error, "a COS response failed while streaming");
            send(response, &FetchResponse::Failed("network error".into()));
        }
    }
}

/// Opens `url`, following redirects (at most [`MAX_REDIRECTS`]); returns the final response,
/// its URL and whether a redirect was followed.
fn open_following_redirects(
    servers: &OriginServers,
    url: &str,
    origin: &str,
) -> Result<(cos_test_hub::ResponseReader, String, bool), String> {
    let mut current = url.to_owned();
    for redirects in 0..=MAX_REDIRECTS {
        let reader =
            servers.open("GET", &current, &[(cos_test_hub::ORIGIN_HEADER, origin)]).map_err(|e| e.to_string())?;
        let location = reader.head().header("location").map(str::to_owned);
        match (reader.status(), location) {
            (301 | 302 | 303 | 307 | 308, Some(location)) if redirects < MAX_REDIRECTS => {
                let base = url::Url::parse(&current).map_err(|e| e.to_string())?;
                let next = base.join(&location).map_err(|e| format!("a redirect to {location:?}: {e}"))?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(format!("a redirect to a {} URL", next.scheme()));
                }
                current = next.into();
            }
            (301 | 302 | 303 | 307 | 308, Some(_)) => return Err("too many redirects".into()),
            _ => return Ok((reader, current, redirects > 0)),
        }
    }
    Err("too many redirects".into())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use cos_browser::FrameInfo;
    use cos_common::Origin;

    use super::*;

    /// A network service for renderer 1 whose frame table has frame 7 in renderer 2; returns the
    /// renderer's end of the pipe and what reports the kill.
    fn service() -> (Endpoint, mpsc::Receiver<()>) {
        let frames = Arc::new(FrameTable::default());
        let origin = Origin::from_url("https://other.example/").unwrap();
        frames.insert(FrameId(7), FrameInfo::top_level(RendererId(2), origin));
        let (browser, renderer) = Endpoint::pair().unwrap();
        let (killed, kills) = mpsc::channel();
        let loader = Loader::unconnected();
        let network = Arc::new(Network { frames, servers: Arc::default(), loader });
        serve_renderer(RendererId(1), browser, network, move || {
            let _ = killed.send(());
        })
        .unwrap();
        (renderer, kills)
    }

    /// A request for frame 7 without integrity or COS scope, answered on `response`.
    fn plain_request(response: Endpoint) -> FetchRequest {
        FetchRequest {
            frame: 7,
            url: "http://127.0.0.1:9/".into(),
            integrity: None,
            cross_origin_storage: None,
            response: response.into(),
        }
    }

    #[test]
    fn a_renderer_fetching_for_another_renderers_frame_is_ended() {
        let (renderer, kills) = service();
        let (_mine, theirs) = Endpoint::pair().unwrap();
        let request = plain_request(theirs);
        let (bytes, attachments) = cos_ipc::encode_with_attachments(request).unwrap();
        renderer.send(&bytes, attachments).unwrap();
        kills.recv_timeout(Duration::from_secs(10)).expect("the renderer is ended");
    }

    #[test]
    fn a_request_without_its_response_pipe_ends_the_renderer() {
        let (renderer, kills) = service();
        let (_mine, theirs) = Endpoint::pair().unwrap();
        let request = plain_request(theirs);
        // The message names its pipe, but the pipe stays behind.
        let (bytes, _pipe) = cos_ipc::encode_with_attachments(request).unwrap();
        renderer.send(&bytes, Vec::new()).unwrap();
        kills.recv_timeout(Duration::from_secs(10)).expect("the renderer is ended");
    }

    /// `FetchRequest` as a compromised renderer could lay it out, with a scope that no honest
    /// renderer sends.
    #[derive(serde::Serialize)]
    struct RawRequest {
        frame: u64,
        url: String,
        integrity: Option<String>,
        cross_origin_storage: Option<(RawOrigins, Option<String>)>,
        response: cos_ipc::Attached,
    }

    #[derive(serde::Serialize)]
    enum RawOrigins {
        _Omitted,
        List(Vec<String>),
    }

    #[test]
    fn an_invalid_scope_or_integrity_text_ends_the_renderer() {
        let hostile = [
            (None, Some((RawOrigins::List(Vec::new()), None))),
            (None, Some((RawOrigins::List(vec!["https://a.example".into(); 2]), None))),
            (None, Some((RawOrigins::List(vec!["not an origin".into()]), None))),
            (Some("sha256-x\r\nInjected: 1".to_owned()), None),
        ];
        for (integrity, cross_origin_storage) in hostile {
            let (renderer, kills) = service();
            let (_mine, theirs) = Endpoint::pair().unwrap();
            let request = RawRequest {
                frame: 7,
                url: "http://127.0.0.1:9/".into(),
                integrity,
                cross_origin_storage,
                response: theirs.into(),
            };
            let (bytes, attachments) = cos_ipc::encode_with_attachments(request).unwrap();
            renderer.send(&bytes, attachments).unwrap();
            kills.recv_timeout(Duration::from_secs(10)).expect("the renderer is ended");
        }
    }
}
