//! The bench's figures, ratios and their rendering (a table, or JSON).

use std::fmt::Write;

use cos_test_support::measure::quantile_of;
use serde_json::{Value, json};

use super::peers::PeersOutcome;
use super::{MIB, Plan};

/// The `p`th quantile (`0.0..=1.0`, nearest rank) of `samples`, which stay in the order taken.
fn quantile(samples: &[f64], p: f64) -> f64 {
    quantile_of(&mut samples.to_vec(), p)
}

/// What a figure's samples are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Milliseconds per operation on `bytes`: min/median/max and MiB/s at the median.
    Transfer {
        /// Bytes each operation moves.
        bytes: u64,
    },
    /// Milliseconds per call: p50 and p99.
    Latency,
    /// A rate in `unit` (higher is better): min/median/max.
    Rate {
        /// What is counted per second, e.g. `"MiB/s"`.
        unit: &'static str,
    },
    /// Milliseconds: min/median/max.
    Time,
    /// MiB: min/median/max.
    Memory,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// `baselines`, `cos`, `scale` or `peers`.
    pub section: &'static str,
    /// What was measured.
    pub name: String,
    /// What the samples are.
    pub kind: Kind,
    /// Every sample, in the kind's unit.
    pub samples: Vec<f64>,
    /// Anything else worth knowing (e.g. "1 blob on disk").
    pub note: String,
}

impl Figure {
    /// The median sample.
    pub fn median(&self) -> f64 {
        quantile(&self.samples, 0.5)
    }

    /// MiB/s at the median, for transfers.
    pub fn mib_per_s(&self) -> Option<f64> {
        match self.kind {
            Kind::Transfer { bytes } if self.median() > 0.0 => Some(bytes as f64 / MIB as f64 / (self.median() / 1e3)),
            _ => None,
        }
    }
}

/// The prefix of the peers section's rows for COS measured through Chromium (the bridge).
pub(crate) const COS_VIA_CHROMIUM: &str = "cos via chromium";

/// A target in words and its test.
type Target = (&'static str, fn(f64) -> bool);

/// A COS figure against its baseline or a target.
#[derive(Debug, Clone)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The ratio or value.
    pub value: f64,
    /// The target, in words.
    pub target: String,
    /// Whether the target is met (`None`: no target).
    pub met: Option<bool>,
}

/// A COS figure and its baseline taken sample by sample in turn: the ratio of each pair, so that
/// noise shared by both sides of a pair cancels, then summarised.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The COS figure.
    pub cos: String,
    /// The baseline figure.
    pub baseline: String,
    /// Baseline ms / COS ms of each pair, in the order taken: COS speed as a fraction of the
    /// baseline's.
    pub ratios: Vec<f64>,
}

impl Pair {
    /// The median of the per-pair ratios.
    pub fn median(&self) -> f64 {
        quantile(&self.ratios, 0.5)
    }
}

/// Baseline ms / COS ms of each pair (`baseline[i]` was taken beside `cos[i]`); a zero COS
/// sample gives no ratio for its pair.
pub(crate) fn pair_ratios(baseline: &[f64], cos: &[f64]) -> Vec<f64> {
    baseline.iter().zip(cos).filter(|(_, c)| **c > 0.0).map(|(b, c)| b / c).collect()
}

/// The COS figures of the big size that are taken in pairs, and their baselines.
const PAIRED: [(&str, &str); 8] = [
    ("store", "sha256"),
    ("store", "write+fsync"),
    ("read", "page-cache read"),
    ("read", "memcpy"),
    ("read again", "page-cache read"),
    ("read again", "memcpy"),
    ("read again, touched", "page-cache read"),
    ("read again, touched", "memcpy"),
];

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// `--quick`.
    pub quick: bool,
    /// CPUs, memory, kernel.
    pub machine: String,
    /// Every figure, in order.
    pub figures: Vec<Figure>,
    /// Ratios and targets.
    pub ratios: Vec<Ratio>,
    /// COS figures against baselines taken in turn with them.
    pub pairs: Vec<Pair>,
    /// The peer browser (`Chromium 148…`), or why peers were skipped; `None` without `--peers`.
    pub peers: Option<Result<String, String>>,
}

