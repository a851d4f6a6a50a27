//! Who may read an entry (SPEC §5): three additive grants, widened by verified writes, never
//! narrowed. Pure functions over [`EntryRecord`]; the privacy gates of the global grant live in
//! [`crate::gates`].

use cos_common::{CosError, MAX_ORIGINS_LIST_LEN, Origin, OriginsOption, QuotaScope, Site};

use crate::registry::EntryRecord;

/// Why a reader may see an entry, in the order the grants are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadGrant {
    /// The reader itself completed a verified write.
    StoringOrigin,
    /// The reader is same-site with a storing origin.
    SameSite,
    /// A list write named the reader, or an origin same-site with it (SPEC §5: listing an
    /// origin also grants its same-site origins).
    Listed,
    /// The entry is globally disclosable; the global gate still has to agree.
    Global,
}

impl ReadGrant {
    /// Whether the privacy gates (PHL, availability, GREASE, probe budget) apply.
    pub fn is_gated(self) -> bool {
        self == Self::Global
    }
}

/// The first grant that lets `reader` see `entry`, or `None`.
pub fn read_grant(entry: &EntryRecord, reader: &Origin) -> Option<ReadGrant> {
    if entry.storing_origins.contains(reader) {
        return Some(ReadGrant::StoringOrigin);
    }
    let reader_site = Site::of(reader);
    if entry.storing_origins.iter().any(|storer| Site::of(storer) == reader_site) {
        return Some(ReadGrant::SameSite);
    }
    if entry.listed_origins.iter().any(|listed| Site::of(listed) == reader_site) {
        return Some(ReadGrant::Listed);
    }
    entry.global.then_some(ReadGrant::Global)
}

/// Storing origins one entry records at most. Each is charged the entry's size and kept in its
/// record, so the bound keeps every record (and its inspection item) a bounded size; an entry
/// that many sites stored is far beyond what one person's browsing produces.
pub const MAX_STORING_ORIGINS: usize = 1_000;

/// Storing origins of one site an entry records at most. More origins of that site gain nothing:
/// they already read it as same-site origins. Without this, one site with wildcard DNS could fill
/// an entry's [`MAX_STORING_ORIGINS`] from its own subdomains and lock every other site out.
pub const MAX_STORING_ORIGINS_PER_SITE: u32 = 8;

/// How a verified write by an origin that does not store the entry yet is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoringSlot {
    /// The writer already stores the entry (an identical rewrite: free).
    AlreadyStoring,
    /// The writer becomes a storing origin and is charged the entry's size.
    Recorded,
    /// [`MAX_STORING_ORIGINS_PER_SITE`] origins of the writer's site already store it: the write
    /// succeeds (and may widen the grants) but the writer is neither recorded nor charged; it
    /// reads the entry as a same-site origin.
    SiteFull,
}

/// Where `writer` stands among the storing origins of `entry`, given how many recorded storing
/// origins share its site. `QuotaExceededError` when the entry records [`MAX_STORING_ORIGINS`]
/// and none of them is of the writer's site.
pub fn storing_slot(entry: &EntryRecord, writer: &Origin, same_site_storers: u32) -> Result<StoringSlot, CosError> {
    if entry.storing_origins.contains(writer) {
        Ok(StoringSlot::AlreadyStoring)
    } else if same_site_storers >= MAX_STORING_ORIGINS_PER_SITE {
        Ok(StoringSlot::SiteFull)
    } else if entry.storing_origins.len() >= MAX_STORING_ORIGINS {
        Err(CosError::QuotaExceeded(QuotaScope::Entry))
    } else {
        Ok(StoringSlot::Recorded)
    }
}

/// What a verified write changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VisibilityChange {
    /// The writer was not a storing origin before (it is charged the entry's size).
    pub newly_storing: bool,
    /// Origins appended to the list.
    pub listed_added: usize,
    /// Requested origins left out because the list already held 100.
    pub listed_dropped_over_cap: usize,
    /// The write set the global flag.
    pub became_global: bool,
}

