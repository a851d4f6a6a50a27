//! The browser's own storage (Cache API, OPFS, IndexedDB) measured in headless Chromium, and
//! Cross-Origin Storage through the same Chromium beside it.
//!
//! What a site does today without Cross-Origin Storage is the baseline our figures are judged
//! against, so it is measured in a real browser rather than estimated. The page
//! (`js/bench_peers.html`) does the timing itself with `performance.now()`; this side only serves
//! it, starts Chromium and collects what the page posts back.
//!
//! Chromium is started through the bridge ([`cos_shell_chromium::Bridge`]), which injects
//! `navigator.crossOriginStorage` backed by our sandboxed storage service, so the page measures
//! COS through Chromium (bytes over loopback capability URLs) interleaved with the Cache API in
//! one session: the comparison a page would see, with the machine's noise hitting both alike.
//!
//! The page is served from a throwaway HTTP server (hyper, on a tokio runtime of its own thread)
//! on `http://127.0.0.1`: loopback is a secure
//! context, so the Cache API, OPFS and `crypto.subtle` are all available without certificates,
//! and the COOP/COEP headers it sends make the page cross-origin isolated, which is what gives
//! `performance.now()` the resolution the sub-millisecond lookup figures need.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use cos_shell_chromium::devtools::find_chromium;
use cos_shell_chromium::{Bridge, BridgeConfig, BridgeError};
use cos_test_support::measure::quantile_of;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The page that does the measuring.
const PAGE: &str = include_str!("../js/bench_peers.html");

/// The per-size operations, in the order the page reports them (`cos store` and `cos read` are
/// COS through Chromium, interleaved with `cache put` and `cache match`).
pub const OPERATIONS: [&str; 9] = [
    "cache put",
    "cos store",
    "cache match",
    "cos read",
    "digest+cache put",
    "opfs write",
    "opfs read",
    "idb put",
    "idb get",
];

/// The lookup figures, which the page runs first (the `cos` ones are `getFileHandle` through
/// Chromium, in blocks alternating with `cache.match`).
pub const LOOKUPS: [&str; 4] = ["cache match miss", "cos lookup miss", "cache match hit", "cos lookup hit"];

/// How often the wait for results also checks whether Chromium died, so a crash is reported
/// at once rather than after the whole timeout.
const POLL: Duration = Duration::from_millis(200);

/// Results are a few tens of KiB even with many lookups; the cap only stops a runaway client.
const MAX_BODY: usize = 64 << 20;

/// How much of Chromium's stderr an error quotes: enough for a crash reason, not a whole log.
const TAIL_LINES: usize = 25;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerOptions {
    /// (label, size in bytes), e.g. ("177 MiB", 185_597_952), ("4.5 MiB", 4_718_592), ("1 KiB", 1024).
    pub sizes: Vec<(String, u64)>,
    /// Samples per size and operation (after one warm-up that is not recorded).
    pub repeats: u32,
    /// Sequential cache.match calls for each of the miss and hit latency figures.
    pub lookups: u32,
    /// Give up after this long.
    pub timeout: Duration,
    /// The executable the bridge starts as the sandboxed storage service behind
    /// `navigator.crossOriginStorage` (`--type=storage-service`; the bench binary itself).
    pub service_program: PathBuf,
}

/// One figure: every sample, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerFigure {
    /// What was measured, e.g. `cache put 177 MiB` or `cache match miss`.
    pub name: String,
    /// Every recorded sample, in milliseconds, in the order they were taken.
    pub samples_ms: Vec<f64>,
}

/// A completed run.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRun {
    /// The browser as `--version` names it, e.g. "Chromium 148.0.7778.167".
    pub browser: String,
    /// Every figure: the two lookup figures, then each size's operations in `sizes` order.
    pub figures: Vec<PeerFigure>,
}

/// Why --peers measured nothing, or what it measured.
#[derive(Debug, Clone, PartialEq)]
pub enum PeersOutcome {
    /// Chromium ran the page to the end.
    Ran(PeerRun),
    /// There is no Chromium to run; the reason says how to provide one.
    Skipped(String),
}

