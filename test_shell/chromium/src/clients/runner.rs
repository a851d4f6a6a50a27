//! Runs every client page in real Chromium through the bridge: per client a fresh bridge (a
//! fresh Chromium and a fresh COS store, so one client's stored files never make another's
//! first site a hit), the page at site A, then at site B, each measured from the hub's request
//! log and the bridge's COS read counters.

use std::path::Path;

use super::packages::{Packages, PackagesError};
use super::report::{ClientRun, ClientsReport, PageReport, REPORT_PREFIX, SiteRun};
use super::sites::{Client, SITE_A, SITE_B, Sites, SitesError, Traffic};
use crate::bridge::{Bridge, BridgeConfig, BridgeError, PAGE_GUARD};
use crate::devtools::{DevToolsError, find_chromium};

/// When set, the page's console lines and every request the hub logged during a page run go to
/// stderr (method, host and path, status, body bytes, initiator, category): what a client
/// said and fetched, and from where.
pub const TRACE_ENV: &str = "COS_CLIENTS_TRACE";

/// Why the clients could not be run (not: a client did badly; that is in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientsError {
    /// No Chromium to run.
    #[error(transparent)]
    Chromium(#[from] DevToolsError),
    /// The client packages could not be had.
    #[error("{0} (run `test_shell chromium setup` where the npm registry is reachable)")]
    Packages(#[from] PackagesError),
    /// The loopback sites did not start.
    #[error("the loopback sites did not start: {0}")]
    Sites(#[from] SitesError),
    /// The Public Hash List for the run could not be written.
    #[error("writing the run's Public Hash List: {0}")]
    Io(#[from] std::io::Error),
    /// Chromium, the bridge or the storage service did not start.
    #[error("starting Chromium and the storage service for {client}: {source}")]
    BridgeStart {
        /// `name version`.
        client: String,
        /// What failed.
        source: BridgeError,
    },
    /// The bridge failed while running a client page.
    #[error("{client} at {site}: {source}")]
    Bridge {
        /// `name version`.
        client: String,
        /// The application site.
        site: String,
        /// What failed.
        source: BridgeError,
    },
    /// The page never printed its report (a hang guard expired) or printed something else.
    #[error(
        "{client} at {site}: {detail}; rerun with COS_CLIENTS_TRACE=1 (the page's requests) and \
         RUST_LOG=cos_shell_chromium=debug to see where {url} stopped"
    )]
    NoReport {
        /// `name version`.
        client: String,
        /// The application site.
        site: String,
        /// The page.
        url: String,
        /// What happened.
        detail: String,
    },
}

/// Fetches the packages if needed ([`Packages::ensure_all`]), then [`run_with`] every client of
/// [`Client::ALL`].
pub fn run(service_program: &Path, progress: &mut dyn FnMut(&str)) -> Result<ClientsReport, ClientsError> {
    // Chromium first: a missing browser should not cost a package download to find out.
    find_chromium()?;
    progress("clients: checking the client packages (fetched with npm pack when missing)");
    let packages = Packages::ensure_all()?;
    run_with(service_program, &packages, &Client::ALL, progress)
}

/// Runs `clients` at site A then site B, on one set of loopback sites, each client with its
/// own bridge; `service_program` runs the sandboxed storage service.
pub fn run_with(
    service_program: &Path,
    packages: &Packages,
    clients: &[Client],
    progress: &mut dyn FnMut(&str),
) -> Result<ClientsReport, ClientsError> {
    find_chromium()?;
    let sites = Sites::start(packages)?;
    // Entries written with `origins: "*"` reach another site only when their hash is on the
    // Public Hash List (the service fails closed without one): list the model repositories'
    // files, as a browser's list would name popular models.
    let scratch = tempfile::Builder::new().prefix("cos-clients-").tempdir()?;
    let list_path = scratch.path().join("public-hash-list.txt");
    let mut list = String::from("// The loopback model repositories\n// ===BEGIN SHA-256===\n");
    for file in sites.model_files() {
        list.push_str(&file.sha256_hex);
        list.push('\n');
    }
    std::fs::write(&list_path, list)?;
    let mut runs = Vec::new();
    for &client in clients {
        runs.push(run_client(service_program, &sites, &list_path, client, progress)?);
    }
    Ok(ClientsReport::new(runs))
}

fn label(client: Client) -> String {
    format!("{} {}", client.name(), client.version())
}

fn run_client(
    service_program: &Path,
    sites: &Sites,
    public_hash_list: &Path,
    client: Client,
    progress: &mut dyn FnMut(&str),
) -> Result<ClientRun, ClientsError> {
    let name = label(client);
    progress(&format!("clients: {name}: starting Chromium and a fresh Cross-Origin Storage"));
    let mut config = BridgeConfig::new(service_program.to_path_buf());
    config.chromium_args = vec![
        format!("--host-resolver-rules={}", sites.host_resolver_rules()),
        // The hub's certificate is self-signed; this Chromium has its own throwaway profile.
        "--ignore-certificate-errors".to_owned(),
    ];
    config.public_hash_list = Some(public_hash_list.to_path_buf());
    // A global-grant read of an entry under 500 KiB (the tiny BERT model) misses 1% of the
    // time by design; a client then downloads it again, which would make the verdict a coin
    // toss. The service honours this only when built with its test seams (test_shell, tests).
    config.grease_for_tests = Some(false);
    let bridge = Bridge::start(config).map_err(|source| ClientsError::BridgeStart { client: name.clone(), source })?;
    let mut runs = Vec::new();
    for site in [SITE_A, SITE_B] {
        progress(&format!("clients: {name} at {site} ..."));
        let run = run_site(&bridge, sites, client, site)?;
        progress(&format!(
            "clients: {name} at {site}: {} ({} model-file bytes from the network, {} from COS)",
            match (&run.report.error, run.report.ready_ms) {
                (Some(error), _) => format!("error: {error}"),
                (None, Some(ms)) => format!("ready in {ms} ms"),
                (None, None) => "done".to_owned(),
            },
            run.network.model_files,
            run.from_cos,
        ));
        runs.push(run);
    }
    Ok(ClientRun::new(client, runs))
}

fn run_site(bridge: &Bridge, sites: &Sites, client: Client, site: &str) -> Result<SiteRun, ClientsError> {
    let name = label(client);
    let url = sites.page_url(site, client);
    let bridge_error = |source| ClientsError::Bridge { client: name.clone(), site: site.to_owned(), source };
    let log_start = sites.hub().requests().len();
    let cos_start = bridge.bytes_served_from_cos(site);
    let tab = bridge.open(&url).map_err(bridge_error)?;
    // The user clicks the page's "load model": it starts, and its '*' writes are recorded.
    tab.click().map_err(bridge_error)?;
    // The tab subscribed to its events before navigating, so a report printed before the load
    // event is not missed.
    let trace = std::env::var_os(TRACE_ENV).is_some();
    let line = tab
        .wait_for_console(|text| {
            if trace {
                eprintln!("  console: {text}");
            }
            text.starts_with(REPORT_PREFIX)
        })
        .map_err(|error| match error {
            BridgeError::Timeout(_) => ClientsError::NoReport {
                client: name.clone(),
                site: site.to_owned(),
                url: url.clone(),
                detail: format!("no `{}` line within {} s", REPORT_PREFIX.trim(), PAGE_GUARD.as_secs()),
            },
            other => bridge_error(other),
        })?;
    tab.close().map_err(bridge_error)?;
    let report = PageReport::parse(&line).map_err(|detail| ClientsError::NoReport {
        client: name.clone(),
        site: site.to_owned(),
        url: url.clone(),
        detail,
    })?;
    let log = sites.hub().requests();
    let window = log.get(log_start..).unwrap_or_default();
    if std::env::var_os(TRACE_ENV).is_some() {
        for r in window {
            eprintln!(
                "  {} {}{} {} {} bytes, from {:?}, {:?}",
                r.method,
                r.host.as_deref().unwrap_or(""),
                r.path,
                r.status,
                r.body_bytes,
                r.initiator,
                r.category
            );
        }
    }
    let traffic = Traffic::of(window, site);
    let unattributed = window.iter().filter(|r| r.initiator.is_none()).count() as u64;
    Ok(SiteRun {
        site: site.to_owned(),
        network: traffic.into(),
        unattributed_requests: unattributed,
        from_cos: bridge.bytes_served_from_cos(site).saturating_sub(cos_start),
        report,
    })
}
