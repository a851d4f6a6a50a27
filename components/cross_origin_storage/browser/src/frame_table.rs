//! What the browser knows about every document that may call COS.

use std::collections::HashMap;

use cos_common::interface::{CreateOptions, FrameId, RendererId, WriteWarning, WriteWarnings};
use cos_common::{AllowOriginCeiling, CallerContext, CosError, NotAllowedKind, Origin, OriginsOption, Partition, Site};
use cos_ipc::Endpoint;
use parking_lot::{Mutex, RwLock};

/// A document's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOrigin {
    /// An http(s) tuple origin.
    Tuple(Origin),
    /// An opaque origin (sandboxed iframe, `data:` document): COS is not allowed.
    Opaque,
}

/// What kind of global the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// A window (frame).
    Window,
    /// A dedicated worker (inherits its owner's origin and policy).
    DedicatedWorker,
    /// A shared worker (every owner must allow the feature).
    SharedWorker,
    /// A service worker: COS is never allowed.
    ServiceWorker,
}

/// One document, as the embedder registers it when it creates the frame or worker.
///
/// ```
/// use cos_browser::{ContextKind, FrameInfo, FrameOrigin, permissions_policy};
/// use cos_common::interface::{FrameId, RendererId};
/// use cos_common::{AllowOriginCeiling, Origin, Site};
///
/// let top = Origin::from_url("https://app.example/")?;
/// let widget = Origin::from_url("https://widget.example/")?;
///
/// // A cross-site iframe: its own origin, the top-level document's site, the policy result
/// // and the ceiling from its response headers and its container.
/// let mut frame = FrameInfo::top_level(RendererId(2), widget.clone());
/// frame.top_level_site = Some(Site::of(&top));
/// let container = permissions_policy::Container {
///     parent_origin: Some(&top),
///     parent_allows: true,
///     allow_attribute: Some("cross-origin-storage"),
/// };
/// frame.cos_allowed = permissions_policy::is_enabled(Some(&widget), None, Some(container));
/// frame.allow_origin_ceiling = AllowOriginCeiling::from_header(Some("https://app.example"));
/// let caller = frame.authorize().expect("allowed by its container");
/// assert_eq!(caller.origin(), &widget);
///
/// // Its dedicated worker inherits what the frame may do.
/// let worker = FrameInfo::worker(RendererId(2), FrameOrigin::Tuple(widget), ContextKind::DedicatedWorker, &[(FrameId(9), &frame)], None);
/// assert!(worker.authorize().is_ok());
///
/// // Service workers never may (SPEC §3).
/// let mut service_worker = worker.clone();
/// service_worker.kind = ContextKind::ServiceWorker;
/// assert_eq!(service_worker.authorize().unwrap_err().name(), "NotAllowedError");
/// # Ok::<(), cos_common::OriginParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameInfo {
    /// The renderer process hosting it.
    pub renderer: RendererId,
    /// Its origin.
    pub origin: FrameOrigin,
    /// The site of its top-level document (`None` if that document is opaque).
    pub top_level_site: Option<Site>,
    /// Window or worker.
    pub kind: ContextKind,
    /// The Permissions Policy result for `cross-origin-storage` (see
    /// [`permissions_policy::is_enabled`](crate::permissions_policy::is_enabled)).
    pub cos_allowed: bool,
    /// The document's `Cross-Origin-Storage-Allow-Origin` ceiling.
    pub allow_origin_ceiling: AllowOriginCeiling,
    /// Regular or off-the-record profile.
    pub partition: Partition,
    /// The document's URL (private provenance for writes).
    pub url: Option<String>,
    /// HTML's sticky activation: the document had a user activation since it loaded. Only the
    /// browser sets it ([`FrameTable::record_user_activation`]); a new record (a new document)
    /// starts without. Workers have none of their own: their owners' counts.
    pub sticky_activation: bool,
    /// A worker's owner documents, whose activation counts for its writes (SPEC §5); empty for
    /// windows.
    pub owners: Vec<FrameId>,
}

