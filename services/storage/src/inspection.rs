//! The browser's own views of the store (SPEC §7 "View by Resource" / "View by Origin") and the
//! user's tools to act on them. Browser-side only: no renderer-facing message reaches these
//! methods, so provenance, foreign origins and hashes shown here never reach script.

use cos_common::interface::{EntryInfo, OriginInfo, ProbeBudgetInfo, ProvenanceInfo, ServiceStatus};
use cos_common::{ContentHash, Partition};

use crate::error::StoreError;
use crate::integrity::ScrubReport;
use crate::service::StorageService;

impl StorageService {
    /// Every entry of a partition, sorted by hash (empty for an off-the-record profile that has
    /// stored nothing yet), so the browser can show what the store holds and for whom.
    pub fn inspect_entries(&self, partition: Partition) -> Result<Vec<EntryInfo>, StoreError> {
        let Some(store) = self.partition_for_inspection(partition)? else { return Ok(Vec::new()) };
        Ok(store
            .list_entries()?
            .into_iter()
            .map(|(hash, entry)| EntryInfo {
                hash,
                size: entry.size,
                storing_origins: entry.storing_origins,
                listed_origins: entry.listed_origins,
                global: entry.global,
                on_public_hash_list: self.is_on_public_hash_list(&hash),
                created_ms: entry.created_ms,
                last_read_ms: entry.last_read_ms,
                read_count: entry.read_count,
                provenance: entry
                    .provenance
                    .into_iter()
                    .map(|p| ProvenanceInfo { origin: p.origin, document_url: p.document_url, time_ms: p.time_ms })
                    .collect(),
            })
            .collect())
    }

    /// Every origin that stores something in a partition, sorted by origin, so the browser can
    /// show who uses how much.
    pub fn inspect_origins(&self, partition: Partition) -> Result<Vec<OriginInfo>, StoreError> {
        let Some(store) = self.partition_for_inspection(partition)? else { return Ok(Vec::new()) };
        Ok(store
            .list_origins()?
            .into_iter()
            .map(|(origin, record)| OriginInfo { origin, charged_bytes: record.charged_bytes, entries: record.entries })
            .collect())
    }

    /// The service's state for a partition and every top-level site's spent probe budget, sorted
    /// by site, for the browser's internals page. An off-the-record profile not opened yet reports
    /// its limits and nothing spent.
    pub fn status(&self, partition: Partition) -> Result<(ServiceStatus, Vec<ProbeBudgetInfo>), StoreError> {
        let (public_hash_list, public_hash_list_loaded_ms) = self.public_hash_list_status();
        let mut status = ServiceStatus {
            public_hash_list,
            public_hash_list_loaded_ms,
            probe_budget: self.probe_budget_limit(),
            ..ServiceStatus::default()
        };
        let limits = self.limits_of(partition);
        (status.per_origin_bytes, status.total_bytes, status.share_bytes) =
            (limits.per_origin_bytes, limits.total_bytes, limits.share_bytes);
        let Some(store) = self.partition_for_inspection(partition)? else { return Ok((status, Vec::new())) };
        (status.evicted_entries, status.corrupt_removed) = store.maintenance_counts();
        let budgets = self
            .budgets(partition)
            .spent_by_site(store.registry())?
            .into_iter()
            .map(|(site, spent)| ProbeBudgetInfo { site, spent })
            .collect();
        Ok((status, budgets))
    }

    /// Browser-side maintenance: re-hashes every blob of a partition, deleting the entries whose
    /// blob is damaged or missing (off-the-record blobs live in memory: nothing to check).
    /// `progress` hears after each entry: the findings so far, and how many entries there are.
    pub fn scrub(
        &self,
        partition: Partition,
        progress: impl FnMut(&ScrubReport, u64),
    ) -> Result<ScrubReport, StoreError> {
        let Some(store) = self.partition_for_inspection(partition)? else { return Ok(ScrubReport::default()) };
        let report = store.scrub(progress)?;
        tracing::info!(?report, "scrub finished");
        Ok(report)
    }

