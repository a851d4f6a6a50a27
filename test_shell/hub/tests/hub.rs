//! End-to-end tests of the hub over real loopback sockets, with the crate's client and with raw
//! sockets where the wire matters (keep-alive, HEAD, malformed requests); and of the client
//! against a fake server that answers with canned bytes (hostile or unusual responses).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use cos_test_hub::{Hub, HubError, LfsPointer, MAX_CONNECTIONS, RequestLog, ServedCategory, get, get_streaming, open};
use sha2::{Digest, Sha256};

const MODEL: &str = "/Xenova/whisper-tiny.en/resolve/main/onnx/encoder_model.onnx";
const MODEL_RAW: &str = "/Xenova/whisper-tiny.en/raw/main/onnx/encoder_model.onnx";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic test bytes.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8).collect()
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One raw connection to the hub.
struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(hub: &Hub) -> Raw {
        let addr = hub.base_url().trim_start_matches("http://").to_owned();
        Raw { reader: BufReader::new(TcpStream::connect(addr).unwrap()) }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Reads one response (body per `Content-Length`, none for HEAD). `None` if the server
    /// closed the connection (or reset it) before a status line.
    fn response(&mut self, head_request: bool) -> Option<RawResponse> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut response = RawResponse { status, headers, body: Vec::new() };
        if !head_request && let Some(len) = response.header("content-length") {
            response.body = vec![0; len.parse().unwrap()];
            self.reader.read_exact(&mut response.body).unwrap();
        }
        Some(response)
    }

    /// Whether the server has closed the connection (EOF or reset on the next read).
    fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

/// Waits (bounded: a guard against hangs, not a timing check) until the hub's request log
/// satisfies `done`. Requests hyper refuses itself are logged when their connection's task ends,
/// which may be after the client saw the answer and the close.
fn wait_until_logged(hub: &Hub, done: impl Fn(&[RequestLog]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&hub.requests()) {
        assert!(Instant::now() < deadline, "the request log never got there: {:?}", hub.requests());
        thread::sleep(Duration::from_millis(5));
    }
}

fn request(method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: hub.test\r\n{extra}\r\n").into_bytes()
}

#[test]
fn resolve_serves_the_bytes_and_raw_serves_the_lfs_pointer() {
    let hub = Hub::start().unwrap();
    let bytes = pattern(100_000, 1);
    let file = hub.add(MODEL, bytes.clone());
    assert_eq!(file.path, MODEL);
    assert_eq!(file.size, 100_000);
    assert_eq!(file.sha256_hex, sha256_hex(&bytes));
    assert_eq!(file.pointer_path().as_deref(), Some(MODEL_RAW));

    let resolved = get(&hub.url(MODEL), &[]).unwrap();
    assert_eq!(resolved.status, 200);
    assert_eq!(resolved.body, bytes);
    assert_eq!(resolved.header("content-length"), Some("100000"));
    assert_eq!(resolved.header("content-type"), Some("application/octet-stream"));
    assert_eq!(resolved.header("etag"), Some(format!("\"{}\"", file.sha256_hex).as_str()));
    assert_eq!(resolved.header("accept-ranges"), Some("bytes"));
    assert_eq!(resolved.header("access-control-allow-origin"), Some("*"));

    let raw = get(&hub.url(MODEL_RAW), &[]).unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("text/plain; charset=utf-8"));
    let text = String::from_utf8(raw.body.clone()).unwrap();
    assert_eq!(
        text,
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 100000\n", sha256_hex(&bytes))
    );
    let pointer = LfsPointer::parse(&text).unwrap();
    assert_eq!(pointer, file.lfs_pointer());
    assert_eq!(raw.header("etag"), Some(format!("\"{}\"", sha256_hex(text.as_bytes())).as_str()));

    // Replacing a file replaces its pointer.
    let file2 = hub.add(MODEL, b"v2".to_vec());
    let pointer = get(&hub.url(MODEL_RAW), &[]).unwrap().body;
    assert_eq!(LfsPointer::parse(std::str::from_utf8(&pointer).unwrap()), Some(file2.lfs_pointer()));
    assert_eq!(get(&hub.url(MODEL), &[]).unwrap().body, b"v2");
    hub.shutdown();
}

