//! What the browser knows about every document that may call COS.

use std::collections::HashMap;

use cos_common::interface::{CreateOptions, FrameId, RendererId};
use cos_common::{AllowOriginCeiling, CallerContext, CosError, NotAllowedKind, Origin, OriginsOption, Partition, Site};
use parking_lot::RwLock;

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

impl FrameInfo {
    /// The options of a create request this document makes, whichever way it asks: the
    /// broker's `getFileHandle({create: true, origins})` (with the document's own ceiling) and
    /// the loader's store of a fetched resource (with the resource's ceiling, SPEC §11). Every
    /// condition on the scope a document may record lives here, so both paths apply it.
    pub(crate) fn create_options(
        &self,
        origins: OriginsOption,
        allow_origin_ceiling: AllowOriginCeiling,
    ) -> CreateOptions {
        CreateOptions { origins, allow_origin_ceiling, document_url: self.url.clone() }
    }
}

/// Frame id → [`FrameInfo`]. Shared by every broker stub; written by the embedder.
#[derive(Debug, Default)]
pub struct FrameTable {
    frames: RwLock<HashMap<FrameId, FrameInfo>>,
}

impl FrameTable {
    /// Registers (or replaces) a document.
    pub fn insert(&self, frame: FrameId, info: FrameInfo) {
        self.frames.write().insert(frame, info);
    }

    /// Forgets a document.
    pub fn remove(&self, frame: FrameId) {
        self.frames.write().remove(&frame);
    }

    /// Forgets every document of a renderer.
    pub fn remove_renderer(&self, renderer: RendererId) {
        self.frames.write().retain(|_, info| info.renderer != renderer);
    }

    /// A document's record.
    pub fn get(&self, frame: FrameId) -> Option<FrameInfo> {
        self.frames.read().get(&frame).cloned()
    }
}
