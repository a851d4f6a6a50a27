//! The page's views ("By resource", "By origin", "Service"), their confirmation steps and the
//! usage chart, rendered on the server. Every runtime value goes through [`Html`]'s escaping.

use cos_common::interface::EntryInfo;

use super::html::Html;
use super::snapshot::{Grant, ScrubState, Snapshot};

/// The views, as paths name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// "By resource".
    Resources,
    /// "By origin".
    Origins,
    /// "Service".
    Service,
}

impl View {
    /// The view a path names (`/`, `/resources`, `/origins`, `/service`).
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/" | "/resources" => Some(Self::Resources),
            "/origins" => Some(Self::Origins),
            "/service" => Some(Self::Service),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Resources => "/resources",
            Self::Origins => "/origins",
            Self::Service => "/service",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Resources => "By resource",
            Self::Origins => "By origin",
            Self::Service => "Service",
        }
    }
}

/// How "By resource" is sorted and filtered (query parameters `sort`, `order`, `q`, `grant`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceQuery {
    /// `hash`, `size`, `origins`, `reads`, `created` or `last_read` (default `size`).
    pub sort: String,
    /// Ascending (`order=asc`) rather than descending.
    pub ascending: bool,
    /// Only entries whose hash, an origin or a provenance URL contains this.
    pub filter: String,
    /// Only entries with this grant (`same-site`, `list`, `global`).
    pub grant: Option<Grant>,
}

impl ResourceQuery {
    /// From a request's query string (unknown parameters are ignored).
    pub fn parse(query: Option<&str>) -> Self {
        let mut parsed = Self { sort: "size".into(), ..Self::default() };
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "sort" => parsed.sort = value.into_owned(),
                "order" => parsed.ascending = value == "asc",
                "q" => parsed.filter = value.into_owned(),
                "grant" => parsed.grant = Grant::ALL.into_iter().find(|grant| grant.name() == value),
                _ => {}
            }
        }
        parsed
    }

    /// The entries this query shows, in its order.
    pub fn apply<'a>(&self, entries: &'a [EntryInfo]) -> Vec<&'a EntryInfo> {
        let needle = self.filter.to_lowercase();
        let mut shown: Vec<&EntryInfo> = entries
            .iter()
            .filter(|entry| self.grant.is_none_or(|grant| Grant::of(entry) == grant))
            .filter(|entry| needle.is_empty() || matches_filter(entry, &needle))
            .collect();
        shown.sort_by(|a, b| {
            let order = match self.sort.as_str() {
                "hash" => a.hash.to_hex().cmp(&b.hash.to_hex()),
                "origins" => a.storing_origins.len().cmp(&b.storing_origins.len()),
                "reads" => a.read_count.cmp(&b.read_count),
                "created" => a.created_ms.cmp(&b.created_ms),
                "last_read" => a.last_read_ms.cmp(&b.last_read_ms),
                _ => a.size.cmp(&b.size),
            };
            if self.ascending { order } else { order.reverse() }
        });
        shown
    }

    /// The query string for sorting by `column` (toggling the order when already sorted by it).
    fn sort_link(&self, column: &str) -> String {
        let ascending = if self.sort == column { !self.ascending } else { column == "hash" };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("sort", column).append_pair("order", if ascending { "asc" } else { "desc" });
        if !self.filter.is_empty() {
            query.append_pair("q", &self.filter);
        }
        if let Some(grant) = self.grant {
            query.append_pair("grant", grant.name());
        }
        format!("/resources?{}", query.finish())
    }
}

fn matches_filter(entry: &EntryInfo, needle: &str) -> bool {
    entry.hash.to_hex().contains(needle)
        || entry
            .storing_origins
            .iter()
            .chain(&entry.listed_origins)
            .any(|o| o.to_string().to_lowercase().contains(needle))
        || entry.provenance.iter().any(|p| p.document_url.as_deref().is_some_and(|u| u.to_lowercase().contains(needle)))
}