/// Why a run with Chromium present failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The options cannot be turned into a page run.
    #[error("invalid peer options: {0}")]
    Options(String),
    /// `chromium --version` did not name a browser, so the binary is probably not Chromium.
    #[error("`{} --version` failed: {detail}", chromium.display())]
    Version {
        /// The binary that was asked.
        chromium: PathBuf,
        /// What went wrong, with its stderr if it wrote any.
        detail: String,
    },
    /// The loopback server or Chromium's scratch directory could not be set up.
    #[error("could not prepare the run (loopback HTTP server, scratch directory): {0}")]
    Setup(#[from] io::Error),
    /// Chromium, the bridge or its storage service could not be started, or the page not opened.
    #[error("could not start Chromium through the bridge (with its storage service) or open the page: {0}")]
    Start(#[from] BridgeError),
    /// Chromium died before the page reported.
    #[error("Chromium exited ({status}) before the page reported its figures; Chromium's stderr ends with:\n{stderr}")]
    Exited {
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The page never reported.
    #[error(
        "no figures from Chromium within {after:?} (last progress: {last}): raise the timeout or measure \
         smaller sizes; Chromium's stderr ends with:\n{stderr}"
    )]
    Timeout {
        /// The timeout that ran out.
        after: Duration,
        /// The last progress message, to show how far the page got.
        last: String,
        /// The end of Chromium's stderr.
        stderr: String,
    },
    /// The page threw: a storage API failed or is missing in this Chromium.
    #[error("the measuring page failed in Chromium: {message}\nChromium's stderr ends with:\n{stderr}")]
    Page {
        /// The exception, with its stack.
        message: String,
        /// The end of Chromium's stderr.
        stderr: String,
    },
    /// The page posted a line that is not `<name>\t<ms>\t<ms>...`.
    #[error("malformed result line ({reason}): {line:?}")]
    Malformed {
        /// The line, shortened if long.
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The results parsed but do not match what was asked for.
    #[error("incomplete results: {0}")]
    Incomplete(String),
}

/// Runs the page in headless Chromium and collects its figures. Skipped (with the reason, e.g.
/// "Chromium not found: install it at /usr/bin/chromium or set CHROMIUM=") when there is no
/// Chromium; an Err only when Chromium exists but the run failed (with an actionable message
/// including Chromium's stderr tail).
///
/// `progress` gets a line as each figure completes (its median), plus a few notes such as the
/// page's storage quota and whether its timer is fine-grained.
pub fn run_peers(options: &PeerOptions, progress: &mut dyn FnMut(&str)) -> Result<PeersOutcome, PeerError> {
    let chromium = match find_chromium() {
        Ok(chromium) => chromium,
        Err(error) => return Ok(PeersOutcome::Skipped(error.to_string())),
    };
    validate(options)?;
    let browser = chromium_version(&chromium)?;
    progress(&format!("starting {browser} ({}) headless, with COS through the bridge", chromium.display()));
    let started = Instant::now();
    let text = run_page(options, progress)?;
    let figures = check_figures(options, parse_results(&text)?)?;
    progress(&format!("{browser}: all {} figures in {:.1} s", figures.len(), started.elapsed().as_secs_f64()));
    Ok(PeersOutcome::Ran(PeerRun { browser, figures }))
}

/// Rejects what would make the page fail or the result lines ambiguous, before paying for a
/// browser start.
fn validate(options: &PeerOptions) -> Result<(), PeerError> {
    if options.repeats == 0 || options.lookups == 0 {
        return Err(PeerError::Options("repeats and lookups must be at least 1".into()));
    }
    for (index, (label, _)) in options.sizes.iter().enumerate() {
        if label.trim().is_empty() || label.chars().any(char::is_control) {
            return Err(PeerError::Options(format!("size label {label:?} must be non-empty printable text")));
        }
        if options.sizes[..index].iter().any(|(earlier, _)| earlier == label) {
            return Err(PeerError::Options(format!("size label {label:?} appears twice")));
        }
    }
    Ok(())
}

/// The name `--version` prints, without distribution suffixes such as "built on Debian ...":
/// everything up to and including the version number.
fn browser_name(version_output: &str) -> String {
    let line = version_output.lines().find(|line| !line.trim().is_empty()).unwrap_or_default().trim();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.iter().position(|word| word.starts_with(|c: char| c.is_ascii_digit())) {
        Some(version) => words[..=version].join(" "),
        None => line.to_owned(),
    }
}

/// Asks the binary for its version, which also proves it runs before the real launch.
fn chromium_version(chromium: &Path) -> Result<String, PeerError> {
    let error = |detail: String| PeerError::Version { chromium: chromium.to_owned(), detail };
    let output = Command::new(chromium)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| error(format!("could not run it: {e}")))?;
    let name = browser_name(&String::from_utf8_lossy(&output.stdout));
    if !output.status.success() || name.is_empty() {
        return Err(error(format!(
            "{} with stdout {:?}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(name)
}

/// The page's query string: `size=<label>:<bytes>` per size (the page splits at the last `:`),
/// then `repeats` and `lookups`, form-encoded so labels survive any spelling (spaces, `&`, `+`,
/// non-ASCII) through `URLSearchParams`.
fn query_string(options: &PeerOptions) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (label, bytes) in &options.sizes {
        query.append_pair("size", &format!("{label}:{bytes}"));
    }
    query.append_pair("repeats", &options.repeats.to_string());
    query.append_pair("lookups", &options.lookups.to_string());
    query.finish()
}

/// Every figure the page must report, with its sample count, in reporting order.
fn expected_figures(options: &PeerOptions) -> Vec<(String, usize)> {
    let lookups = LOOKUPS.iter().map(|name| ((*name).to_owned(), options.lookups as usize));
    let sizes = options.sizes.iter().flat_map(|(label, _)| {
        OPERATIONS.iter().map(move |operation| (format!("{operation} {label}"), options.repeats as usize))
    });
    lookups.chain(sizes).collect()
}

/// Parses the page's result text: one `<name>\t<ms>\t<ms>...` line per figure.
fn parse_results(text: &str) -> Result<Vec<PeerFigure>, PeerError> {
    text.lines().filter(|line| !line.trim().is_empty()).map(parse_line).collect()
}

/// One result line.
fn parse_line(line: &str) -> Result<PeerFigure, PeerError> {
    let line = line.trim_end_matches('\r');
    let malformed = |reason: String| {
        // A lookup line holds thousands of samples; the start is what identifies it.
        let shown: String = line.chars().take(200).collect();
        PeerError::Malformed { line: shown, reason }
    };
    let mut fields = line.split('\t');
    let name = fields.next().unwrap_or_default().trim();
    if name.is_empty() {
        return Err(malformed("no figure name".into()));
    }
    let samples_ms = fields
        .map(|field| {
            field
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .ok_or_else(|| malformed(format!("{field:?} is not a duration in milliseconds")))
        })
        .collect::<Result<Vec<f64>, PeerError>>()?;
    if samples_ms.is_empty() {
        return Err(malformed("no samples".into()));
    }
    Ok(PeerFigure { name: name.to_owned(), samples_ms })
}

/// Checks the page reported exactly what was asked for, and orders it as [`expected_figures`]:
/// a figure silently missing or short of samples would make the comparison lie.
fn check_figures(options: &PeerOptions, mut figures: Vec<PeerFigure>) -> Result<Vec<PeerFigure>, PeerError> {
    let mut ordered = Vec::with_capacity(figures.len());
    for (name, count) in expected_figures(options) {
        let Some(index) = figures.iter().position(|figure| figure.name == name) else {
            return Err(PeerError::Incomplete(format!("no {name:?} figure")));
        };
        let figure = figures.remove(index);
        if figure.samples_ms.len() != count {
            return Err(PeerError::Incomplete(format!(
                "{name:?} has {} samples, expected {count}",
                figure.samples_ms.len()
            )));
        }
        ordered.push(figure);
    }
    if let Some(extra) = figures.first() {
        return Err(PeerError::Incomplete(format!("unexpected or repeated figure {:?}", extra.name)));
    }
    Ok(ordered)
}

/// A progress line for the caller: the figure's median if the page sent a figure line, else
/// the page's note as is.
fn describe_progress(text: &str) -> String {
    match parse_line(text.trim()) {
        Ok(figure) => format!(
            "{}: median {} over {} samples",
            figure.name,
            format_ms(median(&figure.samples_ms)),
            figure.samples_ms.len()
        ),
        Err(_) => text.trim().to_owned(),
    }
}

/// The median (nearest rank, as the report's) of samples in the order taken.
fn median(samples: &[f64]) -> f64 {
    quantile_of(&mut samples.to_vec(), 0.5)
}

/// Milliseconds in a unit that keeps lookups (hundreds of µs) and large puts readable.
fn format_ms(ms: f64) -> String {
    if ms < 1.0 { format!("{:.0} µs", ms * 1000.0) } else { format!("{ms:.1} ms") }
}

/// Flags for the bridge's Chromium beyond its own: /dev/shm is small in containers, and
/// Chromium's shared memory for large blobs would otherwise run out there.
const CHROMIUM_ARGS: [&str; 1] = ["--disable-dev-shm-usage"];

/// Serves the page, opens it in Chromium through the bridge and returns the page's result text.
fn run_page(options: &PeerOptions, progress: &mut dyn FnMut(&str)) -> Result<String, PeerError> {
    let deadline = Instant::now() + options.timeout;
    let (events_tx, events) = mpsc::channel();
    // Declared before the bridge so it is dropped after it: Chromium's death closes its
    // connections, which lets the server's connection tasks finish.
    let server = Server::start(events_tx)?;
    let url = format!("http://{}/?{}", server.address, query_string(options));
    let mut config = BridgeConfig::new(options.service_program.clone());
    config.chromium_args = CHROMIUM_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
    let bridge = Bridge::start(config)?;
    // The tab must stay open while the page measures: dropping it does not close it, but
    // holding it keeps its event subscription, which is what a caller of the bridge does.
    let _tab = bridge.open(&url)?;
    let outcome = wait_for_result(&events, &bridge, deadline, progress);
    let stderr = stderr_tail(&bridge.chromium_stderr());
    drop(bridge);
    drop(server);
    outcome.map_err(|failure| match failure {
        Failure::Exited => PeerError::Exited { status: "the DevTools pipe closed".into(), stderr },
        Failure::Timeout(last) => PeerError::Timeout { after: options.timeout, last, stderr },
        Failure::Page(message) => PeerError::Page { message, stderr },
    })
}

/// How waiting for the page can end badly; turned into a [`PeerError`] with Chromium's stderr.
enum Failure {
    Exited,
    Timeout(String),
    Page(String),
}

/// Relays progress until the page posts its results or an error, Chromium dies, or time runs out.
fn wait_for_result(
    events: &Receiver<Event>,
    bridge: &Bridge,
    deadline: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<String, Failure> {
    let mut last = String::from("none: the page never reported");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Timeout(last));
        }
        match events.recv_timeout(left.min(POLL)) {
            Ok(Event::Progress(text)) => {
                last = describe_progress(&text);
                progress(&last);
            }
            Ok(Event::Result(text)) => return Ok(text),
            Ok(Event::Error(message)) => return Err(Failure::Page(message)),
            // The protocol pipe closes when Chromium dies; asking this costs no DevTools
            // traffic, so the check does not disturb what is being measured.
            Err(RecvTimeoutError::Timeout) if bridge.client().is_closed() => return Err(Failure::Exited),
            Err(RecvTimeoutError::Timeout) => {}
            // The server holds a sender until it is stopped, so this means its thread panicked.
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Failure::Page("the loopback HTTP server stopped unexpectedly".into()));
            }
        }
    }
}