impl Report {
    pub(crate) fn new(quick: bool, machine: String) -> Self {
        Self { quick, machine, figures: Vec::new(), ratios: Vec::new(), pairs: Vec::new(), peers: None }
    }

    pub(crate) fn add(&mut self, section: &'static str, name: impl Into<String>, kind: Kind, samples: Vec<f64>) {
        self.figures.push(Figure { section, name: name.into(), kind, samples, note: String::new() });
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        if let Some(last) = self.figures.last_mut() {
            last.note = note.into();
        }
    }

    /// The figure named `name`.
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// Adds a ratio (skipped when a figure is missing): against `target` (its words and its
    /// test), or as context when `None`.
    fn ratio(&mut self, name: String, value: Option<f64>, target: Option<Target>) {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            let (words, met) = match target {
                Some((words, test)) => (words, Some(test(value))),
                None => ("(no target)", None),
            };
            self.ratios.push(Ratio { name, value, target: words.into(), met });
        }
    }

    fn p50(&self, name: &str) -> Option<f64> {
        self.figure(name).map(|f| quantile(&f.samples, 0.5))
    }

    fn throughput(&self, name: &str) -> Option<f64> {
        self.figure(name).and_then(Figure::mib_per_s)
    }

    fn median_of(&self, name: &str) -> Option<f64> {
        self.figure(name).map(Figure::median)
    }

    /// The name and median of the first figure (the last with `last`) named `prefix…`.
    fn median_named(&self, prefix: &str, last: bool) -> Option<(String, f64)> {
        let mut named = self.figures.iter().filter(|f| f.name.starts_with(prefix));
        let figure = if last { named.next_back() } else { named.next() }?;
        Some((figure.name.clone(), figure.median()))
    }

    /// The pairs of the big size (`label`), where both figures exist with a sample per pair.
    pub(crate) fn add_pairs(&mut self, label: &str) {
        for (cos, baseline) in PAIRED {
            let (cos, baseline) = (format!("{cos} {label}"), format!("{baseline} {label}"));
            let (Some(c), Some(b)) = (self.figure(&cos), self.figure(&baseline)) else { continue };
            // Blocks measured apart (`--only baselines`) are not pairs.
            if c.samples.len() == b.samples.len() && b.note.starts_with("paired") {
                let ratios = pair_ratios(&b.samples, &c.samples);
                self.pairs.push(Pair { cos, baseline, ratios });
            }
        }
    }

    /// The median of the per-pair ratios of `cos` against `baseline`, when they were paired.
    fn paired(&self, cos: &str, baseline: &str) -> Option<f64> {
        self.pairs.iter().find(|p| p.cos == cos && p.baseline == baseline).map(Pair::median)
    }

    /// Each COS figure against its baseline, and the absolute targets.
    pub(crate) fn add_ratios(&mut self) {
        let big = self.figures.iter().find(|f| f.name.starts_with("store ")).map(|f| f.name[6..].to_owned());
        let Some(big) = big else { return };
        let divided = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        // Paired figures: the median of the per-pair ratios; else the ratio of the medians.
        let against = |report: &Self, cos: &str, baseline: &str| {
            let (cos, baseline) = (format!("{cos} {big}"), format!("{baseline} {big}"));
            report.paired(&cos, &baseline).or_else(|| divided(report.throughput(&cos), report.throughput(&baseline)))
        };
        let store_sha = against(self, "store", "sha256");
        self.ratio(format!("store {big} / raw sha256"), store_sha, Some((">= 0.6x", |v| v >= 0.6)));
        let store_write = against(self, "store", "write+fsync");
        self.ratio(format!("store {big} / write+fsync"), store_write, None);
        let read_cached = against(self, "read", "page-cache read");
        self.ratio(format!("read {big} / page-cache read"), read_cached, None);
        let read_memcpy = against(self, "read", "memcpy");
        self.ratio(format!("read {big} / memcpy"), read_memcpy, None);
        let read = self.throughput(&format!("read {big}"));
        self.ratio(format!("read {big}, GiB/s"), read.map(|r| r / 1024.0), Some((">= 1.5 GiB/s", |v| v >= 1.5)));
        // Whole reads of a verified entry (by descriptor): untouched, and with every page touched.
        for again in ["read again", "read again, touched"] {
            let cached = against(self, again, "page-cache read");
            self.ratio(format!("{again} {big} / page-cache read"), cached, None);
            let throughput = self.throughput(&format!("{again} {big}"));
            self.ratio(
                format!("{again} {big}, GiB/s"),
                throughput.map(|r| r / 1024.0),
                Some((">= 5 GiB/s", |v| v >= 5.0)),
            );
        }
        let small = self.figure("read again 1 KiB").map(Figure::median);
        self.ratio("read again 1 KiB, ms".to_owned(), small, Some(("<= 0.2 ms", |v| v <= 0.2)));
        let two_round_trips = self.p50("transport round trip").map(|rt| 2.0 * rt);
        for kind in ["hit", "miss"] {
            let lookup = self.p50(&format!("lookup {kind}"));
            let name = format!("lookup {kind} p50 / two raw round trips");
            self.ratio(name, divided(lookup, two_round_trips), Some(("<= 2.5x", |v| v <= 2.5)));
        }
        // The first start-up after populating is a full reconciliation (context); the last
        // figure named "start-up with" is the populated store's start after a clean shutdown.
        let limits: [(&str, bool, &str, Option<Target>); 5] = [
            ("first start-up with ", false, "ms", None),
            ("start-up with ", true, "ms", Some(("< 100 ms", |v| v < 100.0))),
            ("Public Hash List load", false, "ms", Some(("< 1000 ms", |v| v < 1000.0))),
            ("Public Hash List memory", false, "MiB", Some(("< 20 MiB", |v| v < 20.0))),
            ("service RSS growth", false, "MiB", Some(("< 32 MiB", |v| v < 32.0))),
        ];
        for (prefix, last, unit, target) in limits {
            if let Some((name, value)) = self.median_named(prefix, last) {
                self.ratio(format!("{name}, {unit}"), Some(value), target);
            }
        }
    }

    /// The peers' figures and the COS-vs-peer ratios.
    pub(crate) fn add_peers(&mut self, outcome: PeersOutcome, plan: &Plan) {
        let run = match outcome {
            PeersOutcome::Skipped(reason) => {
                self.peers = Some(Err(reason));
                return;
            }
            PeersOutcome::Ran(run) => run,
        };
        self.peers = Some(Ok(run.browser.clone()));
        for figure in run.figures {
            let bytes =
                plan.sizes.iter().find(|(label, _)| figure.name.ends_with(&format!(" {label}"))).map(|(_, b)| *b);
            let kind = match bytes {
                Some(bytes) => Kind::Transfer { bytes },
                None => Kind::Latency,
            };
            // The page's `cos …` figures are COS through the bridge; the rest are Chromium's own.
            let name = match figure.name.strip_prefix("cos ") {
                Some(operation) => format!("{COS_VIA_CHROMIUM} {operation}"),
                None => format!("chromium {}", figure.name),
            };
            self.add("peers", name, kind, figure.samples_ms);
        }
        let speedup = |peer: Option<f64>, cos: Option<f64>| peer.zip(cos).map(|(p, c)| p / c);
        for (i, (label, _)) in plan.sizes.iter().enumerate() {
            // The targets are stated for the big size; the others are context.
            let big = |target: Target| (i == 0).then_some(target);
            let cos_store = self.median_of(&format!("store {label}"));
            let cos_read = self.median_of(&format!("read {label}"));
            let peer = |operation: &str| self.median_of(&format!("chromium {operation} {label}"));
            let (polyfill, cache_put, cache_match, opfs_read) =
                (peer("digest+cache put"), peer("cache put"), peer("cache match"), peer("opfs read"));
            self.ratio(
                format!("store {label}: digest+cache put / COS"),
                speedup(polyfill, cos_store),
                big((">= 2x", |v| v >= 2.0)),
            );
            self.ratio(format!("store {label}: cache put / COS"), speedup(cache_put, cos_store), None);
            self.ratio(
                format!("read {label}: cache match / COS"),
                speedup(cache_match, cos_read),
                big(("> 1x", |v| v > 1.0)),
            );
            self.ratio(format!("read {label}: opfs read / COS"), speedup(opfs_read, cos_read), None);
            if i == 0 {
                // The same comparison as a page sees it, both measured in the same Chromium.
                let via = |operation: &str| self.median_of(&format!("{COS_VIA_CHROMIUM} {operation} {label}"));
                let (via_store, via_read) = (via("store"), via("read"));
                self.ratio(
                    format!("store {label}: cache put / {COS_VIA_CHROMIUM}"),
                    speedup(cache_put, via_store),
                    None,
                );
                self.ratio(
                    format!("read {label}: cache match / {COS_VIA_CHROMIUM}"),
                    speedup(cache_match, via_read),
                    None,
                );
            }
        }
        for kind in ["hit", "miss"] {
            let cos = self.p50(&format!("lookup {kind}"));
            let peer = self.p50(&format!("chromium cache match {kind}"));
            self.ratio(
                format!("lookup {kind} p50: cache.match {kind} / COS"),
                speedup(peer, cos),
                Some(("> 1x", |v| v > 1.0)),
            );
            let via = self.p50(&format!("{COS_VIA_CHROMIUM} lookup {kind}"));
            self.ratio(format!("lookup {kind} p50: cache.match {kind} / {COS_VIA_CHROMIUM}"), speedup(peer, via), None);
        }
    }
    /// The report as a table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let run = if self.quick { "--quick run (small sizes; no targets apply)" } else { "full run" };
        let _ = writeln!(out, "test_shell bench: {run}\nmachine: {}", self.machine);
        let mut section = "";
        // Peers last, after the ratios that use them, as the parts are numbered.
        let (mut ours, peers): (Vec<&Figure>, Vec<&Figure>) = self.figures.iter().partition(|f| f.section != "peers");
        // The paired baselines are added during the COS part; they still print in section 1.
        ours.sort_by_key(|f| ["baselines", "cos", "scale"].iter().position(|s| *s == f.section));
        for figure in ours {
            if figure.section != section {
                section = figure.section;
                let title = match section {
                    "baselines" => "1. baselines, measured in this run",
                    "cos" => "2. Cross-Origin Storage from JavaScript in a renderer frame",
                    _ => "3. scale",
                };
                let _ = writeln!(out, "\n{title}");
            }
            let _ = writeln!(out, "  {}", row(figure));
        }
        if !self.pairs.is_empty() {
            let _ = writeln!(out, "\npaired samples (baseline and COS in turn; ratio = baseline ms / COS ms per pair)");
            let _ = writeln!(
                out,
                "  {:<30} {:>26}   {:<24} {:>26}   {:>24}",
                "COS", "p50 (min–max) ms", "baseline", "p50 (min–max) ms", "ratio median (min–max)"
            );
            for pair in &self.pairs {
                let side = |name: &str| self.figure(name).map_or_else(String::new, |f| spread(&f.samples, 2));
                let _ = writeln!(
                    out,
                    "  {:<30} {:>26}   {:<24} {:>26}   {:>24}  ({} pairs)",
                    pair.cos,
                    side(&pair.cos),
                    pair.baseline,
                    side(&pair.baseline),
                    spread(&pair.ratios, 3),
                    pair.ratios.len()
                );
            }
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(out, "\n4. ratios and targets");
            for ratio in &self.ratios {
                let verdict = match ratio.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "",
                };
                let _ = writeln!(out, "  {:<62} {:>10.3}   {:<14} {verdict}", ratio.name, ratio.value, ratio.target);
            }
        }
        if !peers.is_empty() {
            let _ = writeln!(
                out,
                "\n5. peers: the browser's own storage in headless Chromium, and COS through that Chromium"
            );
            for figure in peers {
                let _ = writeln!(out, "  {}", row(figure));
            }
        }
        match &self.peers {
            Some(Ok(browser)) => {
                let _ = writeln!(out, "\npeers measured in {browser}");
            }
            Some(Err(reason)) => {
                let _ = writeln!(out, "\npeers skipped: {reason}");
            }
            None => {
                let _ = writeln!(out, "\npeers not measured (add --peers)");
            }
        }
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        let figures: Vec<Value> = self.figures.iter().map(figure_json).collect();
        let ratios: Vec<Value> = self
            .ratios
            .iter()
            .map(|ratio| {
                json!({
                    "name": ratio.name,
                    "value": json_number(ratio.value),
                    "target": ratio.target,
                    "met": ratio.met,
                })
            })
            .collect();
        let pairs: Vec<Value> = self
            .pairs
            .iter()
            .map(|pair| {
                let side = |name: &str| match self.figure(name) {
                    Some(figure) => json!({
                        "name": name,
                        "p50_ms": json_number(figure.median()),
                        "min_ms": json_number(quantile(&figure.samples, 0.0)),
                        "max_ms": json_number(quantile(&figure.samples, 1.0)),
                        "samples": figure.samples.iter().map(|s| json_number(*s)).collect::<Vec<_>>(),
                    }),
                    None => Value::Null,
                };
                json!({
                    "cos": side(&pair.cos),
                    "baseline": side(&pair.baseline),
                    "ratios": pair.ratios.iter().map(|r| json_number(*r)).collect::<Vec<_>>(),
                    "ratio_median": json_number(pair.median()),
                    "ratio_min": json_number(quantile(&pair.ratios, 0.0)),
                    "ratio_max": json_number(quantile(&pair.ratios, 1.0)),
                })
            })
            .collect();
        let peers = match &self.peers {
            Some(Ok(browser)) => json!({ "browser": browser }),
            Some(Err(reason)) => json!({ "skipped": reason }),
            None => Value::Null,
        };
        json!({
            "quick": self.quick,
            "machine": self.machine,
            "figures": figures,
            "ratios": ratios,
            "pairs": pairs,
            "peers": peers,
        })
        .to_string()
    }
}