/// A whole page: navigation, the view's fragment in `<main id="view">` (which the page's script
/// replaces when the store changes), the stylesheet and the script, both from this server.
pub fn page(view: View, fragment_url: &str, fragment: &Html) -> String {
    let mut html = Html::new();
    html.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
        .text(view.title())
        .raw(" - Cross-Origin Storage internals</title><link rel=\"stylesheet\" href=\"/style.css\">")
        .raw(
            "<script src=\"/app.js\" defer></script></head><body><header><h1>Cross-Origin Storage internals</h1><nav>",
        );
    for other in [View::Resources, View::Origins, View::Service] {
        html.raw("<a").attr("href", other.path());
        if other == view {
            html.raw(" aria-current=\"page\"");
        }
        html.raw(">").text(other.title()).raw("</a> ");
    }
    html.raw("</nav></header><main id=\"view\"").attr("data-fragment", fragment_url).raw(">");
    html.append(fragment);
    html.raw("</main></body></html>\n");
    html.into_string()
}

/// "By resource": totals, the usage charts, the filter form and the sortable table.
pub fn resources(snapshot: &Snapshot, query: &ResourceQuery) -> Html {
    let mut html = Html::new();
    html.raw("<h2>By resource</h2><p class=\"totals\"><span id=\"entry-count\">")
        .number(snapshot.entries.len())
        .raw("</span> entries, <span id=\"total-bytes\">")
        .text(&bytes(snapshot.total_bytes()))
        .raw("</span></p>");
    html.append(&usage_charts(snapshot));
    html.raw("<form class=\"filter\" method=\"get\" action=\"/resources\"><input type=\"search\" name=\"q\" placeholder=\"hash, origin or URL\"")
        .attr("value", &query.filter)
        .raw("><select name=\"grant\"><option value=\"\">any grant</option>");
    for grant in Grant::ALL {
        html.raw("<option").attr("value", grant.name());
        if query.grant == Some(grant) {
            html.raw(" selected");
        }
        html.raw(">").text(grant.name()).raw("</option>");
    }
    html.raw("</select><input type=\"hidden\" name=\"sort\"").attr("value", &query.sort);
    html.raw("><input type=\"hidden\" name=\"order\"").attr("value", if query.ascending { "asc" } else { "desc" });
    html.raw("><button>Filter</button></form>");
    html.raw("<table id=\"resources\"><thead><tr>");
    for (column, label) in [("hash", "Hash"), ("size", "Size"), ("origins", "Stored by")] {
        html.raw("<th><a").attr("href", &query.sort_link(column)).raw(">").text(label).raw("</a></th>");
    }
    html.raw("<th>Grant</th><th>Public Hash List</th>");
    for (column, label) in [("reads", "Reads"), ("created", "Created"), ("last_read", "Last read")] {
        html.raw("<th><a").attr("href", &query.sort_link(column)).raw(">").text(label).raw("</a></th>");
    }
    html.raw("<th>Provenance</th><th></th></tr></thead><tbody>");
    for entry in query.apply(&snapshot.entries) {
        let hex = entry.hash.to_hex();
        let grant = Grant::of(entry);
        html.raw("<tr class=\"entry\"")
            .attr("data-hash", &hex)
            .raw("><td><code class=\"hash\"")
            .attr("title", &hex)
            .raw(">");
        // The whole hash is there (a copy takes it all); the stylesheet shows its start.
        html.text(&hex);
        html.raw("</code></td><td class=\"nowrap\"")
            .attr("title", &format!("{} bytes", entry.size))
            .raw(">")
            .text(&bytes(entry.size));
        html.raw("</td><td class=\"origins\"><ul>");
        for origin in &entry.storing_origins {
            html.raw("<li>").text(&origin.to_string()).raw("</li>");
        }
        html.raw("</ul></td><td class=\"grant\"").attr("data-grant", grant.name()).raw(">").text(grant.name());
        if grant == Grant::List {
            html.raw("<ul>");
            for origin in &entry.listed_origins {
                html.raw("<li>").text(&origin.to_string()).raw("</li>");
            }
            html.raw("</ul>");
        }
        html.raw("</td><td>").text(if entry.on_public_hash_list { "yes" } else { "no" });
        html.raw("</td><td>").number(entry.read_count);
        html.raw("</td><td class=\"nowrap\">").text(&time(entry.created_ms));
        html.raw("</td><td class=\"nowrap\">")
            .text(&time(entry.last_read_ms))
            .raw("</td><td class=\"provenance\"><ul>");
        for record in &entry.provenance {
            html.raw("<li>").text(&record.origin.to_string());
            if let Some(url) = &record.document_url {
                html.raw(" <span class=\"url\">").text(url).raw("</span>");
            }
            html.raw(" <time>").text(&time(record.time_ms)).raw("</time></li>");
        }
        html.raw("</ul></td><td><form method=\"get\" action=\"/confirm/delete\"><input type=\"hidden\" name=\"hash\"")
            .attr("value", &hex)
            .raw("><button class=\"delete\">Delete</button></form></td></tr>");
    }
    html.raw("</tbody></table>");
    html
}

