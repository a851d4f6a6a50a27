//! Chromium targets (one COS "renderer" each) and their execution contexts (one frame id each).

use std::collections::HashMap;
use std::sync::Arc;

use cos_browser::FrameTable;
use cos_common::interface::{FrameId, RendererId};
use cos_common::{Origin, Site};
use cos_renderer::{CrossOriginStorageManager, FileSystemFileHandle, RendererConnection};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::data_server::{DataServer, WriterSlot};

/// Calls one target may have served at once (half the COS pipe's request window, so a
/// request never waits for room while holding a runtime thread).
pub const MAX_CALLS_PER_TARGET: usize = cos_renderer::MAX_IN_FLIGHT / 2;

/// Capability tokens one context may hold at once.
pub const MAX_TOKENS_PER_CONTEXT: usize = 64;

/// What kind of Chromium target a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A tab.
    Page,
    /// An out-of-process iframe.
    Iframe,
    /// A dedicated worker.
    Worker,
    /// A shared worker.
    SharedWorker,
    /// A service worker.
    ServiceWorker,
    /// Anything else (not served).
    Other,
}

impl TargetKind {
    /// From `TargetInfo.type`.
    pub fn of(kind: &str) -> Self {
        match kind {
            "page" => Self::Page,
            "iframe" => Self::Iframe,
            "worker" => Self::Worker,
            "shared_worker" => Self::SharedWorker,
            "service_worker" => Self::ServiceWorker,
            _ => Self::Other,
        }
    }

    /// Frames (documents), as opposed to workers.
    pub fn is_frame(self) -> bool {
        matches!(self, Self::Page | Self::Iframe)
    }
}

/// One attached target.
pub struct Session {
    /// The target's id.
    pub target_id: String,
    /// Its kind.
    pub kind: TargetKind,
    /// The session it was attached through (`None`: the browser).
    pub parent: Option<String>,
    /// Its COS renderer id.
    pub renderer: RendererId,
    /// Its COS pipe.
    pub connection: Arc<RendererConnection>,
    /// The target's URL as Chromium last reported it (attach, `Target.targetInfoChanged`).
    pub url: Mutex<String>,
    /// The site of the last http(s) URL the browser reported for this target. A target that
    /// navigated itself to `about:blank` stays in its site's process, so its documents are
    /// checked against this, never against another target's current URL.
    pub pinned_site: Mutex<Option<Site>>,
    /// Calls of this target being served at once: past it, calls wait here, so a page cannot
    /// fill the COS pipe's request window and block the bridge's threads on it.
    pub calls: Arc<tokio::sync::Semaphore>,
    /// Set once the bridge's set-up commands went through.
    pub ready: tokio::sync::watch::Sender<bool>,
}

/// The response headers of a document that matter to COS.
#[derive(Debug, Clone, Default)]
pub struct DocumentHeaders {
    /// `Permissions-Policy`.
    pub permissions_policy: Option<String>,
    /// `Cross-Origin-Storage-Allow-Origin`.
    pub allow_origin: Option<String>,
}

/// The objects one context holds, by the numbers its script knows them by.
#[derive(Default)]
pub struct Objects {
    next: u64,
    /// Handles.
    pub handles: HashMap<u64, FileSystemFileHandle>,
    /// Writers and their capability tokens.
    pub writers: HashMap<u64, (WriterSlot, String)>,
    /// Outstanding capability tokens.
    pub tokens: Vec<String>,
}

impl Objects {
    /// A fresh number (never reused in this context).
    pub fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// One execution context: a document or a worker global, with its own frame id.
pub struct ContextState {
    /// The session it lives in.
    pub session: String,
    /// `Runtime.ExecutionContextId`.
    pub context_id: i64,
    /// Its frame id (never reused).
    pub frame: FrameId,
    /// Chromium's id of the frame it belongs to (empty for workers).
    pub chromium_frame: String,
    /// Whether the Permissions Policy enables the feature here (what a child's container
    /// inherits).
    pub policy_allows: bool,
    /// Its tuple origin (`None`: opaque).
    pub origin: Option<Origin>,
    /// The serialised origin, as Chromium sends it in `Origin` headers.
    pub origin_text: String,
    /// The COS view (absent in insecure contexts).
    pub manager: Option<CrossOriginStorageManager>,
    /// Its objects; emptied when the context goes.
    pub objects: Mutex<Objects>,
    /// The remote object id of the script's reply function, fetched on the first reply.
    pub resolver: OnceCell<String>,
    pub(crate) frames: Arc<FrameTable>,
    pub(crate) data: DataServer,
}

impl ContextState {
    /// Drops every object and revokes every token (the document went away).
    pub fn clear(&self) {
        let objects = std::mem::take(&mut *self.objects.lock());
        for token in &objects.tokens {
            self.data.revoke(token);
        }
        drop(objects);
    }
}

impl Drop for ContextState {
    /// The frame leaves the frame table only when no call naming it is still in flight (each
    /// holds the context), so a navigation never turns a legitimate call into a bad message.
    fn drop(&mut self) {
        self.clear();
        self.frames.remove(self.frame);
    }
}

/// The tuple origin of a context's reported origin or URL (`None`: opaque or not http(s)).
pub fn tuple_origin(text: &str) -> Option<Origin> {
    if text.is_empty() || text == "null" {
        return None;
    }
    // Workers report their script URL; blob: URLs carry their creator's origin inside.
    let inner = text.strip_prefix("blob:").unwrap_or(text);
    Origin::from_url(inner).ok()
}

/// The site of a top-level URL.
pub fn site_of_url(url: &str) -> Option<Site> {
    tuple_origin(url).map(|origin| Site::of(&origin))
}