/// Applies a verified write by `writer` that requested `requested` (already narrowed by the
/// Allow-Origin ceiling); the writer is recorded as a storing origin if `slot` says so.
/// Upgrade only: nothing is ever removed.
pub fn apply_verified_write(
    entry: &mut EntryRecord,
    writer: &Origin,
    slot: StoringSlot,
    requested: &OriginsOption,
) -> VisibilityChange {
    let newly_storing = slot == StoringSlot::Recorded && entry.storing_origins.insert(writer.clone());
    let mut change = VisibilityChange { newly_storing, ..Default::default() };
    match requested {
        OriginsOption::Omitted => {}
        OriginsOption::Global => {
            change.became_global = !entry.global;
            entry.global = true;
        }
        OriginsOption::List(list) => {
            for origin in list {
                if entry.listed_origins.contains(origin) {
                    continue;
                }
                if entry.listed_origins.len() >= MAX_ORIGINS_LIST_LEN {
                    change.listed_dropped_over_cap += 1;
                } else {
                    entry.listed_origins.push(origin.clone());
                    change.listed_added += 1;
                }
            }
        }
    }
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::from_url(s).unwrap()
    }

    const SLOT: StoringSlot = StoringSlot::Recorded;

    fn entry() -> EntryRecord {
        EntryRecord {
            size: 1,
            storing_origins: Default::default(),
            listed_origins: vec![],
            global: false,
            created_ms: 0,
            last_read_ms: 0,
            read_count: 0,
            provenance: vec![],
        }
    }

    fn written(writer: &str, requested: OriginsOption) -> EntryRecord {
        let mut e = entry();
        apply_verified_write(&mut e, &o(writer), StoringSlot::Recorded, &requested);
        e
    }

    #[test]
    fn storing_origin_reads() {
        let e = written("https://app.a.example", OriginsOption::Omitted);
        assert_eq!(read_grant(&e, &o("https://app.a.example")), Some(ReadGrant::StoringOrigin));
    }

    #[test]
    fn same_site_reads_cross_site_does_not() {
        let e = written("https://app.a.example", OriginsOption::Omitted);
        assert_eq!(read_grant(&e, &o("https://other.a.example:8443")), Some(ReadGrant::SameSite));
        assert_eq!(read_grant(&e, &o("https://b.example")), None);
        assert_eq!(read_grant(&e, &o("http://app.a.example")), None, "schemeful");
    }

    #[test]
    fn listing_an_origin_grants_its_site() {
        let e = written("https://a.example", OriginsOption::List(vec![o("https://a.site.example")]));
        assert_eq!(read_grant(&e, &o("https://a.site.example")), Some(ReadGrant::Listed));
        assert_eq!(
            read_grant(&e, &o("https://b.site.example")),
            Some(ReadGrant::Listed),
            "same-site with a listed origin"
        );
        assert_eq!(read_grant(&e, &o("https://site.example:8443")), Some(ReadGrant::Listed), "the port is ignored");
        assert_eq!(read_grant(&e, &o("http://b.site.example")), None, "schemeful");
        assert_eq!(read_grant(&e, &o("https://other.example")), None);
        assert!(!ReadGrant::Listed.is_gated());
    }

    #[test]
    fn global_is_the_last_and_only_gated_grant() {
        let e = written("https://a.example", OriginsOption::Global);
        assert_eq!(read_grant(&e, &o("https://z.example")), Some(ReadGrant::Global));
        assert!(ReadGrant::Global.is_gated());
        assert_eq!(read_grant(&e, &o("https://a.example")), Some(ReadGrant::StoringOrigin));
        assert!(
            !ReadGrant::StoringOrigin.is_gated() && !ReadGrant::SameSite.is_gated() && !ReadGrant::Listed.is_gated()
        );
        let mut listed_and_global = written("https://a.example", OriginsOption::List(vec![o("https://b.example")]));
        apply_verified_write(&mut listed_and_global, &o("https://a.example"), SLOT, &OriginsOption::Global);
        assert_eq!(
            read_grant(&listed_and_global, &o("https://b.example")),
            Some(ReadGrant::Listed),
            "list before global"
        );
    }

    #[test]
    fn later_writes_never_narrow() {
        let mut e = written("https://a.example", OriginsOption::List(vec![o("https://b.example")]));
        let change = apply_verified_write(&mut e, &o("https://a.example"), SLOT, &OriginsOption::Global);
        assert!(change.became_global && !change.newly_storing);
        assert_eq!(e.listed_origins, vec![o("https://b.example")], "a '*' write keeps the list");

        apply_verified_write(&mut e, &o("https://a.example"), SLOT, &OriginsOption::List(vec![o("https://c.example")]));
        assert!(e.global, "a list write keeps the global flag");
        assert_eq!(e.listed_origins, vec![o("https://b.example"), o("https://c.example")]);

        let before = e.clone();
        let change = apply_verified_write(&mut e, &o("https://a.example"), SLOT, &OriginsOption::Omitted);
        assert_eq!(e, before, "omitted origins is a no-op");
        assert_eq!(change, VisibilityChange::default());
    }

    #[test]
    fn any_writer_of_the_right_bytes_may_widen() {
        let mut e = written("https://a.example", OriginsOption::Omitted);
        let change = apply_verified_write(&mut e, &o("https://b.example"), SLOT, &OriginsOption::Global);
        assert!(change.newly_storing && change.became_global);
        assert!(e.storing_origins.contains(&o("https://b.example")));
    }

    #[test]
    fn storing_origins_are_capped_per_site_and_per_entry() {
        let mut e = entry();
        let writer = o("https://w.example");
        assert_eq!(storing_slot(&e, &writer, 0), Ok(StoringSlot::Recorded));
        assert_eq!(storing_slot(&e, &writer, MAX_STORING_ORIGINS_PER_SITE), Ok(StoringSlot::SiteFull));
        let change = apply_verified_write(&mut e, &writer, StoringSlot::SiteFull, &OriginsOption::Global);
        assert!(!change.newly_storing && change.became_global, "not recorded, but it may widen the grants");
        assert!(e.storing_origins.is_empty());
        apply_verified_write(&mut e, &writer, StoringSlot::Recorded, &OriginsOption::Omitted);
        assert_eq!(storing_slot(&e, &writer, MAX_STORING_ORIGINS_PER_SITE), Ok(StoringSlot::AlreadyStoring));
        e.storing_origins = (0..MAX_STORING_ORIGINS).map(|i| o(&format!("https://s{i}.example"))).collect();
        assert_eq!(storing_slot(&e, &writer, 0), Err(CosError::QuotaExceeded(QuotaScope::Entry)));
        assert_eq!(storing_slot(&e, &o("https://s1.example"), 1), Ok(StoringSlot::AlreadyStoring));
        assert_eq!(
            storing_slot(&e, &o("https://more.s1.example"), MAX_STORING_ORIGINS_PER_SITE),
            Ok(StoringSlot::SiteFull),
            "a full site's further origins still write"
        );
    }

    #[test]
    fn list_is_capped_at_100_and_excess_dropped() {
        let first: Vec<Origin> = (0..90).map(|i| o(&format!("https://o{i}.example"))).collect();
        let mut e = written("https://a.example", OriginsOption::List(first));
        let second: Vec<Origin> = (85..105).map(|i| o(&format!("https://o{i}.example"))).collect();
        let change = apply_verified_write(&mut e, &o("https://a.example"), SLOT, &OriginsOption::List(second));
        assert_eq!(e.listed_origins.len(), 100);
        assert_eq!(change.listed_added, 10);
        assert_eq!(change.listed_dropped_over_cap, 5);
        assert!(e.listed_origins.contains(&o("https://o99.example")));
        assert!(!e.listed_origins.contains(&o("https://o100.example")));
    }
}
