//! Judging a new document before it may call: its origin against the site the browser attests
//! for its target, and its Permissions Policy container (the parent document and the owner
//! element's `allow` attribute).

use super::*;

impl Shared {
    /// Whether a document may use the API, or proof that its renderer is compromised.
    pub(super) async fn judge_document(&self, new: &NewContext) -> Verdict {
        // Opaque origins never reach the API and claim no site.
        let Some(origin) = &new.origin else { return Verdict::Allowed(false) };
        match self.attest(&new.session, origin).await {
            Attested::Same => {}
            // A document whose target's URL says nothing (no http(s) URL, no opener, no parent
            // to inherit from) cannot be vouched for: it gets no access, but it proves nothing.
            Attested::Unknown => return Verdict::Allowed(false),
            Attested::Other(url) => {
                return Verdict::Compromised(format!(
                    "a document of {origin} in a process of another site (its target is at {url})"
                ));
            }
        }
        let header = new.headers.permissions_policy.as_deref();
        if new.main_frame {
            return Verdict::Allowed(permissions_policy::is_enabled(Some(origin), header, None));
        }
        // A child frame, in its parent's process or its own target: its container is the parent
        // document and the owner element, both in the parent's process.
        let Some(parent_token) = self.parent_frame(&new.session_id, &new.frame_token).await else {
            tracing::debug!(frame = new.frame_token, "a child frame without a known parent gets no access");
            return Verdict::Allowed(false);
        };
        let Some(parent) = self.context_of_frame(&parent_token).await else {
            tracing::debug!(frame = new.frame_token, "a child frame whose parent document is gone gets no access");
            return Verdict::Allowed(false);
        };
        let allow = self.allow_attribute(&parent.session, &new.frame_token).await;
        let container = permissions_policy::Container {
            parent_origin: parent.origin.as_ref(),
            parent_allows: parent.policy_allows,
            allow_attribute: allow.as_deref(),
        };
        Verdict::Allowed(permissions_policy::is_enabled(Some(origin), header, Some(container)))
    }

    /// A worker's owners, whose records it inherits (`FrameInfo::worker`: allowed only as every
    /// owner is, the intersection of their ceilings, their user activation). A dedicated
    /// worker's owner is a document (or worker) of the target it was attached through, of the
    /// same origin, once judged. A worker whose origin no judged context of its parent target
    /// has (a renderer's claim the browser cannot back) or with no parent target (shared and
    /// service workers) has no owner, and so gets nothing.
    pub(super) async fn judge_worker(&self, new: &NewContext) -> Vec<FrameId> {
        let (Some(origin), Some(parent)) = (&new.origin, new.session.parent.as_deref()) else { return Vec::new() };
        // Owners still being judged are waited for (a page may start a worker before its own
        // first call).
        let judging: Vec<_> = self
            .pending
            .lock()
            .iter()
            .filter(|((session, _), _)| session == parent)
            .map(|(_, pending)| pending.state.clone())
            .collect();
        for mut state in judging {
            let _ = tokio::time::timeout(PAGE_GUARD, state.wait_for(Option::is_some)).await;
        }
        // Its owners: the judged documents of that origin in the target it was attached
        // through. `FrameInfo::worker` allows it only if every one of them may call.
        let contexts = self.contexts.lock();
        contexts
            .iter()
            .filter(|((session, _), context)| session == parent && context.origin.as_ref() == Some(origin))
            .map(|(_, context)| context.frame)
            .collect()
    }