/// "By origin": each origin's charge against the per-origin limit, with "Clear site data".
pub fn origins(snapshot: &Snapshot) -> Html {
    let mut html = Html::new();
    html.raw("<h2>By origin</h2><p>Per-origin limit: ").text(&bytes(snapshot.status.per_origin_bytes)).raw("</p>");
    html.raw("<table id=\"origins\"><thead><tr><th>Origin</th><th>Charged</th><th>Of the limit</th><th>Entries</th><th></th></tr></thead><tbody>");
    for origin in &snapshot.origins {
        let name = origin.origin.to_string();
        let share = if snapshot.status.per_origin_bytes == 0 {
            0.0
        } else {
            origin.charged_bytes as f64 * 100.0 / snapshot.status.per_origin_bytes as f64
        };
        html.raw("<tr class=\"origin\"").attr("data-origin", &name).raw("><td>").text(&name);
        html.raw("</td><td")
            .attr("title", &format!("{} bytes", origin.charged_bytes))
            .raw(">")
            .text(&bytes(origin.charged_bytes));
        html.raw("</td><td><meter min=\"0\" max=\"100\"").attr("value", &format!("{share:.2}")).raw("></meter> ");
        html.text(&format!("{share:.2} %")).raw("</td><td>").number(origin.entries);
        html.raw("</td><td><form method=\"get\" action=\"/confirm/clear\"><input type=\"hidden\" name=\"origin\"")
            .attr("value", &name)
            .raw("><button class=\"clear\">Clear site data</button></form></td></tr>");
    }
    html.raw("</tbody></table>");
    html
}

/// "Service": the service process, the Public Hash List, probe budgets, limits, counters, scrub.
pub fn service(snapshot: &Snapshot, scrub: &ScrubState) -> Html {
    let status = &snapshot.status;
    let mut html = Html::new();
    html.raw("<h2>Service</h2><dl id=\"service\"><dt>Generation</dt><dd id=\"generation\">")
        .number(snapshot.generation);
    html.raw("</dd><dt>Process</dt><dd>").text(&snapshot.pid.map_or("in-process".into(), |pid| format!("pid {pid}")));
    html.raw("</dd><dt>Sandboxed</dt><dd id=\"sandboxed\">").text(if snapshot.sandboxed { "yes" } else { "no" });
    html.raw("</dd><dt>Store limit</dt><dd>").text(&bytes(status.total_bytes));
    html.raw("</dd><dt>Per-origin limit</dt><dd>").text(&bytes(status.per_origin_bytes));
    html.raw("</dd><dt>Fair share</dt><dd>").text(&bytes(status.share_bytes));
    html.raw("</dd><dt>Evicted since start</dt><dd id=\"evicted\">").number(status.evicted_entries);
    html.raw("</dd><dt>Removed as corrupt since start</dt><dd id=\"corrupt\">").number(status.corrupt_removed);
    html.raw("</dd></dl><h3>Public Hash List</h3>");
    match &status.public_hash_list {
        None => {
            html.raw("<p id=\"public-hash-list\">No Public Hash List loaded.</p>");
        }
        Some(counts) => {
            html.raw("<dl id=\"public-hash-list\"><dt>Loaded</dt><dd>").text(&time(status.public_hash_list_loaded_ms));
            html.raw("</dd><dt>Version</dt><dd>").text(counts.version.as_deref().unwrap_or("-"));
            html.raw("</dd><dt>Commit</dt><dd>").text(counts.commit.as_deref().unwrap_or("-"));
            html.raw("</dd><dt>SHA-256 (core)</dt><dd>").number(counts.core);
            html.raw("</dd><dt>SHA-256 HUGGING-FACE</dt><dd>").number(counts.hugging_face);
            html.text(if counts.hugging_face_used { " (used)" } else { " (not used)" });
            html.raw("</dd><dt>SHA-256 MANUAL</dt><dd>").number(counts.manual);
            html.raw("</dd><dt>Distinct digests in use</dt><dd>").number(counts.distinct).raw("</dd></dl>");
        }
    }
    html.raw("<h3>Probe budgets</h3><table id=\"budgets\"><thead><tr><th>Top-level site</th><th>Spent</th><th>Budget</th></tr></thead><tbody>");
    for budget in &snapshot.budgets {
        html.raw("<tr><td>").text(&budget.site).raw("</td><td>").number(budget.spent);
        html.raw("</td><td>").number(status.probe_budget).raw("</td></tr>");
    }
    html.raw("</tbody></table><h3>Scrub</h3><p id=\"scrub\">");
    let done = scrub.report.entries_checked + scrub.report.missing_removed;
    if scrub.running {
        html.raw("Running: <progress").attr("max", &scrub.total.max(1).to_string()).attr("value", &done.to_string());
        html.raw("></progress> ").number(done).raw(" / ").number(scrub.total).raw(" entries");
    } else if scrub.total > 0 || scrub.error.is_some() {
        html.raw("Last scrub: ").number(scrub.report.entries_checked).raw(" entries re-hashed (");
        html.text(&bytes(scrub.report.bytes_checked)).raw("), ").number(scrub.report.corrupt_removed);
        html.raw(" damaged and ").number(scrub.report.missing_removed).raw(" missing deleted");
        if let Some(error) = &scrub.error {
            html.raw("; failed: ").text(error);
        }
        html.raw(".");
    } else {
        html.raw("Not run since the page started.");
    }
    html.raw("</p><form method=\"post\" action=\"/scrub\"><button id=\"scrub-now\">Scrub now</button></form>");
    html
}