#[test]
fn verbatim_paths_are_served_as_is_without_pointer() {
    let hub = Hub::start().unwrap();
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    let file = hub.add("/runtime/ort-wasm.wasm", wasm.clone());
    assert_eq!(file.pointer_path(), None);
    let json = hub.add("runtime/config.json", b"{}".to_vec()); // leading slash added
    assert_eq!(json.path, "/runtime/config.json");

    let response = get(&hub.url("/runtime/ort-wasm.wasm"), &[]).unwrap();
    assert_eq!((response.status, response.body.as_slice()), (200, wasm.as_slice()));
    assert_eq!(response.header("content-type"), Some("application/wasm"));
    assert_eq!(get(&hub.url("runtime/config.json"), &[]).unwrap().body, b"{}");
    // Query strings are ignored, percent-escapes decoded.
    assert_eq!(get(&hub.url("/runtime/ort%2Dwasm.wasm?v=1"), &[]).unwrap().body, wasm);
    hub.shutdown();
}

#[test]
fn not_found() {
    let hub = Hub::start().unwrap();
    hub.add(MODEL, b"x".to_vec());
    hub.add("/runtime/a.wasm", b"x".to_vec());
    for path in [
        "/",
        "/nope",
        "/Xenova/whisper-tiny.en/resolve/main/onnx/other.onnx",
        "/Xenova/whisper-tiny.en/resolve/v2/onnx/encoder_model.onnx",
        "/runtime/raw/main/a.wasm",
        "/runtime/a.wasm/",
    ] {
        let response = get(&hub.url(path), &[]).unwrap();
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    }
    hub.shutdown();
}

#[test]
fn generated_files_are_deterministic_and_hash_to_their_served_bytes() {
    let hub = Hub::start().unwrap();
    let a = hub.add_generated("/m/resolve/main/a.bin", 3 * 1024 * 1024 + 17, 1);
    let b = hub.add_generated("/m/resolve/main/b.bin", 3 * 1024 * 1024 + 17, 1);
    let c = hub.add_generated("/m/resolve/main/c.bin", 3 * 1024 * 1024 + 17, 2);
    let empty = hub.add_generated("/runtime/empty.wasm", 0, 9);
    assert_eq!(a.sha256_hex, b.sha256_hex);
    assert_ne!(a.sha256_hex, c.sha256_hex);
    assert_eq!(empty.sha256_hex, sha256_hex(b""));

    let body = get(&hub.url(&a.path), &[]).unwrap().body;
    assert_eq!(body.len() as u64, a.size);
    assert_eq!(sha256_hex(&body), a.sha256_hex);
    assert_eq!(get(&hub.url(&b.path), &[]).unwrap().body, body);
    let c_body = get(&hub.url(&c.path), &[]).unwrap().body;
    assert_eq!(sha256_hex(&c_body), c.sha256_hex);
    assert_ne!(c_body, body);

    let pointer = get(&hub.url("/m/raw/main/c.bin"), &[]).unwrap().body;
    assert_eq!(LfsPointer::parse(std::str::from_utf8(&pointer).unwrap()), Some(c.lfs_pointer()));
    let empty_body = get(&hub.url(&empty.path), &[]).unwrap();
    assert_eq!((empty_body.status, empty_body.body.len()), (200, 0));

    // A second hub generates the same content for the same (size, seed).
    let hub2 = Hub::start().unwrap();
    assert_eq!(hub2.add_generated("/x.bin", a.size, 1).sha256_hex, a.sha256_hex);
    hub2.shutdown();
    hub.shutdown();
}