/// One figure as JSON: its summary for its kind, then every sample.
fn figure_json(figure: &Figure) -> Value {
    let mut object = json!({
        "section": figure.section,
        "name": figure.name,
        "kind": "",
        "min": json_number(quantile(&figure.samples, 0.0)),
        "median": json_number(figure.median()),
        "max": json_number(quantile(&figure.samples, 1.0)),
    });
    let kind = match figure.kind {
        Kind::Transfer { bytes } => {
            object["bytes"] = bytes.into();
            object["mib_per_s"] = json_number(figure.mib_per_s().unwrap_or(0.0));
            "transfer"
        }
        Kind::Latency => {
            object["p50_ms"] = json_number(quantile(&figure.samples, 0.5));
            object["p99_ms"] = json_number(quantile(&figure.samples, 0.99));
            "latency"
        }
        Kind::Rate { unit } => {
            object["unit"] = unit.into();
            "rate"
        }
        Kind::Time => "time",
        Kind::Memory => "memory",
    };
    object["kind"] = kind.into();
    object["note"] = figure.note.as_str().into();
    object["samples"] = figure.samples.iter().map(|sample| json_number(*sample)).collect();
    object
}

/// `p50 (min–max)` of `samples`, with `digits` decimals.
fn spread(samples: &[f64], digits: usize) -> String {
    let (min, med, max) = (quantile(samples, 0.0), quantile(samples, 0.5), quantile(samples, 1.0));
    format!("{med:.digits$} ({min:.digits$}–{max:.digits$})")
}