impl FrameInfo {
    /// A top-level window of `origin` in the regular profile, COS allowed, no ceiling header.
    pub fn top_level(renderer: RendererId, origin: Origin) -> Self {
        let site = Site::of(&origin);
        Self {
            renderer,
            origin: FrameOrigin::Tuple(origin),
            top_level_site: Some(site),
            kind: ContextKind::Window,
            cos_allowed: true,
            allow_origin_ceiling: AllowOriginCeiling::empty(),
            partition: Partition::Regular,
            url: None,
            sticky_activation: false,
            owners: Vec::new(),
        }
    }

    /// A worker of `origin` created by `owners` (each owner's id and record, as the embedder holds
    /// them when it registers the worker). What SPEC §3 and §5 say a worker inherits is decided
    /// here: COS is allowed only if every owner allows it (a dedicated worker has one owner, a
    /// shared worker every document connected to it) and all owners share one top-level site and
    /// partition; its `Cross-Origin-Storage-Allow-Origin` ceiling is the intersection of its
    /// owners' ceilings; its writes count its owners' user activation. No owner: not allowed.
    pub fn worker(
        renderer: RendererId,
        origin: FrameOrigin,
        kind: ContextKind,
        owners: &[(FrameId, &FrameInfo)],
        url: Option<String>,
    ) -> Self {
        let first = owners.first().map(|(_, info)| *info);
        let agree = owners.iter().all(|(_, info)| {
            first.is_some_and(|first| info.top_level_site == first.top_level_site && info.partition == first.partition)
        });
        let ceiling = owners
            .iter()
            .map(|(_, info)| info.allow_origin_ceiling.clone())
            .reduce(|ceiling, next| ceiling.intersection(&next))
            .unwrap_or_default();
        Self {
            renderer,
            origin,
            top_level_site: first.and_then(|first| first.top_level_site.clone()),
            kind,
            cos_allowed: first.is_some() && agree && owners.iter().all(|(_, info)| info.cos_allowed),
            allow_origin_ceiling: ceiling,
            partition: first.map_or(Partition::Regular, |first| first.partition),
            url,
            sticky_activation: false,
            owners: owners.iter().map(|(id, _)| *id).collect(),
        }
    }

    /// SPEC §3: who may call, checked before anything else. Returns the caller context the
    /// service will see.
    pub fn authorize(&self) -> Result<CallerContext, CosError> {
        if self.kind == ContextKind::ServiceWorker {
            return Err(CosError::NotAllowed(NotAllowedKind::ServiceWorker));
        }
        if !self.cos_allowed {
            return Err(CosError::NotAllowed(NotAllowedKind::PermissionsPolicy));
        }
        match (&self.origin, &self.top_level_site) {
            (FrameOrigin::Tuple(origin), Some(top_level_site)) => {
                Ok(CallerContext::new(origin.clone(), top_level_site.clone(), self.partition))
            }
            _ => Err(CosError::NotAllowed(NotAllowedKind::OpaqueOrigin)),
        }
    }
}

