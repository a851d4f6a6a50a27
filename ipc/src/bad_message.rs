//! `report_bad_message`: what the trusted side does when an untrusted peer sends something a
//! well-behaved peer never sends (Chromium's `mojo::ReportBadMessage`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::Endpoint;

/// An untrusted peer as the trusted side holds it: its pipes, and how to terminate it.
pub struct Peer {
    name: String,
    endpoints: Mutex<Vec<Endpoint>>,
    terminate: Box<dyn Fn() + Send + Sync>,
    reported: AtomicBool,
}

impl Peer {
    /// A peer named `name` (for logs and observers); `terminate` asks the embedder to kill it.
    pub fn new(name: impl Into<String>, terminate: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            endpoints: Mutex::new(Vec::new()),
            terminate: Box::new(terminate),
            reported: AtomicBool::new(false),
        })
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers a pipe of this peer, to be shut down if it misbehaves.
    pub fn add_endpoint(&self, endpoint: &Endpoint) {
        match endpoint.try_clone() {
            Ok(clone) => self.endpoints.lock().push(clone),
            Err(error) => tracing::warn!(peer = %self.name, %error, "could not track a pipe of this peer"),
        }
    }

    /// Whether a bad message was reported for this peer.
    pub fn is_reported(&self) -> bool {
        self.reported.load(Ordering::Acquire)
    }
}

/// One report, as observers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessageReport {
    /// The peer's name.
    pub peer: String,
    /// Why.
    pub reason: String,
}

static OBSERVERS: LazyLock<Mutex<Vec<Sender<BadMessageReport>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Logs, shuts down every pipe of `peer` and asks the embedder to terminate it. Only the first
/// report per peer acts; later ones are logged.
pub fn report_bad_message(peer: &Peer, reason: &str) {
    if peer.reported.swap(true, Ordering::AcqRel) {
        tracing::warn!(peer = %peer.name, reason, "further bad message from a peer already reported");
        return;
    }
    tracing::error!(peer = %peer.name, reason, "bad message: terminating the peer");
    for endpoint in peer.endpoints.lock().drain(..) {
        endpoint.shutdown();
    }
    (peer.terminate)();
    let report = BadMessageReport { peer: peer.name.clone(), reason: reason.into() };
    OBSERVERS.lock().retain(|observer| observer.send(report.clone()).is_ok());
}

/// Sees every bad-message report made in this process while it lives (for tests, like
/// Chromium's `BadMessageObserver`).
pub struct BadMessageObserver {
    reports: Receiver<BadMessageReport>,
}

impl BadMessageObserver {
    /// Starts observing.
    pub fn new() -> Self {
        let (sender, reports) = crossbeam_channel::unbounded();
        OBSERVERS.lock().push(sender);
        Self { reports }
    }

    /// Waits up to `timeout` for the next report.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<BadMessageReport> {
        self.reports.recv_timeout(timeout).ok()
    }

    /// Reports received so far and not yet taken.
    pub fn take(&self) -> Vec<BadMessageReport> {
        self.reports.try_iter().collect()
    }
}

impl Default for BadMessageObserver {
    fn default() -> Self {
        Self::new()
    }
}