/// One table row.
fn row(figure: &Figure) -> String {
    let (min, med, max) = (quantile(&figure.samples, 0.0), figure.median(), quantile(&figure.samples, 1.0));
    let n = figure.samples.len();
    let values = match figure.kind {
        Kind::Transfer { .. } => {
            format!("{min:>9.2} {med:>9.2} {max:>9.2} ms  {:>9.1} MiB/s", figure.mib_per_s().unwrap_or(0.0))
        }
        Kind::Latency => format!(
            "p50 {:>8.3} ms  p99 {:>8.3} ms  ({n} calls)",
            quantile(&figure.samples, 0.5),
            quantile(&figure.samples, 0.99)
        ),
        Kind::Rate { unit } => format!("{min:>9.1} {med:>9.1} {max:>9.1} {unit}"),
        Kind::Time => format!("{min:>9.2} {med:>9.2} {max:>9.2} ms"),
        Kind::Memory => format!("{min:>9.2} {med:>9.2} {max:>9.2} MiB"),
    };
    let note = if figure.note.is_empty() { String::new() } else { format!("  [{}]", figure.note) };
    format!("{:<58} {values}{note}", figure.name)
}

/// A figure rounded to a nanosecond (of a millisecond figure), which keeps thousands of lookup
/// samples short; `null` where not finite, as JSON has no NaN.
fn json_number(value: f64) -> Value {
    if value.is_finite() { Value::from((value * 1e6).round() / 1e6) } else { Value::Null }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Report {
        let mut report = Report::new(false, "2 CPUs".into());
        report.add("baselines", "sha256 177 MiB", Kind::Transfer { bytes: 177 * MIB }, vec![170.0, 165.0, 180.0]);
        report.add("baselines", "page-cache read 177 MiB", Kind::Transfer { bytes: 177 * MIB }, vec![30.0]);
        report.add("baselines", "transport round trip", Kind::Latency, vec![0.02, 0.03, 0.025]);
        report.add("cos", "store 177 MiB", Kind::Transfer { bytes: 177 * MIB }, vec![220.0]);
        report.add("cos", "read 177 MiB", Kind::Transfer { bytes: 177 * MIB }, vec![60.0]);
        report.add("cos", "lookup hit", Kind::Latency, vec![0.1, 0.1, 0.2]);
        report.note("a \"quoted\" note");
        report
    }

    #[test]
    fn ratios_compare_cos_with_its_baselines_and_targets() {
        let mut report = sample_report();
        report.add_ratios();
        let store = report.ratios.iter().find(|r| r.name == "store 177 MiB / raw sha256").unwrap();
        assert!((store.value - 170.0 / 220.0).abs() < 1e-9);
        assert_eq!(store.met, Some(true));
        let lookup = report.ratios.iter().find(|r| r.name.starts_with("lookup hit p50")).unwrap();
        assert!((lookup.value - 0.1 / 0.05).abs() < 1e-9, "{lookup:?}");
        let read = report.ratios.iter().find(|r| r.name == "read 177 MiB, GiB/s").unwrap();
        assert_eq!(read.met, Some(true), "177 MiB in 60 ms is 2.9 GiB/s");
    }

    #[test]
    fn json_holds_every_figure_and_ratio() {
        let mut report = sample_report();
        report.add_ratios();
        let json: Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["quick"], false);
        assert_eq!(json["peers"], Value::Null);
        let figures = json["figures"].as_array().unwrap();
        assert_eq!(figures.len(), report.figures.len());
        let sha = &figures[0];
        assert_eq!((sha["name"].as_str(), sha["kind"].as_str()), (Some("sha256 177 MiB"), Some("transfer")));
        assert_eq!(
            (sha["min"].as_f64(), sha["median"].as_f64(), sha["max"].as_f64()),
            (Some(165.0), Some(170.0), Some(180.0))
        );
        assert_eq!(sha["bytes"].as_u64(), Some(177 * MIB));
        assert_eq!(sha["samples"], json!([170.0, 165.0, 180.0]));
        let lookup = figures.iter().find(|f| f["name"] == "lookup hit").unwrap();
        assert_eq!((lookup["p50_ms"].as_f64(), lookup["p99_ms"].as_f64()), (Some(0.1), Some(0.2)));
        assert_eq!(lookup["note"], "a \"quoted\" note");
        let ratio = json["ratios"].as_array().unwrap().iter().find(|r| r["name"] == "store 177 MiB / raw sha256");
        assert_eq!(ratio.unwrap()["met"], true);
        assert_eq!(json_number(f64::NAN), Value::Null);
        assert_eq!(json_number(1.0 / 3.0), json!(0.333333));
    }

    #[test]
    fn cos_through_chromium_rows_sit_beside_the_peers_with_ratios() {
        use crate::peers::{PeerFigure, PeerRun};
        let mut report = sample_report();
        report.add_ratios();
        let figure = |name: &str, samples_ms: Vec<f64>| PeerFigure { name: name.into(), samples_ms };
        let run = PeerRun {
            browser: "Chromium 148.0".into(),
            figures: vec![
                figure("cache match hit", vec![0.3, 0.3]),
                figure("cos lookup hit", vec![0.15, 0.15]),
                figure("cache put 177 MiB", vec![600.0]),
                figure("cos store 177 MiB", vec![300.0]),
                figure("cache match 177 MiB", vec![350.0]),
                figure("cos read 177 MiB", vec![175.0]),
            ],
        };
        report.add_peers(PeersOutcome::Ran(run), &Plan::full());
        let store = report.figure("cos via chromium store 177 MiB").expect("the COS store row");
        assert_eq!((store.section, store.kind), ("peers", Kind::Transfer { bytes: 177 * MIB }));
        assert_eq!(report.figure("cos via chromium lookup hit").map(|f| f.kind), Some(Kind::Latency));
        assert!(report.figure("chromium cache put 177 MiB").is_some());
        let ratio = |name: &str| report.ratios.iter().find(|r| r.name == name).map(|r| r.value);
        assert_eq!(ratio("store 177 MiB: cache put / cos via chromium"), Some(2.0));
        assert_eq!(ratio("read 177 MiB: cache match / cos via chromium"), Some(2.0));
        assert_eq!(ratio("lookup hit p50: cache.match hit / cos via chromium"), Some(2.0));
        assert!(report.to_table().contains("cos via chromium read 177 MiB"));
        let json: Value = serde_json::from_str(&report.to_json()).unwrap();
        let rows = json["figures"].as_array().unwrap();
        let read = rows.iter().find(|f| f["name"] == "cos via chromium read 177 MiB").unwrap();
        assert_eq!((read["kind"].as_str(), read["median"].as_f64()), (Some("transfer"), Some(175.0)));
    }

    /// The big size's paired figures: sample `i` of each baseline was taken beside sample `i` of
    /// its COS figure.
    fn paired_report() -> Report {
        let mut report = Report::new(false, "2 CPUs".into());
        let bytes = Kind::Transfer { bytes: 177 * MIB };
        for (name, samples) in [
            ("sha256 177 MiB", vec![100.0, 200.0, 150.0]),
            ("memcpy 177 MiB", vec![20.0, 20.0, 20.0]),
            ("write+fsync 177 MiB", vec![300.0, 300.0, 300.0]),
            ("page-cache read 177 MiB", vec![30.0, 60.0, 30.0]),
        ] {
            report.add("baselines", name, bytes, samples);
            report.note("paired: taken in turn with the COS samples of section 2");
        }
        report.add("cos", "store 177 MiB", bytes, vec![200.0, 250.0, 600.0]);
        report.add("cos", "read 177 MiB", bytes, vec![60.0, 60.0, 40.0]);
        report.add_pairs("177 MiB");
        report.add_ratios();
        report
    }

    #[test]
    fn pairs_are_divided_sample_by_sample_then_summarised_by_the_median() {
        assert_eq!(pair_ratios(&[100.0, 200.0, 150.0], &[200.0, 250.0, 600.0]), vec![0.5, 0.8, 0.25]);
        assert_eq!(pair_ratios(&[1.0, 2.0], &[0.0, 4.0]), vec![0.5], "a zero COS sample gives no ratio");
        let report = paired_report();
        assert_eq!(report.pairs.len(), 4);
        let store = report.pairs.iter().find(|p| p.baseline == "sha256 177 MiB").unwrap();
        assert_eq!((store.cos.as_str(), store.median()), ("store 177 MiB", 0.5));
        // The median of per-pair ratios, not the ratio of the medians (150 / 250 = 0.6).
        let ratio = |name: &str| report.ratios.iter().find(|r| r.name == name).unwrap().value;
        assert_eq!(ratio("store 177 MiB / raw sha256"), 0.5);
        assert_eq!(ratio("store 177 MiB / write+fsync"), 1.2);
        assert_eq!(ratio("read 177 MiB / page-cache read"), 0.75);
        assert_eq!(ratio("read 177 MiB / memcpy"), 1.0 / 3.0);
        let table = report.to_table();
        assert!(table.contains("paired samples"), "{table}");
        assert!(table.contains("0.500 (0.250–0.800)"), "{table}");
        // Baselines measured in a block, apart from COS, are not pairs.
        let mut apart = sample_report();
        apart.add_pairs("177 MiB");
        assert!(apart.pairs.is_empty());
    }

    #[test]
    fn json_carries_both_distributions_and_the_per_pair_ratios() {
        let json: Value = serde_json::from_str(&paired_report().to_json()).unwrap();
        let pairs = json["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 4);
        let store = pairs.iter().find(|p| p["baseline"]["name"] == "sha256 177 MiB").unwrap();
        assert_eq!(store["cos"]["name"], "store 177 MiB");
        assert_eq!(
            (store["cos"]["p50_ms"].as_f64(), store["cos"]["min_ms"].as_f64(), store["cos"]["max_ms"].as_f64()),
            (Some(250.0), Some(200.0), Some(600.0))
        );
        assert_eq!(store["cos"]["samples"], json!([200.0, 250.0, 600.0]));
        assert_eq!(
            (store["baseline"]["p50_ms"].as_f64(), store["baseline"]["min_ms"].as_f64()),
            (Some(150.0), Some(100.0))
        );
        assert_eq!(store["baseline"]["samples"], json!([100.0, 200.0, 150.0]));
        assert_eq!(store["ratios"], json!([0.5, 0.8, 0.25]));
        assert_eq!(
            (store["ratio_median"].as_f64(), store["ratio_min"].as_f64(), store["ratio_max"].as_f64()),
            (Some(0.5), Some(0.25), Some(0.8))
        );
    }

    #[test]
    fn the_table_names_every_section() {
        let mut report = sample_report();
        report.add_ratios();
        let table = report.to_table();
        for heading in ["1. baselines", "2. Cross-Origin Storage", "4. ratios", "peers not measured"] {
            assert!(table.contains(heading), "{table}");
        }
    }
}