#[test]
fn range_requests() {
    let hub = Hub::start().unwrap();
    let bytes = pattern(5000, 3);
    let file = hub.add(MODEL, bytes.clone());
    let generated = hub.add_generated("/m/resolve/main/g.bin", 2 * 1024 * 1024 + 5, 11);
    let generated_full = get(&hub.url(&generated.path), &[]).unwrap().body;
    let url = hub.url(MODEL);

    let cases: &[(&str, u16, std::ops::Range<usize>)] = &[
        ("bytes=0-0", 206, 0..1),
        ("bytes=100-199", 206, 100..200),
        ("bytes=4990-", 206, 4990..5000),
        ("bytes=4990-999999", 206, 4990..5000),
        ("bytes=-10", 206, 4990..5000),
        ("bytes=-99999", 206, 0..5000),
        ("bytes=9-3", 200, 0..5000),     // invalid: ignored
        ("bytes=0-1,5-6", 200, 0..5000), // several ranges: ignored
        ("pages=1-2", 200, 0..5000),     // unknown unit: ignored
    ];
    for (range, status, slice) in cases.iter().cloned() {
        let response = get(&url, &[("Range", range)]).unwrap();
        assert_eq!(response.status, status, "{range}");
        assert_eq!(response.body, bytes[slice.clone()], "{range}");
        assert_eq!(response.header("content-length"), Some(slice.len().to_string().as_str()));
        if status == 206 {
            let expected = format!("bytes {}-{}/5000", slice.start, slice.end - 1);
            assert_eq!(response.header("content-range"), Some(expected.as_str()), "{range}");
        } else {
            assert_eq!(response.header("content-range"), None);
        }
    }
    for range in ["bytes=5000-", "bytes=6000-7000", "bytes=-0"] {
        let response = get(&url, &[("Range", range)]).unwrap();
        assert_eq!(response.status, 416, "{range}");
        assert_eq!(response.header("content-range"), Some("bytes */5000"));
    }

    // If-Range with the current ETag honours the range; with another validator, the full file.
    let etag = format!("\"{}\"", file.sha256_hex);
    let response = get(&url, &[("Range", "bytes=1-2"), ("If-Range", &etag)]).unwrap();
    assert_eq!((response.status, response.body.as_slice()), (206, &bytes[1..3]));
    let response = get(&url, &[("Range", "bytes=1-2"), ("If-Range", "\"stale\"")]).unwrap();
    assert_eq!((response.status, response.body.len()), (200, 5000));
    // If-None-Match with the ETag: 304, no body.
    let response = get(&url, &[("If-None-Match", &etag)]).unwrap();
    assert_eq!((response.status, response.body.len()), (304, 0));

    // Ranges of a generated file, across the 1 MiB chunk boundary.
    let mib = 1024 * 1024;
    for (start, end) in [(0, 0), (mib - 3, mib + 3), (7, 2 * mib + 4), (2 * mib, 2 * mib + 4)] {
        let range = format!("bytes={start}-{end}");
        let response = get(&hub.url(&generated.path), &[("Range", &range)]).unwrap();
        assert_eq!(response.status, 206);
        assert_eq!(response.body, generated_full[start..=end], "{range}");
    }
    hub.shutdown();
}

