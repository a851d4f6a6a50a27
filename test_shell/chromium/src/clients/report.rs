//! What `test_shell chromium clients` found: per client, per site, the bytes from the network
//! and from Cross-Origin Storage, the time to ready and the inference fingerprint; the
//! verdict; the table and the JSON.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sites::{Client, SITE_A, SITE_B, Traffic};

/// The prefix of the one console line a client page prints when it is done.
pub const REPORT_PREFIX: &str = "cos-client-report ";

/// What a client page reported (`clients/pages/report.js`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageReport {
    /// The client the page loaded.
    pub client: String,
    /// Its version.
    pub version: String,
    /// Milliseconds from the page's start to the model (or the cache step) ready.
    pub ready_ms: Option<u64>,
    /// A short fingerprint of the inference output, if the page ran inference.
    pub inference: Option<Value>,
    /// What the page did not do.
    pub note: Option<String>,
    /// What failed, if anything.
    pub error: Option<String>,
}

impl PageReport {
    /// Parses the console line `cos-client-report {json}`.
    pub fn parse(line: &str) -> Result<PageReport, String> {
        let json = line.strip_prefix(REPORT_PREFIX).ok_or_else(|| format!("not a report line: {line}"))?;
        serde_json::from_str(json).map_err(|e| format!("the report is not the expected JSON ({e}): {json}"))
    }
}

/// Bytes from the network, split the way the Hub bills them ([`Traffic`]), as serialised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetworkBytes {
    /// Requests made from the site's page.
    pub requests: u64,
    /// Body bytes of Git LFS files from `/resolve/` (what COS is meant to share).
    pub model_files: u64,
    /// `/resolve/` GETs of Git LFS files that sent a body.
    pub model_file_downloads: u64,
    /// Body bytes of Git LFS pointers from `/raw/`.
    pub pointers: u64,
    /// Everything else: plain-Git files (config, tokenizer), scripts, runtimes, pages.
    pub other: u64,
}

impl From<Traffic> for NetworkBytes {
    fn from(t: Traffic) -> Self {
        NetworkBytes {
            requests: t.requests,
            model_files: t.model_file_bytes,
            model_file_downloads: t.model_file_downloads,
            pointers: t.pointer_bytes,
            other: t.other_bytes,
        }
    }
}

/// One client page run at one site.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteRun {
    /// The application site (origin).
    pub site: String,
    /// What the site's page got from the network (the hub's log, by initiator).
    pub network: NetworkBytes,
    /// Requests the hub logged during the run that no page named as its initiator (the
    /// top-level navigation sends neither `Origin` nor `Referer`).
    pub unattributed_requests: u64,
    /// Bytes the site's page read from COS during the run.
    pub from_cos: u64,
    /// The page's report.
    pub report: PageReport,
}

/// One client: site A, then site B, on a fresh COS store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientRun {
    /// The library's name, as the page reports it.
    pub client: String,
    /// Its version.
    pub version: String,
    /// Whether the page runs inference (otherwise the cache step only).
    pub inference_expected: bool,
    /// The runs, site A first.
    pub sites: Vec<SiteRun>,
    /// `ok`, or why not.
    pub verdict: String,
    /// Whether this client met its conditions.
    pub ok: bool,
}

/// Every client's runs and the overall verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientsReport {
    /// Per client.
    pub clients: Vec<ClientRun>,
    /// Reasons the run fails (empty when it passes).
    pub failures: Vec<String>,
    /// What the figures do and do not show.
    pub notes: Vec<String>,
}

