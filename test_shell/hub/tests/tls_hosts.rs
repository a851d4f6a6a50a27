//! The hub as several `https://` sites on one port: TLS with the certificate it makes at start
//! (checked by a rustls client that trusts only that certificate), plain HTTP on the same port,
//! files per host, and the Hub's two kinds of `/raw/` answer (a Git LFS pointer for LFS files,
//! the bytes themselves for plain ones).

use std::sync::Arc;

use bytes::Bytes;
use cos_test_hub::{FileOptions, Hub, HubOptions, HubStartError, LfsPointer, ServedCategory, get};
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const NAMES: [&str; 3] = ["huggingface.co", "cdn.jsdelivr.net", "googlechrome.github.io"];

fn tls_hub() -> Hub {
    Hub::start_with(HubOptions { tls_names: NAMES.iter().map(|n| (*n).to_owned()).collect() }).unwrap()
}

/// What a request got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// How to reach the hub for one request.
enum Via<'a> {
    /// Plain HTTP.
    Plain,
    /// TLS with SNI `server_name`, trusting only the hub's certificate.
    Tls { server_name: &'a str },
}

/// One GET on a fresh connection to the hub with `Host: host`.
fn fetch(hub: &Hub, via: Via<'_>, host: &str, path: &str) -> Result<Answer, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", hub.port())).await.map_err(|e| e.to_string())?;
        match via {
            Via::Plain => send(tcp, host, path).await,
            Via::Tls { server_name } => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from(hub.certificate_der().unwrap().to_vec())).unwrap();
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = ServerName::try_from(server_name.to_owned()).unwrap();
                let tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
                send(tls, host, path).await
            }
        }
    })
}

async fn send<S>(stream: S, host: &str, path: &str) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::ORIGIN, "https://googlechrome.github.io")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    Ok(Answer { status, headers, body })
}

#[test]
fn tls_is_served_with_a_certificate_for_the_names_asked_for() {
    let hub = tls_hub();
    let model = hub.add("/org/tiny/resolve/main/onnx/model.onnx", b"weights".to_vec());

    let answer = fetch(&hub, Via::Tls { server_name: "huggingface.co" }, "huggingface.co", &model.path).unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, b"weights".as_slice()));
    // Another name in the certificate works on the same port.
    let answer = fetch(&hub, Via::Tls { server_name: "cdn.jsdelivr.net" }, "cdn.jsdelivr.net", &model.path).unwrap();
    assert_eq!(answer.status, 200);
    // A name the certificate does not cover is refused by a client that checks.
    let refused = fetch(&hub, Via::Tls { server_name: "example.org" }, "example.org", &model.path).unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");

    let log = hub.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|r| r.tls && r.initiator.as_deref() == Some("https://googlechrome.github.io")));
    assert_eq!(log[0].host.as_deref(), Some("huggingface.co"));
    assert_eq!(log[0].category, ServedCategory::ModelFile);
    assert_eq!(log[1].host.as_deref(), Some("cdn.jsdelivr.net"));
    hub.shutdown();
}

#[test]
fn plain_http_and_tls_share_one_port() {
    let hub = tls_hub();
    hub.add("/hello.txt", b"hi".to_vec());
    // The crate's own (plain) client, then raw hyper over plain TCP and over TLS.
    let plain = get(&hub.url("/hello.txt"), &[]).unwrap();
    assert_eq!((plain.status, plain.body.as_slice()), (200, b"hi".as_slice()));
    assert_eq!(plain.header("content-type"), Some("text/plain; charset=utf-8"));
    let plain = fetch(&hub, Via::Plain, "rawcdn.rawgit.net", "/hello.txt").unwrap();
    assert_eq!(plain.body, b"hi");
    let tls = fetch(&hub, Via::Tls { server_name: "googlechrome.github.io" }, "googlechrome.github.io", "/hello.txt");
    assert_eq!(tls.unwrap().body, b"hi");
    let tls_flags: Vec<(bool, Option<String>)> = hub.requests().into_iter().map(|r| (r.tls, r.host)).collect();
    assert_eq!(
        tls_flags,
        [
            (false, Some("127.0.0.1".to_owned())),
            (false, Some("rawcdn.rawgit.net".to_owned())),
            (true, Some("googlechrome.github.io".to_owned())),
        ]
    );
    // A connection that closes before sending anything costs nothing and logs nothing.
    drop(std::net::TcpStream::connect(("127.0.0.1", hub.port())).unwrap());
    assert_eq!(get(&hub.url("/hello.txt"), &[]).unwrap().status, 200);
    assert_eq!(hub.requests().len(), 4);
    hub.shutdown();
}

#[test]
fn start_with_refuses_what_cannot_be_certified() {
    // No names: plain HTTP only, as `Hub::start`.
    assert!(Hub::start_with(HubOptions::default()).unwrap().certificate_der().is_none());
    assert!(Hub::start().unwrap().certificate_der().is_none());
    let err = Hub::start_with(HubOptions { tls_names: vec!["bücher.test".to_owned()] });
    assert!(matches!(err, Err(HubStartError::Certificate(_))), "{err:?}");
}