#[test]
fn head_sends_headers_only() {
    let hub = Hub::start().unwrap();
    let file = hub.add(MODEL, pattern(4096, 5));
    let before = hub.bytes_served();

    let response = open("HEAD", &hub.url(MODEL), &[]).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.head().header("content-length"), Some("4096"));
    assert_eq!(response.head().header("etag"), Some(format!("\"{}\"", file.sha256_hex).as_str()));
    assert!(response.into_response().unwrap().body.is_empty());

    // On the wire: no body bytes follow a HEAD response, so the next response on the same
    // connection starts right after its head.
    let mut raw = Raw::connect(&hub);
    raw.send(&request("HEAD", MODEL, "Range: bytes=0-9\r\n"));
    let head = raw.response(true).unwrap();
    assert_eq!((head.status, head.header("content-length")), (206, Some("10")));
    assert_eq!(head.header("content-range"), Some("bytes 0-9/4096"));
    raw.send(&request("HEAD", "/missing", ""));
    let missing = raw.response(true).unwrap();
    assert_eq!(missing.status, 404);
    raw.send(&request("GET", MODEL, "Range: bytes=0-3\r\n"));
    assert_eq!(raw.response(false).unwrap().body, pattern(4096, 5)[..4]);

    assert_eq!(hub.bytes_served() - before, 4, "HEAD responses have no body bytes");
    hub.shutdown();
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"first".to_vec());
    hub.add("/b.bin", b"second".to_vec());
    let mut raw = Raw::connect(&hub);
    raw.send(&request("GET", "/a.bin", ""));
    let first = raw.response(false).unwrap();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"first"[..]));
    assert_eq!(first.header("connection"), None);
    raw.send(&request("GET", "/b.bin", ""));
    assert_eq!(raw.response(false).unwrap().body, b"second");
    // Pipelined: two requests in one write, a 404 in between keeps the connection.
    let mut both = request("GET", "/nope", "");
    both.extend(request("GET", "/b.bin", ""));
    both.extend(request("GET", "/a.bin", "Connection: close\r\n"));
    raw.send(&both);
    assert_eq!(raw.response(false).unwrap().status, 404);
    assert_eq!(raw.response(false).unwrap().body, b"second");
    let last = raw.response(false).unwrap();
    assert_eq!((last.body.as_slice(), last.header("connection")), (&b"first"[..], Some("close")));
    assert!(raw.closed_by_server());

    // HTTP/1.0: closes unless asked to keep alive.
    let mut raw = Raw::connect(&hub);
    raw.send(b"GET /a.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let kept = raw.response(false).unwrap();
    assert_eq!((kept.body.as_slice(), kept.header("connection")), (&b"first"[..], Some("keep-alive")));
    raw.send(b"GET /b.bin HTTP/1.0\r\n\r\n");
    assert_eq!(raw.response(false).unwrap().body, b"second");
    assert!(raw.closed_by_server());
    hub.shutdown();
}

#[test]
fn malformed_requests_get_400_and_the_connection_is_closed() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"a".to_vec());
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /a.bin HTTP/1.1\r\n\r\n", // no Host
        b"GET /a.bin HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
        b"GET /a.bin HTTP/1.1\r\nHost: h\r\nContent-Length: nope\r\n\r\n",
        b"GET a.bin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // TLS-ish
    ] {
        let mut raw = Raw::connect(&hub);
        raw.send(garbage);
        let response = raw.response(false).unwrap();
        assert_eq!(response.status, 400, "{:?}", String::from_utf8_lossy(garbage));
        assert_eq!(response.header("connection"), Some("close"));
        assert!(raw.closed_by_server());
    }
    // hyper refuses versions other than HTTP/1.x with 400 too.
    let mut raw = Raw::connect(&hub);
    raw.send(b"GET /a.bin HTTP/3.0\r\nHost: h\r\n\r\n");
    assert_eq!(raw.response(false).unwrap().status, 400);
    assert!(raw.closed_by_server());
    let mut raw = Raw::connect(&hub);
    raw.send(&request("DELETE", "/a.bin", ""));
    let response = raw.response(false).unwrap();
    assert_eq!((response.status, response.header("allow")), (405, Some("GET, HEAD, OPTIONS")));
    raw.send(&request("GET", "/a.bin", ""));
    assert_eq!(raw.response(false).unwrap().body, b"a", "405 keeps the connection");
    wait_until_logged(&hub, |log| log.iter().filter(|r| r.status == 400).count() >= 7);
    hub.shutdown();
}

