//! A tab the bridge opened: navigate it, evaluate script in it, wait for its console.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{BridgeError, PAGE_GUARD, Shared, console_text};
use crate::devtools::{DevToolsError, Event};

/// A tab: a page target and its session.
pub struct Tab {
    pub(super) shared: Arc<Shared>,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) session: String,
    pub(super) target_id: String,
    pub(super) events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arc<Event>>>,
}

impl Tab {
    /// The DevTools session id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// The target id.
    pub fn target_id(&self) -> &str {
        &self.target_id
    }

    pub(super) async fn navigate_async(&self, url: &str) -> Result<(), BridgeError> {
        let session = Some(self.session.as_str());
        let navigated = self.shared.client.send("Page.navigate", json!({ "url": url }), session).await?;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            return Err(BridgeError::Script(format!("navigating to {url}: {error}")));
        }
        self.next_event(|event| event.method == "Page.loadEventFired", "the page's load event").await.map(|_| ())
    }

    async fn next_event(&self, matches: impl Fn(&Event) -> bool, what: &str) -> Result<Arc<Event>, BridgeError> {
        let wait = async {
            let mut events = self.events.lock().await;
            while let Some(event) = events.recv().await {
                if event.session_id.as_deref() == Some(self.session.as_str()) && matches(&event) {
                    return Some(event);
                }
            }
            None
        };
        match tokio::time::timeout(PAGE_GUARD, wait).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(BridgeError::DevTools(DevToolsError::Died { stderr_tail: String::new() })),
            Err(_) => Err(BridgeError::Timeout(what.to_owned())),
        }
    }

    /// Navigates the tab to `url` and waits for its load event.
    pub fn navigate(&self, url: &str) -> Result<(), BridgeError> {
        self.handle.block_on(self.navigate_async(url))
    }

    /// Evaluates `expression` in the page's main world (awaiting a promise) and returns its
    /// value as JSON; an exception or rejection is [`BridgeError::Script`].
    pub fn evaluate(&self, expression: &str) -> Result<Value, BridgeError> {
        self.handle.block_on(self.evaluate_async(expression))
    }

    /// [`evaluate`](Self::evaluate), for async callers.
    pub async fn evaluate_async(&self, expression: &str) -> Result<Value, BridgeError> {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let result = self.shared.client.send("Runtime.evaluate", params, Some(&self.session)).await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("exception")
                .to_owned();
            return Err(BridgeError::Script(text));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits for a `console` message of this tab's page whose text satisfies `matches`.
    pub fn wait_for_console(&self, matches: impl Fn(&str) -> bool) -> Result<String, BridgeError> {
        self.handle.block_on(async {
            let event = self
                .next_event(
                    |event| event.method == "Runtime.consoleAPICalled" && matches(&console_text(&event.params)),
                    "a console message",
                )
                .await?;
            Ok(console_text(&event.params))
        })
    }

    /// A user's click in the page: a real mouse press and release dispatched to it
    /// (`Input.dispatchMouseEvent`, which Chromium treats as trusted input), and, since the bridge
    /// is the browser side that sent it, the tab's main-frame document is recorded as activated
    /// (`CosHost::notify_user_activation`: its `'*'` and list writes are recorded from now on,
    /// SPEC §5, and its top-level site's probe budget starts over). A page cannot do this itself:
    /// its own synthetic events never reach the bridge.
    pub fn click(&self) -> Result<(), BridgeError> {
        self.handle.block_on(self.click_async())
    }

    /// [`click`](Self::click), for async callers.
    pub async fn click_async(&self) -> Result<(), BridgeError> {
        for kind in ["mousePressed", "mouseReleased"] {
            let event = json!({ "type": kind, "x": 1, "y": 1, "button": "left", "buttons": 1, "clickCount": 1 });
            self.shared.client.send("Input.dispatchMouseEvent", event, Some(&self.session)).await?;
        }
        // The main frame's document may still be being judged.
        let judging: Vec<_> = self
            .shared
            .pending
            .lock()
            .iter()
            .filter(|((session, _), pending)| *session == self.session && pending.frame_token == self.target_id)
            .map(|(_, pending)| pending.state.clone())
            .collect();
        for mut state in judging {
            let _ = tokio::time::timeout(PAGE_GUARD, state.wait_for(Option::is_some)).await;
        }
        let frames: Vec<_> = self
            .shared
            .contexts
            .lock()
            .values()
            .filter(|context| context.session == self.session && context.chromium_frame == self.target_id)
            .map(|context| context.frame)
            .collect();
        if frames.is_empty() {
            return Err(BridgeError::Script("the page has no document to activate".into()));
        }
        for frame in frames {
            self.shared.host.notify_user_activation(frame);
        }
        Ok(())
    }

    /// Closes the tab.
    pub fn close(self) -> Result<(), BridgeError> {
        let client = self.shared.client.clone();
        let target = self.target_id.clone();
        self.handle
            .block_on(async move { client.send("Target.closeTarget", json!({ "targetId": target }), None).await })?;
        Ok(())
    }
}