/// The caveats printed with every report.
pub const NOTES: &[&str] = &[
    "Files without a Git LFS pointer (config and tokenizer JSON, the ONNX Runtime wasm, scripts) are \
     downloaded again by each site: the clients key them by URL per origin, so only LFS model files \
     (hash from the /raw/ pointer) are shared through Cross-Origin Storage.",
    "Transformers.js 4.2.0 writes without `origins` (requestFileHandles([hash], {create: true})): its \
     entries are readable by the storing origin and same-site origins only, so its second site \
     downloads the model again by design; 4.3.2, WebLLM 0.2.86 and wllama 3.13.0 write with \
     origins: \"*\", disclosed to other sites because the model files are on the service's Public \
     Hash List.",
    "WebLLM and wllama ran their download-and-cache step only (no WebGPU, no real model): no inference.",
    "GREASE is off for this run (a test seam of the service): a global read of an entry under 500 KiB, \
     like the tiny BERT model, otherwise misses 1% of the time and the client downloads it again.",
];

/// Whether `client` writes its model files for every site (`origins: "*"`). Transformers.js
/// 4.2.0 writes with `requestFileHandles([hash], {create: true})`, no `origins`: the entry is
/// then readable by its storing origin and same-site origins only, so another site must miss
/// it and download the model again; its second site getting it from COS would be a leak.
pub fn shares_across_sites(client: Client) -> bool {
    !matches!(client, Client::Transformers4_2_0)
}

impl ClientRun {
    /// Builds a client's record and judges the conditions that concern it alone: no page
    /// error; the second site downloaded no model-file bytes (for a client that writes without
    /// `origins`, see [`shares_across_sites`]: as many as the first, since the entry is not
    /// disclosed across sites); the cache-step clients' second site read from COS; inference
    /// clients ran inference in both sites with the same result.
    pub fn new(client: Client, sites: Vec<SiteRun>) -> ClientRun {
        let inference_expected = matches!(client, Client::Transformers4_3_2 | Client::Transformers4_2_0);
        let shares = shares_across_sites(client);
        let mut reasons = Vec::new();
        for run in &sites {
            if let Some(error) = &run.report.error {
                reasons.push(format!("the page at {} failed: {error}", run.site));
            }
            if inference_expected && run.report.inference.is_none() {
                reasons.push(format!("no inference at {}", run.site));
            }
        }
        if let [first, second] = sites.as_slice() {
            if first.network.model_files == 0 {
                reasons.push("the first site downloaded no model files (was the store not fresh?)".to_owned());
            }
            if shares && second.network.model_files > 0 {
                reasons.push(format!(
                    "the second site downloaded {} bytes of model files ({} downloads)",
                    second.network.model_files, second.network.model_file_downloads
                ));
            }
            if !shares && second.network.model_files != first.network.model_files {
                reasons.push(format!(
                    "the second site downloaded {} bytes of model files, not the first site's {}: an entry \
                     written without `origins` must not reach another site",
                    second.network.model_files, first.network.model_files
                ));
            }
            if !inference_expected && second.from_cos == 0 {
                reasons.push("the second site read nothing from Cross-Origin Storage".to_owned());
            }
            if inference_expected
                && first.report.inference.is_some()
                && second.report.inference.is_some()
                && first.report.inference != second.report.inference
            {
                reasons.push("the two sites' inference differs".to_owned());
            }
        } else {
            reasons.push(format!("ran at {} sites, not two", sites.len()));
        }
        let ok = reasons.is_empty();
        let verdict = match (ok, shares) {
            (false, _) => format!("FAILED: {}", reasons.join("; ")),
            (true, true) => format!(
                "ok: the second site downloaded 0 bytes of model files and read {} bytes from Cross-Origin \
                 Storage{}",
                bytes(sites[1].from_cos),
                if inference_expected { "; inference identical in both sites" } else { "" }
            ),
            (true, false) => format!(
                "ok (as specified): this version stores without `origins`, so its entries stay with the storing \
                 site and the second site downloaded the model files again ({} bytes); inference identical in \
                 both sites",
                bytes(sites[1].network.model_files)
            ),
        };
        ClientRun {
            client: client.name().to_owned(),
            version: client.version().to_owned(),
            inference_expected,
            sites,
            verdict,
            ok,
        }
    }