/// The step before deleting an entry: what it is, and a button that really deletes it.
pub fn confirm_delete(entry: &EntryInfo) -> Html {
    let hex = entry.hash.to_hex();
    let mut html = Html::new();
    html.raw("<h2>Delete an entry</h2><p>Delete <code>").text(&hex).raw("</code> (").text(&bytes(entry.size));
    html.raw(") for every origin that stores it?</p><form method=\"post\" action=\"/delete\"><input type=\"hidden\" name=\"hash\"")
        .attr("value", &hex)
        .raw("><button id=\"confirm\">Delete</button> <a href=\"/resources\">Cancel</a></form>");
    html
}

/// The step before clearing an origin's data.
pub fn confirm_clear(origin: &str) -> Html {
    let mut html = Html::new();
    html.raw("<h2>Clear site data</h2><p>Remove everything <strong>").text(origin);
    html.raw("</strong> stores in Cross-Origin Storage?</p><form method=\"post\" action=\"/clear\"><input type=\"hidden\" name=\"origin\"")
        .attr("value", origin)
        .raw("><button id=\"confirm\">Clear site data</button> <a href=\"/origins\">Cancel</a></form>");
    html
}

/// Bytes by origin (the ten largest) and by grant, as horizontal bar charts in inline SVG.
fn usage_charts(snapshot: &Snapshot) -> Html {
    let mut by_origin: Vec<(String, u64)> =
        snapshot.origins.iter().map(|o| (o.origin.to_string(), o.charged_bytes)).collect();
    by_origin.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_origin.truncate(10);
    let by_grant: Vec<(String, u64)> = Grant::ALL
        .into_iter()
        .map(|grant| {
            let total = snapshot.entries.iter().filter(|e| Grant::of(e) == grant).map(|e| e.size).sum();
            (grant.name().to_owned(), total)
        })
        .collect();
    let mut html = Html::new();
    html.raw("<div class=\"charts\">");
    html.append(&bar_chart("chart-origins", "Bytes charged by origin", &by_origin));
    html.append(&bar_chart("chart-grants", "Bytes by grant", &by_grant));
    html.raw("</div>");
    html
}

