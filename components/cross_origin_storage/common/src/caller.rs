//! Who is calling: what the broker attaches to every request the service receives.

use serde::{Deserialize, Serialize};

use crate::origin::Origin;
use crate::site::{NetworkIsolationKey, Site};

/// Identifies one off-the-record (private) profile of the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OffTheRecordProfileId(pub u64);

/// Which store a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Partition {
    /// The regular profile's on-disk store.
    Regular,
    /// An off-the-record profile: an in-memory store that sees nothing of the disk.
    OffTheRecord(OffTheRecordProfileId),
}

/// The caller of a request as the trusted browser process knows it. Renderers never supply this:
/// the broker builds it from its frame table.
///
/// ```
/// use cos_common::{CallerContext, OffTheRecordProfileId, Origin, Partition, Site};
///
/// let frame = Origin::from_url("https://cdn.example")?;
/// let top = Site::of(&Origin::from_url("https://news.example")?);
/// let caller = CallerContext::new(frame.clone(), top.clone(), Partition::OffTheRecord(OffTheRecordProfileId(1)));
/// assert_eq!(caller.origin(), &frame);
/// assert_eq!(caller.nik().top_level_site, top);
/// # Ok::<(), cos_common::OriginParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawCallerContext", into = "RawCallerContext")]
pub struct CallerContext {
    origin: Origin,
    nik: NetworkIsolationKey,
    partition: Partition,
}

impl CallerContext {
    /// A frame of `origin` inside a top-level document of `top_level_site`.
    pub fn new(origin: Origin, top_level_site: Site, partition: Partition) -> Self {
        let frame_site = Site::of(&origin);
        Self { origin, nik: NetworkIsolationKey { top_level_site, frame_site }, partition }
    }

    /// A top-level document of `origin` in the regular profile.
    pub fn top_level(origin: Origin) -> Self {
        let site = Site::of(&origin);
        Self::new(origin, site, Partition::Regular)
    }

    /// The same caller in another partition.
    pub fn in_partition(mut self, partition: Partition) -> Self {
        self.partition = partition;
        self
    }

    /// The calling frame's origin.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The Network Isolation Key: top-level site and frame site.
    pub fn nik(&self) -> &NetworkIsolationKey {
        &self.nik
    }

    /// The partition the request addresses.
    pub fn partition(&self) -> Partition {
        self.partition
    }
}

#[derive(Serialize, Deserialize)]
struct RawCallerContext {
    origin: Origin,
    nik: NetworkIsolationKey,
    partition: Partition,
}

impl TryFrom<RawCallerContext> for CallerContext {
    type Error = &'static str;
    fn try_from(raw: RawCallerContext) -> Result<Self, Self::Error> {
        if raw.nik.frame_site != Site::of(&raw.origin) {
            return Err("frame site does not match the caller's origin");
        }
        Ok(Self { origin: raw.origin, nik: raw.nik, partition: raw.partition })
    }
}

impl From<CallerContext> for RawCallerContext {
    fn from(c: CallerContext) -> Self {
        Self { origin: c.origin, nik: c.nik, partition: c.partition }
    }
}
