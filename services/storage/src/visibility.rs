//! Who may read an entry (SPEC §5): three additive grants, widened by verified writes, never
//! narrowed. Pure functions over [`EntryRecord`]; the privacy gates of the global grant live in
//! [`crate::gate`].

use cos_common::{MAX_ORIGINS_LIST_LEN, Origin, OriginsOption, Site};

use crate::registry::EntryRecord;

/// Why a reader may see an entry, in the order the grants are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadGrant {
    /// The reader itself completed a verified write.
    StoringOrigin,
    /// The reader is same-site with a storing origin.
    SameSite,
    /// A list write named the reader.
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
    if entry.listed_origins.contains(reader) {
        return Some(ReadGrant::Listed);
    }
    entry.global.then_some(ReadGrant::Global)
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
/// Allow-Origin ceiling). Upgrade only: nothing is ever removed.
pub fn apply_verified_write(entry: &mut EntryRecord, writer: &Origin, requested: &OriginsOption) -> VisibilityChange {
    let mut change =
        VisibilityChange { newly_storing: entry.storing_origins.insert(writer.clone()), ..Default::default() };
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
        apply_verified_write(&mut e, &o(writer), &requested);
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
    fn listed_origins_read_exactly() {
        let e = written("https://a.example", OriginsOption::List(vec![o("https://b.example")]));
        assert_eq!(read_grant(&e, &o("https://b.example")), Some(ReadGrant::Listed));
        assert_eq!(read_grant(&e, &o("https://sub.b.example")), None, "a list names origins, not sites");
        assert_eq!(read_grant(&e, &o("https://c.example")), None);
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
        apply_verified_write(&mut listed_and_global, &o("https://a.example"), &OriginsOption::Global);
        assert_eq!(
            read_grant(&listed_and_global, &o("https://b.example")),
            Some(ReadGrant::Listed),
            "list before global"
        );
    }

    #[test]
    fn later_writes_never_narrow() {
        let mut e = written("https://a.example", OriginsOption::List(vec![o("https://b.example")]));
        let change = apply_verified_write(&mut e, &o("https://a.example"), &OriginsOption::Global);
        assert!(change.became_global && !change.newly_storing);
        assert_eq!(e.listed_origins, vec![o("https://b.example")], "a '*' write keeps the list");

        apply_verified_write(&mut e, &o("https://a.example"), &OriginsOption::List(vec![o("https://c.example")]));
        assert!(e.global, "a list write keeps the global flag");
        assert_eq!(e.listed_origins, vec![o("https://b.example"), o("https://c.example")]);

        let before = e.clone();
        let change = apply_verified_write(&mut e, &o("https://a.example"), &OriginsOption::Omitted);
        assert_eq!(e, before, "omitted origins is a no-op");
        assert_eq!(change, VisibilityChange::default());
    }

    #[test]
    fn any_writer_of_the_right_bytes_may_widen() {
        let mut e = written("https://a.example", OriginsOption::Omitted);
        let change = apply_verified_write(&mut e, &o("https://b.example"), &OriginsOption::Global);
        assert!(change.newly_storing && change.became_global);
        assert!(e.storing_origins.contains(&o("https://b.example")));
    }

    #[test]
    fn list_is_capped_at_100_and_excess_dropped() {
        let first: Vec<Origin> = (0..90).map(|i| o(&format!("https://o{i}.example"))).collect();
        let mut e = written("https://a.example", OriginsOption::List(first));
        let second: Vec<Origin> = (85..105).map(|i| o(&format!("https://o{i}.example"))).collect();
        let change = apply_verified_write(&mut e, &o("https://a.example"), &OriginsOption::List(second));
        assert_eq!(e.listed_origins.len(), 100);
        assert_eq!(change.listed_added, 10);
        assert_eq!(change.listed_dropped_over_cap, 5);
        assert!(e.listed_origins.contains(&o("https://o99.example")));
        assert!(!e.listed_origins.contains(&o("https://o100.example")));
    }
}