#[test]
fn huge_header_sections_get_431() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"a".to_vec());
    let mut raw = Raw::connect(&hub);
    raw.send(&request("GET", "/a.bin", &format!("X-Big: {}\r\n", "b".repeat(32 * 1024))));
    let response = raw.response(false).unwrap();
    assert_eq!(response.status, 431);
    assert!(raw.closed_by_server());
    // Many small headers adding up past 16 KiB, too.
    let mut raw = Raw::connect(&hub);
    let many: String = (0..1000).map(|i| format!("X-H{i}: {i:020}\r\n")).collect();
    raw.send(&request("GET", "/a.bin", &many));
    assert_eq!(raw.response(false).unwrap().status, 431);
    // Just under the limit is fine.
    let mut raw = Raw::connect(&hub);
    let pad = 16 * 1024 - request("GET", "/a.bin", "X-Pad: \r\n").len();
    let req = request("GET", "/a.bin", &format!("X-Pad: {}\r\n", "p".repeat(pad)));
    assert_eq!(req.len(), 16 * 1024);
    raw.send(&req);
    assert_eq!(raw.response(false).unwrap().status, 200);
    hub.shutdown();
}

#[test]
fn cors_preflight() {
    let hub = Hub::start().unwrap();
    let mut raw = Raw::connect(&hub);
    raw.send(&request("OPTIONS", MODEL, "Origin: https://a.test\r\nAccess-Control-Request-Headers: range\r\n"));
    let response = raw.response(false).unwrap();
    assert_eq!(response.status, 204);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("access-control-allow-headers"), Some("range"));
    assert!(response.header("access-control-allow-methods").unwrap().contains("GET"));
    hub.shutdown();
}

#[test]
fn bytes_are_accounted_per_origin() {
    let hub = Hub::start().unwrap();
    hub.add(MODEL, pattern(1000, 7));
    let url = hub.url(MODEL);
    let a = [("X-COS-Origin", "https://a.test")];
    let b = [("x-cos-origin", "https://b.test")];
    get(&url, &a).unwrap();
    get(&url, &a).unwrap();
    get(&url, &[("X-COS-Origin", "https://b.test"), ("Range", "bytes=10-19")]).unwrap();
    get(&url, &[]).unwrap();
    open("HEAD", &url, &a).unwrap();
    let not_found = get(&hub.url("/missing"), &b).unwrap();
    assert_eq!(not_found.status, 404);
    let not_found_len = not_found.body.len() as u64;

    assert_eq!(hub.bytes_served_to("https://a.test"), 2000);
    assert_eq!(hub.bytes_served_to("https://b.test"), 10 + not_found_len);
    assert_eq!(hub.bytes_served_to("https://c.test"), 0);
    assert_eq!(hub.bytes_served(), 3010 + not_found_len);

    let log = hub.requests();
    assert_eq!(log.len(), 6);
    let entry = |method: &str, status: u16, body_bytes: u64, origin: Option<&str>, path: &str| RequestLog {
        method: method.into(),
        path: path.into(),
        status,
        body_bytes,
        origin: origin.map(Into::into),
        host: Some("127.0.0.1".into()),
        initiator: None,
        tls: false,
        category: if status == 404 { ServedCategory::Other } else { ServedCategory::ModelFile },
    };
    assert_eq!(
        log,
        [
            entry("GET", 200, 1000, Some("https://a.test"), MODEL),
            entry("GET", 200, 1000, Some("https://a.test"), MODEL),
            entry("GET", 206, 10, Some("https://b.test"), MODEL),
            entry("GET", 200, 1000, None, MODEL),
            entry("HEAD", 200, 0, Some("https://a.test"), MODEL),
            entry("GET", 404, not_found_len, Some("https://b.test"), "/missing"),
        ]
    );
    let summed: u64 = log.iter().filter(|r| r.origin.as_deref() == Some("https://a.test")).map(|r| r.body_bytes).sum();
    assert_eq!(summed, hub.bytes_served_to("https://a.test"));
    hub.shutdown();
}