    /// Deletes an entry for everyone (the user removed it in "View by Resource"): every storing
    /// origin is uncharged and its grants go with it. Readers that opened it before keep reading
    /// their bytes. `false` when the partition has no such entry. To remove one origin's data
    /// instead, use [`clear_site_data`](Self::clear_site_data).
    pub fn delete_entry(&self, partition: Partition, hash: &ContentHash) -> Result<bool, StoreError> {
        match self.partition_for_inspection(partition)? {
            Some(store) => {
                let deleted = store.delete_entry(hash)?;
                if deleted {
                    tracing::info!("deleted an entry at the user's request");
                }
                Ok(deleted)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use cos_common::interface::HandleRequest;
    use cos_common::{CallerContext, Origin};
    use sha2::Digest;

    use super::*;
    use crate::config::ServiceConfig;
    use crate::{CreateOptions, StorageLimits};

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn caller(url: &str) -> CallerContext {
        CallerContext::top_level(Origin::from_url(url).unwrap())
    }

    #[test]
    fn off_the_record_profiles_never_opened_show_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _) = StorageService::open(ServiceConfig::new(dir.path())).unwrap();
        let partition = Partition::OffTheRecord(cos_common::OffTheRecordProfileId(7));
        assert!(service.inspect_entries(partition).unwrap().is_empty());
        assert!(service.inspect_origins(partition).unwrap().is_empty());
        assert!(!service.delete_entry(partition, &ContentHash::from_hex(ABC).unwrap()).unwrap());
    }

    #[test]
    fn status_reports_limits_list_budgets_and_evictions() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StorageLimits { per_origin_bytes: 100, total_bytes: 6, share_bytes: 100 };
        let mut config = ServiceConfig::new(dir.path());
        config.off_the_record_limits = limits;
        let (service, _) = StorageService::open(config).unwrap();
        let id = cos_common::OffTheRecordProfileId(1);
        let partition = Partition::OffTheRecord(id);
        let (status, budgets) = service.status(partition).unwrap();
        assert_eq!((status.total_bytes, status.evicted_entries, status.public_hash_list), (6, 0, None));
        assert!(budgets.is_empty());
        let app = caller("https://app.example").in_partition(partition);
        for bytes in [&b"abc"[..], b"def", b"ghi"] {
            let hash = ContentHash::from_bytes(sha2::Sha256::digest(bytes).into());
            let handle =
                service.get_file_handle(&app, hash, HandleRequest::Create(CreateOptions::same_site())).unwrap();
            let mut writer = handle.create_writable().unwrap();
            writer.write(bytes).unwrap();
            writer.close().unwrap();
        }
        service.notify_user_activation(partition, &cos_common::Site::of(app.origin()));
        service.set_public_hash_list(Some(crate::PublicHashList::from_hashes([ContentHash::from_hex(ABC).unwrap()])));
        let (status, budgets) = service.status(partition).unwrap();
        assert_eq!(status.evicted_entries, 1, "the third write evicted the least recently read entry");
        assert_eq!(status.public_hash_list.map(|counts| counts.distinct), Some(1));
        assert!(status.public_hash_list_loaded_ms > 0);
        assert_eq!(budgets, vec![ProbeBudgetInfo { site: "https://app.example".into(), spent: 0 }]);
    }

    #[test]
    fn delete_entry_in_memory_uncharges_and_keeps_open_readers() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StorageLimits { per_origin_bytes: 100, total_bytes: 100, share_bytes: 100 };
        let mut config = ServiceConfig::new(dir.path());
        config.off_the_record_limits = limits;
        let (service, _) = StorageService::open(config).unwrap();
        let id = cos_common::OffTheRecordProfileId(1);
        let app = caller("https://app.example").in_partition(Partition::OffTheRecord(id));
        let hash = ContentHash::from_hex(ABC).unwrap();
        let handle = service.get_file_handle(&app, hash, HandleRequest::Create(CreateOptions::same_site())).unwrap();
        let mut writer = handle.create_writable().unwrap();
        writer.write(b"abc").unwrap();
        writer.close().unwrap();
        let reader = handle.get_file().unwrap();
        let partition = Partition::OffTheRecord(id);
        assert_eq!(service.inspect_entries(partition).unwrap()[0].read_count, 1);
        assert!(service.delete_entry(partition, &hash).unwrap());
        assert!(!service.delete_entry(partition, &hash).unwrap(), "already gone");
        assert!(service.inspect_entries(partition).unwrap().is_empty());
        assert!(service.inspect_origins(partition).unwrap().is_empty());
        assert_eq!(service.inspect_total_bytes(partition).unwrap(), 0);
        assert_eq!(reader.read_all().unwrap(), b"abc");
        assert!(handle.get_file().is_err(), "a new open finds nothing");
    }
}
