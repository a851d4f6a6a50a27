//! The browser process's network service: renderers do not open connections themselves; they
//! ask over their network pipe, and the browser makes the request on behalf of the frame,
//! attributing it to the frame's origin from its own frame table (the hub counts bytes per
//! origin by that attribution, so a renderer cannot charge another origin).

use std::io::Read;
use std::sync::Arc;

use cos_browser::{FrameOrigin, FrameTable};
use cos_common::interface::{FrameId, RendererId};
use cos_ipc::Endpoint;

use crate::protocol::{FETCH_CHUNK, FetchRequest, FetchResponse};
use crate::servers::OriginServers;

/// Serves one renderer's network pipe on a thread until the renderer goes away. `kill` ends a
/// renderer that names a frame it does not host.
pub(crate) fn serve_renderer(
    renderer: RendererId,
    pipe: Endpoint,
    frames: Arc<FrameTable>,
    servers: Arc<OriginServers>,
    kill: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("shell-network-{}", renderer.0)).spawn(move || {
        loop {
            let message = match pipe.recv() {
                Ok(message) => message,
                Err(_) => return, // the renderer exited
            };
            // Decoding checks the response pipe is attached, and nothing else is.
            let Ok(FetchRequest { frame, url, response }) =
                cos_ipc::decode_with_attachments(&message.bytes, message.attachments)
            else {
                tracing::error!(renderer = renderer.0, "a malformed fetch request: ending the renderer");
                kill();
                return;
            };
            let response = response.into_endpoint();
            let origin = match frames.get(FrameId(frame)) {
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
            let servers = servers.clone();
            let spawned = std::thread::Builder::new()
                .name("shell-fetch".into())
                .spawn(move || fetch(&servers, &url, &origin, &response));
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

/// Makes the request and streams the response into `response`; stops when the renderer stops
/// reading (its end of the pipe closed).
fn fetch(servers: &OriginServers, url: &str, origin: &str, response: &Endpoint) {
    // Several chunks in flight, so that the hub, this thread and the renderer overlap.
    let _ = response.set_send_buffer(2 << 20);
    let mut reader = match servers.open("GET", url, &[(cos_test_hub::ORIGIN_HEADER, origin)]) {
        Ok(reader) => reader,
        Err(error) => {
            send(response, &FetchResponse::Failed(format!("Failed to fetch {url}: {error}")));
            return;
        }
    };
    let head = reader.head();
    if !send(response, &FetchResponse::Head { status: head.status, headers: head.headers.clone() }) {
        return;
    }
    let mut buffer = vec![0u8; FETCH_CHUNK];
    loop {
        let message = match reader.read(&mut buffer) {
            Ok(0) => FetchResponse::End,
            Ok(n) => FetchResponse::Body(buffer[..n].to_vec()),
            Err(error) => FetchResponse::Failed(error.to_string()),
        };
        let last = !matches!(message, FetchResponse::Body(_));
        if !send(response, &message) || last {
            return;
        }
    }
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
        serve_renderer(RendererId(1), browser, frames, Arc::default(), move || {
            let _ = killed.send(());
        })
        .unwrap();
        (renderer, kills)
    }

    #[test]
    fn a_renderer_fetching_for_another_renderers_frame_is_ended() {
        let (renderer, kills) = service();
        let (_mine, theirs) = Endpoint::pair().unwrap();
        let request = FetchRequest { frame: 7, url: "http://127.0.0.1:9/".into(), response: theirs.into() };
        let (bytes, attachments) = cos_ipc::encode_with_attachments(request).unwrap();
        renderer.send(&bytes, attachments).unwrap();
        kills.recv_timeout(Duration::from_secs(10)).expect("the renderer is ended");
    }

    #[test]
    fn a_request_without_its_response_pipe_ends_the_renderer() {
        let (renderer, kills) = service();
        let (_mine, theirs) = Endpoint::pair().unwrap();
        let request = FetchRequest { frame: 7, url: "http://127.0.0.1:9/".into(), response: theirs.into() };
        // The message names its pipe, but the pipe stays behind.
        let (bytes, _pipe) = cos_ipc::encode_with_attachments(request).unwrap();
        renderer.send(&bytes, Vec::new()).unwrap();
        kills.recv_timeout(Duration::from_secs(10)).expect("the renderer is ended");
    }
}