#[test]
fn concurrent_clients() {
    let hub = Hub::start().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..6u8)
        .map(|i| {
            let path = format!("/org/model-{i}/resolve/main/part.bin");
            let bytes = pattern(10_000 + usize::from(i) * 70_001, i);
            hub.add(&path, bytes.clone());
            (path, bytes)
        })
        .collect();
    let generated = hub.add_generated("/runtime/big.wasm", 600_000, 5);
    let before = hub.bytes_served();

    let totals: Vec<u64> = thread::scope(|scope| {
        let workers: Vec<_> = (0..8usize)
            .map(|t| {
                let (hub, files, generated) = (&hub, &files, &generated);
                scope.spawn(move || {
                    let origin = format!("https://t{t}.test");
                    let mut total = 0u64;
                    for r in 0..20usize {
                        let k = (t * 7 + r * 3) % (files.len() + 1);
                        if k == files.len() {
                            let response = get(&hub.url(&generated.path), &[("X-COS-Origin", &origin)]).unwrap();
                            assert_eq!(sha256_hex(&response.body), generated.sha256_hex);
                            total += response.body.len() as u64;
                        } else if r % 4 == 0 {
                            let (path, bytes) = &files[k];
                            let range = format!("bytes={}-{}", r * 13, r * 13 + 999);
                            let response =
                                get(&hub.url(path), &[("X-COS-Origin", &origin), ("Range", &range)]).unwrap();
                            assert_eq!(response.status, 206);
                            assert_eq!(response.body, bytes[r * 13..r * 13 + 1000]);
                            total += 1000;
                        } else {
                            let (path, bytes) = &files[k];
                            let response = get(&hub.url(path), &[("X-COS-Origin", &origin)]).unwrap();
                            assert_eq!(&response.body, bytes);
                            total += bytes.len() as u64;
                        }
                    }
                    assert_eq!(hub.bytes_served_to(&origin), total);
                    total
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(hub.requests().len(), 160);
    assert_eq!(hub.bytes_served() - before, totals.iter().sum::<u64>());
    hub.shutdown();
}

#[test]
fn a_50_mib_generated_file_streams_correctly() {
    let hub = Hub::start().unwrap();
    let size = 50 * 1024 * 1024;
    let file = hub.add_generated("/Xenova/big/resolve/main/onnx/model.onnx", size, 2024);
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut pieces = 0u32;
    let head = get_streaming(&hub.url(&file.path), &[("X-COS-Origin", "https://big.test")], |piece| {
        hasher.update(piece);
        received += piece.len() as u64;
        pieces += 1;
    })
    .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(received, size);
    assert!(pieces > 1, "delivered in pieces");
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, file.sha256_hex);
    assert_eq!(hub.bytes_served_to("https://big.test"), size);

    // The tail, by range, through the `Read` interface.
    let mut reader = open("GET", &hub.url(&file.path), &[("Range", "bytes=-100")]).unwrap();
    assert_eq!(reader.status(), 206);
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).unwrap();
    assert_eq!(tail.len(), 100);
    hub.shutdown();
}

#[test]
fn idle_connections_make_room_beyond_the_connection_limit() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"a".to_vec());
    let extra = 8;
    let mut conns: Vec<Raw> = (0..MAX_CONNECTIONS + extra)
        .map(|_| {
            let mut raw = Raw::connect(&hub);
            raw.send(&request("GET", "/a.bin", ""));
            assert_eq!(raw.response(false).unwrap().body, b"a");
            raw
        })
        .collect();
    // Some of the earlier, idle connections were closed to make room for the later ones; every
    // request was answered.
    let mut closed = 0;
    for raw in &mut conns {
        raw.send(&request("GET", "/a.bin", ""));
        // An evicted connection may accept the write, but answers with EOF or a reset.
        if raw.response(false).is_none() {
            closed += 1;
        }
    }
    assert!(closed >= extra, "closed {closed}");
    hub.shutdown();
}

#[test]
fn random_bytes_never_break_the_server() {
    let hub = Hub::start().unwrap();
    hub.add(MODEL, pattern(3000, 9));
    let mut rng = cos_test_support::rng::XorShift64Star::new(0x1234_5678_9abc_def0);
    let mut next = move || rng.next_u64();
    let valid = request("GET", MODEL, "Range: bytes=1-20\r\nX-COS-Origin: o\r\n");
    for i in 0..300 {
        let mut input = if i % 2 == 0 {
            (0..next() % 600).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            let mut v = valid.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (v.len() + 1);
                match next() % 3 {
                    0 if at < v.len() => v[at] = next() as u8,
                    1 => v.insert(at, b"\r\n :-=,\0\xff"[(next() % 9) as usize]),
                    _ => v.truncate(at.max(1)),
                }
            }
            v
        };
        if i % 3 == 0 {
            input.extend_from_slice(b"\r\n\r\n");
        }
        let mut stream = TcpStream::connect(hub.base_url().trim_start_matches("http://")).unwrap();
        // The server may answer (and close) before everything is written: ignore write errors.
        let _ = stream.write_all(&input);
        let _ = stream.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    // Still serving.
    let response = get(&hub.url(MODEL), &[]).unwrap();
    assert_eq!(response.body, pattern(3000, 9));
    assert!(hub.requests().iter().all(|r| [200, 204, 206, 304, 400, 404, 405, 416, 431].contains(&r.status)));
    hub.shutdown();
}

#[test]
fn shutdown_releases_the_port_and_closes_connections() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"a".to_vec());
    let url = hub.url("/a.bin");
    let port: u16 = hub.base_url().rsplit(':').next().unwrap().parse().unwrap();
    // One kept-alive connection idle between requests, one that never sent anything.
    let mut idle = Raw::connect(&hub);
    idle.send(&request("GET", "/a.bin", ""));
    assert_eq!(idle.response(false).unwrap().status, 200);
    let mut silent = Raw::connect(&hub);

    hub.shutdown();
    assert!(idle.closed_by_server());
    assert!(silent.closed_by_server());
    assert!(matches!(get(&url, &[]), Err(HubError::Io(_))));
    let rebound = TcpListener::bind(("127.0.0.1", port)).unwrap();
    drop(rebound);

    // Dropping a hub shuts it down too.
    let hub = Hub::start().unwrap();
    let port: u16 = hub.base_url().rsplit(':').next().unwrap().parse().unwrap();
    drop(hub);
    TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn too_many_header_fields_get_431_even_under_16_kib() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"a".to_vec());
    let mut raw = Raw::connect(&hub);
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let req = request("GET", "/a.bin", &many);
    assert!(req.len() < 16 * 1024);
    raw.send(&req);
    assert_eq!(raw.response(false).unwrap().status, 431);
    assert!(raw.closed_by_server());
    wait_until_logged(&hub, |log| log.last().map(|r| (r.method.as_str(), r.status)) == Some(("", 431)));
    hub.shutdown();
}