#[test]
fn files_can_be_served_per_host() {
    let hub = tls_hub();
    let script = "/npm/@huggingface/transformers@4.3.2/dist/transformers.min.js";
    let file = hub.add_for_host("CDN.jsdelivr.net", script, b"export {}".to_vec());
    assert_eq!(file.host.as_deref(), Some("cdn.jsdelivr.net"));
    hub.add("/index.html", b"<p>every host</p>".to_vec());
    hub.add_for_host("rawcdn.rawgit.net", "/index.html", b"<p>rawgit</p>".to_vec());

    let on = |host: &str, path: &str| fetch(&hub, Via::Plain, host, path).unwrap();
    let answer = on("cdn.jsdelivr.net:443", script);
    assert_eq!((answer.status, answer.body.as_slice()), (200, b"export {}".as_slice()));
    assert_eq!(answer.headers["content-type"], "text/javascript");
    assert_eq!(on("huggingface.co", script).status, 404);
    assert_eq!(on("rawcdn.rawgit.net", "/index.html").body, b"<p>rawgit</p>");
    let every = on("googlechrome.github.io", "/index.html");
    assert_eq!(every.body, b"<p>every host</p>");
    assert_eq!(every.headers["content-type"], "text/html; charset=utf-8");
    hub.shutdown();
}

#[test]
fn extra_headers_and_content_types_per_file() {
    let hub = tls_hub();
    let policy = HeaderName::from_static("permissions-policy");
    let options = FileOptions::default()
        .host("googlechrome.github.io")
        .header(policy.clone(), HeaderValue::from_static("cross-origin-storage=(self)"))
        .content_type(HeaderValue::from_static("text/html; charset=utf-8"));
    hub.add_with("/app", b"<!doctype html>".to_vec(), &options);
    hub.add("/a.wasm", b"\0asm".to_vec());
    hub.add("/a.mjs", b"".to_vec());
    hub.add("/a.json", b"{}".to_vec());

    let answer = fetch(&hub, Via::Plain, "googlechrome.github.io", "/app").unwrap();
    assert_eq!(answer.headers[&policy], "cross-origin-storage=(self)");
    assert_eq!(answer.headers["content-type"], "text/html; charset=utf-8");
    for (path, content_type) in
        [("/a.wasm", "application/wasm"), ("/a.mjs", "text/javascript"), ("/a.json", "application/json")]
    {
        let answer = fetch(&hub, Via::Plain, "cdn.jsdelivr.net", path).unwrap();
        assert_eq!(answer.headers["content-type"], content_type, "{path}");
        assert!(!answer.headers.contains_key(&policy));
    }
    hub.shutdown();
}

#[test]
fn raw_serves_a_pointer_for_lfs_files_and_the_bytes_for_plain_ones() {
    let hub = tls_hub();
    let repo = "/org/tiny-bert";
    let config = hub.add(&format!("{repo}/resolve/main/config.json"), b"{\"model_type\":\"bert\"}".to_vec());
    let model = hub.add(&format!("{repo}/resolve/main/onnx/model.onnx"), b"onnx bytes".to_vec());
    let forced_plain =
        hub.add_with(&format!("{repo}/resolve/main/x.bin"), b"b".to_vec(), &FileOptions::default().lfs(false));
    let forced_lfs =
        hub.add_with(&format!("{repo}/resolve/main/big.json"), b"[]".to_vec(), &FileOptions::default().lfs(true));
    let outside = hub.add("/npm/ort/ort.wasm", b"\0asm".to_vec());

    assert!(!config.lfs && model.lfs && !forced_plain.lfs && forced_lfs.lfs && !outside.lfs);
    assert_eq!(config.pointer_path(), None);
    assert_eq!(config.raw_path().as_deref(), Some("/org/tiny-bert/raw/main/config.json"));
    assert_eq!(model.pointer_path().as_deref(), Some("/org/tiny-bert/raw/main/onnx/model.onnx"));
    assert_eq!((outside.pointer_path(), outside.raw_path()), (None, None));

    let raw = |file: &cos_test_hub::HubFile| {
        let answer = fetch(&hub, Via::Plain, "huggingface.co", &file.raw_path().unwrap()).unwrap();
        assert_eq!(answer.status, 200);
        answer.body
    };
    assert_eq!(raw(&config), b"{\"model_type\":\"bert\"}");
    assert_eq!(raw(&forced_plain), b"b");
    let pointer = LfsPointer::parse(std::str::from_utf8(&raw(&model)).unwrap()).unwrap();
    assert_eq!(pointer, model.lfs_pointer());
    let pointer = LfsPointer::parse(std::str::from_utf8(&raw(&forced_lfs)).unwrap()).unwrap();
    assert_eq!(pointer, forced_lfs.lfs_pointer());
    assert_eq!(fetch(&hub, Via::Plain, "huggingface.co", &model.path).unwrap().body, b"onnx bytes");

    let categories: Vec<ServedCategory> = hub.requests().iter().map(|r| r.category).collect();
    use ServedCategory::{LfsPointer as Pointer, ModelFile, Other};
    assert_eq!(categories, [Other, Other, Pointer, Pointer, ModelFile]);
    hub.shutdown();
}

#[test]
fn host_resolver_rules_map_every_name_to_the_port() {
    let hub = tls_hub();
    let port = hub.port();
    assert_eq!(
        hub.host_resolver_rules(NAMES[..2].iter().copied()),
        format!("MAP huggingface.co 127.0.0.1:{port}, MAP cdn.jsdelivr.net 127.0.0.1:{port}")
    );
    hub.shutdown();
}