fn bar_chart(id: &'static str, title: &str, bars: &[(String, u64)]) -> Html {
    const ROW: usize = 22;
    const LABEL: usize = 230;
    const WIDTH: usize = 520;
    let max = bars.iter().map(|(_, value)| *value).max().unwrap_or(0).max(1);
    let height = ROW * bars.len().max(1) + 24;
    let mut html = Html::new();
    html.raw("<figure><figcaption>")
        .text(title)
        .raw("</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\"");
    html.attr("id", id).attr("aria-label", title).attr("width", &WIDTH.to_string()).attr("height", &height.to_string());
    html.raw(">");
    for (row, (label, value)) in bars.iter().enumerate() {
        let y = row * ROW + 4;
        let width = ((WIDTH - LABEL - 90) as f64 * (*value as f64) / (max as f64)).round() as u64;
        html.raw("<text font-size=\"12\"").attr("x", "0").attr("y", &(y + 14).to_string()).raw(">");
        html.text(&shorten(label, 34)).raw("<title>").text(label).raw("</title></text>");
        html.raw("<rect fill=\"#3b6ea5\"").attr("x", &LABEL.to_string()).attr("y", &y.to_string());
        html.attr("width", &width.to_string()).attr("height", "16").raw("></rect>");
        html.raw("<text font-size=\"12\"").attr("x", &(LABEL as u64 + width + 6).to_string());
        html.attr("y", &(y + 14).to_string()).raw(">").text(&bytes(*value)).raw("</text>");
    }
    html.raw("</svg></figure>");
    html
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars - 1).collect();
    short.push('…');
    short
}

/// Bytes in binary units.
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut scaled = value as f64;
    let mut unit = 0;
    while scaled >= 1024.0 && unit < UNITS.len() - 1 {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value} B") } else { format!("{scaled:.1} {}", UNITS[unit]) }
}

/// Unix milliseconds as a UTC date and time (`-` for 0: never).
pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let seconds = ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use cos_common::interface::{
        EntryInfo, OriginInfo, ProbeBudgetInfo, ProvenanceInfo, PublicHashListCounts, ServiceStatus,
    };
    use cos_common::{ContentHash, Origin};

    use super::*;

    const MARKUP: &str = "\"'><script>alert(1)</script>";

    /// A snapshot whose every free-form string carries markup.
    fn hostile_snapshot() -> Snapshot {
        let origin = Origin::from_url("https://a.example").unwrap();
        let entry = EntryInfo {
            hash: ContentHash::from_bytes([7; 32]),
            size: 5,
            storing_origins: [origin.clone()].into_iter().collect(),
            listed_origins: vec![Origin::from_url("https://b.example").unwrap()],
            global: false,
            on_public_hash_list: false,
            created_ms: 1,
            last_read_ms: 0,
            read_count: 0,
            provenance: vec![ProvenanceInfo {
                origin: origin.clone(),
                document_url: Some(format!("https://a.example/{MARKUP}")),
                time_ms: 1,
            }],
        };
        let counts = PublicHashListCounts {
            version: Some(MARKUP.into()),
            commit: Some(MARKUP.into()),
            ..PublicHashListCounts::default()
        };
        Snapshot {
            entries: vec![entry],
            origins: vec![OriginInfo { origin, charged_bytes: 5, entries: 1 }],
            status: ServiceStatus { public_hash_list: Some(counts), ..ServiceStatus::default() },
            budgets: vec![ProbeBudgetInfo { site: MARKUP.into(), spent: 1 }],
            generation: 1,
            sandboxed: true,
            pid: None,
        }
    }

    #[test]
    fn markup_in_any_value_is_escaped_in_every_view() {
        let snapshot = hostile_snapshot();
        let query = ResourceQuery { filter: MARKUP.into(), ..ResourceQuery::parse(None) };
        let unfiltered = ResourceQuery::parse(None);
        let views = [
            ("resources", resources(&snapshot, &unfiltered)),
            ("resources, filtered", resources(&snapshot, &query)),
            ("origins", origins(&snapshot)),
            (
                "service",
                service(&snapshot, &ScrubState { error: Some(MARKUP.into()), total: 1, ..ScrubState::default() }),
            ),
            ("confirm delete", confirm_delete(&snapshot.entries[0])),
            ("confirm clear", confirm_clear(MARKUP)),
        ];
        for (name, fragment) in views {
            let html = page(View::Resources, &format!("/fragment/{MARKUP}"), &fragment);
            assert!(!html.contains("<script>alert"), "{name}: {html}");
            assert!(!html.contains("\"'>"), "{name}: an attribute was left: {html}");
        }
        // The values are there, as text.
        let shown = resources(&snapshot, &unfiltered).into_string();
        assert!(shown.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{shown}");
        assert!(service(&snapshot, &ScrubState::default()).into_string().contains("&#39;&gt;&lt;script&gt;"));
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn bytes_are_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(177 << 20), "177.0 MiB");
    }
}