#[test]
fn request_bodies_absolute_targets_and_asterisk() {
    let hub = Hub::start().unwrap();
    hub.add("/a.bin", b"a".to_vec());
    // A GET with a body: the body is ignored and the file served. Sent with its head in one
    // write: hyper keeps a connection alive only if a body the handler ignores has already
    // arrived when the answer is written, and closes it otherwise.
    let mut raw = Raw::connect(&hub);
    raw.send(&[request("GET", "/a.bin", "Content-Length: 5\r\n"), b"hello".to_vec()].concat());
    assert_eq!(raw.response(false).unwrap().body, b"a");
    // Absolute-form targets name the path on this hub.
    raw.send(&request("GET", "http://hub.test/a.bin?x=1", ""));
    assert_eq!(raw.response(false).unwrap().body, b"a");
    raw.send(&request("OPTIONS", "*", ""));
    assert_eq!(raw.response(false).unwrap().status, 204);
    // `*` is only for OPTIONS; another scheme is not this hub's.
    raw.send(&request("GET", "*", ""));
    assert_eq!(raw.response(false).unwrap().status, 400);
    assert!(raw.closed_by_server());
    let mut raw = Raw::connect(&hub);
    raw.send(&request("GET", "ftp://hub.test/a.bin", ""));
    assert_eq!(raw.response(false).unwrap().status, 400);
    // Two Host fields.
    let mut raw = Raw::connect(&hub);
    raw.send(&request("GET", "/a.bin", "Host: other\r\n"));
    assert_eq!(raw.response(false).unwrap().status, 400);
    assert!(raw.closed_by_server());
    hub.shutdown();
}