/// The last lines of Chromium's stderr tail as the bridge keeps it.
fn stderr_tail(text: &str) -> String {
    // Headless Chromium in a container logs D-Bus failures by the dozen; they are harmless and
    // would push the line that explains a failure out of the tail.
    let lines: Vec<&str> =
        text.lines().filter(|line| !line.trim().is_empty() && !line.contains(":ERROR:dbus/")).collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.is_empty() { "(nothing)".into() } else { tail }
}

/// What the page posts.
#[derive(Debug, PartialEq)]
enum Event {
    Progress(String),
    Result(String),
    Error(String),
}

/// Cross-origin isolation: `performance.now()` at 5 µs instead of 100 µs.
const ISOLATION: [(HeaderName, &str); 2] = [
    (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    (HeaderName::from_static("cross-origin-embedder-policy"), "require-corp"),
];

/// The loopback HTTP server: hyper on a current-thread tokio runtime in a thread of its own,
/// stopped and joined when dropped.
struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(events: Sender<Event>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Bound here rather than in the thread, so that a failure is this call's error.
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new().name("bench-peers-http".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = serve(listener, events) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends every connection still open, such as the ones Chromium
            // preconnects and leaves idle.
            drop(runtime);
        })?;
        Ok(Server { address, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An Err means the thread already ended, which the join below sees too.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until stopped, a task per connection so a connection Chromium opens and leaves idle
/// (it preconnects) cannot hold up the page's posts.
async fn serve(listener: tokio::net::TcpListener, events: Sender<Event>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let events = events.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| route(request, events.clone()));
            // A connection the client breaks off only loses that client's request.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// `/` is the page (whatever the query), the three POST paths are the page reporting back.
async fn route(request: Request<Incoming>, events: Sender<Event>) -> Result<Response<Full<Bytes>>, Infallible> {
    let event: fn(String) -> Event = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => {
            let mut headers = vec![(CONTENT_TYPE, "text/html; charset=utf-8")];
            headers.extend(ISOLATION);
            return Ok(respond(StatusCode::OK, &headers, PAGE));
        }
        (&Method::POST, "/progress") => Event::Progress,
        (&Method::POST, "/result") => Event::Result,
        (&Method::POST, "/error") => Event::Error,
        _ => return Ok(respond(StatusCode::NOT_FOUND, &[], "")),
    };
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Ok(respond(StatusCode::PAYLOAD_TOO_LARGE, &[], "")),
        // The body broke off: there is nothing whole to relay.
        Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, &[], "")),
    };
    // The receiver is gone only once the run is over; a late post no longer matters then.
    let _ = events.send(event(String::from_utf8_lossy(&body).into_owned()));
    Ok(respond(StatusCode::NO_CONTENT, &[], ""))
}