    /// Compares `origin`'s site with the site of the URL the browser reports for the target,
    /// asking again until they agree or [`ATTEST_GUARD`] has passed (the browser updates the URL
    /// once it has processed the commit the renderer already reported).
    async fn attest(&self, session: &Session, origin: &cos_common::Origin) -> Attested {
        let wanted = Site::of(origin);
        let deadline = tokio::time::Instant::now() + ATTEST_GUARD;
        loop {
            // A target showing no site of its own (it navigated itself to `about:blank`) is still
            // in the process of the last site it showed: that site, not its parent's or opener's
            // current one, is what its documents may be of.
            let pinned = session.pinned_site.lock().clone();
            let (url, site) = self.attested_site(&session.target_id, session.parent.as_deref(), pinned).await;
            match site {
                Some(site) if site == wanted => return Attested::Same,
                _ if tokio::time::Instant::now() >= deadline => {
                    return if site.is_some() { Attested::Other(url) } else { Attested::Unknown };
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The target's current URL and its site. `about:blank` and `about:srcdoc` documents
    /// inherit their creator's origin: such a target answers with `pinned` (the site it showed
    /// last) if it ever showed one, else with its opener's site (a popup) or, for an
    /// out-of-process frame, its parent target's.
    async fn attested_site(
        &self,
        target_id: &str,
        parent_session: Option<&str>,
        pinned: Option<Site>,
    ) -> (String, Option<Site>) {
        let mut target = target_id.to_owned();
        let mut parent = parent_session.map(str::to_owned);
        let mut first_url = None;
        // Bounded: openers and parents form chains, never loops worth following further.
        for _ in 0..4 {
            let info = self.client.send("Target.getTargetInfo", json!({ "targetId": target }), None).await;
            let info = match info {
                Ok(info) => info["targetInfo"].clone(),
                Err(_) => break,
            };
            let url = info["url"].as_str().unwrap_or("").to_owned();
            let first = first_url.get_or_insert_with(|| url.clone()).clone();
            if let Some(site) = site_of_url(&url) {
                return (first, Some(site));
            }
            if !(url.is_empty() || url.starts_with("about:blank") || url == "about:srcdoc") {
                break;
            }
            if target == target_id
                && let Some(site) = pinned.clone()
            {
                return (first, Some(site));
            }
            let next = info["openerId"].as_str().map(str::to_owned).or_else(|| {
                let parent_session = self.session(parent.as_deref()?)?;
                parent = parent_session.parent.clone();
                Some(parent_session.target_id.clone())
            });
            match next {
                Some(next) => target = next,
                None => break,
            }
        }
        (first_url.unwrap_or_default(), None)
    }

    /// The parent of a Chromium frame: from `Page.frameAttached`, else from the session's frame
    /// tree.
    async fn parent_frame(&self, session_id: &str, frame: &str) -> Option<String> {
        if let Some(parent) = self.frame_parents.lock().get(frame) {
            return Some(parent.clone());
        }
        let tree = self.client.send("Page.getFrameTree", json!({}), Some(session_id)).await.ok()?;
        fn find(node: &Value, frame: &str) -> Option<String> {
            if node["frame"]["id"].as_str() == Some(frame) {
                return node["frame"]["parentId"].as_str().map(str::to_owned);
            }
            node["childFrames"].as_array()?.iter().find_map(|child| find(child, frame))
        }
        find(&tree["frameTree"], frame)
    }

    /// The current document of a Chromium frame, waiting for it if it is still being judged.
    async fn context_of_frame(&self, frame: &str) -> Option<Arc<ContextState>> {
        let ready =
            self.contexts.lock().values().filter(|c| c.chromium_frame == frame).max_by_key(|c| c.frame.0).cloned();
        if ready.is_some() {
            return ready;
        }
        let mut waiting = self.pending.lock().values().find(|p| p.frame_token == frame).map(|p| p.state.clone())?;
        // A hang guard: the parent's own judgement is bounded by ATTEST_GUARD.
        tokio::time::timeout(PAGE_GUARD, waiting.wait_for(Option::is_some)).await.ok()?.ok()?.clone()
    }

    /// The `allow` attribute of the element owning `frame`, read in the parent's process;
    /// `None` when there is none or it cannot be read (the default allowlist, `self`, then
    /// rules: the stricter answer).
    async fn allow_attribute(&self, parent_session: &str, frame: &str) -> Option<String> {
        let s = Some(parent_session);
        let owner = self.client.send("DOM.getFrameOwner", json!({ "frameId": frame }), s).await;
        let owner = owner.map_err(|error| tracing::debug!(%error, frame, "no frame owner")).ok()?;
        let backend = owner["backendNodeId"].as_i64()?;
        let node = self.client.send("DOM.describeNode", json!({ "backendNodeId": backend }), s).await.ok()?;
        let attributes = node["node"]["attributes"].as_array()?;
        attributes
            .chunks(2)
            .find(|pair| pair[0].as_str().is_some_and(|name| name.eq_ignore_ascii_case("allow")))
            .and_then(|pair| pair.get(1)?.as_str().map(str::to_owned))
    }
}

/// The outcome of judging a document.
pub(super) enum Verdict {
    /// Registered, with the API enabled or not by the Permissions Policy.
    Allowed(bool),
    /// Its renderer reported what only a compromised one reports.
    Compromised(String),
}

/// A document's origin against its target's attested URL.
enum Attested {
    /// Same site.
    Same,
    /// The target's URL names no site to compare with.
    Unknown,
    /// Another site (the URL).
    Other(String),
}