    fn label(&self) -> String {
        format!("{} {}", self.client, self.version)
    }
}

impl ClientsReport {
    /// Judges the runs: every client's own conditions, and the Transformers.js versions'
    /// inference identical across versions.
    pub fn new(clients: Vec<ClientRun>) -> ClientsReport {
        let mut failures: Vec<String> =
            clients.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.label(), c.verdict)).collect();
        let fingerprints: Vec<(String, &Option<Value>)> = clients
            .iter()
            .filter(|c| c.inference_expected)
            .flat_map(|c| c.sites.iter().map(move |s| (format!("{} at {}", c.label(), s.site), &s.report.inference)))
            .collect();
        if let Some((first_label, first)) = fingerprints.first() {
            for (label, fingerprint) in &fingerprints[1..] {
                if fingerprint != first {
                    failures.push(format!("inference of {label} differs from {first_label}"));
                }
            }
        }
        for client in [Client::Transformers4_3_2, Client::Transformers4_2_0] {
            if !clients.iter().any(|c| c.client == client.name() && c.version == client.version()) {
                failures.push(format!("{} {} did not run", client.name(), client.version()));
            }
        }
        ClientsReport { clients, failures, notes: NOTES.iter().map(|n| (*n).to_owned()).collect() }
    }

    /// Whether every condition held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Writes a table per client, its verdict, the notes and the overall verdict.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        const HEADERS: [&str; 7] =
            ["site", "model files (net)", "pointers (net)", "other (net)", "from COS", "ready ms", "inference"];
        for client in &self.clients {
            writeln!(out, "{}", client.label())?;
            let rows: Vec<[String; 7]> = client
                .sites
                .iter()
                .map(|s| {
                    [
                        site_label(&s.site),
                        bytes(s.network.model_files),
                        bytes(s.network.pointers),
                        bytes(s.network.other),
                        bytes(s.from_cos),
                        s.report.ready_ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
                        inference_label(&s.report),
                    ]
                })
                .collect();
            let mut widths = HEADERS.map(str::len);
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; 7]| {
                let mut text = format!("  {:<w$}", cells[0], w = widths[0]);
                for (i, cell) in cells.iter().enumerate().take(6).skip(1) {
                    text.push_str(&format!("  {cell:>w$}", w = widths[i]));
                }
                text.push_str(&format!("  {}", cells[6]));
                text
            };
            writeln!(out, "{}", line(HEADERS))?;
            for row in &rows {
                writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
            }
            if let Some(note) = client.sites.iter().find_map(|s| s.report.note.as_ref()) {
                writeln!(out, "  note: {note}")?;
            }
            writeln!(out, "  verdict: {}", client.verdict)?;
            writeln!(out)?;
        }
        for note in &self.notes {
            writeln!(out, "Note: {note}")?;
        }
        if self.passed() {
            writeln!(
                out,
                "PASSED: both Transformers.js versions ran identical inference in both sites; every second site of \
                 a client that writes for every site downloaded 0 bytes of model files; WebLLM's and wllama's \
                 second sites read from Cross-Origin Storage."
            )
        } else {
            writeln!(out, "FAILED:")?;
            for failure in &self.failures {
                writeln!(out, "  - {failure}")?;
            }
            Ok(())
        }
    }
}

fn site_label(site: &str) -> String {
    let name = if site == SITE_A {
        "A"
    } else if site == SITE_B {
        "B"
    } else {
        "?"
    };
    format!("{name} {}", site.trim_start_matches("https://"))
}

/// The inference fingerprint in a table cell: the classification and the first features.
fn inference_label(report: &PageReport) -> String {
    let Some(inference) = &report.inference else {
        return if report.error.is_some() { "error".to_owned() } else { "-".to_owned() };
    };
    let label = inference["classification"]["label"].as_str();
    let score = &inference["classification"]["score"];
    let dims = &inference["features"]["dims"];
    let first = &inference["features"]["first"];
    match label {
        Some(label) => format!("{label} {score}; features {dims} {first}"),
        None => inference.to_string(),
    }
}

