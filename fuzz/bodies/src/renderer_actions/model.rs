//! The upper-bound model of the SPEC §5 grants: every grant a verified write ever made, per
//! partition and content. The gates may only narrow what it allows.

use std::collections::{BTreeSet, HashMap};

use cos_common::{Origin, OriginsOption, Partition};

use super::{Caller, ON_PHL};

#[derive(Debug, Default)]
pub(super) struct Grants {
    pub(super) storing: BTreeSet<Origin>,
    pub(super) listed: BTreeSet<Origin>,
    pub(super) global: bool,
}

/// Every grant a verified write ever made, per partition and content. Clearing site data removes
/// what SPEC §7 removes; eviction is not modelled, which only makes the bound looser.
#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) entries: HashMap<(Partition, usize), Grants>,
}

impl Model {
    pub(super) fn commit(&mut self, caller: &Caller, content: usize, requested: &OriginsOption) {
        let entry = self.entries.entry((caller.partition, content)).or_default();
        entry.storing.insert(caller.origin.clone());
        match caller.ceiling.apply(requested.clone()).0 {
            OriginsOption::Omitted => {}
            OriginsOption::List(list) => entry.listed.extend(list),
            OriginsOption::Global => entry.global = true,
        }
    }

    pub(super) fn may_read(&self, partition: Partition, content: usize, reader: &Origin) -> bool {
        let Some(entry) = self.entries.get(&(partition, content)) else { return false };
        entry.storing.iter().any(|storer| storer.is_same_site(reader))
            || entry.listed.iter().any(|listed| listed.is_same_site(reader))
            || (entry.global && ON_PHL[content])
    }

    pub(super) fn clear(&mut self, origin: &Origin) {
        self.entries.retain(|(partition, _), entry| {
            if *partition == Partition::Regular {
                entry.storing.remove(origin);
                entry.listed.remove(origin);
            }
            !entry.storing.is_empty()
        });
    }
}