/// A one-shot server answering its first connection with `response` (then closing); returns
/// the request head it received.
fn fake_server(response: &'static [u8]) -> (String, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert_ne!(n, 0);
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(response).unwrap();
        request
    });
    (url, handle)
}

#[test]
fn client_sends_host_connection_close_and_the_given_headers() {
    let (url, server) = fake_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: yes\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    let response = get(&format!("{url}/some/path?q=1#fragment"), &[("X-COS-Origin", "https://a.test")]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"abcde");
    assert_eq!(response.header("X-Test"), Some("yes"));
    let request = String::from_utf8(server.join().unwrap()).unwrap().to_ascii_lowercase();
    assert!(request.starts_with("get /some/path?q=1 http/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("\r\nhost: {}\r\n", url.trim_start_matches("http://"))), "{request}");
    assert!(request.contains("\r\nconnection: close\r\n"), "{request}");
    assert!(request.contains("\r\nx-cos-origin: https://a.test\r\n"), "{request}");
}

#[test]
fn client_handles_interim_close_delimited_and_redirect_responses() {
    let (url, server) =
        fake_server(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n");
    assert_eq!(get(&url, &[]).unwrap().body, b"hello");
    server.join().unwrap();
    let (url, server) = fake_server(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
    assert_eq!(get(&url, &[]).unwrap().body, b"until close");
    server.join().unwrap();
    let (url, server) = fake_server(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 4\r\n\r\nmove");
    let mut chunks = Vec::new();
    let head = get_streaming(&url, &[], |c| chunks.extend_from_slice(c)).unwrap();
    assert_eq!((head.status, head.header("location")), (302, Some("/elsewhere")));
    assert_eq!(chunks, b"move");
    server.join().unwrap();
    let (url, server) = fake_server(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
    let response = get(&url, &[]).unwrap();
    assert_eq!((response.status, response.body.len()), (304, 0));
    server.join().unwrap();
}

#[test]
fn client_refuses_truncated_and_malformed_responses() {
    let truncated: [&'static [u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ];
    for response in truncated {
        let (url, server) = fake_server(response);
        let result = get(&url, &[]);
        assert!(matches!(result, Err(HubError::Truncated)), "{:?}: {result:?}", String::from_utf8_lossy(response));
        server.join().unwrap();
    }
    let malformed: [&'static [u8]; 5] = [
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
    ];
    for response in malformed {
        let (url, server) = fake_server(response);
        let result = get(&url, &[]);
        assert!(result.is_err(), "{:?}: {result:?}", String::from_utf8_lossy(response));
        server.join().unwrap();
    }
    // A response head larger than hyper's buffer is refused, not buffered without end.
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n");
        let line = format!("X-Big: {}\r\n", "b".repeat(1024));
        for _ in 0..2048 {
            if stream.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    assert!(get(&url, &[]).is_err());
    server.join().unwrap();
}

#[test]
fn client_refuses_reserved_and_bad_request_headers_and_urls() {
    for headers in [
        &[("Host", "x")][..],
        &[("connection", "keep-alive")],
        &[("Content-Length", "1")],
        &[("Transfer-Encoding", "chunked")],
        &[("Bad Name", "x")],
        &[("X", "a\r\nInjected: 1")],
    ] {
        assert!(matches!(get("http://127.0.0.1:9/", headers), Err(HubError::InvalidHeader(_))), "{headers:?}");
    }
    assert!(matches!(open("G E T", "http://127.0.0.1:9/", &[]), Err(HubError::InvalidHeader(_))));
    for bad in [
        "https://h/",
        "h/x",
        "http:///x",
        "http://u@h/",
        "http://h:99999/",
        "http://h:x/",
        "http://[::1/",
        "http://[::1]x/",
        "http://h/a b",
        "http://h/\u{e9}",
    ] {
        assert!(matches!(get(bad, &[]), Err(HubError::InvalidUrl(_))), "{bad}: {:?}", get(bad, &[]));
    }
}