/// Frame id → [`FrameInfo`]. Shared by every broker stub; written by the embedder.
///
/// The embedder inserts a record when a document is created (a navigation is a new document: a
/// new record, under a new frame id), records real user input, and removes the record when the
/// document goes away.
///
/// ```
/// use cos_browser::{FrameInfo, FrameTable};
/// use cos_common::interface::{FrameId, RendererId, WriteWarning};
/// use cos_common::{AllowOriginCeiling, Origin, OriginsOption};
///
/// let frames = FrameTable::default();
/// let frame = FrameId(7);
/// frames.insert(frame, FrameInfo::top_level(RendererId(1), Origin::from_url("https://app.example/")?));
///
/// // SPEC §5: a "*" write needs the document's user activation; without it, same-site only.
/// let info = frames.get(frame).unwrap();
/// let options = frames.create_options(&info, OriginsOption::Global, AllowOriginCeiling::empty());
/// assert_eq!(options.origins, OriginsOption::Omitted);
/// assert!(options.warnings.contains(WriteWarning::NoUserActivation));
///
/// let info = frames.record_user_activation(frame).unwrap(); // the browser saw a click
/// let options = frames.create_options(&info, OriginsOption::Global, AllowOriginCeiling::empty());
/// assert_eq!(options.origins, OriginsOption::Global);
///
/// frames.remove(frame); // the document went away
/// assert!(frames.get(frame).is_none());
/// # Ok::<(), cos_common::OriginParseError>(())
/// ```
#[derive(Debug, Default)]
pub struct FrameTable {
    frames: RwLock<HashMap<FrameId, FrameInfo>>,
    /// Each document's lookup binding (at most one), as the browser's handle on the renderer's
    /// end: shutting it down closes the binding for both sides. Locked after `frames`.
    bindings: Mutex<HashMap<FrameId, Endpoint>>,
}

impl FrameTable {
    /// Registers (or replaces) a document. A replaced record is a new document: it has the
    /// activation `info` says (none, from the constructors), never its predecessor's.
    pub fn insert(&self, frame: FrameId, info: FrameInfo) {
        let mut frames = self.frames.write();
        // A new or changed record (a navigation, a new policy or ceiling): the binding spoke for
        // the old one, so it closes and the renderer asks again.
        self.close_binding(frame);
        frames.insert(frame, info);
    }

    /// Records `closer` (the browser's handle on the renderer's end) as `frame`'s lookup binding
    /// if `frame`'s record is still `expected`, the record the binding's caller context was
    /// taken from; a binding it had before is closed. False (and `closer` shut down): the
    /// document changed or went away meanwhile, so the binding must not serve.
    pub(crate) fn open_binding(&self, frame: FrameId, expected: &FrameInfo, closer: Endpoint) -> bool {
        let frames = self.frames.read();
        if frames.get(&frame) != Some(expected) {
            closer.shutdown();
            return false;
        }
        if let Some(old) = self.bindings.lock().insert(frame, closer) {
            old.shutdown();
        }
        true
    }

    fn close_binding(&self, frame: FrameId) {
        if let Some(binding) = self.bindings.lock().remove(&frame) {
            binding.shutdown();
        }
    }

    /// A user activation happened in `frame`'s document (the browser saw the input event): from
    /// now on it has sticky activation. Returns its record, `None` for an unknown frame.
    pub fn record_user_activation(&self, frame: FrameId) -> Option<FrameInfo> {
        let mut frames = self.frames.write();
        let info = frames.get_mut(&frame)?;
        info.sticky_activation = true;
        Some(info.clone())
    }

    /// Whether the document `info` describes has sticky activation: its own for a window; for a
    /// worker, every owner's (an owner that is gone counts as not activated).
    pub fn has_sticky_activation(&self, info: &FrameInfo) -> bool {
        if info.owners.is_empty() {
            return info.sticky_activation;
        }
        let frames = self.frames.read();
        info.owners.iter().all(|owner| frames.get(owner).is_some_and(|owner| owner.sticky_activation))
    }

    /// The user-gesture rule (SPEC §5), the one place it is decided: what a create request of the
    /// document `info` (a record of this table, read when the request arrived) that asked for
    /// `origins` gives the storage service. A `"*"` or list scope needs the document's sticky
    /// activation; without it the write is same-site only and its verdict warns the page
    /// ([`WriteWarning::NoUserActivation`]). `ceiling` caps a list: the document's
    /// `Cross-Origin-Storage-Allow-Origin` for script writes, the fetched resource's own for
    /// the fetch integration. The renderer never says whether there was an activation: the
    /// browser's record does.
    pub fn create_options(
        &self,
        info: &FrameInfo,
        origins: OriginsOption,
        ceiling: AllowOriginCeiling,
    ) -> CreateOptions {
        let mut warnings = WriteWarnings::none();
        let origins = match origins {
            OriginsOption::Omitted => OriginsOption::Omitted,
            wider if self.has_sticky_activation(info) => wider,
            _ => {
                warnings.add(WriteWarning::NoUserActivation);
                OriginsOption::Omitted
            }
        };
        CreateOptions { origins, allow_origin_ceiling: ceiling, document_url: info.url.clone(), warnings }
    }