/// Bytes with thousands separators (exact: "0" must read as zero).
pub fn bytes(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(inference: Option<Value>, error: Option<&str>) -> PageReport {
        PageReport {
            client: "x".into(),
            version: "1".into(),
            ready_ms: Some(5),
            inference,
            note: None,
            error: error.map(str::to_owned),
        }
    }

    fn run(site: &str, model_files: u64, from_cos: u64, report: PageReport) -> SiteRun {
        SiteRun {
            site: site.to_owned(),
            network: NetworkBytes { model_files, ..NetworkBytes::default() },
            unattributed_requests: 0,
            from_cos,
            report,
        }
    }

    #[test]
    fn bytes_have_separators() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(999), "999");
        assert_eq!(bytes(1000), "1,000");
        assert_eq!(bytes(6_291_456), "6,291,456");
    }

    #[test]
    fn report_lines_parse() {
        let line = r#"cos-client-report {"client":"wllama","version":"3.13.0","ready_ms":12,"inference":null,"note":"n","error":null}"#;
        let parsed = PageReport::parse(line).unwrap();
        assert_eq!(parsed.ready_ms, Some(12));
        assert!(PageReport::parse("something else").is_err());
    }

    #[test]
    fn the_verdict_needs_no_model_bytes_and_cos_reads_at_the_second_site() {
        let ok = ClientRun::new(
            Client::Wllama3_13_0,
            vec![run(SITE_A, 100, 0, report(None, None)), run(SITE_B, 0, 100, report(None, None))],
        );
        assert!(ok.ok, "{}", ok.verdict);
        let downloaded = ClientRun::new(
            Client::Wllama3_13_0,
            vec![run(SITE_A, 100, 0, report(None, None)), run(SITE_B, 100, 0, report(None, None))],
        );
        assert!(!downloaded.ok);
        assert!(downloaded.verdict.contains("downloaded 100 bytes"), "{}", downloaded.verdict);
        assert!(downloaded.verdict.contains("read nothing"), "{}", downloaded.verdict);
    }

    #[test]
    fn a_client_writing_without_origins_must_miss_at_the_second_site() {
        let fp = Some(serde_json::json!({ "classification": { "label": "L", "score": 0.5 } }));
        let runs = |second_model_files| {
            ClientRun::new(
                Client::Transformers4_2_0,
                vec![
                    run(SITE_A, 100, 10, report(fp.clone(), None)),
                    run(SITE_B, second_model_files, 10, report(fp.clone(), None)),
                ],
            )
        };
        assert!(runs(100).ok, "{}", runs(100).verdict);
        assert!(!runs(0).ok, "a cross-site hit would be a leak");
    }

    #[test]
    fn transformers_versions_must_agree() {
        let fp = |x: f64| Some(serde_json::json!({ "classification": { "label": "L", "score": x } }));
        let both = |client, x| {
            let second = if shares_across_sites(client) { 0 } else { 1 };
            ClientRun::new(
                client,
                vec![run(SITE_A, 1, 0, report(fp(x), None)), run(SITE_B, second, 1, report(fp(x), None))],
            )
        };
        let same = ClientsReport::new(vec![both(Client::Transformers4_3_2, 0.5), both(Client::Transformers4_2_0, 0.5)]);
        assert!(same.passed(), "{:?}", same.failures);
        let differ =
            ClientsReport::new(vec![both(Client::Transformers4_3_2, 0.5), both(Client::Transformers4_2_0, 0.6)]);
        assert!(!differ.passed());
        let missing = ClientsReport::new(vec![both(Client::Transformers4_3_2, 0.5)]);
        assert!(!missing.passed());
    }
}
