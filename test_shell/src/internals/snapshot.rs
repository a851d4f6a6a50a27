//! What the internals page shows, read from the browser's `CosHost` (and through it from the
//! sandboxed storage service) in one go, and its JSON form for `test_shell internals --dump`.

use cos_browser::CosHost;
use cos_common::interface::{EntryInfo, OriginInfo, ProbeBudgetInfo, ScrubReport, ServiceStatus};
use cos_common::{CosError, Partition};
use serde_json::{Value, json};

/// How an entry may be read beyond its storing sites (SPEC §5), as "View by Resource" names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Only the storing origins' sites.
    SameSite,
    /// The storing sites and the origins a list write named.
    List,
    /// `origins: "*"`: any site, subject to the gates (the Public Hash List).
    Global,
}

impl Grant {
    /// The grant an entry holds (the widest it was given).
    pub fn of(entry: &EntryInfo) -> Self {
        if entry.global {
            Self::Global
        } else if entry.listed_origins.is_empty() {
            Self::SameSite
        } else {
            Self::List
        }
    }

    /// The name the page and the query parameter use.
    pub fn name(self) -> &'static str {
        match self {
            Self::SameSite => "same-site",
            Self::List => "list",
            Self::Global => "global",
        }
    }

    /// Every grant, narrowest first.
    pub const ALL: [Grant; 3] = [Grant::SameSite, Grant::List, Grant::Global];
}

/// A scrub started from the page: how far it got, and how it ended.
#[derive(Debug, Clone, Default)]
pub struct ScrubState {
    /// Whether it is still running.
    pub running: bool,
    /// The findings so far (or in the end).
    pub report: ScrubReport,
    /// Entries to check in all.
    pub total: u64,
    /// The web error it ended with, if any.
    pub error: Option<String>,
}

/// The three views' data at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every entry, as the service listed them (by hash).
    pub entries: Vec<EntryInfo>,
    /// Every storing origin.
    pub origins: Vec<OriginInfo>,
    /// The service's state.
    pub status: ServiceStatus,
    /// Spent probe budgets by top-level site.
    pub budgets: Vec<ProbeBudgetInfo>,
    /// How many times the service has been started.
    pub generation: u64,
    /// Whether the service reported its sandbox fully enforced.
    pub sandboxed: bool,
    /// The service's process id.
    pub pid: Option<u32>,
}

impl Snapshot {
    /// Reads the regular partition's views from the host.
    pub fn read(host: &CosHost) -> Result<Self, CosError> {
        let (entries, origins) = host.inspect(Partition::Regular)?;
        let (status, budgets) = host.status(Partition::Regular)?;
        Ok(Self {
            entries,
            origins,
            status,
            budgets,
            generation: host.service_generation(),
            sandboxed: host.service_sandboxed(),
            pid: host.service_pid(),
        })
    }

    /// Bytes of all entries.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|entry| entry.size).sum()
    }

    /// The three views as JSON (`test_shell internals --dump`).
    pub fn to_json(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|entry| {
                json!({
                    "hash": entry.hash.to_hex(),
                    "size": entry.size,
                    "storing_origins": entry.storing_origins.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "listed_origins": entry.listed_origins.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "grant": Grant::of(entry).name(),
                    "on_public_hash_list": entry.on_public_hash_list,
                    "read_count": entry.read_count,
                    "created_ms": entry.created_ms,
                    "last_read_ms": entry.last_read_ms,
                    "provenance": entry.provenance.iter().map(|p| json!({
                        "origin": p.origin.to_string(),
                        "document_url": p.document_url,
                        "time_ms": p.time_ms,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let origins: Vec<Value> = self
            .origins
            .iter()
            .map(|origin| {
                json!({
                    "origin": origin.origin.to_string(),
                    "charged_bytes": origin.charged_bytes,
                    "per_origin_limit": self.status.per_origin_bytes,
                    "entries": origin.entries,
                })
            })
            .collect();
        let list = self.status.public_hash_list.as_ref().map(|counts| {
            json!({
                "core": counts.core,
                "hugging_face": counts.hugging_face,
                "manual": counts.manual,
                "hugging_face_used": counts.hugging_face_used,
                "distinct": counts.distinct,
                "version": counts.version,
                "commit": counts.commit,
                "loaded_ms": self.status.public_hash_list_loaded_ms,
            })
        });
        json!({
            "resources": { "total_bytes": self.total_bytes(), "entry_count": self.entries.len(), "entries": entries },
            "origins": origins,
            "service": {
                "generation": self.generation,
                "sandboxed": self.sandboxed,
                "pid": self.pid,
                "public_hash_list": list,
                "probe_budget": self.status.probe_budget,
                "probe_budgets": self.budgets.iter().map(|b| json!({"site": b.site, "spent": b.spent})).collect::<Vec<_>>(),
                "limits": {
                    "total_bytes": self.status.total_bytes,
                    "per_origin_bytes": self.status.per_origin_bytes,
                    "share_bytes": self.status.share_bytes,
                },
                "evicted_entries": self.status.evicted_entries,
                "corrupt_removed": self.status.corrupt_removed,
            },
        })
    }
}