    /// Forgets a document, and closes its lookup binding.
    pub fn remove(&self, frame: FrameId) {
        let mut frames = self.frames.write();
        self.close_binding(frame);
        frames.remove(&frame);
    }

    /// Forgets every document of a renderer, and closes their lookup bindings.
    pub fn remove_renderer(&self, renderer: RendererId) {
        let mut frames = self.frames.write();
        let mut bindings = self.bindings.lock();
        frames.retain(|frame, info| {
            let keep = info.renderer != renderer;
            if !keep && let Some(binding) = bindings.remove(frame) {
                binding.shutdown();
            }
            keep
        });
    }

    /// A document's record.
    pub fn get(&self, frame: FrameId) -> Option<FrameInfo> {
        self.frames.read().get(&frame).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(url: &str) -> Origin {
        Origin::from_url(url).unwrap()
    }

    fn window(origin: &str, ceiling: &str) -> FrameInfo {
        let mut info = FrameInfo::top_level(RendererId(1), o(origin));
        info.allow_origin_ceiling = AllowOriginCeiling::from_header(Some(ceiling));
        info
    }

    fn list(origins: &[&str]) -> OriginsOption {
        OriginsOption::List(origins.iter().map(|url| o(url)).collect())
    }

    #[test]
    fn a_wide_scope_needs_the_documents_activation_and_is_otherwise_same_site_with_a_warning() {
        let table = FrameTable::default();
        table.insert(FrameId(1), window("https://a.example", "https://b.example"));
        let info = table.get(FrameId(1)).unwrap();
        for wide in [OriginsOption::Global, list(&["https://b.example"])] {
            let options = table.create_options(&info, wide, info.allow_origin_ceiling.clone());
            assert_eq!(options.origins, OriginsOption::Omitted);
            assert_eq!(options.warnings, WriteWarning::NoUserActivation.into());
        }
        let omitted = table.create_options(&info, OriginsOption::Omitted, AllowOriginCeiling::empty());
        assert!(omitted.warnings.is_empty(), "a same-site write needs no activation");

        let activated = table.record_user_activation(FrameId(1)).unwrap();
        for wide in [OriginsOption::Global, list(&["https://b.example"])] {
            let options = table.create_options(&activated, wide.clone(), activated.allow_origin_ceiling.clone());
            assert_eq!((options.origins, options.warnings), (wide, WriteWarnings::none()));
        }
        assert!(!table.has_sticky_activation(&info), "judged on the record read when the request arrived");
    }

    #[test]
    fn a_new_document_starts_without_activation() {
        let table = FrameTable::default();
        table.insert(FrameId(1), window("https://a.example", ""));
        table.record_user_activation(FrameId(1));
        assert!(table.has_sticky_activation(&table.get(FrameId(1)).unwrap()));
        table.insert(FrameId(1), window("https://a.example", ""));
        assert!(!table.has_sticky_activation(&table.get(FrameId(1)).unwrap()), "navigated: a new document");
        assert_eq!(table.record_user_activation(FrameId(9)), None);
    }

    #[test]
    fn a_worker_inherits_from_its_owners() {
        let table = FrameTable::default();
        let a = window("https://a.example", "https://b.example, https://c.example");
        let b = window("https://a.example", "https://c.example, https://d.example");
        table.insert(FrameId(1), a.clone());
        table.insert(FrameId(2), b.clone());
        let origin = FrameOrigin::Tuple(o("https://a.example"));

        let dedicated =
            FrameInfo::worker(RendererId(1), origin.clone(), ContextKind::DedicatedWorker, &[(FrameId(1), &a)], None);
        assert_eq!(dedicated.allow_origin_ceiling, a.allow_origin_ceiling, "one owner: its ceiling");
        assert!(dedicated.authorize().is_ok());
        assert!(!table.has_sticky_activation(&dedicated));
        let options = table.create_options(&dedicated, OriginsOption::Global, AllowOriginCeiling::empty());
        assert_eq!(options.origins, OriginsOption::Omitted, "the owner has no activation yet");
        table.record_user_activation(FrameId(1));
        assert!(
            table.has_sticky_activation(&dedicated),
            "the owner's activation counts, even after the worker started"
        );

        let shared = FrameInfo::worker(
            RendererId(1),
            origin.clone(),
            ContextKind::SharedWorker,
            &[(FrameId(1), &a), (FrameId(2), &b)],
            None,
        );
        assert_eq!(shared.allow_origin_ceiling, AllowOriginCeiling::from_origins([o("https://c.example")]));
        assert!(shared.authorize().is_ok());
        assert!(!table.has_sticky_activation(&shared), "every owner must be activated");
        table.record_user_activation(FrameId(2));
        assert!(table.has_sticky_activation(&shared));
        table.remove(FrameId(2));
        assert!(!table.has_sticky_activation(&shared), "an owner that is gone counts as not activated");

        let mut blocked = b.clone();
        blocked.cos_allowed = false;
        let policy = FrameInfo::worker(
            RendererId(1),
            origin.clone(),
            ContextKind::SharedWorker,
            &[(FrameId(1), &a), (FrameId(2), &blocked)],
            None,
        );
        assert_eq!(
            policy.authorize(),
            Err(CosError::NotAllowed(NotAllowedKind::PermissionsPolicy)),
            "every owner must allow"
        );
        let mut elsewhere = b.clone();
        elsewhere.top_level_site = Some(Site::of(&o("https://top.example")));
        let split = FrameInfo::worker(
            RendererId(1),
            origin.clone(),
            ContextKind::SharedWorker,
            &[(FrameId(1), &a), (FrameId(2), &elsewhere)],
            None,
        );
        assert!(split.authorize().is_err(), "owners of different top-level sites");
        let orphan = FrameInfo::worker(RendererId(1), origin, ContextKind::DedicatedWorker, &[], None);
        assert!(orphan.authorize().is_err() && orphan.allow_origin_ceiling.is_empty());
    }

    #[test]
    fn a_binding_opens_only_for_the_record_its_context_came_from() {
        let table = FrameTable::default();
        table.insert(FrameId(1), window("https://a.example", ""));
        let read = table.get(FrameId(1)).unwrap();
        // The document changed after its record was read (its policy, say): no binding.
        let mut changed = read.clone();
        changed.cos_allowed = false;
        table.insert(FrameId(1), changed);
        let (closer, renderer_end) = Endpoint::pair_in_process();
        assert!(!table.open_binding(FrameId(1), &read, closer));
        assert!(renderer_end.recv_timeout(std::time::Duration::from_secs(5)).is_err(), "shut down");
        // A second binding of one document replaces (and closes) the first.
        let current = table.get(FrameId(1)).unwrap();
        let (first, first_renderer) = Endpoint::pair_in_process();
        let (second, _second_renderer) = Endpoint::pair_in_process();
        assert!(table.open_binding(FrameId(1), &current, first));
        assert!(table.open_binding(FrameId(1), &current, second));
        assert!(first_renderer.recv_timeout(std::time::Duration::from_secs(5)).is_err());
        assert_eq!(table.bindings.lock().len(), 1);
    }
}