/// An answer that no cache keeps: every answer is for this run only.
fn respond(status: StatusCode, headers: &[(HeaderName, &'static str)], body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in headers {
        map.insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn options(sizes: &[(&str, u64)], repeats: u32, lookups: u32) -> PeerOptions {
        PeerOptions {
            sizes: sizes.iter().map(|(label, bytes)| ((*label).to_owned(), *bytes)).collect(),
            repeats,
            lookups,
            timeout: Duration::from_secs(120),
            service_program: PathBuf::new(),
        }
    }

    #[test]
    fn parses_result_lines_into_figures() {
        let text = "cache put 1 KiB\t0.5000\t0.2500\r\n\ncache match miss\t0.1\n";
        let figures = parse_results(text).unwrap();
        assert_eq!(
            figures,
            vec![
                PeerFigure { name: "cache put 1 KiB".into(), samples_ms: vec![0.5, 0.25] },
                PeerFigure { name: "cache match miss".into(), samples_ms: vec![0.1] },
            ]
        );
    }

    #[test]
    fn rejects_malformed_result_lines() {
        for (line, reason) in [
            ("cache put 1 KiB\t0.5\tfast", "is not a duration"),
            ("cache put 1 KiB", "no samples"),
            ("\t0.5", "no figure name"),
            ("cache put 1 KiB\t-1", "is not a duration"),
            ("cache put 1 KiB\tNaN", "is not a duration"),
            ("cache put 1 KiB\t0.5\t", "is not a duration"),
        ] {
            let error = parse_results(&format!("cache match miss\t0.1\n{line}\n")).unwrap_err();
            assert!(
                matches!(&error, PeerError::Malformed { reason: r, .. } if r.contains(reason)),
                "{line:?}: {error}"
            );
        }
    }

    #[test]
    fn checks_and_orders_figures() {
        let options = options(&[("1 KiB", 1024)], 2, 3);
        let expected = expected_figures(&options);
        assert_eq!(expected.len(), 13);
        assert_eq!(expected[0], ("cache match miss".into(), 3));
        assert_eq!(expected[3], ("cos lookup hit".into(), 3));
        assert_eq!(expected[4], ("cache put 1 KiB".into(), 2));
        assert_eq!(expected[5], ("cos store 1 KiB".into(), 2));
        assert_eq!(expected[8], ("digest+cache put 1 KiB".into(), 2));
        let figures: Vec<PeerFigure> = expected
            .iter()
            .rev()
            .map(|(name, count)| PeerFigure { name: name.clone(), samples_ms: vec![1.0; *count] })
            .collect();
        let ordered = check_figures(&options, figures.clone()).unwrap();
        assert_eq!(ordered.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), {
            expected.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>()
        });

        let mut short = figures.clone();
        short[0].samples_ms.pop();
        assert!(matches!(check_figures(&options, short), Err(PeerError::Incomplete(m)) if m.contains("samples")));
        let mut missing = figures.clone();
        missing.remove(3);
        assert!(matches!(check_figures(&options, missing), Err(PeerError::Incomplete(m)) if m.contains("no ")));
        let mut repeated = figures;
        repeated.push(repeated[0].clone());
        assert!(matches!(check_figures(&options, repeated), Err(PeerError::Incomplete(m)) if m.contains("repeated")));
    }

    #[test]
    fn builds_the_query_string() {
        let options = options(&[("177 MiB", 185_597_952), ("4.5 MiB", 4_718_592), ("a&b+c:µ", 1)], 3, 1000);
        assert_eq!(
            query_string(&options),
            "size=177+MiB%3A185597952&size=4.5+MiB%3A4718592&size=a%26b%2Bc%3A%C2%B5%3A1&repeats=3&lookups=1000"
        );
    }

    #[test]
    fn validates_options() {
        assert!(validate(&options(&[("1 KiB", 1024)], 1, 1)).is_ok());
        assert!(validate(&options(&[("1 KiB", 1024)], 0, 1)).is_err());
        assert!(validate(&options(&[("1 KiB", 1024)], 1, 0)).is_err());
        assert!(validate(&options(&[("a\tb", 1024)], 1, 1)).is_err());
        assert!(validate(&options(&[(" ", 1024)], 1, 1)).is_err());
        assert!(validate(&options(&[("1 KiB", 1024), ("1 KiB", 1)], 1, 1)).is_err());
    }

    #[test]
    fn names_the_browser_without_distribution_suffix() {
        assert_eq!(
            browser_name("Chromium 148.0.7778.167 built on Debian GNU/Linux 12 (bookworm)\n"),
            "Chromium 148.0.7778.167"
        );
        assert_eq!(browser_name("Google Chrome 148.0.7778.167 \n"), "Google Chrome 148.0.7778.167");
        assert_eq!(browser_name("\nsomething odd\n"), "something odd");
        assert_eq!(browser_name(""), "");
    }

    #[test]
    fn summarises_progress() {
        assert_eq!(describe_progress("cache put 1 KiB\t3\t1\t2\n"), "cache put 1 KiB: median 2.0 ms over 3 samples");
        assert_eq!(describe_progress("cache match hit\t0.3\t0.2"), "cache match hit: median 200 µs over 2 samples");
        assert_eq!(describe_progress("page ready: quota 1 GiB\n"), "page ready: quota 1 GiB");
    }

    #[test]
    fn quotes_the_end_of_stderr_without_dbus_noise() {
        let mut text = String::from("early line\n");
        for i in 0..TAIL_LINES {
            let _ = writeln!(text, "line {i}");
        }
        text.push_str("[1:2:1127/204748.364531:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n\n");
        text.push_str("FATAL: the reason\n");
        let tail = stderr_tail(&text);
        assert!(tail.ends_with("line 24\nFATAL: the reason"), "{tail}");
        assert!(!tail.contains("early line") && !tail.contains("dbus"), "{tail}");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert_eq!(stderr_tail(""), "(nothing)");
    }

    /// One request on a connection of its own, through hyper's client; the answer with its body.
    async fn exchange(address: SocketAddr, method: Method, target: &str, body: &'static str) -> Response<Bytes> {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, address.to_string())
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let (parts, body) = sender.send_request(request).await.unwrap().into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }

    #[test]
    fn serves_the_page_and_relays_posts() {
        let (events_tx, events) = mpsc::channel();
        let server = Server::start(events_tx).unwrap();
        let address = server.address;
        let client = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        client.block_on(async {
            // An idle connection, as Chromium's preconnects are, must not hold up the others.
            let _idle = tokio::net::TcpStream::connect(address).await.unwrap();

            let page = exchange(address, Method::GET, "/?repeats=1", "").await;
            assert_eq!(page.status(), StatusCode::OK);
            assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(page.headers()["cross-origin-opener-policy"], "same-origin");
            assert_eq!(page.headers()["cross-origin-embedder-policy"], "require-corp");
            assert_eq!(page.headers()[CACHE_CONTROL], "no-store");
            assert_eq!(page.body(), PAGE.as_bytes());

            let posted = exchange(address, Method::POST, "/progress", "half").await;
            assert_eq!(posted.status(), StatusCode::NO_CONTENT);
            assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok(Event::Progress("half".into())));
            let result = exchange(address, Method::POST, "/result", "ab\tcd").await;
            assert_eq!(result.status(), StatusCode::NO_CONTENT);
            assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok(Event::Result("ab\tcd".into())));

            let missing = exchange(address, Method::GET, "/favicon.ico", "").await;
            assert_eq!(missing.status(), StatusCode::NOT_FOUND);
            let wrong_method = exchange(address, Method::GET, "/result", "").await;
            assert_eq!(wrong_method.status(), StatusCode::NOT_FOUND);
            // Dropping the server with the idle connection still open must not hang.
            drop(server);
        });
    }
}
