//! Probe budgets (SPEC §6): each top-level site may probe at most B distinct hashes through the
//! global path; a user activation in that site replenishes it. Kept in memory and written to
//! the partition's registry as soon as a charge is added, so that neither a restart nor a crash
//! of the service hands a site its spent budget back. That costs one commit per distinct hash a
//! site probes (at most the budget per activation), paid whether or not the entry exists, so the
//! commit reveals nothing a site does not already know.

use std::collections::{HashMap, HashSet};

use cos_common::{ContentHash, Site};
use parking_lot::Mutex;

use crate::error::StoreError;
use crate::registry::{BudgetRecord, Registry};

/// The budgets of one partition.
pub(crate) struct ProbeBudgets {
    limit: usize,
    state: Mutex<BudgetState>,
}

#[derive(Default)]
struct BudgetState {
    /// Loaded budgets, by top-level site serialisation.
    sites: HashMap<String, BudgetRecord>,
    /// Sites whose budget changed and is not yet written (a failed write is retried on the next
    /// change).
    dirty: HashSet<String>,
}

impl ProbeBudgets {
    pub(crate) fn new(limit: u32) -> Self {
        Self { limit: limit as usize, state: Mutex::new(BudgetState::default()) }
    }

    /// Charges `hash` to `site` if it is new to the budget and there is room. Returns whether the
    /// probe is within budget (a hash already charged always is).
    pub(crate) fn charge(&self, registry: &Registry, site: &Site, hash: &ContentHash) -> bool {
        let key = site.to_string();
        let mut state = self.state.lock();
        let record = match state.sites.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let stored = registry.budget(&key).unwrap_or_else(|error| {
                    // An unreadable budget is treated as spent: never more disclosure than allowed.
                    tracing::warn!(%error, "could not read a probe budget");
                    BudgetRecord { probed: vec![[0; 32]; self.limit] }
                });
                slot.insert(stored)
            }
        };
        let digest = hash.as_bytes();
        if record.probed.iter().any(|probed| probed == digest) {
            return true;
        }
        if record.probed.len() >= self.limit {
            return false;
        }
        record.probed.push(*digest);
        state.dirty.insert(key);
        Self::flush_locked(&mut state, registry);
        true
    }

    /// Every site's spent budget (distinct hashes probed since its last activation), sorted by
    /// site: the rows written to the registry, overridden by what is newer in memory.
    pub(crate) fn spent_by_site(&self, registry: &Registry) -> Result<Vec<(String, u64)>, StoreError> {
        let mut spent: std::collections::BTreeMap<String, u64> =
            registry.all_budgets()?.into_iter().map(|(site, record)| (site, record.probed.len() as u64)).collect();
        for (site, record) in &self.state.lock().sites {
            spent.insert(site.clone(), record.probed.len() as u64);
        }
        Ok(spent.into_iter().collect())
    }

    /// A user activation in `site`: its budget starts over.
    pub(crate) fn replenish(&self, registry: &Registry, site: &Site) {
        let key = site.to_string();
        let mut state = self.state.lock();
        state.sites.insert(key.clone(), BudgetRecord::default());
        state.dirty.insert(key);
        Self::flush_locked(&mut state, registry);
    }

    /// Writes every changed budget in one transaction.
    pub(crate) fn flush(&self, registry: &Registry) {
        Self::flush_locked(&mut self.state.lock(), registry);
    }

    fn flush_locked(state: &mut BudgetState, registry: &Registry) {
        if state.dirty.is_empty() {
            return;
        }
        let result = (|| -> Result<(), StoreError> {
            let txn = registry.write()?;
            for key in &state.dirty {
                if let Some(record) = state.sites.get(key) {
                    txn.put_budget(key, record)?;
                }
            }
            txn.commit()
        })();
        match result {
            Ok(()) => state.dirty.clear(),
            Err(error) => tracing::warn!(%error, "could not persist probe budgets; retrying later"),
        }
    }
}
